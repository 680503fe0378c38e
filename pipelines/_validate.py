"""Validate step (校验): the row-level checks of the ingest pipeline and the quality gate.

Today: required values and types (found while casting) and primary-key uniqueness. The quality
package plugs its expectation suites in here; whatever checks run, the outcome has one shape:
rows that pass go on, every failing row goes to quarantine with its reason(s), and
``rows_in == rows passed + rows quarantined`` always holds.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    ]
)


@dataclass
class ValidationResult:
    """Rows that passed and the reasons of those that did not.

    Attributes:
        passed: pyarrow.Table[rows × (contract fields + ``_row``)], typed.
        rejects: pyarrow.Table[_row int64, field string, value string, reason string]; one row
            per broken rule; plaintext values, kept in memory only (masked before storage).
        rows_in: data rows read from the source.
    """

    passed: pa.Table
    rejects: pa.Table
    rows_in: int

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
        },
        schema=REJECT_SCHEMA,
    )


def validate(
    table: pa.Table, contract: Contract, *, rows_in: int, prior_rejects: pa.Table | None = None
) -> ValidationResult:
    """Apply the row-level checks to a typed table.

    Args:
        table: typed rows that survived parsing and casting, with ``_row``.
        contract: the dataset contract.
        rows_in: data rows read from the source (parsed + unreadable).
        prior_rejects: rejects of the parse and cast steps, carried into the result.

    Returns:
        A :class:`ValidationResult` whose ``rejects`` hold every reason found so far.
    """
    found = [r for r in (prior_rejects, duplicate_key_rejects(table, contract)) if r is not None]
    rejects = pa.concat_tables([r.cast(REJECT_SCHEMA) for r in found]) if found else empty_rejects()
    if rejects.num_rows:
        passed = table.filter(pc.invert(pc.is_in(table[ROW], value_set=rejects[ROW])))
    else:
        passed = table
    result = ValidationResult(passed=passed, rejects=rejects, rows_in=rows_in)
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
