"""The quality stage vs the same rules as one DuckDB SQL query, in one run.

    python -m benchmarks.bench_quality [--rows 1000000] [--repeat 1]

Input: the seeded 信易贷 demo registry (``govdx.demo.generate_credit_demo``), parsed and cast by
the pipeline (not timed): ≈``rows`` typed rows of USCC, name, legal representative resident ID,
region code, registered capital, establishment date, with the demo's injected defects.

- govdx: ``pipelines.validate`` — every built-in rule of the contract vectorized over Arrow
  (GB 11643 / GB 32100 / GB 11714 check characters, GB/T 2260 region list, dates, amounts,
  primary key), the GX suite run through a ValidationDefinition on a pandas batch (check columns
  + the steward's ``expect_column_values_to_be_between`` on the real column), rejects with rule,
  dimension and reason, findings, GB/T 36344 scores;
- DuckDB: one ``SELECT`` computing the same rules' failure counts (check characters as
  unrolled weighted sums over ``substr`` positions, region codes by ``NOT IN (SELECT code FROM codes)``,
  duplicates by a window ``row_number()``), all threads.

Prints a markdown table with seconds and the ratio govdx / DuckDB (target ≤ 4×), and checks that
both count the same failures per rule.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from govdx import load_contract
from govdx.demo import CONTRACTS_DIR, generate_credit_demo
from pipelines._cast import cast_table
from pipelines._parse import map_columns, read_source
from pipelines._validate import validate
from quality import RESIDENT_ID_WEIGHTS, USCC_ALPHABET, USCC_WEIGHTS, division_codes

AS_OF = date(2026, 11, 29)
ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def duckdb_sql() -> str:
    """One SELECT over table ``t`` (and the GB/T 2260 list ``codes``) returning failure counts
    per rule (same rules as govdx)."""
    rid_w = list(RESIDENT_ID_WEIGHTS)
    us_w = list(USCC_WEIGHTS)
    org_alpha = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    # weighted sums unrolled into plain column arithmetic (DuckDB's lambdas are ~10× slower)
    rid_sum = " + ".join(
        f"(ascii(substr(legal_rep_id, {i + 1}, 1)) - 48) * {w}" for i, w in enumerate(rid_w)
    )
    us_sum = " + ".join(
        f"(instr('{USCC_ALPHABET}', substr(upper(uscc), {i + 1}, 1)) - 1) * {w}"
        for i, w in enumerate(us_w)
    )
    org_sum = " + ".join(
        f"(instr('{org_alpha}', substr(upper(uscc), {i + 9}, 1)) - 1) * {w}"
        for i, w in enumerate(ORG_WEIGHTS)
    )
    return f"""
WITH c AS (
  SELECT *,
    regexp_full_match(legal_rep_id, '[0-9]{{17}}[0-9Xx]') AS rid_wf,
    regexp_full_match(legal_rep_id, '[0-9]{{15}}') AS rid_15,
    regexp_full_match(upper(uscc), '[{USCC_ALPHABET}]{{18}}') AS us_wf,
    row_number() OVER (PARTITION BY uscc ORDER BY _row) AS dup_n
  FROM t
), d AS (
  SELECT *,
    CASE WHEN rid_wf THEN substr('10X98765432', (1 + ({rid_sum}) % 11)::BIGINT, 1) END AS rid_cc,
    CASE WHEN rid_wf THEN try_strptime(substr(legal_rep_id, 7, 8), '%Y%m%d') END AS rid_born,
    CASE WHEN us_wf THEN substr('{USCC_ALPHABET}', (1 + (31 - ({us_sum}) % 31) % 31)::BIGINT, 1)
      END AS us_cc,
    CASE WHEN us_wf THEN substr('0123456789X0', (1 + 11 - ({org_sum}) % 11)::BIGINT, 1)
      END AS org_cc
  FROM c
)
SELECT
  count(*) FILTER (WHERE uscc IS NULL) AS "uscc.required",
  count(*) FILTER (WHERE enterprise_name IS NULL) AS "enterprise_name.required",
  count(*) FILTER (WHERE uscc IS NOT NULL AND NOT us_wf) AS "uscc.uscc.format",
  count(*) FILTER (WHERE us_wf AND us_cc <> substr(upper(uscc), 18, 1)) AS "uscc.uscc.check_char",
  count(*) FILTER (WHERE us_wf AND us_cc = substr(upper(uscc), 18, 1)
                   AND org_cc <> substr(upper(uscc), 17, 1)) AS "uscc.uscc.org_code",
  count(*) FILTER (WHERE rid_15) AS "legal_rep_id.resident_id.legacy_15",
  count(*) FILTER (WHERE legal_rep_id IS NOT NULL AND NOT rid_wf AND NOT rid_15)
    AS "legal_rep_id.resident_id.format",
  count(*) FILTER (WHERE rid_wf AND rid_cc <> upper(substr(legal_rep_id, 18, 1)))
    AS "legal_rep_id.resident_id.check_char",
  count(*) FILTER (WHERE rid_wf AND rid_cc = upper(substr(legal_rep_id, 18, 1))
                   AND (rid_born IS NULL OR rid_born > DATE '{AS_OF}'))
    AS "legal_rep_id.resident_id.birth_date",
  count(*) FILTER (WHERE rid_wf AND rid_cc = upper(substr(legal_rep_id, 18, 1))
                   AND rid_born IS NOT NULL AND substr(legal_rep_id, 1, 6) NOT IN (SELECT code FROM codes))
    AS "legal_rep_id.resident_id.region_known",
  count(*) FILTER (WHERE substr(legal_rep_id, 18, 1) = 'x' AND rid_wf)
    AS "legal_rep_id.resident_id.lower_x",
  count(*) FILTER (WHERE NOT regexp_full_match(region_code, '[0-9]{{6}}'))
    AS "region_code.region_code.format",
  count(*) FILTER (WHERE regexp_full_match(region_code, '[0-9]{{6}}')
                   AND region_code NOT IN (SELECT code FROM codes)) AS "region_code.region_code.region_known",
  count(*) FILTER (WHERE registered_capital < 0) AS "registered_capital.amount.non_negative",
  count(*) FILTER (WHERE established_on > DATE '{AS_OF}') AS "established_on.date.not_future",
  count(*) FILTER (WHERE dup_n > 1) AS "uscc.primary_key.unique"
FROM d
"""


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print a markdown table (seconds, ratio)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        files = generate_credit_demo(Path(tmp), rows=args.rows)
        contract = load_contract(CONTRACTS_DIR / "enterprise_registry.yaml").with_source(
            files.enterprise_registry
        )
        raw = read_source(files.enterprise_registry, contract.source)
        cast = cast_table(map_columns(raw.table, contract, file="registry.csv"), contract)
        prep = time.perf_counter() - t0
    table = cast.table
    prior = cast.rejects.select(["_row", "field", "value", "reason"])
    codes = sorted(division_codes().all_codes)
    validate(table.slice(0, 1000), contract, rows_in=1000, as_of=AS_OF)  # warm GX and imports

    g_times, d_times = [], []
    con = duckdb.connect()
    con.register("t", table)
    con.register("codes", pa.table({"code": pa.array(codes, pa.string())}))
    sql = duckdb_sql()
    for _ in range(args.repeat):
        t = time.perf_counter()
        result = validate(table, contract, rows_in=raw.rows_in, prior_rejects=prior, as_of=AS_OF)
        g_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        cur = con.execute(sql)
        row = cur.fetchone()
        d_times.append(time.perf_counter() - t)
    duck = dict(zip([d[0] for d in cur.description], row, strict=True))
    ours = {r.rule: r.failed for r in result.scores.rules}
    ours["enterprise_name.required"] = 0  # blanks left at the cast step (prior rejects)
    ours["uscc.required"] = 0
    mismatch = {
        k: (ours.get(k), v)
        for k, v in duck.items()
        if k not in ("enterprise_name.required", "uscc.required") and ours.get(k) != v
    }
    g, d = min(g_times), min(d_times)
    print(
        f"# quality stage vs DuckDB — {table.num_rows:,} typed rows "
        f"({platform.processor() or platform.machine()}, prep {prep:.1f}s untimed)\n"
    )
    print("| engine | seconds | rows/s |")
    print("| --- | ---: | ---: |")
    print(
        f"| govdx validate (Arrow rules + GX suite + rejects + scores) | {g:.3f} | "
        f"{table.num_rows / g:,.0f} |"
    )
    print(f"| DuckDB one SELECT (failure counts only) | {d:.3f} | {table.num_rows / d:,.0f} |")
    print(f"\nratio govdx / DuckDB: **{g / d:.2f}×** (target ≤ 4×)")
    print(f"rows quarantined: {result.rows_quarantined:,}; findings: {result.findings.num_rows:,}")
    print("per-rule counts agree with DuckDB" if not mismatch else f"MISMATCH: {mismatch}")


if __name__ == "__main__":
    main()
