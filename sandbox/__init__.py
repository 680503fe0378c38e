"""govdx sandbox (沙箱): questions asked of data the asker may not see (数据可用不可见).

A requester submits a :class:`JobSpec`; :func:`evaluate_policy` (pure) decides from the
contract's ``sandbox:`` block whether it may run and who must approve; approvers approve
(双人复核 for core/important or sensitive data); a worker runs the job in a spawned process with
time and memory limits over the pinned Delta version; disclosure control checks the output; the
requester fetches the released result. Every transition, refusal, approval, decryption and
release is in the hash-chained, SM2-checkpointed audit log.

Typical use::

    from sandbox import Sandbox, load_job_spec

    box = Sandbox(settings)
    job = box.submit(load_job_spec("job.yaml"), user="icbc_sz")
    box.approve(job["id"], user="swj_steward")
    box.approve(job["id"], user="reviewer_1")
    box.work_once()
    bundle = box.result(job["id"], user="icbc_sz")

Error tree: see :mod:`sandbox._errors`. State diagram: see :mod:`sandbox._states`.
"""

from sandbox._audit_store import PLATFORM_KEY_FILE, Auditor, SqlAuditStore
from sandbox._computations import (
    Aggregate,
    AggregateParams,
    Computation,
    Metric,
    Output,
    Psi,
    PsiParams,
    RunContext,
    computation_names,
    get_computation,
    register_computation,
)
from sandbox._disclosure import (
    DisclosureError,
    assert_no_row_values,
    bound_rows,
    leaked_values,
    release_digest,
    suppress_small_groups,
)
from sandbox._dp import (
    DpPolicy,
    DpQuery,
    DpQueryComputation,
    DpQueryParams,
    budget_report,
    demo_dp_step,
    dp_policy,
)
from sandbox._dp_cache import BoundingCache, BoundingKey, bounded_selection
from sandbox._errors import (
    InputRefused,
    JobNotFound,
    JobSpecError,
    PermissionDenied,
    PolicyRefused,
    QuotaReason,
    Refused,
    RunError,
    SandboxError,
    TransitionRefused,
    UserError,
)
from sandbox._fl import (
    FeatureSpec,
    FlError,
    FlowerDeployment,
    FlPolicy,
    FlTrain,
    FlTrainParams,
    PartitionSpec,
    demo_fl_step,
    fl_policy,
    partition_parties,
    run_federated,
)
from sandbox._he import CohortClient, HeSum, HeSumParams, PsiSum, PsiSumParams, decrypt_he_sum
from sandbox._he_stock import HeStock, list_stock, make_stock
from sandbox._ledger import (
    BudgetExceeded,
    BudgetStatus,
    DpBudget,
    DpLedgerEntry,
    LedgerError,
    budget_status,
    commit_spend,
    mark_drawn,
    reserve,
    return_reservation,
)
from sandbox._models import (
    ROLES,
    Approval,
    AuditCheckpointRow,
    AuditEntryRow,
    Job,
    JobTransition,
    Release,
    User,
)
from sandbox._policy import (
    IDENTIFIER_ELEMENTS,
    PolicyDecision,
    SandboxPolicy,
    Usage,
    evaluate_policy,
    is_sensitive_dataset,
    sandbox_policy,
)
from sandbox._runner import WorkerOutcome, WorkerTask, run_in_worker
from sandbox._service import ResultBundle, Sandbox
from sandbox._spec import ComputationSpec, JobSpec, load_job_spec, parse_job_spec
from sandbox._states import (
    STATE_ZH,
    TERMINAL,
    TRANSITIONS,
    JobState,
    can_transition,
    check_transition,
)

__all__ = [
    "IDENTIFIER_ELEMENTS",
    "PLATFORM_KEY_FILE",
    "ROLES",
    "STATE_ZH",
    "TERMINAL",
    "TRANSITIONS",
    "Aggregate",
    "AggregateParams",
    "Approval",
    "AuditCheckpointRow",
    "AuditEntryRow",
    "Auditor",
    # differential privacy (docs/dp.md)
    "BoundingCache",
    "BoundingKey",
    "BudgetExceeded",
    "BudgetStatus",
    # homomorphic sums (docs/he.md)
    "CohortClient",
    "Computation",
    "ComputationSpec",
    "DisclosureError",
    "DpBudget",
    "DpLedgerEntry",
    "DpPolicy",
    "DpQuery",
    "DpQueryComputation",
    "DpQueryParams",
    # federated training (docs/federated.md)
    "FeatureSpec",
    "FlError",
    "FlPolicy",
    "FlTrain",
    "FlTrainParams",
    "FlowerDeployment",
    "HeStock",
    "HeSum",
    "HeSumParams",
    "InputRefused",
    "Job",
    "JobNotFound",
    "JobSpec",
    "JobSpecError",
    "JobState",
    "JobTransition",
    "LedgerError",
    "Metric",
    "Output",
    "PartitionSpec",
    "PermissionDenied",
    "PolicyDecision",
    "PolicyRefused",
    "Psi",
    "PsiParams",
    "PsiSum",
    "PsiSumParams",
    "QuotaReason",
    "Refused",
    "Release",
    "ResultBundle",
    "RunContext",
    "RunError",
    "Sandbox",
    "SandboxError",
    "SandboxPolicy",
    "SqlAuditStore",
    "TransitionRefused",
    "Usage",
    "User",
    "UserError",
    "WorkerOutcome",
    "WorkerTask",
    "assert_no_row_values",
    "bound_rows",
    "bounded_selection",
    "budget_report",
    "budget_status",
    "can_transition",
    "check_transition",
    "commit_spend",
    "computation_names",
    "decrypt_he_sum",
    "demo_dp_step",
    "demo_fl_step",
    "dp_policy",
    "evaluate_policy",
    "fl_policy",
    "get_computation",
    "is_sensitive_dataset",
    "leaked_values",
    "list_stock",
    "load_job_spec",
    "make_stock",
    "mark_drawn",
    "parse_job_spec",
    "partition_parties",
    "register_computation",
    "release_digest",
    "reserve",
    "return_reservation",
    "run_federated",
    "run_in_worker",
    "sandbox_policy",
    "suppress_small_groups",
]
