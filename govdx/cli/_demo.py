"""``govdx demo``: the main job on the embedded default — the 信易贷 (credit loans) scenario.

Generates seeded department files (market regulation, tax in GBK, social insurance as XLSX with
a title row) and the bank's applicant list (kept out of the lakehouse, for the requester side),
then ingests them and the shipped public reference files through their Airflow DAGs, and prints
the catalog, versions, quarantine counts and lineage.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from govdx import GovdxError
from govdx.cli._common import catalog_session, console, fail, get_settings, print_json


def public_contracts() -> list[Path]:
    """Contracts of the shipped public reference files (govdx/demo/contracts/public)."""
    folder = Path(str(resources.files("govdx.demo") / "contracts" / "public"))
    return sorted(folder.glob("*.yaml"))


def demo_command(
    rows: Annotated[
        int, typer.Option(help="Enterprises in the registry (the largest file).")
    ] = 100_000,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic data generator.")] = 20261129,
    workdir: Annotated[
        Path | None, typer.Option(help="Where generated files go (default $GOVDX_HOME/demo).")
    ] = None,
    airflow: Annotated[
        bool, typer.Option("--airflow/--no-airflow", help="Run each ingest through Airflow.")
    ] = True,
    public: Annotated[
        bool, typer.Option("--public/--no-public", help="Also ingest the public reference files.")
    ] = True,
    federated: Annotated[
        bool, typer.Option("--fl/--no-fl", help="Run the federated-training step (≈1 min).")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Build and ingest the credit-loan (信易贷) demo end to end.

    Example: govdx demo --rows 20000
    """
    from govdx._locks import home_lock
    from govdx.cli._ingest import install_contract, run_ingest, stage_contract
    from govdx.demo import write_credit_demo

    settings = get_settings()
    settings.ensure_home()
    workdir = (workdir or settings.home / "demo").resolve()
    try:
        if not as_json:
            console.print(f"[bold]govdx demo[/] — home {settings.home}, {rows:,} enterprises")
        files, contracts = write_credit_demo(workdir, rows=rows, seed=seed)
        if not as_json:
            console.print(
                f"  generated department files in {workdir / 'data'}; bank applicant "
                f"list (requester side, not ingested): {files.bank_applicants}"
            )
        if public:
            contracts = [*contracts, *public_contracts()]
        outcomes = []
        with home_lock(settings.home, "ingest"):
            for c in contracts:
                path = stage_contract(c, settings=settings)
                outcome = run_ingest(path, settings=settings, airflow=airflow, quiet=as_json)
                if outcome["state"] == "success":
                    install_contract(path, settings=settings)
                path.unlink(missing_ok=True)
                outcomes.append(outcome)
    except GovdxError as exc:
        fail(exc)
        return
    summary = catalog_summary(settings)
    failed = [o for o in outcomes if o["state"] != "success"]
    if not as_json:
        print_summary(summary)
    steps: dict[str, dict] = {}
    if not failed:
        try:
            steps = sandbox_steps(
                settings, files, workdir=workdir, quiet=as_json, federated=federated
            )
        except GovdxError as exc:
            fail(exc)
            return
    if as_json:
        print_json({"ingests": outcomes, "catalog": summary, "sandbox": steps})
    if failed:
        fail(
            f"{len(failed)} ingest(s) failed: "
            + "; ".join(f"{o['dataset']}: {o['error']}" for o in failed)
        )


def sandbox_steps(
    settings, files, *, workdir: Path, quiet: bool, federated: bool = True
) -> dict[str, dict]:
    """The demo's sandbox steps after ingestion (requester side kept in ``workdir/bank``)."""
    from govdx.demo._scenario import psi_step

    steps = {}
    publish_credit_entries(settings, quiet=quiet)
    if not quiet:
        console.print(
            "[bold]sandbox[/] 银税互动: the bank asks how many of its applicants pay "
            "tax here (PSI, cardinality only; 税务局 steward + reviewer approve)"
        )
    try:
        psi = psi_step(settings, files.bank_applicants, workdir=workdir / "bank")
    except GovdxError as exc:
        steps["psi"] = _skipped(exc, quiet)  # re-raises anything but a spent quota
    else:
        steps["psi"] = psi
    if "skipped" not in steps["psi"] and not quiet:
        console.print(
            f"  job {psi['job_id'][:8]}… {psi['state']}: {psi['cardinality']:,} of the "
            f"bank's {psi['applicants']:,} applicants are taxpayers (交集数量); the bank's "
            "list never left the bank, no tax row left the sandbox"
        )
    from sandbox import demo_dp_step, demo_fl_step

    if not quiet:
        console.print(
            "[bold]sandbox[/] employees insured per district, released to the "
            "big-data bureau's analyst with differential privacy (ε = 1/2, OpenDP)"
        )
    try:
        dp = demo_dp_step(settings)
    except GovdxError as exc:
        steps["dp"] = _skipped(exc, quiet)
    else:
        steps["dp"] = dp
    if "skipped" not in steps["dp"] and not quiet:
        console.print(
            f"  job {dp['job_id'][:8]}…: {dp['districts']} districts, mechanism "
            f"{dp['mechanism']}, noise scale {dp['scale']}, 95% CI ±{float(dp['ci_halfwidth']):.1f}"
        )
        console.print(
            "  first district codes (a fixed choice; the largest noisy counts would be the "
            "cells noise pushed up):",
            highlight=False,
        )
        for code, count, lo, hi in dp["sample_districts"][:3]:
            console.print(
                f"    {code}: {float(count):.0f} (95% CI {float(lo):.1f} … {float(hi):.1f})",
                highlight=False,
            )
    if not federated:
        return steps
    if files.rows["tax_payment"] < FL_MIN_TAX_ROWS:
        if not quiet:
            console.print(
                f"[bold]sandbox[/] federated step skipped: it needs ≥ "
                f"{FL_MIN_TAX_ROWS:,} tax rows so each province has enough "
                "(run with --rows 20000 or more)"
            )
        return steps
    if not quiet:
        console.print(
            "[bold]sandbox[/] a default-risk model for the bank, trained across three "
            "provinces' tax rows with FedAvg on Flower and SecAgg+ (rows stay with "
            "their party; ≈1 min)"
        )
    fl = demo_fl_step(settings)
    steps["fl"] = fl
    if not quiet:
        pooled = fl["pooled"]
        console.print(
            f"  job {fl['job_id'][:8]}… {fl['state']}: {fl['rounds']} rounds, parties "
            f"{fl['parties']}, pooled hold-out AUC {pooled['auc']:.3f}, accuracy "
            f"{pooled['accuracy']:.3f} ({fl['seconds']:.0f}s)"
        )
    return steps


def _skipped(exc: GovdxError, quiet: bool) -> dict[str, str]:
    """A demo step refused because this home's requester has used its daily job/PSI quota or
    its privacy budget (a demo run again and again in one home): said and skipped, not a
    failure. Any other error is re-raised.

    Raises:
        GovdxError: ``exc`` itself, unless it is a spent quota or budget.
    """
    from sandbox import BudgetExceeded, PolicyRefused, QuotaReason

    spent = isinstance(exc, BudgetExceeded) or (
        isinstance(exc, PolicyRefused)
        and bool(exc.reasons)
        and all(isinstance(r, QuotaReason) for r in exc.reasons)
    )
    if not spent:
        raise exc
    if not quiet:
        console.print(
            f"  [yellow]skipped[/]: {exc} — earlier demo runs in this home used it up; the "
            "limits hold for the demo's users too (run the demo in a fresh GOVDX_HOME)",
            highlight=False,
        )
    return {"skipped": str(exc)}


FL_MIN_TAX_ROWS = 20_000
CREDIT_CODES = ("SCJG-0001", "SWJ-0001", "RSJ-0001")


def publish_credit_entries(settings, *, quiet: bool) -> None:
    """The stewards publish the credit datasets (the sandbox takes jobs on published entries
    only) and every open-data entry in the catalog (open type other than none, so the CKAN and
    DCAT routes list them); publication is refused below 100 % encryption coverage
    (``pipelines._keyops.publication_refusal``, the rule of ``govdx catalog publish``)."""
    import catalog
    from pipelines import Lakehouse
    from pipelines._keyops import publication_refusal

    lake = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)
    with catalog_session(settings) as s:
        open_codes = sorted(
            ds.code
            for ds in catalog.list_datasets(session=s)
            if ds.open_type != "none" and ds.code not in CREDIT_CODES
        )
        for code in (*CREDIT_CODES, *open_codes):
            refusal = publication_refusal(s, code, lakehouse=lake)
            if refusal:
                raise catalog.CatalogError(refusal)
            catalog.set_published(session=s, code=code, published=True)
    if not quiet:
        console.print(
            f"[bold]catalog[/] stewards publish {', '.join(CREDIT_CODES)} "
            "(encryption coverage 100 %)"
            + (f" and {len(open_codes)} open-data entries (开放目录)" if open_codes else "")
        )


def catalog_summary(settings) -> list[dict]:
    """Per dataset: entry, current version, rows, quarantined rows, lineage upstream."""
    import catalog

    out = []
    with catalog_session(settings) as s:
        for ds in catalog.list_datasets(session=s):
            v = catalog.current_version(session=s, code=ds.code)
            graph = catalog.lineage_graph(session=s, code=ds.code)
            out.append(
                {
                    "code": ds.code,
                    "title": ds.title,
                    "department": ds.department_code,
                    "share_type": ds.share_type,
                    "grade": ds.grade,
                    "version": v.delta_version if v else None,
                    "rows": v.row_count if v else 0,
                    "quarantined": v.quarantined_count if v else 0,
                    "upstream": sorted({f"{u.namespace}/{u.name}" for u in graph.upstream}),
                }
            )
    return out


def print_summary(summary: list[dict]) -> None:
    """Catalog table, then one lineage line per dataset."""
    from govdx import GRADE_ZH, SHARE_TYPE_ZH

    t = Table(title="catalog (政务信息资源目录) after the demo")
    for col in ("code", "title", "share", "grade", "ver", "rows", "quarantined"):
        t.add_column(col, overflow="fold")
    for d in summary:
        t.add_row(
            d["code"],
            d["title"],
            SHARE_TYPE_ZH.get(d["share_type"], d["share_type"]),
            GRADE_ZH.get(d["grade"], d["grade"]),
            str(d["version"]),
            f"{d['rows']:,}",
            f"{d['quarantined']:,}",
        )
    console.print(t)
    console.print("[bold]lineage[/] (raw file in the landing zone → lakehouse table):")
    for d in summary:
        for u in d["upstream"]:
            console.print(f"  {u[:48]}… → {d['code']}", highlight=False)
    console.print(
        "Next: [cyan]govdx catalog show SCJG-0001[/], [cyan]govdx quarantine show "
        "SCJG-0001[/], [cyan]govdx lineage show SCJG-0001[/], [cyan]govdx audit "
        "verify[/]"
    )
