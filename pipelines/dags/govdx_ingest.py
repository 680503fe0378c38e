"""Airflow DAG file: one ingest DAG per contract registered in ``$GOVDX_HOME/contracts``.

Point Airflow's ``DAGS_FOLDER`` at this folder (or copy this file there); set ``GOVDX_HOME``
(and ``GOVDX_CATALOG_URL`` for PostgreSQL) in the scheduler's and workers' environment.
"""

import os
from pathlib import Path

from pipelines._dag_factory import load_contract_dags

_home = Path(os.environ.get("GOVDX_HOME", "./var"))
globals().update(load_contract_dags(_home / "contracts"))
