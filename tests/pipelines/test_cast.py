"""Cast step: every logical type, exact reject reasons, and the row accounting invariant."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from govdx import Contract
from pipelines import CastResult, IngestError, cast_table, map_columns, read_source
from pipelines._cast import arrow_schema
from pipelines._parse import REJECTS_SCHEMA

SH = dt.timezone(dt.timedelta(hours=8))


def _contract(*fields: dict) -> Contract:
    return Contract.from_dict(
        {
            "code": "TJJ-T002",
            "name": "cast_test",
            "title": "类型转换测试",
            "department": {"code": "TJJ", "name": "国家统计局"},
            "source": {"path": "x.csv", "format": "csv"},
            "share": {"type": "unconditional"},
            "fields": list(fields),
        }
    )


def _one(ftype: str, values: list[str | None], **extra) -> CastResult:
    c = _contract({"name": "v", "type": ftype, **extra})
    table = pa.table(
        {
            "v": pa.array(values, pa.string()),
            "_row": pa.array(range(2, len(values) + 2), pa.int64()),
        }
    )
    return cast_table(table, c)


def _reasons(r: CastResult) -> list[tuple[int, str]]:
    rows, reasons = r.rejects.column("_row").to_pylist(), r.rejects.column("reason").to_pylist()
    return list(zip(rows, reasons, strict=True))


def test_string_is_stripped_and_blank_is_null() -> None:
    r = _one("string", [" a ", "\u00a0b\u3000", "", "  ", None, "0012"])
    assert r.table.column("v").to_pylist() == ["a", "b", None, None, None, "0012"]
    assert r.rejects.num_rows == 0


def test_integer() -> None:
    r = _one(
        "integer",
        [
            "42",
            " -7 ",
            "+3",
            "007",
            "1,234,567",
            "9223372036854775807",
            "-9223372036854775808",
            "",
            "1.5",
            "12,34",
            "1e3",
            "9223372036854775808",
            "-9223372036854775809",
            "一",
        ],
    )
    assert r.table.column("v").to_pylist() == [42, -7, 3, 7, 1234567, 2**63 - 1, -(2**63), None]
    assert _reasons(r) == [
        (10, "not an integer (不是整数): '1.5'"),
        (11, "not an integer (不是整数): '12,34'"),
        (12, "not an integer (不是整数): '1e3'"),
        (13, "integer out of range (超出整数范围): '9223372036854775808'"),
        (14, "integer out of range (超出整数范围): '-9223372036854775809'"),
        (15, "not an integer (不是整数): '一'"),
    ]


def test_decimal_refuses_rounding() -> None:
    r = _one(
        "decimal",
        [
            "12.5",
            "-0.05",
            "+1,234.50",
            ".5",
            "7",
            "3.1400000",
            "1.005",
            "1e5",
            "12345678901",
            "8.3%",
            ".",
        ],
        precision=12,
        scale=2,
    )
    assert r.table.schema.field("v").type == pa.decimal128(12, 2)
    assert r.table.column("v").to_pylist() == [
        Decimal("12.50"),
        Decimal("-0.05"),
        Decimal("1234.50"),
        Decimal("0.50"),
        Decimal("7.00"),
        Decimal("3.14"),
    ]
    assert _reasons(r) == [
        (8, "more than 2 decimal places, not rounded (小数位数超过 2 位, 未舍入): '1.005'"),
        (9, "not a decimal number (不是数值): '1e5'"),
        (10, "too many digits for decimal(12,2) (超出精度): '12345678901'"),
        (11, "not a decimal number (不是数值): '8.3%'"),
        (12, "not a decimal number (不是数值): '.'"),
    ]


def test_date_formats_and_impossible_dates() -> None:
    r = _one(
        "date",
        [
            "2021-05-01",
            "2021/5/1",
            "20210501",
            "2021年5月1日",
            "2021.05.01",
            "2024-02-29",
            "2021-13-01",
            "2021-02-30",
            "2023-02-29",
            "2021-5",
            "21-05-01",
            "2021-05-01 08:00:00",
        ],
    )
    assert r.table.column("v").to_pylist() == [dt.date(2021, 5, 1)] * 5 + [dt.date(2024, 2, 29)]
    assert [v for _, v in _reasons(r)] == [
        f"not a date (日期格式错误): '{v}'"
        for v in [
            "2021-13-01",
            "2021-02-30",
            "2023-02-29",
            "2021-5",
            "21-05-01",
            "2021-05-01 08:00:00",
        ]
    ]


def test_timestamp_without_offset_is_beijing_time() -> None:
    r = _one(
        "timestamp",
        [
            "2021-05-01 08:00:00",
            "2021-05-01T08:00",
            "2021-05-01T00:00:00Z",
            "2021-05-01T08:00:00.123456+08:00",
            "2021-05-01",
            "2021-05-01 24:00:00",
            "2021-02-30 10:00:00",
            "05/01/2021 08:00",
        ],
    )
    assert r.table.schema.field("v").type == pa.timestamp("us", tz="Asia/Shanghai")
    got = [v.astimezone(dt.UTC) for v in r.table.column("v").to_pylist()]
    utc = dt.UTC
    assert got == [
        dt.datetime(2021, 5, 1, 0, 0, tzinfo=utc),
        dt.datetime(2021, 5, 1, 0, 0, tzinfo=utc),
        dt.datetime(2021, 5, 1, 0, 0, tzinfo=utc),
        dt.datetime(2021, 5, 1, 0, 0, 0, 123456, tzinfo=utc),
        dt.datetime(2021, 4, 30, 16, 0, tzinfo=utc),
    ]
    assert [row for row, _ in _reasons(r)] == [7, 8, 9]
    assert _reasons(r)[0][1] == "not an ISO 8601 timestamp (时间格式错误): '2021-05-01 24:00:00'"


def test_boolean() -> None:
    r = _one("boolean", ["true", "FALSE", "1", "0", "是", "否", "Y", "n", None, "yes?", "2"])
    assert r.table.column("v").to_pylist() == [
        True,
        False,
        True,
        False,
        True,
        False,
        True,
        False,
        None,
    ]
    assert _reasons(r) == [
        (11, "not a boolean (布尔值错误): 'yes?'"),
        (12, "not a boolean (布尔值错误): '2'"),
    ]


def test_required_blank_and_one_reject_per_failing_cell() -> None:
    c = _contract(
        {"name": "id", "required": True},
        {"name": "n", "type": "integer", "required": True},
        {"name": "d", "type": "date"},
    )
    t = pa.table(
        {
            "id": ["A", "\u3000", "C", None],
            "n": ["1", "x", "", "4"],
            "d": ["2021-01-01", "bad", None, "2021/1/1"],
            "_row": pa.array([2, 3, 4, 5], pa.int64()),
        }
    )
    r = cast_table(t, c)
    assert r.table.schema == arrow_schema(c)
    assert r.table.to_pylist() == [{"id": "A", "n": 1, "d": dt.date(2021, 1, 1), "_row": 2}]
    assert r.rejects.schema == REJECTS_SCHEMA
    assert r.rejects.to_pylist() == [
        {
            "_row": 3,
            "field": "id",
            "value": "\u3000",
            "reason": "required value is blank (必填项为空)",
        },
        {"_row": 3, "field": "n", "value": "x", "reason": "not an integer (不是整数): 'x'"},
        {"_row": 3, "field": "d", "value": "bad", "reason": "not a date (日期格式错误): 'bad'"},
        {"_row": 4, "field": "n", "value": "", "reason": "required value is blank (必填项为空)"},
        {"_row": 5, "field": "id", "value": None, "reason": "required value is blank (必填项为空)"},
    ]
    assert r.rows_rejected == 3


def test_unmapped_table_is_a_wiring_error() -> None:
    with pytest.raises(IngestError, match=r"no column\(s\) \['v', '_row'\]"):
        cast_table(pa.table({"x": ["1"]}), _contract({"name": "v"}))


def test_rows_in_equals_kept_plus_rejected_rows_end_to_end(tmp_path: Path) -> None:
    text = (
        "身份证号,姓名,出生日期,月收入(元),在职\n"
        '11010519491231002X,张三,1949-12-31,"12,000.50",是\n'
        "110101199003070012,李四,1990-03-07,abc,否\n"  # bad decimal
        "110101199003070013,王五,1990-02-30,5000,是\n"  # bad date
        ",赵六,1990-01-01,5000,是\n"  # blank required id
        "110101199003070014,钱七,1990-01-01,5000,是,多余\n"  # too many fields
        "\n"
        "0012,孙八,1990年1月1日,0,N\n"
    )
    p = tmp_path / "people.csv"
    p.write_bytes(text.encode("gbk"))
    c = _contract(
        {"name": "resident_id", "title": "身份证号", "required": True},
        {"name": "name", "title": "姓名"},
        {"name": "birth_date", "title": "出生日期", "type": "date"},
        {"name": "income", "title": "月收入(元)", "type": "decimal", "scale": 2},
        {"name": "employed", "title": "在职", "type": "boolean"},
    )
    raw = read_source(p, c.source)
    cast = cast_table(map_columns(raw.table, c, file=str(p)), c)
    assert raw.rows_in == 6 and raw.rows_skipped == 1
    assert raw.rows_in == cast.table.num_rows + raw.rejects.num_rows + cast.rows_rejected
    assert cast.table.column("resident_id").to_pylist() == ["11010519491231002X", "0012"]
    assert cast.table.column("income").to_pylist() == [Decimal("12000.5000"), Decimal("0.0000")]
    assert cast.table.column("_row").to_pylist() == [2, 8]
    assert cast.rejects.column("_row").to_pylist() == [3, 4, 5]
    assert raw.rejects.column("_row").to_pylist() == [6]


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_integer_round_trip(n: int) -> None:
    r = _one("integer", [str(n), f"{n:,}"])
    assert r.table.column("v").to_pylist() == [n, n]


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=dt.date(1000, 1, 1), max_value=dt.date(9999, 12, 31)))
def test_every_date_form_reads_back_the_same_day(d: dt.date) -> None:
    forms = [
        d.isoformat(),
        f"{d.year}/{d.month}/{d.day}",
        d.strftime("%Y%m%d"),
        f"{d.year}年{d.month}月{d.day}日",
        d.strftime("%Y.%m.%d"),
    ]
    r = _one("date", forms)
    assert r.table.column("v").to_pylist() == [d] * 5


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789.-+,e ", max_size=12))
def test_decimal_is_exact_or_rejected(s: str) -> None:
    r = _one("decimal", [s], precision=20, scale=3)
    if r.rejects.num_rows:
        assert r.table.num_rows == 0
        assert r.rejects.column("value").to_pylist() == [s]
    elif r.table.column("v")[0].as_py() is not None:
        assert r.table.column("v")[0].as_py() == Decimal(s.strip().replace(",", ""))


@pytest.mark.parametrize(
    ("ftype", "value", "reason"),
    [
        pytest.param(
            "decimal", "12345678901", "too many digits for decimal(12,2) (超出精度)", id="precision"
        ),
        pytest.param(
            "decimal",
            "1.005",
            "more than 2 decimal places, not rounded (小数位数超过 2 位, 未舍入)",
            id="scale",
        ),
        pytest.param("decimal", "1e5", "not a decimal number (不是数值)", id="exponent"),
        pytest.param("date", "2021-02-30", "not a date (日期格式错误)", id="feb-30"),
        pytest.param("date", "2021-02-29", "not a date (日期格式错误)", id="not-leap"),
    ],
)
def test_fast_paths_refuse_what_the_general_path_refuses(
    ftype: str, value: str, reason: str
) -> None:
    # A column where every value is plain ISO / plain digits takes Arrow's direct cast first.
    r = _one(ftype, [value], precision=12, scale=2)
    assert r.table.num_rows == 0
    assert _reasons(r) == [(2, f"{reason}: '{value}'")]
