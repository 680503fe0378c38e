"""Sandbox policy (沙箱策略): the contract's ``sandbox:`` block and the pure job decision.

A contract may carry::

    sandbox:
      allowed_computations: [psi]      # which computations may run on this dataset
      psi_columns: [taxpayer_id]       # identifier columns PSI may run over (default: all
                                       # fields whose element is uscc / resident_id / phone)
      psi_max_items: 100000            # largest requester set (items) per PSI job
      psi_items_per_day: 200000        # requester quota: items over all PSI jobs in 24 h
      psi_reveal_allowed: false        # may the requester learn the intersection itself,
                                       # or only its cardinality (交集基数)
      min_group_size_k: 10             # smallest group any released aggregate may show
      quota_jobs_per_day: 5            # jobs per requester and dataset in 24 h
      max_output_rows: 10000           # rows of any released table
      time_limit_seconds: 600          # wall-clock limit of one run
      memory_limit_mb: 2048            # address-space limit of the worker (RLIMIT_AS)
      approval_ttl_hours: 72           # a job awaiting approval longer than this expires

:func:`evaluate_policy` is a pure function of (spec, contract, requester, usage): it reads no
data and writes nothing, so the same decision can be shown before submitting, recorded with the
job and re-checked before a run (STYLE.md §5).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from govdx._contract import SHARE_TYPE_ZH, Contract, Grade, PersonalInfo, ShareType
from govdx._errors import ContractError
from sandbox._errors import QuotaReason

if TYPE_CHECKING:
    from sandbox._spec import JobSpec

#: Data elements that identify a person or an organisation: PSI may run over them, aggregates
#: may never group by them.
IDENTIFIER_ELEMENTS = frozenset({"uscc", "resident_id", "phone"})
#: Roles that may submit jobs.
SUBMITTER_ROLES = frozenset({"requester", "analyst", "steward"})


class SandboxPolicy(BaseModel):
    """The parsed ``sandbox:`` block of a contract, with safe defaults (see the module doc).

    Attributes:
        allowed_computations: computation names allowed on the dataset (default ``["psi"]``).
        psi_columns: columns PSI may run over; None = every identifier field.
        psi_max_items: largest requester set per PSI job, items.
        psi_items_per_day: requester quota over all its PSI jobs on this dataset in 24 h, items.
        psi_min_items: smallest requester set (distinct items actually in the request) per PSI
            job: a set of one would answer "is this enterprise a taxpayer here?". Padding with
            made-up identifiers defeats it, so quotas and approvals still matter (docs/psi.md).
        psi_reveal_allowed: the intersection itself may be revealed (else cardinality only).
        psi_keep_cohort_allowed: ``he_cohort`` may run: the sandbox (platform) learns which of
            the dataset's rows the requester holds (a declared leakage, docs/he.md "Cohorts").
        min_group_size_k: k, the smallest group a released aggregate may show (≥ 2).
        quota_jobs_per_day: jobs per requester and dataset in 24 h.
        max_output_rows: rows of a released table.
        time_limit_seconds: wall-clock limit of one run, seconds.
        memory_limit_mb: address-space limit of the worker, MiB (≥ 2048: pyarrow, duckdb and
            the deltalake (tokio) runtime map ~1.7 GiB of address space to read a table).
        approval_ttl_hours: hours a job may wait for approval before it expires.
        dp: the differential-privacy block (budget caps, contribution bound, clamp bounds,
            public group domains), validated by :func:`sandbox._dp.dp_policy` (docs/dp.md).
        sum_columns: numeric columns psi_sum / he_sum may add up (None = none; docs/he.md).
        fl: the federated-training block (parties, rounds, dropout policy), validated by
            :func:`sandbox._fl.fl_policy` (docs/federated.md).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_computations: list[str] = Field(default_factory=lambda: ["psi"])
    psi_columns: list[str] | None = None
    psi_max_items: int = Field(default=100_000, ge=1, le=10_000_000)
    psi_items_per_day: int = Field(default=200_000, ge=1)
    psi_min_items: int = Field(default=10, ge=1)
    psi_reveal_allowed: bool = False
    psi_keep_cohort_allowed: bool = False  # he_cohort: the sandbox learns the matched rows
    min_group_size_k: int = Field(default=10, ge=2)
    quota_jobs_per_day: int = Field(default=5, ge=1)
    max_output_rows: int = Field(default=10_000, ge=1)
    time_limit_seconds: float = Field(default=600.0, gt=0, le=86_400)
    memory_limit_mb: int = Field(default=2048, ge=2048)
    approval_ttl_hours: float = Field(default=72.0, gt=0)
    dp: dict[str, Any] | None = None  # differential privacy; parsed by sandbox._dp.dp_policy
    sum_columns: list[str] | None = None  # psi_sum / he_sum value columns (docs/he.md)
    fl: dict[str, Any] | None = None  # federated training; parsed by sandbox._fl.fl_policy


def sandbox_policy(contract: Contract) -> SandboxPolicy:
    """The :class:`SandboxPolicy` of a contract (defaults when it has no ``sandbox:`` block).

    Raises:
        ContractError: the block has an unknown key or a bad value (``sandbox.psi_max_items``).
    """
    try:
        return SandboxPolicy.model_validate(contract.sandbox or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(["sandbox", *(str(p) for p in first["loc"])])
        msg = (
            f"unknown key {first['loc'][-1]!r}"
            if first["type"] == "extra_forbidden"
            else first["msg"]
        )
        raise ContractError(msg, path=contract.code, key=key) from exc


class RequesterLike(Protocol):
    """What the policy needs of a user: ``name``, ``role``, ``department_code``."""

    name: str
    role: str
    department_code: str | None


@dataclass(frozen=True)
class Usage:
    """The requester's use of one dataset in the last 24 hours (for quotas).

    Attributes:
        jobs: jobs submitted (not counting refused ones).
        psi_items: items declared over its PSI jobs (``max_items``).
    """

    jobs: int = 0
    psi_items: int = 0


@dataclass(frozen=True)
class PolicyDecision:
    """The outcome of :func:`evaluate_policy` (策略判定).

    Attributes:
        allowed: the job may proceed.
        reasons: why it may not (each a sentence, no data values), empty when allowed.
        approvals_required: distinct approvers needed (0, 1 or 2).
        reviewer_required: one approver must be a reviewer (审核员, 双人复核).
        auto_approve: no human approval needed (unconditional share, general non-personal
            fields only, aggregate computation).
        owner: the requester's department owns the dataset.
        owner_department: the owning department code (its steward approves).
    """

    allowed: bool
    reasons: list[str] = field(default_factory=list)
    approvals_required: int = 0
    reviewer_required: bool = False
    auto_approve: bool = False
    owner: bool = False
    owner_department: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def is_sensitive_dataset(contract: Contract) -> bool:
    """True when the dataset is core/important (GB/T 43697) or holds sensitive PI."""
    return contract.grade in (Grade.core, Grade.important) or any(
        f.pi is PersonalInfo.sensitive for f in contract.fields
    )


def evaluate_policy(
    spec: JobSpec,
    contract: Contract,
    requester: RequesterLike,
    *,
    usage: Usage | None = None,
) -> PolicyDecision:
    """Decide whether a job may run and who must approve it. Touches no data.

    Rules, in order (every failing rule adds a reason):

    * the spec's dataset is the contract's; the requester's role may submit;
    * share type ``none`` (不予共享) refuses every job;
    * the computation is known and in ``sandbox.allowed_computations``, and its own checks
      pass (columns exist, set size ≤ cap, reveal only when allowed, k, …);
    * quotas: jobs per day, PSI items per day (when ``usage`` is given);
    * approvals: ``conditional`` needs a steward of the owning department; a core/important
      dataset or one with sensitive fields needs a second, different approver who is a
      reviewer (双人复核); ``unconditional`` with general non-personal fields only and an
      aggregate computation is auto-approved.

    Args:
        spec: the validated job spec.
        contract: the dataset's contract (with its ``sandbox:`` block).
        requester: the submitting user.
        usage: the requester's use of this dataset in the last 24 h; None skips quotas.

    Returns:
        A :class:`PolicyDecision`.

    Raises:
        ContractError: the contract's ``sandbox:`` block is invalid.
    """
    from sandbox._computations import get_computation

    policy = sandbox_policy(contract)
    owner_dept = contract.department.code
    owner = requester.department_code == owner_dept
    reasons: list[str] = []
    if spec.dataset != contract.code:
        reasons.append(f"job names dataset {spec.dataset!r} but the contract is {contract.code!r}")
    if requester.role not in SUBMITTER_ROLES:
        reasons.append(
            f"user {requester.name!r} has role {requester.role!r}, which may not submit jobs "
            f"(allowed: {sorted(SUBMITTER_ROLES)})"
        )
    share = contract.share.type
    if share is ShareType.none:
        reasons.append(
            f"dataset {contract.code} is {SHARE_TYPE_ZH['none']} (share type none): no sandbox "
            "job may run on it"
        )
    name = spec.computation.name
    comp = get_computation(name)
    if name not in policy.allowed_computations:
        reasons.append(
            f"computation {name!r} is not allowed on {contract.code} "
            f"(sandbox.allowed_computations: {policy.allowed_computations})"
        )
    elif comp is None:
        reasons.append(f"computation {name!r} is unknown to this platform")
    if comp is not None:
        reasons.extend(comp.check(spec.params, contract, policy))
        if usage is not None:
            reasons.extend(comp.check_quota(spec.params, policy, usage))
    if usage is not None and usage.jobs >= policy.quota_jobs_per_day:
        reasons.append(
            QuotaReason(
                f"quota: {requester.name!r} already submitted {usage.jobs} job(s) on "
                f"{contract.code} in 24 h (sandbox.quota_jobs_per_day = "
                f"{policy.quota_jobs_per_day})"
            )
        )
    if reasons:
        return PolicyDecision(False, reasons, owner=owner, owner_department=owner_dept)

    sensitive = is_sensitive_dataset(contract)
    general_only = all(
        f.grade is Grade.general and f.pi is PersonalInfo.none for f in contract.fields
    )
    kind = comp.kind if comp is not None else ""
    if share is ShareType.unconditional and general_only and kind == "aggregate":
        return PolicyDecision(True, [], 0, False, True, owner, owner_dept)
    if sensitive:
        return PolicyDecision(True, [], 2, True, False, owner, owner_dept)
    return PolicyDecision(True, [], 1, False, False, owner, owner_dept)
