"""Data functions of the API (数据访问): plain functions with a keyword-only ``session``.

They work outside FastAPI (a script, a test) and never raise ``HTTPException``: they raise the
packages' own errors (``catalog.DatasetNotFound``, ``govdx.ContractError``, ...) or
:class:`ApiError`, which the app maps to HTTP statuses.

The catalog is read through :class:`CatalogIndex`, an in-memory snapshot of every entry (its
summary, tags and search text) rebuilt when the catalog changes: one cheap "generation" query
per request (counts and newest ids/times of entries, versions and lineage events) decides
whether the snapshot is still current, so a search or a show costs no ORM loading in the
steady state, and writes by other processes (an ingest, the CLI) are seen at the next request.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

import catalog
from catalog import Dataset, DatasetVersion, LineageEvent
from govdx import GRADE_ZH, OPEN_TYPE_ZH, SHARE_TYPE_ZH, Contract, ContractError, GovdxRuntimeError
from govdx._contract import yaml_error_text
from govdx._settings import Settings

#: Marker put in place of every value of a protected (SM4-encrypted) column on the owner's row
#: route: ciphertext never crosses the API, and nothing is decrypted for it.
ENCRYPTED = "[encrypted]"


class ApiError(GovdxRuntimeError):
    """A request the API refuses for a reason of its own (HTTP ``status`` attached)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        self.status = status
        super().__init__(message)


# --- the catalog index --------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One catalog entry as the index holds it.

    Attributes:
        summary: :func:`catalog.dataset_summary` plus ``tags`` (list of str).
        text: lowercased search text (codes, names, titles, summary, department, field names,
            titles and elements, tags, share/open/grade labels in English and Chinese).
    """

    summary: dict[str, Any]
    text: str

    @property
    def code(self) -> str:
        return self.summary["code"]

    @property
    def department(self) -> str:
        return self.summary["department"]["code"]


def _tags(contract_yaml: str | None) -> list[str]:
    if not contract_yaml:
        return []
    try:
        data = yaml.safe_load(contract_yaml)
    except yaml.YAMLError:
        return []
    tags = data.get("tags") if isinstance(data, dict) else None
    return [str(t) for t in tags] if isinstance(tags, list) else []


def _entry(ds: Dataset) -> Entry:
    s = catalog.dataset_summary(ds)
    s["tags"] = _tags(ds.contract_yaml)
    parts = [
        s["code"],
        s["name"],
        s["title"],
        s["summary"] or "",
        s["department"]["code"],
        s["department"]["name"],
        s["share"]["type"],
        SHARE_TYPE_ZH.get(s["share"]["type"], ""),
        s["open"]["type"],
        OPEN_TYPE_ZH.get(s["open"]["type"], ""),
        s["grade"],
        GRADE_ZH.get(s["grade"], ""),
        *s["tags"],
    ]
    for f in s["fields"]:
        parts += [f["name"], f["title"] or "", f["element"] or "", f["description"] or ""]
    return Entry(summary=s, text="\n".join(parts).lower())


def catalog_generation(*, session: Session) -> tuple[Any, ...]:
    """A value that changes whenever an entry, a version or a lineage event is written.

    ``(entries, newest entry update, newest version id, newest lineage event id)``.
    """
    return tuple(
        session.execute(
            select(
                select(func.count(Dataset.id)).scalar_subquery(),
                select(func.max(Dataset.updated_at)).scalar_subquery(),
                select(func.max(DatasetVersion.id)).scalar_subquery(),
                select(func.max(LineageEvent.id)).scalar_subquery(),
            )
        ).one()
    )


class CatalogIndex:
    """In-memory snapshot of the catalog entries, rebuilt when :func:`catalog_generation`
    changes; thread-safe, one per app (process).

    The generation is read at most once per ``check_seconds`` (writes by this process call
    :meth:`invalidate` and are seen at once; writes by other processes — an ingest, another
    worker — within ``check_seconds``). :meth:`rendered` caches response bodies (bytes) of the
    current generation, so a repeated search or show is served without querying or
    re-serializing.

    Args:
        factory: catalog session factory. check_seconds: seconds between generation checks.
    """

    def __init__(self, factory: Any, *, check_seconds: float = 1.0) -> None:
        self.factory = factory
        self.check_seconds = check_seconds
        self._lock = threading.Lock()
        self._generation: tuple[Any, ...] | None = None
        self._checked = float("-inf")
        self._entries: list[Entry] = []
        self._by_code: dict[str, Entry] = {}
        self._details: dict[str, dict[str, Any]] = {}
        self._rendered: dict[Any, bytes] = {}

    def invalidate(self) -> None:
        """Force a generation check at the next read (after a write by this process)."""
        self._checked = float("-inf")

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.check_seconds:
            return
        with self._lock:
            if now - self._checked < self.check_seconds:
                return
            with self.factory() as session:
                gen = catalog_generation(session=session)
                if gen != self._generation:
                    rows = session.scalars(
                        select(Dataset)
                        .order_by(Dataset.code)
                        .options(
                            selectinload(Dataset.fields),
                            selectinload(Dataset.department),
                            selectinload(Dataset.current_version),
                        )
                    ).all()
                    entries = [_entry(ds) for ds in rows]
                    self._entries = entries
                    self._by_code = {e.code: e for e in entries}
                    self._details = {}
                    self._rendered = {}
                    self._generation = gen
            self._checked = time.monotonic()

    def entries(self) -> list[Entry]:
        """All entries ordered by code."""
        self._refresh()
        return self._entries

    def get(self, code: str) -> Entry:
        """The entry ``code``.

        Raises:
            catalog.DatasetNotFound: no entry has this code.
        """
        self._refresh()
        e = self._by_code.get(code)
        if e is None:
            raise catalog.DatasetNotFound(code)
        return e

    def detail(self, code: str) -> dict[str, Any]:
        """The full record of ``code``: the entry, its versions, quality and lineage (cached for
        the current generation).

        Raises:
            catalog.DatasetNotFound: no entry has this code.
        """
        entry = self.get(code)
        hit = self._details.get(code)
        if hit is None:
            with self.factory() as session:
                hit = dataset_detail(session=session, code=code, entry=entry)
            with self._lock:
                self._details[code] = hit
        return hit

    def rendered(self, key: Any, build: Any) -> bytes:
        """The cached body for ``key`` in the current generation, or ``build()`` (bytes),
        cached. Call after :meth:`entries`/:meth:`get` so the generation is current."""
        hit = self._rendered.get(key)
        if hit is None:
            hit = build()
            with self._lock:
                if len(self._rendered) > 10_000:
                    self._rendered.clear()
                self._rendered[key] = hit
        return hit


def visible(entry: Entry, user: Any) -> bool:
    """May ``user`` (a :class:`api.deps.Principal`) see this entry's metadata? Published entries:
    everyone signed in; unpublished ones: the owning department's steward and admins."""
    if entry.summary["published"] or user.role == "admin":
        return True
    return user.role == "steward" and user.department == entry.department


@dataclass(frozen=True)
class SearchFilters:
    """Catalog search filters; every given one must hold (AND).

    Attributes:
        q: keywords (whitespace-separated, Chinese or English), each a case-insensitive substring
            of the entry's search text. department: department code. grade, share_type,
            open_type: ``core|important|general`` and ``unconditional|conditional|none``.
        element: a data element some field follows (``uscc``, ``resident_id`` ...).
        published: only published (True) or unpublished (False) entries.
    """

    q: str | None = None
    department: str | None = None
    grade: str | None = None
    share_type: str | None = None
    open_type: str | None = None
    element: str | None = None
    published: bool | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)


def search_entries(entries: list[Entry], filters: SearchFilters) -> list[Entry]:
    """The entries matching every filter, in the given order."""
    words = [w.lower() for w in (filters.q or "").split()]
    out = []
    for e in entries:
        s = e.summary
        if filters.department and e.department != filters.department:
            continue
        if filters.grade and s["grade"] != filters.grade:
            continue
        if filters.share_type and s["share"]["type"] != filters.share_type:
            continue
        if filters.open_type and s["open"]["type"] != filters.open_type:
            continue
        if filters.published is not None and s["published"] != filters.published:
            continue
        if filters.element and not any(f["element"] == filters.element for f in s["fields"]):
            continue
        if filters.tags and not set(filters.tags) <= set(s["tags"]):
            continue
        if any(w not in e.text for w in words):
            continue
        out.append(e)
    return out


def dataset_detail(*, session: Session, code: str, entry: Entry | None = None) -> dict[str, Any]:
    """Entry, versions (oldest first), quality report and one-hop lineage of ``code``.

    Returns:
        ``{"entry", "versions", "quality", "lineage"}``; ``quality`` is the dataset's part of
        :func:`quality.build_report` or None when no quality result is stored.

    Raises:
        catalog.DatasetNotFound: no entry has this code.
    """
    if entry is None:
        entry = _entry(catalog.get_dataset(session=session, code=code))
    versions = [
        catalog.version_summary(v) for v in catalog.list_versions(session=session, code=code)
    ]
    report = quality_report(session=session, code=code)
    quality_part = next((d for d in report.get("datasets", []) if d["code"] == code), None)
    lineage = catalog.lineage_graph(session=session, code=code).to_dict()
    return {
        "entry": entry.summary,
        "versions": versions,
        "quality": quality_part,
        "lineage": lineage,
    }


def _drop_examples(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_examples(v) for k, v in obj.items() if k != "examples"}
    if isinstance(obj, list):
        return [_drop_examples(v) for v in obj]
    return obj


def quality_report(*, session: Session, code: str | None = None) -> dict[str, Any]:
    """:func:`quality.build_report` without the ``examples`` of failed rules.

    The quality package keeps a few rejected values per rule as examples (masked for protected
    fields, verbatim for the others, e.g. a duplicate USCC): they are cells of a dataset's rows,
    so they never cross the API; stewards see them with ``govdx quarantine show``.
    """
    from quality import build_report

    return _drop_examples(build_report(session=session, code=code))


# --- writes by stewards ---------------------------------------------------------------------------
def registered_contract(*, session: Session, code: str) -> Contract:
    """The contract registered for ``code`` (from the catalog's ``contract_yaml``).

    Raises:
        catalog.DatasetNotFound, govdx.ContractError.
    """
    from pipelines._keyops import contract_of

    return contract_of(catalog.get_dataset(session=session, code=code))


def edit_entry(
    *, session: Session, code: str, changes: dict[str, Any], settings: Settings | None = None
) -> Dataset:
    """Apply catalog-level ``changes`` (title, summary, share, open, update_cycle, tags) to the
    registered contract of ``code`` and re-register it; the caller commits.

    The department, fields and source stay as the contract declares them (change those by
    uploading a new contract). With ``settings``, the scheduled contract
    ``contracts/<code>.yaml`` (if the home has one) gets the same changes, so a new
    ``update_cycle`` moves the DAG's schedule and the file agrees with the catalog.

    Raises:
        catalog.DatasetNotFound; govdx.ContractError naming the key (e.g. ``share.conditions``).
    """
    current = registered_contract(session=session, code=code)
    data = current.model_dump(mode="json", exclude_none=True)
    edits = {k: v for k, v in changes.items() if v is not None}
    data.update(edits)
    contract = Contract.from_dict(data, path=f"catalog:{code}")
    ds = catalog.upsert_dataset(session=session, contract=contract)
    scheduled = settings.contracts_dir / f"{code}.yaml" if settings is not None else None
    if scheduled is not None and scheduled.is_file() and edits:
        doc = yaml.safe_load(scheduled.read_text(encoding="utf-8"))
        doc.update(contract.model_dump(mode="json", exclude_none=True, include=set(edits)))
        tmp = scheduled.with_suffix(".yaml.tmp")
        tmp.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
        tmp.replace(scheduled)
    return ds


def _inbox_source(path: str, inbox: Path) -> Path:
    """The absolute source file of an uploaded contract: ``path`` inside the department's inbox.

    An uploaded contract is scheduled for ingestion by the platform, so it may read only from
    ``<home>/inbox/<DEPT>/`` — never an absolute path, ``~``, ``..`` or a symlink leading out
    (a steward could otherwise ingest another department's raw file or the key store).

    Raises:
        ContractError: ``source.path`` names a file outside the inbox (the key is named).
    """
    p = Path(path)
    if p.is_absolute() or path.startswith("~") or ".." in p.parts or not p.parts:
        raise ContractError(
            f"{path!r} — an uploaded contract reads from its department's inbox {inbox}/; give "
            "a path relative to it, e.g. 'tax_2025.csv' (只能读取本部门上传目录)",
            path="upload",
            key="source.path",
        )
    inbox.mkdir(parents=True, exist_ok=True)
    resolved = (inbox / p).resolve()
    if not resolved.is_relative_to(inbox.resolve()):
        raise ContractError(
            f"{path!r} leads out of the inbox {inbox}/ (a link?) (只能读取本部门上传目录)",
            path="upload",
            key="source.path",
        )
    return inbox / p


def register_contract(
    *, session: Session, settings: Settings, text: str, department: str
) -> tuple[Dataset, bool]:
    """Validate an uploaded contract (YAML text), keep it in ``contracts/<code>.yaml`` of the home
    and register its catalog entry; the caller commits.

    ``source.path`` is relative to the department's inbox ``<home>/inbox/<DEPT>/`` and stored
    absolute (:func:`_inbox_source`); the stored YAML is the upload re-dumped with that path.

    Args:
        text: the contract YAML (UTF-8 text).
        department: the uploading steward's department; the contract must be of it, and an
            existing entry with the same code must belong to it too.

    Returns:
        ``(dataset, created)``.

    Raises:
        govdx.ContractError: bad YAML or a bad key (named). ApiError(403): another department's
            contract or entry.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ContractError(yaml_error_text(exc), path="upload") from exc
    contract = Contract.from_dict(data, path="upload")
    if contract.department.code != department:
        raise ApiError(
            f"department.code: contract of {contract.department.code!r}, but the steward manages "
            f"{department!r} (只能登记本部门的目录)",
            status=403,
        )
    try:
        existing = catalog.get_dataset(session=session, code=contract.code)
    except catalog.DatasetNotFound:
        existing = None
    if existing is not None and existing.department_code != department:
        raise ApiError(
            f"code: entry {contract.code!r} belongs to {existing.department_code!r} (非本部门目录)",
            status=403,
        )
    if existing is not None and existing.name != contract.name:
        # the lakehouse table is named by it: a rename would orphan every stored version
        raise ContractError(
            f"{contract.name!r}: entry {contract.code} stores its versions in table "
            f"{existing.name!r}; a registered entry keeps its table name (表名不可更改)",
            path="upload",
            key="name",
        )
    inbox = settings.inbox_dir / department
    data["source"]["path"] = str(_inbox_source(contract.source.path, inbox))
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    contract = Contract.from_dict(data, path="upload")
    ds = catalog.upsert_dataset(session=session, contract=contract, contract_yaml=text)
    target = settings.contracts_dir / f"{contract.code}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".yaml.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    return ds, existing is None


def _json_value(v: Any) -> Any:
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    if isinstance(v, (bytes, bytearray)):
        return ENCRYPTED
    if isinstance(v, datetime):
        return v.isoformat()
    return str(v)  # Decimal, date: exact text


def read_rows(
    *, session: Session, settings: Settings, code: str, offset: int, limit: int
) -> dict[str, Any]:
    """One page of the stored table of ``code`` at its current version, protected columns
    replaced by :data:`ENCRYPTED` (nothing is decrypted).

    Returns:
        ``{"dataset", "version", "offset", "limit", "total", "columns": [{"name", "protected"}],
        "rows": [[...]]}``; decimals and dates as exact text.

    Raises:
        catalog.DatasetNotFound; ApiError(409): no committed version yet.
    """
    from pipelines import Lakehouse

    ds = catalog.get_dataset(session=session, code=code)
    cur = ds.current_version
    if cur is None:
        raise ApiError(f"dataset {code} has no committed version (无可用版本)", status=409)
    protected = {f.name for f in ds.fields if f.protected}
    table = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir).read(
        ds.name, cur.delta_version
    )
    page = table.slice(offset, limit)
    columns = []
    arrays = []
    for fld, col in zip(page.schema, page.columns, strict=True):
        meta = fld.metadata or {}
        is_protected = fld.name in protected or b"govdx.cipher" in meta
        columns.append({"name": fld.name, "protected": is_protected})
        if is_protected:
            arrays.append([ENCRYPTED if ok else None for ok in col.is_valid().to_pylist()])
        else:
            arrays.append([_json_value(v) for v in col.to_pylist()])
    rows = [list(r) for r in zip(*arrays, strict=True)] if arrays else []
    return {
        "dataset": code,
        "version": cur.delta_version,
        "offset": offset,
        "limit": limit,
        "total": table.num_rows,
        "columns": columns,
        "rows": rows,
    }


# --- sandbox budget ---------------------------------------------------------------------------------
def quota_usage(
    *, session: Session, user: str, codes: list[str], now: datetime | None = None
) -> list[dict[str, Any]]:
    """The user's use of each dataset's sandbox quotas over the last 24 hours (额度).

    Returns:
        One dict per code: ``dataset``, ``jobs`` used / ``jobs_per_day`` allowed,
        ``psi_items`` used / ``psi_items_per_day`` allowed (items declared as ``max_items`` of
        the user's identifier sets: ``psi`` jobs, ``psi_sum`` joins, ``he_cohort`` offers — the
        same count the service enforces, ``sandbox._service.usage_since``), and
        ``window_hours`` (24). The ε/δ budgets are the DP ledger's (``govdx sandbox budget``).
    """
    from sandbox import sandbox_policy
    from sandbox._service import usage_since

    now = now or datetime.now(UTC)
    since = now - timedelta(hours=24)
    out = []
    for code in codes:
        contract = registered_contract(session=session, code=code)
        policy = sandbox_policy(contract)
        usage = usage_since(session, user, code, since)
        out.append(
            {
                "dataset": code,
                "window_hours": 24,
                "jobs": usage.jobs,
                "jobs_per_day": policy.quota_jobs_per_day,
                "psi_items": usage.psi_items,
                "psi_items_per_day": policy.psi_items_per_day,
                "allowed_computations": list(policy.allowed_computations),
            }
        )
    return out


# --- reports ----------------------------------------------------------------------------------------
def authenticate(*, session: Session, name: str, password: str) -> Any | None:
    """The :class:`sandbox.User` ``name`` when ``password`` matches its Argon2id hash, else None
    (unknown user, no password set, wrong password or a disabled account all cost one Argon2
    verification)."""
    from api.security import verify_password
    from sandbox import User

    user = session.get(User, name)
    ok = verify_password(password, user.password_hash if user is not None else None)
    return user if ok and user.disabled_at is None else None  # disabled: as a wrong password


def set_password(*, session: Session, name: str, password: str, env: str = "development") -> None:
    """Store the Argon2id hash of ``password`` for user ``name``; the caller commits.

    Args:
        env: the deployment mode (``Settings.env``): ``production`` asks for 12 characters at
            least, ``development`` 8 (``api.security.MIN_PASSWORD_LENGTH``).

    Raises:
        ApiError(404): no such user. api.security.AuthError: too short or over-long password.
    """
    from api.security import MIN_PASSWORD_LENGTH, hash_password
    from sandbox import User

    user = session.get(User, name)
    if user is None:
        raise ApiError(f"unknown user {name!r} (用户不存在); see `govdx users list`", status=404)
    user.password_hash = hash_password(password, min_length=MIN_PASSWORD_LENGTH[env])


def audit_entries(
    *,
    session: Session,
    actor: str | None,
    action: str | None,
    offset: int,
    limit: int,
) -> dict[str, Any]:
    """A page of the audit log, newest first: ``{"count", "entries": [{seq, at, actor, action,
    subject, details, entry_hash}]}``."""
    from sandbox import AuditEntryRow

    stmt = select(AuditEntryRow)
    count = select(func.count(AuditEntryRow.id))
    if actor:
        stmt = stmt.where(AuditEntryRow.actor == actor)
        count = count.where(AuditEntryRow.actor == actor)
    if action:
        stmt = stmt.where(AuditEntryRow.action == action)
        count = count.where(AuditEntryRow.action == action)
    rows = session.scalars(
        stmt.order_by(AuditEntryRow.seq.desc()).offset(offset).limit(limit)
    ).all()
    return {
        "count": session.scalar(count) or 0,
        "entries": [
            {
                "seq": r.seq,
                "at": r.at.isoformat(),
                "actor": r.actor,
                "action": r.action,
                "subject": r.subject,
                "details": json.loads(r.details),
                "entry_hash": r.entry_hash,
            }
            for r in rows
        ],
    }
