"""Validate step (校验): the row-level checks of the ingest pipeline and the quality gate.

The checks are the contract's quality suite (:func:`quality.check_table`): required values and
types (found while casting, carried in as prior rejects), primary-key uniqueness, the element
checks (GB 11643 resident IDs, GB 32100 USCCs, GB/T 2260 region codes, phones, dates, amounts),
cross-field consistency and the steward's Great Expectations, run through a GX validation
definition. Whatever checks run, the outcome has one shape: rows that pass go on (normalised:
lower-case ``x`` → ``X``), every failing row goes to quarantine with its rule(s), reason(s) and
GB/T 36344 dimension, and ``rows_in == rows passed + rows quarantined`` always holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from govdx import Contract
from pipelines._errors import QualityGateError

ROW = "_row"
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


@dataclass
class ValidationResult:
    """Rows that passed and the reasons of those that did not.

    Attributes:
        passed: pyarrow.Table[rows × (contract fields + ``_row``)], typed, normalised.
        rejects: pyarrow.Table[_row int64, field, value, reason, rule, dimension (string)]; one
            row per broken rule; plaintext values, kept in memory only (masked before storage).
        rows_in: data rows read from the source.
        findings: same schema as ``rejects``: non-rejecting findings (e.g. a lower-case ``x``
            normalised, an unknown region code in a non-strict contract); the rows passed.
        scores: :class:`quality.QualityScores` (per-dimension pass rates, per-rule counts),
            ``None`` when built by hand.
        gx_result: the Great Expectations validation result (for Data Docs), or ``None``.
    """

    passed: pa.Table
    rejects: pa.Table
    rows_in: int
    findings: pa.Table = field(default_factory=lambda: REJECT_SCHEMA.empty_table())
    scores: Any = None
    gx_result: Any = None

    @property
    def rows_quarantined(self) -> int:
        """Distinct source rows with at least one reject."""
        if self.rejects.num_rows == 0:
            return 0
        return len(pc.unique(self.rejects[ROW]))

    @property
    def pass_rate(self) -> float:
        """Share of source rows that passed, 0..1 (1.0 for an empty source)."""
        return 1.0 if self.rows_in == 0 else self.passed.num_rows / self.rows_in

    def check_invariant(self) -> None:
        """Assert that no row was lost: rows_in == passed + quarantined."""
        if self.passed.num_rows + self.rows_quarantined != self.rows_in:
            raise AssertionError(
                f"row accounting broken: {self.rows_in} in, {self.passed.num_rows} passed, "
                f"{self.rows_quarantined} quarantined"
            )


def empty_rejects() -> pa.Table:
    return REJECT_SCHEMA.empty_table()


def duplicate_key_rejects(table: pa.Table, contract: Contract) -> pa.Table:
    """Rows whose primary key repeats an earlier row's (the first occurrence passes).

    Returns:
        pyarrow.Table in :data:`REJECT_SCHEMA`, one row per duplicate, reason naming the key.
    """
    keys = contract.primary_key
    if not keys or table.num_rows == 0:
        return empty_rejects()
    idx = pa.array(range(table.num_rows), pa.int64())
    t = table.select(keys).append_column("__i", idx)
    first = t.group_by(keys, use_threads=False).aggregate([("__i", "min")])["__i_min"]
    dup_mask = pc.invert(pc.is_in(idx, value_set=first))
    dups = table.filter(dup_mask)
    if dups.num_rows == 0:
        return empty_rejects()
    key_text = dups[keys[0]].cast(pa.string())
    for k in keys[1:]:
        key_text = pc.binary_join_element_wise(key_text, dups[k].cast(pa.string()), "|")
    return pa.table(
        {
            ROW: dups[ROW],
            "field": pa.array([",".join(keys)] * dups.num_rows, pa.string()),
            "value": key_text,
            "reason": pa.array(
                [f"duplicate primary key (主键重复): {', '.join(keys)}"] * dups.num_rows,
                pa.string(),
            ),
            "rule": pa.array([f"{','.join(keys)}.primary_key.unique"] * dups.num_rows, pa.string()),
            "dimension": pa.array(["唯一性"] * dups.num_rows, pa.string()),
        },
        schema=REJECT_SCHEMA,
    )


def validate(
    table: pa.Table,
    contract: Contract,
    *,
    rows_in: int,
    prior_rejects: pa.Table | None = None,
    as_of: date | None = None,
    spark: Any = None,
) -> ValidationResult:
    """Apply the contract's quality suite to a typed table (see :func:`quality.check_table`).

    Args:
        table: typed rows that survived parsing and casting, with ``_row``.
        contract: the dataset contract.
        rows_in: data rows read from the source (parsed + unreadable).
        prior_rejects: rejects of the parse and cast steps ``[_row, field, value, reason]``,
            carried into the result with rule ``<field>.required`` (完整性) or ``<field>.type``
            (规范性).
        as_of: the ingestion date for date rules (default: today, Asia/Shanghai).
        spark: a ``pyspark.sql.SparkSession`` to run the GX suite on GX's Spark data source
            (the Spark engine); ``None``: on pandas in this process.

    Returns:
        A :class:`ValidationResult` whose ``rejects`` hold every reason found so far and whose
        ``scores`` hold the GB/T 36344 dimension pass rates.

    Raises:
        AssertionError: rows were lost (``rows_in != passed + quarantined``).
    """
    from quality import check_table

    outcome = check_table(
        table, contract, rows_in=rows_in, prior_rejects=prior_rejects, as_of=as_of, spark=spark
    )
    rejects = outcome.rejects.cast(REJECT_SCHEMA)
    checked = outcome.table
    if rejects.num_rows:
        passed = checked.filter(pc.invert(pc.is_in(checked[ROW], value_set=rejects[ROW])))
    else:
        passed = checked
    result = ValidationResult(
        passed=passed,
        rejects=rejects,
        rows_in=rows_in,
        findings=outcome.findings.cast(REJECT_SCHEMA),
        scores=outcome.scores,
        gx_result=outcome.gx_result,
    )
    result.check_invariant()
    return result


def quality_gate(result: ValidationResult, contract: Contract, *, file: str) -> None:
    """Refuse a version whose pass rate is under ``quality.min_pass_rate``.

    Raises:
        QualityGateError: naming the file, the pass rate and the threshold.
    """
    threshold = contract.quality.min_pass_rate
    if result.pass_rate < threshold:
        raise QualityGateError(
            f"{file}: pass rate {result.pass_rate:.2%} is under the contract's min_pass_rate "
            f"{threshold:.2%} (质量门槛未达标); {result.rows_quarantined} of {result.rows_in} "
            f"rows quarantined, the previous version stays current",
            pass_rate=result.pass_rate,
            threshold=threshold,
            quarantined=result.rows_quarantined,
        )
