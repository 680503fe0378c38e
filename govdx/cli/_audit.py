"""``govdx audit``: verify and read the platform audit log (审计日志).

Examples::

    govdx audit verify --json
    govdx audit show --action job.approve --limit 20
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from govdx import GovdxError
from govdx.cli._common import console, fail, get_settings, print_json

audit_app = typer.Typer(
    help="Audit log (审计日志): SM3 hash chain with SM2-signed checkpoints.\n\n"
    "Examples:\n\n  govdx audit verify\n\n  govdx audit show --actor bank --json",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (UTF-8) for scripts.")]


@audit_app.callback()
def _audit_group() -> None:
    """Audit log (审计日志)."""


def _auditor():
    import catalog
    from sandbox import Auditor

    settings = get_settings()
    settings.ensure_home()
    catalog.migrate(settings.catalog_db_url)
    return Auditor(catalog.open_catalog(settings.catalog_db_url), settings.keys_dir)


@audit_app.command("verify")
def verify_command(as_json: JsonOpt = False) -> None:
    """Verify every entry hash, link and checkpoint signature; exit 1 when tampered."""
    try:
        report = _auditor().verify()
    except GovdxError as exc:
        fail(exc)
    doc = {
        "ok": report.ok,
        "entries_checked": report.entries_checked,
        "checkpoints_checked": report.checkpoints_checked,
        "first_bad_seq": report.first_bad_seq,
        "problem": report.problem,
        "message": report.message,
    }
    if as_json:
        print_json(doc)
    else:
        console.print(
            ("[green]" if report.ok else "[red]")
            + report.message
            + "[/]"
            + f" — {report.entries_checked} entries, {report.checkpoints_checked} checkpoints"
        )
    if not report.ok:
        raise typer.Exit(1)
    unanchored = _unanchored(report)
    if unanchored and not as_json:
        console.print(
            f"[yellow]note:[/] the last {unanchored} entr{'y is' if unanchored == 1 else 'ies are'} "
            "after the newest signed checkpoint: deleting them from the tail would not show here. "
            "Run `govdx audit checkpoint` and keep its output (seq, hash) outside this machine."
        )


def _unanchored(report) -> int:
    """Entries after the newest signed checkpoint (not protected against tail truncation)."""
    auditor = _auditor()
    cps = auditor.store.checkpoints()
    last = auditor.store.last()
    if last is None:
        return 0
    return last.seq - (cps[-1].seq if cps else 0)


@audit_app.command("checkpoint")
def checkpoint_command(as_json: JsonOpt = False) -> None:
    """Sign a checkpoint (SM2) over the newest entry now (审计检查点).

    A checkpoint anchors every entry up to it: an edit, deletion, insertion or reordering before
    it is detected by `govdx audit verify`. Keep the printed (seq, entry hash) outside this
    machine (a ticket, a notary, a second system): a log cut back past that seq is then visible.
    Checkpoints are also signed automatically every 10 entries.
    """
    try:
        cp = _auditor().chain.checkpoint()
    except GovdxError as exc:
        fail(exc)
        return
    doc = {
        "seq": cp.seq,
        "entry_hash": cp.entry_hash,
        "at": cp.at.isoformat(),
        "public_key": cp.public_key,
    }
    if as_json:
        print_json(doc)
    else:
        console.print(f"checkpoint signed at seq {cp.seq}, entry hash {cp.entry_hash}")


@audit_app.command("show")
def show_command(
    action: Annotated[
        str | None, typer.Option("--action", help="Only this action (e.g. job.approve).")
    ] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this actor.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Newest N entries.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The newest audit entries (newest last)."""
    try:
        entries = _auditor().store.entries()
    except GovdxError as exc:
        fail(exc)
    rows = [
        e
        for e in entries
        if (action is None or e.action == action) and (actor is None or e.actor == actor)
    ]
    rows = rows[-limit:] if limit > 0 else rows
    docs = [
        {
            "seq": e.seq,
            "at": e.at.isoformat(),
            "actor": e.actor,
            "action": e.action,
            "subject": e.subject,
            "details": e.details,
            "entry_hash": e.entry_hash,
        }
        for e in rows
    ]
    if as_json:
        print_json(docs)
        return
    t = Table("seq", "at", "actor", "action", "subject", "details")
    for d in docs:
        t.add_row(
            str(d["seq"]),
            d["at"][:19],
            d["actor"],
            d["action"],
            d["subject"],
            json.dumps(d["details"], ensure_ascii=False)[:80],
        )
    console.print(t)
