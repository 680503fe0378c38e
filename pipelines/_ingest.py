"""The ingest pipeline's tasks as plain functions: land → transform → commit → register.

Each function is one Airflow task of the DAG factory (``pipelines.dags``) and takes and returns
JSON-ready dicts (Airflow XCom); :func:`ingest` runs the four in a row without Airflow (tests,
benchmarks). Data between tasks travels through the run's staging folder as Parquet that is
already protected (sensitive columns encrypted), never through XCom.

Guarantees, whatever fails:
- the raw file stays landed (encrypted, named by SM3 digest);
- the previous table version stays current: the catalog's current version moves only in the
  register task's single transaction, after the Delta commit;
- quarantined rows are kept with their reasons, keyed by lineage run id;
- a failed run leaves exactly one trace in the catalog: its OpenLineage FAIL event.
Ingesting the same bytes again under the same data definition
(:meth:`govdx.Contract.definition_digest`) is a no-op: no new Delta version, no new catalog
version. An existing catalog entry keeps its catalog metadata (title, summary, share, open,
update cycle, tags: the catalog owns it once registered); a data-defining change in the
contract (a field's grade, type, ...) makes the same bytes a new version.
"""

from __future__ import annotations

import functools
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import catalog
import quality
from govdx import Contract, ContractError, Settings, load_contract
from govdx._contract import CATALOG_KEYS
from pipelines._cast import cast_table
from pipelines._errors import IngestError, SourceError
from pipelines._lakehouse import DEFINITION_KEY, DIGEST_KEY, Lakehouse
from pipelines._land import LandedFile, check_inbox_source, land, read_landed
from pipelines._parse import map_columns, read_source
from pipelines._progress import report
from pipelines._protect import protect, protect_rejects
from pipelines._validate import ROW, quality_gate, validate
from privacy import Keyring, keyring_from_settings

LANDING_NS = catalog.LANDING_NAMESPACE
LAKEHOUSE_NS = catalog.LAKEHOUSE_NAMESPACE
new_run_id = catalog.new_run_id
JOB_PREFIX = "ingest."


def pipeline_keyring(settings: Settings, code: str) -> Keyring:
    """The keyring with key creation, rotation and decryption events going to the audit log."""
    from sandbox import Auditor

    with catalog.session_scope(settings.catalog_db_url):  # migrated before the auditor opens it
        pass
    auditor = Auditor(catalog.open_catalog(settings.catalog_db_url), settings.keys_dir)
    return keyring_from_settings(settings, audit=auditor.callback("pipeline", f"dataset:{code}"))


def lakehouse_of(settings: Settings) -> Lakehouse:
    return Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)


# --- lineage -----------------------------------------------------------------------------------
def _lineage_datasets(contract: Contract, source_name: str, digest: str | None):
    raw_fields = [(c, "string", None) for f in contract.fields for c in f.source_candidates()[:1]]
    raw = catalog.LineageDataset(
        namespace=LANDING_NS,
        name=f"{contract.code}/{digest or source_name}",
        fields=raw_fields,
    )
    col_lineage = {
        f.name: [(LANDING_NS, raw.name, f.source_candidates()[0])] for f in contract.fields
    }
    out = catalog.LineageDataset(
        namespace=LAKEHOUSE_NS,
        name=contract.name,
        fields=[(f.name, f.type.value, f.title) for f in contract.fields],
        column_lineage=col_lineage,
    )
    return [raw], [out]


def emit_lineage(
    settings: Settings,
    contract: Contract,
    *,
    event_type: str,
    run_id: str,
    source_name: str,
    digest: str | None,
    error: str | None = None,
    session: Any | None = None,
) -> None:
    """Store an OpenLineage RunEvent of this ingest in the catalog (and post it if configured).

    With ``session`` the event joins the caller's transaction; else it commits on its own.
    """
    inputs, outputs = _lineage_datasets(contract, source_name, digest)
    event = catalog.build_run_event(
        event_type=event_type,
        run_id=run_id,
        job_name=JOB_PREFIX + contract.name,
        inputs=inputs,
        outputs=outputs,
        error_message=error,
    )
    if session is not None:
        catalog.record_lineage(session=session, event=event)
    else:
        with catalog.session_scope(settings.catalog_db_url) as s:
            catalog.record_lineage(session=s, event=event)
    catalog.LineageEmitter(settings.openlineage_url).emit(event)


def record_failure(settings: Settings, contract_path: str, run_id: str, exc: BaseException) -> None:
    """Record the FAIL lineage event of a run; never raises (the original error matters)."""
    try:
        contract = load_contract(contract_path)
        emit_lineage(
            settings,
            contract,
            event_type="FAIL",
            run_id=run_id,
            source_name=Path(contract.source.path).name,
            digest=None,
            error=f"{type(exc).__name__}: {exc}",
        )
    except Exception as inner:  # pragma: no cover - best effort
        report("lineage", f"could not record the FAIL event: {inner}")


# --- tasks -------------------------------------------------------------------------------------
def task_land(contract_path: str, *, settings: Settings, run_id: str) -> dict:
    """Task 1: emit START, land the raw file, and say whether its bytes are already committed.

    "Already committed" (nothing to do) means: the latest Delta version of the table came from
    these bytes (``govdx.source_digest``) under the same data definition
    (``govdx.contract_definition`` = the contract file's :meth:`Contract.definition_digest`),
    and the catalog's current version is that Delta version. The catalog's registered contract
    is not consulted: a catalog edit (title, summary, share, ...) never forces a re-ingest,
    and a contract uploaded with a field regraded makes the next ingest of the same bytes
    write a new, correctly protected version. A Delta version committed but not registered
    (a run that failed in between) is not "already committed": the run goes on and the commit
    task finds that version again, so the register task completes the registration.

    Returns:
        ``{"run_id", "landed": LandedFile dict, "already_committed": bool,
        "current_version": int | None}`` (``current_version``: the catalog's current Delta
        version before this run).
    """
    settings.ensure_home()
    contract = load_contract(contract_path)
    check_inbox_source(
        contract.source.path, contract.base_dir, settings.inbox_dir, contract.department.code
    )
    with catalog.session_scope(settings.catalog_db_url) as s:  # one read of the entry
        try:
            ds = catalog.get_dataset(session=s, code=contract.code)
        except catalog.DatasetNotFound:
            ds = None
        prior = registered_contract(ds) if ds is not None else None
        current = catalog.current_version(session=s, code=contract.code) if ds else None
        current_version = current.delta_version if current is not None else None
    # before any work: the contract to register must validate with the catalog's kept metadata
    keep_catalog_metadata(contract, "", prior)
    source = contract.source_path()
    emit_lineage(
        settings, contract, event_type="START", run_id=run_id, source_name=source.name, digest=None
    )
    keyring = pipeline_keyring(settings, contract.code)
    landed = land(
        source, dataset_code=contract.code, landing_dir=settings.landing_dir, keyring=keyring
    )
    report(
        "land",
        f"{source.name}: {landed.size_bytes:,} bytes, SM3 {landed.digest[:12]}…"
        + ("" if landed.newly_landed else " (already landed)"),
    )
    latest = lakehouse_of(settings).latest_commit(contract.name)
    latest_version = int(latest["version"]) if latest is not None else None
    same_bytes = latest is not None and latest.get(DIGEST_KEY) == landed.digest
    same_definition = latest is not None and (
        latest.get(DEFINITION_KEY) == contract.definition_digest()
    )
    registered = current_version is not None and current_version == latest_version
    already = same_bytes and same_definition and registered
    if already:
        report(
            "land",
            f"these bytes are already the current version {current_version} "
            "under this contract: nothing to do",
        )
    elif same_bytes and not same_definition:
        report(
            "land",
            "same bytes as the latest version but the contract's data definition changed "
            "(a field's grade, type, ...): re-ingesting (数据定义已变更，重新接入)",
        )
    elif same_bytes:
        report(
            "land",
            f"these bytes are committed as Delta version {latest_version} but not registered "
            "in the catalog: completing the registration (补登记)",
        )
    return {
        "run_id": run_id,
        "landed": landed.to_dict(),
        "already_committed": already,
        "current_version": current_version,
    }


def registered_contract(dataset: catalog.Dataset) -> Contract | None:
    """The contract registered with a catalog entry (``pipelines._keyops.contract_of``), or None
    when it no longer validates (registered by an older govdx: treated as absent, so the file's
    catalog metadata applies)."""
    import yaml

    from pipelines._keyops import contract_of

    try:
        return contract_of(dataset)
    except (ContractError, yaml.YAMLError):
        return None


def keep_catalog_metadata(
    contract: Contract, contract_text: str, registered: Contract | None
) -> tuple[Contract, str]:
    """The contract to register: the file's, with the entry's catalog metadata kept.

    Args:
        contract: the contract file, loaded (its ``base_dir`` is kept).
        contract_text: the file's text (YAML).
        registered: the contract registered in the catalog, or None for a new entry.

    Returns:
        ``(contract, contract_yaml)``: the file's contract with :data:`govdx._contract.CATALOG_KEYS` taken from
        ``registered``, and its YAML (the file's text unchanged when nothing differs, else
        the merged contract dumped as YAML; comments of the file are then lost).

    Raises:
        govdx.ContractError: the merged contract does not validate (names the key).
    """
    if registered is None:
        return contract, contract_text
    kept = {
        key: getattr(registered, key)
        for key in CATALOG_KEYS
        if getattr(registered, key) != getattr(contract, key)
    }
    if not kept:
        return contract, contract_text
    import yaml

    data = contract.model_dump(mode="json", exclude_none=True)
    data.update(registered.model_dump(mode="json", exclude_none=True, include=set(kept)))
    try:
        merged = Contract.from_dict(
            data, path=f"catalog:{contract.code}", base_dir=contract.base_dir
        )
    except ContractError as exc:
        raise ContractError(
            f"{exc} — the catalog's {', '.join(sorted(kept))} (set by an entry edit, which the "
            f"catalog keeps over the file) no longer fit this contract; edit the entry first "
            f"(PATCH /api/v1/catalog/datasets/{contract.code}), then ingest again "
            "(目录元数据与契约冲突)",
        ) from exc
    text = yaml.safe_dump(
        merged.model_dump(mode="json", exclude_none=True), allow_unicode=True, sort_keys=False
    )
    return merged, text


def raw_columns_matched(raw: pa.Table, field) -> set[str]:
    """``{field.name}`` if one of the field's source candidates is a column of ``raw``."""
    from pipelines._parse import WHITESPACE

    cols = {c.strip(WHITESPACE) for c in raw.column_names}
    return (
        {field.name}
        if any(c.strip(WHITESPACE) in cols for c in field.source_candidates())
        else set()
    )


def transform(
    data: bytes, contract: Contract, *, file: str, keyring: Keyring, run_id: str, digest: str
) -> tuple[pa.Table, pa.Table, dict]:
    """Parse, cast, validate and protect one file's bytes (pure: no writes).

    Returns:
        ``(protected table, quarantine rows, counts)`` where counts holds ``rows_in``,
        ``rows_passed``, ``rows_quarantined``, ``pass_rate`` and ``encoding``.
    """
    t0 = time.perf_counter()
    raw = read_source(Path(file), contract.source, data=data)
    if raw.rows_in == 0 and not contract.source.allow_empty:
        raise SourceError(
            "no data rows below the header (无数据行): refusing to replace the table with an "
            "empty version; set source.allow_empty: true if an empty delivery is legitimate",
            file=file,
        )
    missing = [
        f.name
        for f in contract.fields
        if not f.required and f.name not in raw_columns_matched(raw.table, f)
    ]
    if missing:
        report(
            "transform",
            f"warning: no source column for optional field(s) {missing}: "
            "stored as NULL (可选字段未找到对应列)",
        )
    mapped = map_columns(raw.table, contract, file=file)
    cast = cast_table(mapped, contract)
    prior = pa.concat_tables(
        [
            raw.rejects.select([ROW, "field", "value", "reason"]),
            cast.rejects.select([ROW, "field", "value", "reason"]),
        ]
    )
    return finish_transform(
        cast.table,
        prior,
        contract,
        rows_in=raw.rows_in,
        encoding=raw.encoding,
        keyring=keyring,
        run_id=run_id,
        digest=digest,
        file=file,
        started=t0,
    )


def finish_transform(
    typed: pa.Table,
    prior: pa.Table,
    contract: Contract,
    *,
    rows_in: int,
    encoding: str,
    keyring: Keyring,
    run_id: str,
    digest: str,
    file: str,
    started: float,
    protect_fn=None,
    where: str = "",
    spark=None,
) -> tuple[pa.Table | None, pa.Table, dict]:
    """The half of the transform both engines share: validate (quality suite), quarantine
    rows, quality gate, protect.

    Args:
        typed: cast rows (contract fields + ``_row``). prior: parse and cast rejects.
        protect_fn: ``(passed table) -> protected table``; default :func:`protect` in this
            process (the Spark engine passes its executor-side version).
        where: engine note for the progress line (e.g. " on Spark (2 cores)").
        spark: the Spark engine's ``SparkSession``: the GX suite runs on GX's Spark data source
            (see :func:`quality.check_table`); ``None``: on pandas.

    Returns:
        ``(protected table or None when the gate failed, quarantine rows, counts)``.
    """
    result = validate(typed, contract, rows_in=rows_in, prior_rejects=prior, spark=spark)
    report(
        "transform",
        f"{rows_in:,} rows read ({encoding}){where}, "
        f"{result.passed.num_rows:,} passed, {result.rows_quarantined:,} quarantined "
        f"in {time.perf_counter() - started:.1f}s",
    )
    quarantine = protect_rejects(
        result.rejects, contract, keyring=keyring, run_id=run_id, digest=digest
    )
    counts = {
        "rows_in": result.rows_in,
        "rows_passed": result.passed.num_rows,
        "rows_quarantined": result.rows_quarantined,
        "pass_rate": result.pass_rate,
        "encoding": encoding,
        "scores": result.scores.to_dict() if result.scores is not None else None,
    }
    gate_error = None
    try:
        quality_gate(result, contract, file=file)
    except IngestError as exc:
        gate_error = exc
    counts["gate_error"] = str(gate_error) if gate_error else None
    protected = None
    if gate_error is None:
        protected = (
            protect_fn(result.passed)
            if protect_fn is not None
            else protect(result.passed, contract, keyring=keyring)
        )
    return protected, quarantine, counts


def task_transform(
    contract_path: str, landed: dict, *, settings: Settings, run_id: str, engine: str | None = None
) -> dict:
    """Task 2: read the landed bytes, transform, store quarantine rows, stage the protected table.

    ``engine``: ``duckdb`` (embedded, :func:`transform`) or ``spark`` (the same steps on PySpark
    at ``settings.spark_master``, :func:`pipelines._spark.transform_on_spark`); default
    ``settings.engine``.

    Raises:
        QualityGateError: pass rate under the contract's threshold (quarantine is kept).
        SourceError: the file cannot be read as declared (names file, row, column).
    """
    contract = load_contract(contract_path)
    keyring = pipeline_keyring(settings, contract.code)
    lf = LandedFile(**landed)
    data = read_landed(lf, keyring=keyring)
    run = transform
    if (engine or settings.engine) == "spark":
        from pipelines._spark import transform_on_spark

        run = functools.partial(transform_on_spark, master=settings.spark_master)
    protected, quarantine, counts = run(
        data, contract, file=lf.source_name, keyring=keyring, run_id=run_id, digest=lf.digest
    )
    lakehouse_of(settings).append_quarantine(
        contract.name, quarantine, digest=lf.digest, run_id=run_id
    )
    if counts["gate_error"]:
        from pipelines._errors import QualityGateError

        raise QualityGateError(
            f"{counts['gate_error']}; review the rejects: govdx quarantine show "
            f"{contract.code} --run {run_id}",
            pass_rate=counts["pass_rate"],
            threshold=contract.quality.min_pass_rate,
            quarantined=counts["rows_quarantined"],
        )
    stage = settings.staging_dir / run_id
    stage.mkdir(parents=True, exist_ok=True)
    pq.write_table(protected, stage / "table.parquet")
    report(
        "protect",
        f"{len(contract.protected_fields)} field(s) encrypted with SM4, "
        f"staged {protected.num_rows:,} rows",
    )
    for name in plaintext_personal_fields(contract):
        report(
            "protect",
            f"warning: field {name!r} holds {contract.field(name).element} (sensitive personal "
            "information under GB/T 35273) but its contract says pi: none — it is stored in "
            "plaintext; declare pi: sensitive to encrypt it (敏感个人信息未加密)",
        )
    return {**counts, "staged": str(stage / "table.parquet")}


#: Data elements that are sensitive personal information whatever the contract says (GB/T
#: 35273-2020 Annex B: identity document numbers, personal phone numbers).
SENSITIVE_ELEMENTS = ("resident_id", "phone")


def plaintext_personal_fields(contract: Contract) -> list[str]:
    """Fields whose element is sensitive personal information (:data:`SENSITIVE_ELEMENTS`) but
    that the contract leaves unprotected — stored in plaintext; the ingest warns about each."""
    return [f.name for f in contract.fields if f.element in SENSITIVE_ELEMENTS and not f.protected]


def task_commit(
    contract_path: str, landed: dict, staged: dict, *, settings: Settings, run_id: str
) -> dict:
    """Task 3: commit the staged table as a new Delta version (atomic; no-op for known bytes)."""
    contract = load_contract(contract_path)
    table = pq.read_table(staged["staged"])
    result = lakehouse_of(settings).commit(
        contract.name,
        table,
        digest=landed["digest"],
        run_id=run_id,
        definition=contract.definition_digest(),
    )
    report(
        "commit",
        f"Delta version {result.version} of {contract.name}"
        + ("" if result.created else " (already committed)"),
    )
    return result.to_dict()


def task_register(
    contract_path: str,
    landed: dict,
    staged: dict,
    committed: dict,
    *,
    settings: Settings,
    run_id: str,
) -> dict:
    """Task 4: in one catalog transaction, upsert the entry, add the version, record COMPLETE.

    The entry is registered from the contract file, but an existing entry keeps its catalog
    metadata (:data:`govdx._contract.CATALOG_KEYS`: title, summary, share, open, update_cycle, tags): the
    catalog owns it after the first registration (see :func:`keep_catalog_metadata`).

    A Delta version already registered for this dataset from the same source digest (the
    commit task found its version again, ``created=False``: a retried or concurrent run) is
    not added twice: it is made current if it is not, and the run is recorded COMPLETE.

    Returns:
        ``{"dataset": code, "delta_version": int, "registered": bool}`` (``registered``: a new
        catalog version was added by this run).

    Raises:
        catalog.CatalogError: the Delta version is registered from another source digest (a
            genuine conflict), or the entry's table name is taken by another entry.
        govdx.ContractError: the contract file is invalid (names the key).
    """
    path = Path(contract_path)
    contract = load_contract(path)
    with catalog.session_scope(settings.catalog_db_url) as s:
        try:
            prior = catalog.get_dataset(session=s, code=contract.code)
        except catalog.DatasetNotFound:
            prior = None
        contract, text = keep_catalog_metadata(
            contract,
            path.read_text(encoding="utf-8"),
            registered_contract(prior) if prior else None,
        )
        dataset = catalog.upsert_dataset(session=s, contract=contract, contract_yaml=text)
        known = None
        if prior is not None and not committed.get("created", True):  # found its commit again
            versions = catalog.list_versions(session=s, code=contract.code)
            known = next((v for v in versions if v.delta_version == committed["version"]), None)
        if known is not None and known.source_digest == landed["digest"]:
            if dataset.current_version_id != known.id:
                dataset.current_version = known
            version, added = known, False
        else:  # a conflicting registration raises CatalogError (版本已登记)
            version = catalog.add_version(
                session=s,
                dataset=dataset,
                delta_version=committed["version"],
                row_count=committed["rows"],
                quarantined_count=staged["rows_quarantined"],
                source_digest=landed["digest"],
                source_name=landed["source_name"],
                source_bytes=landed["size_bytes"],
                run_id=run_id,
            )
            added = True
            if staged.get("scores"):
                quality.record_quality(session=s, dataset_version=version, scores=staged["scores"])
        emit_lineage(
            settings,
            contract,
            event_type="COMPLETE",
            run_id=run_id,
            source_name=landed["source_name"],
            digest=landed["digest"],
            session=s,
        )
        out = {
            "dataset": contract.code,
            "delta_version": version.delta_version,
            "registered": added,
        }
    shutil.rmtree(Path(staged["staged"]).parent, ignore_errors=True)
    report(
        "register",
        f"catalog entry {contract.code} now at version {out['delta_version']}"
        + ("" if added else " (already registered)"),
    )
    return out


@dataclass
class IngestOutcome:
    """What an ingest run did. ``version`` is the dataset's current Delta version afterwards.

    ``created``: this run committed a new Delta version or registered one in the catalog;
    False when the bytes were already committed and registered (nothing to do).
    """

    run_id: str
    dataset: str
    digest: str
    created: bool
    version: int | None
    rows_in: int = 0
    rows_committed: int = 0
    rows_quarantined: int = 0


def ingest(
    contract_path: str | Path,
    *,
    settings: Settings,
    run_id: str | None = None,
    engine: str | None = None,
) -> IngestOutcome:
    """Run the four tasks in this process without Airflow (tests, benchmarks, fallbacks).

    ``engine``: ``duckdb`` or ``spark`` for the transform task (default ``settings.engine``).

    Raises:
        IngestError: any step failed; the FAIL lineage event is recorded first.
    """
    contract_path = str(Path(contract_path).resolve())
    run_id = run_id or new_run_id()
    try:
        landed = task_land(contract_path, settings=settings, run_id=run_id)
        lf = landed["landed"]
        if landed["already_committed"]:
            emit_lineage(
                settings,
                load_contract(contract_path),
                event_type="COMPLETE",
                run_id=run_id,
                source_name=lf["source_name"],
                digest=lf["digest"],
            )
            return IngestOutcome(
                run_id,
                load_contract(contract_path).code,
                lf["digest"],
                created=False,
                version=landed["current_version"],
            )
        staged = task_transform(contract_path, lf, settings=settings, run_id=run_id, engine=engine)
        committed = task_commit(contract_path, lf, staged, settings=settings, run_id=run_id)
        reg = task_register(contract_path, lf, staged, committed, settings=settings, run_id=run_id)
    except Exception as exc:
        record_failure(settings, contract_path, run_id, exc)
        raise
    return IngestOutcome(
        run_id,
        reg["dataset"],
        lf["digest"],
        created=committed["created"] or reg["registered"],
        version=reg["delta_version"],
        rows_in=staged["rows_in"],
        rows_committed=committed["rows"],
        rows_quarantined=staged["rows_quarantined"],
    )
