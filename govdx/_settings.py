"""Settings of a govdx deployment and the layout of its home folder (GOVDX_HOME).

One :class:`Settings` object per process, built by the entry point (CLI, DAG task, API app) and
passed down as an argument; library code never reads the environment itself.

Home layout (embedded default, ``GOVDX_HOME``, default ``./var``)::

    catalog.db              SQLite catalog (or GOVDX_CATALOG_URL, e.g. postgresql+psycopg://...)
    airflow/                AIRFLOW_HOME with its SQLite metadata DB (migrated on first use)
    airflow/dags/           DAGS_FOLDER: the DAG factory module
    contracts/              contracts registered for scheduled DAGs
    landing/<code>/         raw files, immutable, named by SM3 digest (落地区)
    lakehouse/<name>/       one Delta table per dataset, versioned (数据湖)
    quarantine/<name>/      one Delta table of rejected rows per dataset (隔离区)
    staging/<run_id>/       protected (already encrypted) intermediates of one pipeline run
    keys/                   KEK file (0600) and wrapped DEKs (密钥)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Configuration read from ``GOVDX_*`` environment variables (and ``.env``).

    Attributes:
        home: GOVDX_HOME, the folder holding everything of the embedded default.
        catalog_url: SQLAlchemy URL of the catalog DB; default SQLite in the home.
        openlineage_url: optional OpenLineage HTTP endpoint (Marquez etc.) events are posted to.
        kek_hex: optional master key (KEK) as 32 hex chars, instead of the key file.
        env: ``development`` allows generated keys; ``production`` refuses defaults.
        engine: default pipeline engine, ``duckdb`` (embedded) or ``spark``.
        spark_master: Spark master URL for ``engine=spark``.
        batch_rows: rows per Arrow batch in the pipeline steps.
    """

    model_config = SettingsConfigDict(env_prefix="GOVDX_", env_file=".env", extra="ignore")

    home: Path = Field(default=Path("./var"))
    catalog_url: str | None = None
    openlineage_url: str | None = None
    kek_hex: str | None = Field(default=None, repr=False)
    env: Literal["development", "production"] = "development"
    engine: Literal["duckdb", "spark"] = "duckdb"
    spark_master: str = "local[2]"
    batch_rows: int = Field(default=262_144, gt=0)

    @model_validator(mode="after")
    def _absolute_home(self) -> Settings:
        self.home = self.home.expanduser().resolve()
        return self

    # --- layout -------------------------------------------------------------------------
    @property
    def catalog_db_url(self) -> str:
        """SQLAlchemy URL of the catalog DB (SQLite file in the home unless configured)."""
        return self.catalog_url or f"sqlite:///{self.home / 'catalog.db'}"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def dags_folder(self) -> Path:
        return self.airflow_home / "dags"

    @property
    def contracts_dir(self) -> Path:
        return self.home / "contracts"

    @property
    def landing_dir(self) -> Path:
        return self.home / "landing"

    @property
    def lakehouse_dir(self) -> Path:
        return self.home / "lakehouse"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine"

    @property
    def staging_dir(self) -> Path:
        return self.home / "staging"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def inbox_dir(self) -> Path:
        """``<home>/inbox``: one folder per department code (``inbox/<DEPT>/``) from which
        contracts uploaded through the API may read their source files (数据上传目录)."""
        return self.home / "inbox"

    def ensure_home(self) -> Path:
        """Create the home folders if missing. Returns the home path."""
        for d in (
            self.home,
            self.airflow_home,
            self.contracts_dir,
            self.landing_dir,
            self.lakehouse_dir,
            self.quarantine_dir,
            self.staging_dir,
            self.inbox_dir,
        ):
            d.mkdir(parents=True, exist_ok=True)
        self.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.home
