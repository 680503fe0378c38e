"""The job state machine (作业状态机): states and the allowed transitions, as pure data.

Diagram::

    submitted ──► policy_checked ──► awaiting_approval ──► approved ──► running ──► succeeded ──► released
        │               │  └──(auto-approve)──────────────►  ▲  │         │  ▲
        │               │                     │              │  │         ▼  │ (re-run)
        ▼               ▼                     ▼              │  ▼        failed
     rejected        rejected        rejected / expired      │ expired      │
     cancelled       cancelled       cancelled               │ cancelled    ▼
                                                             │           cancelled

Terminal: released, rejected, cancelled, expired. ``failed`` is not terminal: a failed run may
be started again (``failed → running``) because a run only reads a pinned Delta version and
writes its result atomically, so re-running is safe.
"""

from __future__ import annotations

from enum import StrEnum

from sandbox._errors import TransitionRefused


class JobState(StrEnum):
    """State of a sandbox job (作业状态)."""

    submitted = "submitted"  # 已提交
    policy_checked = "policy_checked"  # 已通过策略检查
    awaiting_approval = "awaiting_approval"  # 待审批
    approved = "approved"  # 已批准
    running = "running"  # 运行中
    succeeded = "succeeded"  # 已完成
    failed = "failed"  # 失败
    released = "released"  # 已发布结果
    rejected = "rejected"  # 已驳回
    cancelled = "cancelled"  # 已撤销
    expired = "expired"  # 已过期


STATE_ZH: dict[str, str] = {
    "submitted": "已提交",
    "policy_checked": "已通过策略检查",
    "awaiting_approval": "待审批",
    "approved": "已批准",
    "running": "运行中",
    "succeeded": "已完成",
    "failed": "失败",
    "released": "已发布",
    "rejected": "已驳回",
    "cancelled": "已撤销",
    "expired": "已过期",
}

S = JobState
#: Every allowed transition; anything else is refused.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    S.submitted: frozenset({S.policy_checked, S.rejected, S.cancelled}),
    S.policy_checked: frozenset({S.awaiting_approval, S.approved, S.rejected, S.cancelled}),
    S.awaiting_approval: frozenset({S.approved, S.rejected, S.cancelled, S.expired}),
    S.approved: frozenset({S.running, S.cancelled, S.expired}),
    S.running: frozenset({S.succeeded, S.failed}),
    S.failed: frozenset({S.running, S.cancelled}),
    S.succeeded: frozenset({S.released}),
    S.released: frozenset(),
    S.rejected: frozenset(),
    S.cancelled: frozenset(),
    S.expired: frozenset(),
}
TERMINAL: frozenset[JobState] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)


def can_transition(current: JobState | str, target: JobState | str) -> bool:
    """True when ``current → target`` is an edge of :data:`TRANSITIONS`.

    Raises:
        ValueError: a state name that is not a :class:`JobState`.
    """
    return JobState(target) in TRANSITIONS[JobState(current)]


def check_transition(job_id: str, current: JobState | str, target: JobState | str) -> None:
    """Refuse a transition that is not allowed.

    Raises:
        TransitionRefused: naming the job, its state and the requested state.
    """
    if not can_transition(current, target):
        cur, tgt = JobState(current), JobState(target)
        raise TransitionRefused(
            f"job {job_id}: cannot go from {cur.value} ({STATE_ZH[cur]}) to {tgt.value} "
            f"({STATE_ZH[tgt]}) (状态不允许)"
        )
