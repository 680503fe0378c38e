"""Differentially private statistics in the sandbox (差分隐私统计): the ``dp_query`` computation.

A requester asks for a count, sum, mean, histogram or quantile — or count, sum and mean together
(``statistic: [count, sum]``) — of one dataset version, with optional filters and a group-by
over *public* group domains, at an ε it pays from its (requester, dataset) budget
(:mod:`sandbox._ledger`). The contract's ``sandbox.dp`` block fixes everything the privacy
proof rests on::

    sandbox:
      allowed_computations: [dp_query]
      dp:
        epsilon_cap: 2                  # per (requester, dataset), exact rational ("2", "3/2")
        delta_cap: 0                    # every mechanism here is pure ε-DP (δ = 0)
        per_query_epsilon_max: 1        # largest ε of one query
        max_contributions: 1            # rows kept per privacy unit (person / enterprise)
        bounds: {contribution_base: [0, 40000]}     # clamp range, whole units of the column
        derived: {employer_district: {column: employer_uscc, start: 2, length: 6}}
        public_domains: {employer_district: region_codes}   # region_codes:3201, or a [list]
        quantile_candidates: 101        # candidates of a quantile, evenly spaced in bounds

The run, vectorised with Arrow compute over the pinned Arrow table, then OpenDP on the small
per-cell vectors:

1. contribution bounding, a property of the table version (not of the query): the first
   ``max_contributions`` rows of each privacy unit in storage order are kept
   (:mod:`sandbox._dp_cache`; computed once per version and cached under the home);
2. filters (row-wise, 1-stable), rows with a NULL measured value dropped;
3. group keys looked up in the declared public domain (rows outside it dropped) — the set of
   released groups is the whole domain, never taken from the data;
4. values rounded to whole units (half away from zero) and clamped to ``bounds``;
5. per-group count / sum vector over the dense domain (one aggregate pass for count and sum)
   → OpenDP discrete Laplace (:func:`privacy._dp.make_vector_laplace`; the count and the sum
   vectors drawn on two threads, :func:`privacy._dp.release_vectors`); quantiles → OpenDP
   exponential mechanism.

Sensitivity (neighbouring datasets differ in all rows of one privacy unit — user-level DP):
after step 1 one unit owns at most m rows, and steps 2–3 only drop rows, each left in exactly
one group (cell). Removing the unit changes the count vector by at most m in L1 norm (Δ₁ = m)
and, since every kept value lies in [L, U], the sum vector by at most m · max(|L|, |U|)
(Δ₁ = m · max(|L|, |U|)). Histograms are count vectors over (group × bin) cells: Δ₁ = m. A
mean — and any list of count, sum and mean — releases a noisy sum and a noisy count at ε/2
each (basic composition); a mean is their quotient (post-processing). A grouped quantile runs
one exponential mechanism per group, each calibrated so map(k) ≤ k·ε/m; a unit's rows fall in
groups with Σ m_g ≤ m, so the total loss is ≤ ε.

Error messages name the dataset, keys and columns, never a value of a row.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from govdx._contract import Contract
from govdx._errors import ContractError
from privacy._dp import (
    DpError,
    fraction_text,
    laplace_accuracy,
    make_quantile,
    make_vector_laplace,
    parse_budget,
    release_vectors,
)
from sandbox._computations import Computation, Output, RunContext, register_computation
from sandbox._dp_cache import BoundedSelection, BoundingCache, BoundingKey, bounded_selection
from sandbox._errors import PolicyRefused, RunError
from sandbox._ledger import Charge, LedgerHooks

if TYPE_CHECKING:
    from sandbox._policy import SandboxPolicy

#: Named public domains a contract may use in ``sandbox.dp.public_domains`` (plus
#: ``region_codes:<prefix>``, the county-level codes in use under a province or prefecture).
NAMED_DOMAINS = ("region_codes", "region_codes_all")
_REGION_PREFIX = re.compile(r"^region_codes:([0-9]{2}|[0-9]{4})$")
#: Statistics a job may ask for together in one release (``statistic: [count, sum, mean]``).
MULTI_STATISTICS = ("count", "sum", "mean")
_NUMERIC = {"integer", "decimal"}
MECHANISM_LAPLACE = "discrete_laplace"
MECHANISM_QUANTILE = "exponential_quantile"


# --- the contract's dp block ------------------------------------------------------------------
class DerivedKey(BaseModel):
    """A group key cut from a column: ``substr(column, start, length)`` (0-based start), e.g.
    the registration-authority division code, characters 3–8 of a USCC (GB 32100-2015 §4)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str
    start: int = Field(ge=0, le=64)
    length: int = Field(ge=1, le=64)


class DpPolicy(BaseModel):
    """The ``sandbox.dp`` block (see the module docstring). Budgets are exact rationals.

    Attributes:
        epsilon_cap: ε cap per (requester, dataset), natural-log units.
        delta_cap: δ cap per (requester, dataset) (0: pure ε-DP only).
        per_query_epsilon_max: the largest ε of one query (default: the cap).
        max_contributions: rows kept per privacy unit (1–1000).
        bounds: column → [lo, hi] clamp range in whole units of the column.
        public_domains: group column → ``region_codes`` (GB/T 2260 county codes in use),
            ``region_codes_all`` (in use and retired), ``region_codes:<prefix>`` (the county
            codes in use under a 2-digit province or 4-digit prefecture, e.g. ``3201`` 南京市;
            a prefix with no such code is refused) or an explicit list of keys.
        derived: derived group keys (:class:`DerivedKey`).
        quantile_candidates: number of evenly spaced integer candidates of a quantile.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon_cap: int | float | str
    delta_cap: int | float | str = 0
    per_query_epsilon_max: int | float | str | None = None
    max_contributions: int = Field(ge=1, le=1000)
    bounds: dict[str, tuple[int, int]] = Field(default_factory=dict)
    public_domains: dict[str, str | list[str]] = Field(default_factory=dict)
    derived: dict[str, DerivedKey] = Field(default_factory=dict)
    quantile_candidates: int = Field(default=101, ge=2, le=10_000)

    @field_validator("epsilon_cap", "per_query_epsilon_max")
    @classmethod
    def _eps(cls, v: Any, info: Any) -> Any:
        if v is not None:
            parse_budget(v, key=info.field_name)
        return v

    @field_validator("delta_cap")
    @classmethod
    def _delta(cls, v: Any) -> Any:
        if parse_budget(v, key="delta_cap", allow_zero=True) >= 1:
            raise ValueError("delta_cap must be < 1")
        return v

    @field_validator("bounds")
    @classmethod
    def _bounds(cls, v: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        for col, (lo, hi) in v.items():
            if lo > hi:
                raise ValueError(f"bounds.{col}: lower bound {lo} is above upper bound {hi}")
        return v

    @field_validator("public_domains")
    @classmethod
    def _domains(cls, v: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        for col, d in v.items():
            if isinstance(d, str) and d not in NAMED_DOMAINS:
                m = _REGION_PREFIX.match(d)
                if m is None:
                    raise ValueError(
                        f"public_domains.{col}: {d!r} is not a named domain "
                        f"{list(NAMED_DOMAINS)}, 'region_codes:<2- or 4-digit prefix>' nor a list"
                    )
                if not _region_prefix_codes(m.group(1)):
                    raise ValueError(
                        f"public_domains.{col}: {d!r}: no GB/T 2260 county-level code in use "
                        f"starts with {m.group(1)!r} (未知的行政区划代码前缀)"
                    )
            if isinstance(d, list) and (not d or len(set(d)) != len(d)):
                raise ValueError(f"public_domains.{col}: the list must be non-empty, no repeats")
        return v

    @property
    def epsilon_cap_q(self) -> Fraction:
        """ε cap, exact."""
        return parse_budget(self.epsilon_cap, key="sandbox.dp.epsilon_cap")

    @property
    def delta_cap_q(self) -> Fraction:
        """δ cap, exact."""
        return parse_budget(self.delta_cap, key="sandbox.dp.delta_cap", allow_zero=True)

    @property
    def per_query_max_q(self) -> Fraction:
        """Largest ε of one query, exact (the cap when not set)."""
        if self.per_query_epsilon_max is None:
            return self.epsilon_cap_q
        return parse_budget(self.per_query_epsilon_max, key="sandbox.dp.per_query_epsilon_max")


def dp_policy(contract: Contract) -> DpPolicy | None:
    """The contract's ``sandbox.dp`` block, validated; None when absent.

    Raises:
        ContractError: naming ``sandbox.dp.<key>``.
    """
    block = (contract.sandbox or {}).get("dp")
    if block is None:
        return None
    try:
        return DpPolicy.model_validate(block)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(["sandbox", "dp", *(str(p) for p in first["loc"])])
        msg = (
            f"unknown key {first['loc'][-1]!r}"
            if first["type"] == "extra_forbidden"
            else first["msg"]
        )
        raise ContractError(msg, path=contract.code, key=key) from exc
    except DpError as exc:
        raise ContractError(str(exc), path=contract.code, key="sandbox.dp") from exc


def domain_keys(spec: str | list[str]) -> list[str]:
    """The keys of a public domain, in release order.

    Args:
        spec: ``region_codes`` (GB/T 2260 county-level codes in use,
            ``quality.division_codes().county_codes_in_use()``, ≈2,846), ``region_codes_all``
            (in use and retired), ``region_codes:<prefix>`` (the county-level codes in use
            under a 2-digit province or 4-digit prefecture prefix, e.g. ``region_codes:3201``:
            the 11 districts of 南京市) or an explicit list.

    Raises:
        ValueError: an unknown named domain or a prefix without county codes in use.

    Examples:
        >>> domain_keys("region_codes:3201")[:3]
        ['320102', '320104', '320105']
    """
    if isinstance(spec, list):
        return [str(x) for x in spec]
    m = _REGION_PREFIX.match(spec)
    if m is not None:
        keys = _region_prefix_codes(m.group(1))
        if not keys:
            raise ValueError(f"{spec!r}: no GB/T 2260 county-level code in use under this prefix")
        return list(keys)
    if spec not in NAMED_DOMAINS:
        raise ValueError(f"{spec!r} is not a named public domain")
    return list(_named_domain(spec))


@functools.lru_cache(maxsize=8)
def _named_domain(spec: str) -> tuple[str, ...]:
    from quality import division_codes

    rc = division_codes()
    if spec == "region_codes":
        return tuple(rc.county_codes_in_use())
    return tuple(sorted(set(rc.county_codes_in_use()) | set(rc.county_codes_retired())))


@functools.lru_cache(maxsize=64)
def _region_prefix_codes(prefix: str) -> tuple[str, ...]:
    """County-level codes in use that start with ``prefix`` (sorted; empty if none)."""
    return tuple(c for c in _named_domain("region_codes") if c.startswith(prefix))


# --- the job's params ------------------------------------------------------------------------
class Filter(BaseModel):
    """A row filter ``column op value`` on a non-protected column (the requester's predicate)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str
    op: Literal["eq", "ne", "lt", "le", "gt", "ge", "in"]
    value: str | int | list[str] | list[int]


class DpQueryParams(BaseModel):
    """Params of ``dp_query``.

    Attributes:
        statistic: ``count`` | ``sum`` | ``mean`` | ``histogram`` | ``quantile``, or a list of
            distinct ``count`` / ``sum`` / ``mean`` released together from one bounded
            aggregate at one ε (split exactly between the noisy count and sum vectors; one
            ledger charge), e.g. ``[count, sum]``.
        column: the measured column (all but ``count``), with ``sandbox.dp.bounds``.
        group_by: 0–2 columns with a public domain (fields or ``sandbox.dp.derived`` keys).
        filters: 0–5 :class:`Filter` s, combined with AND.
        epsilon: ε to spend, > 0, as a number or exact text (``"0.1"``, ``"1/11"``).
        delta: δ to spend; must be 0 (every mechanism here is pure ε-DP).
        bins: histogram bin edges (integers, strictly increasing, covering the bounds).
        alpha: the quantile (0.5 = median).
        confidence: level of the released confidence intervals (0.5–0.999).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    statistic: (
        Literal["count", "sum", "mean", "histogram", "quantile"]
        | list[Literal["count", "sum", "mean"]]
    )
    column: str | None = None
    group_by: list[str] = Field(default_factory=list, max_length=2)
    filters: list[Filter] = Field(default_factory=list, max_length=5)
    epsilon: str
    delta: str = "0"
    bins: list[int] | None = Field(default=None, max_length=1001)
    alpha: float = Field(default=0.5, ge=0.0, le=1.0)
    confidence: float = Field(default=0.95, ge=0.5, le=0.999)

    @field_validator("statistic")
    @classmethod
    def _statistics(cls, v: Any) -> Any:
        if isinstance(v, list) and (not v or len(set(v)) != len(v)):
            raise ValueError("a list of statistics must be non-empty, without repeats")
        return v

    @property
    def statistics(self) -> tuple[str, ...]:
        """The statistics released, in :data:`MULTI_STATISTICS` order for a list."""
        if isinstance(self.statistic, str):
            return (self.statistic,)
        return tuple(x for x in MULTI_STATISTICS if x in self.statistic)

    @property
    def statistic_name(self) -> str:
        """``count`` … or ``count+sum`` for a list (the ledger's ``statistic``)."""
        return "+".join(self.statistics)

    @field_validator("epsilon", mode="before")
    @classmethod
    def _epsilon(cls, v: Any) -> str:
        try:
            return fraction_text(parse_budget(v, key="epsilon"))
        except DpError as exc:
            raise ValueError(str(exc).removeprefix("epsilon: ")) from None

    @field_validator("delta", mode="before")
    @classmethod
    def _delta(cls, v: Any) -> str:
        try:
            return fraction_text(parse_budget(v, key="delta", allow_zero=True))
        except DpError as exc:
            raise ValueError(str(exc).removeprefix("delta: ")) from None

    @property
    def epsilon_q(self) -> Fraction:
        """ε, exact."""
        return Fraction(self.epsilon)

    @property
    def delta_q(self) -> Fraction:
        """δ, exact."""
        return Fraction(self.delta)


# --- the pure description -------------------------------------------------------------------
@dataclass(frozen=True)
class DpPart:
    """One noisy release of a query.

    Attributes:
        name: ``count`` | ``sum`` | ``quantile``.
        sensitivity: the input distance ε is charged at: L1 sensitivity of the vector
            (Laplace), or rows per unit (quantile).
        epsilon: ε of this part, exact (the parts sum to the query's ε).
    """

    name: str
    sensitivity: int
    epsilon: Fraction
    candidates: tuple[int, ...] = ()
    alpha: float = 0.5

    @cached_property
    def _built(self) -> tuple[Any, float]:
        if self.name == "quantile":
            return make_quantile(list(self.candidates), self.alpha, self.sensitivity, self.epsilon)
        return make_vector_laplace(self.sensitivity, self.epsilon)

    @property
    def measurement(self) -> Any:
        """The OpenDP measurement (built once, no data)."""
        return self._built[0]

    @property
    def scale(self) -> float:
        """Noise scale of the mechanism."""
        return self._built[1]

    @property
    def mechanism(self) -> str:
        """``discrete_laplace`` or ``exponential_quantile``."""
        return MECHANISM_QUANTILE if self.name == "quantile" else MECHANISM_LAPLACE

    def map(self) -> float:
        """OpenDP's privacy map at this part's input distance (≤ ``epsilon``)."""
        return float(self.measurement.map(self.sensitivity))


@dataclass(frozen=True)
class DpQuery:
    """A validated DP query (a pure value): what runs, on which columns, at what privacy loss.

    Build with :meth:`build`; :meth:`privacy_loss` and :meth:`map_losses` answer without data
    (the policy and the ledger check them before any run); :meth:`release` runs it.

    Attributes:
        params: the job's params. contract: the dataset's contract. dp: its ``sandbox.dp``.
        parts: the noisy releases (one, or two for a mean).
        group_keys: per group-by column, the public domain's keys.
    """

    params: DpQueryParams
    contract: Contract
    dp: DpPolicy
    parts: tuple[DpPart, ...]
    group_keys: tuple[tuple[str, ...], ...] = field(default=())

    @classmethod
    def reasons(
        cls, params: DpQueryParams, contract: Contract, policy: SandboxPolicy | None
    ) -> list[str]:
        """Every reason the query is refused (empty = acceptable). Pure; reads no data."""
        from sandbox._policy import IDENTIFIER_ELEMENTS

        code = contract.code
        if contract.privacy_unit is None:
            return [
                f"dataset {code} declares no privacy_unit (未声明隐私单位): DP queries need the "
                "person or enterprise whose contribution is bounded; refused"
            ]
        try:
            dp = dp_policy(contract)
        except ContractError as exc:
            return [str(exc)]
        if dp is None:
            return [f"dataset {code} has no sandbox.dp block (未配置差分隐私): dp_query refused"]
        reasons: list[str] = []
        p = params
        eps = p.epsilon_q
        if eps > dp.per_query_max_q:
            reasons.append(
                f"computation.params.epsilon: ε = {p.epsilon} is above the per-query maximum "
                f"{fraction_text(dp.per_query_max_q)} of {code} (sandbox.dp.per_query_epsilon_max, "
                "单次查询预算上限)"
            )
        if eps > dp.epsilon_cap_q:
            reasons.append(
                f"computation.params.epsilon: ε = {p.epsilon} is above the total cap "
                f"{fraction_text(dp.epsilon_cap_q)} (sandbox.dp.epsilon_cap)"
            )
        if p.delta_q != 0:
            reasons.append(
                "computation.params.delta: every dp_query mechanism is pure ε-DP; δ must be 0"
            )
        unit = contract.privacy_unit
        names = {f.name for f in contract.fields}
        for i, col in enumerate(p.group_by):
            key = f"computation.params.group_by.{i}"
            if col in dp.derived:
                src = dp.derived[col].column
                if src not in names:
                    reasons.append(f"sandbox.dp.derived.{col}: {code} has no field {src!r}")
                elif contract.field(src).protected or src == unit:
                    reasons.append(
                        f"{key}: {col!r} derives from protected/privacy-unit field {src!r}"
                    )
            elif col not in names:
                reasons.append(f"{key}: dataset {code} has no field {col!r}")
                continue
            else:
                f = contract.field(col)
                if f.protected or f.element in IDENTIFIER_ELEMENTS or col == unit:
                    reasons.append(
                        f"{key}: may not group by {col!r} (sensitive, identifier or privacy unit; "
                        "敏感字段不得分组)"
                    )
                    continue
            if col not in dp.public_domains:
                reasons.append(
                    f"{key}: {col!r} has no declared public domain (sandbox.dp.public_domains); "
                    "group keys never come from the data"
                )
        stats = p.statistics
        stat = p.statistic_name
        if stats != ("count",):
            if p.column is None:
                reasons.append(f"computation.params.column: {stat} needs a column")
            elif p.column not in names:
                reasons.append(
                    f"computation.params.column: dataset {code} has no field {p.column!r}"
                )
            elif p.column == unit:
                reasons.append("computation.params.column: may not measure the privacy unit")
            elif contract.field(p.column).type.value not in _NUMERIC:
                reasons.append(
                    f"computation.params.column: {stat} needs a numeric column, "
                    f"{p.column!r} is {contract.field(p.column).type}"
                )
            elif p.column not in dp.bounds:
                reasons.append(
                    f"computation.params.column: {p.column!r} has no clamp bounds "
                    "(sandbox.dp.bounds); refused"
                )
        elif p.column is not None:
            reasons.append("computation.params.column: count takes no column")
        if stat == "histogram":
            b = p.bins or []
            if len(b) < 2 or any(y <= x for x, y in itertools.pairwise(b)):
                reasons.append(
                    "computation.params.bins: give ≥ 2 strictly increasing integer edges"
                )
            elif p.column in dp.bounds:
                lo, hi = dp.bounds[p.column]
                if b[0] > lo or b[-1] <= hi:
                    reasons.append(
                        f"computation.params.bins: edges must cover the bounds [{lo}, {hi}] "
                        f"(first ≤ {lo}, last > {hi}: bins are half-open [e_i, e_i+1), so "
                        f"the last edge must exceed {hi}, e.g. {int(hi) + 1})"
                    )
        elif p.bins is not None:
            reasons.append("computation.params.bins: only a histogram takes bins")
        for i, flt in enumerate(p.filters):
            key = f"computation.params.filters.{i}.column"
            if flt.column not in names:
                reasons.append(f"{key}: dataset {code} has no field {flt.column!r}")
            elif flt.column == unit or contract.field(flt.column).protected:
                reasons.append(
                    f"{key}: may not filter on {flt.column!r} (protected field or privacy unit)"
                )
            elif (flt.op == "in") != isinstance(flt.value, list):
                reasons.append(f"{key}: op 'in' takes a list, other ops a single value")
        return reasons

    @classmethod
    def build(
        cls, params: DpQueryParams, contract: Contract, policy: SandboxPolicy | None = None
    ) -> DpQuery:
        """Validate and describe the query (no data is read).

        Raises:
            PolicyRefused: any reason of :meth:`reasons`, or too many output cells.
        """
        reasons = cls.reasons(params, contract, policy)
        if reasons:
            raise PolicyRefused(reasons)
        dp = dp_policy(contract)
        assert dp is not None
        keys = tuple(tuple(domain_keys(dp.public_domains[c])) for c in params.group_by)
        cells = math.prod(len(k) for k in keys) * (
            len(params.bins) - 1 if params.statistic == "histogram" and params.bins else 1
        )
        limit = policy.max_output_rows if policy is not None else 10_000
        if cells > limit:
            raise PolicyRefused(
                [f"the query releases {cells} cells, more than sandbox.max_output_rows = {limit}"]
            )
        m = dp.max_contributions
        eps = params.epsilon_q
        stats = params.statistics
        stat = stats[0] if len(stats) == 1 else "multi"
        bound = 0
        if params.column is not None and params.column in dp.bounds:
            lo, hi = dp.bounds[params.column]
            bound = max(abs(lo), abs(hi), 1)
        if stat in ("count", "histogram"):
            parts: tuple[DpPart, ...] = (DpPart("count", m, eps),)
        elif stat == "sum":
            parts = (DpPart("sum", m * bound, eps),)
        elif stat == "mean" or (stat == "multi" and stats != ("count",)):
            # a mean (or count, sum and mean together) releases one noisy sum and one noisy
            # count at ε/2 each; a mean is their quotient (post-processing)
            parts = (DpPart("sum", m * bound, eps / 2), DpPart("count", m, eps / 2))
        else:
            lo, hi = dp.bounds[params.column or ""]
            n = min(dp.quantile_candidates, hi - lo + 1)
            cand = tuple(sorted({round(lo + (hi - lo) * i / (n - 1)) for i in range(n)}))
            if len(cand) < 2:
                raise PolicyRefused(["quantile: the bounds allow fewer than 2 candidates"])
            parts = (DpPart("quantile", m, eps, cand, params.alpha),)
        return cls(params, contract, dp, parts, keys)

    def privacy_loss(self) -> tuple[Fraction, Fraction]:
        """(ε, δ) charged to the ledger, exact: the sum over parts (basic composition)."""
        return sum((p.epsilon for p in self.parts), Fraction(0)), self.params.delta_q

    def map_losses(self) -> dict[str, float]:
        """OpenDP's privacy map of every part at its sensitivity (each ≤ the part's ε)."""
        return {p.name: p.map() for p in self.parts}

    @property
    def mechanism(self) -> str:
        """Mechanism name recorded in the ledger."""
        return self.parts[0].mechanism

    def columns(self) -> list[str]:
        """Columns the run reads (privacy unit first)."""
        cols = [self.contract.privacy_unit or ""]
        for c in self.params.group_by:
            src = self.dp.derived[c].column if c in self.dp.derived else c
            cols.append(src)
        if self.params.column:
            cols.append(self.params.column)
        cols += [f.column for f in self.params.filters]
        return list(dict.fromkeys(cols))

    # --- the run ------------------------------------------------------------------------------
    def bounding_key(self, version: int) -> BoundingKey:
        """The :class:`~sandbox._dp_cache.BoundingKey` of this dataset at Delta ``version``."""
        return BoundingKey(
            dataset=self.contract.code,
            version=int(version),
            definition=self.contract.definition_digest(),
            privacy_unit=self.contract.privacy_unit or "",
            max_contributions=int(self.dp.max_contributions),
        )

    @cached_property
    def _domains(self) -> tuple[pa.Array, ...]:
        return tuple(pa.array(keys, pa.string()) for keys in self.group_keys)

    @cached_property
    def _groups(self) -> list[list[str]]:
        return _cartesian(self.group_keys)

    @property
    def n_groups(self) -> int:
        """Cells of the dense public domain (1 without a group-by)."""
        return math.prod(len(k) for k in self.group_keys) if self.group_keys else 1

    def _filter_mask(self, table: pa.Table, i: int) -> Any:
        flt = self.params.filters[i]
        col = table[flt.column]
        ftype = self.contract.field(flt.column).type.value
        try:  # filter values come from the requester; messages never repeat them
            if flt.op == "in":
                values = [_filter_value(v, ftype) for v in flt.value]  # type: ignore[union-attr]
                return pc.is_in(col, value_set=_value_array(values, col.type))
            fn = {
                "eq": pc.equal,
                "ne": pc.not_equal,
                "lt": pc.less,
                "le": pc.less_equal,
                "gt": pc.greater,
                "ge": pc.greater_equal,
            }[flt.op]
            return fn(col, _value_array([_filter_value(flt.value, ftype)], col.type)[0])
        except (pa.ArrowException, ValueError, TypeError, ArithmeticError) as exc:
            raise RunError(
                f"dp_query: computation.params.filters.{i}: the value cannot be compared with "
                f"column {flt.column!r} ({col.type})"
            ) from exc

    def _key(self, table: pa.Table, name: str) -> Any:
        """Group-key strings of column / derived key ``name``, one per row."""
        if name in self.dp.derived:
            d = self.dp.derived[name]
            return pc.utf8_slice_codeunits(
                pc.cast(table[d.column], pa.string()), d.start, d.start + d.length
            )
        col = table[name]
        return col if col.type == pa.string() else pc.cast(col, pa.string())

    def _clamped(self, col: Any) -> Any:
        """Values rounded to whole units (half away from zero) and clamped to the bounds:
        int64[rows]. Integer bounds make round∘clamp = clamp∘round."""
        lo, hi = self.dp.bounds[self.params.column or ""]
        t = col.type
        if pa.types.is_decimal(t):
            col = pc.round(col, 0, round_mode="half_towards_infinity")
            col = pc.cast(col, pa.decimal128(38, 0))
            lo_s, hi_s = (
                pa.scalar(Decimal(lo), pa.decimal128(38, 0)),
                pa.scalar(Decimal(hi), pa.decimal128(38, 0)),
            )
        elif pa.types.is_floating(t):
            col = pc.round(col, 0, round_mode="half_towards_infinity")
            lo_s, hi_s = pa.scalar(float(lo), t), pa.scalar(float(hi), t)
        else:
            col = pc.cast(col, pa.int64())
            if col.null_count == 0:  # the usual case (NULL rows are filtered out before)
                flat = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
                return pa.array(np.clip(flat.to_numpy(), lo, hi), pa.int64())
            lo_s, hi_s = pa.scalar(int(lo), pa.int64()), pa.scalar(int(hi), pa.int64())
        col = pc.min_element_wise(pc.max_element_wise(col, lo_s, skip_nulls=False), hi_s)
        return pc.cast(col, pa.int64())

    def _kept(self, table: pa.Table, selection: BoundedSelection | None) -> pa.Table:
        """The rows that enter the aggregate: bounded (step 1), filtered (2), with a value
        (3): pyarrow.Table[kept rows × (k0[, k1], [v])], k* string, v int64 clamped."""
        p = self.params
        unit = self.contract.privacy_unit or ""
        sel = selection
        if sel is None:
            sel = bounded_selection(table, unit, self.dp.max_contributions)
        if sel.rows != table.num_rows:
            raise RunError(
                f"dp_query: the bounded selection is for {sel.rows} rows, the table has "
                f"{table.num_rows}"
            )
        masks = [m for m in [sel.keep_mask()] if m is not None]
        masks += [self._filter_mask(table, i) for i in range(len(p.filters))]
        if p.column and table[p.column].null_count:
            masks.append(pc.is_valid(table[p.column]))
        sources = {self.dp.derived[c].column if c in self.dp.derived else c for c in p.group_by}
        if p.column:
            sources.add(p.column)
        # a count without group-by reads no column: a placeholder column carries the row count
        raw = (
            table.select(sorted(sources)) if sources else pa.table({"_": pa.nulls(table.num_rows)})
        )
        if masks:
            raw = raw.filter(functools.reduce(pc.and_kleene, masks))
        cols: dict[str, Any] = {f"k{i}": self._key(raw, c) for i, c in enumerate(p.group_by)}
        if p.column:
            cols["v"] = self._clamped(raw[p.column])
        return pa.table(cols) if cols else raw

    def _cells(self, keys: list[Any]) -> np.ndarray:
        """Dense cell index (int64) of every key tuple; −1 outside the public domain."""
        cell = np.zeros(len(keys[0]) if keys else 0, dtype=np.int64)
        ok = np.ones(len(cell), dtype=bool)
        for i, k in enumerate(keys):
            idx = pc.fill_null(pc.index_in(k, value_set=self._domains[i]), -1)
            idx = np.asarray(idx.to_numpy(zero_copy_only=False), dtype=np.int64)
            ok &= idx >= 0
            cell = cell * len(self.group_keys[i]) + idx
        cell[~ok] = -1
        return cell

    def aggregate(
        self, table: pa.Table, selection: BoundedSelection | None = None
    ) -> dict[str, np.ndarray]:
        """The exact (not yet noisy) per-cell aggregates, vectorised with Arrow compute.

        Args:
            table: pyarrow.Table[rows × :meth:`columns`] (plaintext, inside the sandbox), in
                storage order.
            selection: the version's contribution bounding
                (:class:`~sandbox._dp_cache.BoundedSelection`, e.g. from the cache); computed
                from ``table`` when None (the same rows either way).

        Returns:
            ``{"count": int64[cells], "sum": int64[cells]}`` over the dense public domain (a
            quantile returns ``{"cell": int64[rows], "v": int64[rows]}`` of the kept rows,
            sorted by cell).

        Raises:
            RunError: a column is missing, a filter value does not fit its column, or a sum
                could overflow int64.
        """
        p = self.params
        kept = self._kept(table, selection)
        n_groups = self.n_groups
        nk = len(p.group_by)
        keys = [kept[f"k{i}"] for i in range(nk)]
        stat = p.statistic_name
        if stat in ("quantile", "histogram"):
            cell = self._cells(keys) if nk else np.zeros(kept.num_rows, dtype=np.int64)
            v = kept["v"].to_numpy()
            inside = cell >= 0
            cell, v = cell[inside], v[inside]
            if stat == "quantile":
                order = np.argsort(cell, kind="stable")
                return {"cell": cell[order], "v": v[order]}
            edges = np.asarray(p.bins, dtype=np.int64)
            nb = len(edges) - 1
            b = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, nb - 1)
            counts = np.bincount(cell * nb + b, minlength=n_groups * nb).astype(np.int64)
            return {"count": counts}
        if p.column:
            lo, hi = self.dp.bounds[p.column]
            if kept.num_rows * max(abs(lo), abs(hi)) >= 2**63:
                raise RunError(
                    f"dp_query: a sum of {kept.num_rows} values within bounds [{lo}, {hi}] of "
                    f"{p.column!r} could overflow int64"
                )
        count = np.zeros(n_groups, dtype=np.int64)
        total = np.zeros(n_groups, dtype=np.int64)
        if not nk:
            count[0] = kept.num_rows
            if p.column:
                total[0] = int(pc.sum(kept["v"]).as_py() or 0)
        elif kept.num_rows:
            aggs: list[tuple[Any, ...]] = [([], "count_all")]
            if p.column:
                aggs.append(("v", "sum"))
            out = kept.group_by([f"k{i}" for i in range(nk)]).aggregate(aggs)
            cell = self._cells([out[f"k{i}"] for i in range(nk)])
            inside = cell >= 0
            count[cell[inside]] = out["count_all"].to_numpy()[inside]
            if p.column:
                total[cell[inside]] = out["v_sum"].to_numpy()[inside]
        result = {"count": count}
        if p.column:
            result["sum"] = total
        return result

    def release(
        self, table: pa.Table, selection: BoundedSelection | None = None
    ) -> tuple[dict[str, Any], pa.Table]:
        """Run the query: aggregate, add OpenDP noise, build the released document.

        Args:
            table: pyarrow.Table[rows × :meth:`columns`], storage order.
            selection: the version's bounded selection (see :meth:`aggregate`).

        Returns:
            ``(document, table)``: the JSON-ready result (mechanism, ε/δ, scales, CIs, rows)
            and pyarrow.Table[cells × (group columns, [bin_low, bin_high], value, ci_low,
            ci_high)] for disclosure control; for a list of statistics the value columns are
            ``<stat>, <stat>_ci_low, <stat>_ci_high`` per statistic.

        Raises:
            RunError: a column is missing from the table. DpError: OpenDP failed.
        """
        missing = [c for c in self.columns() if c not in table.column_names]
        if missing:
            raise RunError(f"dp_query: the table lacks column(s) {missing}")
        p = self.params
        conf = p.confidence
        exact = self.aggregate(table, selection)
        groups = self._groups
        n_groups = self.n_groups
        noise: list[dict[str, Any]] = []
        cols: dict[str, Any] = {c: groups[i] for i, c in enumerate(p.group_by)}
        part_conf = 1 - (1 - conf) / len(self.parts)  # Bonferroni over the parts
        noisy: dict[str, np.ndarray] = {}
        half: dict[str, float] = {}
        laplace = [part for part in self.parts if part.name != "quantile"]
        drawn = release_vectors([(part.measurement, exact[part.name]) for part in laplace])
        noisy.update({part.name: v for part, v in zip(laplace, drawn, strict=True)})
        for part in self.parts:
            info = {
                "part": part.name,
                "mechanism": part.mechanism,
                "sensitivity": part.sensitivity,
                "epsilon": fraction_text(part.epsilon),
                "epsilon_map": part.map(),
                "scale": part.scale,
            }
            if part.name == "quantile":
                noisy["quantile"] = self._quantiles(part, exact, n_groups)
            else:
                half[part.name] = laplace_accuracy(part.scale, part_conf)
                info["ci_halfwidth"] = half[part.name]
                info["ci_level"] = part_conf
            noise.append(info)
        stats = p.statistics
        values: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for stat in stats:
            if stat in ("count", "sum"):
                value = noisy[stat].astype(np.float64)
                values[stat] = (value, value - half[stat], value + half[stat])
            elif stat == "mean":
                values[stat] = self._mean(noisy, half, n_groups)
            elif stat == "histogram":
                edges = p.bins or []
                nb = len(edges) - 1
                value = noisy["count"].astype(np.float64)
                values[stat] = (value, value - half["count"], value + half["count"])
                cols = {
                    c: np.repeat(np.asarray(v, dtype=object), nb).tolist() for c, v in cols.items()
                }
                cols["bin_low"] = np.tile(np.asarray(edges[:-1], dtype=np.int64), n_groups)
                cols["bin_high"] = np.tile(np.asarray(edges[1:], dtype=np.int64), n_groups)
            else:
                value = noisy["quantile"].astype(np.float64)
                nan = np.full(len(value), np.nan)
                values[stat] = (value, nan, nan)
        arrays: dict[str, pa.Array] = {k: pa.array(v) for k, v in cols.items()}
        for stat, (value, lo_ci, hi_ci) in values.items():
            name = "value" if len(stats) == 1 else stat
            prefix = "" if len(stats) == 1 else f"{stat}_"
            arrays[name] = pa.array(value, pa.float64())
            arrays[f"{prefix}ci_low"] = pa.array(lo_ci, pa.float64(), mask=np.isnan(lo_ci))
            arrays[f"{prefix}ci_high"] = pa.array(hi_ci, pa.float64(), mask=np.isnan(hi_ci))
        rows_tbl = pa.table(arrays)
        eps, delta = self.privacy_loss()
        stat_doc: Any = p.statistic if isinstance(p.statistic, str) else list(stats)
        doc = {
            "dataset": self.contract.code,
            "statistic": stat_doc,
            "column": p.column,
            "group_by": p.group_by,
            "filters": [f.model_dump(mode="json") for f in p.filters],
            "privacy_unit": self.contract.privacy_unit,
            "max_contributions": self.dp.max_contributions,
            "bounds": list(self.dp.bounds[p.column]) if p.column else None,
            "epsilon": fraction_text(eps),
            "delta": fraction_text(delta),
            "accountant": "basic sequential composition (pure ε-DP; δ = 0)",
            "mechanism": self.mechanism,
            "noise": noise,
            "confidence": conf,
            "ci_note": (
                "quantile: no interval (exponential mechanism); value is one of the public candidates"
                if stats == ("quantile",)
                else "ci from OpenDP discrete_laplacian_scale_to_accuracy, Bonferroni over parts"
            ),
            "columns": rows_tbl.column_names,
            "rows": _json_rows(rows_tbl),
        }
        return doc, rows_tbl

    def _mean(
        self, noisy: dict[str, np.ndarray], half: dict[str, float], n_groups: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lo_b, hi_b = self.dp.bounds[self.params.column or ""]
        s, c = noisy["sum"].astype(np.float64), noisy["count"].astype(np.float64)
        value = np.clip(np.divide(s, c, out=np.full(n_groups, np.nan), where=c > 0), lo_b, hi_b)
        value = np.where(c > 0, value, (lo_b + hi_b) / 2)
        cl = c - half["count"]
        with np.errstate(divide="ignore", invalid="ignore"):
            cands = np.stack([(s - half["sum"]) / cl, (s + half["sum"]) / cl])
        ok = cl > 0
        lo_ci = np.where(ok, np.clip(cands.min(axis=0), lo_b, hi_b), lo_b)
        hi_ci = np.where(ok, np.clip(cands.max(axis=0), lo_b, hi_b), hi_b)
        return value, lo_ci.astype(np.float64), hi_ci.astype(np.float64)

    def _quantiles(self, part: DpPart, exact: dict[str, np.ndarray], n_groups: int) -> np.ndarray:
        cell, v = exact["cell"], exact["v"]
        starts = np.searchsorted(cell, np.arange(n_groups + 1))
        out = np.empty(n_groups, dtype=np.int64)
        from opendp.mod import OpenDPException

        for g in range(n_groups):
            try:
                out[g] = int(part.measurement(v[starts[g] : starts[g + 1]].tolist()))
            except OpenDPException as exc:
                raise DpError(f"OpenDP quantile failed: {exc.message or exc}") from exc
        return out


def _value_array(values: list[Any], typ: pa.DataType) -> pa.Array:
    """Filter values as an Arrow array of the column's type (decimals keep their own
    precision; the comparison kernels cast both sides to a common decimal type)."""
    if pa.types.is_decimal(typ):
        return pa.array([Decimal(str(v)) for v in values])
    return pa.array(values).cast(typ)


def _json_rows(table: pa.Table) -> list[list[Any]]:
    """Rows of the released table for the JSON document: floats rounded to 6 decimals, NaN and
    nulls as None (column-wise, no per-cell Python work beyond the final lists)."""
    cols = []
    for col in table.columns:
        if pa.types.is_floating(col.type):
            arr = col.to_numpy(zero_copy_only=False)
            out = np.round(arr, 6).astype(object)
            out[np.isnan(arr)] = None
            cols.append(out.tolist())
        else:
            cols.append(col.to_pylist())
    return [list(r) for r in zip(*cols, strict=True)]


def _filter_value(v: Any, ftype: str) -> Any:
    if ftype in ("integer",) and isinstance(v, str):
        return int(v)
    return v


def _cartesian(keys: tuple[tuple[str, ...], ...]) -> list[list[str]]:
    if not keys:
        return []
    sizes = [len(k) for k in keys]
    total = math.prod(sizes)
    out = []
    rep = total
    for i, k in enumerate(keys):
        rep //= sizes[i]
        arr = np.asarray(k, dtype=object)
        out.append(np.tile(np.repeat(arr, rep), total // (rep * sizes[i])).tolist())
    return out


# --- the computation -------------------------------------------------------------------------
@register_computation
class DpQueryComputation(LedgerHooks, Computation):
    """Differentially private statistics (差分隐私统计): count, sum, mean, histogram, quantile
    with contribution bounding, clamping, public group domains and a budget ledger.

    Pure checks (:meth:`check`) refuse a dataset without ``privacy_unit`` or ``sandbox.dp``,
    ε above the per-query max, δ ≠ 0, grouping or filtering on a sensitive field, keys without
    a public domain. The budget is reserved/charged through the ledger hooks
    (:meth:`on_submit`, :meth:`on_run_start`, :meth:`on_release`, :meth:`on_abandon`), which
    the service calls inside its own transactions (docs/dp.md).
    """

    name: ClassVar[str] = "dp_query"
    kind: ClassVar[Literal["aggregate", "psi"]] = "aggregate"
    Params = DpQueryParams

    @classmethod
    def check(cls, params: DpQueryParams, contract: Contract, policy: SandboxPolicy) -> list[str]:
        return DpQuery.reasons(params, contract, policy)

    @classmethod
    def columns(cls, params: DpQueryParams, contract: Contract) -> list[str]:
        if DpQuery.reasons(params, contract, None):
            return []
        return DpQuery.build(params, contract).columns()

    @classmethod
    def query(
        cls, params: DpQueryParams, contract: Contract, policy: SandboxPolicy | None = None
    ) -> DpQuery:
        """The :class:`DpQuery` of a job.

        Raises:
            PolicyRefused: the query is refused (every reason listed).
        """
        return DpQuery.build(params, contract, policy)

    @classmethod
    def run(cls, ctx: RunContext) -> Output:
        from sandbox._disclosure import bound_rows

        query = DpQuery.build(ctx.params, ctx.contract, ctx.policy)
        selection, bounding = None, "computed"
        cache_dir = getattr(ctx, "cache_dir", None)
        version = getattr(ctx, "delta_version", None)
        if cache_dir is not None and version is not None:
            cache = BoundingCache(cache_dir)
            selection = cache.selection(query.bounding_key(version), ctx.table)
            bounding = "cached" if cache.hits else "computed and cached"
        doc, table = query.release(ctx.table, selection)
        bound_rows(table, ctx.policy.max_output_rows)
        data = json.dumps(doc, ensure_ascii=False, sort_keys=True).encode("utf-8")
        eps, delta = query.privacy_loss()
        return Output(
            data,
            "application/json",
            table=table,
            summary={
                "cells": table.num_rows,
                "epsilon": fraction_text(eps),
                "delta": fraction_text(delta),
                "mechanism": query.mechanism,
                "bounding": bounding,
            },
        )

    # --- ledger hooks (sandbox._ledger.LedgerHooks): each attempt charges the query's (ε, δ) -
    @classmethod
    def charge(cls, params: DpQueryParams, contract: Contract) -> Charge:
        """The query's exact (ε, δ) per attempt against the dataset's ``sandbox.dp`` caps.

        Raises:
            PolicyRefused: the query is refused (:meth:`DpQuery.reasons`).
        """
        q = cls.query(params, contract)
        eps, delta = q.privacy_loss()
        return Charge(
            eps, delta, q.dp.epsilon_cap_q, q.dp.delta_cap_q, q.mechanism, params.statistic_name
        )


# --- reports and the demo step ----------------------------------------------------------------
def budget_report(
    factory: Any, *, requester: str | None = None, dataset: str | None = None
) -> list[dict[str, Any]]:
    """The privacy budgets with ledger entries (``govdx sandbox budget``), exact.

    Args:
        factory: a catalog session factory (``catalog.open_catalog(url)``).
        requester, dataset: optional filters. A pair named by both is shown even before its
            first query.

    Returns:
        One :meth:`sandbox._ledger.BudgetStatus.to_dict` per (requester, dataset), sorted;
        empty when a known requester or dataset has no ledger entries yet.

    Raises:
        UserError: a named requester is neither a user nor in the ledger (用户不存在).
        catalog.DatasetNotFound: a named dataset is not in the catalog.
        ContractError: a dataset's ``sandbox.dp`` block is invalid.
    """
    import yaml

    import catalog
    from sandbox._errors import UserError
    from sandbox._ledger import budget_status, ledger_pairs
    from sandbox._models import User

    out: list[dict[str, Any]] = []
    with factory() as s:
        pairs = ledger_pairs(s, requester=requester, dataset=dataset)
        if (
            requester
            and s.get(User, requester) is None
            and not any(r == requester for r, _ in pairs)
        ):
            raise UserError(f"unknown user {requester!r} (用户不存在); see `govdx users list`")
        if dataset:
            catalog.get_dataset(session=s, code=dataset)  # DatasetNotFound names the code
        if requester and dataset and (requester, dataset) not in pairs:
            pairs.append((requester, dataset))
        for req, code in pairs:
            ds = catalog.get_dataset(session=s, code=code)
            contract = Contract.from_dict(
                yaml.safe_load(ds.contract_yaml or ""), path=f"catalog:{code}"
            )
            dp = dp_policy(contract)
            cap_e = dp.epsilon_cap_q if dp else Fraction(0)
            cap_d = dp.delta_cap_q if dp else Fraction(0)
            st = budget_status(s, requester=req, dataset=code, epsilon_cap=cap_e, delta_cap=cap_d)
            out.append(st.to_dict())
    return out


def demo_dp_step(
    settings: Any,
    *,
    dataset: str = "RSJ-0001",
    analyst: str = "bdb_analyst",
    steward: str = "rsj_steward",
    reviewer: str = "dp_reviewer",
    epsilon: str = "1/2",
) -> dict[str, Any]:
    """Demo step: employees insured per district (分区县参保人数), released with DP to an analyst.

    Submits a ``dp_query`` count of the social-insurance dataset grouped by the employer's
    registration district (USCC characters 3–8, public domain: GB/T 2260 county codes in use),
    has the RSJ steward and a reviewer approve it (双人复核: the dataset holds sensitive PI),
    runs it and releases it to the analyst. Missing users are created (analyst, steward of
    RSJ, reviewer). The social-insurance dataset must be ingested and in the catalog.

    Args:
        settings: the deployment's :class:`govdx.Settings`.
        dataset, analyst, steward, reviewer: catalog code and user names.
        epsilon: ε of the query (exact text).

    Returns:
        ``{"job_id", "epsilon", "mechanism", "scale", "ci_halfwidth", "districts",
        "sample_districts": [[code, noisy count, ci_low, ci_high] × 5] (the first five
        codes: a fixed choice, not the largest noisy counts), "budget": {...}}``.

    Raises:
        sandbox.SandboxError: a refusal (e.g. :class:`sandbox._ledger.BudgetExceeded`) or a
            failed run (:class:`RunError` with the worker's reason).
    """
    from sandbox._service import Sandbox
    from sandbox._spec import parse_job_spec

    box = Sandbox(settings)
    try:
        box.ensure_users(
            [
                (analyst, "analyst", None),
                (steward, "steward", dataset.split("-")[0]),
                (reviewer, "reviewer", None),
            ]
        )
        spec = parse_job_spec(
            {
                "purpose": "分区县参保人数统计（差分隐私发布）",
                "legal_basis": "政务数据共享协议 2026-DP-01",
                "dataset": dataset,
                "computation": {
                    "name": "dp_query",
                    "params": {
                        "statistic": "count",
                        "group_by": ["employer_district"],
                        "epsilon": epsilon,
                    },
                },
            }
        )
        job_id, data = box.run_through(
            spec, requester=analyst, approvers=[steward, reviewer], what="demo DP"
        )
        doc = json.loads(data)
        # a fixed, data-independent choice of cells to show (code order): ranking by noisy
        # value would pick the cells noise pushed up, and their intervals would overstate them
        rows = sorted(doc["rows"], key=lambda r: str(r[0]))
        budget = budget_report(box.factory, requester=analyst, dataset=dataset)
        return {
            "job_id": job_id,
            "epsilon": doc["epsilon"],
            "mechanism": doc["mechanism"],
            "scale": doc["noise"][0]["scale"],
            "ci_halfwidth": doc["noise"][0]["ci_halfwidth"],
            "districts": len(rows),
            "sample_districts": rows[:5],
            "budget": budget[0] if budget else None,
        }
    finally:
        box.close()
