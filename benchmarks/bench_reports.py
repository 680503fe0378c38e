"""The sharing-rate report over a large catalog: 10,000 entries and 1,000,000 sandbox jobs.

    python -m benchmarks.bench_reports [--entries 10000] [--jobs 1000000] [--repeat 3] [--db PATH]

Builds (not timed) a migrated SQLite catalog with ``--entries`` catalog entries over 60
departments (share types ≈ 55 % conditional, 25 % unconditional, 20 % none; open types ≈ 30 %
not none), 400 users (requesters of 40 outside parties and of the departments themselves), and
``--jobs`` jobs spread over 2025-01..2026-12 with their whole state history as the sandbox writes
it: every job has its ``submitted → policy_checked → awaiting_approval`` transitions, then
≈ 62 % are approved and released (4 more transitions, one release row), 12 % rejected with one
of six reasons, 8 % still awaiting approval, 6 % approved and failed, 4 % approved then expired,
4 % cancelled before a decision, 4 % succeeded but not yet fetched — about 6 transition rows per
job; ``decided_at`` set on the approved/rejected ones. Rows are inserted with ``executemany`` on the raw sqlite3 connection in one transaction.

Then times :func:`reports.sharing_rate` (all time, and one year): reading the catalog entries
and users, reading the jobs once into Arrow (SQLite writes the rows' text, Arrow's CSV reader
parses it), computing every figure with numpy, and building the report; it prints a markdown
table (target: under 2 s on this machine) and the seconds of each stage (median run).
``--reference`` also times the SQL-aggregate reference (:mod:`reports._sharing_sql`, how the
report counted before) once per period and checks that both give the same counts.
``--db`` keeps the generated DB for reruns; a kept DB is migrated to the current head first
(a no-op when it is current).
"""

from __future__ import annotations

import argparse
import platform
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

import catalog
from reports import Period
from reports._sharing import sharing_counts, sharing_report
from reports._sharing_sql import sharing_counts_sql

REASONS = [
    "用途不明确",
    "超出授权范围",
    "缺少企业授权书",
    "请求集合过大",
    "重复申请",
    "数据已开放，请直接下载",
]
T0 = datetime(2025, 1, 1, tzinfo=UTC)
SPAN_S = 2 * 365 * 86400


def _ts(t: np.ndarray) -> list[str]:
    """datetime64[us] → SQLAlchemy's SQLite DATETIME text (``YYYY-MM-DD HH:MM:SS.ffffff``)."""
    return np.char.replace(np.datetime_as_string(t, unit="us"), "T", " ").tolist()


# job kinds: (weight %, states after submitted → policy_checked → awaiting_approval)
KINDS = [
    (62, ["approved", "running", "succeeded", "released"]),
    (12, ["rejected"]),
    (8, []),
    (6, ["approved", "running", "failed"]),
    (4, ["approved", "expired"]),
    (4, ["cancelled"]),
    (4, ["approved", "running", "succeeded"]),
]
# seconds after the decision of each later state
AFTER = {"running": 30, "succeeded": 90, "failed": 90, "released": 390, "expired": 259_200}


def build(db: Path, *, entries: int, jobs: int, seed: int = 7) -> None:
    """Write the synthetic catalog into ``db`` (SQLite file, migrated first), vectorized."""
    catalog.migrate(f"sqlite:///{db}")
    rng = np.random.default_rng(seed)
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    depts = [f"D{i:03d}" for i in range(60)]
    con.executemany(
        "INSERT INTO departments(code, name) VALUES (?, ?)", [(d, f"部门{d}") for d in depts]
    )
    t0 = np.datetime64(T0.replace(tzinfo=None), "us")
    codes = [f"{depts[i % 60]}-{i:05d}" for i in range(entries)]
    share = rng.choice(["conditional", "unconditional", "none"], entries, p=[0.55, 0.25, 0.2])
    open_ = rng.choice(["none", "conditional", "unconditional"], entries, p=[0.7, 0.15, 0.15])
    created = _ts(t0 + rng.integers(0, SPAN_S // 2, entries).astype("timedelta64[s]"))
    con.executemany(
        "INSERT INTO datasets(id, code, name, title, summary, department_code, format, share_type,"
        " share_conditions, open_type, open_conditions, update_cycle, grade, published, "
        "created_at, updated_at) VALUES (?,?,?,?,'',?,'csv',?,?,?,NULL,'monthly','general',0,?,?)",
        [
            (
                i + 1,
                codes[i],
                f"t{i}",
                f"数据集{i}",
                depts[i % 60],
                str(share[i]),
                "用于审批" if share[i] == "conditional" else None,
                str(open_[i]),
                created[i],
                created[i],
            )
            for i in range(entries)
        ],
    )
    users = [f"req{i:03d}" for i in range(400)]
    con.executemany(
        "INSERT INTO users(name, role, department_code, created_at) VALUES (?, 'requester', ?, ?)",
        [(u, None if i < 40 else depts[i % 60], created[0]) for i, u in enumerate(users)],
    )
    ids = [f"job{j:09d}" for j in range(jobs)]
    job_code = np.array(codes)[rng.integers(0, entries, jobs)].tolist()
    job_req = np.array(users)[rng.integers(0, len(users), jobs)].tolist()
    sub = t0 + rng.integers(0, SPAN_S, jobs).astype("timedelta64[s]")
    dec = sub + rng.integers(60, 5 * 86400, jobs).astype("timedelta64[s]")
    kind = rng.choice(len(KINDS), jobs, p=[w / 100 for w, _ in KINDS])
    reason_idx = rng.integers(0, len(REASONS), jobs)
    sub_s = _ts(sub)
    state = np.array(["awaiting_approval"] * jobs, dtype=object)
    last = sub.copy()
    trans: list[tuple] = []
    for prev, st in (
        (None, "submitted"),
        ("submitted", "policy_checked"),
        ("policy_checked", "awaiting_approval"),
    ):
        trans += zip(ids, [prev] * jobs, [st] * jobs, job_req, sub_s, strict=True)
    for k, (_, path) in enumerate(KINDS):
        sel = np.flatnonzero(kind == k)
        prev = "awaiting_approval"
        for st in path:
            at = dec[sel] + np.timedelta64(AFTER.get(st, 0), "s")
            trans += zip(
                (ids[i] for i in sel),
                [prev] * len(sel),
                [st] * len(sel),
                (job_req[i] for i in sel),
                _ts(at),
                strict=True,
            )
            state[sel] = st
            last[sel] = at
            prev = st
    reasons = [REASONS[reason_idx[i]] if state[i] == "rejected" else None for i in range(jobs)]
    # decided_at: the transition to approved or rejected, as Sandbox._transition sets it
    first = [k for k, (_, path) in enumerate(KINDS) if path and path[0] in ("approved", "rejected")]
    decided = np.isin(kind, first)
    decided_s = [t if d else None for t, d in zip(_ts(dec), decided.tolist(), strict=True)]
    con.executemany(
        "INSERT INTO sandbox_jobs(id, requester, dataset_code, delta_version, computation, "
        "spec_json, state, reason, decision_json, inputs_json, attempts, created_at, updated_at, "
        "decided_at, summary_json) VALUES (?,?,?,0,'psi','{}',?,?,?,'{}',0,?,?,?,'{}')",
        zip(
            ids,
            job_req,
            job_code,
            state.tolist(),
            reasons,
            ['{"approvals_required": 2, "reviewer_required": true}'] * jobs,
            sub_s,
            _ts(last),
            decided_s,
            strict=True,
        ),
    )
    con.executemany(
        "INSERT INTO sandbox_job_transitions(job_id, from_state, to_state, actor, at)"
        " VALUES (?,?,?,?,?)",
        trans,
    )
    rel = np.flatnonzero(state == "released")
    con.executemany(
        "INSERT INTO sandbox_releases(job_id, recipient, digest, bytes, released_at) "
        "VALUES (?,?,?,1024,?)",
        zip(
            (ids[i] for i in rel),
            (job_req[i] for i in rel),
            ["0" * 64] * len(rel),
            _ts(last[rel]),
            strict=True,
        ),
    )
    con.commit()
    con.execute("ANALYZE")
    con.close()


STAGES = ("catalog", "jobs read", "figures", "report")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--db", type=Path, default=None, help="keep/reuse the generated DB here")
    ap.add_argument(
        "--reference", action="store_true", help="also time the SQL reference and compare"
    )
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    db = args.db or Path(tmp.name) / "catalog.db"
    if not db.exists():
        t = time.perf_counter()
        build(db, entries=args.entries, jobs=args.jobs)
        print(f"built {db} in {time.perf_counter() - t:.1f} s (not timed)")
    else:
        t = time.perf_counter()
        catalog.migrate(f"sqlite:///{db}")
        print(f"reusing {db} (migrated to head in {time.perf_counter() - t:.1f} s, not timed)")
    factory = catalog.open_catalog(f"sqlite:///{db}")
    rows = []
    for label, period in (("all time", Period()), ("2025", Period.parse("2025"))):
        runs = []
        for _ in range(args.repeat):
            stages: dict[str, float] = {}
            with factory() as s:
                t = time.perf_counter()
                counts = sharing_counts(s, period, stages=stages)
                t_report = time.perf_counter()
                rep = sharing_report(counts, session=s, period=period, department=None)
                stages["report"] = time.perf_counter() - t_report
                runs.append((time.perf_counter() - t, stages))
        runs.sort(key=lambda r: r[0])
        ref = None
        if args.reference:
            with factory() as s:
                t = time.perf_counter()
                same = sharing_counts_sql(s, period) == counts
                ref = (time.perf_counter() - t, same)
        rows.append((label, runs[0][0], runs[len(runs) // 2], rep, ref))
    factory.kw["bind"].dispose()
    print(
        f"\nsharing-rate report — {args.entries:,} entries, {args.jobs:,} jobs, SQLite, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}\n"
    )
    print(
        "| period | best s | median s | catalog share | actual share | satisfaction | "
        "median decision s |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, best, (med, _), rep, _ref in rows:
        f = {x.key: x.value for x in rep.figures}
        print(
            f"| {label} | {best:.2f} | {med:.2f} | {f['catalog_share_rate']} | "
            f"{f['actual_share_rate']} | {f['request_satisfaction']} | "
            f"{float(f['median_decision_seconds'] or 0):.0f} |"
        )
    print("\nstages of the median run, seconds:\n")
    print("| stage | " + " | ".join(r[0] for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for stage in STAGES:
        print(f"| {stage} | " + " | ".join(f"{r[2][1].get(stage, 0):.3f}" for r in rows) + " |")
    if args.reference:
        print("\nSQL-aggregate reference (one run each):\n")
        print("| period | reference s | same counts | speed-up vs median |")
        print("|---|---|---|---|")
        for label, _, (med, _), _, (ref_s, same) in rows:
            print(f"| {label} | {ref_s:.2f} | {'yes' if same else 'NO'} | {ref_s / med:.1f}× |")
    worst = max(r[2][0] for r in rows)
    print(f"\ntarget < 2 s: {'met' if worst < 2 else 'NOT met'} (worst median {worst:.2f} s)")
    tmp.cleanup()


if __name__ == "__main__":
    main()
