"""Built-in quality rules of a contract, computed vectorized over Arrow arrays (质量规则).

Each :class:`Rule` names one check of one field (or pair of fields), its GB/T 36344 dimension
and whether failing rejects the row (quarantine) or is only a *finding* (counted in the scores,
the row passes). :func:`contract_rules` turns a typed table and its contract into rules and
their failure masks (``numpy.bool_[rows]``, True = the row fails); no Python loop per value
unless a vectorized check raises, in which case that field is re-checked value by value and the
values that make the check raise fail with the exception named (the run goes on).

Rules by field (``element`` picks the domain checks)::

    required            not null                                          完整性   reject
    resident_id         18 chars, 17 digits + 0-9/X (GB 11643-1999)       规范性   reject
                        legacy 15-digit number (GB 11643-1989)            规范性   reject
                        MOD 11-2 check character                          准确性   reject
                        birth date a calendar date, not after as_of       准确性   reject
                        region code ever in GB/T 2260 (110104 stays)      准确性   finding (strict: reject)
                        check character written ``x`` (normalised to X)   规范性   finding
    uscc                18 chars of the GB 32100 set                      规范性   reject
                        MOD 31 check character; GB 11714 org code check   准确性   reject
                        region segment 6 digits                           规范性   reject
                        region segment ever in GB/T 2260 (100000 = national) 准确性 finding (strict)
                        lower-case letters (normalised to upper case)     规范性   finding
    region_code         6 digits                                          规范性   reject
                        ever in GB/T 2260                                 准确性   finding (strict)
    phone               mainland mobile 1[3-9]xxxxxxxxx (+86 allowed) or
                        fixed line 0xx(x)-xxxxxxx(x)[-ext]                规范性   reject
    date (and date-typed fields with min_date)
                        not after as_of; not before fields.<f>.min_date   准确性   reject
    amount, count       not negative unless fields.<f>.allow_negative     准确性   reject
    year                1900 .. as_of year                                准确性   reject
    tax_credit_grade    one of A B C D M (纳税信用管理办法)                 规范性   reject
    fields.<f>          min_value/max_value 准确性, value_set/regex 规范性   reject
    primary_key         not a repeat of an earlier row's key              唯一性   reject
    consistency         birth_date_matches_id, not_after (column)         一致性   reject
                        not_after ingestion_date                          时效性   reject
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quality._dimensions import Dimension
from quality._identifiers import resident_id_checks, uscc_checks
from quality._spec import INGESTION_DATE, QualitySpec

if TYPE_CHECKING:
    from govdx import Contract, ContractField
    from quality._regions import RegionCodes

__all__ = ["Rule", "RuleMask", "contract_rules"]

ROW = "_row"
TAX_CREDIT_GRADES = ("A", "B", "C", "D", "M")
MOBILE = r"(?:\+?86-?)?1[3-9][0-9]{9}"
FIXED_LINE = r"0[1-9][0-9]{1,2}-?[2-9][0-9]{6,7}(?:-[0-9]{1,6})?"


@dataclass(frozen=True)
class Rule:
    """One quality rule.

    Attributes:
        id: ``<field>.<element or kind>.<check>``, e.g. ``legal_rep_id.resident_id.check_char``.
        field: field name, or ``a,b`` for cross-field rules.
        dimension: GB/T 36344 dimension.
        reason: what failing means (English and Chinese), stored with quarantined rows.
        reject: True → failing rows are quarantined; False → a finding only.
        standard: the standard or GX expectation the rule implements.
        element: data element of ``field`` (chooses how values are masked in reports).
    """

    id: str
    field: str
    dimension: Dimension
    reason: str
    reject: bool = True
    standard: str = ""
    element: str | None = None


@dataclass
class RuleMask:
    """A rule and the rows failing it: ``failed`` is ``numpy.bool_[rows]`` (True = fails)."""

    rule: Rule
    failed: np.ndarray
    values: Callable[[np.ndarray], pa.Array] = field(repr=False, default=None)  # type: ignore[assignment]
    reasons: dict[int, str] = field(default_factory=dict)
    """Per-row reasons (row position → text) overriding ``rule.reason`` (a check that raised)."""


def _np(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow array as ``numpy.bool_``, null → False."""
    m = pc.fill_null(mask, False)
    if isinstance(m, pa.ChunkedArray):
        m = m.combine_chunks() if m.num_chunks else pa.array([], pa.bool_())
    return m.to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _string(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    a = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return a if pa.types.is_string(a.type) else pc.cast(a, pa.string())


def _value_getter(*cols: pa.ChunkedArray) -> Callable[[np.ndarray], pa.Array]:
    def get(mask: np.ndarray) -> pa.Array:
        sel = pa.array(mask)
        parts = [_string(c.filter(sel)) for c in cols]
        if len(parts) == 1:
            return parts[0]
        return pc.binary_join_element_wise(*[pc.fill_null(p, "") for p in parts], "|")

    return get


def _as_date(col: pa.ChunkedArray) -> pa.ChunkedArray:
    t = col.type
    if pa.types.is_date32(t):
        return col
    if pa.types.is_timestamp(t) or pa.types.is_date64(t):
        return pc.cast(col, pa.date32())
    return pc.cast(col, pa.date32())


class _Builder:
    """Collects rules and masks for one table."""

    def __init__(self, table: pa.Table, spec: QualitySpec, as_of: date, regions: RegionCodes):
        self.table = table
        self.spec = spec
        self.as_of = as_of
        self.regions = regions
        self.n = table.num_rows
        self.out: list[RuleMask] = []
        self.replacements: dict[str, pa.Array] = {}

    def add(self, rule: Rule, failed: np.ndarray, *cols: str) -> None:
        getter = _value_getter(*(self.table[c] for c in cols or rule.field.split(",")))
        self.out.append(RuleMask(rule, np.asarray(failed, dtype=bool), getter))

    # --- per element --------------------------------------------------------------------------
    def region(
        self,
        f: ContractField,
        region: pa.Array,
        known: np.ndarray,
        considered: np.ndarray,
        what: str,
    ) -> None:
        strict = self.spec.is_strict(f.name)
        fails = considered & ~known
        self.add(
            Rule(
                f"{f.name}.{what}.region_known",
                f.name,
                Dimension.accuracy,
                "region code not in the GB/T 2260 division list, historical codes included "
                "(行政区划代码不存在)",
                reject=strict,
                standard="GB/T 2260",
                element=f.element,
            ),
            fails,
        )

    def resident_id(self, f: ContractField) -> None:
        col = self.table[f.name]
        c = resident_id_checks(col, regions=self.regions)
        present = _np(pc.is_valid(col))
        wf, legacy = _np(c["well_formed"]), _np(c["is_legacy_15"])
        check_ok, birth_ok, valid = _np(c["check_ok"]), _np(c["birth_date_ok"]), _np(c["valid"])
        e, name = f.element, f.name
        std = "GB 11643-1999"
        self.add(
            Rule(
                f"{name}.resident_id.legacy_15",
                name,
                Dimension.conformity,
                "legacy 15-digit resident ID, not accepted: upgrade to 18 digits "
                "(15位旧身份证号, GB 11643-1989)",
                standard="GB 11643-1989",
                element=e,
            ),
            legacy,
        )
        self.add(
            Rule(
                f"{name}.resident_id.format",
                name,
                Dimension.conformity,
                "not an 18-character resident ID of 17 digits and 0-9/X (公民身份号码格式错误)",
                standard=std,
                element=e,
            ),
            present & ~wf & ~legacy,
        )
        self.add(
            Rule(
                f"{name}.resident_id.check_char",
                name,
                Dimension.accuracy,
                "GB 11643 check character does not match (公民身份号码校验码错误)",
                standard=std + " / ISO 7064 MOD 11-2",
                element=e,
            ),
            wf & ~check_ok,
        )
        born = pc.cast(c["birth_date"], pa.date32())
        future = _np(pc.greater(born, pa.scalar(self.as_of, pa.date32())))
        self.add(
            Rule(
                f"{name}.resident_id.birth_date",
                name,
                Dimension.accuracy,
                "birth date in the resident ID is not a calendar date or is in the future "
                "(出生日期无效)",
                standard=std,
                element=e,
            ),
            (wf & check_ok & ~birth_ok) | future,
        )
        self.region(f, c["region"], _np(c["region_known"]), valid, "resident_id")
        lower = _np(c["lower_x"])
        self.add(
            Rule(
                f"{name}.resident_id.lower_x",
                name,
                Dimension.conformity,
                "check character written as lower-case x, normalised to X (校验码小写x, 已规范为X)",
                reject=False,
                standard=std,
                element=e,
            ),
            lower,
        )
        if lower.any():
            arr = _string(col)
            self.replacements[name] = pc.if_else(pa.array(lower), pc.utf8_upper(arr), arr)

    def uscc(self, f: ContractField) -> None:
        col = self.table[f.name]
        c = uscc_checks(col, regions=self.regions)
        present = _np(pc.is_valid(col))
        wf, check_ok, org_ok = _np(c["well_formed"]), _np(c["check_ok"]), _np(c["org_code_ok"])
        valid = _np(c["valid"])
        e, name, std = f.element, f.name, "GB 32100-2015"
        self.add(
            Rule(
                f"{name}.uscc.format",
                name,
                Dimension.conformity,
                "not 18 characters of the GB 32100 set (no I, O, Z, S, V) "
                "(统一社会信用代码格式错误)",
                standard=std,
                element=e,
            ),
            present & ~wf,
        )
        self.add(
            Rule(
                f"{name}.uscc.check_char",
                name,
                Dimension.accuracy,
                "GB 32100 check character does not match (统一社会信用代码校验码错误)",
                standard=std + " MOD 31",
                element=e,
            ),
            wf & ~check_ok,
        )
        self.add(
            Rule(
                f"{name}.uscc.org_code",
                name,
                Dimension.accuracy,
                "embedded organisation code check character does not match "
                "(组织机构代码校验码错误, GB 11714)",
                standard="GB 11714-1997",
                element=e,
            ),
            wf & check_ok & ~org_ok,
        )
        digits = _np(pc.match_substring_regex(c["region"], r"^[0-9]{6}$"))
        self.add(
            Rule(
                f"{name}.uscc.region_format",
                name,
                Dimension.conformity,
                "region segment (positions 3-8) is not 6 digits (登记管理机关行政区划码错误)",
                standard=std,
                element=e,
            ),
            valid & ~digits,
        )
        national = _np(pc.equal(c["region"], "100000"))
        self.region(f, c["region"], _np(c["region_known"]) | national, valid & digits, "uscc")
        lower = _np(c["lower_case"])
        self.add(
            Rule(
                f"{name}.uscc.lower_case",
                name,
                Dimension.conformity,
                "lower-case letters, normalised to upper case (含小写字母, 已规范为大写)",
                reject=False,
                standard=std,
                element=e,
            ),
            lower & valid,
        )
        if lower.any():
            arr = _string(col)
            self.replacements[name] = pc.if_else(pa.array(lower), pc.utf8_upper(arr), arr)

    def region_code(self, f: ContractField) -> None:
        col = _string(self.table[f.name])
        six = _np(pc.match_substring_regex(col, r"^[0-9]{6}$"))
        present = _np(pc.is_valid(col))
        self.add(
            Rule(
                f"{f.name}.region_code.format",
                f.name,
                Dimension.conformity,
                "not a 6-digit division code (行政区划代码格式错误)",
                standard="GB/T 2260",
                element=f.element,
            ),
            present & ~six,
        )
        known = _np(pc.is_in(col, value_set=pa.array(sorted(self.regions.all_codes), pa.string())))
        self.region(f, col, known, six, "region_code")

    def phone(self, f: ContractField) -> None:
        col = _string(self.table[f.name])
        ok = pc.match_substring_regex(col, f"^(?:{MOBILE}|{FIXED_LINE})$")
        present = _np(pc.is_valid(col))
        self.add(
            Rule(
                f"{f.name}.phone.format",
                f.name,
                Dimension.conformity,
                "not a mainland mobile (1[3-9] + 9 digits) or fixed-line number (电话号码格式错误)",
                standard="GB/T 2261 / 工信部号码规划",
                element=f.element,
            ),
            present & ~_np(ok),
        )

    def date_checks(self, f: ContractField) -> None:
        d = _as_date(self.table[f.name])
        opts = self.spec.field_rules(f.name)
        if f.element == "date":
            self.add(
                Rule(
                    f"{f.name}.date.not_future",
                    f.name,
                    Dimension.accuracy,
                    "date is after the ingestion date (日期晚于当前日期)",
                    element=f.element,
                ),
                _np(pc.greater(d, pa.scalar(self.as_of, pa.date32()))),
            )
        if opts.min_date is not None:
            self.add(
                Rule(
                    f"{f.name}.date.min_date",
                    f.name,
                    Dimension.accuracy,
                    f"date before {opts.min_date.isoformat()} (日期早于下限)",
                    element=f.element,
                ),
                _np(pc.less(d, pa.scalar(opts.min_date, pa.date32()))),
            )

    def amount(self, f: ContractField) -> None:
        if self.spec.field_rules(f.name).allow_negative:
            return
        col = self.table[f.name]
        neg = (
            pc.less(col, pa.scalar(0, col.type))
            if pa.types.is_decimal(col.type)
            else pc.less(col, 0)
        )
        what = "amount" if f.element == "amount" else f.element
        self.add(
            Rule(
                f"{f.name}.{what}.non_negative",
                f.name,
                Dimension.accuracy,
                f"negative {what} (数值为负)",
                standard="expect_column_values_to_be_between",
                element=f.element,
            ),
            _np(neg),
        )

    def year(self, f: ContractField) -> None:
        col = pc.cast(self.table[f.name], pa.int64())
        bad = pc.or_(pc.less(col, 1900), pc.greater(col, self.as_of.year))
        self.add(
            Rule(
                f"{f.name}.year.range",
                f.name,
                Dimension.accuracy,
                f"year outside 1900..{self.as_of.year} (年份超出范围)",
                element=f.element,
            ),
            _np(bad),
        )

    def options(self, f: ContractField) -> None:
        o = self.spec.field_rules(f.name)
        col = self.table[f.name]
        if o.min_value is not None or o.max_value is not None:
            num = pc.cast(col, pa.float64())
            bad = pa.array(np.zeros(self.n, dtype=bool))
            if o.min_value is not None:
                bad = pc.or_(bad, pc.fill_null(pc.less(num, o.min_value), False))
            if o.max_value is not None:
                bad = pc.or_(bad, pc.fill_null(pc.greater(num, o.max_value), False))
            self.add(
                Rule(
                    f"{f.name}.range",
                    f.name,
                    Dimension.accuracy,
                    f"value outside [{o.min_value}, {o.max_value}] (数值超出范围)",
                    standard="expect_column_values_to_be_between",
                    element=f.element,
                ),
                _np(bad),
            )
        if o.value_set is not None:
            self.value_set(f, [str(v) for v in o.value_set])
        if o.regex is not None:
            ok = pc.match_substring_regex(_string(col), f"^(?:{o.regex})$")
            present = _np(pc.is_valid(col))
            self.add(
                Rule(
                    f"{f.name}.regex",
                    f.name,
                    Dimension.conformity,
                    f"does not match {o.regex!r} (格式不符)",
                    standard="expect_column_values_to_match_regex",
                    element=f.element,
                ),
                present & ~_np(ok),
            )

    def value_set(self, f: ContractField, values: list[str]) -> None:
        col = _string(self.table[f.name])
        present = _np(pc.is_valid(col))
        inset = _np(pc.is_in(col, value_set=pa.array(values, pa.string())))
        self.add(
            Rule(
                f"{f.name}.value_set",
                f.name,
                Dimension.conformity,
                f"not one of {values} (不在值域内)",
                standard="expect_column_values_to_be_in_set",
                element=f.element,
            ),
            present & ~inset,
        )


_ELEMENT_CHECKS: dict[str, str] = {
    "resident_id": "resident_id",
    "uscc": "uscc",
    "region_code": "region_code",
    "phone": "phone",
    "amount": "amount",
    "count": "amount",
    "year": "year",
}


def _duplicate_mask(table: pa.Table, keys: list[str]) -> np.ndarray:
    """``numpy.bool_[rows]``: the row repeats the key of an earlier row (first occurrence passes)."""
    n = table.num_rows
    if n == 0:
        return np.zeros(0, dtype=bool)
    idx = pa.array(np.arange(n, dtype=np.int64))
    t = table.select(keys).append_column("__i", idx)
    first = t.group_by(keys, use_threads=False).aggregate([("__i", "min")])["__i_min"]
    out = np.ones(n, dtype=bool)
    out[first.to_numpy()] = False
    return out


def _fallback(
    b: _Builder, f: ContractField, method: Callable[[ContractField], None], exc: Exception
) -> None:
    """Re-run a field's element checks value by value after the vectorized check raised."""
    raised = np.zeros(b.n, dtype=bool)
    why: dict[int, str] = {}
    per_rule: dict[str, tuple[Rule, np.ndarray]] = {}
    for i in range(b.n):
        sub = _Builder(b.table.slice(i, 1), b.spec, b.as_of, b.regions)
        try:
            method.__func__(sub, f)  # type: ignore[attr-defined]
        except Exception as inner:
            raised[i] = True
            why[i] = f"{type(inner).__name__}: {inner}"
            continue
        for rm in sub.out:
            rule, arr = per_rule.setdefault(rm.rule.id, (rm.rule, np.zeros(b.n, dtype=bool)))
            arr[i] = bool(rm.failed[0])
    for rule, arr in per_rule.values():
        b.add(rule, arr)
    first = next(iter(why.values()), f"{type(exc).__name__}: {exc}")
    b.add(
        Rule(
            f"{f.name}.{f.element}.check_error",
            f.name,
            Dimension.accuracy,
            f"check raised on this value ({first}) (校验异常)",
            element=f.element,
        ),
        raised,
    )
    b.out[-1].reasons = {
        i: f"check raised on this value: {text} (校验异常)" for i, text in why.items()
    }


def contract_rules(
    table: pa.Table, contract: Contract, spec: QualitySpec, *, as_of: date, regions: RegionCodes
) -> tuple[list[RuleMask], pa.Table]:
    """Evaluate the built-in rules of a contract on a typed table.

    Args:
        table: ``pyarrow.Table[rows × (contract fields [+ _row])]`` typed by the cast step.
        contract: the dataset contract.
        spec: its parsed quality section (:func:`quality.quality_spec`).
        as_of: the ingestion date (dates after it are in the future).
        regions: GB/T 2260 codes (:func:`quality.division_codes`).

    Returns:
        ``(masks, normalised table)``: one :class:`RuleMask` per rule (in a stable order), and
        the table with lower-case ``x`` / USCC letters upper-cased.
    """
    b = _Builder(table, spec, as_of, regions)
    names = set(table.column_names)
    for f in contract.fields:
        if f.name not in names:
            continue
        if f.required:
            b.add(
                Rule(
                    f"{f.name}.required",
                    f.name,
                    Dimension.completeness,
                    "required value is blank (必填项为空)",
                    standard="expect_column_values_to_not_be_null",
                    element=f.element,
                ),
                ~_np(pc.is_valid(table[f.name])),
            )
        kind = _ELEMENT_CHECKS.get(f.element or "")
        methods: list[Callable[[ContractField], None]] = []
        if kind:
            methods.append(getattr(b, kind))
        if f.element == "tax_credit_grade":
            methods.append(lambda fld: b.value_set(fld, list(TAX_CREDIT_GRADES)))
        if f.element == "date" or (
            f.type.value in ("date", "timestamp") and spec.field_rules(f.name).min_date is not None
        ):
            methods.append(b.date_checks)
        methods.append(b.options)
        for m in methods:
            try:
                m(f)
            except Exception as exc:
                if hasattr(m, "__func__") and table.num_rows > 0:
                    _fallback(b, f, m, exc)
                else:
                    raise
    if contract.primary_key:
        keys = contract.primary_key
        src = table
        if any(k in b.replacements for k in keys):
            src = table.select(keys)
            for k in keys:
                if k in b.replacements:
                    src = src.set_column(src.column_names.index(k), k, b.replacements[k])
        b.add(
            Rule(
                f"{','.join(keys)}.primary_key.unique",
                ",".join(keys),
                Dimension.uniqueness,
                f"duplicate primary key (主键重复): {', '.join(keys)}",
                standard="expect_compound_columns_to_be_unique",
            ),
            _duplicate_mask(src, keys),
        )
    for rule in spec.consistency:
        if rule.check == "birth_date_matches_id":
            ids, dates = rule.id_column, rule.date_column
            born = resident_id_checks(table[ids])["birth_date"]
            given = _as_date(table[dates])
            differ = _np(pc.not_equal(pc.cast(born, pa.date32()), given))
            b.add(
                Rule(
                    f"{ids},{dates}.consistency.birth_date_matches_id",
                    f"{ids},{dates}",
                    Dimension.consistency,
                    f"{dates} differs from the birth date inside {ids} (出生日期与身份证号不一致)",
                    element=None,
                ),
                differ,
            )
        else:
            a = _as_date(table[rule.column])
            if rule.other == INGESTION_DATE:
                late = _np(pc.greater(a, pa.scalar(as_of, pa.date32())))
                b.add(
                    Rule(
                        f"{rule.column}.consistency.not_after_ingestion",
                        rule.column,
                        Dimension.timeliness,
                        f"{rule.column} is after the ingestion date {as_of.isoformat()} "
                        "(晚于归集日期)",
                    ),
                    late,
                )
            else:
                late = _np(pc.greater(a, _as_date(table[rule.other])))
                b.add(
                    Rule(
                        f"{rule.column},{rule.other}.consistency.not_after",
                        f"{rule.column},{rule.other}",
                        Dimension.consistency,
                        f"{rule.column} is after {rule.other} (日期先后不一致)",
                    ),
                    late,
                )
    normalised = table
    for name, arr in b.replacements.items():
        normalised = normalised.set_column(
            normalised.column_names.index(name), name, arr.cast(table.schema.field(name).type)
        )
    return b.out, normalised
