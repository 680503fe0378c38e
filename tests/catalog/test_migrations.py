"""Alembic migrations: the migrated schema is Base.metadata, migrate is idempotent, down/up works."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from catalog_testdata import RUN_1, SM3_ABC, make_contract
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, inspect, select

import catalog
from catalog._db import MIGRATIONS_DIR

CATALOG_TABLES = {
    "departments",
    "datasets",
    "dataset_fields",
    "dataset_versions",
    "lineage_events",
    "lineage_event_datasets",
}


def _diff(url: str, metadata: MetaData) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(ctx, metadata)
    finally:
        engine.dispose()


def _revision(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()


def _heads() -> set[str]:
    """Every branch head: catalog (0001) is the root; quality and sandbox branch from it."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return set(ScriptDirectory.from_config(cfg).get_heads())


def test_migrated_schema_equals_metadata(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    catalog.migrate(url)
    assert _diff(url, catalog.load_models()) == []
    engine = create_engine(url)
    names = set(inspect(engine).get_table_names())
    engine.dispose()
    assert names >= CATALOG_TABLES
    other_tables = {t for m in catalog.load_models().tables.values() for t in [m.name]}
    assert names - CATALOG_TABLES == {"alembic_version"} | (other_tables - CATALOG_TABLES)
    assert _revision(url) == _heads() and "0002_quality" in _heads()


def test_compare_detects_a_missing_migration(tmp_path):
    """The schema check above can fail: a table on the metadata but in no revision shows up."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    catalog.migrate(url)
    md = MetaData()
    for t in catalog.Base.metadata.tables.values():
        t.to_metadata(md)
    Table("not_migrated", md, Column("id", Integer, primary_key=True))
    diff = _diff(url, md)
    assert [(d[0], d[1].name) for d in diff] == [("add_table", "not_migrated")]


def test_migrate_twice_is_a_no_op(tmp_path, contract):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    catalog.migrate(url)
    factory = catalog.open_catalog(url)
    with factory.begin() as s:
        ds = catalog.upsert_dataset(session=s, contract=contract)
        catalog.add_version(
            session=s,
            dataset=ds,
            delta_version=0,
            row_count=10,
            quarantined_count=0,
            source_digest=SM3_ABC,
            source_name="a.csv",
            source_bytes=3,
            run_id=RUN_1,
        )
    catalog.migrate(url)
    assert _revision(url) == _heads()
    assert _diff(url, catalog.load_models()) == []
    with factory() as s:
        assert catalog.current_version(session=s, code="SCJG-0001").row_count == 10
    factory.kw["bind"].dispose()


def test_downgrade_to_base_and_up_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    catalog.migrate(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    engine.dispose()
    catalog.migrate(url)
    assert _diff(url, catalog.load_models()) == []


def test_migrate_an_in_memory_engine():
    factory = catalog.open_catalog("sqlite://")
    engine = factory.kw["bind"]
    catalog.migrate(engine)
    with factory() as s:
        catalog.upsert_dataset(session=s, contract=make_contract())
        s.commit()
        assert s.scalars(select(catalog.Dataset.code)).all() == ["SCJG-0001"]
        # foreign keys are back on after migrating a shared engine
        assert s.connection().exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_migrate_reports_unusable_url(tmp_path):

    missing = tmp_path / "no" / "such" / "dir" / "c.db"
    with pytest.raises(catalog.CatalogError, match=r"catalog migration of sqlite:///.*failed"):
        catalog.migrate(f"sqlite:///{missing}")
