"""Parse step: encodings, CSV/XLSX/JSON reading, row numbers, rejects, column mapping, real files."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from govdx import Contract, Source, load_contract
from pipelines import (
    MissingColumnError,
    SourceError,
    cast_table,
    detect_encoding,
    map_columns,
    read_source,
)
from pipelines._parse import REJECTS_SCHEMA
from tests.conftest import REPO, SHARED_DATA

PUBLIC = REPO / "govdx" / "demo" / "contracts" / "public"


def _csv(tmp_path: Path, data: bytes, name: str = "x.csv") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _src(**kw) -> Source:
    return Source(**{"path": "x", "format": "csv", **kw})


def _contract(fields: list[dict], **source) -> Contract:
    return Contract.from_dict(
        {
            "code": "TJJ-T001",
            "name": "parse_test",
            "title": "解析测试",
            "department": {"code": "TJJ", "name": "国家统计局"},
            "source": {"path": "x.csv", "format": "csv", **source},
            "share": {"type": "unconditional"},
            "fields": fields,
        }
    )


# --- encodings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(b"\xef\xbb\xbf\xe4\xbb\xa3\xe7\xa0\x81,x\n", "utf-8-sig", id="bom"),
        pytest.param("代码,名称\n".encode(), "utf-8", id="utf8"),
        pytest.param(b"code,name\n1,a\n", "utf-8", id="ascii"),
        pytest.param("地区,北京市\n".encode("gbk"), "gb18030", id="gbk"),
        pytest.param("姓名,𠀀\n".encode("gb18030"), "gb18030", id="gb18030-only"),
    ],
)
def test_detect_encoding(data: bytes, expected: str) -> None:
    assert detect_encoding(data) == expected


def test_detect_encoding_names_the_line_of_an_undecodable_byte() -> None:
    data = b"a,b\n1,2\n3,\x80\x80\n"  # 0x80 alone is neither UTF-8 nor GB18030
    with pytest.raises(SourceError, match=r"^in\.csv: row 3: neither UTF-8 nor GB18030") as ei:
        detect_encoding(data, file="in.csv")
    assert (ei.value.file, ei.value.row) == ("in.csv", 3)


def test_gbk_file_with_chinese_names(tmp_path: Path) -> None:
    text = "姓名,身份证号\r\n张三,110101199003070012\r\n欧阳娜娜,11010519491231002X\r\n"
    p = _csv(tmp_path, text.encode("gbk"))
    for enc in ("auto", "gbk", "gb18030"):
        raw = read_source(p, _src(encoding=enc))
        assert raw.encoding == "gb18030"
        assert raw.table.column_names == ["姓名", "身份证号", "_row"]
        assert raw.table.column("姓名").to_pylist() == ["张三", "欧阳娜娜"]
        assert raw.table.column("身份证号").to_pylist() == [
            "110101199003070012",
            "11010519491231002X",
        ]
        assert raw.table.column("_row").to_pylist() == [2, 3]


@pytest.mark.parametrize("encoding", ["auto", "gbk", "gb18030"])
def test_gb18030_only_character_survives(tmp_path: Path, encoding: str) -> None:
    rare = "𠀀"  # U+20000: in GB18030 (4 bytes), not in GBK
    with pytest.raises(UnicodeEncodeError):
        rare.encode("gbk")
    p = _csv(tmp_path, f"姓名,备注\n李{rare},䶮\n".encode("gb18030"))
    raw = read_source(p, _src(encoding=encoding))
    assert raw.table.column("姓名").to_pylist() == [f"李{rare}"]
    assert raw.table.column("备注").to_pylist() == ["䶮"]


def test_utf8_bom_is_not_part_of_the_first_header(tmp_path: Path) -> None:
    p = _csv(tmp_path, "\ufeff代码,名称\n110000,北京市\n".encode())
    for enc in ("auto", "utf-8"):
        raw = read_source(p, _src(encoding=enc))
        assert raw.encoding == "utf-8-sig"
        assert raw.table.column_names == ["代码", "名称", "_row"]
        assert raw.table.column("代码").to_pylist() == ["110000"]


def test_gbk_file_declared_utf8_names_file_row_and_gb18030(tmp_path: Path) -> None:
    p = _csv(tmp_path, "code,name\n1,ok\n2,张三\n".encode("gbk"), "people.csv")
    with pytest.raises(SourceError, match=r"people\.csv: row 3: declared utf-8 .*GB18030") as ei:
        read_source(p, _src(encoding="utf-8"))
    assert ei.value.row == 3
    assert ei.value.file == str(p)


def test_utf8_file_declared_gbk_is_refused(tmp_path: Path) -> None:
    p = _csv(tmp_path, "code,name\n1,张三\n".encode())
    with pytest.raises(SourceError, match="declared gbk but the file is valid UTF-8"):
        read_source(p, _src(encoding="gbk"))
    with pytest.raises(SourceError, match="UTF-8 BOM"):
        read_source(_csv(tmp_path, "\ufeffcode\n1\n".encode(), "b.csv"), _src(encoding="gbk"))


# --- CSV ------------------------------------------------------------------------------------


def test_ids_stay_strings_whatever_the_first_rows_look_like(tmp_path: Path) -> None:
    lines = ["id,amount"] + [f"{110101199001010000 + i},{i}" for i in range(5000)]
    lines += ["001234567890123456,1", "11010519491231002X,2", "1e5,3", "000000,4"]
    p = _csv(tmp_path, ("\n".join(lines) + "\n").encode())
    raw = read_source(p, _src())
    ids = raw.table.column("id").to_pylist()
    assert raw.table.schema.field("id").type == pa.string()
    assert ids[0] == "110101199001010000"
    assert ids[-4:] == ["001234567890123456", "11010519491231002X", "1e5", "000000"]
    assert raw.table.column("_row").to_pylist()[-1] == 5005
    c = _contract([{"name": "id", "required": True}, {"name": "amount", "type": "integer"}])
    cast = cast_table(map_columns(raw.table, c), c)
    assert cast.table.column("id").to_pylist()[-4:] == ids[-4:]
    assert cast.rejects.num_rows == 0


def test_rows_with_a_wrong_field_count_are_rejected_with_their_line(tmp_path: Path) -> None:
    body = 'a,b,c\n1,2,3\n4,5,6,7\n8,9\n"x\ny",10,11\n12,13,14,15\n16,17,18\n'
    raw = read_source(_csv(tmp_path, body.encode()), _src())
    assert raw.table.column("a").to_pylist() == ["1", "x\ny", "16"]
    assert raw.table.column("_row").to_pylist() == [2, 5, 8]  # "x\ny" starts on line 5
    assert raw.rejects.schema == REJECTS_SCHEMA
    assert raw.rejects.to_pylist() == [
        {
            "_row": 3,
            "field": None,
            "value": "4,5,6,7",
            "reason": "expected 3 fields, found 4 (字段数不符: 应为 3 个, 实为 4 个)",
        },
        {
            "_row": 4,
            "field": None,
            "value": "8,9",
            "reason": "expected 3 fields, found 2 (字段数不符: 应为 3 个, 实为 2 个)",
        },
        {
            "_row": 7,
            "field": None,
            "value": "12,13,14,15",
            "reason": "expected 3 fields, found 4 (字段数不符: 应为 3 个, 实为 4 个)",
        },
    ]
    assert raw.rows_in == 6 == raw.table.num_rows + raw.rejects.num_rows


def test_blank_lines_are_skipped_but_keep_the_line_count(tmp_path: Path) -> None:
    body = "a,b\r\n1,2\r\n\r\n,\r\n3,4\r\n  ,\u3000\r\n5,6"  # no final newline
    raw = read_source(_csv(tmp_path, body.encode()), _src())
    assert raw.table.column("a").to_pylist() == ["1", "3", "5"]
    assert raw.table.column("_row").to_pylist() == [2, 5, 7]
    assert (raw.rows_in, raw.rows_skipped, raw.rejects.num_rows) == (3, 3, 0)


def test_metadata_above_header_and_footnotes_below(tmp_path: Path) -> None:
    text = (
        "数据库：分省年度数据\r\n指标：人口数(人)\r\n时间：最近2年\r\n"
        "地区,2021年,2020年\r\n北京市,23185,\r\n天津市,14541,12095\r\n"
        "注：1.样本数据，其他年份为1‰人口变动调查样本数据。\r\n"
        "\u3000\u3000\u30002.由于采用加权汇总的方法，分项合计略有误差。\r\n"
        "数据来源：国家统计局,,\r\n\r\n"
    )
    raw = read_source(_csv(tmp_path, text.encode("gbk")), _src(header_row=4, footer_rows=3))
    assert raw.table.column_names == ["地区", "2021年", "2020年", "_row"]
    assert raw.table.column("地区").to_pylist() == ["北京市", "天津市"]
    assert raw.table.column("2020年").to_pylist() == ["", "12095"]
    assert raw.table.column("_row").to_pylist() == [5, 6]
    assert (raw.rows_in, raw.rejects.num_rows) == (2, 0)
    with pytest.raises(SourceError, match="footer_rows is 9"):
        read_source(_csv(tmp_path, text.encode("gbk"), "b.csv"), _src(header_row=4, footer_rows=9))
    with pytest.raises(SourceError, match="header_row is 40"):
        read_source(_csv(tmp_path, text.encode("gbk"), "c.csv"), _src(header_row=40))


def test_header_names_are_stripped_and_made_unique(tmp_path: Path) -> None:
    p = _csv(tmp_path, "\u00a0代码\u3000, 名称 ,,名称\n1,a,b,c\n".encode())
    raw = read_source(p, _src())
    assert raw.table.column_names == ["代码", "名称", "column_3", "名称.2", "_row"]


def test_other_delimiter_and_header_only_file(tmp_path: Path) -> None:
    raw = read_source(_csv(tmp_path, b"a;b\n1;2,5\n"), _src(delimiter=";"))
    assert raw.table.column("b").to_pylist() == ["2,5"]
    raw = read_source(_csv(tmp_path, b"a,b\n", "h.csv"), _src())
    assert (raw.table.num_rows, raw.rows_in, raw.table.column_names) == (0, 0, ["a", "b", "_row"])


def test_missing_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"nope\.csv: cannot read the file"):
        read_source(tmp_path / "nope.csv", _src())


def test_bytes_given_in_memory_are_read_instead_of_the_file(tmp_path: Path) -> None:
    raw = read_source(tmp_path / "landed.csv", _src(), data="代码\n0012\n".encode("gbk"))
    assert raw.table.column("代码").to_pylist() == ["0012"]


# --- XLSX -----------------------------------------------------------------------------------


def _workbook(path: Path) -> Path:
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "2023"
    ws["A1"] = "2023年行政区划代码变更情况"
    ws.merge_cells("A1:E1")
    ws.append([None])  # row 2 blank
    ws.append(["序号", "\u00a0省份 ", "区划代码", "变更日期", "备注", None])  # row 3 header
    ws.append([1, "河北", 130123200.0, dt.datetime(2023, 5, 1), "0012"])
    ws.append([2, None, 130125206, dt.date(2023, 6, 30), 0.1])
    ws.append([None, None, None, None, None])  # an empty row inside the data
    ws.append([3, "山西", 140404100, dt.datetime(2023, 7, 1, 8, 30), 1e-05])
    ws.append([4, None, 140404200, None, True])
    ws.merge_cells("B4:B5")  # 河北 over two rows
    ws.merge_cells("B7:B8")  # 山西 over two rows
    ws["G4"] = None
    other = wb.create_sheet("2022")
    other.append(["x"])
    wb.save(path)
    return path


def test_xlsx_title_row_merged_cells_and_values_as_text(tmp_path: Path) -> None:
    p = _workbook(tmp_path / "changes.xlsx")
    raw = read_source(
        p, Source(path="x", format="xlsx", sheet="2023", header_row=3, fill_merged=True)
    )
    assert raw.table.column_names == ["序号", "省份", "区划代码", "变更日期", "备注", "_row"]
    assert raw.table.to_pydict() == {
        "序号": ["1", "2", "3", "4"],
        "省份": ["河北", "河北", "山西", "山西"],
        "区划代码": ["130123200", "130125206", "140404100", "140404200"],
        "变更日期": ["2023-05-01", "2023-06-30", "2023-07-01T08:30:00", None],
        "备注": ["0012", "0.1", "0.00001", "true"],
        "_row": [4, 5, 7, 8],
    }
    assert (raw.rows_in, raw.rows_skipped, raw.rejects.num_rows) == (4, 1, 0)
    plain = read_source(p, Source(path="x", format="xlsx", sheet="2023", header_row=3))
    assert plain.table.column("省份").to_pylist() == ["河北", None, "山西", None]


def test_xlsx_unknown_sheet_lists_the_sheets(tmp_path: Path) -> None:
    p = _workbook(tmp_path / "changes.xlsx")
    with pytest.raises(SourceError, match=r"no sheet '2024' .*\['2023', '2022'\]"):
        read_source(p, Source(path="x", format="xlsx", sheet="2024"))


def test_xlsx_that_is_not_a_workbook(tmp_path: Path) -> None:
    p = _csv(tmp_path, b"a,b\n", "fake.xlsx")
    with pytest.raises(SourceError, match="not a readable XLSX workbook"):
        read_source(p, Source(path="x", format="xlsx"))


# --- JSON -----------------------------------------------------------------------------------


def test_json_array_numbers_without_float_artefacts(tmp_path: Path) -> None:
    doc = (
        '[{"code": 110101.0, "v": 0.1, "big": 1e20, "id": "0012", "ok": true, "n": null},'
        ' {"code": 110102, "extra": [1, 2]}, 7]'
    )
    raw = read_source(_csv(tmp_path, doc.encode(), "a.json"), Source(path="x", format="json"))
    assert raw.table.to_pydict() == {
        "code": ["110101", "110102"],
        "v": ["0.1", None],
        "big": ["100000000000000000000", None],
        "id": ["0012", None],
        "ok": ["true", None],
        "n": [None, None],
        "extra": [None, '["1", "2"]'],
        "_row": [1, 2],
    }
    assert raw.rejects.to_pylist() == [
        {"_row": 3, "field": None, "value": "7", "reason": "not a JSON object (不是 JSON 对象)"}
    ]
    assert raw.rows_in == 3


def test_json_lines_bad_line_is_rejected(tmp_path: Path) -> None:
    text = '{"code": "11", "name": "北京市"}\n\n{"code": "12", "name": \n{"code": "13"}\n'
    raw = read_source(_csv(tmp_path, text.encode(), "a.jsonl"), Source(path="x", format="json"))
    assert raw.table.column("code").to_pylist() == ["11", "13"]
    assert raw.table.column("_row").to_pylist() == [1, 4]
    assert raw.rejects.column("_row").to_pylist() == [3]
    assert raw.rejects.column("reason").to_pylist()[0].startswith("not valid JSON (JSON 格式错误)")


def test_json_tree_rows_with_parent_and_level(tmp_path: Path) -> None:
    tree = [
        {
            "code": "11",
            "name": "北京市",
            "children": [
                {
                    "code": "1101",
                    "name": "市辖区",
                    "children": [{"code": "110101", "name": "东城区"}],
                },
            ],
        },
        {
            "code": "44",
            "name": "广东省",
            "children": [
                {
                    "code": "4419",
                    "name": "东莞市",
                    "children": [{"code": "441900003", "name": "东城街道"}],
                },
            ],
        },
    ]
    p = _csv(tmp_path, json.dumps(tree, ensure_ascii=False).encode(), "t.json")
    raw = read_source(p, Source(path="x", format="json", tree_children="children"))
    assert raw.table.to_pydict() == {
        "code": ["11", "1101", "110101", "44", "4419", "441900003"],
        "name": ["北京市", "市辖区", "东城区", "广东省", "东莞市", "东城街道"],
        "parent_code": [None, "11", "1101", None, "44", "4419"],
        "level": ["1", "2", "3", "1", "2", "3"],
        "_row": [1, 2, 3, 4, 5, 6],
    }


def test_malformed_json_document_names_the_line(tmp_path: Path) -> None:
    p = _csv(tmp_path, b'[{"a": 1},\n {"a": }]', "bad.json")
    with pytest.raises(SourceError, match=r"bad\.json: row 2: not valid JSON") as ei:
        read_source(p, Source(path="x", format="json"))
    assert ei.value.row == 2


# --- mapping --------------------------------------------------------------------------------


def test_map_columns_by_source_column_title_then_name() -> None:
    raw = pa.table(
        {
            "\u00a0统一社会信用代码 ": ["A"],
            "名称": ["甲"],
            "reg_no": ["9"],
            "other": ["x"],
            "_row": pa.array([2], pa.int64()),
        }
    )
    c = _contract(
        [
            {"name": "uscc", "title": "统一社会信用代码", "required": True},
            {"name": "org_name", "title": "企业名称", "source_column": "名称"},
            {"name": "reg_no", "title": "注册号"},
            {"name": "phone", "title": "联系电话"},
        ]
    )
    out = map_columns(raw, c, file="x.csv")
    assert out.column_names == ["uscc", "org_name", "reg_no", "phone", "_row"]
    assert out.to_pylist() == [
        {"uscc": "A", "org_name": "甲", "reg_no": "9", "phone": None, "_row": 2}
    ]


def test_missing_required_column_names_field_candidates_and_found() -> None:
    raw = pa.table({"名称": ["甲"], "_row": pa.array([2], pa.int64())})
    c = _contract([{"name": "uscc", "title": "统一社会信用代码", "required": True}])
    with pytest.raises(
        MissingColumnError,
        match=r"^data/x\.csv: column 统一社会信用代码: required field 'uscc' has no source column"
        r".*\['统一社会信用代码', 'uscc'\].*\['名称'\]",
    ) as ei:
        map_columns(raw, c, file="data/x.csv")
    assert isinstance(ei.value, SourceError)
    assert (ei.value.field, ei.value.found) == ("uscc", ["名称"])


# --- the real public files ----------------------------------------------------------------


def _run(contract: Contract, path: Path | None = None):
    p = path or contract.source_path()
    raw = read_source(p, contract.source)
    cast = cast_table(map_columns(raw.table, contract, file=str(p)), contract)
    assert raw.rows_in == cast.table.num_rows + raw.rejects.num_rows + cast.rows_rejected
    return raw, cast


@pytest.mark.parametrize(
    ("contract", "rows", "encoding"),
    [
        pytest.param("tjj_province_population_sample.yaml", 31, "gb18030", id="01"),
        pytest.param("mzb_subcounty_code_changes_2023.yaml", 104, "utf-8", id="05"),
        pytest.param("mzb_county_division_code_history.yaml", 6823, "utf-8-sig", id="06"),
        pytest.param("tjj_division_code_tree.yaml", 3429, "utf-8", id="07"),
        pytest.param("tjj_township_division_codes.yaml", 41352, "utf-8", id="08"),
    ],
)
def test_public_contract_parses_its_file_without_rejects(
    contract: str, rows: int, encoding: str
) -> None:
    c = load_contract(PUBLIC / contract)
    raw, cast = _run(c)
    assert raw.encoding == encoding
    assert (raw.rows_in, cast.table.num_rows) == (rows, rows)
    assert raw.rejects.num_rows == 0 and cast.rejects.num_rows == 0
    key = pc.binary_join_element_wise(
        *[pc.cast(cast.table.column(k), pa.string()) for k in c.primary_key], "|"
    )
    assert len(pc.unique(key)) == rows  # the declared primary key is unique


def test_public_01_values() -> None:
    _, cast = _run(load_contract(PUBLIC / "tjj_province_population_sample.yaml"))
    first, last = cast.table.slice(0, 1).to_pylist()[0], cast.table.slice(30).to_pylist()[0]
    assert (first["region"], first["sample_2025"], first["sample_2024"], first["sample_2015"]) == (
        "北京市",
        None,
        22470,
        335775,
    )
    assert (first["_row"], last["region"], last["sample_2006"], last["_row"]) == (
        5,
        "新疆维吾尔自治区",
        18681,
        35,
    )


def test_public_05_merged_provinces_filled() -> None:
    _, cast = _run(load_contract(PUBLIC / "mzb_subcounty_code_changes_2023.yaml"))
    t = cast.table
    assert t.column("seq").to_pylist() == list(range(1, 105))
    assert t.slice(0, 2).select(
        ["province", "old_code", "new_code", "change_reason"]
    ).to_pylist() == [
        {
            "province": "河北",
            "old_code": "130123200",
            "new_code": "130123106",
            "change_reason": "撤乡设镇",
        },
        {
            "province": "河北",
            "old_code": "130125206",
            "new_code": "130125104",
            "change_reason": "撤乡设镇",
        },
    ]
    assert t.column("_row").to_pylist()[-1] == 108


def test_public_06_codes_and_years() -> None:
    _, cast = _run(load_contract(PUBLIC / "mzb_county_division_code_history.yaml"))
    t = cast.table
    assert t.slice(0, 1).to_pylist()[0] == {
        "code": "110000",
        "province": "北京市",
        "prefecture": None,
        "name": "北京市",
        "level": "省级",
        "status": "在用",
        "valid_from": 1981,
        "valid_until": None,
        "new_codes": None,
        "_row": 2,
    }
    counts = {d["values"]: d["counts"] for d in pc.value_counts(t.column("status")).to_pylist()}
    assert counts == {"在用": 3213, "弃用": 3237, "变更": 373}
    assert "130102;130104" in t.column("new_codes").to_pylist()


def test_public_07_tree_levels() -> None:
    _, cast = _run(load_contract(PUBLIC / "tjj_division_code_tree.yaml"))
    t = cast.table
    levels = {d["values"]: d["counts"] for d in pc.value_counts(t.column("level")).to_pylist()}
    assert levels == {1: 31, 2: 342, 3: 3056}
    nine = t.filter(pc.equal(pc.utf8_length(t.column("code")), 9))
    assert nine.num_rows == 82
    assert sorted(set(nine.column("parent_code").to_pylist())) == ["4419", "4420", "4604", "6202"]
    assert t.column("parent_code").null_count == 31


def test_public_08_names_outside_gbk() -> None:
    _, cast = _run(load_contract(PUBLIC / "tjj_township_division_codes.yaml"))
    names = cast.table.column("name").to_pylist()
    outside = []
    for n in names:
        try:
            n.encode("gbk")
        except UnicodeEncodeError:
            outside.append(n)
    assert len(outside) == 8
    assert cast.table.slice(0, 1).to_pylist()[0] == {
        "code": "110101001",
        "name": "东华门街道",
        "area_code": "110101",
        "province_code": "11",
        "city_code": "1101",
        "_row": 2,
    }


FILE_02 = SHARED_DATA / "02_nbs_monthly_money_supply_m0_m1_m2_gbk.csv"


@pytest.mark.skipif(
    not FILE_02.exists(), reason="file 02 is not shipped (no licence); needs /work/shared/data"
)
def test_file_02_money_supply_periods_stay_text() -> None:
    money = {"type": "decimal", "precision": 18, "scale": 2, "unit": "亿元"}
    rate = {"type": "decimal", "precision": 6, "scale": 1, "unit": "%"}
    c = _contract(
        [
            {"name": "period", "title": "时间", "required": True},
            {"name": "m2", "source_column": "货币和准货币(M2)供应量期末值(亿元)", **money},
            {"name": "m2_yoy", "source_column": "货币和准货币(M2)供应量同比增长(%)", **rate},
            {"name": "m1", "source_column": "货币(M1)供应量期末值(亿元)", **money},
            {"name": "m1_yoy", "source_column": "货币(M1)供应量同比增长(%)", **rate},
            {"name": "m0", "source_column": "流通中现金(M0)供应量期末值(亿元)", **money},
            {"name": "m0_yoy", "source_column": "流通中现金(M0)供应量同比增长(%)", **rate},
        ],
        encoding="gbk",
        header_row=3,
        footer_rows=2,
    )
    raw, cast = _run(c, FILE_02)
    assert raw.encoding == "gb18030"
    assert (raw.rows_in, cast.table.num_rows, cast.rejects.num_rows) == (258, 258, 0)
    periods = cast.table.column("period").to_pylist()
    assert (periods[0], periods[-1]) == ("2021年5月", "1999年12月")
    first = cast.table.slice(0, 1).to_pylist()[0]
    assert (str(first["m2"]), str(first["m0_yoy"]), first["_row"]) == ("2275538.07", "5.6", 4)
    assert cast.table.column("_row").to_pylist()[-1] == 261


def test_line_numbers_hold_across_reader_blocks(tmp_path: Path) -> None:
    # > 4 MiB, so pyarrow reads several blocks; one record spans two lines near the start and
    # bad rows sit near the end.
    n = 300_000
    lines = ["id,name,note", '1,"多行\n名称",x']
    lines += [f"{i:012d},name{i},note" for i in range(2, n)]
    lines[n - 5] = "bad,row"
    lines[n - 2] = "bad,row,with,four"
    p = _csv(tmp_path, ("\r\n".join(lines) + "\r\n").encode(), "big.csv")
    raw = read_source(p, _src())
    assert raw.rejects.column("_row").to_pylist() == [n - 3, n]  # +1 header, +1 spanning record
    rows = raw.table.column("_row").to_pylist()
    ids = raw.table.column("id").to_pylist()
    assert (ids[0], rows[0], ids[1], rows[1]) == ("1", 2, "000000000002", 4)
    assert (ids[-1], rows[-1]) == (f"{n - 1:012d}", n + 1)
    assert raw.rows_in == n - 1 == raw.table.num_rows + 2
