"""Errors of the ingest pipeline (采集流水线): one root, hung below govdx's runtime errors.

Tree::

    govdx.GovdxError
    └── govdx.GovdxRuntimeError
        └── IngestError                 a pipeline run failed
            ├── SourceError             the department file cannot be read as declared
            │   │                       (encoding, header, sheet, JSON shape); names file, row, column
            │   └── MissingColumnError  a required field's source column is absent from the file
            ├── QualityGateError        the pass rate is under the contract's ``min_pass_rate``
            └── CommitError             the new table version could not be committed

Rows that fail to parse or cast are not errors: they are set aside as rejects (隔离数据) with a
reason each, and only the quality gate decides whether the run as a whole fails. Third-party
exceptions (pyarrow, openpyxl, json) are translated with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Sequence

from govdx._errors import GovdxRuntimeError

__all__ = [
    "CommitError",
    "IngestError",
    "MissingColumnError",
    "QualityGateError",
    "SourceError",
]


class IngestError(GovdxRuntimeError):
    """Root of the ingest pipeline's runtime errors (采集流水线运行错误)."""


class SourceError(IngestError):
    """A source file (源文件) cannot be read as its contract declares.

    The message starts with the place: ``data/x.csv: row 12, column 法定代表人身份证号: ...``.

    Attributes:
        file: the source file, as given to the reader (``None`` when unknown).
        row: 1-based line (CSV/JSON Lines), sheet row (XLSX) or record index (JSON).
        column: the column (source header or field name) at fault.
        reason: the message without the place prefix.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.file = file
        self.row = row
        self.column = column
        self.reason = message
        where = ", ".join(
            p
            for p in (
                f"row {row}" if row is not None else None,
                f"column {column}" if column is not None else None,
            )
            if p
        )
        prefix = ": ".join(p for p in (file, where) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class MissingColumnError(SourceError):
    """A required field's source column (必填字段的源列) is not in the file.

    Attributes:
        field: the contract field name.
        candidates: the source column names that would have matched, in priority order.
        found: the column names the file has.
    """

    def __init__(
        self,
        *,
        file: str | None,
        field: str,
        candidates: Sequence[str],
        found: Sequence[str],
    ) -> None:
        self.field = field
        self.candidates = list(candidates)
        self.found = list(found)
        super().__init__(
            f"required field {field!r} has no source column (缺少必填字段的源列): "
            f"looked for {self.candidates}; the file has {self.found}",
            file=file,
            column=self.candidates[0] if self.candidates else field,
        )


class QualityGateError(IngestError):
    """The share of passing rows is under the contract's threshold (质量门禁未通过).

    Attributes:
        pass_rate: share of rows that passed, 0..1.
        threshold: the contract's ``quality.min_pass_rate``, 0..1.
        quarantined: number of rows set aside (rows).
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        pass_rate: float,
        threshold: float,
        quarantined: int,
    ) -> None:
        self.pass_rate = pass_rate
        self.threshold = threshold
        self.quarantined = quarantined
        super().__init__(
            message
            or (
                f"pass rate {pass_rate:.2%} is under the threshold {threshold:.2%} "
                f"(合格率低于阈值); {quarantined} row(s) quarantined"
            )
        )


class CommitError(IngestError):
    """The new table version (表版本) could not be committed to the lakehouse."""
