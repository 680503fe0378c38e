"""OpenLineage run events for govdx runs, and an emitter to an OpenLineage HTTP endpoint.

Events are built with openlineage-python's v2 classes (``openlineage.client.event_v2``,
``openlineage.client.facet_v2``; spec https://openlineage.io/spec/2-0-2/OpenLineage.json). Every
run emits ``START`` then one of ``COMPLETE`` / ``FAIL`` / ``ABORT`` with the same ``runId``
(a UUID; :func:`new_run_id` gives a time-ordered UUIDv7).

Dataset naming (namespace / name)::

    department file as given     file                      /abs/path/to/enterprise.csv
                                 (OpenLineage naming spec: local file system)
    raw file in the landing zone govdx-landing             <code>/<sm3 hex>.<ext>
    (落地区, immutable)                                     e.g. SCJG-0001/66c7f0f4...e0.csv
    lakehouse table (数据湖)      govdx-lakehouse           <table name>, e.g. enterprise_registry
    quarantine table (隔离区)     govdx-quarantine          <table name>
    sandbox result (沙箱结果)     govdx-sandbox             <job id>

Jobs live in namespace ``govdx``; ingest jobs are named ``ingest.<table name>``.
A catalog entry's lineage node is (``govdx-lakehouse``, its table name); see
:func:`table_dataset`.
"""

from __future__ import annotations

import logging
import platform
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from openlineage.client.event_v2 import (
    InputDataset,
    Job,
    OutputDataset,
    Run,
    RunEvent,
    RunState,
)
from openlineage.client.facet_v2 import (
    column_lineage_dataset,
    dataset_version_dataset,
    error_message_run,
    job_type_job,
    output_statistics_output_dataset,
    processing_engine_run,
    schema_dataset,
    sql_job,
)

from catalog._errors import CatalogError

log = logging.getLogger(__name__)

JOB_NAMESPACE = "govdx"
FILE_NAMESPACE = "file"
LANDING_NAMESPACE = "govdx-landing"
LAKEHOUSE_NAMESPACE = "govdx-lakehouse"
QUARANTINE_NAMESPACE = "govdx-quarantine"
SANDBOX_NAMESPACE = "govdx-sandbox"
PRODUCER = "https://github.com/govdx/govdx"

_EVENT_TYPES = {s.value for s in RunState}


@dataclass(frozen=True)
class LineageDataset:
    """A dataset as seen by one run: what :func:`build_run_event` turns into Input/OutputDataset.

    Attributes:
        namespace: OpenLineage namespace (see the module docstring).
        name: dataset name within the namespace.
        fields: schema as ``(name, type, description)`` triples, in column order; becomes the
            ``schema`` facet (``SchemaDatasetFacet``). Empty: no schema facet.
        column_lineage: for outputs, ``{output field: [(input namespace, input name,
            input field), ...]}``; becomes the ``columnLineage`` facet.
        version: dataset version (e.g. the Delta table version) for the ``version`` facet.
        row_count: rows written (outputs) → ``outputStatistics.rowCount``.
        size_bytes: bytes written (outputs) → ``outputStatistics.size``.
    """

    namespace: str
    name: str
    fields: list[tuple[str, str, str | None]] = field(default_factory=list)
    column_lineage: dict[str, list[tuple[str, str, str]]] | None = None
    version: str | None = None
    row_count: int | None = None
    size_bytes: int | None = None


def table_dataset(
    name: str,
    fields: list[tuple[str, str, str | None]] | None = None,
    **kwargs: Any,
) -> LineageDataset:
    """The lakehouse table ``name`` as a lineage dataset (namespace ``govdx-lakehouse``).

    Args:
        name: table name (``Contract.name``), the node of its catalog entry.
        fields: ``(name, type, description)`` triples of the table schema.
        **kwargs: other :class:`LineageDataset` attributes (``column_lineage``, ``version``,
            ``row_count``, ``size_bytes``).
    """
    return LineageDataset(LAKEHOUSE_NAMESPACE, name, list(fields or []), **kwargs)


def landing_dataset(code: str, file_name: str, **kwargs: Any) -> LineageDataset:
    """A raw file of the landing zone: namespace ``govdx-landing``, name ``<code>/<file_name>``.

    Args:
        code: the dataset's resource code (信息资源代码). file_name: the landed file's name,
            ``<sm3 hex>.<ext>``. **kwargs: other :class:`LineageDataset` attributes.
    """
    return LineageDataset(LANDING_NAMESPACE, f"{code}/{file_name}", **kwargs)


def new_run_id() -> str:
    """A new OpenLineage run id: a UUIDv7 string (time-ordered, RFC 9562)."""
    try:
        import uuid6

        return str(uuid6.uuid7())
    except ImportError:  # pragma: no cover - uuid6 ships with openlineage-python
        return str(uuid.uuid4())


def _schema_facet(ds: LineageDataset) -> schema_dataset.SchemaDatasetFacet:
    return schema_dataset.SchemaDatasetFacet(
        fields=[
            schema_dataset.SchemaDatasetFacetFields(
                name=n, type=t, description=d, ordinal_position=i, fields=None
            )
            for i, (n, t, d) in enumerate(ds.fields, start=1)
        ],
        producer=PRODUCER,
    )


def _column_lineage_facet(ds: LineageDataset) -> column_lineage_dataset.ColumnLineageDatasetFacet:
    assert ds.column_lineage is not None
    out_names = {n for n, _, _ in ds.fields}
    fields = {}
    for out_field, sources in ds.column_lineage.items():
        if out_names and out_field not in out_names:
            raise CatalogError(
                f"lineage: column_lineage of {ds.namespace}/{ds.name} names field "
                f"{out_field!r}, which is not in its schema"
            )
        fields[out_field] = column_lineage_dataset.Fields(
            inputFields=[
                column_lineage_dataset.InputField(
                    namespace=ns, name=nm, field=fl, transformations=None
                )
                for ns, nm, fl in sources
            ]
        )
    return column_lineage_dataset.ColumnLineageDatasetFacet(fields=fields, producer=PRODUCER)


def _dataset_facets(ds: LineageDataset, *, output: bool) -> dict[str, Any]:
    facets: dict[str, Any] = {}
    if ds.fields:
        facets["schema"] = _schema_facet(ds)
    if ds.version is not None:
        facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
            datasetVersion=str(ds.version), producer=PRODUCER
        )
    if ds.column_lineage:
        if not output:
            raise CatalogError(
                f"lineage: column_lineage belongs on outputs, not on input {ds.namespace}/{ds.name}"
            )
        facets["columnLineage"] = _column_lineage_facet(ds)
    return facets


def build_run_event(
    *,
    event_type: str,
    run_id: str,
    job_name: str,
    namespace: str = JOB_NAMESPACE,
    inputs: list[LineageDataset],
    outputs: list[LineageDataset],
    event_time: datetime | None = None,
    error_message: str | None = None,
    stack_trace: str | None = None,
    sql: str | None = None,
    engine: tuple[str, str] | None = None,
) -> RunEvent:
    """Build one OpenLineage run event (``openlineage.client.event_v2.RunEvent``).

    Facets: ``schema``, ``version`` and (outputs) ``columnLineage`` and ``outputStatistics`` on
    datasets; ``jobType`` (BATCH, integration ``GOVDX``) and, when given, ``sql`` on the job;
    ``processing_engine`` and, on FAIL, ``errorMessage`` on the run.

    Args:
        event_type: ``START`` | ``RUNNING`` | ``COMPLETE`` | ``FAIL`` | ``ABORT`` | ``OTHER``.
        run_id: the run's UUID (string), the same for all events of one run.
        job_name: e.g. ``ingest.enterprise_registry``.
        namespace: job namespace.
        inputs: datasets read. outputs: datasets written.
        event_time: tz-aware time of the transition; default now (UTC). Naive times refused.
        error_message: for FAIL (required then): a human-readable cause.
        stack_trace: for FAIL, optional Python traceback text.
        sql: the SQL the job ran, if any (``sql`` job facet).
        engine: ``(name, version)`` of the processing engine, e.g. ``("duckdb", "1.4.0")``.

    Returns:
        The ``RunEvent``; ``openlineage.client.serde.Serde.to_dict(event)`` gives its JSON form.

    Raises:
        CatalogError: unknown event type, run id not a UUID, naive event time, FAIL without an
            error message, or column lineage naming a field outside the output schema.

    Example:
        >>> ev = build_run_event(event_type="START", run_id="0190b4c8-9f2a-7c3e-8d1b-2f4a6c8e0a1b",
        ...     job_name="ingest.enterprise_registry", inputs=[], outputs=[],
        ...     event_time=datetime(2025, 1, 1, tzinfo=UTC))
        >>> ev.eventType.value, ev.eventTime
        ('START', '2025-01-01T00:00:00+00:00')
    """
    etype = event_type.upper()
    if etype not in _EVENT_TYPES:
        raise CatalogError(
            f"lineage: event_type {event_type!r} is not one of {sorted(_EVENT_TYPES)}"
        )
    try:
        uuid.UUID(run_id)
    except (ValueError, TypeError, AttributeError) as exc:
        raise CatalogError(f"lineage: run_id {run_id!r} is not a UUID (OpenLineage runId)") from exc
    when = event_time or datetime.now(UTC)
    if when.tzinfo is None:
        raise CatalogError(f"lineage: event_time {when.isoformat()} is naive; pass a tz-aware time")
    if etype == "FAIL" and not error_message:
        raise CatalogError("lineage: a FAIL event needs error_message")

    run_facets: dict[str, Any] = {}
    if engine is not None:
        run_facets["processing_engine"] = processing_engine_run.ProcessingEngineRunFacet(
            version=engine[1], name=engine[0], producer=PRODUCER
        )
    if error_message:
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=error_message,
            programmingLanguage=f"PYTHON {platform.python_version()}",
            stackTrace=stack_trace,
            producer=PRODUCER,
        )
    job_facets: dict[str, Any] = {
        "jobType": job_type_job.JobTypeJobFacet(
            processingType="BATCH", integration="GOVDX", jobType="JOB", producer=PRODUCER
        )
    }
    if sql:
        job_facets["sql"] = sql_job.SQLJobFacet(query=sql, dialect="duckdb", producer=PRODUCER)

    outs = []
    for ds in outputs:
        stats = {}
        if ds.row_count is not None or ds.size_bytes is not None:
            stats["outputStatistics"] = (
                output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                    rowCount=ds.row_count, size=ds.size_bytes, producer=PRODUCER
                )
            )
        outs.append(
            OutputDataset(
                namespace=ds.namespace,
                name=ds.name,
                facets=_dataset_facets(ds, output=True),
                outputFacets=stats,
            )
        )
    ins = [
        InputDataset(namespace=ds.namespace, name=ds.name, facets=_dataset_facets(ds, output=False))
        for ds in inputs
    ]
    return RunEvent(
        eventType=RunState(etype),
        eventTime=when.astimezone(UTC).isoformat(),
        run=Run(runId=str(run_id), facets=run_facets),
        job=Job(namespace=namespace, name=job_name, facets=job_facets),
        inputs=ins,
        outputs=outs,
        producer=PRODUCER,
    )


def fail_event_from_exception(
    exc: BaseException,
    *,
    run_id: str,
    job_name: str,
    inputs: list[LineageDataset],
    outputs: list[LineageDataset] | None = None,
    namespace: str = JOB_NAMESPACE,
) -> RunEvent:
    """A FAIL event whose ``errorMessage`` facet carries ``exc`` and its traceback."""
    return build_run_event(
        event_type="FAIL",
        run_id=run_id,
        job_name=job_name,
        namespace=namespace,
        inputs=inputs,
        outputs=outputs or [],
        error_message=f"{type(exc).__name__}: {exc}",
        stack_trace="".join(traceback.format_exception(exc)),
    )


class LineageEmitter:
    """Posts run events to an OpenLineage HTTP endpoint (Marquez, DataHub, ...); or does nothing.

    Uses openlineage-python's ``HttpTransport`` (POST ``<url>/api/v1/lineage``, JSON body).
    Posting is best effort: a failure (unreachable host, HTTP error, bad URL) is logged as a
    warning and :meth:`emit` returns False; it never raises, so lineage can never fail a run.
    The catalog DB keeps its own copy of every event (:func:`catalog.record_lineage`).

    Args:
        url: base URL of the endpoint, e.g. ``http://marquez:5000`` (``Settings.openlineage_url``);
            ``None``: a no-op emitter.
        endpoint: path below ``url``.
        timeout: seconds per HTTP request.
        retries: retries on connection errors and HTTP 5xx (urllib3 ``Retry.total``).
        transport: an ``openlineage.client.transport.Transport`` to use instead of HTTP (tests,
            Kafka, console); ``url`` is then ignored.

    Example:
        >>> LineageEmitter(None).emit(build_run_event(event_type="START",
        ...     run_id=new_run_id(), job_name="ingest.x", inputs=[], outputs=[]))
        False
    """

    def __init__(
        self,
        url: str | None,
        *,
        endpoint: str = "api/v1/lineage",
        timeout: float = 5.0,
        retries: int = 2,
        transport: Any | None = None,
    ) -> None:
        self.url = url
        self._transport = transport
        if transport is None and url:
            from openlineage.client.transport.http import HttpConfig, HttpTransport

            try:
                config = HttpConfig.from_dict(
                    {
                        "url": url,
                        "endpoint": endpoint,
                        "timeout": timeout,
                        "retry": {"total": retries, "read": retries, "connect": retries},
                    }
                )
                self._transport = HttpTransport(config)
            except (ValueError, RuntimeError) as exc:
                log.warning(
                    "OpenLineage endpoint %r is not usable, lineage not posted: %s", url, exc
                )
                self._transport = None

    @property
    def enabled(self) -> bool:
        """True when events are sent somewhere."""
        return self._transport is not None

    def emit(self, event: RunEvent) -> bool:
        """Send one event. Returns True when the transport accepted it, False otherwise."""
        if self._transport is None:
            return False
        try:
            self._transport.emit(event)
        except Exception as exc:  # never fail a run over lineage
            log.warning(
                "OpenLineage event %s of run %s not posted to %s: %s",
                getattr(event.eventType, "value", event.eventType),
                event.run.runId,
                self.url or type(self._transport).__name__,
                exc,
            )
            return False
        return True

    def close(self) -> None:
        """Release the HTTP session."""
        if self._transport is not None:
            try:
                self._transport.close()
            except Exception as exc:  # pragma: no cover - closing must not fail a run either
                log.warning("OpenLineage transport close failed: %s", exc)

    def __enter__(self) -> LineageEmitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
