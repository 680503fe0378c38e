"""The job state machine: every allowed and every forbidden transition."""

from __future__ import annotations

import itertools

import pytest

from sandbox import (
    TERMINAL,
    TRANSITIONS,
    JobState,
    TransitionRefused,
    can_transition,
    check_transition,
)

S = JobState
ALLOWED = {
    (S.submitted, S.policy_checked),
    (S.submitted, S.rejected),
    (S.submitted, S.cancelled),
    (S.policy_checked, S.awaiting_approval),
    (S.policy_checked, S.approved),
    (S.policy_checked, S.rejected),
    (S.policy_checked, S.cancelled),
    (S.awaiting_approval, S.approved),
    (S.awaiting_approval, S.rejected),
    (S.awaiting_approval, S.cancelled),
    (S.awaiting_approval, S.expired),
    (S.approved, S.running),
    (S.approved, S.cancelled),
    (S.approved, S.expired),
    (S.running, S.succeeded),
    (S.running, S.failed),
    (S.failed, S.running),
    (S.failed, S.cancelled),
    (S.succeeded, S.released),
}
PAIRS = list(itertools.product(JobState, JobState))


def test_transition_table_is_exactly_the_documented_one():
    table = {(a, b) for a, nxt in TRANSITIONS.items() for b in nxt}
    assert table == ALLOWED
    assert {S.released, S.rejected, S.cancelled, S.expired} == TERMINAL


@pytest.mark.parametrize(("a", "b"), sorted(ALLOWED), ids=[f"{a}->{b}" for a, b in sorted(ALLOWED)])
def test_allowed(a, b):
    assert can_transition(a, b)
    check_transition("j1", a, b)


FORBIDDEN = [p for p in PAIRS if p not in ALLOWED]


@pytest.mark.parametrize(("a", "b"), FORBIDDEN, ids=[f"{a}->{b}" for a, b in FORBIDDEN])
def test_forbidden(a, b):
    assert not can_transition(a, b)
    with pytest.raises(
        TransitionRefused, match=f"job j1: cannot go from {a.value} .* to {b.value}"
    ):
        check_transition("j1", a, b)


def test_counts():
    assert len(PAIRS) == 121 and len(ALLOWED) == 19 and len(FORBIDDEN) == 102


def test_unknown_state_name():
    with pytest.raises(ValueError):
        can_transition("submitted", "done")
