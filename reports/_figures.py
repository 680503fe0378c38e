"""Values of the analyst reports: exact ratios, periods, figures, tables, charts, the report.

Every rate is a :class:`Ratio` of two integers, kept exact (``fractions.Fraction``) until it is
shown; display rounding is separate (:meth:`Ratio.percent`, half up). An empty denominator is
"0 of 0", shown as ``—``, never a ``ZeroDivisionError``.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from reports._errors import ReportDefinitionError

DASH = "—"


@dataclass(frozen=True)
class Ratio:
    """An exact rate ``numerator ÷ denominator`` (比率, exact until displayed).

    Attributes:
        numerator: count (≥ 0, ≤ denominator for a share).
        denominator: count (≥ 0); 0 means "0 of 0", no value.

    Examples:
        >>> r = Ratio(2, 3)
        >>> r.fraction, r.percent(), str(r)
        (Fraction(2, 3), '66.7%', '66.7% (2 of 3)')
        >>> Ratio(0, 0).fraction is None, Ratio(0, 0).percent(), str(Ratio(0, 0))
        (True, '—', '— (0 of 0)')
    """

    numerator: int
    denominator: int

    def __post_init__(self) -> None:
        if self.numerator < 0 or self.denominator < 0:
            raise ValueError(f"ratio {self.numerator}/{self.denominator}: counts must be ≥ 0")

    @property
    def fraction(self) -> Fraction | None:
        """The exact value, or None when the denominator is 0."""
        return Fraction(self.numerator, self.denominator) if self.denominator else None

    @property
    def value(self) -> float | None:
        """The value as a float (for charts and spreadsheets), or None for 0 of 0."""
        f = self.fraction
        return None if f is None else float(f)

    def percent(self, digits: int = 1) -> str:
        """Percentage rounded half up to ``digits`` decimals, e.g. ``'66.7%'``; ``'—'`` for 0 of 0."""
        f = self.fraction
        if f is None:
            return DASH
        scaled = f * 100 * 10**digits
        n = (scaled.numerator * 2 + scaled.denominator) // (2 * scaled.denominator)  # half up
        whole, frac = divmod(n, 10**digits)
        return f"{whole}.{frac:0{digits}d}%" if digits else f"{whole}%"

    def __str__(self) -> str:
        return f"{self.percent()} ({self.numerator} of {self.denominator})"

    def __add__(self, other: Ratio) -> Ratio:
        return Ratio(self.numerator + other.numerator, self.denominator + other.denominator)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: numerator, denominator, exact ``fraction`` ("n/d" reduced or None),
        ``value`` (float or None), ``display`` (rounded percentage or ``—``)."""
        f = self.fraction
        return {
            "numerator": self.numerator,
            "denominator": self.denominator,
            "fraction": None if f is None else f"{f.numerator}/{f.denominator}",
            "value": self.value,
            "display": self.percent(),
        }


_DAY = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def _bounds(text: str, where: str) -> tuple[datetime, datetime]:
    m = _DAY.match(text.strip())
    if not m:
        raise ReportDefinitionError(
            f"--period: {where} {text!r} is not YYYY, YYYY-MM or YYYY-MM-DD (统计期格式错误)"
        )
    y, mo, d = int(m[1]), m[2], m[3]
    try:
        if d is not None:
            start = datetime(y, int(mo), int(d), tzinfo=UTC)
            return start, start + timedelta(days=1)
        if mo is not None:
            start = datetime(y, int(mo), 1, tzinfo=UTC)
            days = calendar.monthrange(y, int(mo))[1]
            return start, start + timedelta(days=days)
        return datetime(y, 1, 1, tzinfo=UTC), datetime(y + 1, 1, 1, tzinfo=UTC)
    except ValueError as exc:
        raise ReportDefinitionError(f"--period: {where} {text!r}: {exc}") from exc


@dataclass(frozen=True)
class Period:
    """A reporting period (统计期), half-open ``[start, end)`` in UTC; either end may be open.

    Attributes:
        start: first instant included (tz-aware UTC), or None for "since the beginning".
        end: first instant excluded (tz-aware UTC), or None for "until now".
    """

    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        for t in (self.start, self.end):
            if t is not None and t.tzinfo is None:
                raise ReportDefinitionError("period bounds must be tz-aware (UTC)")
        if self.start and self.end and self.start >= self.end:
            raise ReportDefinitionError(
                f"period start {self.start.isoformat()} is not before its end "
                f"{self.end.isoformat()} (end excluded; 统计期起点不早于终点)"
            )

    @classmethod
    def parse(cls, text: str | None) -> Period:
        """Parse ``FROM..TO`` (both inclusive, each ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``).

        ``2026-01..2026-03`` is January 1 to March 31; ``2026-03`` alone is March;
        ``..2026-06-30`` and ``2026-01..`` are open on one side; None or ``""`` is all time.

        Raises:
            ReportDefinitionError: a bound is malformed or the start is after the end.

        Examples:
            >>> p = Period.parse("2026-01..2026-03")
            >>> p.start.isoformat(), p.end.isoformat()
            ('2026-01-01T00:00:00+00:00', '2026-04-01T00:00:00+00:00')
        """
        if text is None or not text.strip():
            return cls()
        if ".." not in text:
            return cls(*_bounds(text, "period"))
        lo, hi = text.split("..", 1)
        start = _bounds(lo, "FROM")[0] if lo.strip() else None
        end = _bounds(hi, "TO")[1] if hi.strip() else None
        if start is not None and end is not None and start >= end:
            last = (end - timedelta(days=1)).date()  # TO is inclusive: its last day
            raise ReportDefinitionError(
                f"--period {text.strip()}: start {start.date()} is after end {last}, not before "
                "it (FROM and TO are both inclusive; 统计期起点晚于终点)"
            )
        return cls(start, end)

    def contains(self, t: datetime) -> bool:
        """True when ``t`` (tz-aware) falls in the period."""
        return (self.start is None or t >= self.start) and (self.end is None or t < self.end)

    @property
    def label(self) -> str:
        """Human label, e.g. ``2026-01-01 .. 2026-03-31`` (inclusive days) or ``all time``."""
        if self.start is None and self.end is None:
            return "all time (全部)"
        lo = self.start.date().isoformat() if self.start else "…"
        hi = (self.end - timedelta(microseconds=1)).date().isoformat() if self.end else "now"
        return f"{lo} .. {hi}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "label": self.label,
        }


@dataclass(frozen=True)
class Column:
    """A table column: ``key`` in the row dicts, ``label`` (English + 中文), ``definition``."""

    key: str
    label: str
    definition: str = ""


@dataclass(frozen=True)
class Figure:
    """One headline figure with its definition printed beside it (指标及其口径).

    Attributes:
        key: machine name (``catalog_share_rate``). label: English + 中文.
        value: a :class:`Ratio`, an int, a float, a string, or None (no value).
        definition: how it is computed, in one or two sentences.
        unit: for numbers other than ratios (``seconds``, ``rows``); empty otherwise.
    """

    key: str
    label: str
    value: Any
    definition: str
    unit: str = ""


@dataclass
class Table:
    """A titled table: ``columns`` and ``rows`` (dicts keyed by column key; cells are
    :class:`Ratio`, int, float, str or None)."""

    key: str
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Chart:
    """A chart to draw: ``kind`` ``bar`` (one bar per category) or ``line`` (trend).

    Attributes:
        title: caption. categories: x labels (departments or periods).
        series: name → values (floats, None where there is no value), one per category.
        percent: values are shares 0..1 shown as percentages.
    """

    key: str
    kind: str
    title: str
    categories: list[str]
    series: dict[str, list[float | None]]
    percent: bool = True


@dataclass
class Report:
    """One analyst report (分析报告), ready for any renderer (:mod:`reports._render`).

    Attributes:
        name: ``sharing-rate`` | ``duplicate-collection`` | ``quality`` | ``security-coverage``.
        title: English + 中文. period: the period reported on. department: the filter or None.
        generated_at: UTC time the report was computed.
        figures: headline figures (overall), each with its definition.
        tables: the first is the per-department table; more may follow.
        charts: what the HTML rendering draws.
        notes: sentences shown under the figures (scope, caveats).
    """

    name: str
    title: str
    period: Period
    department: str | None
    generated_at: datetime
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def figure(self, key: str) -> Figure:
        """The headline figure named ``key``.

        Raises:
            KeyError: no such figure.
        """
        for f in self.figures:
            if f.key == key:
                return f
        raise KeyError(key)

    def table(self, key: str) -> Table:
        """The table named ``key``.

        Raises:
            KeyError: no such table.
        """
        for t in self.tables:
            if t.key == key:
                return t
        raise KeyError(key)

    def row(self, table: str, department: str) -> dict[str, Any]:
        """The row of ``department`` in table ``table`` (matched on the ``department`` key).

        Raises:
            KeyError: no such table or row.
        """
        for r in self.table(table).rows:
            if r.get("department") == department:
                return r
        raise KeyError(f"{table}: {department}")
