"""Catalog table of the quality package: one quality result per committed dataset version.

Table::

    quality_results   dataset_version_id (unique) → rows in/passed/quarantined, pass rate,
                      overall score, GB/T 36344 dimension scores (JSON), per-rule counts with
                      masked examples (JSON), ingestion date, created_at (UTC)
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from catalog._db import Base, UTCDateTime, utcnow
from catalog._models import Dataset, DatasetVersion

__all__ = ["QualityResult"]


class QualityResult(Base):
    """Quality scores of one dataset version (数据质量评价结果, GB/T 36344-2018).

    Attributes:
        dataset_version_id: the version scored (one result per version).
        dataset_id: its dataset (denormalised for per-dataset queries).
        rows_in / rows_passed / rows_quarantined: rows. pass_rate: rows_passed / rows_in.
        overall_score: mean of the measured dimension pass rates (0..1).
        dimension_scores: JSON object, dimension term (规范性 …) → pass rate or null.
        rules: JSON array of rule results (rule, field, dimension, severity, failed, standard,
            examples masked, error).
        as_of: ingestion date the date rules used (ISO ``YYYY-MM-DD``).
    """

    __tablename__ = "quality_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_version_id: Mapped[int] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="CASCADE"), unique=True
    )
    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    rows_in: Mapped[int] = mapped_column(BigInteger)
    rows_passed: Mapped[int] = mapped_column(BigInteger)
    rows_quarantined: Mapped[int] = mapped_column(BigInteger)
    pass_rate: Mapped[float] = mapped_column(Float)
    overall_score: Mapped[float] = mapped_column(Float)
    dimension_scores: Mapped[str] = mapped_column(Text, default="{}")
    rules: Mapped[str] = mapped_column(Text, default="[]")
    as_of: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    dataset_version: Mapped[DatasetVersion] = relationship(foreign_keys=[dataset_version_id])
    dataset: Mapped[Dataset] = relationship(foreign_keys=[dataset_id])

    @property
    def dimensions(self) -> dict[str, float | None]:
        """``dimension_scores`` parsed."""
        return json.loads(self.dimension_scores or "{}")

    @property
    def rule_results(self) -> list[dict[str, Any]]:
        """``rules`` parsed."""
        return json.loads(self.rules or "[]")
