"""Administrative division codes (行政区划代码, GB/T 2260) with their history, 1981-2024.

Loaded from the public file shipped with govdx,
``govdx/data/public/06_mca_county_level_division_codes_history_1981-2024.csv`` (民政部 codes as
compiled by yescallop/areacodes, CC0): UTF-8 with BOM, one row per (code, validity period),
columns ``代码, 一级行政区, 二级行政区, 名称, 级别, 状态, 启用时间, 变更/弃用时间, 新代码``.
级别 is 省级 / 地级 / 县级; 状态 is 在用 (in use), 弃用 (abolished) or 变更 (renamed or re-coded);
the two times are years. Codes are reused over time (120110 was 东郊区 1981-1992 and is 东丽区
since 1992), so a code's key is the code with its validity period.

A resident identity number keeps the region code of its first registration for life, and a
USCC keeps the code of its registering authority, so "known" means *ever* valid, abolished codes
included (110104 宣武区, abolished 2010).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

import govdx
from govdx._errors import GovdxRuntimeError

__all__ = [
    "DEFAULT_DIVISION_CODES_PATH",
    "DivisionCodesError",
    "DivisionPeriod",
    "RegionCodes",
    "division_codes",
]

DEFAULT_DIVISION_CODES_PATH = (
    Path(govdx.__file__).resolve().parent
    / "data"
    / "public"
    / "06_mca_county_level_division_codes_history_1981-2024.csv"
)
"""The GB/T 2260 history file shipped with govdx (6,823 rows)."""

_COLUMNS = [
    "代码",
    "一级行政区",
    "二级行政区",
    "名称",
    "级别",
    "状态",
    "启用时间",
    "变更/弃用时间",
    "新代码",
]


class DivisionCodesError(GovdxRuntimeError):
    """The division-code file (行政区划代码表) is missing or does not have the expected columns."""


@dataclass(frozen=True)
class DivisionPeriod:
    """One code during one validity period (a row of the history file).

    Attributes:
        code: 6-digit GB/T 2260 code.
        name: 名称 during the period.
        level: 级别 (省级 / 地级 / 县级).
        status: 状态 (在用 / 弃用 / 变更).
        start_year: 启用时间, first year in force.
        end_year: 变更/弃用时间, the year it stopped (exclusive), ``None`` while in use.
        new_code: 新代码, the successor code(s) when changed or abolished, else ``None``.
    """

    code: str
    name: str
    level: str
    status: str
    start_year: int | None
    end_year: int | None
    new_code: str | None

    def valid_in(self, year: int) -> bool:
        """Whether the code had this meaning during ``year``."""
        start_ok = self.start_year is None or self.start_year <= year
        return start_ok and (self.end_year is None or year < self.end_year)


@dataclass(frozen=True)
class RegionCodes:
    """GB/T 2260 division codes with history; build with :func:`division_codes`.

    Attributes:
        table: ``pyarrow.Table[6,823 × 9]``, all columns string, as in the file.
        all_codes: every code ever valid (historical ones included), 6-character strings.
        in_use: codes whose current period has 状态 在用.
    """

    table: pa.Table = field(repr=False)
    all_codes: frozenset[str]
    in_use: frozenset[str]
    _periods: Mapping[str, tuple[DivisionPeriod, ...]] = field(repr=False)

    def is_known(self, code: str, year: int | None = None) -> bool:
        """Whether ``code`` was ever a GB/T 2260 code (or, with ``year``, was valid that year)."""
        periods = self._periods.get(code, ())
        if year is None:
            return bool(periods)
        return any(p.valid_in(year) for p in periods)

    def history(self, code: str) -> tuple[DivisionPeriod, ...]:
        """Every period of ``code``, latest first; empty when the code is unknown."""
        return self._periods.get(code, ())

    def name(self, code: str) -> str:
        """The name of ``code``: its in-use name, else the name of its latest period.

        Raises:
            KeyError: ``code`` was never a GB/T 2260 code.

        Examples:
            >>> division_codes().name("110104")
            '宣武区'
        """
        periods = self._periods.get(code)
        if not periods:
            raise KeyError(f"unknown division code (行政区划代码) {code!r}")
        return periods[0].name

    def county_codes_in_use(self) -> list[str]:
        """County-level (级别 县级) codes with 状态 在用, sorted ascending (≈3,200 codes)."""
        return sorted(
            c
            for c, ps in self._periods.items()
            if any(p.level == "县级" and p.status == "在用" for p in ps)
        )

    def county_codes_retired(self) -> list[str]:
        """County-level codes never in use now (abolished or re-coded), sorted ascending."""
        return sorted(
            c
            for c, ps in self._periods.items()
            if c not in self.in_use and any(p.level == "县级" for p in ps)
        )


def _year(v: str | None) -> int | None:
    return int(v) if v else None


@functools.lru_cache(maxsize=4)
def _load(path: str) -> RegionCodes:
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(encoding="utf8"),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in _COLUMNS},
                strings_can_be_null=False,
            ),
        )
    except FileNotFoundError as exc:
        raise DivisionCodesError(f"{path}: division-code file not found") from exc
    except pa.ArrowInvalid as exc:
        raise DivisionCodesError(f"{path}: not a readable CSV: {exc}") from exc
    missing = [c for c in _COLUMNS if c not in table.column_names]
    if missing:
        raise DivisionCodesError(f"{path}: missing column(s) {missing} (expected {_COLUMNS})")
    bad = pc.invert(pc.match_substring_regex(table["代码"], r"^[0-9]{6}$"))
    if pc.any(bad).as_py():
        row = pc.index(bad, True).as_py()
        raise DivisionCodesError(
            f"{path}: row {row + 2}, column 代码: not a 6-digit code {table['代码'][row]!r}"
        )
    periods: dict[str, list[DivisionPeriod]] = {}
    cols = [table[c].to_pylist() for c in _COLUMNS]
    for code, _prov, _pref, name, level, status, start, end, new in zip(*cols, strict=True):
        periods.setdefault(code, []).append(
            DivisionPeriod(code, name, level, status, _year(start), _year(end), new or None)
        )
    ordered = {
        c: tuple(sorted(ps, key=lambda p: (p.status == "在用", p.start_year or 0), reverse=True))
        for c, ps in periods.items()
    }
    in_use = frozenset(c for c, ps in ordered.items() if ps[0].status == "在用")
    return RegionCodes(
        table=table,
        all_codes=frozenset(ordered),
        in_use=in_use,
        _periods=MappingProxyType(ordered),
    )


def division_codes(path: str | Path | None = None) -> RegionCodes:
    """Load (once per path, cached) the GB/T 2260 division codes with their history.

    Args:
        path: a CSV of the same layout; default :data:`DEFAULT_DIVISION_CODES_PATH`.

    Returns:
        :class:`RegionCodes` (≈3,600 distinct codes over 6,823 periods).

    Raises:
        DivisionCodesError: the file is missing, unreadable, lacks a column, or holds a code
            that is not 6 digits (the row is named).

    Examples:
        >>> rc = division_codes()
        >>> "110104" in rc.all_codes, "110104" in rc.in_use
        (True, False)
    """
    p = Path(path) if path is not None else DEFAULT_DIVISION_CODES_PATH
    return _load(str(p.expanduser().resolve()))
