"""Quality roll-up (数据质量汇总): the quality package's per-version scores (GB/T 36344-2018), per
provider department and per month of ingestion.

Reads the ``quality_results`` rows the ingest pipeline stores for every committed version
(:func:`quality.record_quality`); sums and means are SQL aggregates, the dimension scores (a
small JSON object per version) are averaged in Python over the versions of the period.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime

from sqlalchemy import func, select, true
from sqlalchemy.orm import Session

from catalog._db import utcnow
from catalog._models import Dataset, DatasetVersion
from quality._dimensions import Dimension
from quality._models import QualityResult
from reports._figures import Chart, Column, Figure, Period, Ratio, Report, Table
from reports._sql import departments, dialect_of, in_period, month_of, run

DIMENSIONS = [d.value for d in Dimension]

DEFINITIONS = {
    "row_pass_rate": (
        "行通过率 = rows that passed every quality rule ÷ rows read, summed over the versions "
        "ingested in the period (each committed Delta version is scored once)."
    ),
    "mean_overall": (
        "综合得分 = mean over the versions ingested in the period of each version's overall "
        "score (the mean of its measured GB/T 36344 dimension pass rates, 0..1)."
    ),
    "dimension": (
        "维度得分 = mean over the versions ingested in the period of the dimension's pass rate "
        "(规范性, 完整性, 准确性, 一致性, 时效性, 可访问性); — where no version measured it."
    ),
}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def quality_rollup(
    *,
    session: Session,
    period: Period | None = None,
    department: str | None = None,
    now: datetime | None = None,
) -> Report:
    """Roll the per-version quality scores up per department and month (数据质量汇总).

    Args:
        session: a catalog session (quality tables migrated).
        period: versions ingested (``dataset_versions.created_at``) in this period count.
        department: restrict to one provider department.
        now: report time (default: current UTC time).

    Returns:
        :class:`Report` ``quality``: figures ``versions_scored`` (int), ``row_pass_rate``
        (:class:`Ratio` of rows), ``mean_overall`` (float 0..1 or None); tables
        ``departments`` (rows in, passed, quarantined, pass rate, mean overall, one column per
        dimension) and ``trend`` (department × month); bar and line charts.

    Raises:
        ReportError: a catalog query failed.
    """
    period = period or Period()
    dialect = dialect_of(session)
    scope = Dataset.department_code == department if department is not None else true()
    when = in_period(DatasetVersion.created_at, period)
    base = (
        select()
        .select_from(QualityResult)
        .join(DatasetVersion, DatasetVersion.id == QualityResult.dataset_version_id)
        .join(Dataset, Dataset.id == QualityResult.dataset_id)
        .where(scope, when)
    )
    sums = {
        d: (int(n), int(i or 0), int(p or 0), int(q or 0), o)
        for d, n, i, p, q, o in run(
            session,
            base.add_columns(
                Dataset.department_code,
                func.count(),
                func.sum(QualityResult.rows_in),
                func.sum(QualityResult.rows_passed),
                func.sum(QualityResult.rows_quarantined),
                func.avg(QualityResult.overall_score),
            ).group_by(Dataset.department_code),
        )
    }
    dims: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for d, text in run(
        session, base.add_columns(Dataset.department_code, QualityResult.dimension_scores)
    ):
        for k, v in json.loads(text or "{}").items():
            if v is not None:
                dims[d][k].append(float(v))
    m = month_of(DatasetVersion.created_at, dialect)
    trend_rows = [
        {
            "department": d,
            "month": mo,
            "versions": int(n),
            "row_pass_rate": Ratio(int(p or 0), int(i or 0)),
            "mean_overall": o,
        }
        for d, mo, n, i, p, o in run(
            session,
            base.add_columns(
                Dataset.department_code,
                m,
                func.count(),
                func.sum(QualityResult.rows_in),
                func.sum(QualityResult.rows_passed),
                func.avg(QualityResult.overall_score),
            )
            .group_by(Dataset.department_code, m)
            .order_by(m, Dataset.department_code),
        )
    ]

    rows = []
    total = Ratio(0, 0)
    versions = 0
    overall_vals: list[tuple[int, float]] = []
    for code, name in departments(session, department):
        n, i, p, q, o = sums.get(code, (0, 0, 0, 0, None))
        r = {
            "department": code,
            "name": name,
            "versions": n,
            "rows_in": i,
            "rows_quarantined": q,
            "row_pass_rate": Ratio(p, i),
            "mean_overall": None if o is None else float(o),
        }
        for dim in DIMENSIONS:
            r[dim] = _mean(dims[code].get(dim, []))
        rows.append(r)
        total += r["row_pass_rate"]
        versions += n
        if o is not None:
            overall_vals.append((n, float(o)))
    mean_overall = (sum(n * o for n, o in overall_vals) / versions) if versions else None
    months = sorted({t["month"] for t in trend_rows})
    series: dict[str, list[float | None]] = {}
    for code, _ in departments(session, department):
        vals = {t["month"]: t["row_pass_rate"].value for t in trend_rows if t["department"] == code}
        if vals:
            series[code] = [vals.get(mo) for mo in months]
    report = Report(
        name="quality",
        title="Data quality by department (数据质量汇总, GB/T 36344-2018)",
        period=period,
        department=department,
        generated_at=now or utcnow(),
        figures=[
            Figure(
                "versions_scored",
                "Versions scored (已评价版本)",
                versions,
                "committed dataset versions ingested in the period with a quality result",
                unit="versions",
            ),
            Figure(
                "row_pass_rate", "Row pass rate (行通过率)", total, DEFINITIONS["row_pass_rate"]
            ),
            Figure(
                "mean_overall",
                "Mean overall score (综合得分)",
                mean_overall,
                DEFINITIONS["mean_overall"],
                unit="score 0..1",
            ),
        ],
        tables=[
            Table(
                "departments",
                "By provider department (按提供部门)",
                [
                    Column("department", "Department (部门)"),
                    Column("name", "Name (名称)"),
                    Column("versions", "Versions (版本数)"),
                    Column("rows_in", "Rows read (读入行数)"),
                    Column("rows_quarantined", "Rows quarantined (隔离行数)"),
                    Column(
                        "row_pass_rate", "Row pass rate (行通过率)", DEFINITIONS["row_pass_rate"]
                    ),
                    Column("mean_overall", "Mean overall (综合得分)", DEFINITIONS["mean_overall"]),
                    *[Column(d, d, DEFINITIONS["dimension"]) for d in DIMENSIONS],
                ],
                rows,
            ),
            Table(
                "trend",
                "By month of ingestion, UTC (按入库月份)",
                [
                    Column("department", "Department (部门)"),
                    Column("month", "Month (月份)"),
                    Column("versions", "Versions (版本数)"),
                    Column(
                        "row_pass_rate", "Row pass rate (行通过率)", DEFINITIONS["row_pass_rate"]
                    ),
                    Column("mean_overall", "Mean overall (综合得分)", DEFINITIONS["mean_overall"]),
                ],
                trend_rows,
            ),
        ],
        notes=["Scores come from the quality stage of each ingest run (quality_results)."],
    )
    report.charts = [
        Chart(
            "pass_rate_by_department",
            "bar",
            "Row pass rate by department (各部门行通过率)",
            [r["department"] for r in rows],
            {
                "row pass rate (行通过率)": [r["row_pass_rate"].value for r in rows],
                "mean overall (综合得分)": [r["mean_overall"] for r in rows],
            },
        ),
        Chart("trend", "line", "Row pass rate by month (按月行通过率)", months, series),
    ]
    return report
