"""Cast step (类型转换): string columns → the contract's Arrow types, failing cells set aside.

Every conversion is vectorized with ``pyarrow.compute`` (regex masks, ``strptime`` with
``error_is_null``, ``cast``): no Python loop per cell. A value that does not convert is never
guessed at: no rounding, no day roll-over (``2021-02-30`` is refused, not turned into March 2nd),
no time-zone shift of calendar dates. Each failing cell gives one reject row with a short
English + Chinese reason, and a row with any failing cell leaves the table, so that::

    rows_in == cast.table.num_rows + distinct rejected rows (parse rejects + cast rejects)

Types (:class:`govdx.FieldType` → Arrow): string → ``string`` (stripped, empty → null);
integer → ``int64`` (``1,234,567`` accepted when grouped by threes; ``1.5`` refused);
decimal → ``decimal128(precision, scale)`` (more significant fractional digits than ``scale``
refused rather than rounded); date → ``date32`` from ``YYYY-MM-DD``, ``YYYY/M/D``,
``YYYYMMDD``, ``YYYY年M月D日``, ``YYYY.MM.DD``; timestamp → ``timestamp[us, tz=Asia/Shanghai]``
from ISO 8601 (values without an offset are Beijing time); boolean → ``bool`` from
true/false, 1/0, 是/否, Y/N (case-insensitive).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from govdx import Contract, ContractField, FieldType
from pipelines._errors import IngestError
from pipelines._parse import REJECTS_SCHEMA, WHITESPACE, empty_rejects

__all__ = ["CastResult", "arrow_schema", "arrow_type", "cast_table"]

TIMEZONE = "Asia/Shanghai"

_NULL_STR = pa.scalar(None, pa.string())
_INT = r"^[+-]?(?:\d+|\d{1,3}(?:,\d{3})+)$"
_PLAIN_DEC = r"^[+-]?(?:\d+\.?\d*|\.\d+)$"
_DEC = r"^(?P<sign>[+-]?)(?P<int>\d{1,3}(?:,\d{3})+|\d*)(?:\.(?P<frac>\d*))?$"
_DATE = (
    r"^(?P<y>\d{4})(?:-(?P<m1>\d{1,2})-(?P<d1>\d{1,2})|/(?P<m2>\d{1,2})/(?P<d2>\d{1,2})"
    r"|\.(?P<m3>\d{1,2})\.(?P<d3>\d{1,2})|(?P<m4>\d{2})(?P<d4>\d{2})"
    r"|年(?P<m5>\d{1,2})月(?P<d5>\d{1,2})日)$"
)
_TS = (
    r"^(?P<date>\d{4}-\d{2}-\d{2})(?:[T ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,6})?)?)?"
    r"(?P<tz>Z|[+-](?:[01]\d|2[0-3]):?[0-5]\d)?$"
)
_TRUE = ["true", "1", "是", "y"]
_FALSE = ["false", "0", "否", "n"]
_INT64_MAX = "9223372036854775807"
_INT64_MIN_ABS = "9223372036854775808"


def arrow_type(field: ContractField) -> pa.DataType:
    """The Arrow type of a contract field (see the module docstring for the mapping)."""
    return {
        FieldType.string: pa.string(),
        FieldType.integer: pa.int64(),
        FieldType.date: pa.date32(),
        FieldType.timestamp: pa.timestamp("us", tz=TIMEZONE),
        FieldType.boolean: pa.bool_(),
    }.get(field.type) or pa.decimal128(field.precision, field.scale)


def arrow_schema(contract: Contract) -> pa.Schema:
    """Schema of :attr:`CastResult.table`: the contract's fields in order, then ``_row`` int64."""
    return pa.schema(
        [pa.field(f.name, arrow_type(f)) for f in contract.fields]
        + [pa.field("_row", pa.int64(), nullable=False)]
    )


@dataclass(frozen=True)
class CastResult:
    """Typed rows and the cells that would not convert.

    Attributes:
        table: ``pyarrow.Table[kept rows × (fields in contract order..., _row int64)]`` typed
            per :func:`arrow_schema`.
        rejects: ``pyarrow.Table[failing cells × (_row int64, field string, value string,
            reason string)]``, one row per failing cell; ``value`` is the cell as read.
    """

    table: pa.Table
    rejects: pa.Table

    @property
    def rows_rejected(self) -> int:
        """Distinct rows with at least one failing cell (rows)."""
        return len(pc.unique(self.rejects.column("_row"))) if self.rejects.num_rows else 0


def _chunked(a: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    return a if isinstance(a, pa.ChunkedArray) else pa.chunked_array([a], type=a.type)


def _mask(a: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    return pc.fill_null(a, False)


def _null_unless(ok: pa.Array, values: pa.Array) -> pa.Array:
    return pc.if_else(ok, values, pa.scalar(None, values.type))


def _int(s: pa.Array) -> tuple[pa.Array, list[tuple[pa.Array, str]]]:
    ok = _mask(pc.match_substring_regex(s, _INT))
    clean = _null_unless(ok, pc.replace_substring(s, ",", ""))
    neg = _mask(pc.starts_with(clean, "-"))
    digits = pc.utf8_ltrim(pc.utf8_ltrim(clean, "+-"), "0")
    nd = pc.utf8_length(digits)
    limit = pc.if_else(neg, pa.scalar(_INT64_MIN_ABS), pa.scalar(_INT64_MAX))
    big = _mask(pc.or_(pc.greater(nd, 19), pc.and_(pc.equal(nd, 19), pc.greater(digits, limit))))
    good = pc.and_(ok, pc.invert(big))
    typed = pc.cast(_null_unless(good, pc.utf8_ltrim(clean, "+")), pa.int64())
    return typed, [
        (pc.invert(ok), "not an integer (不是整数)"),
        (pc.and_(ok, big), "integer out of range (超出整数范围)"),
    ]


def _decimal(s: pa.Array, f: ContractField) -> tuple[pa.Array, list[tuple[pa.Array, str]]]:
    target = pa.decimal128(f.precision, f.scale)
    if pc.all(pc.match_substring_regex(s, _PLAIN_DEC)).as_py() is not False:
        try:  # fast path: plain numbers that all fit; Arrow's cast refuses any loss
            return pc.cast(s, target), []
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    parts = pc.extract_regex(s, _DEC)
    ok = _mask(pc.and_(pc.is_valid(parts), pc.match_substring_regex(s, r"\d")))
    sign = pc.struct_field(parts, "sign")
    whole = pc.utf8_ltrim(pc.replace_substring(pc.struct_field(parts, "int"), ",", ""), "0")
    frac = pc.utf8_rtrim(pc.fill_null(pc.struct_field(parts, "frac"), ""), "0")
    many_frac = _mask(pc.greater(pc.utf8_length(frac), f.scale))
    many_int = _mask(pc.greater(pc.utf8_length(whole), f.precision - f.scale))
    good = pc.and_(ok, pc.invert(pc.or_(many_frac, many_int)))
    text = pc.binary_join_element_wise(
        sign,
        pc.if_else(pc.equal(whole, ""), pa.scalar("0"), whole),
        pa.scalar("."),
        pc.if_else(pc.equal(frac, ""), pa.scalar("0"), frac),
        "",
    )
    typed = pc.cast(_null_unless(good, text), target)
    return typed, [
        (pc.invert(ok), "not a decimal number (不是数值)"),
        (
            pc.and_(ok, many_frac),
            f"more than {f.scale} decimal places, not rounded (小数位数超过 {f.scale} 位, 未舍入)",
        ),
        (
            pc.and_(pc.and_(ok, pc.invert(many_frac)), many_int),
            f"too many digits for decimal({f.precision},{f.scale}) (超出精度)",
        ),
    ]


def _date_ok(s: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(timestamp[s] of the calendar date or null, bool mask of valid dates) for _DATE forms."""
    parts = pc.extract_regex(s, _DATE)
    m = pc.binary_join_element_wise(*(pc.struct_field(parts, f"m{i}") for i in range(1, 6)), "")
    d = pc.binary_join_element_wise(*(pc.struct_field(parts, f"d{i}") for i in range(1, 6)), "")
    iso = pc.binary_join_element_wise(
        pc.struct_field(parts, "y"),
        pc.utf8_lpad(m, 2, "0"),
        pc.utf8_lpad(d, 2, "0"),
        "-",
    )
    ts = pc.strptime(iso, format="%Y-%m-%d", unit="s", error_is_null=True)
    # strptime rolls 2021-02-30 over into March: refuse dates that do not read back the same.
    same = pc.and_(
        pc.equal(pc.month(ts), pc.cast(m, pa.int64(), safe=False)),
        pc.equal(pc.day(ts), pc.cast(d, pa.int64(), safe=False)),
    )
    ok = _mask(same)
    return _null_unless(ok, ts), ok


def _date(s: pa.Array) -> tuple[pa.Array, list[tuple[pa.Array, str]]]:
    try:  # fast path: Arrow's cast reads strict ISO YYYY-MM-DD and refuses 2021-02-30
        return pc.cast(s, pa.date32()), []
    except pa.ArrowInvalid:
        pass
    ts, ok = _date_ok(s)
    return pc.cast(ts, pa.date32()), [(pc.invert(ok), "not a date (日期格式错误)")]


def _timestamp(s: pa.Array) -> tuple[pa.Array, list[tuple[pa.Array, str]]]:
    parts = pc.extract_regex(s, _TS)
    _, date_ok = _date_ok(pc.struct_field(parts, "date"))
    ok = _mask(pc.and_(pc.is_valid(parts), date_ok))
    has_tz = _mask(pc.not_equal(pc.struct_field(parts, "tz"), ""))
    local = pc.cast(_null_unless(pc.and_(ok, pc.invert(has_tz)), s), pa.timestamp("us"))
    local = pc.assume_timezone(local, timezone=TIMEZONE)
    zoned = pc.cast(_null_unless(pc.and_(ok, has_tz), s), pa.timestamp("us", tz="UTC"))
    typed = pc.if_else(has_tz, pc.cast(zoned, local.type), local)
    return typed, [(pc.invert(ok), "not an ISO 8601 timestamp (时间格式错误)")]


def _boolean(s: pa.Array) -> tuple[pa.Array, list[tuple[pa.Array, str]]]:
    low = pc.utf8_lower(s)
    yes = _mask(pc.is_in(low, pa.array(_TRUE)))
    no = _mask(pc.is_in(low, pa.array(_FALSE)))
    ok = pc.or_(yes, no)
    return _null_unless(ok, yes), [(pc.invert(ok), "not a boolean (布尔值错误)")]


def cast_table(table: pa.Table, contract: Contract) -> CastResult:
    """Type the mapped string columns per the contract; set failing cells aside.

    Args:
        table: ``pyarrow.Table[rows × (fields..., _row int64)]`` from
            :func:`pipelines.map_columns`, field columns ``pa.string()``.
        contract: the dataset contract (field types, ``required``, decimal precision/scale).

    Returns:
        :class:`CastResult`: ``table`` typed per :func:`arrow_schema` holding the rows whose
        every cell converted, ``rejects`` one row per failing cell (a blank required value:
        ``required value is blank (必填项为空)``; a bad value: e.g.
        ``not a date (日期格式错误): '2021-13-01'``).

    Raises:
        IngestError: the table lacks a field's column or ``_row`` (a wiring error, not data).

    Examples:
        >>> import pyarrow as pa
        >>> from govdx import Contract
        >>> c = Contract.from_dict({"code": "X-1", "name": "x", "title": "x",
        ...     "department": {"code": "TJJ", "name": "国家统计局"},
        ...     "source": {"path": "x.csv", "format": "csv"}, "share": {"type": "none"},
        ...     "fields": [{"name": "day", "type": "date", "required": True}]})
        >>> r = cast_table(pa.table({"day": ["2021年5月1日", "2021-13-01"], "_row": [2, 3]}), c)
        >>> r.table.column("day").to_pylist(), r.rejects.column("reason").to_pylist()
        ([datetime.date(2021, 5, 1)], ["not a date (日期格式错误): '2021-13-01'"])
    """
    missing = [
        n for n in [f.name for f in contract.fields] + ["_row"] if n not in table.column_names
    ]
    if missing:
        raise IngestError(f"cast_table: the table has no column(s) {missing} (缺少列); map first")
    rows = table.column("_row")
    typed_cols: list[pa.Array | pa.ChunkedArray] = []
    parts: list[pa.Table] = []
    failed = None
    for f in contract.fields:
        raw = table.column(f.name)
        if raw.type != pa.string():
            raw = raw.cast(pa.string())
        trimmed = pc.utf8_trim(raw, WHITESPACE)
        s = pc.if_else(pc.equal(trimmed, ""), _NULL_STR, trimmed)
        present = pc.is_valid(s)
        checks: list[tuple[pa.Array, str]] = []
        if f.type is FieldType.string:
            typed = s
        else:
            typed, checks = {
                FieldType.integer: _int,
                FieldType.date: _date,
                FieldType.timestamp: _timestamp,
                FieldType.boolean: _boolean,
            }.get(f.type, lambda a, f=f: _decimal(a, f))(s)
        masks: list[tuple[pa.Array, str | None]] = [
            (pc.and_(present, bad), reason) for bad, reason in checks
        ]
        if f.required:
            masks.insert(0, (pc.invert(present), None))
        for mask, reason in masks:
            if not pc.any(mask).as_py():
                continue
            failed = mask if failed is None else pc.or_(failed, mask)
            value = raw.filter(mask)
            if reason is None:
                why = pa.array(["required value is blank (必填项为空)"] * len(value), pa.string())
            else:
                why = pc.binary_join_element_wise(
                    pa.scalar(f"{reason}: '"), s.filter(mask), pa.scalar("'"), ""
                )
            parts.append(
                pa.Table.from_arrays(
                    [
                        _chunked(rows.filter(mask)),
                        _chunked(pa.repeat(pa.scalar(f.name), len(value))),
                        _chunked(value),
                        _chunked(why),
                    ],
                    schema=REJECTS_SCHEMA,
                )
            )
        typed_cols.append(typed)
    out = pa.Table.from_arrays(
        [_chunked(c) for c in (*typed_cols, rows)], schema=arrow_schema(contract)
    )
    if failed is None:
        return CastResult(out, empty_rejects())
    rejects = pa.concat_tables(parts).sort_by([("_row", "ascending")])
    return CastResult(out.filter(pc.invert(failed)), rejects)
