"""A demo run again in the same home: a spent quota or privacy budget skips the step with its
reason (the limits hold for the demo's users too); any other refusal still fails the demo."""

from __future__ import annotations

import pytest

from govdx.cli._demo import _skipped
from sandbox import BudgetExceeded, PermissionDenied, PolicyRefused, QuotaReason


@pytest.mark.parametrize(
    "exc",
    [
        BudgetExceeded(["privacy budget exceeded (隐私预算不足): remaining ε = 0"]),
        PolicyRefused([QuotaReason("quota: 5 jobs by 'bank_credit' on SWJ-0001 in 24 h")]),
    ],
    ids=["budget", "quota"],
)
def test_a_spent_limit_skips_the_step_with_its_reason(exc) -> None:
    assert _skipped(exc, quiet=True) == {"skipped": str(exc)}


@pytest.mark.parametrize(
    "exc",
    [
        PolicyRefused([QuotaReason("quota: 5 jobs in 24 h"), "computation 'psi' is not allowed"]),
        PolicyRefused(["dataset SWJ-0001 is not published in the catalog"]),
        PolicyRefused(["a reason that mentions a quota but is not one"]),  # no text matching
        PermissionDenied("quota"),
    ],
    ids=["quota-and-more", "not-published", "text-only", "permission"],
)
def test_other_refusals_still_fail_the_demo(exc) -> None:
    with pytest.raises(type(exc)) as err:
        _skipped(exc, quiet=True)
    assert err.value is exc
