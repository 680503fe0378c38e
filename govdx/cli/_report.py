"""``govdx report NAME``: analyst reports (分析报告) as tables, JSON, CSV, XLSX or HTML.

govdx report sharing-rate --period 2026-01..2026-03
govdx report duplicate-collection --department RSJ --format xlsx
govdx report security-coverage --format html --out security.html
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from govdx import GovdxError
from govdx.cli._common import catalog_session, console, fail, get_settings


class ReportName(StrEnum):
    sharing_rate = "sharing-rate"
    duplicate_collection = "duplicate-collection"
    quality = "quality"
    security_coverage = "security-coverage"


class ReportFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    xlsx = "xlsx"
    html = "html"


def report_command(
    name: Annotated[ReportName, typer.Argument(help="Which report (报告名称).")],
    period: Annotated[
        str | None,
        typer.Option(
            "--period",
            help="FROM..TO, each YYYY, YYYY-MM or YYYY-MM-DD, both inclusive "
            "(统计期); one side may be empty. Default: all time.",
        ),
    ] = None,
    department: Annotated[
        str | None,
        typer.Option("--department", help="Provider department code (部门代码); default: all."),
    ] = None,
    fmt: Annotated[
        ReportFormat,
        typer.Option(
            "--format",
            help="table (terminal unless --out: plain text), json (stdout unless --out), csv, "
            "xlsx or html (written to a file).",
        ),
    ] = ReportFormat.table,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output file for table (plain text)/json/csv/xlsx/html (default: "
            "./<report>.<format> for csv, xlsx and html).",
        ),
    ] = None,
) -> None:
    """Sharing rate, duplicate collection, quality and security coverage, each figure with its
    definition (口径) beside it.

    Example: govdx report sharing-rate --period 2026-01..2026-03 --format html
    """
    import catalog
    from pipelines import Lakehouse
    from reports import Period, build_report, render_json, render_table, write_report

    settings = get_settings()
    try:
        p = Period.parse(period)
        lake = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)
        verify = None
        if name is ReportName.security_coverage:
            from sandbox import Auditor

            catalog.migrate(settings.catalog_db_url)
            factory = catalog.open_catalog(settings.catalog_db_url)
            verify = Auditor(factory, settings.keys_dir).verify
        with catalog_session(settings) as s:
            rep = build_report(
                name.value,
                session=s,
                lakehouse=lake,
                period=p,
                department=department,
                verify_audit=verify,
            )
    except GovdxError as exc:
        fail(exc)
        return
    if fmt is ReportFormat.table and out is None:
        render_table(rep, console)
        return
    if fmt is ReportFormat.json and out is None:
        typer.echo(render_json(rep))
        return
    path = out or Path(f"{name.value}.{fmt.value}")
    try:
        size = write_report(rep, fmt.value, path)
    except GovdxError as exc:
        fail(exc)
        return
    console.print(f"wrote {path} ({size:,} bytes)")


__all__ = ["ReportFormat", "ReportName", "report_command"]
