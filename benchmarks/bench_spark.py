"""engine=spark vs engine=duckdb ingest, and PSI bucketed on Spark vs psi_serve, in one run.

    python -m benchmarks.bench_spark [--rows 100000 1000000] [--psi-items 100000] [--buckets 4]

Ingest: the same generated enterprise CSV (benchmarks.bench_ingest.make_csv) through
``pipelines.ingest`` with ``engine="duckdb"`` and ``engine="spark"`` (``local[2]``; the session is
started once, before the clock, and its start-up time is printed apart). PSI: one bucketed
cardinality request against the same server set, served by ``privacy.psi_serve(processes=2)``
and by ``privacy._psi_spark.psi_serve_spark``; both outcomes are checked equal.

On 2 cores Spark is slower than the embedded engine; what to read is how each grows with rows.
"""

from __future__ import annotations

import argparse
import platform
import random
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.bench_ingest import CONTRACT, make_csv
from govdx import Settings


def _make_csv(path: Path, rows: int) -> None:
    """bench_ingest's CSV with USCCs whose embedded organisation code (GB 11714) is valid too."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from quality import org_code_check_char, uscc_check_char

    make_csv(path, rows)
    t = pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(
            column_types={
                n: "string"
                for n in (
                    "统一社会信用代码",
                    "法定代表人身份证号",
                    "注册地行政区划代码",
                    "注册资本(万元)",
                    "成立日期",
                )
            }
        ),
    )
    serial = np.random.default_rng(8).permutation(10**8)[:rows]
    first8 = np.char.zfill(serial.astype(str), 8)
    org = [b + org_code_check_char(b) for b in first8.tolist()]
    body = [f"91{r}{o}" for r, o in zip(t["注册地行政区划代码"].to_pylist(), org, strict=True)]
    uscc = [b + uscc_check_char(b) for b in body]
    t = t.set_column(0, "统一社会信用代码", pa.array(uscc, pa.string()))
    pacsv.write_csv(t, path)


def _ingest_rows(rows: int, spark_master: str) -> dict:
    from pipelines import ingest

    out = {"rows": rows}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _make_csv(tmp / "registry.csv", rows)
        out["mb"] = (tmp / "registry.csv").stat().st_size / 1e6
        (tmp / "contract.yaml").write_text(
            yaml.safe_dump(CONTRACT, allow_unicode=True), encoding="utf-8"
        )
        committed = {}
        for engine in ("duckdb", "spark"):
            settings = Settings(home=tmp / f"home-{engine}", spark_master=spark_master)
            t = time.perf_counter()
            o = ingest(tmp / "contract.yaml", settings=settings, engine=engine)
            out[engine] = time.perf_counter() - t
            committed[engine] = (o.rows_in, o.rows_committed, o.rows_quarantined)
        assert committed["duckdb"] == committed["spark"], committed
    return out


def _psi(items: int, buckets: int, spark) -> dict:
    from privacy import PsiClientSession, psi_serve
    from privacy._psi_spark import psi_serve_spark

    rng = random.Random(7)
    server = [f"SRV{rng.randrange(10**15):015d}" for _ in range(items)]
    client = rng.sample(server, items // 4) + [f"CLI{i:015d}" for i in range(items - items // 4)]
    session, request = PsiClientSession.create(
        client, reveal_intersection=False, buckets=buckets, processes=2
    )
    t = time.perf_counter()
    local = psi_serve(server, request, processes=2, max_buckets=buckets)
    local_s = time.perf_counter() - t
    t = time.perf_counter()
    on_spark = psi_serve_spark(server, request, spark=spark, max_buckets=buckets)
    spark_s = time.perf_counter() - t
    a, b = session.finish(local, processes=2), session.finish(on_spark, processes=2)
    assert a == b and a.cardinality == items // 4, (a, b)
    return {"items": items, "buckets": buckets, "psi_serve": local_s, "spark": spark_s}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--psi-items", type=int, default=100_000)
    ap.add_argument("--buckets", type=int, default=4)
    ap.add_argument("--master", default="local[2]")
    args = ap.parse_args(argv)
    from pipelines._spark import spark_session

    t = time.perf_counter()
    with spark_session(args.master, app_name="govdx-bench") as spark:
        start_s = time.perf_counter() - t
        ingests = [_ingest_rows(n, args.master) for n in args.rows]
        psi = _psi(args.psi_items, args.buckets, spark) if args.psi_items else None

    print(
        f"\nmachine: {platform.machine()}, Python {platform.python_version()}, "
        f"Spark {args.master} (start-up {start_s:.1f}s, not in the figures)\n"
    )
    print("| rows | CSV MB | engine=duckdb s | engine=spark s | spark / duckdb |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for r in ingests:
        print(
            f"| {r['rows']:,} | {r['mb']:.1f} | {r['duckdb']:.1f} | {r['spark']:.1f} | "
            f"{r['spark'] / r['duckdb']:.2f}× |"
        )
    if len(ingests) > 1:
        a, b = ingests[0], ingests[-1]
        k = b["rows"] / a["rows"]
        print(
            f"\ngrowth ×{k:.0f} rows: duckdb ×{b['duckdb'] / a['duckdb']:.1f}, "
            f"spark ×{b['spark'] / a['spark']:.1f}"
        )
    if psi:
        print(
            f"\n| PSI {psi['items']:,} × {psi['items']:,}, {psi['buckets']} buckets, cardinality | "
            "seconds |\n| --- | ---: |"
        )
        print(f"| privacy.psi_serve(processes=2) | {psi['psi_serve']:.1f} |")
        print(f"| psi_serve_spark (local[2], one task per bucket) | {psi['spark']:.1f} |")
    return {"start_s": start_s, "ingest": ingests, "psi": psi}


if __name__ == "__main__":
    main()
