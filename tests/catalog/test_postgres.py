"""The catalog on PostgreSQL: migrations and an ingest's registration, on a throwaway cluster.

A PostgreSQL 15 server (Debian package `postgresql`, installed by .ci/run) is started by the
fixture on 127.0.0.1 with a free port, as the `postgres` system user, and stopped afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import catalog
from govdx import Settings
from govdx.demo import write_credit_demo
from pipelines import ingest

pytestmark = [pytest.mark.slow, pytest.mark.integration]
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pg_url():
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL 15 server binaries not installed (apt-get install postgresql)")
    # pytest's tmp folders are private to root; the server runs as the postgres user
    root = Path(tempfile.mkdtemp(prefix="govdx-pg-"))
    data = root / "data"
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_pg:
        shutil.chown(root, user="postgres")
    subprocess.run(
        [*as_pg, str(PG_BIN / "initdb"), "-D", str(data), "-U", "govdx", "-A", "trust"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = _free_port()
    log = root / "pg.log"
    subprocess.run(
        [
            *as_pg,
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-w",
            "-t",
            "60",
            "-o",
            f"-h 127.0.0.1 -p {port} -k {root}",
            "start",
        ],
        check=True,
        capture_output=True,
        timeout=90,
    )
    try:
        url = f"postgresql+psycopg://govdx@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 30
        while True:  # bounded wait until it accepts connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        subprocess.run(
            [*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


def test_catalog_migrates_and_registers_on_postgresql(pg_url, tmp_path):
    catalog.migrate(pg_url)
    catalog.migrate(pg_url)  # a no-op the second time
    settings = Settings(home=tmp_path / "home", catalog_url=pg_url)
    _, contracts = write_credit_demo(tmp_path / "w", rows=200, seed=9)
    registry = next(c for c in contracts if c.name == "enterprise_registry.yaml")
    outcome = ingest(registry, settings=settings)
    with catalog.session_scope(pg_url) as s:
        v = catalog.current_version(session=s, code="SCJG-0001")
        assert (v.delta_version, v.row_count) == (0, outcome.rows_committed)
        assert [e.event_type for e in catalog.lineage_events(session=s)] == ["START", "COMPLETE"]
        assert catalog.get_dataset(session=s, code="SCJG-0001").department_code == "SCJG"
