"""Ingest pipeline vs DuckDB on the same CSV, in one run (issue: foundation benchmark).

    python -m benchmarks.bench_ingest [--rows 1000000] [--repeat 1]

Measures, on one generated CSV of enterprise-registry shape (USCC, name, legal representative
resident ID — sensitive, SM4-encrypted —, region code, registered capital, registration date):

- DuckDB: ``COPY (SELECT * FROM read_csv(...)) TO 'x.parquet'`` (type inference, all threads);
- govdx: the pipeline's steps without Airflow start-up (and with Great Expectations already
  imported) — land (SM3 + encrypted copy),
  parse + cast + validate + quarantine + protect (SM4 + HMAC-SM3 tokens), Delta commit,
  catalog register and lineage — through ``pipelines.ingest``.

Prints a markdown table with seconds, rows/s and the ratio govdx / DuckDB (target ≤ 3×).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import yaml

from govdx import Settings
from quality import org_code_check_char, resident_id_check_char, uscc_check_char


def make_csv(path: Path, rows: int, seed: int = 7) -> None:
    """Write a ``rows``-row enterprise CSV with valid check characters (vectorized)."""
    rng = np.random.default_rng(seed)
    regions = np.array(["110101", "110105", "310104", "440305", "330106", "510107"])
    reg = regions[rng.integers(0, len(regions), rows)]
    serial = np.char.zfill(rng.integers(0, 10**8, rows).astype(str), 8)
    org = [s8 + org_code_check_char(s8) for s8 in serial.tolist()]  # GB 11714 check digit
    body17 = np.char.add(np.char.add("91", reg), np.array(org))
    uscc = [b + uscc_check_char(b) for b in body17.tolist()]
    birth = rng.integers(0, 365 * 50, rows)
    births = (np.datetime64("1955-01-01") + birth.astype("timedelta64[D]")).astype(str)
    id17 = np.char.add(
        np.char.add(reg, np.char.replace(births, "-", "")),
        np.char.zfill(rng.integers(0, 1000, rows).astype(str), 3),
    )
    ids = [b + resident_id_check_char(b) for b in id17.tolist()]
    capital = np.round(rng.lognormal(5, 1.5, rows), 2)
    day = (
        np.datetime64("2000-01-01") + rng.integers(0, 9000, rows).astype("timedelta64[D]")
    ).astype(str)
    table = pa.table(
        {
            "统一社会信用代码": uscc,
            "企业名称": np.char.add("测试企业", np.arange(rows).astype(str)),
            "法定代表人身份证号": ids,
            "注册地行政区划代码": reg,
            "注册资本(万元)": capital.astype(str),
            "成立日期": day,
        }
    )
    pacsv.write_csv(table, path)


CONTRACT = {
    "code": "BENCH-0001",
    "name": "bench_registry",
    "title": "基准测试企业登记",
    "department": {"code": "SCJG", "name": "市场监督管理局"},
    "source": {"path": "registry.csv", "format": "csv"},
    "primary_key": ["uscc"],
    "share": {"type": "conditional", "conditions": "基准测试"},
    "quality": {"min_pass_rate": 0.9},
    "fields": [
        {"name": "uscc", "title": "统一社会信用代码", "required": True, "element": "uscc"},
        {"name": "ent_name", "title": "企业名称", "required": True},
        {
            "name": "legal_rep_id",
            "title": "法定代表人身份证号",
            "element": "resident_id",
            "grade": "important",
            "pi": "sensitive",
        },
        {"name": "region_code", "title": "注册地行政区划代码", "element": "region_code"},
        {"name": "reg_capital", "title": "注册资本(万元)", "type": "decimal", "scale": 2},
        {"name": "reg_date", "title": "成立日期", "type": "date"},
    ],
}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    from pipelines import ingest

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv = tmp / "registry.csv"
        t = time.perf_counter()
        make_csv(csv, args.rows)
        print(
            f"generated {args.rows:,} rows ({csv.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t:.1f}s"
        )
        (tmp / "contract.yaml").write_text(
            yaml.safe_dump(CONTRACT, allow_unicode=True), encoding="utf-8"
        )

        t = time.perf_counter()
        duckdb.sql(
            f"COPY (SELECT * FROM read_csv('{csv}')) TO '{tmp / 'duck.parquet'}' (FORMAT parquet)"
        )
        duck_s = time.perf_counter() - t

        settings = Settings(home=tmp / "home")
        import quality._gx  # noqa: F401  - a one-off ≈3 s import, start-up like Airflow's

        t = time.perf_counter()
        outcome = ingest(tmp / "contract.yaml", settings=settings)
        govdx_s = time.perf_counter() - t
        assert outcome.rows_committed + outcome.rows_quarantined == args.rows

    results = [
        {"engine": "DuckDB read_csv → Parquet", "seconds": duck_s},
        {"engine": "govdx ingest steps (no Airflow)", "seconds": govdx_s},
    ]
    print(f"\nmachine: {platform.machine()}, {platform.python_version()}, rows: {args.rows:,}\n")
    print("| engine | seconds | rows/s | ratio to DuckDB |\n| --- | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r['engine']} | {r['seconds']:.2f} | {args.rows / r['seconds']:,.0f} | "
            f"{r['seconds'] / duck_s:.2f}× |"
        )
    return results


if __name__ == "__main__":
    main()
