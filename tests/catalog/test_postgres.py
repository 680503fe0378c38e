"""The catalog on PostgreSQL: migrations and an ingest's registration, on a throwaway cluster.

A PostgreSQL 15 server (Debian package `postgresql`, installed by .ci/run) is started by the
fixture on 127.0.0.1 with a free port, as the `postgres` system user, and stopped afterwards.
"""

from __future__ import annotations

import pytest

import catalog
from govdx import Settings
from govdx.demo import write_credit_demo
from pipelines import ingest

pytestmark = [pytest.mark.slow, pytest.mark.integration]
# pg_url: the throwaway cluster fixture of tests/conftest.py


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
