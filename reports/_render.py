"""Renderings of a :class:`~reports._figures.Report`: terminal table, JSON, CSV, XLSX and HTML.

- ``table``: rich tables for the terminal, each figure with its definition beside it.
- ``json``: everything, ratios as ``{numerator, denominator, fraction, value, display}``.
- ``csv``: the first (per-department) table, UTF-8 with BOM so spreadsheet programs read the
  Chinese labels; each ratio becomes four columns (display, numerator, denominator, value).
- ``xlsx`` (openpyxl): a Summary sheet (figures + definitions), one sheet per table with ratios
  as numbers formatted ``0.0%`` beside their numerator and denominator, and a Definitions sheet.
- ``html``: one self-contained file — inline CSS and inline SVG charts generated here, no
  script, no font or image from elsewhere, nothing fetched — for people who never open a
  terminal.
"""

from __future__ import annotations

import csv
import html
import io
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

from reports._errors import ReportDefinitionError, ReportError
from reports._figures import DASH, Chart, Ratio, Report, Table

FORMATS = ("table", "json", "csv", "xlsx", "html")
PALETTE = ["#1f6feb", "#d1242f", "#1a7f37", "#bf8700", "#8250df", "#0a7c86", "#cf222e", "#57606a"]


# --- cells ----------------------------------------------------------------------------------
def cell_text(value: Any) -> str:
    """Display text of a cell: ratios ``66.7% (2 of 3)``, fractions whole or to 3 decimals,
    None ``—``."""
    if value is None:
        return DASH
    if isinstance(value, Ratio):
        return str(value)
    if isinstance(value, Fraction):
        return f"{value.numerator:,}" if value.denominator == 1 else f"{float(value):,.3f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, Ratio):
        return value.to_dict()
    if isinstance(value, Fraction):
        return {"fraction": f"{value.numerator}/{value.denominator}", "value": float(value)}
    return value


def to_dict(report: Report) -> dict[str, Any]:
    """JSON-ready dict of the whole report (what ``--format json`` prints)."""
    return {
        "report": report.name,
        "title": report.title,
        "period": report.period.to_dict(),
        "department": report.department,
        "generated_at": report.generated_at.isoformat(),
        "figures": [
            {
                "key": f.key,
                "label": f.label,
                "value": _json_value(f.value),
                "display": cell_text(f.value),
                "unit": f.unit,
                "definition": f.definition,
            }
            for f in report.figures
        ],
        "tables": [
            {
                "key": t.key,
                "title": t.title,
                "columns": [
                    {"key": c.key, "label": c.label, "definition": c.definition} for c in t.columns
                ],
                "rows": [{c.key: _json_value(r.get(c.key)) for c in t.columns} for r in t.rows],
            }
            for t in report.tables
        ],
        "notes": report.notes,
    }


def render_json(report: Report) -> str:
    """The report as JSON text (UTF-8, Chinese kept readable)."""
    return json.dumps(to_dict(report), ensure_ascii=False, indent=2)


# --- terminal ----------------------------------------------------------------------------------
def render_table(report: Report, console: Any) -> None:
    """Print the report as rich tables on ``console`` (a ``rich.console.Console``)."""
    from rich.table import Table as RichTable

    console.print(
        f"[bold]{report.title}[/] — period {report.period.label}"
        + (f", department {report.department}" if report.department else "")
    )
    figs = RichTable(show_header=True, header_style="bold")
    figs.add_column("Figure (指标)")
    figs.add_column("Value (数值)", justify="right")
    figs.add_column("Definition (口径)", overflow="fold")
    for f in report.figures:
        figs.add_row(
            f.label,
            cell_text(f.value) + (f" {f.unit}" if f.unit and f.value is not None else ""),
            f.definition,
        )
    console.print(figs)
    for t in report.tables:
        rt = RichTable(title=t.title, show_header=True, header_style="bold")
        for c in t.columns:
            rt.add_column(c.label, overflow="fold")
        for r in t.rows:
            rt.add_row(*(cell_text(r.get(c.key)) for c in t.columns))
        if not t.rows:
            rt.add_row(*(["(none)"] + [""] * (len(t.columns) - 1)))
        console.print(rt)
    for n in report.notes:
        console.print(f"· {n}", highlight=False)


#: Width of a table written to a file, characters (the definition column folds within it).
TABLE_TEXT_WIDTH = 120


def _render_table_text(report: Report, width: int = TABLE_TEXT_WIDTH) -> str:
    """The terminal tables of :func:`render_table` as plain text (no ANSI codes), ``width``
    characters wide, for ``write_report(report, "table", path)``."""
    from rich.console import Console

    buf = io.StringIO()
    console = Console(
        file=buf, width=width, color_system=None, force_terminal=False, highlight=False
    )
    render_table(report, console)
    return buf.getvalue()


# --- CSV -----------------------------------------------------------------------------------
def render_csv(report: Report, table: str | None = None) -> str:
    """The per-department table (or ``table``) as CSV text; ratios in four columns each.

    Raises:
        ReportDefinitionError: no table of that name.
    """
    t = _pick(report, table)
    ratio_cols = {c.key for c in t.columns if any(isinstance(r.get(c.key), Ratio) for r in t.rows)}
    header: list[str] = []
    for c in t.columns:
        header.append(c.key)
        if c.key in ratio_cols:
            header += [f"{c.key}_numerator", f"{c.key}_denominator", f"{c.key}_value"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(header)
    for r in t.rows:
        out: list[Any] = []
        for c in t.columns:
            v = r.get(c.key)
            if c.key in ratio_cols:
                ratio = v if isinstance(v, Ratio) else Ratio(0, 0)
                out += [
                    ratio.percent(),
                    ratio.numerator,
                    ratio.denominator,
                    "" if ratio.value is None else repr(ratio.value),
                ]
            elif isinstance(v, Fraction):
                out.append(repr(float(v)))
            else:
                out.append("" if v is None else v)
        w.writerow(out)
    return buf.getvalue()


def _pick(report: Report, table: str | None) -> Table:
    if not report.tables:
        raise ReportDefinitionError(f"report {report.name} has no table")
    if table is None:
        return report.tables[0]
    try:
        return report.table(table)
    except KeyError:
        raise ReportDefinitionError(
            f"report {report.name} has no table {table!r} "
            f"(tables: {[t.key for t in report.tables]})"
        ) from None


# --- XLSX ----------------------------------------------------------------------------------------
_BAD_SHEET = str.maketrans({c: "_" for c in "[]:*?/\\"})


def render_xlsx(report: Report) -> bytes:
    """The report as an XLSX workbook (bytes): Summary, one sheet per table, Definitions.

    Raises:
        ReportError: openpyxl failed to build the workbook.
    """
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    bold = Font(bold=True)
    try:
        wb = Workbook()
        ws = wb.active
        ws.title = "Summary"
        ws.append([report.title])
        ws["A1"].font = Font(bold=True, size=14)
        ws.append(["period (统计期)", report.period.label])
        ws.append(["department (部门)", report.department or "all (全部)"])
        ws.append(["generated at (生成时间, UTC)", report.generated_at.isoformat()])
        ws.append([])
        ws.append(
            [
                "figure (指标)",
                "display (显示值)",
                "value (数值)",
                "numerator (分子)",
                "denominator (分母)",
                "unit (单位)",
                "definition (口径)",
            ]
        )
        for c in ws[ws.max_row]:
            c.font = bold
        for f in report.figures:
            v = f.value
            if isinstance(v, Ratio):
                ws.append(
                    [f.label, v.percent(), v.value, v.numerator, v.denominator, "", f.definition]
                )
                ws.cell(ws.max_row, 3).number_format = "0.0%"
            else:
                num = (
                    float(v)
                    if isinstance(v, (Fraction, float, int)) and not isinstance(v, bool)
                    else None
                )
                ws.append([f.label, cell_text(v), num, None, None, f.unit, f.definition])
        for n in report.notes:
            ws.append([n])
        _widths(ws, [44, 18, 12, 12, 12, 10, 90])
        used: set[str] = {"Summary", "Definitions"}
        for t in report.tables:
            name = t.key.translate(_BAD_SHEET)[:31]
            while name in used:
                name = name[:28] + f"_{len(used)}"
            used.add(name)
            sh = wb.create_sheet(name)
            ratio_cols = {
                c.key for c in t.columns if any(isinstance(r.get(c.key), Ratio) for r in t.rows)
            }
            header: list[str] = []
            for c in t.columns:
                header.append(c.label)
                if c.key in ratio_cols:
                    header += ["numerator (分子)", "denominator (分母)"]
            sh.append(header)
            for c in sh[1]:
                c.font = bold
                c.alignment = Alignment(wrap_text=True)
            for r in t.rows:
                out: list[Any] = []
                pct_cols: list[int] = []
                for c in t.columns:
                    v = r.get(c.key)
                    if c.key in ratio_cols:
                        ratio = v if isinstance(v, Ratio) else Ratio(0, 0)
                        pct_cols.append(len(out) + 1)
                        out += [
                            ratio.value if ratio.value is not None else DASH,
                            ratio.numerator,
                            ratio.denominator,
                        ]
                    elif isinstance(v, Fraction):
                        out.append(float(v))
                    elif isinstance(v, bool):
                        out.append("yes" if v else "no")
                    else:
                        out.append(DASH if v is None else v)
                sh.append(out)
                for col in pct_cols:
                    sh.cell(sh.max_row, col).number_format = "0.0%"
            sh.freeze_panes = "A2"
            _widths(sh, [max(12, min(48, len(h) + 4)) for h in header])
        d = wb.create_sheet("Definitions")
        d.append(["figure or column (指标/列)", "definition (口径)"])
        for c in d[1]:
            c.font = bold
        seen: set[str] = set()
        for key, label, definition in _definitions(report):
            if definition and key not in seen:
                seen.add(key)
                d.append([label, definition])
        _widths(d, [44, 120])
        buf = io.BytesIO()
        wb.save(buf)
    except (ValueError, TypeError) as exc:
        raise ReportError(f"report {report.name}: cannot build the XLSX workbook: {exc}") from exc
    return buf.getvalue()


def _widths(ws: Any, widths: list[int]) -> None:
    from openpyxl.utils import get_column_letter

    for i, w in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(i)].width = w


def _definitions(report: Report) -> list[tuple[str, str, str]]:
    out = [(f.key, f.label, f.definition) for f in report.figures]
    for t in report.tables:
        out += [(c.key, c.label, c.definition) for c in t.columns]
    return out


# --- HTML + SVG -------------------------------------------------------------------------------
def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _fmt_axis(v: float, percent: bool) -> str:
    return f"{v * 100:.0f}%" if percent else f"{v:,.2f}"


def svg_bar_chart(chart: Chart, *, width: int = 760, height: int = 300) -> str:
    """A grouped vertical bar chart as inline SVG: one group per category, one bar per series.

    Values are shares (0..1, axis 0..100 %) when ``chart.percent``; a missing value (0 of 0)
    draws no bar and writes ``—`` at the base.
    """
    left, right, top, bottom = 56, 16, 28, 64
    cats = chart.categories or [DASH]
    names = list(chart.series)
    vals = [v for s in chart.series.values() for v in s if v is not None]
    vmax = 1.0 if chart.percent else (max(vals) if vals else 1.0) or 1.0
    plot_w, plot_h = width - left - right, height - top - bottom
    group_w = plot_w / len(cats)
    bar_w = max(2.0, min(36.0, (group_w - 10) / max(1, len(names))))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-label="{_esc(chart.title)}">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    for k in range(5):  # grid and axis labels
        frac = k / 4
        y = top + plot_h * (1 - frac)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
            f'stroke="#d0d7de" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#57606a">{_fmt_axis(vmax * frac, chart.percent)}</text>'
        )
    for i, cat in enumerate(cats):
        gx = left + i * group_w + (group_w - bar_w * len(names)) / 2
        for j, name in enumerate(names):
            series = chart.series[name]
            v = series[i] if i < len(series) else None
            x = gx + j * bar_w
            if v is None:
                parts.append(
                    f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h - 3:.1f}" '
                    f'text-anchor="middle" font-size="10" fill="#57606a">{DASH}</text>'
                )
                continue
            h = plot_h * max(0.0, min(1.0, v / vmax))
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2:.1f}" '
                f'height="{h:.1f}" fill="{PALETTE[j % len(PALETTE)]}">'
                f"<title>{_esc(cat)} · {_esc(name)}: {_fmt_axis(v, chart.percent)}</title></rect>"
            )
        parts.append(
            f'<text x="{left + (i + 0.5) * group_w:.1f}" y="{top + plot_h + 16:.1f}" '
            f'text-anchor="middle" font-size="11" fill="#24292f">{_esc(cat)}</text>'
        )
    parts.append(_legend(names, left, height - 22))
    parts.append("</svg>")
    return "".join(parts)


def svg_line_chart(chart: Chart, *, width: int = 760, height: int = 300) -> str:
    """A line chart (trend over periods) as inline SVG; gaps where a value is missing."""
    left, right, top, bottom = 56, 16, 28, 64
    cats = chart.categories
    names = list(chart.series)
    vals = [v for s in chart.series.values() for v in s if v is not None]
    vmax = 1.0 if chart.percent else (max(vals) if vals else 1.0) or 1.0
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-label="{_esc(chart.title)}">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    for k in range(5):
        frac = k / 4
        y = top + plot_h * (1 - frac)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
            f'stroke="#d0d7de" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#57606a">{_fmt_axis(vmax * frac, chart.percent)}</text>'
        )
    if not cats:
        parts.append(
            f'<text x="{width / 2:.0f}" y="{top + plot_h / 2:.0f}" text-anchor="middle" '
            f'font-size="13" fill="#57606a">no data in the period (本期无数据)</text>'
        )
    step = plot_w / max(1, len(cats) - 1) if len(cats) > 1 else 0
    xs = [left + (i * step if len(cats) > 1 else plot_w / 2) for i in range(len(cats))]
    every = max(1, len(cats) // 12)
    for i, cat in enumerate(cats):
        if i % every == 0:
            parts.append(
                f'<text x="{xs[i]:.1f}" y="{top + plot_h + 16:.1f}" text-anchor="middle" '
                f'font-size="11" fill="#24292f">{_esc(cat)}</text>'
            )
    for j, name in enumerate(names):
        color = PALETTE[j % len(PALETTE)]
        seg: list[str] = []
        for i, v in enumerate(chart.series[name]):
            if v is None:
                if len(seg) > 1:
                    parts.append(
                        f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                        f'points="{" ".join(seg)}"/>'
                    )
                seg = []
                continue
            y = top + plot_h * (1 - max(0.0, min(1.0, v / vmax)))
            seg.append(f"{xs[i]:.1f},{y:.1f}")
            parts.append(
                f'<circle class="point" cx="{xs[i]:.1f}" cy="{y:.1f}" r="3.5" '
                f'fill="{color}"><title>{_esc(cats[i])} · {_esc(name)}: '
                f"{_fmt_axis(v, chart.percent)}</title></circle>"
            )
        if len(seg) > 1:
            parts.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                f'points="{" ".join(seg)}"/>'
            )
    parts.append(_legend(names, left, height - 22))
    parts.append("</svg>")
    return "".join(parts)


def _legend(names: list[str], x0: float, y: float) -> str:
    out, x = [], x0
    for j, name in enumerate(names):
        out.append(
            f'<rect x="{x:.0f}" y="{y - 10:.0f}" width="12" height="12" '
            f'fill="{PALETTE[j % len(PALETTE)]}"/>'
            f'<text x="{x + 16:.0f}" y="{y:.0f}" font-size="12" fill="#24292f">'
            f"{_esc(name)}</text>"
        )
        x += 28 + 7.5 * len(name)
    return "".join(out)


_CSS = """
body{font-family:"Noto Sans CJK SC","Source Han Sans SC","Microsoft YaHei","PingFang SC",
 system-ui,sans-serif;margin:24px auto;max-width:1120px;color:#24292f;background:#f6f8fa}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px}
.meta{color:#57606a;margin-bottom:16px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:12px 16px;
 flex:1 1 300px}
.card .v{font-size:28px;font-weight:700;margin:4px 0}.card .n{color:#57606a;font-size:13px}
.card .d{color:#57606a;font-size:12px;margin-top:6px}
table{border-collapse:collapse;background:#fff;width:100%;font-size:13px}
th,td{border:1px solid #d0d7de;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#eaeef2}td.num{text-align:right;white-space:nowrap}
figure{background:#fff;border:1px solid #d0d7de;border-radius:8px;margin:12px 0;padding:8px}
figcaption{font-weight:600;margin:4px 8px}.notes li{color:#57606a}
dl.defs dt{font-weight:600;margin-top:8px}dl.defs dd{margin-left:16px;color:#424a53}
"""


def render_html(report: Report) -> str:
    """One self-contained HTML document: headline cards, SVG charts, tables, definitions."""
    p: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{_esc(report.title)} — govdx</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(report.title)}</h1>",
        f'<div class="meta">Period (统计期): {_esc(report.period.label)} · Department (部门): '
        f"{_esc(report.department or 'all (全部)')} · Generated (生成时间): "
        f"{_esc(report.generated_at.strftime('%Y-%m-%d %H:%M UTC'))}</div>",
        '<div class="cards">',
    ]
    for f in report.figures:
        v = f.value
        sub = f"{v.numerator:,} of {v.denominator:,}" if isinstance(v, Ratio) else _esc(f.unit)
        big = v.percent() if isinstance(v, Ratio) else cell_text(v)
        p.append(
            f'<div class="card" id="fig-{_esc(f.key)}"><div>{_esc(f.label)}</div>'
            f'<div class="v">{_esc(big)}</div><div class="n">{sub}</div>'
            f'<div class="d">{_esc(f.definition)}</div></div>'
        )
    p.append("</div>")
    if report.notes:
        p.append(
            '<ul class="notes">' + "".join(f"<li>{_esc(n)}</li>" for n in report.notes) + "</ul>"
        )
    if report.charts:
        p.append("<h2>Charts (图表)</h2>")
    for c in report.charts:
        svg = svg_line_chart(c) if c.kind == "line" else svg_bar_chart(c)
        p.append(
            f'<figure id="chart-{_esc(c.key)}">{svg}<figcaption>{_esc(c.title)}'
            f"</figcaption></figure>"
        )
    for t in report.tables:
        p.append(f'<h2 id="table-{_esc(t.key)}">{_esc(t.title)}</h2>')
        p.append(_html_table(t))
    p.append('<h2>Definitions (指标口径)</h2><dl class="defs">')
    seen: set[str] = set()
    for key, label, definition in _definitions(report):
        if definition and key not in seen:
            seen.add(key)
            p.append(f"<dt>{_esc(label)}</dt><dd>{_esc(definition)}</dd>")
    p.append("</dl></body></html>")
    return "\n".join(p)


def _html_table(t: Table) -> str:
    head = "".join(f'<th title="{_esc(c.definition)}">{_esc(c.label)}</th>' for c in t.columns)
    body = []
    for r in t.rows:
        cells = []
        for c in t.columns:
            v = r.get(c.key)
            cls = ' class="num"' if isinstance(v, (Ratio, Fraction, int, float)) else ""
            cells.append(f"<td{cls}>{_esc(cell_text(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not t.rows:
        body.append(f'<tr><td colspan="{len(t.columns)}">(none 无)</td></tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# --- files -------------------------------------------------------------------------------------
def render(report: Report, fmt: str) -> str | bytes:
    """The report in ``fmt`` (``json``, ``csv``, ``xlsx`` → bytes, ``html``, ``table`` → the
    terminal tables as plain text, :data:`TABLE_TEXT_WIDTH` characters wide, no ANSI codes).

    Raises:
        ReportDefinitionError: ``fmt`` is unknown.
    """
    if fmt == "table":
        return _render_table_text(report)
    if fmt == "json":
        return render_json(report)
    if fmt == "csv":
        return render_csv(report)
    if fmt == "xlsx":
        return render_xlsx(report)
    if fmt == "html":
        return render_html(report)
    raise ReportDefinitionError(
        f"format {fmt!r} cannot be written to a file (use one of table, json, csv, xlsx, html)"
    )


def write_report(report: Report, fmt: str, path: Path) -> int:
    """Write the report in ``fmt`` to ``path``; returns bytes written.

    CSV is written UTF-8 with a byte-order mark (spreadsheet programs then read Chinese);
    ``table`` is the terminal tables as plain UTF-8 text (see :func:`render`).

    Raises:
        ReportDefinitionError: bad format. ReportError: the file cannot be written.
    """
    data = render(report, fmt)
    raw = data if isinstance(data, bytes) else data.encode("utf-8-sig" if fmt == "csv" else "utf-8")
    try:
        Path(path).write_bytes(raw)
    except OSError as exc:
        raise ReportError(f"cannot write report file {path}: {exc.strerror}") from exc
    return len(raw)
