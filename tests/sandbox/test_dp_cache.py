"""sandbox._dp_cache: contribution bounding per table version — which rows are kept, the cache
file (mode, atomic, key), its reuse on the second query, its invalidation by a new version or
a changed contract, and equal exact aggregates with and without it."""

from __future__ import annotations

import json
import os
import stat
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_dp import DP, _spec, crafted, si_contract

from sandbox import DpQuery, DpQueryComputation, DpQueryParams, sandbox_policy
from sandbox._computations import RunContext
from sandbox._dp_cache import BoundedSelection, BoundingCache, BoundingKey, bounded_selection


def _key(version: int = 1, *, contract=None, m: int = 2) -> BoundingKey:
    c = contract or si_contract(dp=DP)
    return BoundingKey(c.code, version, c.definition_digest(), "pid", m)


# --- which rows are kept -----------------------------------------------------------------------
def test_first_m_rows_of_each_unit_in_storage_order_are_kept():
    # crafted(): p1 at positions 0–4, p2 5, p3 6, p4 7
    assert bounded_selection(crafted(), "pid", 2).drops.tolist() == [2, 3, 4]
    assert bounded_selection(crafted(), "pid", 1).drops.tolist() == [1, 2, 3, 4]
    within = bounded_selection(crafted(), "pid", 5)
    assert within.dropped == 0 and within.keep_mask() is None
    mask = bounded_selection(crafted(), "pid", 2).keep_mask()
    assert mask.to_pylist() == [True, True, False, False, False, True, True, True]


def test_kept_rows_of_a_unit_do_not_depend_on_other_units():
    t = pa.table({"pid": ["u", "v", "u", "v", "u"], "x": [1, 2, 3, 4, 5]})
    kept = t.filter(bounded_selection(t, "pid", 2).keep_mask())
    assert kept.to_pydict() == {"pid": ["u", "v", "u", "v"], "x": [1, 2, 3, 4]}
    without_v = t.filter(pa.array([p != "v" for p in t["pid"].to_pylist()]))
    kept_u = without_v.filter(bounded_selection(without_v, "pid", 2).keep_mask())
    assert kept_u["x"].to_pylist() == [1, 3]  # the same rows of u as with v present


def test_missing_unit_column_is_a_run_error():
    from sandbox import RunError

    with pytest.raises(RunError, match="privacy-unit column 'nobody'"):
        bounded_selection(crafted(), "nobody", 1)


# --- the cache file ----------------------------------------------------------------------------
def test_second_lookup_reads_the_file_and_the_file_is_private(tmp_path):
    cache = BoundingCache(tmp_path)
    key = _key()
    first = cache.selection(key, crafted())
    path = cache.path(key)
    assert (cache.hits, cache.misses) == (0, 1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.parent == tmp_path / "dp_bounding" / "RSJ-T001"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    mtime = path.stat().st_mtime_ns
    again = BoundingCache(tmp_path)
    second = again.selection(key, crafted())
    assert (again.hits, again.misses) == (1, 0)
    assert path.stat().st_mtime_ns == mtime
    assert second.drops.tolist() == first.drops.tolist() == [2, 3, 4]
    stored = pq.read_table(path)
    assert stored.column_names == ["row"]  # positions only, no value of a row
    meta = json.loads(stored.schema.metadata[b"govdx.dp_bounding"])
    assert meta == {
        "dataset": "RSJ-T001",
        "version": "1",
        "definition": si_contract(dp=DP).definition_digest(),
        "privacy_unit": "pid",
        "max_contributions": "2",
        "rows": "8",
    }


def test_new_version_or_changed_contract_is_a_miss(tmp_path):
    cache = BoundingCache(tmp_path)
    cache.selection(_key(1), crafted())
    cache.selection(_key(2), crafted())  # a new table version
    changed = si_contract(dp={**DP, "bounds": {"wage": [0, 50]}})
    cache.selection(_key(1, contract=changed), crafted())  # another definition digest
    cache.selection(_key(1, m=3), crafted())  # another max_contributions
    assert (cache.hits, cache.misses) == (0, 4)
    assert len(list((tmp_path / "dp_bounding" / "RSJ-T001").iterdir())) == 4
    cache.selection(_key(2), crafted())
    assert cache.hits == 1


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda p: p.write_bytes(b"not parquet"), id="corrupt"),
        pytest.param(
            lambda p: pq.write_table(
                pa.table({"row": pa.array([99], pa.int64())}).replace_schema_metadata(
                    pq.read_table(p).schema.metadata
                ),
                p,
            ),
            id="position-out-of-range",
        ),
        pytest.param(
            lambda p: pq.write_table(pa.table({"row": pa.array([2, 3, 4], pa.int64())}), p),
            id="no-key-metadata",
        ),
    ],
)
def test_a_damaged_file_is_recomputed(tmp_path, damage):
    cache = BoundingCache(tmp_path)
    key = _key()
    cache.selection(key, crafted())
    damage(cache.path(key))
    again = BoundingCache(tmp_path)
    assert again.selection(key, crafted()).drops.tolist() == [2, 3, 4]
    assert (again.hits, again.misses) == (0, 1)
    assert BoundingCache(tmp_path).load(key, 8) is not None  # rewritten


def test_a_file_for_another_row_count_is_not_used(tmp_path):
    cache = BoundingCache(tmp_path)
    cache.store(_key(), BoundedSelection(9, np.array([2, 3, 4], dtype=np.int64)))
    assert cache.load(_key(), 8) is None
    assert cache.selection(_key(), crafted()).rows == 8 and cache.misses == 1


# --- equal results with and without the cache --------------------------------------------------
@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"statistic": "count", "group_by": ["district"]}, id="count"),
        pytest.param({"statistic": "sum", "column": "wage", "group_by": ["district"]}, id="sum"),
        pytest.param(
            {"statistic": ["count", "sum"], "column": "wage", "group_by": ["district"]},
            id="count+sum",
        ),
        pytest.param(
            {"statistic": "histogram", "column": "wage", "bins": [0, 50, 101]}, id="histogram"
        ),
        pytest.param({"statistic": "quantile", "column": "wage"}, id="quantile"),
    ],
)
def test_exact_aggregates_equal_with_and_without_the_cache(tmp_path, params):
    query = DpQuery.build(DpQueryParams(epsilon="1/2", **params), si_contract(dp=DP))
    cache = BoundingCache(tmp_path)
    cache.selection(query.bounding_key(1), crafted())
    warm = BoundingCache(tmp_path)
    cached = query.aggregate(crafted(), warm.selection(query.bounding_key(1), crafted()))
    assert warm.hits == 1
    direct = query.aggregate(crafted())
    assert cached.keys() == direct.keys()
    for k in direct:
        assert cached[k].tolist() == direct[k].tolist()


def test_large_table_with_repeated_units_matches_a_reference(tmp_path):
    """10,000 rows, units with 1–7 rows in random storage order: the cached selection keeps
    exactly the first m rows of each unit (checked against a plain Python reference)."""
    rng = np.random.default_rng(11)
    units = rng.integers(0, 2_000, 10_000).astype(str)
    table = pa.table({"pid": units, "x": np.arange(10_000)})
    seen: dict[str, int] = {}
    expected = []
    for i, u in enumerate(units.tolist()):
        seen[u] = seen.get(u, 0) + 1
        if seen[u] > 3:
            expected.append(i)
    cache = BoundingCache(tmp_path)
    key = BoundingKey("X-1", 4, "d" * 64, "pid", 3)
    assert cache.selection(key, table).drops.tolist() == expected
    assert BoundingCache(tmp_path).selection(key, table).drops.tolist() == expected


# --- through the computation -------------------------------------------------------------------
def test_run_uses_the_cache_on_the_second_query(tmp_path):
    contract = si_contract(dp=DP)
    policy = sandbox_policy(contract)
    params = _spec().params
    summaries = []
    for _ in range(2):
        ctx = RunContext(crafted(), params, policy, contract, delta_version=3, cache_dir=tmp_path)
        out = DpQueryComputation.run(ctx)
        summaries.append(out.summary["bounding"])
    assert summaries == ["computed and cached", "cached"]
    no_cache = DpQueryComputation.run(RunContext(crafted(), params, policy, contract))
    assert no_cache.summary["bounding"] == "computed"


def test_worker_runs_share_the_bounding_file(box, settings):
    from sandbox_testdata import publish_dataset

    n = 300
    table = pa.table(
        {
            "pid": [f"p{i % 120}" for i in range(n)],
            "district": ["a", "b", "c"] * (n // 3),
            "employer": ["91440305MA000001"] * n,
            "wage": pa.array([Decimal(i % 100) for i in range(n)], pa.decimal128(18, 2)),
            "salary_secret": [1] * n,
        }
    )
    publish_dataset(settings, si_contract(dp=DP), table)
    box.add_user("rsj_steward", "steward", "RSJ")
    bounding = []
    for eps in ("1/4", "1/4"):
        job = box.submit(_spec(eps), user="bank")
        box.approve(job["id"], user="rev1")
        box.approve(job["id"], user="rsj_steward")
        ran = box.run(job["id"])
        assert ran["state"] == "succeeded", ran["reason"]
        bounding.append(ran["result"]["summary"]["bounding"])
    assert bounding == ["computed and cached", "cached"]
    folder = settings.home / "sandbox" / "cache" / "dp_bounding" / "RSJ-T001"
    [file] = list(folder.iterdir())
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    # 120 units × 2–3 rows, m = 2: the third row of units 0–59 is dropped
    assert pq.read_table(file)["row"].to_pylist() == list(range(240, 300))


def test_bounding_then_opendp_fit_the_worker_address_space_limit():
    """The worker runs under RLIMIT_AS (sandbox.memory_limit_mb, default 2048 MiB). Bounding
    with DuckDB reserved so much address space that OpenDP's shared library could no longer be
    mapped afterwards ("failed to map segment"), and a first query on a new version failed."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import resource
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (2048 * 1024 * 1024, hard))
        import numpy as np, pyarrow as pa
        from sandbox._dp_cache import bounded_selection
        from privacy._dp import enable_opendp
        ids = np.char.zfill((np.arange(40_000) % 30_000).astype(str), 18)
        sel = bounded_selection(pa.table({"u": pa.array(ids)}), "u", 1)
        enable_opendp()
        print(len(sel.drops))
        """
    )
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.strip() == "10000"  # units 0–9,999 have two rows: their second is dropped
