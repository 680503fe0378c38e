"""``govdx quality``: GB/T 36344 quality scores per dataset and department (数据质量报告)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from govdx import GovdxError
from govdx.cli._common import catalog_session, console, fail, get_settings

quality_app = typer.Typer(
    help="Data quality reports (数据质量报告, GB/T 36344).", no_args_is_help=True
)


@quality_app.callback()
def _group() -> None:
    """Data quality reports (数据质量报告, GB/T 36344)."""


class ReportFormat(StrEnum):
    table = "table"
    json = "json"
    html = "html"


@quality_app.command("report")
def report(
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", help="Dataset code (信息资源代码); default: every dataset."),
    ] = None,
    fmt: Annotated[
        ReportFormat, typer.Option("--format", help="table, json or html.")
    ] = ReportFormat.table,
    output: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "--output",
            "-o",
            help="Write to this file (html default: quality_report.html).",
        ),
    ] = None,
) -> None:
    """Dimension scores, trend across versions and worst rules (examples masked).

    Example: govdx quality report --dataset SCJG-0001 --format html -o report.html
    """
    from quality import build_report, render_html, render_json, render_table

    settings = get_settings()
    try:
        with catalog_session(settings) as s:
            data = build_report(session=s, code=dataset, home=settings.home)
    except GovdxError as exc:
        fail(exc)
        return
    if fmt is ReportFormat.table:
        if not data["datasets"]:
            console.print("no quality results yet (尚无质量评价结果)")
            return
        render_table(data, console)
        return
    text = render_json(data) if fmt is ReportFormat.json else render_html(data)
    if output is None and fmt is ReportFormat.html:
        output = Path("quality_report.html")
    if output is None:
        typer.echo(text)
        return
    output.write_text(text, encoding="utf-8")
    console.print(f"wrote {output} ({len(text.encode()):,} bytes)")


__all__ = ["quality_app"]
