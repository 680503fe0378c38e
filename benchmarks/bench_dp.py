"""Benchmark: DP count and sum by district over 1,000,000 rows vs the plain DuckDB aggregate.

Run: ``.venv/bin/python -m benchmarks.bench_dp [--rows 1000000] [--repeat 5]``. Prints one JSON
line per domain: ``national`` (the ≈2,846 GB/T 2260 county codes in use, the main case) and
``city`` (``region_codes:3201``, the 11 districts of 南京市; the data's district column drawn
from them).

Both sides read the same in-memory Arrow table (privacy unit: an 18-character id string, one
row per person; district; value: an integer amount). The plain side is DuckDB ``SELECT
district, count(*), sum(x) GROUP BY district`` on an open connection. The DP side is one
``dp_query`` job with ``statistic: [count, sum]`` (ε split exactly, one ledger charge) through
what the sandbox worker does: the version's contribution bounding from the cache
(:class:`sandbox._dp_cache.BoundingCache`), then :meth:`sandbox._dp.DpQuery.release` (public
domain, clamping, one bounded aggregate, the two OpenDP discrete-Laplace vectors drawn on two
threads, confidence intervals, the JSON document). Best of ``--repeat`` runs each:

* ``dp_count_and_sum_s`` / ``ratio``: warm (the version's bounding file exists);
* ``dp_cold_s``: the first query of a version (bounding computed and written);
* ``dp_two_releases_s``: a count job and a sum job, each a whole release (the old way);
* ``noise_two_vectors_seq_s`` / ``noise_two_vectors_par_s``: the two OpenDP draws alone, one
  after the other and on two threads; ``aggregate_only_s``: the exact bounded aggregate;
  ``bounding_compute_s``: the bounding of the version (no cache); ``duckdb_open_close_s``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from govdx import Contract
from privacy._dp import release_vectors
from quality import division_codes
from sandbox._dp import DpQuery, DpQueryParams, domain_keys
from sandbox._dp_cache import BoundingCache, bounded_selection

CITY = "region_codes:3201"


def make_table(rows: int, seed: int = 7, codes: list[str] | None = None) -> pa.Table:
    """pyarrow.Table[rows × (pid string, district string, x int64)]; districts drawn from
    ``codes`` (default: every county code in use)."""
    rng = np.random.default_rng(seed)
    pool = np.asarray(codes if codes is not None else division_codes().county_codes_in_use())
    ids = np.char.zfill(rng.permutation(rows).astype(str), 18)
    return pa.table(
        {
            "pid": pa.array(ids),
            "district": pa.array(pool[rng.integers(0, len(pool), rows)]),
            "x": pa.array(rng.integers(1_000, 40_000, rows)),
        }
    )


def contract(domain: str = "region_codes") -> Contract:
    return Contract.from_dict(
        {
            "code": "BENCH-DP",
            "name": "bench_dp",
            "title": "bench",
            "department": {"code": "B", "name": "bench"},
            "source": {"path": "x.csv", "format": "csv"},
            "share": {"type": "conditional", "conditions": "bench"},
            "privacy_unit": "pid",
            "fields": [
                {"name": "pid", "element": "resident_id", "pi": "sensitive"},
                {"name": "district"},
                {"name": "x", "type": "integer"},
            ],
            "sandbox": {
                "allowed_computations": ["dp_query"],
                "dp": {
                    "epsilon_cap": 10,
                    "max_contributions": 1,
                    "bounds": {"x": [0, 40000]},
                    "public_domains": {"district": domain},
                },
            },
        }
    )


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(domain: str, rows: int, repeat: int, work: Path) -> dict[str, object]:
    codes = None if domain == "region_codes" else domain_keys(domain)
    table = make_table(rows, codes=codes)
    c = contract(domain)

    def build(statistic, column=None) -> DpQuery:
        q = DpQuery.build(
            DpQueryParams(statistic=statistic, column=column, group_by=["district"], epsilon="1"),
            c,
        )
        q.map_losses()  # build the OpenDP measurements (no data) before timing
        return q

    both = build(["count", "sum"], "x")
    count, total = build("count"), build("sum", "x")
    key = both.bounding_key(version=1)
    con = duckdb.connect()
    con.register("t", table)

    def plain() -> None:
        con.sql("SELECT district, count(*), sum(x) FROM t GROUP BY district").to_arrow_table()

    def cold() -> None:
        shutil.rmtree(work / "cache", ignore_errors=True)
        cache = BoundingCache(work / "cache")
        both.release(table, cache.selection(key, table))
        assert cache.misses == 1

    def warm() -> None:
        cache = BoundingCache(work / "cache")
        both.release(table, cache.selection(key, table))
        assert cache.hits == 1

    def two_releases() -> None:
        cache = BoundingCache(work / "cache")
        count.release(table, cache.selection(key, table))
        total.release(table, cache.selection(key, table))

    sel = bounded_selection(table, "pid", 1)
    exact = both.aggregate(table, sel)
    draws = [(p.measurement, exact[p.name]) for p in both.parts]
    plain()
    cold()
    warm()
    t_plain = best(plain, repeat)
    t_warm = best(warm, repeat)
    t_cold = best(cold, repeat)
    t_two = best(two_releases, repeat)
    t_plain_again = best(plain, repeat)  # the plain side before and after: the noise floor
    con.close()
    t_plain = min(t_plain, t_plain_again)
    return {
        "domain": domain,
        "rows": rows,
        "groups": len(both.group_keys[0]),
        "plain_duckdb_s": round(t_plain, 4),
        "dp_count_and_sum_s": round(t_warm, 4),
        "ratio": round(t_warm / t_plain, 2),
        "dp_cold_s": round(t_cold, 4),
        "ratio_cold": round(t_cold / t_plain, 2),
        "dp_two_releases_s": round(t_two, 4),
        "aggregate_only_s": round(best(lambda: both.aggregate(table, sel), repeat), 4),
        "noise_two_vectors_seq_s": round(
            best(lambda: release_vectors(draws, threads=1), repeat), 4
        ),
        "noise_two_vectors_par_s": round(
            best(lambda: release_vectors(draws, threads=2), repeat), 4
        ),
        "bounding_compute_s": round(best(lambda: bounded_selection(table, "pid", 1), repeat), 4),
        "duckdb_open_close_s": round(best(lambda: duckdb.connect().close(), repeat), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="govdx-bench-dp-") as tmp:
        for domain in ("region_codes", CITY):
            print(json.dumps(measure(domain, a.rows, a.repeat, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
