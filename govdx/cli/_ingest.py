"""``govdx ingest``: run a contract's ingest DAG through Airflow (or directly) with progress."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from govdx import GovdxError, load_contract
from govdx._locks import home_lock
from govdx.cli._common import console, fail, get_settings, print_json


def ingest_command(
    contract: Annotated[Path, typer.Argument(help="Dataset contract YAML (数据集契约).")],
    source: Annotated[
        Path | None,
        typer.Option(help="Read this file instead of the contract's source.path (same layout)."),
    ] = None,
    airflow: Annotated[
        bool,
        typer.Option(
            "--airflow/--no-airflow",
            help="Run through Airflow's dag.test() (default) or call the steps directly.",
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
    engine: Annotated[
        str | None,
        typer.Option(
            help="Transform engine: duckdb (embedded, one machine) or spark (PySpark at "
            "GOVDX_SPARK_MASTER, default local[2]); default GOVDX_ENGINE (计算引擎).",
        ),
    ] = None,
) -> None:
    """Ingest one department file into the lakehouse (数据归集入湖).

    Lands the raw file (encrypted, named by its SM3 digest), parses and types it per the
    contract, quarantines bad rows with their reasons, encrypts sensitive fields with SM4,
    commits a new Delta table version and registers it in the catalog with lineage.
    Ingesting the same bytes again changes nothing. On failure the command exits 1 with the
    reason (file, row, column); Airflow's own task logs are quiet unless
    GOVDX_AIRFLOW_LOG_LEVEL=INFO is set.

    Examples:

      govdx ingest contracts/enterprise_registry.yaml

      govdx ingest contracts/tax_payment.yaml --source incoming/tax-2026-10.csv --json

      govdx ingest contracts/enterprise_registry.yaml --engine spark
    """
    settings = get_settings()
    if engine is not None:
        if engine not in ("duckdb", "spark"):
            fail(
                f"--engine must be duckdb or spark, not {engine!r} (计算引擎只能是 duckdb 或 spark)"
            )
            return
        import os

        os.environ["GOVDX_ENGINE"] = engine  # the DAG's tasks build their Settings from GOVDX_*
        settings = settings.model_copy(update={"engine": engine})
    try:
        c = load_contract(contract)
        settings.ensure_home()
        with home_lock(settings.home, "ingest", on_wait=_waiting):
            path = stage_contract(contract, settings=settings, source=source)
            outcome = run_ingest(path, settings=settings, airflow=airflow, quiet=as_json)
            if outcome["state"] == "success" and source is None:
                install_contract(path, settings=settings)
            path.unlink(missing_ok=True)
    except GovdxError as exc:
        fail(exc)
        return
    if as_json:
        print_json(outcome)
    if outcome["state"] != "success":
        if not as_json:
            fail(f"ingest of {c.code} failed: {outcome.get('error') or outcome['state']}")
        raise typer.Exit(1)


def _waiting() -> None:
    console.print("  another ingest is running in this GOVDX_HOME: waiting for it to finish…")


def stage_contract(contract: Path, *, settings, source: Path | None = None) -> Path:
    """Write this run's copy of a valid contract with an absolute ``source.path``.

    The copy lives in ``$GOVDX_HOME/contracts/runs/`` (not scanned by the DAG file), so a
    one-off ``--source`` or a failing run never changes the registered contract.

    Returns:
        The run copy's path.
    """
    import uuid

    import yaml

    c = load_contract(contract)
    data = yaml.safe_load(Path(contract).read_text(encoding="utf-8"))
    data["source"]["path"] = str(source.resolve() if source else c.source_path())
    runs = settings.contracts_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    dst = runs / f"{c.code}.{uuid.uuid4().hex[:12]}.yaml"
    dst.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    load_contract(dst)
    return dst


def install_contract(run_copy: Path, *, settings) -> Path:
    """Register a contract that ingested successfully: ``$GOVDX_HOME/contracts/<code>.yaml``
    (the DAG file makes one scheduled DAG per registered contract). Atomic replace."""
    c = load_contract(run_copy)
    dst = settings.contracts_dir / f"{c.code}.yaml"
    tmp = dst.with_suffix(".yaml.tmp")
    tmp.write_text(run_copy.read_text(encoding="utf-8"), encoding="utf-8")
    tmp.replace(dst)
    return dst


def register_contract(contract: Path, *, settings, source: Path | None = None) -> Path:
    """Stage a run copy of ``contract`` (kept for callers that ingest several contracts)."""
    return stage_contract(contract, settings=settings, source=source)


def run_ingest(contract_path: Path, *, settings, airflow: bool = True, quiet: bool = False) -> dict:
    """Run one ingest and summarise it from the catalog.

    Returns:
        ``{"dataset", "state", "run_id", "version", "rows", "quarantined", "digest",
        "seconds", "error"}``.
    """
    from pipelines import IngestError, new_run_id, use_reporter

    c = load_contract(contract_path)
    t0 = time.perf_counter()

    def show(step: str, message: str) -> None:
        if not quiet:
            console.print(f"  [cyan]{step:>9}[/] {message}", highlight=False)

    if not quiet:
        console.print(f"[bold]ingest[/] {c.code} {c.title} ← {c.source_path().name}")
    error = None
    with use_reporter(show):
        if airflow:
            from pipelines import run_ingest_dag

            result = run_ingest_dag(contract_path, settings=settings)
            state, run_id = result.state, result.lineage_run_id
        else:
            from pipelines import ingest

            run_id = new_run_id()
            try:
                ingest(contract_path, settings=settings, run_id=run_id)
                state = "success"
            except IngestError as exc:
                state, error = "failed", str(exc)
    summary = summarize(c.code, settings=settings, run_id=run_id)
    if state != "success" and error is None:
        error = summary.get("last_error")
    summary.update(state=state, seconds=round(time.perf_counter() - t0, 2), error=error)
    if not quiet and state == "success":
        console.print(
            f"  [green]done[/] {c.code} version {summary['version']}: "
            f"{summary['rows']:,} rows, {summary['quarantined']:,} quarantined "
            f"({summary['seconds']}s)"
        )
    return summary


def summarize(code: str, *, settings, run_id: str | None = None) -> dict:
    """The dataset's current version, and the error of lineage run ``run_id`` if it failed."""
    import json

    import catalog
    from govdx.cli._common import catalog_session

    with catalog_session(settings) as s:
        try:
            v = catalog.current_version(session=s, code=code)
        except catalog.DatasetNotFound:  # a first ingest that failed registers nothing
            v = None
        error = None
        if run_id:
            for e in catalog.lineage_events(session=s, run_id=run_id):
                if e.event_type == "FAIL":
                    facets = json.loads(e.payload).get("run", {}).get("facets", {})
                    error = (facets.get("errorMessage") or {}).get("message")
        return {
            "dataset": code,
            "version": v.delta_version if v else None,
            "rows": v.row_count if v else 0,
            "quarantined": v.quarantined_count if v else 0,
            "digest": v.source_digest if v else None,
            "run_id": run_id,
            "last_error": error,
        }
