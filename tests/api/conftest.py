"""Fixtures of the API tests: one seeded home and one live uvicorn on 127.0.0.1 per session."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from api_testdata import REPO, ROLE_USER, USERS, free_port, password, row_values, seed_home

from govdx import Settings

SERVER_START_SECONDS = 60.0


@pytest.fixture(scope="session")
def api_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict]:
    root = tmp_path_factory.mktemp("api")
    settings = Settings(home=root / "home")
    settings.ensure_home()
    facts = seed_home(settings, root / "demo")
    return settings, facts


@pytest.fixture(scope="session")
def server(api_home) -> Iterator[str]:
    """Base URL of a live ``uvicorn --factory api.serve:app`` on a free loopback port."""
    settings, _ = api_home
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVDX_")}
    env.update(
        {
            "GOVDX_HOME": str(settings.home),
            "GOVDX_SUBMIT_RATE": "5/minute",
            "GOVDX_LOGIN_FAILURES": "5/5minute",
            "GOVDX_LOGIN_FAILURES_PER_IP": "100000/minute",
            "GOVDX_MAX_UPLOAD_BYTES": str(1 << 20),
        }
    )
    log = (settings.home / "uvicorn.log").open("wb")
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
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_SECONDS
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"uvicorn exited with {proc.returncode}: "
                    f"{(settings.home / 'uvicorn.log').read_text(errors='replace')[-2000:]}"
                )
            try:
                if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"uvicorn did not answer /healthz within {SERVER_START_SECONDS} s"
                )
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="session")
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60.0) as c:
        yield c


@pytest.fixture(scope="session")
def tokens(client) -> dict[str, str]:
    """user name → bearer token, for every seeded user."""
    out = {}
    for name in USERS:
        r = client.post("/api/v1/auth/token", data={"username": name, "password": password(name)})
        assert r.status_code == 200, r.text
        out[name] = r.json()["access_token"]
    return out


@pytest.fixture(scope="session")
def role_headers(tokens) -> dict[str | None, dict[str, str]]:
    """role → Authorization header of its matrix user; None → no header (anonymous)."""
    h: dict[str | None, dict[str, str]] = {
        role: {"Authorization": f"Bearer {tokens[user]}"} for role, user in ROLE_USER.items()
    }
    h[None] = {}
    return h


@pytest.fixture(scope="session")
def stored_values(api_home) -> set[str]:
    return row_values(api_home[0])


@pytest.fixture(scope="session")
def psi_request(api_home) -> bytes:
    """A blinded PSI request (50 taxpayer ids: 30 of the dataset, 20 unknown)."""
    from pipelines import Lakehouse
    from privacy._psi import PsiClientSession

    settings, _ = api_home
    ids = (
        Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)
        .read("tax_payment")["taxpayer_id"]
        .to_pylist()
    )
    known = sorted({i for i in ids if i})[:30]
    _, req = PsiClientSession.create(known, reveal_intersection=False, element="uscc")
    return req.to_bytes()
