"""Data functions over the catalog DB: register entries and versions, query, record lineage.

Every function takes a keyword-only ``session`` (``sqlalchemy.orm.Session``) so it works the
same under FastAPI, an Airflow task or a script, and none of them commits: the caller owns the
transaction, so "commit Delta version → register version → record lineage" is one atomic
catalog write. Functions that must produce ids call ``session.flush()``.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from catalog._db import utcnow
from catalog._errors import CatalogError, DatasetNotFound
from catalog._lineage import LAKEHOUSE_NAMESPACE
from catalog._models import (
    Dataset,
    DatasetField,
    DatasetVersion,
    Department,
    LineageEvent,
    LineageEventDataset,
)
from govdx._contract import GRADE_ZH, OPEN_TYPE_ZH, SHARE_TYPE_ZH, Contract

_SM3_HEX = re.compile(r"^[0-9a-f]{64}$")
_EVENT_TYPES = {"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"}


# --- entries ----------------------------------------------------------------------------------
def upsert_dataset(
    *, session: Session, contract: Contract, contract_yaml: str | None = None
) -> Dataset:
    """Create or update the catalog entry of a contract (and its department and fields).

    The department row is created or renamed; the entry's 目录 fields are set from the
    contract; its field list is replaced by the contract's (positions 1..n). ``published`` and
    ``current_version`` are left as they are. Flushes (the entry gets its id), never commits.

    Args:
        session: an open session; the caller commits.
        contract: the validated :class:`govdx.Contract`.
        contract_yaml: the contract text as registered; default: the contract dumped as YAML.

    Returns:
        The :class:`Dataset` (persistent, flushed).

    Raises:
        CatalogError: another entry already uses the contract's table name (``name``).
    """
    other = session.scalar(
        select(Dataset).where(Dataset.name == contract.name, Dataset.code != contract.code)
    )
    if other is not None:
        raise CatalogError(
            f"contract {contract.code!r}: table name {contract.name!r} is already used by "
            f"catalog entry {other.code!r} (表名重复)"
        )
    dept = session.get(Department, contract.department.code)
    if dept is None:
        dept = Department(code=contract.department.code, name=contract.department.name)
        session.add(dept)
    elif dept.name != contract.department.name:
        dept.name = contract.department.name

    if contract_yaml is None:
        contract_yaml = yaml.safe_dump(
            contract.model_dump(mode="json", exclude_none=True),
            allow_unicode=True,
            sort_keys=False,
        )
    ds = session.scalar(
        select(Dataset).where(Dataset.code == contract.code).options(selectinload(Dataset.fields))
    )
    values = {
        "name": contract.name,
        "title": contract.title,
        "summary": contract.summary,
        "department_code": dept.code,
        "format": contract.source.format,
        "share_type": contract.share.type.value,
        "share_conditions": contract.share.conditions,
        "open_type": contract.open.type.value,
        "open_conditions": contract.open.conditions,
        "update_cycle": contract.update_cycle,
        "grade": contract.grade.value,
        "contract_yaml": contract_yaml,
    }
    if ds is None:
        ds = Dataset(code=contract.code, published=False, **values)
        ds.department = dept
        session.add(ds)
    else:
        for key, value in values.items():
            setattr(ds, key, value)
        ds.department = dept
        ds.updated_at = utcnow()
        if ds.fields:
            ds.fields.clear()
            session.flush()  # delete old rows before inserting rows with the same names
    ds.fields.extend(
        DatasetField(
            position=i,
            name=f.name,
            title=f.title,
            type=f.type.value,
            required=f.required,
            element=f.element,
            grade=f.grade.value,
            pi=f.pi.value,
            protected=f.protected,
            unit=f.unit,
            description=f.description,
        )
        for i, f in enumerate(contract.fields, start=1)
    )
    _flush(session, f"register contract {contract.code!r}")
    return ds


def get_dataset(*, session: Session, code: str) -> Dataset:
    """The catalog entry with resource code ``code``.

    Raises:
        DatasetNotFound: no entry has this code (the message names it).
    """
    ds = session.scalar(select(Dataset).where(Dataset.code == code))
    if ds is None:
        raise DatasetNotFound(code)
    return ds


def list_datasets(*, session: Session, department: str | None = None) -> list[Dataset]:
    """All catalog entries ordered by code, or those of one department code."""
    stmt = select(Dataset).order_by(Dataset.code)
    if department is not None:
        stmt = stmt.where(Dataset.department_code == department)
    return list(session.scalars(stmt))


def set_published(*, session: Session, code: str, published: bool) -> Dataset:
    """Publish (发布) or withdraw a catalog entry.

    ``published_at`` (发布日期) is set on the transition to published and cleared on
    withdrawal; publishing an already published entry keeps its date.

    Raises:
        DatasetNotFound: no entry has this code.
    """
    ds = get_dataset(session=session, code=code)
    if published and not ds.published:
        ds.published_at = utcnow()
    elif not published:
        ds.published_at = None
    ds.published = published
    ds.updated_at = utcnow()
    _flush(session, f"publish {code!r}")
    return ds


# --- versions ---------------------------------------------------------------------------------
def add_version(
    *,
    session: Session,
    dataset: Dataset,
    delta_version: int,
    row_count: int,
    quarantined_count: int,
    source_digest: str,
    source_name: str,
    source_bytes: int,
    run_id: str,
    engine: str = "duckdb",
    make_current: bool = True,
) -> DatasetVersion:
    """Register a committed Delta table version of ``dataset``.

    Args:
        session: an open session; the caller commits.
        dataset: the entry (from :func:`upsert_dataset` or :func:`get_dataset`).
        delta_version: the Delta Lake table version just committed (≥ 0).
        row_count: rows in the committed version (≥ 0). quarantined_count: rows quarantined.
        source_digest: SM3 digest of the raw file, 64 lowercase hex chars (GB/T 32905-2016).
        source_name: original file name. source_bytes: raw file size in bytes.
        run_id: the OpenLineage run id (UUID) of the ingest run.
        engine: ``duckdb`` | ``spark``.
        make_current: point ``dataset.current_version`` at the new version (what readers see).

    Returns:
        The flushed :class:`DatasetVersion`.

    Raises:
        CatalogError: the version is already registered for this dataset, a count is negative,
            the digest is not SM3 hex, or the run id is not a UUID.
    """
    where = f"dataset {dataset.code!r} version {delta_version}"
    if not _SM3_HEX.match(source_digest):
        raise CatalogError(
            f"{where}: source_digest {source_digest!r} is not 64 lowercase hex (SM3)"
        )
    for label, n in (
        ("delta_version", delta_version),
        ("row_count", row_count),
        ("quarantined_count", quarantined_count),
        ("source_bytes", source_bytes),
    ):
        if n < 0:
            raise CatalogError(f"{where}: {label} must be ≥ 0, got {n}")
    try:
        uuid.UUID(run_id)
    except (ValueError, TypeError, AttributeError) as exc:
        raise CatalogError(f"{where}: run_id {run_id!r} is not a UUID (OpenLineage runId)") from exc
    exists = session.scalar(
        select(DatasetVersion.id).where(
            DatasetVersion.dataset_id == dataset.id, DatasetVersion.delta_version == delta_version
        )
    )
    if exists is not None:
        raise CatalogError(f"{where} is already registered (版本已登记)")
    v = DatasetVersion(
        dataset=dataset,
        delta_version=delta_version,
        row_count=row_count,
        quarantined_count=quarantined_count,
        source_digest=source_digest,
        source_name=source_name,
        source_bytes=source_bytes,
        run_id=run_id,
        engine=engine,
    )
    session.add(v)
    if make_current:
        dataset.current_version = v
    dataset.updated_at = utcnow()
    _flush(session, where)
    return v


def current_version(*, session: Session, code: str) -> DatasetVersion | None:
    """The version readers see (``datasets.current_version_id``), or None before a first commit.

    Raises:
        DatasetNotFound: no entry has this code.
    """
    return get_dataset(session=session, code=code).current_version


def version_by_digest(*, session: Session, code: str, source_digest: str) -> DatasetVersion | None:
    """The newest version of ``code`` loaded from a raw file with this SM3 digest, or None.

    Lets the ingest skip a file it has already committed (idempotent re-runs).

    Raises:
        DatasetNotFound: no entry has this code.
    """
    ds = get_dataset(session=session, code=code)
    return session.scalar(
        select(DatasetVersion)
        .where(DatasetVersion.dataset_id == ds.id, DatasetVersion.source_digest == source_digest)
        .order_by(DatasetVersion.delta_version.desc())
        .limit(1)
    )


def list_versions(*, session: Session, code: str) -> list[DatasetVersion]:
    """All registered versions of ``code``, oldest first (ascending ``delta_version``).

    Raises:
        DatasetNotFound: no entry has this code.
    """
    ds = get_dataset(session=session, code=code)
    return list(
        session.scalars(
            select(DatasetVersion)
            .where(DatasetVersion.dataset_id == ds.id)
            .order_by(DatasetVersion.delta_version)
        )
    )


# --- lineage ----------------------------------------------------------------------------------
def _event_dict(event: Any) -> dict[str, Any]:
    if isinstance(event, dict):
        return event
    from openlineage.client.serde import Serde

    try:
        return Serde.to_dict(event)
    except Exception as exc:
        raise CatalogError(f"lineage: cannot serialise {type(event).__name__}: {exc}") from exc


def _require(d: dict[str, Any], dotted: str) -> Any:
    cur: Any = d
    for part in dotted.split("."):
        if not isinstance(cur, dict) or cur.get(part) in (None, ""):
            raise CatalogError(f"lineage event: required key {dotted!r} is missing")
        cur = cur[part]
    return cur


def _parse_time(value: str) -> datetime:
    try:
        t = datetime.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"lineage event: eventTime {value!r} is not ISO 8601") from exc
    if t.tzinfo is None:
        raise CatalogError(f"lineage event: eventTime {value!r} has no time zone")
    return t.astimezone(UTC)


def record_lineage(*, session: Session, event: Any) -> LineageEvent:
    """Store an OpenLineage run event in the catalog DB.

    Args:
        session: an open session; the caller commits.
        event: an ``openlineage.client.event_v2.RunEvent`` or its JSON dict (as posted to an
            OpenLineage endpoint).

    Returns:
        The flushed :class:`LineageEvent`, with its inputs/outputs indexed.

    Raises:
        CatalogError: a required key (``eventType``, ``eventTime``, ``run.runId``,
            ``job.namespace``, ``job.name``) is missing or malformed (the key is named).
    """
    d = _event_dict(event)
    etype = str(_require(d, "eventType")).upper()
    run_id = str(_require(d, "run.runId"))
    try:
        uuid.UUID(run_id)
    except ValueError as exc:
        raise CatalogError(f"lineage event: run.runId {run_id!r} is not a UUID") from exc
    when = _parse_time(_require(d, "eventTime"))
    if etype not in _EVENT_TYPES:
        raise CatalogError(
            f"lineage event: eventType {etype!r} is not one of {sorted(_EVENT_TYPES)}"
        )
    refs: dict[str, list[tuple[str, str]]] = {}
    for direction, key in (("input", "inputs"), ("output", "outputs")):
        refs[direction] = []
        for i, ds in enumerate(d.get(key) or []):
            if not isinstance(ds, dict):
                raise CatalogError(f"lineage event: {key}.{i} is not an object")
            refs[direction].append((str(_require(ds, "namespace")), str(_require(ds, "name"))))
    row = LineageEvent(
        run_id=run_id,
        event_type=etype,
        job_namespace=str(_require(d, "job.namespace")),
        job_name=str(_require(d, "job.name")),
        event_time=when,
        payload=json.dumps(d, ensure_ascii=False, sort_keys=True),
        inputs=json.dumps([f"{ns}/{nm}" for ns, nm in refs["input"]], ensure_ascii=False),
        outputs=json.dumps([f"{ns}/{nm}" for ns, nm in refs["output"]], ensure_ascii=False),
    )
    row.datasets = [
        LineageEventDataset(direction=direction, namespace=ns, name=nm)
        for direction, pairs in refs.items()
        for ns, nm in pairs
    ]
    session.add(row)
    _flush(session, f"lineage event {etype} of run {run_id}")
    return row


def lineage_events(
    *, session: Session, run_id: str | None = None, dataset: str | None = None
) -> list[LineageEvent]:
    """Stored lineage events, oldest first, filtered by run id and/or catalog entry.

    Args:
        session: an open session.
        run_id: only events of this run.
        dataset: a catalog code; only events reading or writing its lakehouse table.

    Raises:
        DatasetNotFound: ``dataset`` is given and no entry has that code.
    """
    stmt = select(LineageEvent).order_by(LineageEvent.event_time, LineageEvent.id)
    if run_id is not None:
        stmt = stmt.where(LineageEvent.run_id == run_id)
    if dataset is not None:
        ds = get_dataset(session=session, code=dataset)
        stmt = stmt.where(
            LineageEvent.id.in_(
                select(LineageEventDataset.event_id).where(
                    LineageEventDataset.namespace == LAKEHOUSE_NAMESPACE,
                    LineageEventDataset.name == ds.name,
                )
            )
        )
    return list(session.scalars(stmt))


@dataclass(frozen=True)
class LineageEdge:
    """One hop of lineage seen from a catalog entry.

    Attributes:
        namespace, name: the dataset at the other end; both None for a downstream job that
            wrote no dataset (e.g. a sandbox job whose result was released).
        code: the catalog code when that dataset is a registered lakehouse table, else None.
        job_namespace, job_name, run_id: the run linking the two.
        event_time: time of the run's COMPLETE event (UTC).
    """

    namespace: str | None
    name: str | None
    code: str | None
    job_namespace: str
    job_name: str
    run_id: str
    event_time: datetime

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["event_time"] = self.event_time.isoformat()
        return d


@dataclass(frozen=True)
class LineageGraph:
    """Upstream and downstream neighbours of one catalog entry (one hop, from COMPLETE events).

    Attributes:
        code: the entry. namespace, name: its lineage node (``govdx-lakehouse``, table name).
        upstream: raw files / datasets read by the runs that wrote this table.
        downstream: datasets (or jobs without outputs) of runs that read this table.
    """

    code: str
    namespace: str
    name: str
    upstream: list[LineageEdge] = field(default_factory=list)
    downstream: list[LineageEdge] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (ISO 8601 times)."""
        return {
            "code": self.code,
            "namespace": self.namespace,
            "name": self.name,
            "upstream": [e.to_dict() for e in self.upstream],
            "downstream": [e.to_dict() for e in self.downstream],
        }


def lineage_graph(*, session: Session, code: str) -> LineageGraph:
    """Upstream and downstream of a catalog entry, from the stored COMPLETE events.

    Upstream: for every completed run that output this entry's table, the run's inputs (raw
    files in ``govdx-landing``, other tables). Downstream: for every completed run that read
    the table, the run's outputs, or the job alone when it wrote nothing. Self-edges (a run
    that reads and writes the same table) are left out. Edges are ordered by time.

    Raises:
        DatasetNotFound: no entry has this code.
    """
    ds = get_dataset(session=session, code=code)
    ns, nm = LAKEHOUSE_NAMESPACE, ds.name
    graph = LineageGraph(code=ds.code, namespace=ns, name=nm)

    def complete_events(direction: str) -> list[LineageEvent]:
        return list(
            session.scalars(
                select(LineageEvent)
                .where(
                    LineageEvent.event_type == "COMPLETE",
                    LineageEvent.id.in_(
                        select(LineageEventDataset.event_id).where(
                            LineageEventDataset.direction == direction,
                            LineageEventDataset.namespace == ns,
                            LineageEventDataset.name == nm,
                        )
                    ),
                )
                .options(selectinload(LineageEvent.datasets))
                .order_by(LineageEvent.event_time, LineageEvent.id)
            )
        )

    codes_by_name: dict[str, str] = dict(
        session.execute(select(Dataset.name, Dataset.code)).tuples().all()
    )

    def edge(ev: LineageEvent, other_ns: str | None, other_nm: str | None) -> LineageEdge:
        code_ = (
            codes_by_name.get(other_nm) if other_ns == LAKEHOUSE_NAMESPACE and other_nm else None
        )
        return LineageEdge(
            namespace=other_ns,
            name=other_nm,
            code=code_,
            job_namespace=ev.job_namespace,
            job_name=ev.job_name,
            run_id=ev.run_id,
            event_time=ev.event_time,
        )

    for ev in complete_events("output"):
        for ref in ev.datasets:
            if ref.direction == "input" and (ref.namespace, ref.name) != (ns, nm):
                graph.upstream.append(edge(ev, ref.namespace, ref.name))
    for ev in complete_events("input"):
        outs = [
            r for r in ev.datasets if r.direction == "output" and (r.namespace, r.name) != (ns, nm)
        ]
        if not outs and not any(r.direction == "output" for r in ev.datasets):
            graph.downstream.append(edge(ev, None, None))
        for ref in outs:
            graph.downstream.append(edge(ev, ref.namespace, ref.name))
    return graph


# --- JSON views ---------------------------------------------------------------------------------
def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def field_summary(f: DatasetField) -> dict[str, Any]:
    """JSON-ready dict of one field (grade and PI class with Chinese labels)."""
    return {
        "position": f.position,
        "name": f.name,
        "title": f.title,
        "type": f.type,
        "required": f.required,
        "element": f.element,
        "grade": f.grade,
        "grade_zh": GRADE_ZH.get(f.grade),
        "pi": f.pi,
        "sensitive": f.pi == "sensitive",
        "protected": f.protected,
        "unit": f.unit,
        "description": f.description,
    }


def dataset_summary(dataset: Dataset) -> dict[str, Any]:
    """JSON-ready dict of a catalog entry (CLI ``--json``, API responses).

    Keys: ``code``, ``name``, ``title``, ``summary``, ``department`` {code, name}, ``format``,
    ``share`` {type, type_zh, conditions}, ``open`` {type, type_zh, conditions},
    ``update_cycle``, ``grade``, ``grade_zh``, ``published``, ``published_at``,
    ``current_version`` (Delta version number or None), ``fields`` (list, see
    :func:`field_summary`), ``created_at``, ``updated_at`` (ISO 8601, UTC).
    """
    cur = dataset.current_version
    return {
        "code": dataset.code,
        "name": dataset.name,
        "title": dataset.title,
        "summary": dataset.summary,
        "department": {"code": dataset.department.code, "name": dataset.department.name},
        "format": dataset.format,
        "share": {
            "type": dataset.share_type,
            "type_zh": SHARE_TYPE_ZH.get(dataset.share_type),
            "conditions": dataset.share_conditions,
        },
        "open": {
            "type": dataset.open_type,
            "type_zh": OPEN_TYPE_ZH.get(dataset.open_type),
            "conditions": dataset.open_conditions,
        },
        "update_cycle": dataset.update_cycle,
        "grade": dataset.grade,
        "grade_zh": GRADE_ZH.get(dataset.grade),
        "published": dataset.published,
        "published_at": _iso(dataset.published_at),
        "current_version": cur.delta_version if cur is not None else None,
        "fields": [field_summary(f) for f in dataset.fields],
        "created_at": _iso(dataset.created_at),
        "updated_at": _iso(dataset.updated_at),
    }


def version_summary(v: DatasetVersion) -> dict[str, Any]:
    """JSON-ready dict of a version.

    Keys: ``dataset`` (code), ``delta_version``, ``current`` (bool), ``row_count``,
    ``quarantined_count`` (rows), ``source_digest`` (SM3 hex), ``source_name``,
    ``source_bytes`` (bytes), ``run_id``, ``engine``, ``created_at`` (ISO 8601, UTC).
    """
    return {
        "dataset": v.dataset.code,
        "delta_version": v.delta_version,
        "current": v.dataset.current_version_id == v.id,
        "row_count": v.row_count,
        "quarantined_count": v.quarantined_count,
        "source_digest": v.source_digest,
        "source_name": v.source_name,
        "source_bytes": v.source_bytes,
        "run_id": v.run_id,
        "engine": v.engine,
        "created_at": _iso(v.created_at),
    }


def lineage_event_summary(e: LineageEvent) -> dict[str, Any]:
    """JSON-ready dict of a stored lineage event (without the full payload)."""
    return {
        "run_id": e.run_id,
        "event_type": e.event_type,
        "job_namespace": e.job_namespace,
        "job_name": e.job_name,
        "event_time": _iso(e.event_time),
        "inputs": json.loads(e.inputs),
        "outputs": json.loads(e.outputs),
    }


def _flush(session: Session, what: str) -> None:
    try:
        session.flush()
    except IntegrityError as exc:  # the caller must roll back its transaction
        raise CatalogError(f"catalog refused {what}: {exc.orig}") from exc
