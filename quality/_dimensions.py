"""Data quality dimensions of GB/T 36344-2018 (信息技术 数据质量评价指标), plus uniqueness.

Every rule scores one dimension::

    规范性 conformity     the value follows its standard (format, check character, code list)
    完整性 completeness   required values are present
    准确性 accuracy       the value is plausible and true (real date, known region, range)
    一致性 consistency    fields agree with each other (birth date vs. the ID's)
    时效性 timeliness     dates are no later than the data's own time (ingestion date)
    可访问性 accessibility the data can be read at all (not measured row by row)
    唯一性 uniqueness     the primary key identifies one row
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DIMENSION_ALIASES", "Dimension", "dimension_of"]


class Dimension(StrEnum):
    """A GB/T 36344-2018 quality dimension (value: the Chinese term)."""

    conformity = "规范性"
    completeness = "完整性"
    accuracy = "准确性"
    consistency = "一致性"
    timeliness = "时效性"
    accessibility = "可访问性"
    uniqueness = "唯一性"

    @property
    def english(self) -> str:
        """The English name (``conformity`` …)."""
        return self.name


DIMENSION_ALIASES: dict[str, Dimension] = {
    **{d.value: d for d in Dimension},
    **{d.name: d for d in Dimension},
}
"""Chinese term or English name → :class:`Dimension`."""


def dimension_of(expectation: str, given: str | None = None) -> Dimension:
    """The dimension a GX expectation scores: ``given`` if set, else inferred from its name.

    Examples:
        >>> dimension_of("expect_column_values_to_not_be_null").value
        '完整性'
        >>> dimension_of("expect_column_values_to_be_between", "consistency").value
        '一致性'
    """
    if given is not None:
        return DIMENSION_ALIASES[given]
    name = expectation.lower()
    if "not_be_null" in name:
        return Dimension.completeness
    if "unique" in name:
        return Dimension.uniqueness
    if "pair" in name or "multicolumn" in name:
        return Dimension.consistency
    if any(k in name for k in ("between", "greater", "less", "increasing", "decreasing")):
        return Dimension.accuracy
    return Dimension.conformity
