"""Sharing-rate report (共享率报告): catalog share rate, actual share rate, request satisfaction,
time to decision, rejection reasons and open rate, per provider department and overall.

There is no national formula for these figures; ours is stated here, in ``docs/reports.md`` and
beside every figure in the report itself (:data:`DEFINITIONS`). All counts are SQL aggregates in
the catalog DB (``GROUP BY`` and window functions), so the report over 10,000 entries and
1,000,000 jobs takes 3.5–6 s on SQLite here (target 2 s; see ``BENCHMARKS.md``).
"""

from __future__ import annotations

from datetime import datetime
from fractions import Fraction

from sqlalchemy import and_, case, distinct, func, or_, select, true
from sqlalchemy.orm import Session

from catalog._db import utcnow
from catalog._models import Dataset
from reports._figures import Chart, Column, Figure, Period, Ratio, Report, Table
from reports._sql import (
    before_end,
    departments,
    dialect_of,
    full_scan,
    in_period,
    medians,
    millis_between,
    month_of,
    run,
)
from sandbox._models import Job, User

SHAREABLE = ("unconditional", "conditional")
#: States a job can only be in after it was approved (approved → running → succeeded/failed →
#: released). ``cancelled`` and ``expired`` may come before or after approval: checked apart.
AFTER_APPROVAL = ("approved", "running", "succeeded", "failed", "released")
MAYBE_APPROVED = ("cancelled", "expired")
TOP_REASONS = 5
MAX_TREND_MONTHS = 24

DEFINITIONS: dict[str, str] = {
    "catalog_share_rate": (
        "目录共享率 = catalog entries whose share type is unconditional (无条件共享) or "
        "conditional (有条件共享) ÷ all catalog entries registered by the end of the period."
    ),
    "actual_share_rate": (
        "实际共享率 = shareable entries (share type not none) used by at least one other "
        "department or outside party (requester's department differs from the provider's, or "
        "has none) through a sandbox job whose result was released (succeeded → released) in "
        "the period ÷ shareable entries registered by the end of the period."
    ),
    "request_satisfaction": (
        "需求满足率 = jobs submitted in the period that were approved (by people or "
        "automatically; a later run, failure, cancellation or expiry does not undo it) ÷ jobs "
        "submitted in the period. Submissions refused by the policy at the door are not jobs."
    ),
    "median_decision_seconds": (
        "审批时长中位数 = median of (time of the transition to approved or rejected − "
        "submission time) over jobs submitted in the period that were decided, in seconds; "
        "the mean of the two middle values for an even count."
    ),
    "open_rate": (
        "开放率 = catalog entries whose open type is not none (无条件/有条件开放) ÷ all catalog "
        "entries registered by the end of the period."
    ),
    "rejection_reasons": (
        "驳回原因 = the reason given by the steward or reviewer who rejected (驳回) a job "
        "submitted in the period, counted per distinct text, most frequent first."
    ),
}

LABELS = {
    "catalog_share_rate": "Catalog share rate (目录共享率)",
    "actual_share_rate": "Actual share rate (实际共享率)",
    "request_satisfaction": "Request satisfaction (需求满足率)",
    "median_decision_seconds": "Median time to decision (审批时长中位数)",
    "open_rate": "Open rate (开放率)",
}


def sharing_rate(
    *,
    session: Session,
    period: Period | None = None,
    department: str | None = None,
    now: datetime | None = None,
) -> Report:
    """Compute the sharing-rate report (共享率报告).

    Args:
        session: a catalog session (catalog and sandbox tables migrated).
        period: the period reported on (default: all time).
        department: one provider department code (rows and overall restricted to it); an
            unknown code gives one row of zeros ("0 of 0"), not an error.
        now: the report time (default: current UTC time).

    Returns:
        :class:`Report` ``sharing-rate``: figures ``catalog_share_rate``,
        ``actual_share_rate``, ``request_satisfaction``, ``open_rate`` (:class:`Ratio`),
        ``median_decision_seconds`` (``Fraction`` seconds or None); tables ``departments``
        (one row per department: ratios and ``median_decision_seconds``), ``rejection_reasons``
        (reason, jobs) and ``trend`` (per month: submitted, approved, satisfaction, entries
        used); bar and line charts.

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
        select(Job.dataset_code.label("code"), Job.requester.label("requester"))
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
            Job.dataset_code.label("code"),
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
        text = (reason or "").strip() or "(no reason given)"
        reasons[text] = reasons.get(text, 0) + int(n)
        reasons_by_dept.setdefault(d, {})
        reasons_by_dept[d][text] = reasons_by_dept[d].get(text, 0) + int(n)

    # -- rows --------------------------------------------------------------------------------
    rows = []
    totals = {k: Ratio(0, 0) for k in ("catalog", "actual", "satisfaction", "open")}
    for code, name in departments(session, department):
        n, s, o = entries.get(code, (0, 0, 0))
        sub, appr = requests.get(code, (0, 0))
        r = {
            "department": code,
            "name": name,
            "entries": n,
            "catalog_share_rate": Ratio(s, n),
            "actual_share_rate": Ratio(used.get(code, 0), s),
            "request_satisfaction": Ratio(appr, sub),
            "median_decision_seconds": _seconds(med_dept.get(code)),
            "open_rate": Ratio(o, n),
            "top_rejection_reason": _top(reasons_by_dept.get(code, {})),
        }
        totals["catalog"] += r["catalog_share_rate"]
        totals["actual"] += r["actual_share_rate"]
        totals["satisfaction"] += r["request_satisfaction"]
        totals["open"] += r["open_rate"]
        rows.append(r)

    figures = [
        Figure(
            "catalog_share_rate",
            LABELS["catalog_share_rate"],
            totals["catalog"],
            DEFINITIONS["catalog_share_rate"],
        ),
        Figure(
            "actual_share_rate",
            LABELS["actual_share_rate"],
            totals["actual"],
            DEFINITIONS["actual_share_rate"],
        ),
        Figure(
            "request_satisfaction",
            LABELS["request_satisfaction"],
            totals["satisfaction"],
            DEFINITIONS["request_satisfaction"],
        ),
        Figure(
            "median_decision_seconds",
            LABELS["median_decision_seconds"],
            _seconds(med_all),
            DEFINITIONS["median_decision_seconds"],
            unit="seconds",
        ),
        Figure("open_rate", LABELS["open_rate"], totals["open"], DEFINITIONS["open_rate"]),
    ]
    dept_table = Table(
        "departments",
        "By provider department (按提供部门)",
        [
            Column("department", "Department (部门)"),
            Column("name", "Name (名称)"),
            Column("entries", "Entries (目录条目)", "catalog entries registered by the period end"),
            Column(
                "catalog_share_rate",
                LABELS["catalog_share_rate"],
                DEFINITIONS["catalog_share_rate"],
            ),
            Column(
                "actual_share_rate", LABELS["actual_share_rate"], DEFINITIONS["actual_share_rate"]
            ),
            Column(
                "request_satisfaction",
                LABELS["request_satisfaction"],
                DEFINITIONS["request_satisfaction"],
            ),
            Column(
                "median_decision_seconds",
                "Median time to decision, s (审批时长中位数, 秒)",
                DEFINITIONS["median_decision_seconds"],
            ),
            Column("open_rate", LABELS["open_rate"], DEFINITIONS["open_rate"]),
            Column(
                "top_rejection_reason",
                "Top rejection reason (主要驳回原因)",
                DEFINITIONS["rejection_reasons"],
            ),
        ],
        rows,
    )
    reason_table = Table(
        "rejection_reasons",
        "Top reasons for rejection (主要驳回原因)",
        [
            Column("reason", "Reason (原因)", DEFINITIONS["rejection_reasons"]),
            Column("jobs", "Jobs (作业数)"),
        ],
        [
            {"reason": k, "jobs": v}
            for k, v in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_REASONS]
        ],
    )
    trend = _trend(months)
    report = Report(
        name="sharing-rate",
        title="Sharing rate (政务数据共享率)",
        period=period,
        department=department,
        generated_at=now or utcnow(),
        figures=figures,
        tables=[dept_table, reason_table, trend],
        notes=[
            "Targets of the plan: share of government data actually shared 58% → 90% "
            "(实际共享率目标 90%).",
            "Provider department = the department that registered the catalog entry; a job "
            "counts for the department whose dataset it asked about.",
        ],
    )
    cats = [r["department"] for r in rows]
    report.charts = [
        Chart(
            "share_by_department",
            "bar",
            "Share rates by department (各部门共享率)",
            cats,
            {
                "catalog share rate (目录共享率)": [r["catalog_share_rate"].value for r in rows],
                "actual share rate (实际共享率)": [r["actual_share_rate"].value for r in rows],
                "open rate (开放率)": [r["open_rate"].value for r in rows],
            },
        ),
        Chart(
            "satisfaction_by_department",
            "bar",
            "Request satisfaction by department (各部门需求满足率)",
            cats,
            {"request satisfaction (需求满足率)": [r["request_satisfaction"].value for r in rows]},
        ),
        Chart(
            "trend",
            "line",
            "Trend by month (按月趋势)",
            [r["month"] for r in trend.rows],
            {
                "request satisfaction (需求满足率)": [
                    r["request_satisfaction"].value for r in trend.rows
                ],
            },
        ),
    ]
    return report


def _seconds(ms: Fraction | None) -> Fraction | None:
    return None if ms is None else ms / 1000


def _top(counts: dict[str, int]) -> str | None:
    if not counts:
        return None
    reason, n = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return f"{reason} ({n})"


def _trend(months: dict[str, list[int]]) -> Table:
    """Per month (UTC) of submission: jobs submitted, approved and released, satisfaction."""
    rows = [
        {
            "month": m,
            "submitted": n,
            "approved": a,
            "released": r,
            "request_satisfaction": Ratio(a, n),
        }
        for m, (n, a, r) in sorted(months.items())[-MAX_TREND_MONTHS:]
    ]
    return Table(
        "trend",
        "Trend by month of submission, UTC (按提交月份趋势)",
        [
            Column("month", "Month (月份)"),
            Column("submitted", "Jobs submitted (提交作业)"),
            Column("approved", "Approved (已批准)"),
            Column("released", "Released so far (已发布结果)"),
            Column(
                "request_satisfaction",
                LABELS["request_satisfaction"],
                DEFINITIONS["request_satisfaction"],
            ),
        ],
        rows,
    )
