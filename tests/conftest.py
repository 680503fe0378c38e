"""Shared fixtures: a clean GOVDX_* environment and a fresh home per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from govdx import Contract, Settings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No GOVDX_* variable leaks in from the machine; each test gets its own home."""
    for key in list(os.environ):
        if key.startswith("GOVDX_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("GOVDX_HOME", str(tmp_path / "home"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings(home=tmp_path / "home")
    s.ensure_home()
    return s


def make_contract(**overrides) -> Contract:
    """A small valid contract (enterprise registry shape); keys in ``overrides`` replace."""
    data = {
        "code": "SCJG-T001",
        "name": "enterprise_test",
        "title": "企业登记信息(测试)",
        "department": {"code": "SCJG", "name": "市场监督管理局"},
        "summary": "测试",
        "source": {"path": "enterprise.csv", "format": "csv"},
        "primary_key": ["uscc"],
        "share": {"type": "conditional", "conditions": "用于信贷审批"},
        "open": {"type": "none"},
        "update_cycle": "monthly",
        "quality": {"min_pass_rate": 0.5},
        "fields": [
            {"name": "uscc", "title": "统一社会信用代码", "required": True, "element": "uscc"},
            {
                "name": "legal_rep_id",
                "title": "法定代表人身份证号",
                "element": "resident_id",
                "grade": "important",
                "pi": "sensitive",
            },
            {"name": "reg_capital", "title": "注册资本(万元)", "type": "decimal", "scale": 2},
        ],
    }
    data.update(overrides)
    return Contract.from_dict(data)


PG_BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture(scope="module")
def pg_url():
    """A throwaway PostgreSQL 15 cluster on 127.0.0.1 (free port, time zone UTC) for one test
    module; yields its SQLAlchemy URL and stops and deletes it afterwards. The server runs as
    the ``postgres`` system user (Debian package ``postgresql``, installed by .ci/run)."""
    import shutil
    import socket
    import subprocess
    import tempfile

    from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    opts = f"-h 127.0.0.1 -p {port} -k {root} -c timezone=UTC"
    subprocess.run(
        [
            *as_pg,
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "pg.log"),
            "-w",
            "-t",
            "60",
            "-o",
            opts,
            "start",
        ],
        check=True,
        capture_output=True,
        timeout=90,
    )

    @retry(
        retry=retry_if_exception_type(OSError),
        stop=stop_after_delay(30),
        wait=wait_fixed(0.2),
        reraise=True,
    )
    def accepting() -> None:  # bounded wait until the server accepts connections
        socket.create_connection(("127.0.0.1", port), timeout=1).close()

    try:
        accepting()
        yield f"postgresql+psycopg://govdx@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)
