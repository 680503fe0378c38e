"""One pass over the sandbox jobs into Arrow columns, for the sharing-rate report (作业明细读取).

The report needs a few facts of every job — its dataset, submission time, state and decision
time; for released jobs the release time and the requester; for rejected ones the reason — and
then counts, rates, exact medians and per-month trends over them. Reading the rows once into
Arrow and computing every figure with numpy (:mod:`reports._sharing`) replaces five
``GROUP BY`` / window passes over the same table.

Reading paths, chosen by dialect:

- **SQLite** (embedded default): SQLite builds the text of a chunk of rows itself
  (``group_concat(printf(...))`` over the next :data:`CHUNK_ROWS` rows by ``rowid``; the unit
  separator ``\\x1f`` between fields, one row a line, reasons as hex of their UTF-8) and
  :func:`pyarrow.csv.read_csv` parses it: one Python string per chunk instead of one tuple per
  row. Dataset codes and user names never hold a separator or a line break (both are checked
  on registration); should one ever do, the parse or the row count check fails and the generic
  path below reads the rows instead, so the figures never change.
- **PostgreSQL** (``psycopg``): ``COPY (SELECT ...) TO STDOUT (FORMAT csv)``, parsed by Arrow;
  timestamps travel as microseconds since the Unix epoch (``bigint``, exact).
- **Any other**, and the fallback: SQLAlchemy Core rows (one tuple per job) into Arrow.

Every path returns the same :data:`SCHEMA`; tests check the paths against each other.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from sqlalchemy import and_, case, func, literal, null, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from reports._errors import ReportError
from reports._figures import Period
from reports._sql import dialect_of, in_period
from sandbox._models import Job

#: Columns of the job table returned by :func:`read_jobs` (one row per job).
SCHEMA = pa.schema(
    [
        pa.field("dataset_code", pa.string(), nullable=False),
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("state", pa.string(), nullable=False),
        pa.field("decided_at", pa.timestamp("us", tz="UTC")),
        # only for released jobs (null / "" otherwise): what the actual share rate needs
        pa.field("released_at", pa.timestamp("us", tz="UTC")),
        pa.field("requester", pa.string(), nullable=False),
        # only for rejected jobs ("" otherwise; a NULL reason is "" too)
        pa.field("reason", pa.string(), nullable=False),
    ]
)
#: Rows of ``sandbox_jobs`` (in ``rowid`` order) whose text SQLite builds in one ``group_concat``.
CHUNK_ROWS = 65_536
_SEP = "\x1f"  # ASCII unit separator: never in a dataset code, a state, a timestamp or a user name
_NAMES = [f.name for f in SCHEMA]
_TS_NAIVE = pa.timestamp("us")


def read_jobs(session: Session, period: Period, *, bulk: bool = True) -> pa.Table:
    """The jobs the sharing-rate report reads, as one Arrow table.

    A job is read when it was submitted in the period (``created_at``) or released in the period
    (state ``released``, ``updated_at``); the caller tells the two apart. ``released_at`` and
    ``requester`` are filled for released jobs only, ``reason`` for rejected ones.

    Args:
        session: a catalog session (sandbox tables migrated).
        period: the reporting period (UTC, half-open).
        bulk: use the dialect's bulk text path (SQLite ``group_concat``, PostgreSQL ``COPY``)
            when there is one; False reads SQLAlchemy rows (the reference the tests compare to).

    Returns:
        ``pyarrow.Table[jobs × 7]`` of :data:`SCHEMA`: ``dataset_code`` (string),
        ``created_at`` (timestamp[us, UTC]), ``state`` (string), ``decided_at``
        (timestamp[us, UTC], null while undecided), ``released_at`` (timestamp[us, UTC], the
        job's ``updated_at`` when released, else null), ``requester`` (string, ``""`` unless
        released), ``reason`` (string, ``""`` unless rejected with a reason). Row order is
        not defined.

    Raises:
        ReportError: the catalog query failed.
    """
    dialect = dialect_of(session)
    if bulk and dialect == "sqlite":
        table = _sqlite_text(session, period)
        if table is not None:
            return table
    if bulk and dialect == "postgresql":
        table = _postgres_copy(session, period)
        if table is not None:
            return table
    return _rows(session, period)


def _released_in(period: Period) -> Any:
    return and_(Job.state == "released", in_period(Job.updated_at, period))


def _where(period: Period) -> Any:
    if period.start is None and period.end is None:
        return None
    return or_(in_period(Job.created_at, period), _released_in(period))


def _rows(session: Session, period: Period) -> pa.Table:
    released = Job.state == "released"
    stmt = select(
        Job.dataset_code,
        Job.created_at,
        Job.state,
        Job.decided_at,
        case((released, Job.updated_at), else_=null()).label("released_at"),
        case((released, Job.requester), else_=literal("")).label("requester"),
        case((Job.state == "rejected", func.coalesce(Job.reason, "")), else_=literal("")).label(
            "reason"
        ),
    )
    where = _where(period)
    if where is not None:
        stmt = stmt.where(where)
    try:
        rows = session.execute(stmt).all()
    except SQLAlchemyError as exc:
        raise ReportError(f"report query on sandbox_jobs failed: {exc}") from exc
    cols = list(zip(*rows, strict=True)) if rows else [[] for _ in _NAMES]
    arrays = []
    for f, values in zip(SCHEMA, cols, strict=True):
        if pa.types.is_timestamp(f.type):
            # naive values (or text, from a CASE on SQLite) are UTC by the catalog's contract
            values = [_utc(v) for v in values]
        arrays.append(pa.array(values, f.type))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _utc(v: datetime | str | None) -> datetime | None:
    # a CASE over a timestamp loses the column type on SQLite: the stored text comes back
    if isinstance(v, str):
        v = datetime.fromisoformat(v)
    if v is None or v.tzinfo is not None:
        return v
    return v.replace(tzinfo=UTC)


def _sqlite_bound(t: datetime) -> str:
    """A bound as SQLAlchemy stores SQLite DATETIME text (UTC, ``YYYY-MM-DD HH:MM:SS.ffffff``)."""
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _sqlite_period(column: str, period: Period) -> tuple[list[str], list[str]]:
    conds, params = [], []
    if period.start is not None:
        conds.append(f"{column} >= ?")
        params.append(_sqlite_bound(period.start))
    if period.end is not None:
        conds.append(f"{column} < ?")
        params.append(_sqlite_bound(period.end))
    return conds, params


def _sqlite_text(session: Session, period: Period) -> pa.Table | None:
    # printf: one string per row (NULL prints as ""); a reason is free text: hex of its UTF-8
    line = (
        f"printf('{_SEP.join(['%s'] * len(_NAMES))}', dataset_code, created_at, state,"
        " decided_at, CASE WHEN state = 'released' THEN updated_at END,"
        " CASE WHEN state = 'released' THEN requester END,"
        " CASE WHEN state = 'rejected' THEN hex(reason) END)"
    )
    sub, sub_p = _sqlite_period("created_at", period)
    rel, rel_p = _sqlite_period("updated_at", period)
    where = "rowid > ?"
    params: list[Any] = []
    if sub_p:
        where += f" AND (({' AND '.join(sub)}) OR (state = 'released' AND {' AND '.join(rel)}))"
        params = [*sub_p, *rel_p]
    # keyset pagination on rowid: each chunk starts after the last rowid of the one before
    sql = (
        "SELECT count(*), max(r), group_concat(line, char(10)) FROM ("
        f"SELECT rowid AS r, {line} AS line FROM sandbox_jobs WHERE {where}"
        f" ORDER BY rowid LIMIT {int(CHUNK_ROWS)})"
    )
    conn = session.connection()
    last = -(2**63)
    tables = []
    try:
        while True:
            n, last_row, text = conn.exec_driver_sql(sql, (last, *params)).one()
            if not n:
                break
            last = last_row
            table = _parse(text.encode(), n, _SEP)  # chunk by chunk: one chunk's text in memory
            if table is None:
                return None
            tables.append(table)
    except SQLAlchemyError as exc:
        raise ReportError(f"report query on sandbox_jobs failed: {exc}") from exc
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


def _parse(data: bytes, expected: int, sep: str) -> pa.Table | None:
    """Parse the DB's text of the jobs with Arrow; None when it does not hold ``expected`` rows."""
    naive = {f.name: (_TS_NAIVE if pa.types.is_timestamp(f.type) else f.type) for f in SCHEMA}
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=_NAMES),
            parse_options=pacsv.ParseOptions(
                delimiter=sep, quote_char=False, double_quote=False, escape_char=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=naive, null_values=[""], strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if table.num_rows != expected:
        return None
    # reasons: few distinct texts, decoded once each
    codes = table["reason"].combine_chunks().dictionary_encode()
    try:
        texts = [bytes.fromhex(h).decode("utf-8") for h in codes.dictionary.to_pylist()]
    except ValueError:  # not hex of UTF-8: read the rows instead
        return None
    reason = pa.DictionaryArray.from_arrays(codes.indices, pa.array(texts, pa.string()))
    return pa.Table.from_arrays(
        [
            *(
                c.cast(f.type) if pa.types.is_timestamp(f.type) else c
                for c, f in zip(table.columns[:-1], SCHEMA, strict=False)
            ),
            reason.cast(pa.string()),
        ],
        schema=SCHEMA,
    )


def _pg_bound(t: datetime) -> str:
    """A period bound as a PostgreSQL literal (we format it: no user text reaches the SQL)."""
    return f"'{t.astimezone(UTC).isoformat()}'::timestamptz"


def _postgres_copy(session: Session, period: Period) -> pa.Table | None:
    import psycopg  # only with the psycopg driver, checked below

    conn = session.connection()
    raw = conn.connection.driver_connection
    if not hasattr(raw, "cursor") or type(raw).__module__.split(".")[0] != "psycopg":
        return None

    def us(col: str) -> str:
        # microseconds since the Unix epoch, exact (EXTRACT gives numeric since PostgreSQL 14)
        return f"(EXTRACT(EPOCH FROM {col}) * 1000000)::bigint"

    conds: list[str] = []
    for col, released in (("created_at", False), ("updated_at", True)):
        c: list[str] = [] if not released else ["state = 'released'"]
        if period.start is not None:
            c.append(f"{col} >= {_pg_bound(period.start)}")
        if period.end is not None:
            c.append(f"{col} < {_pg_bound(period.end)}")
        conds.append(" AND ".join(c))
    bounded = period.start is not None or period.end is not None
    where = f" WHERE ({conds[0]}) OR ({conds[1]})" if bounded else ""
    sql = (
        "SELECT dataset_code, "
        f"{us('created_at')}, state, {us('decided_at')}, "
        f"CASE WHEN state = 'released' THEN {us('updated_at')} END, "
        "CASE WHEN state = 'released' THEN requester ELSE '' END, "
        "CASE WHEN state = 'rejected' THEN coalesce(reason, '') ELSE '' END "
        f"FROM sandbox_jobs{where}"
    )
    try:
        with raw.cursor() as cur:
            buf = io.BytesIO()
            with cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)") as copy:
                for block in copy:
                    buf.write(block)
    except psycopg.Error as exc:  # the driver's own errors: no SQLAlchemy layer here
        raise ReportError(f"report query on sandbox_jobs failed (COPY): {exc}") from exc
    try:
        table = pacsv.read_csv(
            io.BytesIO(buf.getvalue()),
            read_options=pacsv.ReadOptions(column_names=_NAMES),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={
                    f.name: (pa.int64() if pa.types.is_timestamp(f.type) else f.type)
                    for f in SCHEMA
                },
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    return pa.Table.from_arrays(
        [
            c.cast(f.type) if pa.types.is_timestamp(f.type) else c
            for c, f in zip(table.columns, SCHEMA, strict=True)
        ],
        schema=SCHEMA,
    )


def epoch_us(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Microseconds since the Unix epoch of a timestamp[us] column, and where it is set.

    Returns:
        ``(values, valid)``: ``int64[n]`` (0 where null) and ``bool[n]``.
    """
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    values = arr.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    return values, valid


def decision_ms(created_us: np.ndarray, decided_us: np.ndarray, dialect: str) -> np.ndarray:
    """Whole milliseconds from submission to decision, exactly as the catalog DB counts them.

    SQLite (``julianday``) keeps every timestamp as whole milliseconds, rounding the seconds half
    up as a double (``(sqlite3_int64)(s*1000 + 0.5)`` in ``computeJD`` of SQLite's ``date.c``):
    the difference is between those. PostgreSQL (``EXTRACT(EPOCH FROM end - start)``, numeric)
    rounds the exact difference half away from zero. Both give the figures the SQL of the report
    gave before it read the jobs into Arrow.

    Args:
        created_us, decided_us: ``int64[n]`` microseconds since the Unix epoch (UTC).
        dialect: ``sqlite`` | anything else (exact difference, rounded).

    Returns:
        ``int64[n]`` milliseconds.
    """
    if dialect == "sqlite":
        return _sqlite_ms(decided_us) - _sqlite_ms(created_us)
    d = decided_us - created_us
    return np.sign(d) * ((np.abs(d) + 500) // 1000)


def _sqlite_ms(t: np.ndarray) -> np.ndarray:
    minute, rem = np.divmod(t, 60_000_000)
    sec, frac = np.divmod(rem, 1_000_000)
    # the same double operations as SQLite: s = whole seconds + digits / 10^k; (int)(s*1000+0.5)
    s = sec.astype(np.float64) + frac.astype(np.float64) / 1e6
    return minute * 60_000 + np.floor(s * 1000.0 + 0.5).astype(np.int64)
