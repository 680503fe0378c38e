"""Load benchmark of the catalog API: search and show under 100 concurrent clients.

Seeds a fresh home (the credit demo at 300 rows + one open public dataset, published), starts
``uvicorn --factory api.serve:app`` on 127.0.0.1, logs in, and drives it with ``wrk`` (Debian
package ``wrk`` 4.1) for ``--seconds`` with ``--connections`` keep-alive connections, cycling
four requests: keyword search (Chinese), search without filters, show of a credit entry (with
versions, quality, lineage) and show of the open entry. Prints requests/s, p50/p95/p99 latency
(ms) and errors (socket errors + non-2xx statuses).

Usage::

    .venv/bin/python -m benchmarks.bench_api [--seconds 30] [--connections 100] [--workers 2]

Target (issue): p95 < 50 ms and no errors on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

LUA = r"""
local paths = {
  "/api/v1/catalog/datasets?q=%E7%BA%B3%E7%A8%8E",
  "/api/v1/catalog/datasets",
  "/api/v1/catalog/datasets/SWJ-0001",
  "/api/v1/catalog/datasets/TJJ-PUB-0001",
}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1], {["Authorization"] = "Bearer __TOKEN__"})
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(home: Path) -> None:
    import catalog
    from api.crud import set_password
    from govdx import Settings
    from govdx.demo import write_credit_demo
    from pipelines import ingest
    from sandbox import Sandbox

    settings = Settings(home=home)
    settings.ensure_home()
    _, contracts = write_credit_demo(home.parent / "demo", rows=300)
    public = Path(__file__).resolve().parents[1] / (
        "govdx/demo/contracts/public/tjj_province_population_sample.yaml"
    )
    for p in [*contracts, public]:
        ingest(p, settings=settings)
    with catalog.session_scope(settings.catalog_db_url) as s:
        for code in ("SWJ-0001", "SCJG-0001", "RSJ-0001", "TJJ-PUB-0001"):
            catalog.set_published(session=s, code=code, published=True)
    box = Sandbox(settings)
    box.add_user("bench", "requester", None, actor="bench")
    box.close()
    with catalog.session_scope(settings.catalog_db_url) as s:
        set_password(session=s, name="bench", password="bench-password")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk not found: apt-get install wrk (Debian package)")
    root = Path(tempfile.mkdtemp(prefix="bench-api-"))
    home = root / "home"
    seed(home)
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GOVDX_")},
        "GOVDX_HOME": str(home),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "api.serve:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                sys.exit("server did not start")
            time.sleep(0.2)
        token = httpx.post(
            f"{base}/api/v1/auth/token", data={"username": "bench", "password": "bench-password"}
        ).json()["access_token"]
        for path in ("/api/v1/catalog/datasets", "/api/v1/catalog/datasets/SWJ-0001"):
            for _ in range(args.workers * 4):  # warm every worker's catalog index
                httpx.get(
                    base + path, headers={"Authorization": f"Bearer {token}"}
                ).raise_for_status()
        script = root / "bench.lua"
        script.write_text(LUA.replace("__TOKEN__", token))
        out = subprocess.run(
            [
                wrk,
                f"-t{args.threads}",
                f"-c{args.connections}",
                f"-d{args.seconds}s",
                "--timeout",
                "5s",
                "-s",
                str(script),
                base,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        line = next(x for x in out.splitlines() if x.startswith("RESULT"))
        n, dur_us, p50, p95, p99, sock_err, status_err = map(int, line.split()[1:])
        result = {
            "connections": args.connections,
            "workers": args.workers,
            "seconds": args.seconds,
            "requests": n,
            "requests_per_s": round(n / (dur_us / 1e6), 1),
            "p50_ms": round(p50 / 1000, 2),
            "p95_ms": round(p95 / 1000, 2),
            "p99_ms": round(p99 / 1000, 2),
            "errors": sock_err + status_err,
        }
        print(json.dumps(result))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
