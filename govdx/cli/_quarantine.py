"""``govdx quarantine``: rows the pipeline set aside, with their reasons (sensitive values masked)."""

from __future__ import annotations

from typing import Annotated

import pyarrow.compute as pc
import typer
from rich.table import Table

from govdx import GovdxError
from govdx.cli._common import catalog_session, console, fail, get_settings, print_json

quarantine_app = typer.Typer(
    help="Quarantined rows (隔离区) and their reasons.", no_args_is_help=True
)


@quarantine_app.command("show")
def show(
    code: Annotated[str, typer.Argument(help="Dataset code (信息资源代码), e.g. SCJG-0001.")],
    limit: Annotated[int, typer.Option(help="Rows to list (the summary counts all).")] = 20,
    run: Annotated[str | None, typer.Option(help="Only this lineage run id.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show quarantined rows of a dataset: source row, field, masked value, reason.

    Counts by reason cover every row of the selected runs (by default the current version's
    run). Example: govdx quarantine show SCJG-0001 --limit 50
    """
    import catalog
    from pipelines import Lakehouse

    settings = get_settings()
    try:
        with catalog_session(settings) as s:
            ds = catalog.get_dataset(session=s, code=code)
            name = ds.name
            current = catalog.current_version(session=s, code=code)
            run_id = run or (current.run_id if current else None)
    except GovdxError as exc:
        fail(exc)
        return
    table = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir).read_quarantine(name)
    if table is not None and run_id:
        table = table.filter(pc.equal(table["run_id"], run_id))
    rows = [] if table is None else table.drop_columns(["value_encrypted"]).to_pylist()
    by_reason: dict[str, int] = {}
    for r in rows:
        by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + 1
    if as_json:
        print_json(
            {
                "dataset": code,
                "run_id": run_id,
                "total": len(rows),
                "by_reason": by_reason,
                "rows": rows[:limit],
            }
        )
        return
    console.print(f"[bold]{code}[/] quarantine (隔离区), run {run_id}: {len(rows)} reject(s)")
    summary = Table("reason (原因)", "count")
    for reason, n in sorted(by_reason.items(), key=lambda kv: -kv[1]):
        summary.add_row(reason, str(n))
    console.print(summary)
    detail = Table("row", "field", "value (protected fields masked)", "reason")
    for r in rows[:limit]:
        detail.add_row(str(r["row"]), r["field"], r["value_masked"] or "", r["reason"])
    console.print(detail)
