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

    Counts by field and rule (the check that failed) cover every row of the selected run (by
    default the current version's run; other runs with rejects, such as one that failed its
    quality gate, are listed with their ids). Example: govdx quarantine show SCJG-0001 --limit 50
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
    # every run with rejects, newest first (the quarantine table is appended run by run)
    runs: dict[str, int] = {}
    for rid in [] if table is None else table["run_id"].to_pylist():
        runs[rid] = runs.get(rid, 0) + 1
    others = [(rid, n) for rid, n in reversed(runs.items()) if rid != run_id]
    if table is not None and run_id:
        table = table.filter(pc.equal(table["run_id"], run_id))
    rows = [] if table is None else table.drop_columns(["value_encrypted"]).to_pylist()
    counts = reject_counts(rows)
    if as_json:
        print_json(
            {
                "dataset": code,
                "run_id": run_id,
                "total": len(rows),
                "by_rule": counts,
                "by_reason": _by_reason(rows),
                "other_runs": [{"run_id": rid, "rejects": n} for rid, n in others],
                "rows": rows[:limit],
            }
        )
        return
    console.print(f"[bold]{code}[/] quarantine (隔离区), run {run_id}: {len(rows)} reject(s)")
    if others and not run:
        listed = ", ".join(f"{rid} ({n})" for rid, n in others[:5])
        console.print(
            f"other runs with rejects, newest first (e.g. a run that failed its quality gate): "
            f"{listed} — show one with --run RUN_ID",
            highlight=False,
        )
    summary = Table("field", "rule (规则)", "count", "example reason (原因示例)")
    for c in counts:
        summary.add_row(c["field"], c["rule"], str(c["count"]), c["example"])
    console.print(summary)
    detail = Table("row", "field", "value (protected fields masked)", "reason")
    for r in rows[:limit]:
        detail.add_row(str(r["row"]), r["field"], r["value_masked"] or "", r["reason"])
    console.print(detail)


def reject_counts(rows: list[dict]) -> list[dict]:
    """Quarantined rows counted by (field, rule), most frequent first.

    The reason text quotes the rejected value, so counting by it gives one line per row; the
    rule (the expectation or cast that failed) groups them. Rows without a rule (older runs)
    count by their reason.

    Args:
        rows: quarantine rows as dicts (``field``, ``rule``, ``reason``).

    Returns:
        ``[{"field", "rule", "count", "example"}]``: ``example`` is the first reason of the group.
    """
    groups: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = (r.get("field") or "— (row)", r.get("rule") or r["reason"])
        g = groups.setdefault(key, {"field": key[0], "rule": key[1], "count": 0,
                                    "example": r["reason"]})  # fmt: skip
        g["count"] += 1
    return sorted(groups.values(), key=lambda g: (-g["count"], g["field"], g["rule"]))


def _by_reason(rows: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r["reason"]] = out.get(r["reason"], 0) + 1
    return out
