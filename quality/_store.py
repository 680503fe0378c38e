"""Store and read quality results in the catalog (keyword-only ``*, session`` functions)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from quality._check import QualityScores
from quality._models import QualityResult

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from catalog import DatasetVersion

__all__ = ["QualityResult", "quality_history", "record_quality"]


def record_quality(
    *, session: Session, dataset_version: DatasetVersion, scores: QualityScores | dict[str, Any]
) -> QualityResult:
    """Store the scores of a committed version (replacing an earlier result of that version).

    Args:
        session: a catalog session (the caller's transaction; nothing is committed here).
        dataset_version: the ``catalog.DatasetVersion`` just added by the register step.
        scores: :class:`quality.QualityScores` (``ValidationResult.scores``) or its ``to_dict()``.

    Returns:
        The :class:`QualityResult` row (flushed, with its id).
    """
    data = scores.to_dict() if isinstance(scores, QualityScores) else dict(scores)
    row = session.scalar(
        select(QualityResult).where(QualityResult.dataset_version_id == dataset_version.id)
    )
    if row is None:
        row = QualityResult(
            dataset_version_id=dataset_version.id, dataset_id=dataset_version.dataset_id
        )
        session.add(row)
    row.rows_in = int(data["rows_in"])
    row.rows_passed = int(data["rows_passed"])
    row.rows_quarantined = int(data["rows_quarantined"])
    row.pass_rate = float(data["pass_rate"])
    row.overall_score = float(data["overall"])
    row.dimension_scores = json.dumps(data["dimensions"], ensure_ascii=False, sort_keys=True)
    row.rules = json.dumps(data["rules"], ensure_ascii=False)
    row.as_of = str(data["as_of"])
    session.flush()
    return row


def quality_history(*, session: Session, code: str | None = None) -> list[QualityResult]:
    """Quality results of one dataset (or all), oldest version first.

    Args:
        session: a catalog session.
        code: dataset code (信息资源代码); ``None`` for every dataset.

    Returns:
        ``QualityResult`` rows ordered by dataset code, then Delta version.

    Raises:
        catalog.DatasetNotFound: ``code`` is not in the catalog.
    """
    from catalog import Dataset, DatasetVersion, get_dataset

    stmt = (
        select(QualityResult)
        .join(DatasetVersion, QualityResult.dataset_version_id == DatasetVersion.id)
        .join(Dataset, QualityResult.dataset_id == Dataset.id)
        .order_by(Dataset.code, DatasetVersion.delta_version)
    )
    if code is not None:
        ds = get_dataset(session=session, code=code)
        stmt = stmt.where(QualityResult.dataset_id == ds.id)
    return list(session.scalars(stmt))
