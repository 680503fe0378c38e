"""SQL helpers shared by the reports: period filters, portable date arithmetic, medians.

The quality and security reports count in the catalog DB as ``GROUP BY`` / window queries
(SQLite embedded, PostgreSQL in production); Python only sees one row per department, month or
reason. The sharing-rate report reads the jobs once into Arrow instead (:mod:`reports._jobs`);
its SQL reference (:mod:`reports._sharing_sql`) still uses :func:`medians` and
:func:`millis_between`.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    MetaData,
    Select,
    String,
    Table,
    and_,
    func,
    insert,
    literal,
    literal_column,
    select,
    true,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from catalog._models import Department
from reports._errors import ReportError
from reports._figures import Period


def in_period(column: Any, period: Period) -> ColumnElement[bool]:
    """``start <= column < end`` for the bounds the period has (``true()`` when unbounded)."""
    conds = []
    if period.start is not None:
        conds.append(column >= period.start)
    if period.end is not None:
        conds.append(column < period.end)
    return and_(*conds) if conds else true()


def before_end(column: Any, period: Period) -> ColumnElement[bool]:
    """``column < end`` (things that existed by the end of the period)."""
    return column < period.end if period.end is not None else true()


def month_of(column: Any, dialect: str) -> ColumnElement[str]:
    """``'YYYY-MM'`` of a UTC timestamp column (SQLite ``strftime``, PostgreSQL ``to_char``)."""
    if dialect == "sqlite":
        return func.strftime("%Y-%m", column)
    return func.to_char(column, "YYYY-MM")


def millis_between(start: Any, end: Any, dialect: str) -> ColumnElement[int]:
    """Whole milliseconds from ``start`` to ``end`` (two UTC timestamp columns), rounded.

    SQLite stores timestamps as ISO text: ``julianday`` differences (a double; ≈ 20 µs
    resolution at current dates, so rounding to ms is exact). PostgreSQL: ``EXTRACT(EPOCH ...)``.
    """
    if dialect == "sqlite":
        return func.round((func.julianday(end) - func.julianday(start)) * 86_400_000)
    return func.round(func.extract("epoch", end - start) * 1000)


def full_scan(column: Any) -> ColumnElement[Any]:
    """``column || ''``: the same text, but no index can serve it.

    Grouping a whole table by an indexed column makes SQLite walk the index and fetch every row
    at random; grouping by this expression makes it scan the table once and sort (the
    documented way to disqualify an index, "The SQLite Query Optimizer Overview" §
    "Disqualifying WHERE clause terms using unary-+"). Harmless on PostgreSQL.
    """
    return column.concat(literal_column("''"))


def medians(session: Session, values: Select[Any]) -> tuple[dict[Any, Fraction], Fraction | None]:
    """Exact medians of ``values`` (a SELECT of ``(grp, v)``) per group and overall.

    The rows are materialised once in a temporary table (one pass over the source join), then
    two window queries rank them (``row_number() OVER (PARTITION BY grp ORDER BY v)``).

    Returns:
        ``(group → median, overall median)``, each a ``Fraction`` (the mean of the two middle
        values for an even count); empty groups are absent, the overall median is None when
        there are no rows.
    """
    tmp = Table(
        "govdx_report_values",
        MetaData(),
        Column("g", String(64)),
        Column("v", BigInteger),
        prefixes=["TEMPORARY"],
    )
    conn = session.connection()
    try:
        tmp.drop(conn, checkfirst=True)
        tmp.create(conn)
        conn.execute(insert(tmp).from_select(["g", "v"], values))
        per = _median(session, select(tmp.c.g, tmp.c.v), group=True)
        overall = _median(session, select(tmp.c.g, tmp.c.v), group=False).get(None)
        tmp.drop(conn)
    except SQLAlchemyError as exc:
        raise ReportError(f"report query failed on the catalog DB: {exc}") from exc
    return per, overall


def _median(session: Session, values: Select[Any], group: bool) -> dict[Any, Fraction]:
    sub = values.subquery("vals")
    grp, v = list(sub.c)
    part = [grp] if group else []
    ranked = select(
        (grp if group else literal(None)).label("g"),
        v.label("v"),
        func.row_number().over(partition_by=part, order_by=v).label("rn"),
        func.count().over(partition_by=part).label("n"),
    ).subquery("ranked")
    stmt = (
        select(ranked.c.g, func.sum(ranked.c.v), func.count())
        .where(
            ranked.c.rn.in_(
                [(ranked.c.n + 1) // 2, (ranked.c.n + 2) // 2]  # both middles (floor division)
            )
        )
        .group_by(ranked.c.g)
    )
    out: dict[Any, Fraction] = {}
    for g, total, k in run(session, stmt):
        out[g] = Fraction(int(total), int(k))
    return out


def run(session: Session, stmt: Any) -> list[Any]:
    """Execute and fetch all rows; DB errors become :class:`ReportError`."""
    try:
        return list(session.execute(stmt).all())
    except SQLAlchemyError as exc:
        raise ReportError(f"report query failed on the catalog DB: {exc}") from exc


def departments(session: Session, department: str | None) -> list[tuple[str, str]]:
    """``(code, name)`` of every provider department (or just ``department``, known or not)."""
    stmt = select(Department.code, Department.name).order_by(Department.code)
    if department is not None:
        stmt = stmt.where(Department.code == department)
    rows = [(c, n) for c, n in run(session, stmt)]
    if department is not None and not rows:
        rows = [(department, "")]
    return rows


def dialect_of(session: Session) -> str:
    """Dialect name of the session's engine (``sqlite``, ``postgresql``)."""
    return session.get_bind().dialect.name
