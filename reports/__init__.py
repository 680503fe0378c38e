"""govdx analyst reports (分析报告): sharing rate, duplicate collection, quality, security coverage.

The plan behind govdx measures success with a few numbers — the share of government data
actually shared between departments (58% → 90%), the rate of data collected twice (under 10%),
100% encrypted storage of sensitive data. Each report computes them from the catalog DB (SQL
aggregates) and the lakehouse (token and schema reads, never plaintext), keeps every rate as an
exact :class:`Ratio` with its definition beside it, and renders to a terminal table, JSON, CSV,
XLSX or one self-contained HTML file with charts.

Typical use::

    import catalog, reports
    factory = catalog.open_catalog(settings.catalog_db_url)
    with factory() as s:
        rep = reports.sharing_rate(session=s, period=reports.Period.parse("2026-01..2026-03"))
    rep.figure("actual_share_rate").value          # Ratio(2, 4); .fraction == Fraction(1, 2)
    reports.write_report(rep, "html", Path("sharing-rate.html"))

Definitions of every figure: ``docs/reports.md`` and :data:`DEFINITIONS`.

Errors::

    ReportDefinitionError (govdx.DefinitionError)   unknown report/format, malformed --period
    ReportError (govdx.GovdxRuntimeError)           a query, a table read or a file write failed
"""

from reports._build import REPORT_NAMES, build_report
from reports._duplicates import MASTER_ELEMENTS, duplicate_collection
from reports._errors import ReportDefinitionError, ReportError
from reports._figures import DASH, Chart, Column, Figure, Period, Ratio, Report, Table
from reports._quality_rollup import quality_rollup
from reports._render import (
    FORMATS,
    cell_text,
    render,
    render_csv,
    render_html,
    render_json,
    render_table,
    render_xlsx,
    svg_bar_chart,
    svg_line_chart,
    to_dict,
    write_report,
)
from reports._security import security_coverage
from reports._sharing import sharing_rate

__all__ = [
    "DASH",
    "FORMATS",
    "MASTER_ELEMENTS",
    "REPORT_NAMES",
    "Chart",
    "Column",
    "Figure",
    "Period",
    "Ratio",
    "Report",
    "ReportDefinitionError",
    "ReportError",
    "Table",
    "build_report",
    "cell_text",
    "duplicate_collection",
    "quality_rollup",
    "render",
    "render_csv",
    "render_html",
    "render_json",
    "render_table",
    "render_xlsx",
    "security_coverage",
    "sharing_rate",
    "svg_bar_chart",
    "svg_line_chart",
    "to_dict",
    "write_report",
]
