"""Quality reports (数据质量报告): per dataset and per department, GB/T 36344 dimension scores,
the trend across versions, and the worst rules with masked example failures.

Three renderings of one report dict (:func:`build_report`): a rich table for the terminal,
JSON, and one self-contained HTML file whose charts are inline SVG generated here (no script,
no CDN, no network), linking to the GX Data Docs of each dataset when they were written
(``<home>/quality/data_docs/<dataset name>/index.html``, see :func:`data_docs_dir`).
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quality._dimensions import Dimension

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["build_report", "data_docs_dir", "render_html", "render_json", "render_table"]

WORST_RULES = 5
DIMENSIONS = [d.value for d in Dimension]


def data_docs_dir(home: Path, name: str) -> Path:
    """Folder of a dataset's GX Data Docs under the govdx home: ``home/quality/data_docs/name``."""
    return Path(home) / "quality" / "data_docs" / name


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def build_report(*, session: Session, code: str | None = None, home: Path | None = None) -> dict:
    """Collect the quality report from the catalog.

    Args:
        session: a catalog session.
        code: one dataset code, or ``None`` for all datasets with quality results.
        home: govdx home; when given, datasets link to their Data Docs if those exist.

    Returns:
        ``{"generated_at", "datasets": [{"code", "name", "title", "department",
        "versions": [{"delta_version", "created_at", "rows_in", "rows_quarantined",
        "pass_rate", "overall", "dimensions"}], "latest", "worst_rules", "data_docs"}],
        "departments": [{"code", "name", "datasets", "overall", "dimensions"}]}``; scores are
        pass rates 0..1, ``None`` where not measured.

    Raises:
        catalog.DatasetNotFound: ``code`` is not in the catalog.
    """
    from quality._store import quality_history

    rows = quality_history(session=session, code=code)
    datasets: dict[str, dict[str, Any]] = {}
    for r in rows:
        ds = r.dataset
        entry = datasets.setdefault(
            ds.code,
            {
                "code": ds.code,
                "name": ds.name,
                "title": ds.title,
                "department": {"code": ds.department.code, "name": ds.department.name},
                "versions": [],
                "data_docs": None,
            },
        )
        entry["versions"].append(
            {
                "delta_version": r.dataset_version.delta_version,
                "created_at": r.created_at.isoformat(),
                "rows_in": r.rows_in,
                "rows_quarantined": r.rows_quarantined,
                "pass_rate": r.pass_rate,
                "overall": r.overall_score,
                "dimensions": r.dimensions,
                "_rules": r.rule_results,
            }
        )
    for entry in datasets.values():
        latest = entry["versions"][-1]
        rules = latest.pop("_rules")
        for v in entry["versions"]:
            v.pop("_rules", None)
        entry["latest"] = {
            k: latest[k] for k in ("delta_version", "pass_rate", "overall", "dimensions")
        }
        entry["worst_rules"] = [r for r in rules if r.get("failed")][:WORST_RULES]
        if home is not None:
            index = data_docs_dir(home, entry["name"]) / "index.html"
            entry["data_docs"] = index.resolve().as_uri() if index.exists() else None
    departments: dict[str, dict[str, Any]] = {}
    for entry in datasets.values():
        dep = departments.setdefault(
            entry["department"]["code"], {**entry["department"], "datasets": [], "_latest": []}
        )
        dep["datasets"].append(entry["code"])
        dep["_latest"].append(entry["latest"])
    for dep in departments.values():
        latest = dep.pop("_latest")
        dep["overall"] = _mean([x["overall"] for x in latest])
        dep["dimensions"] = {d: _mean([x["dimensions"].get(d) for x in latest]) for d in DIMENSIONS}
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "datasets": list(datasets.values()),
        "departments": list(departments.values()),
    }


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.2f}%"


def render_json(report: dict) -> str:
    """The report as JSON text (UTF-8, Chinese kept readable, 2-space indent)."""
    return json.dumps(report, ensure_ascii=False, indent=2)


def render_table(report: dict, console: Any) -> None:
    """Print the report as rich tables on ``console`` (a ``rich.console.Console``)."""
    from rich.table import Table

    dep = Table(
        "department (部门)",
        "datasets",
        "overall",
        *DIMENSIONS,
        title="Quality by department (部门数据质量)",
    )
    for d in report["departments"]:
        dep.add_row(
            f"{d['code']} {d['name']}",
            str(len(d["datasets"])),
            _pct(d["overall"]),
            *(_pct(d["dimensions"].get(x)) for x in DIMENSIONS),
        )
    console.print(dep)
    for ds in report["datasets"]:
        t = Table(
            "version",
            "rows",
            "quarantined",
            "pass rate",
            "overall",
            *DIMENSIONS,
            title=f"{ds['code']} {ds['title']} — trend (质量趋势)",
        )
        for v in ds["versions"]:
            t.add_row(
                str(v["delta_version"]),
                f"{v['rows_in']:,}",
                f"{v['rows_quarantined']:,}",
                _pct(v["pass_rate"]),
                _pct(v["overall"]),
                *(_pct(v["dimensions"].get(x)) for x in DIMENSIONS),
            )
        console.print(t)
        if ds["worst_rules"]:
            w = Table(
                "rule (规则)",
                "dimension",
                "severity",
                "failed",
                "examples (masked)",
                title="worst rules (问题最多的规则)",
            )
            for r in ds["worst_rules"]:
                w.add_row(
                    r["rule"],
                    r["dimension"],
                    r["severity"],
                    f"{r['failed']:,}",
                    ", ".join(r.get("examples") or []),
                )
            console.print(w)
        if ds.get("data_docs"):
            console.print(f"GX Data Docs: {ds['data_docs']}")


# --- HTML with inline SVG ------------------------------------------------------------------------
def _bar_chart(dims: dict[str, float | None], *, width: int = 520) -> str:
    """Horizontal bars, one per dimension, 0..100 %; unmeasured ones drawn as a grey dash."""
    row_h, label_w = 26, 120
    h = row_h * len(DIMENSIONS) + 10
    plot_w = width - label_w - 70
    parts = [
        f'<svg class="chart bars" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{h}" role="img" aria-label="dimension scores">'
    ]
    for i, d in enumerate(DIMENSIONS):
        y = 5 + i * row_h
        v = dims.get(d)
        parts.append(f'<text x="0" y="{y + 17}" font-size="13">{html.escape(d)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 4}" width="{plot_w}" height="16" fill="#eee"/>')
        if v is not None:
            color = "#2e7d32" if v >= 0.99 else "#f9a825" if v >= 0.95 else "#c62828"
            parts.append(
                f'<rect class="bar" x="{label_w}" y="{y + 4}" '
                f'width="{plot_w * max(0.0, min(1.0, v)):.1f}" height="16" '
                f'fill="{color}"><title>{html.escape(d)} {_pct(v)}</title></rect>'
            )
        parts.append(
            f'<text x="{label_w + plot_w + 6}" y="{y + 17}" font-size="12">{_pct(v)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _trend_chart(versions: list[dict[str, Any]], *, width: int = 520, height: int = 160) -> str:
    """Line of the overall score (and pass rate, dashed) across versions; y axis from the lowest
    value (at most 90 %) to 100 %."""
    pad = 36
    vals = [v["overall"] for v in versions] + [v["pass_rate"] for v in versions]
    lo = min([0.9, *vals])
    n = len(versions)

    def xy(i: int, v: float) -> tuple[float, float]:
        x = pad + (width - 2 * pad) * (i / (n - 1) if n > 1 else 0.5)
        y = height - pad + (height - 2 * pad) * -((v - lo) / (1 - lo) if lo < 1 else 1)
        return x, y

    parts = [
        f'<svg class="chart trend" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" role="img" aria-label="score trend">',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'stroke="#999"/>',
        f'<text x="2" y="{pad}" font-size="11">100%</text>',
        f'<text x="2" y="{height - pad}" font-size="11">{lo * 100:.0f}%</text>',
    ]
    for key, style in (
        ("overall", 'stroke="#1565c0"'),
        ("pass_rate", 'stroke="#6a1b9a" stroke-dasharray="4 3"'),
    ):
        pts = " ".join(
            f"{x:.1f},{y:.1f}" for x, y in (xy(i, v[key]) for i, v in enumerate(versions))
        )
        parts.append(
            f'<polyline class="line" fill="none" stroke-width="2" {style} points="{pts}"/>'
        )
        for i, v in enumerate(versions):
            x, y = xy(i, v[key])
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#333">'
                f"<title>v{v['delta_version']} {key} {_pct(v[key])}</title></circle>"
            )
    for i, v in enumerate(versions):
        x, _ = xy(i, 1.0)
        parts.append(
            f'<text x="{x - 8:.1f}" y="{height - pad + 16}" font-size="11">'
            f"v{v['delta_version']}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: dict) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG charts, no scripts, no
    external resources), UTF-8 text."""
    e = html.escape
    out = [
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">',
        "<title>数据质量报告 Data quality report</title><style>",
        "body{font-family:system-ui,'Noto Sans CJK SC',sans-serif;margin:2em;color:#222}",
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
        "padding:3px 8px;font-size:13px}th{background:#f3f3f3}section{margin-bottom:2.5em}",
        "</style></head><body>",
        "<h1>数据质量报告 Data quality report</h1>",
        f"<p>GB/T 36344-2018 dimensions; generated {e(report['generated_at'])}.</p>",
        "<h2>按部门 By department</h2><table><tr><th>部门 department</th><th>datasets</th>"
        "<th>overall</th>" + "".join(f"<th>{e(d)}</th>" for d in DIMENSIONS) + "</tr>",
    ]
    for d in report["departments"]:
        out.append(
            f"<tr><td>{e(d['code'])} {e(d['name'])}</td><td>{len(d['datasets'])}</td>"
            f"<td>{_pct(d['overall'])}</td>"
            + "".join(f"<td>{_pct(d['dimensions'].get(x))}</td>" for x in DIMENSIONS)
            + "</tr>"
        )
    out.append("</table>")
    for ds in report["datasets"]:
        out.append(f'<section id="{e(ds["code"])}"><h2>{e(ds["code"])} {e(ds["title"])}</h2>')
        out.append(
            f"<p>{e(ds['department']['name'])} · latest version "
            f"{ds['latest']['delta_version']} · overall {_pct(ds['latest']['overall'])} · "
            f"pass rate {_pct(ds['latest']['pass_rate'])}</p>"
        )
        out.append("<h3>维度得分 Dimension scores</h3>" + _bar_chart(ds["latest"]["dimensions"]))
        out.append("<h3>趋势 Trend across versions</h3>" + _trend_chart(ds["versions"]))
        if ds["worst_rules"]:
            out.append(
                "<h3>问题最多的规则 Worst rules</h3><table><tr><th>rule</th><th>dimension"
                "</th><th>severity</th><th>failed rows</th><th>examples (masked)</th></tr>"
            )
            for r in ds["worst_rules"]:
                out.append(
                    f"<tr><td>{e(r['rule'])}</td><td>{e(r['dimension'])}</td>"
                    f"<td>{e(r['severity'])}</td><td>{r['failed']:,}</td>"
                    f"<td>{e(', '.join(r.get('examples') or []))}</td></tr>"
                )
            out.append("</table>")
        if ds.get("data_docs"):
            out.append(f'<p><a href="{e(ds["data_docs"])}">GX Data Docs (验证详情)</a></p>')
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)
