"""The sharing-rate report's one-pass Arrow/numpy counting against the SQL-aggregate reference.

A seeded catalog (built directly in the tables, not through the sandbox): four provider
departments, one of them without entries (0 of 0), entries created before and after a period,
requesters of the departments and outside parties, ≈ 1,500 jobs over 14 months in every state,
jobs without a decision, cancelled/expired after approval, rejections with blank and padded
reasons, a job on a dataset that is not in the catalog, and submission/decision times with
microseconds — many exactly on a half millisecond, where the rounding rule decides. Every path
(SQLite bulk text, SQLAlchemy rows, SQL aggregates; the same on PostgreSQL) must give the same
counts for every period and department filter.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import delete

import catalog
from reports import Period, Ratio, sharing_rate
from reports import _jobs as jobs_mod
from reports._jobs import SCHEMA, decision_ms, read_jobs
from reports._sharing import _medians, sharing_counts, sharing_report
from reports._sharing_sql import sharing_counts_sql
from sandbox._models import Job, User

T0 = datetime(2025, 11, 3, 8, 0, tzinfo=UTC)
DEPTS = ["SCJG", "SWJ", "RSJ", "GAJ"]  # GAJ registers no entry
STATES = [
    ("released", 30),
    ("approved", 4),
    ("running", 3),
    ("succeeded", 4),
    ("failed", 4),
    ("rejected", 15),
    ("awaiting_approval", 12),
    ("submitted", 3),
    ("policy_checked", 3),
    ("cancelled", 11),
    ("expired", 11),
]
REASONS = ["用途不明确", "  用途不明确 ", "超出授权范围", "", None, "请求集合过大"]
PERIODS = [
    pytest.param(Period(), id="all-time"),
    pytest.param(Period.parse("2026"), id="2026"),
    pytest.param(Period.parse("2025-12"), id="2025-12"),
    pytest.param(Period.parse("2026-02-10.."), id="open-end"),
    pytest.param(Period.parse("..2025-11-20"), id="open-start"),
    pytest.param(Period.parse("2030"), id="empty"),
]


def _at(us: int) -> datetime:
    return T0 + timedelta(microseconds=int(us))


def seed(session, *, jobs: int = 1500, seed: int = 20261129) -> None:
    """Write the seeded catalog into ``session`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    for d in DEPTS:
        session.add(catalog.Department(code=d, name=f"部门{d}"))
    codes = []
    shares = ["conditional", "unconditional", "none"]
    for i in range(24):
        dept = DEPTS[i % 3]
        code = f"{dept}-{i:04d}"
        codes.append(code)
        # four entries registered late (2026-03): outside an earlier period's denominators
        created = T0 - timedelta(days=30) if i % 6 else datetime(2026, 3, 1, tzinfo=UTC)
        session.add(
            catalog.Dataset(
                code=code,
                name=f"t_{i}",
                title=f"条目{i}",
                department_code=dept,
                format="csv",
                share_type=shares[(i // 3) % 3],
                open_type="none" if i % 4 else "conditional",
                update_cycle="monthly",
                grade="general",
                created_at=created,
                updated_at=created,
            )
        )
    users = [("bank", None), ("ent", None), *((f"u_{d.lower()}", d) for d in DEPTS)]
    for name, dept in users:
        session.add(User(name=name, role="requester", department_code=dept, created_at=T0))
    session.flush()
    names = [s for s, _ in STATES]
    weights = np.array([w for _, w in STATES], dtype=float)
    state = rng.choice(names, jobs, p=weights / weights.sum())
    span = 420 * 86_400 * 1_000_000  # 14 months of microseconds
    sub = rng.integers(0, span, jobs)
    # every third job on a whole second plus exactly 0.5 ms or other sub-ms parts: the rounding
    sub[::3] = (sub[::3] // 1_000_000) * 1_000_000 + rng.choice([500, 1500, 499, 501, 0], jobs)[::3]
    wait = rng.integers(1, 9 * 86_400 * 1_000_000, jobs)
    wait[::4] = (wait[::4] // 1000) * 1000 + rng.choice([500, 400, 600], jobs)[::4]
    code_of = rng.integers(0, 20, jobs)  # entries 20..23 are never asked for
    req_of = rng.integers(0, len(users), jobs)
    req_of[code_of == 1] = 3  # SWJ-0001 is only used by SWJ itself: not an actual share
    for j in range(jobs):
        st = str(state[j])
        created = _at(sub[j])
        decided = None
        # undecided: waiting ones, and about half of the cancelled / expired (before approval)
        waiting = st in ("awaiting_approval", "submitted", "policy_checked")
        if not waiting and (st not in ("cancelled", "expired") or j % 2):
            decided = _at(sub[j] + wait[j])
        updated = _at(sub[j] + wait[j] + 3_600_000_000)
        session.add(
            Job(
                id=f"j{j:06d}",
                requester=users[req_of[j]][0],
                # a few jobs on a dataset the catalog does not hold (deleted): never counted
                dataset_code="GONE-0001" if j % 97 == 5 else codes[code_of[j]],
                delta_version=0,
                computation="psi",
                spec_json="{}",
                state=st,
                reason=REASONS[j % len(REASONS)] if st == "rejected" else None,
                created_at=created,
                updated_at=updated,
                decided_at=decided,
            )
        )
    session.commit()


@pytest.fixture(scope="module")
def seeded_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('paths') / 'catalog.db'}"
    catalog.migrate(url)
    factory = catalog.open_catalog(url)
    with factory() as s:
        seed(s)
    factory.kw["bind"].dispose()
    return url


@pytest.fixture
def seeded(seeded_url: str):
    factory = catalog.open_catalog(seeded_url)
    with factory() as s:
        yield s
    factory.kw["bind"].dispose()


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([(name, "ascending") for name in table.column_names])


def _all_paths_equal(session, period, department=None):
    fast = sharing_counts(session, period, department)
    rows = sharing_counts(session, period, department, bulk=False)
    ref = sharing_counts_sql(session, period, department)
    assert fast == ref
    assert rows == ref
    return fast


@pytest.mark.parametrize("period", PERIODS)
@pytest.mark.parametrize("department", [None, "SWJ", "GAJ", "NOPE"])
def test_one_pass_equals_sql_reference(seeded, period, department):
    _all_paths_equal(seeded, period, department)


def test_seeded_catalog_exercises_every_case(seeded):
    c = _all_paths_equal(seeded, Period())
    # the department without entries has no row of counts: the report shows 0 of 0
    assert "GAJ" not in c.entries and "GAJ" not in c.requests
    assert set(c.entries) == {"SCJG", "SWJ", "RSJ"}
    assert sum(n for n, _, _ in c.entries.values()) == 24
    assert sorted(c.months)[0] == "2025-11" and sorted(c.months)[-1] == "2026-12"
    assert len(c.months) == 14  # 420 days of submissions from 2025-11-03
    # shareable: all but entries 6-8 and 15-17 (share type none) = 18 of 24; unused of them:
    # SWJ-0001 (asked for by SWJ itself only) and 20..23 (never asked for)
    assert sum(s for _, s, _ in c.entries.values()) == 18
    assert sum(c.used.values()) == 18 - 1 - 4
    assert {"cancelled", "expired"} & set(read_jobs(seeded, Period())["state"].to_pylist())
    assert c.median_ms_all is not None and c.median_ms_all.denominator in (1, 2)
    # padded and blank reasons merge: "  用途不明确 " counts as "用途不明确"; "" and None as none
    assert set(c.reasons) == {"用途不明确", "超出授权范围", "(no reason given)", "请求集合过大"}
    rep = sharing_report(c, session=seeded, period=Period(), department=None, now=T0)
    gaj = rep.row("departments", "GAJ")
    assert gaj["catalog_share_rate"] == Ratio(0, 0) and gaj["median_decision_seconds"] is None
    ref = sharing_report(
        sharing_counts_sql(seeded, Period()),
        session=seeded,
        period=Period(),
        department=None,
        now=T0,
    )
    assert rep == ref
    assert sharing_rate(session=seeded, now=T0) == ref


def test_late_entries_and_unknown_dataset_are_not_counted(seeded):
    early = _all_paths_equal(seeded, Period.parse("..2026-02"))
    late = _all_paths_equal(seeded, Period())
    # entries 0, 6, 12, 18 are registered on 2026-03-01: in the all-time denominators only
    assert sum(n for n, _, _ in early.entries.values()) == 20
    assert sum(n for n, _, _ in late.entries.values()) == 24
    # jobs on GONE-0001 are read but joined to no entry
    table = read_jobs(seeded, Period())
    assert "GONE-0001" in table["dataset_code"].to_pylist()
    total = sum(n for n, _ in late.requests.values())
    assert total == table.num_rows - table["dataset_code"].to_pylist().count("GONE-0001")


def test_bulk_and_row_reads_give_the_same_table(seeded, monkeypatch):
    monkeypatch.setattr(jobs_mod, "CHUNK_ROWS", 97)  # many chunks, one partly empty
    for period in (Period(), Period.parse("2026-01..2026-02")):
        bulk = read_jobs(seeded, period)
        rows = read_jobs(seeded, period, bulk=False)
        assert bulk.schema == rows.schema == SCHEMA
        assert bulk.num_rows > 100
        assert _sorted(bulk).equals(_sorted(rows))


def test_bulk_read_falls_back_when_text_does_not_parse(tmp_path):
    """A dataset code holding the field separator or a line break cannot pass the text path:
    the rows are read instead and the counts stay exact."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    catalog.migrate(url)
    factory = catalog.open_catalog(url)
    with factory() as s:
        seed(s, jobs=60)
        s.add(User(name="x", role="requester", department_code=None, created_at=T0))
        odd = ["SCJG-0001\x1fX", "SWJ-0002\nY,Z"]
        for i, code in enumerate(odd):  # entries written past the contract's code check
            s.add(
                catalog.Dataset(
                    code=code,
                    name=f"odd_{i}",
                    title="odd",
                    department_code="SCJG",
                    format="csv",
                    share_type="conditional",
                    open_type="none",
                    update_cycle="monthly",
                    grade="general",
                    created_at=T0 - timedelta(days=1),
                )
            )
        s.flush()
        for i, code in enumerate(odd):
            s.add(
                Job(
                    id=f"odd{i}",
                    requester="x",
                    dataset_code=code,
                    delta_version=0,
                    computation="psi",
                    spec_json="{}",
                    state="released",
                    created_at=T0,
                    updated_at=T0 + timedelta(hours=1),
                    decided_at=T0 + timedelta(minutes=5),
                )
            )
        s.commit()
        assert jobs_mod._sqlite_text(s, Period()) is None
        table = read_jobs(s, Period())
        assert table.num_rows == 62
        assert set(odd) <= set(table["dataset_code"].to_pylist())
        c = _all_paths_equal(s, Period())
        assert c.entries["SCJG"][0] == 8 + 2
        assert c.used["SCJG"] >= 2  # both odd entries, released to an outside party
    factory.kw["bind"].dispose()


def test_bulk_read_pages_over_sparse_rowids(tmp_path, monkeypatch):
    """Chunks follow the rowids that exist (keyset pages), however far apart they are."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    catalog.migrate(url)
    factory = catalog.open_catalog(url)
    calls: list[str] = []
    with factory() as s:
        seed(s, jobs=50)
        s.connection().exec_driver_sql(
            "UPDATE sandbox_jobs SET rowid = 4611686018427387904 WHERE id = 'j000003'"
        )
        s.connection().exec_driver_sql("DELETE FROM sandbox_jobs WHERE id = 'j000010'")
        s.commit()
        monkeypatch.setattr(jobs_mod, "CHUNK_ROWS", 7)
        conn = s.connection()
        real = type(conn).exec_driver_sql

        def counting(self, sql, *args, **kw):
            calls.append(sql)
            return real(self, sql, *args, **kw)

        monkeypatch.setattr(type(conn), "exec_driver_sql", counting)
        bulk = read_jobs(s, Period())
        monkeypatch.undo()
        assert bulk.num_rows == 49
        assert len(calls) == 8  # 7 full pages of 7 rows, then the empty one
        assert _sorted(bulk).equals(_sorted(read_jobs(s, Period(), bulk=False)))
    factory.kw["bind"].dispose()


def test_parse_refuses_a_row_count_mismatch():
    line = "SCJG-0001\x1f2026-01-01 00:00:00.000000\x1fsubmitted\x1f\x1f\x1f\x1f"
    assert jobs_mod._parse(line.encode(), 1, "\x1f").num_rows == 1
    assert jobs_mod._parse(line.encode(), 2, "\x1f") is None
    # one field too many: the parser refuses it
    assert jobs_mod._parse((line + "\x1fextra").encode(), 1, "\x1f") is None


def test_empty_job_table_and_in_memory_catalog():
    factory = catalog.open_catalog("sqlite://")
    engine = factory.kw["bind"]
    catalog.migrate(engine)
    with factory() as s:
        seed(s, jobs=40)
        s.execute(delete(Job))
        s.commit()
        assert read_jobs(s, Period()).num_rows == 0
        c = _all_paths_equal(s, Period())
        assert c.requests == {} and c.median_ms_all is None and c.months == {}
        assert sum(n for n, _, _ in c.entries.values()) == 24
    engine.dispose()


def test_decision_ms_rounding_rules():
    base = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in µs
    created = np.array([base + 400, base, base, base + 12_000_499], dtype=np.int64)
    decided = np.array([base + 600, base + 500, base + 12_000_500, base + 12_001_499])
    # SQLite rounds each timestamp to whole ms first (julianday), PostgreSQL the difference
    assert decision_ms(created, decided, "sqlite").tolist() == [1, 1, 12_001, 1]
    assert decision_ms(created, decided, "postgresql").tolist() == [0, 1, 12_001, 1]


def test_medians_exact_per_group():
    group = np.array([0, 2, 0, 2, 2, 0, 0], dtype=np.int64)
    values = np.array([5, 9, 1, 3, 7, 10, 4], dtype=np.int64)
    per, overall = _medians(group, values, 3)
    assert per == {0: Fraction(9, 2), 2: Fraction(7)}  # (4 + 5) / 2; 7 of 3, 7, 9
    assert overall == Fraction(5)
    assert _medians(group[:0], values[:0], 3) == ({}, None)


def test_epoch_columns_of_the_schema_are_utc():
    assert all(
        f.type.tz == "UTC" for f in SCHEMA if pa.types.is_timestamp(f.type)
    ) and SCHEMA.names == [
        "dataset_code",
        "created_at",
        "state",
        "decided_at",
        "released_at",
        "requester",
        "reason",
    ]


# -- PostgreSQL: the COPY path, the row path and the SQL reference on a throwaway cluster ------

# pg_url: the throwaway cluster fixture of tests/conftest.py


@pytest.mark.slow
@pytest.mark.integration
def test_postgresql_copy_rows_and_reference_agree(pg_url):
    catalog.migrate(pg_url)
    factory = catalog.open_catalog(pg_url)
    try:
        with factory() as s:
            seed(s, jobs=600)
        with factory() as s:
            assert jobs_mod._postgres_copy(s, Period()) is not None  # the COPY path ran
            for period in (Period(), Period.parse("2026"), Period.parse("..2025-11-20")):
                for department in (None, "RSJ", "GAJ"):
                    _all_paths_equal(s, period, department)
            assert _sorted(read_jobs(s, Period())).equals(
                _sorted(read_jobs(s, Period(), bulk=False))
            )
    finally:
        factory.kw["bind"].dispose()
