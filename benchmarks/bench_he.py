"""Homomorphic-sum benchmark: ``python -m benchmarks.bench_he [--n 100000] [--naive-sample 200]``.

Measures in one run (both sides on this machine, so a wall time is the sum of both sides):

* **naive loop**: ``phe`` ``PaillierPublicKey.encrypt(v)`` per value (gmpy2 installed) on
  ``--naive-sample`` values, extrapolated to n (a 100k naive loop takes ≈ 15 min here);
* **psi_sum encryption of n values**, three ways: the naive loop; the **fresh-key CRT path**
  (what a join does without a stock: a new 2048-bit key, CRT obfuscators on 2 processes); the
  **stock path** (a key pack from ``sandbox._he_stock.HeStock`` — made before timing, its
  making reported as "made ahead" — claimed, loaded, then one modular multiplication per value);
* **psi_sum protocol**: n requester ids against n department identifiers (50 % overlap,
  signed values in fen), the whole protocol with the stock path — ``PiSumClient.create`` →
  claim + the department round of the sandbox join (``sandbox._he._department_round``:
  re-blind, blind, encrypt, shuffle) → ``finish`` → ``pisum_unmask`` → ``reveal``
  (``--fresh-protocol`` runs it once more on the fresh path);
* **he_sum**: ``HeSum.run`` over an n-row table grouped by credit grade (5 groups, 2 partitions)
  under the requester's key, the naive alternative being one encryption per row.

Checks every result against the plaintext computation and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
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


def _protocol(n: int, stock: object | None, code: str, work: Path) -> dict:
    """The whole psi_sum protocol; the join claims from ``stock`` (None: fresh path)."""
    from privacy._blind import PiSumClient, pisum_unmask
    from privacy._digest import sm3_hex
    from privacy._paillier import ObfuscatorPool
    from sandbox._he import _department_round

    rng = random.Random(7)
    client_ids = [f"91{i:016d}" for i in range(n)]
    server_ids = [f"91{i:016d}" for i in range(n // 2, n // 2 + n)]
    values = [rng.randint(-5_000_00, 90_000_000) for _ in server_ids]
    expected = sum(v for x, v in zip(server_ids, values, strict=True) if int(x[2:]) < n)
    state = work / f"job-{os.urandom(4).hex()}" / "state"
    state.mkdir(parents=True)
    t0 = time.perf_counter()
    client, request, _ = PiSumClient.create(client_ids, element="identifier", processes=2)
    t1 = time.perf_counter()
    claimed = stock.claim(code, bits=2048, need=n, dest_dir=state) if stock else None
    tc = time.perf_counter()
    # bench only: a copy of the pack's obfuscators to time the encryption step on its own below
    obf = list(claimed.pack.pool._values) if claimed is not None else []
    response, sk, facts = _department_round(
        request, server_ids, values, key_bits=2048, claimed=claimed, processes=2, scale=2,
        unit="元",
    )  # fmt: skip
    if claimed is not None:
        claimed.burn()
    t2 = time.perf_counter()
    raw = response.to_bytes()
    unmask = client.finish(raw, processes=2)
    t3 = time.perf_counter()
    total = client.reveal(pisum_unmask(unmask, sk, sm3_hex(raw)))
    t4 = time.perf_counter()
    assert total == expected and client.cardinality == n // 2, (total, expected)
    out = {
        "create": t1 - t0,
        "claim": tc - t1,
        "join": t2 - t1,
        "finish": t3 - t2,
        "reveal": t4 - t3,
        "total": t4 - t0,
        "response_bytes": len(raw),
        **facts,
    }
    if obf:
        from privacy._paillier import PhePaillier, encode_signed

        pk = sk.public
        plain = [encode_signed(v, pk.n) for v in values]
        e0 = time.perf_counter()
        PhePaillier().encrypt_vector(pk, plain, pool=ObfuscatorPool(pk, obf))
        out["encrypt_with_pack"] = time.perf_counter() - e0
    return out


def bench_psi_sum(n: int, *, fresh_protocol: bool = False) -> dict:
    from privacy._paillier import PhePaillier, encode_signed
    from sandbox._he_stock import HeStock

    code = "BENCH-0001"
    with tempfile.TemporaryDirectory(prefix="bench_he_") as tmp:
        work = Path(tmp)
        stock = HeStock(work / "sandbox")
        m0 = time.perf_counter()
        stock.make(code, size=n, bits=2048, packs=1, processes=2)
        made_ahead = time.perf_counter() - m0
        r = _protocol(n, stock, code, work)
        r["made_ahead"] = made_ahead
        # the fresh-key CRT path on its own: a new key + n CRT obfuscators on 2 processes
        rng = random.Random(11)
        scheme = PhePaillier()
        f0 = time.perf_counter()
        pk, sk = scheme.keygen(2048)
        f1 = time.perf_counter()
        plain = [encode_signed(rng.randint(-5_000_00, 90_000_000), pk.n) for _ in range(n)]
        f2 = time.perf_counter()
        scheme.encrypt_vector(pk, plain, private_key=sk, processes=2)
        f3 = time.perf_counter()
        r["fresh_keygen"], r["fresh_encrypt"] = f1 - f0, f3 - f2
        if fresh_protocol:
            r["fresh_protocol"] = _protocol(n, None, code, work)
    return r


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
    ap.add_argument("--fresh-protocol", action="store_true", help="also run it on the fresh path")
    args = ap.parse_args()
    n = args.n
    load0 = os.getloadavg()
    rate = naive_rate(args.naive_sample)
    naive = n / rate
    print(f"# bench_he n={n} ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {load0[0]:.2f})\n")
    print(
        f"naive phe loop: {rate:.1f} encryptions/s → {naive:.1f} s for {n} values (extrapolated)\n"
    )
    print("| job | phase | seconds | vs naive encryption |")
    print("| --- | --- | ---: | ---: |")
    doc: dict = {"n": n, "naive_rate": rate, "naive_seconds": naive}
    if not args.skip_psi_sum:
        r = bench_psi_sum(n, fresh_protocol=args.fresh_protocol)
        doc["psi_sum"] = r
        fresh = r["fresh_keygen"] + r["fresh_encrypt"]
        stock = r["claim"] + r["encrypt_with_pack"]
        print(f"| psi_sum | naive loop, {n} values (extrapolated) | {naive:.1f} | 1× |")
        print(
            f"| psi_sum | fresh key + CRT encrypt {n} (2 proc) | {fresh:.2f} "
            f"(keygen {r['fresh_keygen']:.2f}) | {naive / fresh:.1f}× |"
        )
        print(
            f"| psi_sum | key pack made ahead ({n} obfuscators, 2 proc) | {r['made_ahead']:.2f} | |"
        )
        print(
            f"| psi_sum | stock: claim + load pack, encrypt {n} | {stock:.2f} "
            f"(claim {r['claim']:.2f}) | **{naive / stock:.0f}×** |"
        )
        for k in ("create", "join", "finish", "reveal", "total"):
            print(f"| psi_sum protocol (stock) | {k} | {r[k]:.2f} | |")
        print(f"| psi_sum protocol (stock) | response bytes | {r['response_bytes']} | |")
        if "fresh_protocol" in r:
            for k in ("create", "join", "finish", "reveal", "total"):
                print(f"| psi_sum protocol (fresh) | {k} | {r['fresh_protocol'][k]:.2f} | |")
    h = bench_he_sum(n)
    doc["he_sum"] = h
    print(
        f"| he_sum | run ({h['ciphertexts']} ciphertexts) | {h['run']:.2f} | {naive / h['run']:.0f}× |"
    )
    print(f"| he_sum | client decrypt | {h['decrypt']:.3f} | |")
    doc["load_before"], doc["load_after"] = load0, os.getloadavg()
    print(f"\nload average before {load0}, after {doc['load_after']}")
    print(json.dumps(doc, default=str))


if __name__ == "__main__":
    main()
