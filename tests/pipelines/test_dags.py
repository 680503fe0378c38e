"""The DAG factory through real Airflow: the DAG folder imports cleanly, and `govdx ingest`
runs a DAG with ``dag.test()``. Each test runs in a subprocess with its own GOVDX_HOME, since
Airflow reads its configuration once per process."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import catalog
from govdx import Settings
from govdx.demo import write_credit_demo

pytestmark = [pytest.mark.slow, pytest.mark.integration]
BIN = Path(sys.executable).parent


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOVDX_", "AIRFLOW"))}
    env["GOVDX_HOME"] = str(home)
    return env


def test_govdx_ingest_runs_the_dag_through_airflow(tmp_path):
    _, contracts = write_credit_demo(tmp_path / "work", rows=300, seed=5)
    home = tmp_path / "home"
    registry = next(c for c in contracts if c.name == "enterprise_registry.yaml")
    proc = subprocess.run(
        [BIN / "govdx", "ingest", str(registry), "--json"],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["state"] == "success" and out["version"] == 0 and out["dataset"] == "SCJG-0001"
    db = sqlite3.connect(home / "airflow" / "airflow.db")
    runs = db.execute("select dag_id, state from dag_run").fetchall()
    tasks = dict(db.execute("select task_id, state from task_instance").fetchall())
    assert runs == [("govdx_ingest__SCJG_0001", "success")]
    assert tasks == {
        "land": "success",
        "needs_work": "success",
        "transform": "success",
        "commit": "success",
        "register": "success",
    }

    # the registered contract makes the DAG folder load in any Airflow process, without errors
    code = (
        "from airflow.dag_processing.dagbag import DagBag;"
        "b = DagBag();"
        "import json; print(json.dumps({'errors': {k: str(v) for k, v in b.import_errors.items()},"
        " 'dags': sorted(b.dag_ids)}))"
    )
    env = _env(home) | {
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "airflow" / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    bag = subprocess.run(
        [BIN / "python", "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert bag.returncode == 0, bag.stderr[-3000:]
    loaded = json.loads(bag.stdout.strip().splitlines()[-1])
    assert loaded == {"errors": {}, "dags": ["govdx_ingest__SCJG_0001"]}

    # same bytes again through Airflow: short-circuited, no new version
    again = subprocess.run(
        [BIN / "govdx", "ingest", str(registry), "--json"],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["version"] == 0
    skipped = db.execute(
        "select task_id, state from task_instance where state='skipped'"
    ).fetchall()
    assert sorted(t for t, _ in skipped) == ["commit", "register", "transform"]


def test_failed_dag_run_exits_nonzero_with_the_reason(tmp_path):
    _, contracts = write_credit_demo(tmp_path / "work", rows=200, seed=5)
    tax = next(c for c in contracts if c.name == "tax_payment.yaml")
    text = tax.read_text(encoding="utf-8").replace("encoding: gbk", "encoding: utf-8")
    assert "encoding: utf-8" in text
    tax.write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [BIN / "govdx", "ingest", str(tax)],
        env=_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "tax_payment.csv" in proc.stderr and "GB18030" in proc.stderr


def test_demo_end_to_end_small(tmp_path):
    home = tmp_path / "home"
    proc = subprocess.run(
        [BIN / "govdx", "demo", "--rows", "300", "--json"],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert [i["state"] for i in out["ingests"]] == ["success"] * 8
    codes = {d["code"]: d for d in out["catalog"]}
    assert set(codes) == {
        "SCJG-0001",
        "SWJ-0001",
        "RSJ-0001",
        "MZB-PUB-0005",
        "MZB-PUB-0006",
        "TJJ-PUB-0001",
        "TJJ-PUB-0007",
        "TJJ-PUB-0008",
    }
    assert codes["MZB-PUB-0006"]["rows"] == 6823 and codes["TJJ-PUB-0008"]["rows"] == 41352
    assert codes["SCJG-0001"]["rows"] + codes["SCJG-0001"]["quarantined"] == 300
    assert all(d["upstream"] for d in out["catalog"])
    assert (home / "demo" / "data" / "bank_applicants.csv").exists()
    assert not (home / "lakehouse" / "bank_applicants").exists()
    psi = out["sandbox"]["psi"]
    assert psi["state"] == "succeeded" and 0 < psi["cardinality"] <= psi["applicants"]
    dp = out["sandbox"]["dp"]
    assert dp["epsilon"] == "1/2" and dp["districts"] > 0
    # the stewards published the credit entries and every open-data entry (CKAN lists them)
    with catalog.session_scope(Settings(home=home).catalog_db_url) as s:
        entries = catalog.list_datasets(session=s)
    published = {d.code for d in entries if d.published}
    open_codes = {d.code for d in entries if d.open_type != "none"}
    assert "TJJ-PUB-0001" in open_codes
    assert published == {"SCJG-0001", "SWJ-0001", "RSJ-0001"} | open_codes
