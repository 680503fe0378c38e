"""PSI benchmark: ``python -m benchmarks.bench_psi [--n 100000] [--buckets 1,4] [--processes 2]``.

Measures in one run, both sides n × n items with 50 % overlap (18-character identifiers):

* plain OpenMined PSI in one process, one bucket, protobuf objects passed in memory (client
  request → server setup → server response → client count): the baseline;
* govdx's bucketed, parallel run for each ``--buckets`` value: :meth:`PsiClientSession.create`
  → ``to_bytes``/``from_bytes`` → :func:`psi_serve` → ``to_bytes``/``from_bytes`` →
  :meth:`PsiClientSession.finish`, each with ``--processes`` worker processes (client and
  server on the same machine, so the wall time is the sum of both sides).

Prints a markdown table: seconds, ratio to the plain run (target ≤ 0.6 with 2 processes),
items/s, and the request/response sizes in bytes. ``--no-plain`` skips the baseline (it then
estimates it from the 100k measurement, 0.21 ms/item, of docs/psi.md). The cost is linear in n:
extrapolate from 100k and 300k rather than running 1,000,000 on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime

from privacy._psi import PsiClientSession, PsiRequest, PsiResponse, psi_serve


def datasets(n: int) -> tuple[list[str], list[str]]:
    """Client ids 0..n-1, server ids n/2..3n/2-1 (overlap n/2), as 18-char strings."""
    client = [f"91{i:016d}" for i in range(n)]
    server = [f"91{i:016d}" for i in range(n // 2, n // 2 + n)]
    return client, server


def plain(client: list[str], server: list[str], fpr: float) -> int:
    """One-process OpenMined PSI, one bucket, cardinality mode; returns the cardinality."""
    from private_set_intersection.python import DataStructure
    from private_set_intersection.python import client as psi_client
    from private_set_intersection.python import server as psi_server

    c = psi_client.CreateWithNewKey(False)
    s = psi_server.CreateWithNewKey(False)
    request = c.CreateRequest(client)
    setup = s.CreateSetupMessage(fpr, len(client), server, DataStructure.GCS)
    response = s.ProcessRequest(request)
    return int(c.GetIntersectionSize(setup, response))


def ours(
    client: list[str], server: list[str], fpr: float, buckets: int, processes: int
) -> tuple[int, int, int]:
    """govdx's run through the byte envelopes; returns (cardinality, request B, response B)."""
    session, request = PsiClientSession.create(
        client, reveal_intersection=False, buckets=buckets, processes=processes
    )
    req_bytes = request.to_bytes()
    response = psi_serve(
        server,
        PsiRequest.from_bytes(req_bytes),
        fpr=fpr,
        processes=processes,
        max_buckets=buckets,
    )
    resp_bytes = response.to_bytes()
    outcome = session.finish(PsiResponse.from_bytes(resp_bytes), processes=processes)
    return outcome.cardinality, len(req_bytes), len(resp_bytes)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="items per side")
    ap.add_argument("--buckets", default="1,4", help="comma-separated bucket counts")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--fpr", type=float, default=1e-9)
    ap.add_argument("--no-plain", action="store_true", help="skip the one-process baseline")
    args = ap.parse_args(argv)
    n = args.n
    client, server = datasets(n)
    expected = n - n // 2

    rows = []
    if args.no_plain:
        t_plain = 0.21e-3 * n
        rows.append(("plain OpenMined PSI, 1 process (estimated)", t_plain, None, None))
    else:
        t0 = time.perf_counter()
        card = plain(client, server, args.fpr)
        t_plain = time.perf_counter() - t0
        assert card == expected, (card, expected)
        rows.append(("plain OpenMined PSI, 1 process", t_plain, None, None))
    for b in (int(x) for x in args.buckets.split(",")):
        t0 = time.perf_counter()
        card, req_b, resp_b = ours(client, server, args.fpr, b, args.processes)
        dt = time.perf_counter() - t0
        assert card == expected, (card, expected)
        rows.append((f"govdx, buckets={b}, processes={args.processes}", dt, req_b, resp_b))

    print(
        f"# PSI {n:,} × {n:,} (overlap {expected:,}), fpr={args.fpr:g}, "
        f"{os.cpu_count()} CPUs, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
    )
    print("| run | seconds | ratio to plain | items/s (client) | request bytes | response bytes |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, secs, req_b, resp_b in rows:
        print(
            f"| {name} | {secs:.2f} | {secs / t_plain:.2f} | {n / secs:,.0f} | "
            f"{'' if req_b is None else f'{req_b:,}'} | {'' if resp_b is None else f'{resp_b:,}'} |"
        )


if __name__ == "__main__":
    main()
