"""DAG factory (DAG 工厂): one Airflow DAG per dataset contract.

The DAG only wires the package's task functions (``pipelines._ingest``): no I/O at parse time
beyond reading the contract, heavy imports inside tasks, explicit schedule from the contract's
``update_cycle``, fixed tz-aware ``start_date``, ``catchup=False``, one active run at a time.
Tasks::

    land ──► needs_work (short-circuit: same bytes already committed → skip the rest)
         ──► transform (parse, cast, validate, quarantine, protect, stage)
         ──► commit (new Delta version, atomic) ──► register (catalog + lineage COMPLETE)

Any failing task records the run's OpenLineage FAIL event before Airflow marks it failed. The
lineage run id is derived from the Airflow run (UUID5 of dag id and run id), so retries of a
task stay in the same lineage run.

Source: Airflow 3 TaskFlow API, ``airflow.sdk`` (``tutorial_taskflow_api.py`` and the
best-practices guide).
"""

from __future__ import annotations

import functools
from pathlib import Path

from airflow.sdk import DAG, Param, dag, task

from pipelines._airflow import SCHEDULES, START_DATE, dag_id_for, lineage_run_id


def _guarded(fn):
    """Record the lineage FAIL event when a task body raises, then re-raise for Airflow."""

    @functools.wraps(fn)
    def wrapper(contract_path: str, *args, **kwargs):
        from govdx import Settings
        from pipelines._ingest import record_failure

        settings = Settings()
        run_id = kwargs["run_id"]
        try:
            return fn(contract_path, *args, settings=settings, **kwargs)
        except Exception as exc:
            record_failure(settings, contract_path, run_id, exc)
            raise

    return wrapper


def build_ingest_dag(contract_path: str | Path, *, scheduled: bool = True) -> DAG:
    """Build the ingest DAG of one contract file.

    Args:
        contract_path: the contract YAML; read once here for the DAG id, schedule and tags.
        scheduled: False for a one-off run's contract (no schedule, manual runs only).

    Returns:
        The Airflow ``DAG`` (``dag.test()`` runs it in-process).

    Raises:
        govdx.ContractError: the contract is invalid (named key).
    """
    from govdx import load_contract

    contract_path = str(Path(contract_path).resolve())
    contract = load_contract(contract_path)
    did = dag_id_for(contract.code)

    @dag(
        dag_id=did,
        schedule=SCHEDULES[contract.update_cycle] if scheduled else None,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["govdx", "ingest", contract.department.code],
        doc_md=f"Ingest **{contract.title}** ({contract.code}) of {contract.department.name} "
        f"into the lakehouse table `{contract.name}`. Contract: `{contract_path}`.",
        default_args={"retries": 0},
        params={
            "engine": Param(
                None,
                type=["null", "string"],
                enum=[None, "duckdb", "spark"],
                description="transform engine; default GOVDX_ENGINE (duckdb)",
            )
        },
    )
    def ingest_dag():
        @task
        def land(**context) -> dict:
            from pipelines._ingest import task_land

            run_id = lineage_run_id(did, context["run_id"])
            return _guarded(task_land)(contract_path, run_id=run_id)

        @task.short_circuit
        def needs_work(landed: dict) -> bool:
            if not landed["already_committed"]:
                return True
            from govdx import Settings
            from pipelines._ingest import emit_lineage

            lf = landed["landed"]
            emit_lineage(
                Settings(),
                contract,
                event_type="COMPLETE",
                run_id=landed["run_id"],
                source_name=lf["source_name"],
                digest=lf["digest"],
            )
            return False

        @task
        def transform(landed: dict, **context) -> dict:
            from pipelines._ingest import task_transform

            return _guarded(task_transform)(
                contract_path,
                landed["landed"],
                run_id=landed["run_id"],
                engine=context["params"].get("engine"),
            )

        @task
        def commit(landed: dict, staged: dict) -> dict:
            from pipelines._ingest import task_commit

            return _guarded(task_commit)(
                contract_path, landed["landed"], staged, run_id=landed["run_id"]
            )

        @task
        def register(landed: dict, staged: dict, committed: dict) -> dict:
            from pipelines._ingest import task_register

            return _guarded(task_register)(
                contract_path, landed["landed"], staged, committed, run_id=landed["run_id"]
            )

        landed = land()
        gate = needs_work(landed)
        staged = transform(landed)
        gate >> staged
        committed = commit(landed, staged)
        register(landed, staged, committed)

    return ingest_dag()


def load_contract_dags(contracts_dir: str | Path) -> dict[str, DAG]:
    """One DAG per ``*.yaml`` contract in ``contracts_dir`` (the home's contract registry).

    Contracts of runs in flight (``contracts_dir/runs/``, written by ``govdx ingest`` before a
    contract is registered) also get an unscheduled DAG when their code has none yet, so that
    Airflow knows the DAG id of a first ingest.

    Raises:
        govdx.ContractError: a registered contract is invalid; Airflow shows it as the DAG
            file's import error, naming the contract file and key.
    """
    dags: dict[str, DAG] = {}
    for path in sorted(Path(contracts_dir).glob("*.yaml")):
        d = build_ingest_dag(path)
        dags[d.dag_id] = d
    for path in sorted(Path(contracts_dir).glob("runs/*.yaml")):
        d = build_ingest_dag(path, scheduled=False)
        dags.setdefault(d.dag_id, d)
    return dags
