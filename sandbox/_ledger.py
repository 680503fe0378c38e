"""The privacy-budget ledger (隐私预算台账): exact ε/δ accounting per (requester, dataset).

Tables (on ``catalog.Base``, revision ``0004_dp_ledger``)::

    dp_budgets   one row per (requester, dataset_code): the lock row every reservation
                 updates first, so two reservations for the same pair are serialised
    dp_ledger    one row per DP job attempt: ε and δ as exact rationals (numerator and
                 denominator as decimal strings), status, mechanism, times

Status of an entry and what it counts for::

    reserved ──(run starts)──► drawn ──(result released)──► spent
        │                        │
        │                        └──(re-run reserves again, or the failed job is cancelled /
        │                            expires)──► forfeited
        └──(job rejected / cancelled / expired before any run)──► returned

``reserved``, ``drawn``, ``spent`` and ``forfeited`` all count against the cap; only
``returned`` does not. A run that started is charged for good: the worker may have drawn noise
before it failed or was killed, and a released-or-not noisy answer computed on the data has
consumed privacy (a failed run is charged, never refunded). ``forfeited`` (已扣除未发布) is an
attempt that ran and can no longer release anything — a failed attempt once the job is re-run
(a new attempt, which reserves again) or ended — so ``govdx sandbox budget`` shows it apart from
ε still *held* by jobs in flight.

Composition (组合): basic sequential composition — the loss of a set of ε_i-DP (δ_i) releases
on the same dataset is at most (Σ ε_i, Σ δ_i) (Dwork & Roth 2014, Theorem 3.16). Sums are of
:class:`fractions.Fraction`, so a cap of 1 spent as eleven queries of 1/11 fits exactly and a
twelfth is refused.

Concurrency: :func:`reserve` first locks the pair's ``dp_budgets`` row (SQLite: ``BEGIN
IMMEDIATE`` when no transaction is open yet, else the row ``UPDATE`` takes the database write
lock; PostgreSQL: the ``UPDATE`` takes a row lock), then sums the entries and inserts its own, in
one transaction. A second reservation waits for the first to commit and then sees it, so two
jobs can never both take the last unit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

from sqlalchemy import Integer, String, UniqueConstraint, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Mapped, Session, mapped_column

from catalog._db import Base, UTCDateTime, utcnow
from privacy._dp import fraction_text
from sandbox._errors import PolicyRefused, SandboxError

#: Statuses that count against the cap.
COUNTED = ("reserved", "drawn", "spent", "forfeited")
STATUS_ZH = {
    "reserved": "已预留",
    "drawn": "已执行",
    "spent": "已发布",
    "forfeited": "已扣除未发布",
    "returned": "已退回",
}


class DpBudget(Base):
    """The lock row of one (requester, dataset) budget (预算锁行); ``lock_seq`` counts updates."""

    __tablename__ = "dp_budgets"

    requester: Mapped[str] = mapped_column(String(64), primary_key=True)
    dataset_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    lock_seq: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DpLedgerEntry(Base):
    """One DP job attempt's charge (预算记账).

    Attributes:
        job_id, attempt: the job and its run attempt (1, 2, … for re-runs); unique together.
        requester, dataset_code: the budget the charge is against.
        eps_num, eps_den, delta_num, delta_den: ε and δ as exact rationals (decimal strings).
        status: ``reserved`` | ``drawn`` | ``spent`` | ``returned`` (module docstring).
        mechanism: e.g. ``discrete_laplace``; statistic: ``count`` | ``sum`` | ….
    """

    __tablename__ = "dp_ledger"
    __table_args__ = (UniqueConstraint("job_id", "attempt"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    requester: Mapped[str] = mapped_column(String(64), index=True)
    dataset_code: Mapped[str] = mapped_column(String(64), index=True)
    eps_num: Mapped[str] = mapped_column(String(80))
    eps_den: Mapped[str] = mapped_column(String(80))
    delta_num: Mapped[str] = mapped_column(String(80), default="0")
    delta_den: Mapped[str] = mapped_column(String(80), default="1")
    status: Mapped[str] = mapped_column(String(16), index=True)
    mechanism: Mapped[str] = mapped_column(String(64))
    statistic: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    @property
    def epsilon(self) -> Fraction:
        """ε of the entry, exact."""
        return Fraction(int(self.eps_num), int(self.eps_den))

    @property
    def delta(self) -> Fraction:
        """δ of the entry, exact."""
        return Fraction(int(self.delta_num), int(self.delta_den))


class BudgetExceeded(PolicyRefused):
    """A DP query would exceed the (requester, dataset) budget (隐私预算不足); the message gives
    the remaining budget. Nothing ran and nothing was charged."""


class LedgerError(SandboxError):
    """The ledger is busy beyond the lock timeout or an entry is missing (预算台账错误)."""


@dataclass(frozen=True)
class BudgetStatus:
    """One (requester, dataset) budget, exact.

    Attributes:
        epsilon_cap, delta_cap: from the contract's ``sandbox.dp`` block.
        epsilon_spent, delta_spent: released results (``spent``).
        epsilon_held, delta_held: reserved, or running, by jobs that may still release —
            also counted.
        epsilon_forfeited, delta_forfeited: attempts that ran and will never release (a failed
            attempt re-run or ended) — also counted, for good (已扣除未发布).
        epsilon_remaining, delta_remaining: cap − spent − held − forfeited (never negative).
        entries: ledger rows of the pair by status.
    """

    requester: str
    dataset: str
    epsilon_cap: Fraction
    delta_cap: Fraction
    epsilon_spent: Fraction
    delta_spent: Fraction
    epsilon_held: Fraction
    delta_held: Fraction
    entries: dict[str, int]
    epsilon_forfeited: Fraction = Fraction(0)
    delta_forfeited: Fraction = Fraction(0)

    @property
    def epsilon_used(self) -> Fraction:
        """spent + held + forfeited: everything that counts against the ε cap."""
        return self.epsilon_spent + self.epsilon_held + self.epsilon_forfeited

    @property
    def delta_used(self) -> Fraction:
        """spent + held + forfeited: everything that counts against the δ cap."""
        return self.delta_spent + self.delta_held + self.delta_forfeited

    @property
    def epsilon_remaining(self) -> Fraction:
        """cap − spent − held − forfeited, ≥ 0."""
        return max(Fraction(0), self.epsilon_cap - self.epsilon_used)

    @property
    def delta_remaining(self) -> Fraction:
        """δ cap − spent − held − forfeited, ≥ 0."""
        return max(Fraction(0), self.delta_cap - self.delta_used)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: rationals as ``"p/q"`` strings plus a float for display."""
        d = asdict(self)
        for k in list(d):
            if isinstance(d[k], Fraction):
                d[k] = fraction_text(d[k])
        d["epsilon_remaining"] = fraction_text(self.epsilon_remaining)
        d["delta_remaining"] = fraction_text(self.delta_remaining)
        d["epsilon_remaining_float"] = float(self.epsilon_remaining)
        return d


def _lock(s: Session, requester: str, dataset: str, now: datetime) -> None:
    """Serialise budget changes of one pair (see the module docstring)."""
    conn = s.connection()
    if conn.dialect.name == "sqlite":
        raw = conn.connection.dbapi_connection
        if raw is not None and not raw.in_transaction:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    stmt = (
        update(DpBudget)
        .where(DpBudget.requester == requester, DpBudget.dataset_code == dataset)
        .values(lock_seq=DpBudget.lock_seq + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    try:
        if s.execute(stmt).rowcount == 1:
            return
        try:
            with s.begin_nested():
                s.add(
                    DpBudget(requester=requester, dataset_code=dataset, lock_seq=1, updated_at=now)
                )
        except IntegrityError:  # another transaction created it first: lock it now
            s.execute(stmt)
    except OperationalError as exc:
        raise LedgerError(
            f"privacy-budget ledger of {requester!r} on {dataset} is busy; try again (预算台账忙)"
        ) from exc


def _sums(
    s: Session, requester: str, dataset: str
) -> tuple[dict[str, Fraction], dict[str, Fraction], dict[str, int]]:
    eps: dict[str, Fraction] = {}
    delta: dict[str, Fraction] = {}
    counts: dict[str, int] = {}
    rows = s.execute(
        select(
            DpLedgerEntry.status,
            DpLedgerEntry.eps_num,
            DpLedgerEntry.eps_den,
            DpLedgerEntry.delta_num,
            DpLedgerEntry.delta_den,
        ).where(DpLedgerEntry.requester == requester, DpLedgerEntry.dataset_code == dataset)
    ).all()
    for status, en, ed, dn, dd in rows:
        eps[status] = eps.get(status, Fraction(0)) + Fraction(int(en), int(ed))
        delta[status] = delta.get(status, Fraction(0)) + Fraction(int(dn), int(dd))
        counts[status] = counts.get(status, 0) + 1
    return eps, delta, counts


def budget_status(
    s: Session, *, requester: str, dataset: str, epsilon_cap: Fraction, delta_cap: Fraction
) -> BudgetStatus:
    """The budget of one pair now (reads only).

    Args:
        s: a catalog session. requester, dataset: the pair.
        epsilon_cap, delta_cap: the caps of the dataset's ``sandbox.dp`` block.
    """
    eps, delta, counts = _sums(s, requester, dataset)
    held = ("reserved", "drawn")
    return BudgetStatus(
        requester,
        dataset,
        epsilon_cap,
        delta_cap,
        eps.get("spent", Fraction(0)),
        delta.get("spent", Fraction(0)),
        sum((eps.get(k, Fraction(0)) for k in held), Fraction(0)),
        sum((delta.get(k, Fraction(0)) for k in held), Fraction(0)),
        counts,
        eps.get("forfeited", Fraction(0)),
        delta.get("forfeited", Fraction(0)),
    )


def reserve(
    s: Session,
    *,
    job_id: str,
    requester: str,
    dataset: str,
    epsilon: Fraction,
    delta: Fraction,
    epsilon_cap: Fraction,
    delta_cap: Fraction,
    mechanism: str,
    statistic: str,
    now: datetime | None = None,
) -> DpLedgerEntry:
    """Reserve ε and δ for a job attempt inside the caller's transaction, or refuse.

    Call it first in the transaction (so the lock is taken before anything is read); the
    reservation is committed with the caller's transaction.

    Returns:
        The new ``reserved`` :class:`DpLedgerEntry` (attempt = previous attempts + 1).

    Raises:
        BudgetExceeded: cap − (spent + held) < the request; the message names the remaining
            ε and δ (剩余预算). LedgerError: the lock could not be taken.
    """
    now = now or utcnow()
    _lock(s, requester, dataset, now)
    st = budget_status(
        s, requester=requester, dataset=dataset, epsilon_cap=epsilon_cap, delta_cap=delta_cap
    )
    if st.epsilon_used + epsilon > epsilon_cap or st.delta_used + delta > delta_cap:
        raise BudgetExceeded(
            [
                f"privacy budget exceeded (隐私预算不足): {requester!r} on {dataset} asks "
                f"ε = {fraction_text(epsilon)}, δ = {fraction_text(delta)}; remaining "
                f"ε = {fraction_text(st.epsilon_remaining)} (≈ {float(st.epsilon_remaining):.6g}), "
                f"δ = {fraction_text(st.delta_remaining)} of caps ε = {fraction_text(epsilon_cap)}, "
                f"δ = {fraction_text(delta_cap)} (sandbox.dp.epsilon_cap / delta_cap)"
            ]
        )
    attempts = s.scalars(select(DpLedgerEntry.attempt).where(DpLedgerEntry.job_id == job_id)).all()
    _forfeit_drawn(s, job_id, now)  # a re-run: the failed attempts before it never release
    entry = DpLedgerEntry(
        job_id=job_id,
        attempt=max(attempts, default=0) + 1,
        requester=requester,
        dataset_code=dataset,
        eps_num=str(epsilon.numerator),
        eps_den=str(epsilon.denominator),
        delta_num=str(delta.numerator),
        delta_den=str(delta.denominator),
        status="reserved",
        mechanism=mechanism,
        statistic=statistic,
        created_at=now,
        updated_at=now,
    )
    s.add(entry)
    s.flush()
    return entry


def _open(s: Session, job_id: str, status: str) -> DpLedgerEntry | None:
    return s.scalars(
        select(DpLedgerEntry)
        .where(DpLedgerEntry.job_id == job_id, DpLedgerEntry.status == status)
        .order_by(DpLedgerEntry.attempt.desc())
    ).first()


def _move(s: Session, entry: DpLedgerEntry, to: str, now: datetime) -> DpLedgerEntry:
    res = s.execute(
        update(DpLedgerEntry)
        .where(DpLedgerEntry.id == entry.id, DpLedgerEntry.status == entry.status)
        .values(status=to, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:
        raise LedgerError(f"ledger entry of job {entry.job_id} changed concurrently")
    entry.status = to
    entry.updated_at = now
    return entry


def _forfeit_drawn(s: Session, job_id: str, now: datetime) -> int:
    """The job's ``drawn`` entries become ``forfeited``; returns how many."""
    res = s.execute(
        update(DpLedgerEntry)
        .where(DpLedgerEntry.job_id == job_id, DpLedgerEntry.status == "drawn")
        .values(status="forfeited", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return res.rowcount


def mark_drawn(s: Session, *, job_id: str, now: datetime | None = None) -> DpLedgerEntry:
    """At run start: the job's ``reserved`` entry becomes ``drawn`` (charged for good).

    Raises:
        LedgerError: the job has no open reservation (a re-run must :func:`reserve` first).
    """
    now = now or utcnow()
    entry = _open(s, job_id, "reserved")
    if entry is None:
        raise LedgerError(f"job {job_id} has no reserved privacy budget (未预留隐私预算)")
    return _move(s, entry, "drawn", now)


def commit_spend(s: Session, *, job_id: str, now: datetime | None = None) -> DpLedgerEntry | None:
    """In the release transaction: the job's ``drawn`` entry becomes ``spent``. Returns it, or
    None when it was already spent (a later fetch of the same result costs nothing more)."""
    now = now or utcnow()
    entry = _open(s, job_id, "drawn")
    return _move(s, entry, "spent", now) if entry is not None else None


def return_reservation(
    s: Session, *, job_id: str, now: datetime | None = None
) -> DpLedgerEntry | None:
    """The job ended (rejected, cancelled, expired): its ``reserved`` entry becomes ``returned``
    and stops counting; attempts that ran (``drawn``, e.g. a failed job then cancelled) become
    ``forfeited`` and count for good — never returned."""
    now = now or utcnow()
    _forfeit_drawn(s, job_id, now)
    entry = _open(s, job_id, "reserved")
    return _move(s, entry, "returned", now) if entry is not None else None


def ledger_pairs(
    s: Session, *, requester: str | None = None, dataset: str | None = None
) -> list[tuple[str, str]]:
    """The (requester, dataset) pairs that have ledger entries, optionally filtered, sorted."""
    stmt = select(DpLedgerEntry.requester, DpLedgerEntry.dataset_code).distinct()
    if requester:
        stmt = stmt.where(DpLedgerEntry.requester == requester)
    if dataset:
        stmt = stmt.where(DpLedgerEntry.dataset_code == dataset)
    return sorted((r, d) for r, d in s.execute(stmt).all())


@dataclass(frozen=True)
class Charge:
    """What one attempt of a DP job charges to its (requester, dataset) budget.

    Attributes:
        epsilon, delta: the attempt's privacy loss, exact.
        epsilon_cap, delta_cap: the caps of the dataset's ``sandbox.dp`` block.
        mechanism: e.g. ``discrete_laplace``. statistic: e.g. ``count``, ``psi_sum``.
    """

    epsilon: Fraction
    delta: Fraction
    epsilon_cap: Fraction
    delta_cap: Fraction
    mechanism: str
    statistic: str


class LedgerHooks:
    """The ledger life cycle of a computation that spends privacy budget (隐私预算记账钩子).

    The service calls these hooks inside its own transactions: :meth:`on_submit` (reserve,
    first thing in the submit transaction), :meth:`on_run_start` (reserved → drawn in the
    transaction that marks the job running; a re-run of a failed job reserves anew first, which
    forfeits the failed attempt), :meth:`on_release` (drawn → spent in the release transaction),
    :meth:`on_abandon` (reserved → returned, drawn → forfeited, on reject / cancel / expire).
    Used by ``dp_query``, psi_sum's reveal and he_cohort's sum (docs/dp.md "The ledger").

    Subclasses define :meth:`charge`: the attempt's :class:`Charge`, or None when the job
    spends nothing (then every hook is a no-op apart from the release and abandon, which find
    no entry).
    """

    @classmethod
    def charge(cls, params: Any, contract: Any) -> Charge | None:
        """The job's charge per attempt (None: spends nothing).

        Raises:
            PolicyRefused: the DP terms are refused.
        """
        raise NotImplementedError

    @classmethod
    def _reserve(
        cls, s: Session, *, job_id: str, requester: str, contract: Any, params: Any, now: Any
    ) -> DpLedgerEntry | None:
        c = cls.charge(params, contract)
        if c is None:
            return None
        return reserve(
            s,
            job_id=job_id,
            requester=requester,
            dataset=contract.code,
            epsilon=c.epsilon,
            delta=c.delta,
            epsilon_cap=c.epsilon_cap,
            delta_cap=c.delta_cap,
            mechanism=c.mechanism,
            statistic=c.statistic,
            now=now,
        )

    @classmethod
    def on_submit(
        cls,
        s: Session,
        *,
        job_id: str,
        requester: str,
        contract: Any,
        params: Any,
        now: datetime | None = None,
    ) -> DpLedgerEntry | None:
        """Reserve the job's (ε, δ) at submit; None when it spends nothing.

        Raises:
            BudgetExceeded: with the remaining budget. PolicyRefused: the DP terms are refused.
        """
        return cls._reserve(
            s, job_id=job_id, requester=requester, contract=contract, params=params, now=now
        )

    @classmethod
    def on_run_start(
        cls,
        s: Session,
        *,
        job_id: str,
        requester: str,
        contract: Any,
        params: Any,
        now: datetime | None = None,
    ) -> DpLedgerEntry | None:
        """At run start the reservation becomes ``drawn``; a re-run of a failed job (its
        earlier attempt drawn, now forfeited) reserves anew first.

        Raises:
            BudgetExceeded: a re-run no longer fits the budget. PolicyRefused: the DP terms.
        """
        if cls.charge(params, contract) is None:
            return None
        if _open(s, job_id, "reserved") is None:
            cls._reserve(
                s, job_id=job_id, requester=requester, contract=contract, params=params, now=now
            )
        return mark_drawn(s, job_id=job_id, now=now)

    @classmethod
    def on_release(
        cls, s: Session, *, job_id: str, now: datetime | None = None
    ) -> DpLedgerEntry | None:
        """In the release transaction: ``drawn`` → ``spent`` (idempotent on later fetches)."""
        return commit_spend(s, job_id=job_id, now=now)

    @classmethod
    def on_abandon(
        cls, s: Session, *, job_id: str, now: datetime | None = None
    ) -> DpLedgerEntry | None:
        """Rejected / cancelled / expired: an unused reservation is returned, a drawn attempt
        is forfeited (never refunded)."""
        return return_reservation(s, job_id=job_id, now=now)
