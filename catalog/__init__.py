"""govdx catalog: the 政务信息资源目录 DB (SQLAlchemy 2 + Alembic) and lineage (OpenLineage).

Typical use by the ingest pipeline, one transaction per run::

    import catalog

    catalog.migrate(settings.catalog_db_url)            # once per process
    factory = catalog.open_catalog(settings.catalog_db_url)
    with factory.begin() as session:                    # commit on success, roll back on error
        ds = catalog.upsert_dataset(session=session, contract=contract)
        catalog.add_version(session=session, dataset=ds, delta_version=3, row_count=1000,
                            quarantined_count=2, source_digest=digest, source_name="x.csv",
                            source_bytes=52_311, run_id=run_id)
        catalog.record_lineage(session=session, event=complete_event)

Other packages add tables on :class:`Base` (see ``catalog/_db.py``).
"""

from catalog._db import (
    MODEL_MODULES,
    Base,
    UTCDateTime,
    load_models,
    migrate,
    open_catalog,
    session_scope,
)
from catalog._errors import CatalogError, DatasetNotFound
from catalog._lineage import (
    FILE_NAMESPACE,
    JOB_NAMESPACE,
    LAKEHOUSE_NAMESPACE,
    LANDING_NAMESPACE,
    QUARANTINE_NAMESPACE,
    SANDBOX_NAMESPACE,
    LineageDataset,
    LineageEmitter,
    build_run_event,
    fail_event_from_exception,
    landing_dataset,
    new_run_id,
    table_dataset,
)
from catalog._models import (
    Dataset,
    DatasetField,
    DatasetVersion,
    Department,
    LineageEvent,
    LineageEventDataset,
)
from catalog._store import (
    LineageEdge,
    LineageGraph,
    add_version,
    current_version,
    dataset_summary,
    field_summary,
    get_dataset,
    lineage_event_summary,
    lineage_events,
    lineage_graph,
    list_datasets,
    list_versions,
    record_lineage,
    set_published,
    upsert_dataset,
    version_by_digest,
    version_summary,
)

__all__ = [
    "FILE_NAMESPACE",
    "JOB_NAMESPACE",
    "LAKEHOUSE_NAMESPACE",
    "LANDING_NAMESPACE",
    "MODEL_MODULES",
    "QUARANTINE_NAMESPACE",
    "SANDBOX_NAMESPACE",
    "Base",
    "CatalogError",
    "Dataset",
    "DatasetField",
    "DatasetNotFound",
    "DatasetVersion",
    "Department",
    "LineageDataset",
    "LineageEdge",
    "LineageEmitter",
    "LineageEvent",
    "LineageEventDataset",
    "LineageGraph",
    "UTCDateTime",
    "add_version",
    "build_run_event",
    "current_version",
    "dataset_summary",
    "fail_event_from_exception",
    "field_summary",
    "get_dataset",
    "landing_dataset",
    "lineage_event_summary",
    "lineage_events",
    "lineage_graph",
    "list_datasets",
    "list_versions",
    "load_models",
    "migrate",
    "new_run_id",
    "open_catalog",
    "record_lineage",
    "session_scope",
    "set_published",
    "table_dataset",
    "upsert_dataset",
    "version_by_digest",
    "version_summary",
]
