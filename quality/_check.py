"""Run a contract's quality suite on a typed table: row outcomes, findings and scores.

:func:`check_table` is what the pipeline's validate step calls. It evaluates the built-in rules
(:mod:`quality._rules`), builds the contract's GX suite (built-in rules as
``expect_column_values_to_pass_govdx_check`` on precomputed check columns, steward expectations
as written on the real columns), runs it through a GX ValidationDefinition, and turns GX's
``unexpected_index_list`` of every expectation into quarantine rows (rule, dimension, reason)
or findings, and into GB/T 36344 dimension scores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quality._dimensions import Dimension, dimension_of
from quality._regions import RegionCodes, division_codes
from quality._rules import ROW, Rule, RuleMask, contract_rules
from quality._spec import QualitySpec, quality_spec

if TYPE_CHECKING:
    from govdx import Contract

__all__ = [
    "REJECT_SCHEMA",
    "QualityOutcome",
    "QualityScores",
    "RuleResult",
    "build_suite",
    "check_table",
    "prior_reject_rules",
]

REJECT_SCHEMA = pa.schema(
    [
        pa.field(ROW, pa.int64()),
        pa.field("field", pa.string()),
        pa.field("value", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("rule", pa.string()),
        pa.field("dimension", pa.string()),
    ]
)
"""One row per broken rule per source row (plaintext ``value``, masked before storage)."""

BEIJING = ZoneInfo("Asia/Shanghai")
EXAMPLES = 3
MEASURED = (
    Dimension.conformity,
    Dimension.completeness,
    Dimension.accuracy,
    Dimension.consistency,
    Dimension.timeliness,
    Dimension.uniqueness,
)


@dataclass(frozen=True)
class RuleResult:
    """Outcome of one rule on one version.

    Attributes:
        rule: rule id. field: field(s). dimension: GB/T 36344 term (规范性 …).
        severity: ``reject`` (rows quarantined) or ``finding`` (rows pass, score lowered).
        failed: rows failing (rows). standard: standard / GX expectation it implements.
        examples: up to 3 failing values, masked when the field is sensitive.
        error: exception text when GX could not evaluate a steward expectation, else None.
    """

    rule: str
    field: str
    dimension: str
    severity: str
    failed: int
    standard: str = ""
    examples: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class QualityScores:
    """GB/T 36344 scores of one version (质量评分).

    Attributes:
        rows_in: data rows read. rows_passed: rows kept. rows_quarantined: rows set aside.
        pass_rate: rows_passed / rows_in (0..1).
        dimensions: dimension term → pass rate 0..1 (rows with no failure of that dimension,
            findings included, over rows_in); ``None`` when no rule measures it (可访问性 is
            never measured row by row).
        overall: mean of the measured dimension pass rates (0..1).
        rules: every rule of the suite with its failure count, worst first.
        as_of: ingestion date (ISO) the date rules used.
    """

    rows_in: int
    rows_passed: int
    rows_quarantined: int
    pass_rate: float
    dimensions: dict[str, float | None]
    overall: float
    rules: list[RuleResult]
    as_of: str

    def rule(self, rule_id: str) -> RuleResult:
        """The result of rule ``rule_id``. Raises KeyError when the suite has no such rule."""
        for r in self.rules:
            if r.rule == rule_id:
                return r
        raise KeyError(rule_id)

    def failed_by_rule(self) -> dict[str, int]:
        """Rule id → failing rows."""
        return {r.rule: r.failed for r in self.rules}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (for the catalog and reports)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityScores:
        """Inverse of :meth:`to_dict`."""
        d = dict(data)
        d["rules"] = [RuleResult(**r) for r in d.get("rules", [])]
        return cls(**d)


@dataclass
class QualityOutcome:
    """What :func:`check_table` found.

    Attributes:
        table: the input table with normalised values (lower-case ``x`` → ``X``), all rows.
        rejects: ``pyarrow.Table`` in :data:`REJECT_SCHEMA`: rows to quarantine, one per broken
            rule (prior parse/cast rejects included, mapped to 规范性/完整性).
        findings: same schema: non-rejecting findings (rows pass).
        scores: :class:`QualityScores`.
        gx_result: the GX ``ExpectationSuiteValidationResult`` (for Data Docs).
    """

    table: pa.Table
    rejects: pa.Table
    findings: pa.Table
    scores: QualityScores
    gx_result: Any = None


def _sensitive(contract: Contract, fields: str) -> tuple[bool, str | None]:
    names = fields.split(",")
    try:
        fs = [contract.field(n) for n in names]
    except KeyError:
        return False, None
    sens = any(f.protected or f.pi.value != "none" for f in fs)
    return sens, (fs[0].element if len(fs) == 1 else None)


def _mask(values: pa.Array, contract: Contract, fields: str) -> pa.Array:
    sens, element = _sensitive(contract, fields)
    if not sens or len(values) == 0:
        return values
    from privacy import mask_array

    return mask_array(values, element)


def prior_reject_rules(prior: pa.Table) -> pa.Table:
    """Give parse/cast rejects a rule and a dimension.

    ``required value is blank (必填项为空)`` → ``<field>.required``, 完整性; any other cell that
    would not convert → ``<field>.type``, 规范性; a row without a field (unreadable line) →
    ``row.parse``, 规范性.

    Args:
        prior: ``pyarrow.Table[_row, field, value, reason (, rule, dimension)]``.

    Returns:
        ``pyarrow.Table`` in :data:`REJECT_SCHEMA`.
    """
    if prior.num_rows == 0:
        return REJECT_SCHEMA.empty_table()
    if "rule" in prior.column_names and "dimension" in prior.column_names:
        return prior.select(REJECT_SCHEMA.names).cast(REJECT_SCHEMA)
    base = prior.select([ROW, "field", "value", "reason"])
    fieldc = pc.cast(base["field"], pa.string())
    blank = pc.fill_null(pc.match_substring(base["reason"], "必填项为空"), False)
    nofield = pc.or_(pc.is_null(fieldc), pc.equal(pc.fill_null(fieldc, ""), ""))
    rule = pc.if_else(
        nofield,
        pa.scalar("row.parse"),
        pc.binary_join_element_wise(
            pc.fill_null(fieldc, ""),
            pc.if_else(blank, pa.scalar("required"), pa.scalar("type")),
            ".",
        ),
    )
    dim = pc.if_else(
        blank, pa.scalar(Dimension.completeness.value), pa.scalar(Dimension.conformity.value)
    )
    return pa.table(
        {
            ROW: base[ROW],
            "field": fieldc,
            "value": pc.cast(base["value"], pa.string()),
            "reason": pc.cast(base["reason"], pa.string()),
            "rule": rule,
            "dimension": dim,
        },
        schema=REJECT_SCHEMA,
    )


# --- the GX suite ---------------------------------------------------------------------------------
def _check_column(i: int) -> str:
    return f"__check__{i}"


def _steward_rule(i: int, e: Any) -> Rule:
    kw = e.kwargs
    cols = [kw.get("column") or kw.get("column_A")]
    if kw.get("column_B"):
        cols.append(kw["column_B"])
    if kw.get("column_list"):
        cols = list(kw["column_list"])
    fields = ",".join(c for c in cols if c)
    args = ", ".join(f"{k}={v!r}" for k, v in kw.items() if k not in ("column", "column_list"))
    return Rule(
        id=f"{fields}.gx.{i}.{e.expectation}",
        field=fields,
        dimension=dimension_of(e.expectation, e.dimension),
        reason=f"{e.expectation}({args}) not met (不满足管理员设定的质量规则)",
        standard=e.expectation,
    )


def build_suite(contract: Contract, masks: list[RuleMask] | None = None) -> Any:
    """The contract's GX expectation suite (``great_expectations.ExpectationSuite``).

    Args:
        contract: the dataset contract.
        masks: rules evaluated on a table (from :func:`quality._rules.contract_rules`); when
            ``None`` the suite is built from an empty table of the contract's types, which lists
            every built-in rule.

    Returns:
        An ``ExpectationSuite`` named after the contract code: one
        ``expect_column_values_to_pass_govdx_check`` per built-in rule (column
        ``__check__<n>``, meta ``govdx_rule``), then the steward expectations as written.
    """
    from quality._gxenv import import_gx

    gx = import_gx()  # before any great_expectations module (see quality._gxenv)
    from great_expectations.expectations.registry import get_expectation_impl

    from quality._gx import ExpectColumnValuesToPassGovdxCheck

    spec = quality_spec(contract)
    if masks is None:
        masks, _ = contract_rules(
            _empty(contract), contract, spec, as_of=date.today(), regions=division_codes()
        )
    exps: list[Any] = []
    for i, m in enumerate(masks):
        r = m.rule
        exps.append(
            ExpectColumnValuesToPassGovdxCheck(
                column=_check_column(i),
                rule=r.id,
                field=r.field,
                dimension=r.dimension.value,
                reason=r.reason,
                standard=r.standard,
                meta={"govdx_rule": r.id, "severity": "reject" if r.reject else "finding"},
            )
        )
    for i, e in enumerate(spec.expectations):
        r = _steward_rule(i, e)
        cls = get_expectation_impl(e.expectation)
        exps.append(cls(**e.kwargs, meta={"govdx_rule": r.id, "severity": "reject"}))
    return gx.ExpectationSuite(name=contract.code, expectations=exps)


def _empty(contract: Contract) -> pa.Table:
    from pipelines._cast import arrow_schema

    return arrow_schema(contract).empty_table()


def _pandas_column(col: pa.ChunkedArray) -> Any:
    t = col.type
    if pa.types.is_decimal(t):
        col = pc.cast(col, pa.float64())
    if pa.types.is_date(t):
        return col.to_pandas(date_as_object=False)
    return col.to_pandas()


_POS = "__pos__"  # row position column of the Spark frame (GX's unexpected_index_column_names)


def _failed_positions(res: Any, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    idx = (res.result or {}).get("unexpected_index_list") or []
    if idx and isinstance(idx[0], dict):
        idx = [next(iter(d.values())) for d in idx]
    if idx:
        out[np.asarray(idx, dtype=np.int64)] = True
    return out


def _run_suite_on_spark(
    spark: Any, name: str, frame: dict[str, Any], normalised: pa.Table, suite: Any
) -> Any:
    """The suite on GX's Spark data source over a Spark DataFrame of the same columns.

    Check columns are the boolean masks; steward columns are the Arrow columns (decimals as
    float64, as on pandas); ``__pos__`` (int64 row position) identifies failing rows.
    """
    from quality._gx import run_suite

    n = normalised.num_rows
    cols: dict[str, Any] = {}
    for c, v in frame.items():
        if isinstance(v, np.ndarray):
            cols[c] = pa.array(v)
        else:
            col = normalised[c]
            cols[c] = pc.cast(col, pa.float64()) if pa.types.is_decimal(col.type) else col
    cols[_POS] = pa.array(np.arange(n, dtype=np.int64))
    sdf = spark.createDataFrame(pa.table(cols))
    try:
        return run_suite(name, sdf, list(suite.expectations), index_column=_POS)
    finally:
        sdf.unpersist()


def check_table(
    table: pa.Table,
    contract: Contract,
    *,
    rows_in: int | None = None,
    prior_rejects: pa.Table | None = None,
    as_of: date | None = None,
    regions: RegionCodes | None = None,
    spark: Any = None,
) -> QualityOutcome:
    """Run the contract's quality suite on a typed table.

    Args:
        table: ``pyarrow.Table[rows × (contract fields + _row int64)]`` from the cast step.
        contract: the dataset contract (its ``quality`` section is read).
        rows_in: source data rows (parsed + unreadable); default ``table.num_rows``.
        prior_rejects: parse/cast rejects ``[_row, field, value, reason]``; they count in the
            scores (规范性 / 完整性) and are returned in ``rejects``.
        as_of: ingestion date (default: today in Asia/Shanghai); dates after it are future.
        regions: GB/T 2260 codes; default the shipped list.
        spark: a ``pyspark.sql.SparkSession``: run the GX suite on GX's Spark data source over
            a Spark DataFrame of the same columns (same results); ``None``: on pandas.

    Returns:
        :class:`QualityOutcome`.

    Raises:
        govdx.ContractError: the quality section is invalid (see :func:`check_contract`).
    """
    spec: QualitySpec = quality_spec(contract)
    as_of = as_of or datetime.now(BEIJING).date()
    regions = regions or division_codes()
    n = table.num_rows
    rows_in = n if rows_in is None else rows_in
    if ROW not in table.column_names:
        table = table.append_column(ROW, pa.array(np.arange(n, dtype=np.int64)))
    masks, normalised = contract_rules(table, contract, spec, as_of=as_of, regions=regions)
    gx_result = None
    steward = [(_steward_rule(i, e), e) for i, e in enumerate(spec.expectations)]
    if n:
        import pandas as pd

        from quality._gx import run_suite

        frame: dict[str, Any] = {_check_column(i): ~m.failed for i, m in enumerate(masks)}
        for _, e in steward:
            kw = e.kwargs
            for c in [
                kw.get("column"),
                kw.get("column_A"),
                kw.get("column_B"),
                *(kw.get("column_list") or []),
            ]:
                if c and c not in frame:
                    # on Spark the Arrow column is taken in _run_suite_on_spark
                    frame[c] = _pandas_column(normalised[c]) if spark is None else None
        suite = build_suite(contract, masks)
        if spark is None:
            gx_result = run_suite(contract.code, pd.DataFrame(frame), list(suite.expectations))
        else:
            gx_result = _run_suite_on_spark(spark, contract.code, frame, normalised, suite)
        by_rule = {r.expectation_config.meta.get("govdx_rule"): r for r in gx_result.results}
        for m in masks:  # GX's unexpected_index_list is the authority for failing rows
            res = by_rule.get(m.rule.id)
            if res is not None:
                m.failed = _failed_positions(res, n)
    errors: dict[str, str] = {}
    for rule, _e in steward:
        failed = np.zeros(n, dtype=bool)
        if gx_result is not None:
            res = by_rule.get(rule.id)
            exc = (res.exception_info or {}) if res is not None else {}
            if exc.get("raised_exception"):
                errors[rule.id] = str(exc.get("exception_message"))
            elif res is not None:
                failed = _failed_positions(res, n)
        cols = rule.field.split(",")
        from quality._rules import _value_getter

        masks.append(RuleMask(rule, failed, _value_getter(*(normalised[c] for c in cols))))

    rows = normalised[ROW].to_numpy()
    prior = (
        prior_reject_rules(prior_rejects)
        if prior_rejects is not None
        else REJECT_SCHEMA.empty_table()
    )
    rej_parts, find_parts = [prior], []
    results: list[RuleResult] = []
    dim_rows: dict[str, list[np.ndarray]] = {}
    for dim_value, grp in _group_prior(prior).items():
        dim_rows.setdefault(dim_value, []).append(grp)
    for m in masks:
        r = m.rule
        k = int(m.failed.sum())
        examples: list[str] = []
        if k:
            values = m.values(m.failed)
            reasons = pa.array([r.reason] * k, pa.string())
            if m.reasons:
                pos = np.flatnonzero(m.failed)
                reasons = pa.array([m.reasons.get(int(p), r.reason) for p in pos], pa.string())
            part = pa.table(
                {
                    ROW: pa.array(rows[m.failed]),
                    "field": pa.array([r.field] * k, pa.string()),
                    "value": values,
                    "reason": reasons,
                    "rule": pa.array([r.id] * k, pa.string()),
                    "dimension": pa.array([r.dimension.value] * k, pa.string()),
                },
                schema=REJECT_SCHEMA,
            )
            (rej_parts if r.reject else find_parts).append(part)
            examples = [
                v if v is not None else ""
                for v in _mask(values.slice(0, EXAMPLES), contract, r.field).to_pylist()
            ]
            dim_rows.setdefault(r.dimension.value, []).append(rows[m.failed])
        else:
            dim_rows.setdefault(r.dimension.value, [])
        results.append(
            RuleResult(
                rule=r.id,
                field=r.field,
                dimension=r.dimension.value,
                severity="reject" if r.reject else "finding",
                failed=k,
                standard=r.standard,
                examples=examples,
                error=errors.get(r.id),
            )
        )
    index = {r.rule: i for i, r in enumerate(results)}
    for p in _prior_results(prior, contract):  # found while casting: same rule, other rows
        if p.rule in index:
            old = results[index[p.rule]]
            results[index[p.rule]] = RuleResult(
                rule=old.rule,
                field=old.field,
                dimension=old.dimension,
                severity=old.severity,
                failed=old.failed + p.failed,
                standard=old.standard,
                examples=(old.examples + p.examples)[:EXAMPLES],
                error=old.error,
            )
        else:
            results.append(p)
    rejects = pa.concat_tables(rej_parts) if rej_parts else REJECT_SCHEMA.empty_table()
    findings = pa.concat_tables(find_parts) if find_parts else REJECT_SCHEMA.empty_table()
    quarantined = len(pc.unique(rejects[ROW])) if rejects.num_rows else 0
    rej_rows = rejects[ROW].to_numpy() if rejects.num_rows else np.empty(0, np.int64)
    passed_rows = int((~np.isin(rows, rej_rows)).sum()) if n else 0
    dims: dict[str, float | None] = {}
    for d in Dimension:
        if d.value not in dim_rows:
            dims[d.value] = None
            continue
        parts = dim_rows[d.value]
        bad = len(np.unique(np.concatenate(parts))) if parts else 0
        dims[d.value] = 1.0 if rows_in == 0 else 1.0 - bad / rows_in
    measured = [v for v in dims.values() if v is not None]
    results.sort(key=lambda r: (-r.failed, r.rule))
    scores = QualityScores(
        rows_in=rows_in,
        rows_passed=passed_rows,
        rows_quarantined=quarantined,
        pass_rate=1.0 if rows_in == 0 else passed_rows / rows_in,
        dimensions=dims,
        overall=float(np.mean(measured)) if measured else 1.0,
        rules=results,
        as_of=as_of.isoformat(),
    )
    return QualityOutcome(
        table=normalised, rejects=rejects, findings=findings, scores=scores, gx_result=gx_result
    )


def _group_prior(prior: pa.Table) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if prior.num_rows == 0:
        return out
    for d in pc.unique(prior["dimension"]).to_pylist():
        sel = pc.equal(prior["dimension"], d)
        out[d] = prior[ROW].filter(sel).to_numpy()
    return out


def _prior_results(prior: pa.Table, contract: Contract) -> list[RuleResult]:
    if prior.num_rows == 0:
        return []
    out = []
    for rule in pc.unique(prior["rule"]).to_pylist():
        sel = prior.filter(pc.equal(prior["rule"], rule))
        fieldname = sel["field"][0].as_py() or ""
        examples = _mask(sel["value"].slice(0, EXAMPLES).combine_chunks(), contract, fieldname)
        out.append(
            RuleResult(
                rule=rule,
                field=fieldname,
                dimension=sel["dimension"][0].as_py(),
                severity="reject",
                failed=len(pc.unique(sel[ROW])),
                standard="cast (类型转换)",
                examples=[v or "" for v in examples.to_pylist()],
            )
        )
    return out
