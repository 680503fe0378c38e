"""``govdx catalog`` and ``govdx lineage``: read the catalog (政务信息资源目录) and its lineage.

Both groups only read; entries and versions are written by ingest runs. Human output is rich
tables; ``--json`` prints plain JSON (UTF-8, Chinese kept) built from
:func:`catalog.dataset_summary`, :func:`catalog.version_summary` and
:meth:`catalog.LineageGraph.to_dict`, the same shapes the API returns.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from govdx import GRADE_ZH, OPEN_TYPE_ZH, SHARE_TYPE_ZH, GovdxError
from govdx.cli._common import catalog_session, console, fail, get_settings, print_json

RECENT_EVENTS = 10
_SM3_HEX = re.compile(r"\b([0-9a-f]{12})[0-9a-f]{52}\b")

catalog_app = typer.Typer(
    help="Catalog entries (政务信息资源目录): fields, grades, share/open types, versions.\n\n"
    "Examples:\n\n"
    "  govdx catalog list\n\n"
    "  govdx catalog list --department SCJG --json\n\n"
    "  govdx catalog show SCJG-0001",
    no_args_is_help=True,
)
lineage_app = typer.Typer(
    help="Lineage (数据血缘) from the OpenLineage events the catalog stored.\n\n"
    "Example:\n\n"
    "  govdx lineage show SCJG-0001 --json",
    no_args_is_help=True,
)

CodeArg = Annotated[
    str, typer.Argument(help="Resource code (信息资源代码) of the entry, e.g. SCJG-0001.")
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print JSON (UTF-8) instead of tables, for scripts.")
]


@catalog_app.callback()
def _catalog_group() -> None:
    """Catalog entries (政务信息资源目录)."""


@lineage_app.callback()
def _lineage_group() -> None:
    """Lineage (数据血缘)."""


def _when(t: datetime | str | None) -> str:
    """``YYYY-MM-DD HH:MM:SSZ`` of a UTC time or its ISO 8601 text; ``—`` for None."""
    if t is None:
        return "—"
    if isinstance(t, str):
        t = datetime.fromisoformat(t)
    return t.strftime("%Y-%m-%d %H:%M:%SZ")


def _short(s: str | None, n: int = 12) -> str:
    if not s:
        return "—"
    return s if len(s) <= n else s[:n] + "…"


def _digests_shortened(s: str) -> str:
    """Shorten SM3 hex digests inside dataset names (``SCJG-0001/66c7f0f462ee….csv``)."""
    return _SM3_HEX.sub(r"\1…", s)


def _both(zh: dict[str, str], value: str) -> str:
    return f"{zh.get(value, value)} {value}"


def _yes(flag: bool) -> str:
    return "是 yes" if flag else "否 no"


# --- catalog list -------------------------------------------------------------------------------
@catalog_app.command("list")
def list_command(
    department: Annotated[
        str | None,
        typer.Option(
            "--department", "-d", help="Only entries of this department code (提供方), e.g. SCJG."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List catalog entries: code, title, department, grade, share/open type, current version.

    Examples:

      govdx catalog list

      govdx catalog list --department SCJG --json
    """
    import catalog

    try:
        with catalog_session(get_settings()) as s:
            rows = []
            for ds in catalog.list_datasets(session=s, department=department):
                cur = ds.current_version
                rows.append((catalog.dataset_summary(ds), cur.row_count if cur else None))
    except GovdxError as exc:
        fail(exc)
        return
    if as_json:
        print_json([summary | {"row_count": n} for summary, n in rows])
        return
    if not rows:
        where = f" of department {department}" if department else ""
        console.print(
            f"no catalog entries{where} (目录为空); ingest a contract first: govdx ingest"
        )
        return
    table = Table(title=f"catalog entries (目录条目): {len(rows)}")
    for col in (
        "code 代码",
        "title 名称",
        "table 表名",
        "department 提供方",
        "grade 分级",
        "share 共享",
        "open 开放",
        "version 版本",
        "rows 行数",
        "published 发布",
    ):
        table.add_column(col, overflow="fold")
    for d, n in rows:
        table.add_row(
            d["code"],
            d["title"],
            d["name"],
            f"{d['department']['name']} ({d['department']['code']})",
            _both(GRADE_ZH, d["grade"]),
            _both(SHARE_TYPE_ZH, d["share"]["type"]),
            _both(OPEN_TYPE_ZH, d["open"]["type"]),
            "—" if d["current_version"] is None else str(d["current_version"]),
            "—" if n is None else f"{n:,}",
            _yes(d["published"]),
        )
    console.print(table)


# --- catalog show -------------------------------------------------------------------------------
@catalog_app.command("show")
def show_command(code: CodeArg, as_json: JsonOpt = False) -> None:
    """Show one entry: 目录 fields, data items with grade and sensitivity, versions, lineage events.

    Versions list Delta version, row and quarantine counts and the SM3 digest of the raw file;
    the current version (what readers see) is starred.

    Examples:

      govdx catalog show SCJG-0001

      govdx catalog show SCJG-0001 --json | jq '.versions[-1]'
    """
    import catalog

    try:
        with catalog_session(get_settings()) as s:
            ds = catalog.get_dataset(session=s, code=code)
            summary = catalog.dataset_summary(ds)
            summary["tags"] = _registered_tags(ds.contract_yaml)
            data: dict[str, Any] = {
                "dataset": summary,
                "versions": [
                    catalog.version_summary(v) for v in catalog.list_versions(session=s, code=code)
                ],
                "lineage_events": [
                    catalog.lineage_event_summary(e)
                    for e in catalog.lineage_events(session=s, dataset=code)[-RECENT_EVENTS:]
                ],
            }
    except GovdxError as exc:
        fail(exc)
        return
    if as_json:
        print_json(data)
        return
    _print_entry(data["dataset"])
    _print_fields(data["dataset"]["fields"])
    _print_versions(data["versions"])
    _print_events(data["lineage_events"])


def _registered_tags(contract_yaml: str | None) -> list[str]:
    """The entry's tags (标签) as registered (the contract's ``tags``; edits through PATCH)."""
    import yaml

    try:
        doc = yaml.safe_load(contract_yaml or "") or {}
    except yaml.YAMLError:
        return []
    tags = doc.get("tags") if isinstance(doc, dict) else None
    return [str(t) for t in tags] if isinstance(tags, list) else []


def _print_entry(d: dict[str, Any]) -> None:
    share = _both(SHARE_TYPE_ZH, d["share"]["type"])
    if d["share"]["conditions"]:
        share += f" — 共享条件: {d['share']['conditions']}"
    open_ = _both(OPEN_TYPE_ZH, d["open"]["type"])
    if d["open"]["conditions"]:
        open_ += f" — 开放条件: {d['open']['conditions']}"
    published = _yes(d["published"]) + (f" ({_when(d['published_at'])})" if d["published"] else "")
    table = Table(title=f"{d['code']} {d['title']}", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in (
        ("信息资源代码 code", d["code"]),
        ("资源名称 title", d["title"]),
        ("表名 table", d["name"]),
        ("提供方 department", f"{d['department']['name']} ({d['department']['code']})"),
        ("摘要 summary", d["summary"] or "—"),
        ("标签 tags", ", ".join(d.get("tags") or []) or "—"),
        ("格式 format", d["format"]),
        ("共享类型 share type", share),
        ("开放类型 open type", open_),
        ("更新周期 update cycle", d["update_cycle"]),
        ("分级 grade", _both(GRADE_ZH, d["grade"])),
        ("发布 published", published),
        (
            "当前版本 current version",
            "—" if d["current_version"] is None else str(d["current_version"]),
        ),
    ):
        table.add_row(key, value)
    console.print(table)


def _print_fields(fields: list[dict[str, Any]]) -> None:
    table = Table(title=f"fields 信息项: {len(fields)}")
    for col in (
        "#",
        "name",
        "title 中文名称",
        "type",
        "required 必填",
        "element 数据元",
        "grade 分级",
        "敏感 sensitive",
        "protected 加密",
    ):
        table.add_column(col, overflow="fold")
    for f in fields:
        table.add_row(
            str(f["position"]),
            f["name"],
            f["title"] or "—",
            f["type"] + (f" ({f['unit']})" if f["unit"] else ""),
            "✓" if f["required"] else "",
            f["element"] or "",
            _both(GRADE_ZH, f["grade"]),
            "敏感 sensitive"
            if f["sensitive"]
            else ("一般 general" if f["pi"] == "general" else ""),
            "SM4 encrypted 加密存储" if f["protected"] else "plaintext 明文",
        )
    console.print(table)


def _print_versions(versions: list[dict[str, Any]]) -> None:
    if not versions:
        console.print("versions 版本: none yet (尚无版本)")
        return
    table = Table(title=f"versions 版本: {len(versions)} (* = current 当前)")
    for col in (
        "version",
        "rows 行数",
        "quarantined 隔离",
        "SM3 digest",
        "source 源文件",
        "bytes",
        "run",
        "engine",
        "created (UTC)",
    ):
        table.add_column(col, overflow="fold")
    for v in versions:
        table.add_row(
            f"{v['delta_version']}{' *' if v['current'] else ''}",
            f"{v['row_count']:,}",
            f"{v['quarantined_count']:,}",
            _short(v["source_digest"]),
            v["source_name"],
            f"{v['source_bytes']:,}",
            _short(v["run_id"], 8),
            v["engine"],
            _when(v["created_at"]),
        )
    console.print(table)


def _print_events(events: list[dict[str, Any]]) -> None:
    if not events:
        console.print("lineage events 血缘事件: none (无)")
        return
    table = Table(title=f"recent lineage events 血缘事件 (last {RECENT_EVENTS})")
    for col in ("time (UTC)", "event", "job", "run", "inputs → outputs"):
        table.add_column(col, overflow="fold")
    for e in events:
        table.add_row(
            _when(e["event_time"]),
            e["event_type"],
            e["job_name"],
            _short(e["run_id"], 8),
            _digests_shortened(
                f"{', '.join(e['inputs']) or '—'} → {', '.join(e['outputs']) or '—'}"
            ),
        )
    console.print(table)


# --- lineage show -------------------------------------------------------------------------------
@lineage_app.command("show")
def lineage_show_command(code: CodeArg, as_json: JsonOpt = False) -> None:
    """Show upstream (raw files, tables that fed it) and downstream (what read it) of an entry.

    Built from the COMPLETE run events stored in the catalog, one hop each way.

    Examples:

      govdx lineage show SCJG-0001

      govdx lineage show SCJG-0001 --json | jq '.upstream[].name'
    """
    import catalog

    try:
        with catalog_session(get_settings()) as s:
            graph = catalog.lineage_graph(session=s, code=code)
    except GovdxError as exc:
        fail(exc)
        return
    if as_json:
        print_json(graph.to_dict())
        return
    console.print(f"[bold]{graph.code}[/] = {graph.namespace}/{graph.name}", highlight=False)
    for title, edges in (
        ("upstream 上游 (inputs of the runs that wrote it)", graph.upstream),
        ("downstream 下游 (runs that read it)", graph.downstream),
    ):
        if not edges:
            console.print(f"{title}: none (无)")
            continue
        table = Table(title=f"{title}: {len(edges)}")
        for col in ("dataset", "catalog code", "job", "run", "completed (UTC)"):
            table.add_column(col, overflow="fold")
        for e in edges:
            table.add_row(
                f"{e.namespace}/{e.name}" if e.name else "— (no output dataset)",
                e.code or "",
                f"{e.job_namespace}/{e.job_name}",
                _short(e.run_id, 8),
                _when(e.event_time),
            )
        console.print(table)
