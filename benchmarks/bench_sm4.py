"""SM4 column-encryption benchmark: ``python -m benchmarks.bench_sm4 [--cells N] [--repeat R]``.

Measures in one run, on one core:

* OpenSSL bulk SM4-CTR through ``cryptography`` over one 64 MiB buffer (the reference rate; best of
  a measurement before and one after the column runs), and
  bulk SM4-GCM over the same buffer for comparison;
* :func:`privacy.encrypt_column` / :func:`privacy.decrypt_column` (format 2, SM4-GCM per group of
  :data:`privacy.GROUP_CELLS` cells) on N (default 1,000,000) 18-character identifier cells, in
  plaintext MB/s (10^6 bytes/s) and as a ratio to the bulk CTR rate;
* the same with the legacy format 1 (SM4-CTR + one CMAC-SM4 per cell), side by side;
* the naive way, one ``cryptography`` CTR call plus one CMAC call per cell, on a 100k subset;
* :func:`privacy.token_column` (HMAC-SM3) on the same N cells, all distinct.

Prints a markdown table. Best of ``--repeat`` runs after one warm-up; all rows come from one run,
so the ratios compare like with like on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from privacy import GROUP_CELLS, DataKey, decrypt_column, encrypt_column, token_column
from privacy._sm4 import _encrypt

ID_CHARS = 18


def identifiers(n: int, seed: int = 7) -> pa.Array:
    """n distinct-looking 18-char ids (17 digits + a digit or 'X') as pyarrow string[n]."""
    rng = np.random.default_rng(seed)
    body = rng.integers(0, 10, size=(n, ID_CHARS), dtype=np.uint8) + ord("0")
    body[:, -1] = np.where(rng.random(n) < 0.1, ord("X"), body[:, -1])
    offsets = np.arange(n + 1, dtype=np.int32) * ID_CHARS
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(body.reshape(-1))]
    )


def _bulk_ctr(key: bytes, buf: bytes) -> bytes:
    return Cipher(algorithms.SM4(key), modes.CTR(bytes(16))).encryptor().update(buf)


def _bulk_gcm(key: bytes, buf: bytes) -> bytes:
    enc = Cipher(algorithms.SM4(key), modes.GCM(bytes(12))).encryptor()
    out = enc.update(buf)
    enc.finalize()
    return out


def best(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time in seconds over ``repeat`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    n, repeat = args.cells, args.repeat

    key = os.urandom(16)
    buf = os.urandom(64 << 20)
    t_bulk = best(lambda: _bulk_ctr(key, buf), repeat)

    t_gcm = best(lambda: _bulk_gcm(key, buf), repeat)

    dk = DataKey("BENCH-0001", "k1-bench", key, datetime.now(UTC))
    ids = identifiers(n)
    pt_mb = n * ID_CHARS / 1e6
    kw = {"key": dk, "dataset": "BENCH-0001", "column": "id_number"}
    cipher = encrypt_column(ids, **kw)
    cipher_v1 = _encrypt(ids, version=1, **kw)
    t_enc = best(lambda: encrypt_column(ids, **kw), repeat)
    t_dec = best(lambda: decrypt_column(cipher, **kw), repeat)
    t_enc1 = best(lambda: _encrypt(ids, version=1, **kw), repeat)
    t_dec1 = best(lambda: decrypt_column(cipher_v1, **kw), repeat)
    assert decrypt_column(cipher, **kw).equals(ids)
    assert decrypt_column(cipher_v1, **kw).equals(ids)

    # bulk CTR again after the column runs, best of both: a noisy neighbour during the first
    # measurement must not inflate the column-to-bulk ratios
    t_bulk = min(t_bulk, best(lambda: _bulk_ctr(key, buf), repeat))
    bulk = len(buf) / t_bulk / 1e6

    sub = ids.slice(0, min(n, 100_000)).to_pylist()
    sub_bytes = [s.encode() for s in sub]

    def naive() -> None:
        for i, cell in enumerate(sub_bytes):
            iv = i.to_bytes(16, "big")
            ct = Cipher(algorithms.SM4(key), modes.CTR(iv)).encryptor().update(cell)
            mac = cmac.CMAC(algorithms.SM4(key))
            mac.update(iv + ct)
            mac.finalize()

    t_naive = best(naive, 1) * n / len(sub_bytes)
    tok_key = os.urandom(32)
    t_tok = best(lambda: token_column(ids, key=tok_key, domain="resident_id"), 1)

    rows = [
        ("OpenSSL bulk SM4-CTR, one 64 MiB buffer", len(buf) / 1e6, t_bulk, bulk),
        ("OpenSSL bulk SM4-GCM, one 64 MiB buffer", len(buf) / 1e6, t_gcm, len(buf) / t_gcm / 1e6),
        (
            f"encrypt_column v2 (GCM, {GROUP_CELLS} cells/group), {n:,} × {ID_CHARS} B",
            pt_mb,
            t_enc,
            pt_mb / t_enc,
        ),
        (
            f"decrypt_column v2 (GCM, {GROUP_CELLS} cells/group), {n:,} × {ID_CHARS} B",
            pt_mb,
            t_dec,
            pt_mb / t_dec,
        ),
        (
            f"encrypt_column v1 (CTR + CMAC per cell), {n:,} × {ID_CHARS} B",
            pt_mb,
            t_enc1,
            pt_mb / t_enc1,
        ),
        (
            f"decrypt_column v1 (CTR + CMAC per cell), {n:,} × {ID_CHARS} B",
            pt_mb,
            t_dec1,
            pt_mb / t_dec1,
        ),
        (
            f"naive CTR+CMAC call per cell ({len(sub_bytes):,} cells, scaled to {n:,})",
            pt_mb,
            t_naive,
            pt_mb / t_naive,
        ),
        (f"token_column HMAC-SM3, {n:,} distinct cells", pt_mb, t_tok, pt_mb / t_tok),
    ]
    print("| what | plaintext MB | seconds | MB/s | ratio to bulk CTR |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for what, mb, sec, rate in rows:
        print(f"| {what} | {mb:.1f} | {sec:.3f} | {rate:.1f} | {rate / bulk:.0%} |")
    print(
        f"\nstored bytes per cell incl. 4 B Arrow offset: v2 {cipher.nbytes / n:.2f}, "
        f"v1 {cipher_v1.nbytes / n:.2f} (plaintext {ID_CHARS})"
    )


if __name__ == "__main__":
    main()
