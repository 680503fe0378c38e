"""`govdx serve --trusted-proxy`: behind a reverse proxy the per-address login limit counts the
real clients (X-Forwarded-For from the trusted address only), so one client's failures do not
lock everyone out; without the option the header is ignored."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from api_testdata import REPO, free_port, password

from govdx.cli._serve import proxy_options


def test_proxy_options() -> None:
    assert proxy_options(None) == {"proxy_headers": False, "forwarded_allow_ips": None}
    assert proxy_options(["10.0.0.1, 10.0.0.2", "192.168.0.0/24"]) == {
        "proxy_headers": True,
        "forwarded_allow_ips": "10.0.0.1,10.0.0.2,192.168.0.0/24",
    }


def _serve(settings, *extra: str):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVDX_")}
    env.update(
        {
            "GOVDX_HOME": str(settings.home),
            "GOVDX_LOGIN_FAILURES": "1000/minute",
            "GOVDX_LOGIN_FAILURES_PER_IP": "3/minute",
        }
    )
    govdx = [sys.executable, "-c", "from govdx.cli import main; main()"]
    cmd = [*govdx, "serve", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen([*cmd, *extra], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, f"govdx serve exited with {proc.returncode}"
        try:
            if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "govdx serve did not answer /healthz within 60 s"
        time.sleep(0.2)


def _login(base: str, user: str, pw: str, client_ip: str) -> int:
    r = httpx.post(
        f"{base}/api/v1/auth/token",
        data={"username": user, "password": pw},
        headers={"X-Forwarded-For": client_ip},
        timeout=30,
    )
    return r.status_code


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted-proxy", "no-proxy-option"])
def test_per_address_login_limit_counts_real_clients_only_behind_a_trusted_proxy(
    api_home, trusted
) -> None:
    settings, _ = api_home
    proc, base = _serve(settings, *(["--trusted-proxy", "127.0.0.1"] if trusted else []))
    try:
        # one client sprays made-up names until its address is blocked
        codes = [_login(base, f"ghost{i}", "wrong-password", "203.0.113.7") for i in range(4)]
        assert codes == [401, 401, 401, 429]
        # another client behind the same proxy: its own address when the proxy is trusted;
        # otherwise X-Forwarded-For is ignored and it shares the blocked proxy address
        ok = _login(base, "bank", password("bank"), "198.51.100.9")
        assert ok == (200 if trusted else 429)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
