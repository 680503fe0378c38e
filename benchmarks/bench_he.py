"""Homomorphic-sum benchmark: ``python -m benchmarks.bench_he [--n 100000] [--naive-sample 200]``.

Measures in one run (both sides on this machine, so a wall time is the sum of both sides):

* **naive loop**: ``phe`` ``PaillierPublicKey.encrypt(v)`` per value (gmpy2 installed) on
  ``--naive-sample`` values, extrapolated to n (a 100k naive loop takes ≈ 15 min here);
* **psi_sum**: n requester ids against an n-row dataset (50 % overlap, signed values in fen),
  the whole protocol — ``PiSumClient.create`` → ``pisum_join`` (re-blind, blind, fresh 2048-bit
  key, CRT-encrypt n values on 2 processes) → ``finish`` → ``pisum_unmask`` → ``reveal`` — with
  the encryption phase timed on its own, and an :class:`ObfuscatorPool` made ahead for
  comparison;
* **he_sum**: ``HeSum.run`` over an n-row table grouped by credit grade (5 groups, 2 partitions)
  under the requester's key, the naive alternative being one encryption per row.

Checks every result against the plaintext computation and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa


def naive_rate(sample: int) -> float:
    """Encryptions per second of the naive loop (one phe encryption per value)."""
    from phe import paillier

    pub, _ = paillier.generate_paillier_keypair(n_length=2048)
    t = time.perf_counter()
    for v in range(sample):
        pub.encrypt(v * 100 - 5000)
    return sample / (time.perf_counter() - t)


def bench_psi_sum(n: int) -> dict:
    from privacy._blind import PiSumClient, pisum_join, pisum_unmask
    from privacy._digest import sm3_hex
    from privacy._paillier import ObfuscatorPool, PhePaillier, encode_signed

    rng = random.Random(7)
    client_ids = [f"91{i:016d}" for i in range(n)]
    server_ids = [f"91{i:016d}" for i in range(n // 2, n // 2 + n)]
    values = [rng.randint(-5_000_00, 90_000_000) for _ in server_ids]
    expected = sum(v for x, v in zip(server_ids, values, strict=True) if int(x[2:]) < n)
    t0 = time.perf_counter()
    client, request, _ = PiSumClient.create(client_ids, element="identifier", processes=2)
    t1 = time.perf_counter()
    response, sk = pisum_join(request, server_ids, values, processes=2)
    t2 = time.perf_counter()
    raw = response.to_bytes()
    unmask = client.finish(raw, processes=2)
    t3 = time.perf_counter()
    total = client.reveal(pisum_unmask(unmask, sk, sm3_hex(raw)))
    t4 = time.perf_counter()
    assert total == expected and client.cardinality == n // 2, (total, expected)
    # the encryption phase alone (CRT, 2 processes), and with obfuscators made ahead
    scheme = PhePaillier()
    pk = sk.public
    plain = [encode_signed(v, pk.n) for v in values]
    e0 = time.perf_counter()
    scheme.encrypt_vector(pk, plain, private_key=sk, processes=2)
    e1 = time.perf_counter()
    pool = ObfuscatorPool.precompute(sk, n, processes=2)
    e2 = time.perf_counter()
    scheme.encrypt_vector(pk, plain, pool=pool)
    e3 = time.perf_counter()
    return {
        "create": t1 - t0,
        "join": t2 - t1,
        "finish": t3 - t2,
        "reveal": t4 - t3,
        "total": t4 - t0,
        "encrypt": e1 - e0,
        "pool_ahead": e2 - e1,
        "encrypt_with_pool": e3 - e2,
        "response_bytes": len(raw),
    }


def bench_he_sum(n: int) -> dict:
    from govdx._contract import load_contract
    from privacy._paillier import PhePaillier
    from sandbox import sandbox_policy
    from sandbox._computations import RunContext
    from sandbox._he import HeSum, HeSumParams, decrypt_he_sum

    root = Path(__file__).resolve().parents[1]
    contract = load_contract(root / "govdx/demo/contracts/credit/tax_payment.yaml")
    rng = random.Random(3)
    grades = [rng.choice("ABCDM") for _ in range(n)]
    cents = [rng.randint(-5_000_00, 90_000_000) for _ in range(n)]
    table = pa.table(
        {
            "credit_grade": pa.array(grades),
            "tax_paid": pa.array([Decimal(c) / 100 for c in cents], pa.decimal128(18, 2)),
        }
    )
    pk, sk = PhePaillier().keygen(2048)
    params = HeSumParams(
        value_column="tax_paid", group_by=["credit_grade"], public_key=pk.to_json(), partitions=2
    )
    t0 = time.perf_counter()
    out = HeSum.run(RunContext(table, params, sandbox_policy(contract), contract))
    t1 = time.perf_counter()
    got = decrypt_he_sum(out.data, sk)
    t2 = time.perf_counter()
    expected: dict[str, int] = {}
    for g, c in zip(grades, cents, strict=True):
        expected[g] = expected.get(g, 0) + c
    assert {r[0]: r[2] for r in got["rows"]} == expected
    return {"run": t1 - t0, "decrypt": t2 - t1, "ciphertexts": out.summary["ciphertexts"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--naive-sample", type=int, default=200)
    ap.add_argument("--skip-psi-sum", action="store_true")
    args = ap.parse_args()
    n = args.n
    rate = naive_rate(args.naive_sample)
    naive = n / rate
    print(f"# bench_he n={n} ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)\n")
    print(
        f"naive phe loop: {rate:.1f} encryptions/s → {naive:.1f} s for {n} values (extrapolated)\n"
    )
    print("| job | phase | seconds | vs naive encryption |")
    print("| --- | --- | ---: | ---: |")
    if not args.skip_psi_sum:
        r = bench_psi_sum(n)
        for k in ("create", "join", "finish", "reveal", "total"):
            print(f"| psi_sum | {k} | {r[k]:.2f} | |")
        print(
            f"| psi_sum | encrypt {n} (CRT, 2 proc) | {r['encrypt']:.2f} | {naive / r['encrypt']:.1f}× |"
        )
        print(f"| psi_sum | obfuscator pool made ahead | {r['pool_ahead']:.2f} | |")
        print(
            f"| psi_sum | encrypt {n} with the pool | {r['encrypt_with_pool']:.2f} | "
            f"{naive / r['encrypt_with_pool']:.0f}× |"
        )
        print(f"| psi_sum | response bytes | {r['response_bytes']} | |")
    h = bench_he_sum(n)
    print(
        f"| he_sum | run ({h['ciphertexts']} ciphertexts) | {h['run']:.2f} | {naive / h['run']:.0f}× |"
    )
    print(f"| he_sum | client decrypt | {h['decrypt']:.3f} | |")
    print(json.dumps({"n": n, "naive_rate": rate}))


if __name__ == "__main__":
    main()
