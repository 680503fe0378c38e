"""The sharing-rate figures computed by SQL aggregates alone (参考实现): the reference.

This is how :func:`reports.sharing_rate` counted before it read the jobs once into Arrow
(:mod:`reports._sharing`): five ``GROUP BY`` / window passes over ``sandbox_jobs`` in the
catalog DB (SQLite or PostgreSQL). It is kept, unchanged in what it counts, so that the tests
can check the fast path against it on seeded catalogs (``tests/reports/test_report_sharing_paths.py``)
and the benchmark can show both; the report itself does not call it. One change from the
report's former SQL: the grouped ``dataset_code || ''`` is also what is selected (PostgreSQL
refused to select the bare column while grouping by the expression).
"""

from __future__ import annotations

from sqlalchemy import and_, case, distinct, func, or_, select, true
from sqlalchemy.orm import Session

from catalog._models import Dataset
from reports._figures import Period
from reports._sharing import (
    AFTER_APPROVAL,
    MAYBE_APPROVED,
    SHAREABLE,
    SharingCounts,
    reason_text,
)
from reports._sql import (
    before_end,
    dialect_of,
    full_scan,
    in_period,
    medians,
    millis_between,
    month_of,
    run,
)
from sandbox._models import Job, User


def sharing_counts_sql(
    session: Session, period: Period | None = None, department: str | None = None
) -> SharingCounts:
    """The counts behind the sharing-rate report, by SQL aggregates only (the reference).

    Args:
        session: a catalog session. period: the period (default all time).
        department: one provider department code, or None for all.

    Returns:
        :class:`reports._sharing.SharingCounts` (departments without entries or jobs absent).

    Raises:
        ReportError: a catalog query failed.
    """
    period = period or Period()
    dialect = dialect_of(session)
    dept_col = Dataset.department_code
    scope = Dataset.department_code == department if department is not None else true()

    # -- entries: catalog share rate and open rate ---------------------------------------------
    shareable = case((Dataset.share_type.in_(SHAREABLE), 1), else_=0)
    entries = {
        d: (int(n), int(s or 0), int(o or 0))
        for d, n, s, o in run(
            session,
            select(
                dept_col,
                func.count(),
                func.sum(shareable),
                func.sum(case((Dataset.open_type != "none", 1), else_=0)),
            )
            .where(scope, before_end(Dataset.created_at, period))
            .group_by(dept_col),
        )
    }

    # -- actual use: released jobs of other departments / outside parties ----------------------
    pairs = (
        select(full_scan(Job.dataset_code).label("code"), Job.requester.label("requester"))
        .where(full_scan(Job.state) == "released", in_period(Job.updated_at, period))
        .group_by(full_scan(Job.dataset_code), Job.requester)
        .subquery("used_pairs")
    )
    used = {
        d: int(n)
        for d, n in run(
            session,
            select(dept_col, func.count(distinct(Dataset.id)))
            .select_from(pairs)
            .join(Dataset, Dataset.code == pairs.c.code)
            .join(User, User.name == pairs.c.requester)
            .where(
                scope,
                Dataset.share_type.in_(SHAREABLE),
                before_end(Dataset.created_at, period),
                or_(User.department_code.is_(None), User.department_code != dept_col),
            )
            .group_by(dept_col),
        )
    }

    # -- requests: submitted, approved, released; time to decision --------------------------
    # ``decided_at`` is set once, on the transition to approved or rejected (rejected is
    # terminal), so a cancelled/expired job with a decision was approved before: no scan of
    # the transitions. One pass over the jobs (the covering index on created_at, dataset_code,
    # state, decided_at): per (dataset, month of submission), then per (department, month).
    approved_flag = case(
        (Job.state.in_(AFTER_APPROVAL), 1),
        (and_(Job.state.in_(MAYBE_APPROVED), Job.decided_at.is_not(None)), 1),
        else_=0,
    )
    m_job = month_of(Job.created_at, dialect)
    jobs_by_code = (
        select(
            full_scan(Job.dataset_code).label("code"),
            m_job.label("m"),
            func.count().label("submitted"),
            func.sum(approved_flag).label("approved"),
            func.sum(case((Job.state == "released", 1), else_=0)).label("released"),
        )
        .where(in_period(Job.created_at, period))
        .group_by(full_scan(Job.dataset_code), m_job)
        .subquery("jobs_by_code")
    )
    requests: dict[str, tuple[int, int]] = {}
    months: dict[str, list[int]] = {}
    for d, m, n, a, r in run(
        session,
        select(
            dept_col,
            jobs_by_code.c.m,
            func.sum(jobs_by_code.c.submitted),
            func.sum(jobs_by_code.c.approved),
            func.sum(jobs_by_code.c.released),
        )
        .select_from(jobs_by_code)
        .join(Dataset, Dataset.code == jobs_by_code.c.code)
        .where(scope)
        .group_by(dept_col, jobs_by_code.c.m),
    ):
        s0, a0 = requests.get(d, (0, 0))
        requests[d] = (s0 + int(n), a0 + int(a or 0))
        acc = months.setdefault(m, [0, 0, 0])
        acc[0] += int(n)
        acc[1] += int(a or 0)
        acc[2] += int(r or 0)

    decided = (
        select(
            # ``|| ''``: scan the covering index, then look up the entry (not the reverse)
            full_scan(Job.dataset_code).label("code"),
            millis_between(Job.created_at, Job.decided_at, dialect).label("ms"),
        )
        .where(Job.decided_at.is_not(None), in_period(Job.created_at, period))
        .subquery("decided")
    )
    by_dept = (
        select(dept_col, decided.c.ms)
        .select_from(decided)
        .join(Dataset, Dataset.code == decided.c.code)
        .where(scope)
    )
    med_dept, med_all = medians(session, by_dept)

    # -- rejection reasons --------------------------------------------------------------------
    rejected = (
        select(Job.dataset_code.label("code"), Job.reason.label("reason"), func.count().label("n"))
        .where(Job.state == "rejected", in_period(Job.created_at, period))
        .group_by(Job.dataset_code, Job.reason)
        .subquery("rejected")
    )
    reason_rows = run(
        session,
        select(dept_col, rejected.c.reason, func.sum(rejected.c.n))
        .select_from(rejected)
        .join(Dataset, Dataset.code == rejected.c.code)
        .where(scope)
        .group_by(dept_col, rejected.c.reason),
    )
    reasons: dict[str, int] = {}
    reasons_by_dept: dict[str, dict[str, int]] = {}
    for d, reason, n in reason_rows:
        text = reason_text(reason)
        reasons[text] = reasons.get(text, 0) + int(n)
        reasons_by_dept.setdefault(d, {})
        reasons_by_dept[d][text] = reasons_by_dept[d].get(text, 0) + int(n)

    return SharingCounts(
        entries=entries,
        used=used,
        requests=requests,
        months={m: (n, a, r) for m, (n, a, r) in months.items()},
        median_ms=med_dept,
        median_ms_all=med_all,
        reasons=reasons,
        reasons_by_dept=reasons_by_dept,
    )
