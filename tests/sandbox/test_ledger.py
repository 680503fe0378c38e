"""sandbox._ledger: exact budget accounting, reserve-then-commit, refusals with the remaining
budget, and no overspend under concurrency."""

from __future__ import annotations

import threading
import time
from fractions import Fraction

import pytest
from sqlalchemy import select

import catalog
from sandbox import (
    BudgetExceeded,
    DpLedgerEntry,
    LedgerError,
    budget_status,
    commit_spend,
    mark_drawn,
    reserve,
    return_reservation,
)

CAP = Fraction(1)


@pytest.fixture
def factory(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    catalog.migrate(url)
    f = catalog.open_catalog(url)
    yield f
    f.kw["bind"].dispose()


def _reserve(s, job_id, eps, *, requester="bank", dataset="RSJ-0001", cap=CAP):
    return reserve(
        s,
        job_id=job_id,
        requester=requester,
        dataset=dataset,
        epsilon=Fraction(eps),
        delta=Fraction(0),
        epsilon_cap=cap,
        delta_cap=Fraction(0),
        mechanism="discrete_laplace",
        statistic="count",
    )


def _full_cycle(factory, job_id, eps, **kw):
    with factory.begin() as s:
        _reserve(s, job_id, eps, **kw)
    with factory.begin() as s:
        mark_drawn(s, job_id=job_id)
    with factory.begin() as s:
        commit_spend(s, job_id=job_id)


def _status(factory, requester="bank", dataset="RSJ-0001"):
    with factory() as s:
        return budget_status(
            s, requester=requester, dataset=dataset, epsilon_cap=CAP, delta_cap=Fraction(0)
        )


def test_eleven_equal_parts_exhaust_the_cap_exactly_and_the_next_is_refused(factory):
    for i in range(11):
        _full_cycle(factory, f"job{i}", "1/11")
    st = _status(factory)
    assert st.epsilon_spent == 1 and st.epsilon_remaining == 0
    assert st.entries == {"spent": 11}
    with factory.begin() as s, pytest.raises(BudgetExceeded, match=r"remaining ε = 0 "):
        _reserve(s, "job11", "1/1000000")
    with factory() as s:
        assert s.scalar(select(DpLedgerEntry).where(DpLedgerEntry.job_id == "job11")) is None


def test_refusal_names_the_remaining_budget(factory):
    _full_cycle(factory, "a", "2/3")
    with factory.begin() as s, pytest.raises(BudgetExceeded) as info:
        _reserve(s, "b", "1/2")
    assert "remaining ε = 1/3 (≈ 0.333333)" in str(info.value)
    assert "隐私预算不足" in str(info.value)
    with factory.begin() as s:  # exactly the remainder still fits
        _reserve(s, "b", "1/3")
    assert _status(factory).epsilon_remaining == 0


def test_reserved_and_drawn_count_returned_does_not(factory):
    with factory.begin() as s:
        _reserve(s, "r", "1/4")
        _reserve(s, "d", "1/4")
    with factory.begin() as s:
        mark_drawn(s, job_id="d")
    st = _status(factory)
    assert (st.epsilon_held, st.epsilon_spent, st.epsilon_remaining) == (
        Fraction(1, 2),
        0,
        Fraction(1, 2),
    )
    with factory.begin() as s:
        assert return_reservation(s, job_id="r").status == "returned"
        assert return_reservation(s, job_id="d") is None  # a drawn run is never refunded
    st = _status(factory)
    # the ended job's run is no longer "held" (it will never release) but still counts
    assert (st.epsilon_held, st.epsilon_forfeited, st.epsilon_remaining) == (
        0,
        Fraction(1, 4),
        Fraction(3, 4),
    )
    assert st.entries == {"returned": 1, "forfeited": 1}


def test_a_failed_attempt_is_forfeited_when_the_job_is_re_run(factory):
    with factory.begin() as s:
        _reserve(s, "f", "1/4")
    with factory.begin() as s:
        mark_drawn(s, job_id="f")  # attempt 1 runs and fails
    with factory.begin() as s:
        again = _reserve(s, "f", "1/4")  # the re-run reserves anew
    assert again.attempt == 2
    st = _status(factory)
    assert (st.epsilon_held, st.epsilon_forfeited, st.epsilon_remaining) == (
        Fraction(1, 4),
        Fraction(1, 4),
        Fraction(1, 2),
    )
    with factory.begin() as s:
        mark_drawn(s, job_id="f")
    with factory.begin() as s:  # the release spends attempt 2, not the forfeited attempt 1
        spent = commit_spend(s, job_id="f")
    assert (spent.attempt, spent.status) == (2, "spent")
    st = _status(factory)
    assert st.entries == {"forfeited": 1, "spent": 1}
    assert (st.epsilon_spent, st.epsilon_forfeited, st.epsilon_remaining) == (
        Fraction(1, 4),
        Fraction(1, 4),
        Fraction(1, 2),
    )
    # a forfeited charge still refuses what would overspend: 1/2 left, 3/4 asked
    with factory.begin() as s, pytest.raises(BudgetExceeded, match="remaining ε = 1/2"):
        _reserve(s, "g", "3/4")


def test_spend_is_recorded_in_the_callers_release_transaction(factory):
    with factory.begin() as s:
        _reserve(s, "j", "1/2")
    with factory.begin() as s:
        mark_drawn(s, job_id="j")
    with pytest.raises(RuntimeError), factory.begin() as s:  # the release rolls back
        commit_spend(s, job_id="j")
        raise RuntimeError("release failed")
    assert _status(factory).entries == {"drawn": 1}
    with factory.begin() as s:
        assert commit_spend(s, job_id="j").status == "spent"
    with factory.begin() as s:  # a second fetch costs nothing more
        assert commit_spend(s, job_id="j") is None
    assert _status(factory).epsilon_spent == Fraction(1, 2)


def test_run_without_reservation_is_refused(factory):
    with factory.begin() as s, pytest.raises(LedgerError, match="no reserved privacy budget"):
        mark_drawn(s, job_id="nope")


def test_budgets_are_per_requester_and_dataset(factory):
    _full_cycle(factory, "a", 1)
    with factory.begin() as s:
        _reserve(s, "b", 1, requester="bank2")
        _reserve(s, "c", 1, dataset="SWJ-0001")
    with factory.begin() as s, pytest.raises(BudgetExceeded):
        _reserve(s, "d", "1/10")


def test_two_concurrent_jobs_cannot_both_take_the_last_unit(factory):
    """Thread A reserves the last 1/2 and holds its transaction open; thread B, started
    meanwhile, waits on the budget lock, then sees A's reservation and is refused."""
    _full_cycle(factory, "first", "1/2")
    url = factory.kw["bind"].url.render_as_string(hide_password=False)
    outcomes: dict[str, str] = {}
    a_holds = threading.Event()

    def run(name: str, hold: bool) -> None:
        f = catalog.open_catalog(url)
        try:
            with f.begin() as s:
                _reserve(s, name, "1/2")
                if hold:
                    a_holds.set()
                    time.sleep(0.5)
            outcomes[name] = "ok"
        except BudgetExceeded:
            outcomes[name] = "refused"
        except LedgerError:
            outcomes[name] = "busy"
        finally:
            f.kw["bind"].dispose()

    ta = threading.Thread(target=run, args=("A", True))
    tb = threading.Thread(target=run, args=("B", False))
    ta.start()
    assert a_holds.wait(5)
    tb.start()
    ta.join(10)
    tb.join(10)
    assert outcomes == {"A": "ok", "B": "refused"}
    assert _status(factory).epsilon_remaining == 0


def test_many_racing_reservations_never_overspend(factory):
    url = factory.kw["bind"].url.render_as_string(hide_password=False)
    results: list[str] = []
    barrier = threading.Barrier(6)

    def run(i: int) -> None:
        f = catalog.open_catalog(url)
        try:
            barrier.wait()
            with f.begin() as s:
                _reserve(s, f"r{i}", "1/4")
            results.append("ok")
        except BudgetExceeded:
            results.append("refused")
        except LedgerError:
            results.append("busy")
        finally:
            f.kw["bind"].dispose()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results.count("ok") == 4
    st = _status(factory)
    assert st.epsilon_held == 1 and st.epsilon_remaining == 0
