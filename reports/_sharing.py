"""Sharing-rate report (共享率报告): catalog share rate, actual share rate, request satisfaction,
time to decision, rejection reasons and open rate, per provider department and overall.

There is no national formula for these figures; ours is stated here, in ``docs/reports.md`` and
beside every figure in the report itself (:data:`DEFINITIONS`).

How it counts: the catalog entries and users (small tables) are read as rows; the jobs are read
**once** into Arrow (:func:`reports._jobs.read_jobs`: on SQLite the DB writes the text of the rows
and Arrow's CSV reader parses it; on PostgreSQL ``COPY``), and every figure — counts, rates, exact
medians, months, rejection reasons — is computed over whole numpy arrays in
:func:`sharing_counts`. :func:`reports._sharing_sql.sharing_counts_sql` keeps the earlier SQL
aggregates as the reference the tests compare to. See ``benchmarks/bench_reports.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import numpy as np
import pyarrow as pa
from sqlalchemy import case, select
from sqlalchemy.orm import Session

from catalog._db import utcnow
from catalog._models import Dataset
from reports._figures import Chart, Column, Figure, Period, Ratio, Report, Table
from reports._jobs import decision_ms, epoch_us, read_jobs
from reports._sql import before_end, departments, dialect_of, run
from sandbox._models import User

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


@dataclass(frozen=True)
class SharingCounts:
    """The counts behind the sharing-rate report, per provider department (one pass's output).

    Attributes:
        entries: department → (entries, shareable entries, open entries) registered by the end.
        used: department → shareable entries used by another party through a released job.
        requests: department → (jobs submitted in the period, of which approved).
        months: ``'YYYY-MM'`` (UTC month of submission) → (submitted, approved, released).
        median_ms: department → exact median time to decision, milliseconds (``Fraction``).
        median_ms_all: the same over every department in scope, or None without decisions.
        reasons: normalised rejection reason → jobs. reasons_by_dept: department → the same.
    """

    entries: dict[str, tuple[int, int, int]]
    used: dict[str, int]
    requests: dict[str, tuple[int, int]]
    months: dict[str, tuple[int, int, int]]
    median_ms: dict[str, Fraction]
    median_ms_all: Fraction | None
    reasons: dict[str, int]
    reasons_by_dept: dict[str, dict[str, int]]


def reason_text(reason: str | None) -> str:
    """The rejection reason as counted: stripped; empty or missing → ``(no reason given)``."""
    return (reason or "").strip() or "(no reason given)"


class _Stages:
    """Wall-clock seconds per stage of the report (the benchmark prints them)."""

    def __init__(self, out: dict[str, float] | None) -> None:
        self.out = out
        self.t = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        if self.out is not None:
            self.out[name] = self.out.get(name, 0.0) + now - self.t
        self.t = now


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
    counts = sharing_counts(session, period, department)
    return sharing_report(counts, session=session, period=period, department=department, now=now)


def sharing_counts(
    session: Session,
    period: Period | None = None,
    department: str | None = None,
    *,
    bulk: bool = True,
    stages: dict[str, float] | None = None,
) -> SharingCounts:
    """Count everything the sharing-rate report shows, reading the jobs once (one pass).

    Catalog entries and users are small tables read as rows; the jobs are read once into Arrow
    (:func:`reports._jobs.read_jobs`) and every count, rate, exact median, month and rejection
    reason is computed over whole numpy arrays: dictionary-encoded dataset codes mapped to
    entries and departments, ``np.bincount`` per department and month, a stable sort by
    department and ``np.partition`` for the exact medians. The counts equal those of the SQL reference
    (:func:`reports._sharing_sql.sharing_counts_sql`) on SQLite and PostgreSQL.

    Args:
        session: a catalog session (catalog and sandbox tables migrated).
        period: the period (default all time). department: one provider department code.
        bulk: read the jobs through the dialect's bulk text path (False: SQLAlchemy rows).
        stages: if given, receives seconds per stage (``catalog``, ``jobs read``, ``figures``).

    Returns:
        :class:`SharingCounts`.

    Raises:
        ReportError: a catalog query failed.
    """
    period = period or Period()
    clock = _Stages(stages)
    dialect = dialect_of(session)

    # -- catalog entries and users: small tables, one row each -----------------------------------
    entry_rows = run(
        session,
        select(
            Dataset.code,
            Dataset.department_code,
            Dataset.share_type.in_(SHAREABLE),
            Dataset.open_type != "none",
            case((before_end(Dataset.created_at, period), 1), else_=0),
        ),
    )
    user_rows = run(session, select(User.name, User.department_code))
    dept_codes = sorted({r[1] for r in entry_rows} | {u[1] for u in user_rows if u[1] is not None})
    dept_ix = {d: i for i, d in enumerate(dept_codes)}
    n_dept = len(dept_codes)
    code_ix = {r[0]: i for i, r in enumerate(entry_rows)}
    # one slot more, out of scope, for jobs whose dataset is not in the catalog (not counted)
    ds_dept = np.array([dept_ix[r[1]] for r in entry_rows] + [0], dtype=np.int64)
    ds_share = np.array([bool(r[2]) for r in entry_rows] + [False], dtype=bool)
    ds_open = np.array([bool(r[3]) for r in entry_rows] + [False], dtype=bool)
    ds_exists = np.array([bool(r[4]) for r in entry_rows] + [False], dtype=bool)
    ds_scope = np.append(
        ds_dept[:-1] == dept_ix.get(department, -1)
        if department is not None
        else np.ones(len(entry_rows), dtype=bool),
        False,
    )
    # requester → its department index; -1 outside party (no department), -2 unknown user
    user_dept = {name: (-1 if d is None else dept_ix[d]) for name, d in user_rows}

    entries: dict[str, tuple[int, int, int]] = {}
    counted = ds_scope & ds_exists
    n_all = np.bincount(ds_dept[counted], minlength=n_dept)
    n_share = np.bincount(ds_dept[counted & ds_share], minlength=n_dept)
    n_open = np.bincount(ds_dept[counted & ds_open], minlength=n_dept)
    for i in np.flatnonzero(n_all):
        entries[dept_codes[i]] = (int(n_all[i]), int(n_share[i]), int(n_open[i]))
    clock.done("catalog")

    # -- the jobs: one read ---------------------------------------------------------------------
    jobs = read_jobs(session, period, bulk=bulk)
    clock.done("jobs read")

    job_ds = _lookup(jobs["dataset_code"], code_ix, missing=len(entry_rows))
    in_scope = ds_scope[job_ds]
    dept = ds_dept[job_ds]
    state = _lookup(jobs["state"], _STATE_IX, missing=len(_STATES))
    created, _ = epoch_us(jobs["created_at"])
    decided, has_decision = epoch_us(jobs["decided_at"])
    released_at, has_release = epoch_us(jobs["released_at"])

    # requests: submitted in the period; approved; released; per department and month
    submitted = in_scope & _within(created, period)
    approved = _STATE_AFTER_APPROVAL[state] | (_STATE_MAYBE_APPROVED[state] & has_decision)
    released = state == _STATE_IX["released"]
    n_sub = np.bincount(dept[submitted], minlength=n_dept)
    n_appr = np.bincount(dept[submitted & approved], minlength=n_dept)
    requests = {dept_codes[i]: (int(n_sub[i]), int(n_appr[i])) for i in np.flatnonzero(n_sub)}
    month = created[submitted].astype("datetime64[us]").astype("datetime64[M]").astype(np.int64)
    months: dict[str, tuple[int, int, int]] = {}
    if month.size:
        m0 = int(month.min())
        m = month - m0
        size = int(m.max()) + 1
        n_m = np.bincount(m, minlength=size)
        a_m = np.bincount(m[approved[submitted]], minlength=size)
        r_m = np.bincount(m[released[submitted]], minlength=size)
        for k in np.flatnonzero(n_m):
            key = str(np.datetime64(m0 + int(k), "M"))  # 'YYYY-MM'
            months[key] = (int(n_m[k]), int(a_m[k]), int(r_m[k]))

    # time to decision: exact medians per department and overall
    dec = submitted & has_decision
    ms = decision_ms(created[dec], decided[dec], dialect)
    median_ms, median_all = _medians(dept[dec], ms, n_dept)

    # actual use: released in the period, by another department or an outside party
    req = _lookup(jobs["requester"], user_dept, missing=-2)
    other = (req == -1) | ((req >= 0) & (req != dept))
    use = (
        in_scope
        & released
        & has_release
        & _within(released_at, period)
        & ds_share[job_ds]
        & ds_exists[job_ds]
        & other
    )
    used_ds = np.unique(job_ds[use])
    n_used = np.bincount(ds_dept[used_ds], minlength=n_dept)
    used = {dept_codes[i]: int(n_used[i]) for i in np.flatnonzero(n_used)}

    # rejection reasons: normalised text, per department
    rej = submitted & (state == _STATE_IX["rejected"])
    reasons, reasons_by_dept = _reasons(jobs["reason"], rej, dept, dept_codes)
    clock.done("figures")
    return SharingCounts(
        entries=entries,
        used=used,
        requests=requests,
        months=months,
        median_ms={dept_codes[i]: m for i, m in median_ms.items()},
        median_ms_all=median_all,
        reasons=reasons,
        reasons_by_dept=reasons_by_dept,
    )


_STATES = (
    *AFTER_APPROVAL,
    *MAYBE_APPROVED,
    "rejected",
    "submitted",
    "policy_checked",
    "awaiting_approval",
)
_STATE_IX = {s: i for i, s in enumerate(_STATES)}
# index len(_STATES): a state this code does not know (counted as submitted only)
_STATE_AFTER_APPROVAL = np.array([s in AFTER_APPROVAL for s in _STATES] + [False])
_STATE_MAYBE_APPROVED = np.array([s in MAYBE_APPROVED for s in _STATES] + [False])


def _lookup(column: pa.ChunkedArray, index: dict[str, int], missing: int) -> np.ndarray:
    """``index[value]`` (int64) for every value of a string column; ``missing`` when absent.

    The column is dictionary-encoded first, so the dict is consulted once per distinct value.
    """
    default = missing
    enc = column.combine_chunks().dictionary_encode()
    table = np.array([index.get(v, default) for v in enc.dictionary.to_pylist()], dtype=np.int64)
    if table.size == 0:
        return np.zeros(len(column), dtype=np.int64)
    return table[enc.indices.to_numpy(zero_copy_only=False)]


def _within(us: np.ndarray, period: Period) -> np.ndarray:
    """``start <= t < end`` over int64 µs since the epoch (unbounded sides are true)."""
    out = np.ones(us.shape, dtype=bool)
    if period.start is not None:
        out &= us >= _us(period.start)
    if period.end is not None:
        out &= us < _us(period.end)
    return out


def _us(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _medians(
    group: np.ndarray, values: np.ndarray, n_groups: int
) -> tuple[dict[int, Fraction], Fraction | None]:
    """Exact medians of int64 ``values`` per group index and overall (mean of the two middles).

    One stable sort by group (radix sort on a 16-bit key when the groups fit), then
    ``np.partition`` of each group's slice for its middle values: O(n) per group.
    """
    if values.size == 0:
        return {}, None
    key = group.astype(np.int16) if n_groups < 2**15 else group
    v = values[np.argsort(key, kind="stable")]
    counts = np.bincount(group, minlength=n_groups)
    ends = np.cumsum(counts)
    out: dict[int, Fraction] = {}
    for g in np.flatnonzero(counts):
        out[int(g)] = _middle(v[ends[g] - counts[g] : ends[g]])
    return out, _middle(values)


def _middle(v: np.ndarray) -> Fraction:
    """Median of a non-empty int64 array, exact: the mean of the two middle values."""
    n = v.size
    lo, hi = (n - 1) // 2, n // 2
    part = np.partition(v, [lo, hi])
    return Fraction(int(part[lo]) + int(part[hi]), 2)


def _reasons(
    column: pa.ChunkedArray, mask: np.ndarray, dept: np.ndarray, dept_codes: list[str]
) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    if not mask.any():
        return {}, {}
    enc = column.filter(pa.array(mask)).combine_chunks().dictionary_encode()
    texts = sorted({reason_text(r) for r in enc.dictionary.to_pylist()})
    text_ix = {t: i for i, t in enumerate(texts)}
    norm = np.array([text_ix[reason_text(r)] for r in enc.dictionary.to_pylist()], dtype=np.int64)
    r = norm[enc.indices.to_numpy(zero_copy_only=False)]
    key = dept[mask] * len(texts) + r
    n = np.bincount(key, minlength=len(dept_codes) * len(texts))
    reasons: dict[str, int] = {}
    by_dept: dict[str, dict[str, int]] = {}
    for k in np.flatnonzero(n):
        d, t = divmod(int(k), len(texts))
        reasons[texts[t]] = reasons.get(texts[t], 0) + int(n[k])
        by_dept.setdefault(dept_codes[d], {})[texts[t]] = int(n[k])
    return reasons, by_dept


def sharing_report(
    counts: SharingCounts,
    *,
    session: Session,
    period: Period,
    department: str | None,
    now: datetime | None = None,
) -> Report:
    """Lay the counts out as the sharing-rate :class:`Report` (rows, figures, tables, charts).

    Args:
        counts: from :func:`sharing_counts` (or the SQL reference).
        session: a catalog session (for the department names). period, department, now: as
            for :func:`sharing_rate`.

    Returns:
        :class:`Report` ``sharing-rate`` (see :func:`sharing_rate`).

    Raises:
        ReportError: the department query failed.
    """
    entries, used, requests = counts.entries, counts.used, counts.requests
    med_dept, med_all = counts.median_ms, counts.median_ms_all
    reasons, reasons_by_dept, months = counts.reasons, counts.reasons_by_dept, counts.months
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
