"""Run an ingest DAG through Airflow in this process (``dag.test()``), embedded default.

Airflow reads its configuration when first imported, so :func:`configure_airflow` sets
``AIRFLOW_HOME`` (inside ``GOVDX_HOME``), the DAGS_FOLDER, a SQLite metadata DB and quiet logging
before anything imports ``airflow``; the metadata DB is migrated on first use (``airflow db
migrate``). In a real deployment none of this runs: the scheduler loads
``pipelines/dags/govdx_ingest.py`` from its DAGS_FOLDER.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pendulum

from govdx import Settings
from govdx._locks import home_lock
from pipelines._errors import IngestError

_MIGRATED_MARKER = ".govdx-migrated"
DAG_PREFIX = "govdx_ingest__"
START_DATE = pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai")
SCHEDULES = {
    "realtime": "@hourly",
    "daily": "@daily",
    "weekly": "@weekly",
    "monthly": "@monthly",
    "quarterly": "@quarterly",
    "yearly": "@yearly",
    "irregular": None,
}


def dag_id_for(code: str) -> str:
    """Airflow DAG id of a contract code: ``govdx_ingest__<code>`` with safe characters."""
    return DAG_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", code)


def lineage_run_id(dag_id: str, airflow_run_id: str) -> str:
    """Deterministic OpenLineage run id (UUID5) of one Airflow DAG run."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"govdx://airflow/{dag_id}/{airflow_run_id}"))


def configure_airflow(settings: Settings) -> Path:
    """Point Airflow at the home (env vars) and migrate its metadata DB once.

    Returns:
        The AIRFLOW_HOME path.

    Raises:
        IngestError: ``airflow db migrate`` failed (its output is in the message).
    """
    home = settings.airflow_home
    home.mkdir(parents=True, exist_ok=True)
    settings.dags_folder.mkdir(parents=True, exist_ok=True)
    dag_file = Path(__file__).parent / "dags" / "govdx_ingest.py"
    target = settings.dags_folder / "govdx_ingest.py"
    if not target.exists() or target.read_bytes() != dag_file.read_bytes():
        shutil.copyfile(dag_file, target)
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("GOVDX_AIRFLOW_LOG_LEVEL", "CRITICAL"),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "GOVDX_HOME": str(settings.home),
    }
    os.environ.update(env)
    if "airflow" in sys.modules and os.environ.get("_GOVDX_AIRFLOW_HOME") not in (None, str(home)):
        raise IngestError(
            "Airflow was already imported for another GOVDX_HOME in this process; "
            "run one home per process"
        )
    os.environ["_GOVDX_AIRFLOW_HOME"] = str(home)
    marker = home / _MIGRATED_MARKER
    with home_lock(settings.home, "airflow-migrate"):
        _migrate_once(marker)
    return home


def _migrate_once(marker: Path) -> None:
    if not marker.exists():
        airflow_bin = Path(sys.executable).parent / "airflow"
        proc = subprocess.run(
            [str(airflow_bin), "db", "migrate"],
            capture_output=True,
            text=True,
            env=os.environ.copy(),
        )
        if proc.returncode != 0:
            raise IngestError(
                f"airflow db migrate failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
            )
        marker.write_text("ok\n")


@dataclass
class DagRunResult:
    """Outcome of one ``dag.test()`` run: Airflow ``state`` and per-task states."""

    dag_id: str
    run_id: str
    state: str
    task_states: dict[str, str]
    lineage_run_id: str

    @property
    def ok(self) -> bool:
        return self.state == "success"


def run_ingest_dag(contract_path: str | Path, *, settings: Settings) -> DagRunResult:
    """Build the contract's DAG and run it once in-process through Airflow.

    Returns:
        A :class:`DagRunResult`; a failed run does not raise here (its reason is in the
        catalog's FAIL lineage event).
    """
    configure_airflow(settings)
    from pipelines._dag_factory import build_ingest_dag, lineage_run_id

    d = build_ingest_dag(contract_path)
    dr = d.test()
    states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
    return DagRunResult(
        d.dag_id, dr.run_id, str(dr.state), states, lineage_run_id(d.dag_id, dr.run_id)
    )
