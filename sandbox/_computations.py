"""Computations a sandbox job may run (沙箱计算): pure descriptions plus a ``run``.

Each computation is a class with:

* ``name`` (registry key), ``kind`` (``aggregate`` | ``psi``: drives approval and disclosure),
  ``Params`` (pydantic model, extra keys forbidden), ``required_inputs`` (input files);
* ``check(params, contract, policy) -> reasons`` and ``check_quota(params, policy, usage)``:
  pure policy checks, no data;
* ``columns(params, contract) -> [column]``: the only columns the runner reads and, for
  protected ones, decrypts;
* ``run(ctx) -> Output``: inside the worker process, over the pinned table.

Built in: ``psi`` (server side of ECDH-PSI over one identifier column, privacy._psi) and
``aggregate`` (count/sum/mean by non-identifying columns, groups < k suppressed). Tests and
deployments add more with :func:`register_computation`; the worker imports a computation by
``module:qualname``, so it must live in an importable module.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from govdx._contract import Contract
from sandbox._errors import QuotaReason, RunError

if TYPE_CHECKING:
    from collections.abc import Callable

    from sandbox._policy import SandboxPolicy, Usage


@dataclass
class RunContext:
    """What a computation gets inside the worker.

    Attributes:
        table: pyarrow.Table[rows × needed columns] of the pinned version; protected columns
            already decrypted and cast back to their contract type.
        params: the computation's validated params model.
        policy: the dataset's :class:`~sandbox.SandboxPolicy`.
        contract: the dataset's contract.
        inputs: input name → file in the job folder (e.g. the PSI request).
        owner: the requester's department owns the dataset.
        delta_version: the pinned Delta version of ``table`` (None outside the worker).
        cache_dir: ``<GOVDX_HOME>/sandbox/cache``, for per-version caches (None: no cache).
        audit: ``(event, details)`` callback recording an audit entry by the job's actor on
            ``job:<id>`` (None outside the worker), e.g. a key-stock claim.
    """

    table: pa.Table
    params: Any
    policy: SandboxPolicy
    contract: Contract
    inputs: dict[str, Path] = field(default_factory=dict)
    owner: bool = False
    delta_version: int | None = None
    cache_dir: Path | None = None
    audit: Callable[[str, dict[str, Any]], None] | None = None


@dataclass
class Output:
    """What a computation returns.

    Attributes:
        data: the result bytes that would be released.
        media_type: ``application/json`` or ``application/x-govdx-psi-response``.
        table: the result as a table when it is tabular (disclosure control scans it).
        summary: small JSON-ready facts for the job record (no data values).
    """

    data: bytes
    media_type: str
    table: pa.Table | None = None
    summary: dict[str, Any] = field(default_factory=dict)


class Computation:
    """Base of sandbox computations (see the module docstring)."""

    name: ClassVar[str] = ""
    kind: ClassVar[Literal["aggregate", "psi"]] = "aggregate"
    Params: ClassVar[type[BaseModel]]
    required_inputs: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def check(cls, params: Any, contract: Contract, policy: SandboxPolicy) -> list[str]:
        """Policy checks of the params against the contract and policy; reasons (empty = ok)."""
        return []

    @classmethod
    def check_quota(cls, params: Any, policy: SandboxPolicy, usage: Usage) -> list[str]:
        """Quota checks beyond the job count; reasons (empty = ok)."""
        return []

    @classmethod
    def columns(cls, params: Any, contract: Contract) -> list[str]:
        """The dataset columns the run reads."""
        return []

    @classmethod
    def check_inputs(cls, params: Any, inputs: dict[str, bytes]) -> list[str]:
        """Checks of the input files at submit (well-formed, within bounds); reasons."""
        return []

    @classmethod
    def run(cls, ctx: RunContext) -> Output:  # pragma: no cover - abstract
        """Compute the result inside the worker."""
        raise NotImplementedError

    @classmethod
    def import_path(cls) -> str:
        """``module:qualname`` the worker imports this class by."""
        return f"{cls.__module__}:{cls.__qualname__}"


_REGISTRY: dict[str, type[Computation]] = {}


def register_computation(cls: type[Computation]) -> type[Computation]:
    """Register a computation class under ``cls.name`` (usable as a decorator).

    Raises:
        ValueError: empty name.
    """
    if not cls.name:
        raise ValueError(f"{cls.__qualname__}: computation needs a name")
    _REGISTRY[cls.name] = cls
    return cls


def get_computation(name: str) -> type[Computation] | None:
    """The registered computation called ``name``, or None."""
    return _REGISTRY.get(name)


def computation_names() -> list[str]:
    """Names of the registered computations, sorted."""
    return sorted(_REGISTRY)


def import_computation(path: str) -> type[Computation]:
    """Import a computation class by ``module:qualname`` (in the worker).

    Raises:
        RunError: the module or class cannot be imported.
    """
    module, _, qual = path.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise RunError(f"computation {path!r} cannot be imported: {exc}") from exc
    return obj


def _field_or_reason(contract: Contract, name: str, key: str) -> tuple[Any, list[str]]:
    try:
        return contract.field(name), []
    except KeyError:
        return None, [f"{key}: dataset {contract.code} has no field {name!r}"]


def psi_set_reasons(
    column: str, max_items: int, contract: Contract, policy: SandboxPolicy
) -> list[str]:
    """Why an identifier set sent for intersection (``psi``, a ``psi_sum`` join, an
    ``he_cohort`` offer) is refused by the contract: the column is missing or not a PSI column
    (``sandbox.psi_columns``; default the identifier fields), ``max_items`` above
    ``sandbox.psi_max_items``. Pure; empty when allowed."""
    from sandbox._policy import IDENTIFIER_ELEMENTS

    f, reasons = _field_or_reason(contract, column, "computation.params.column")
    if f is not None:
        allowed = policy.psi_columns
        if allowed is None:
            allowed = [x.name for x in contract.fields if x.element in IDENTIFIER_ELEMENTS]
        if column not in allowed:
            reasons.append(
                f"computation.params.column: PSI is not allowed on column {column!r} "
                f"of {contract.code} (allowed: {allowed})"
            )
    if max_items > policy.psi_max_items:
        reasons.append(
            f"computation.params.max_items: {max_items} items exceeds the cap of "
            f"{policy.psi_max_items} (sandbox.psi_max_items, 求交集合规模上限)"
        )
    return reasons


def psi_quota_reasons(max_items: int, policy: SandboxPolicy, usage: Usage) -> list[str]:
    """The requester's 24-hour PSI item quota (``sandbox.psi_items_per_day``) for one more
    identifier set of ``max_items``; ``usage`` counts the sets already sent
    (``sandbox._service.usage_since``). Empty when it fits."""
    if usage.psi_items + max_items > policy.psi_items_per_day:
        return [
            QuotaReason(
                f"quota: {usage.psi_items} + {max_items} PSI items in 24 h exceeds "
                f"sandbox.psi_items_per_day = {policy.psi_items_per_day} (求交配额)"
            )
        ]
    return []


# --- PSI ------------------------------------------------------------------------------------
class PsiParams(BaseModel):
    """Params of ``psi``.

    Attributes:
        column: the dataset's identifier column to intersect with.
        max_items: the requester's set size bound (items); the server refuses a larger set.
        reveal: the requester wants the intersection itself, not only its cardinality.
        fpr: false-positive rate of the server's Bloom filter/GCS set (openmined-psi).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str = Field(min_length=1)
    max_items: int = Field(gt=0)
    reveal: bool = False
    fpr: float = Field(default=1e-9, gt=0, lt=1e-3)


#: Buckets a PSI request may use in the sandbox: one (the worker answers one set; bucketing
#: is for the library's own server, docs/psi.md) — a larger request is refused at submit.
PSI_MAX_BUCKETS = 1


@register_computation
class Psi(Computation):
    """Private set intersection, server side (隐私求交, 服务端), over one identifier column.

    The requester runs the client (``govdx client psi request``): its request holds only its
    blinded items. The worker blinds the dataset's normalised identifiers and answers; the
    requester finishes on its own machine and learns the cardinality (or, when policy allows
    and it asked, the intersection of its own items). Source: openmined-psi (ECDH-PSI) through
    ``privacy._psi``.
    """

    name = "psi"
    kind = "psi"
    Params = PsiParams
    required_inputs = frozenset({"request"})

    @classmethod
    def check(cls, params: PsiParams, contract: Contract, policy: SandboxPolicy) -> list[str]:
        reasons = psi_set_reasons(params.column, params.max_items, contract, policy)
        if params.reveal and not policy.psi_reveal_allowed:
            reasons.append(
                "computation.params.reveal: this dataset releases only the intersection "
                "cardinality (仅可返回交集基数; sandbox.psi_reveal_allowed is false)"
            )
        return reasons

    @classmethod
    def check_quota(cls, params: PsiParams, policy: SandboxPolicy, usage: Usage) -> list[str]:
        return psi_quota_reasons(params.max_items, policy, usage)

    @classmethod
    def columns(cls, params: PsiParams, contract: Contract) -> list[str]:
        return [params.column]

    @classmethod
    def check_inputs(cls, params: PsiParams, inputs: dict[str, bytes]) -> list[str]:
        try:
            from privacy._psi import PsiRequest
        except ImportError:
            return ["PSI (隐私求交) is not available on this platform (privacy._psi missing)"]
        try:
            request = PsiRequest.from_bytes(inputs["request"])
        except Exception as exc:
            return [f"inputs.request: not a well-formed PSI request ({type(exc).__name__})"]
        if bool(getattr(request, "reveal_intersection", False)) and not params.reveal:
            return [
                "inputs.request: the request asks to reveal the intersection but "
                "computation.params.reveal is false"
            ]
        if request.buckets > PSI_MAX_BUCKETS:
            return [
                f"inputs.request: the request uses {request.buckets} buckets; the sandbox answers "
                f"at most {PSI_MAX_BUCKETS} (make it without --buckets) (分桶数超限)"
            ]
        n = request.size
        if n > params.max_items:
            return [
                f"inputs.request: the request holds {n} items, more than "
                f"computation.params.max_items = {params.max_items}"
            ]
        return []

    @classmethod
    def input_items(cls, inputs: dict[str, bytes]) -> int | None:
        """Distinct items in the uploaded request (shown to approvers; checked against
        ``sandbox.psi_min_items``); None if the request cannot be read."""
        try:
            from privacy._psi import PsiRequest

            return int(PsiRequest.from_bytes(inputs["request"]).size)
        except Exception:
            return None

    @staticmethod
    def _element_reason(request_element: str, column: str, contract: Contract) -> str | None:
        """Why a request normalized as ``request_element`` cannot meet ``column``, or None."""
        from privacy._psi import PSI_ELEMENTS

        try:
            element = contract.field(column).element
        except KeyError:
            return None  # check() names the unknown column
        element = element if element in PSI_ELEMENTS else "identifier"
        if request_element == element:
            return None
        return (
            f"inputs.request: the PSI request was normalized as {request_element!r}, column "
            f"{column!r} is {element!r}; create it with --element {element} (标识类型不符)"
        )

    @classmethod
    def check_request_element(
        cls, params: PsiParams, inputs: dict[str, bytes], contract: Contract
    ) -> list[str]:
        """At submit, before two approvers see it: the request's data element (its header)
        matches the column's, so a request for the wrong identifier type is refused at once
        rather than failing in the worker after approval. The worker checks again."""
        from privacy._psi import PsiRequest

        try:
            request = PsiRequest.from_bytes(inputs["request"])
        except Exception:  # check_inputs refused it already
            return []
        why = cls._element_reason(request.element, params.column, contract)
        return [why] if why else []

    @classmethod
    def run(cls, ctx: RunContext) -> Output:
        from privacy._psi import PsiRequest, psi_serve

        p: PsiParams = ctx.params
        request = PsiRequest.from_bytes(ctx.inputs["request"].read_bytes())
        cap = min(p.max_items, ctx.policy.psi_max_items)
        if request.size > cap:
            raise RunError(f"PSI request holds {request.size} items, over the cap of {cap}")
        why = cls._element_reason(request.element, p.column, ctx.contract)
        if why:
            raise RunError(why)
        if request.reveal_intersection and not (p.reveal and ctx.policy.psi_reveal_allowed):
            raise RunError(
                "PSI request asks to reveal the intersection; the job/policy allows only the cardinality"
            )
        values = ctx.table[p.column].drop_null().to_pylist()
        response = psi_serve(
            values,
            request,
            fpr=p.fpr,
            processes=1,
            max_buckets=PSI_MAX_BUCKETS,
            # the client cap is enforced above; the server set is the dataset's, not capped
            max_items=max(cap, len(values)),
            allow_reveal=bool(p.reveal and ctx.policy.psi_reveal_allowed),
        )
        return Output(
            response.to_bytes(),
            "application/x-govdx-psi-response",
            summary={"client_items": request.size, "reveal": bool(request.reveal_intersection)},
        )


# --- aggregate ------------------------------------------------------------------------------
class Metric(BaseModel):
    """One aggregate: ``count`` (rows) or ``sum``/``mean`` of a numeric column."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Literal["count", "sum", "mean"]
    column: str | None = None

    @field_validator("column")
    @classmethod
    def _strip(cls, v: str | None) -> str | None:
        return v.strip() if isinstance(v, str) else v


class AggregateParams(BaseModel):
    """Params of ``aggregate``: ``group_by`` (0–3 non-identifying columns), ``metrics`` (1–10)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    group_by: list[str] = Field(default_factory=list, max_length=3)
    metrics: list[Metric] = Field(min_length=1, max_length=10)


_NUMERIC = {"integer", "decimal"}


@register_computation
class Aggregate(Computation):
    """Group counts, sums and means (分组统计) with small-group suppression (k-anonymity
    threshold ``sandbox.min_group_size_k``, counted in distinct privacy units when the contract
    names ``privacy_unit``, else in rows). Grouping by identifiers or protected fields is
    refused; a sum or mean over a protected field needs it in ``sandbox.sum_columns``; min/max
    are not offered (each is one row's value). Exact: a contract that wants only noisy releases
    allows ``dp_query`` instead (docs/sandbox.md "aggregate")."""

    name = "aggregate"
    kind = "aggregate"
    Params = AggregateParams

    @classmethod
    def check(cls, params: AggregateParams, contract: Contract, policy: SandboxPolicy) -> list[str]:
        from sandbox._policy import IDENTIFIER_ELEMENTS

        reasons: list[str] = []
        for i, col in enumerate(params.group_by):
            key = f"computation.params.group_by.{i}"
            f, r = _field_or_reason(contract, col, key)
            reasons += r
            if f is None:
                continue
            if f.element in IDENTIFIER_ELEMENTS or contract.primary_key == [col] or f.protected:
                reasons.append(
                    f"{key}: may not group by {col!r} (identifier, key or protected field; "
                    "groups would be single rows)"
                )
        for i, m in enumerate(params.metrics):
            key = f"computation.params.metrics.{i}.column"
            if m.op == "count":
                continue
            if m.column is None:
                reasons.append(f"{key}: {m.op} needs a column")
                continue
            f, r = _field_or_reason(contract, m.column, key)
            reasons += r
            if f is not None and f.type.value not in _NUMERIC:
                reasons.append(f"{key}: {m.op} needs a numeric column, {m.column!r} is {f.type}")
            elif f is not None and f.protected and m.column not in (policy.sum_columns or []):
                reasons.append(
                    f"{key}: {m.op} over the protected field {m.column!r} needs the steward's "
                    f"consent: list it in sandbox.sum_columns (敏感字段求和需授权)"
                )
        return reasons

    @classmethod
    def columns(cls, params: AggregateParams, contract: Contract) -> list[str]:
        cols = list(params.group_by)
        for m in params.metrics:
            if m.column and m.column not in cols:
                cols.append(m.column)
        unit = contract.privacy_unit  # k counts distinct units (read, never released)
        if unit and unit not in cols:
            cols.append(unit)
        return cols

    @classmethod
    def run(cls, ctx: RunContext) -> Output:
        from sandbox._disclosure import bound_rows, suppress_small_groups

        p: AggregateParams = ctx.params
        table = ctx.table
        # k counts privacy units (people, enterprises) where the contract names one: ten rows
        # of one taxpayer are that taxpayer's exact figures, not an aggregate
        unit = ctx.contract.privacy_unit
        unit = unit if unit is not None and unit in table.column_names else None
        aggs: list[tuple[Any, ...]] = [([], "count_all")]
        names = ["n"]
        for m in p.metrics:
            if m.op == "count":
                continue
            aggs.append((m.column, m.op))
            names.append(f"{m.op}_{m.column}")
        if unit:
            aggs.append((unit, "count_distinct"))
        if table.num_rows == 0:
            grouped = pa.table({**{c: pa.array([], table[c].type) for c in p.group_by}})
            grouped = grouped.append_column("n", pa.array([], pa.int64()))
            if unit:
                grouped = grouped.append_column("units", pa.array([], pa.int64()))
        else:
            out = (
                table.group_by(p.group_by).aggregate(aggs)
                if p.group_by
                else table.group_by([], use_threads=False).aggregate(aggs)
            )
            rename = {"count_all": "n", f"{unit}_count_distinct": "units"}
            rename.update(
                {f"{m.column}_{m.op}": f"{m.op}_{m.column}" for m in p.metrics if m.column}
            )
            out = out.rename_columns([rename.get(c, c) for c in out.column_names])
            keep = [*names, *(["units"] if unit else [])]
            grouped = out.select([*p.group_by, *[n for n in keep if n in out.column_names]])
        released, suppressed = suppress_small_groups(
            grouped, count_column="units" if unit else "n", k=ctx.policy.min_group_size_k
        )
        if unit:
            released = released.drop_columns(["units"])
        released = bound_rows(released, ctx.policy.max_output_rows)
        doc = {
            "columns": released.column_names,
            "rows": [[_json_cell(v) for v in row.values()] for row in released.to_pylist()],
            "k": ctx.policy.min_group_size_k,
            "k_counts": f"distinct {unit}" if unit else "rows",
            "suppressed_groups": suppressed,
        }
        data = json.dumps(doc, ensure_ascii=False, sort_keys=True).encode("utf-8")
        return Output(
            data,
            "application/json",
            table=released,
            summary={"groups": released.num_rows, "suppressed_groups": suppressed},
        )


def _json_cell(v: Any) -> Any:
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, float):
        return round(v, 6)
    if v is None or isinstance(v, int | str | bool):
        return v
    return str(v)
