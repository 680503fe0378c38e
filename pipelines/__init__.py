"""The ingest pipeline (数据归集): department files → versioned lakehouse tables.

Steps are plain functions on Arrow tables, wired into one Airflow DAG per contract by the DAG
factory (``pipelines/dags/govdx_ingest.py``)::

    land (SM3-named, encrypted raw copy) → parse (CSV GBK/UTF-8, XLSX, JSON) → cast to the
    contract's types → validate (quarantine bad rows with reasons) → protect (SM4 + HMAC-SM3
    tokens) → commit (new Delta version, atomic) → register (catalog + OpenLineage)

Errors (runtime, below ``govdx.GovdxRuntimeError``)::

    IngestError
    ├── SourceError            file unreadable as declared (names file, row, column)
    │   └── MissingColumnError a required column is absent (names it and lists those found)
    ├── QualityGateError       pass rate under the contract's min_pass_rate
    └── CommitError            the Delta write failed; the previous version stays current
"""

from pipelines._airflow import (
    DagRunResult,
    configure_airflow,
    dag_id_for,
    lineage_run_id,
    run_ingest_dag,
)
from pipelines._cast import CastResult, cast_table
from pipelines._errors import (
    CommitError,
    IngestError,
    MissingColumnError,
    QualityGateError,
    SourceError,
)
from pipelines._ingest import (
    IngestOutcome,
    ingest,
    new_run_id,
    task_commit,
    task_land,
    task_register,
    task_transform,
    transform,
)
from pipelines._lakehouse import CommitResult, Lakehouse
from pipelines._land import LandedFile, land, read_landed
from pipelines._parse import RawRead, detect_encoding, map_columns, read_source
from pipelines._progress import report, use_reporter
from pipelines._protect import QUARANTINE_SCHEMA, protect, protect_rejects
from pipelines._spark import spark_session, transform_spark
from pipelines._validate import ValidationResult, duplicate_key_rejects, quality_gate, validate

__all__ = [
    "QUARANTINE_SCHEMA",
    "CastResult",
    "CommitError",
    "CommitResult",
    "DagRunResult",
    "IngestError",
    "IngestOutcome",
    "Lakehouse",
    "LandedFile",
    "MissingColumnError",
    "QualityGateError",
    "RawRead",
    "SourceError",
    "ValidationResult",
    "build_ingest_dag",
    "cast_table",
    "configure_airflow",
    "dag_id_for",
    "detect_encoding",
    "duplicate_key_rejects",
    "ingest",
    "land",
    "lineage_run_id",
    "load_contract_dags",
    "map_columns",
    "new_run_id",
    "protect",
    "protect_rejects",
    "quality_gate",
    "read_landed",
    "read_source",
    "report",
    "run_ingest_dag",
    "spark_session",
    "task_commit",
    "task_land",
    "task_register",
    "task_transform",
    "transform",
    "transform_spark",
    "use_reporter",
    "validate",
]


def __getattr__(name: str):
    # The DAG factory imports Airflow, which reads its configuration at import: load it only
    # when asked for, after configure_airflow() (or inside an Airflow deployment).
    if name in ("build_ingest_dag", "load_contract_dags"):
        from pipelines import _dag_factory

        return getattr(_dag_factory, name)
    raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
