"""Errors of the sandbox package (沙箱错误).

Tree::

    govdx.DefinitionError
    └── JobSpecError               a job spec is invalid (names the file and dotted key)
    govdx.GovdxRuntimeError
    └── SandboxError               root of the runtime errors of this package
        ├── JobNotFound            no job has this id (the id is echoed, nothing else)
        ├── UserError              unknown acting user, bad role (身份错误)
        ├── Refused                a request was refused by policy or by the rules of the
        │   │                      state machine; ``reason`` is safe to show the requester
        │   ├── PolicyRefused      the dataset policy forbids the job (策略拒绝)
        │   ├── PermissionDenied   the acting user may not do this (无权操作)
        │   └── TransitionRefused  the job is not in a state that allows this (状态不允许)
        └── RunError               the worker failed (超时, 内存超限, 进程退出, computation error)

No message of these errors carries a value of a dataset row: they name jobs, users, dataset
codes, columns and keys, never cells.
"""

from __future__ import annotations

from govdx._errors import DefinitionError, GovdxRuntimeError


class JobSpecError(DefinitionError):
    """A job spec (作业描述) is invalid.

    Attributes:
        path: the spec file, when it came from one.
        key: dotted key of the first offending value (``computation.params.max_items``).
        errors: every offending ``(dotted key, message)`` (the API returns one entry each).
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        key: str | None = None,
        errors: list[tuple[str | None, str]] | None = None,
    ) -> None:
        self.path = path
        self.key = key
        self.errors = errors if errors is not None else [(key, message)]
        where = ": ".join(p for p in (path, key) if p)
        super().__init__(f"{where}: {message}" if where else message)


class SandboxError(GovdxRuntimeError):
    """Root of the sandbox runtime errors (沙箱运行错误)."""


class JobNotFound(SandboxError):
    """No sandbox job has this id (作业不存在)."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"sandbox job {job_id!r} not found (作业不存在)")


class UserError(SandboxError):
    """The acting user is missing or unknown, or a user definition is invalid (身份错误)."""


class Refused(SandboxError):
    """A request was refused (请求被拒绝). ``reason`` is safe to show to the requester."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class QuotaReason(str):
    """A refusal reason that is a spent quota (配额已用完): the same request may pass later.
    A ``str`` (shown and stored as text); callers tell it apart with ``isinstance`` — e.g. the
    demo skips a step whose only reasons are quotas — not by matching the text."""

    __slots__ = ()


class PolicyRefused(Refused):
    """The dataset's sandbox policy forbids the job (策略拒绝).

    Attributes:
        reasons: every rule that failed, each a sentence.
    """

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = list(reasons)
        super().__init__("; ".join(self.reasons) or "refused by policy (策略拒绝)")


class InputRefused(PolicyRefused):
    """An input file of the job is malformed or does not fit it (输入不合规): a PSI request
    that does not parse, has more items or buckets than allowed, or was normalized for another
    identifier type. The API answers 422 (the client's file), other policy refusals 403.
    """


class PermissionDenied(Refused):
    """The acting user may not perform this action on this job (无权操作)."""


class TransitionRefused(Refused):
    """The job's current state does not allow the requested transition (状态不允许)."""


class RunError(SandboxError):
    """A sandbox run failed: time limit, memory limit, worker died or computation error."""
