"""Duplicate-collection report (重复采集报告): data elements collected by more than one department,
how many identifiers were collected twice (measured on tokens), and what could be reused.

Element level: from the catalog's field list (``dataset_fields.element``), the master-data
elements (:data:`MASTER_ELEMENTS`) that fields of more than one provider department carry.

Instance level: identifier fields (resident_id, uscc, phone) are stored with a keyed HMAC-SM3
token column ``<name>_token`` whose key is the element's (one key per element domain, the same
for every dataset), so the same identifier gives the same token in every dataset and overlaps are
counted without decrypting anything. Only the token columns of each entry's current version
(the catalog's ``current_version``, not the Delta log's newest) are read, with
``pyarrow.parquet`` column projection; sets are compared with ``pyarrow.compute``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog._db import utcnow
from catalog._models import Dataset, DatasetField, DatasetVersion
from pipelines._lakehouse import Lakehouse
from pipelines._protect import TOKEN_ELEMENTS, TOKEN_SUFFIX
from reports._errors import ReportError
from reports._figures import Chart, Column, Figure, Period, Ratio, Report, Table
from reports._sql import departments, run

#: Master-data elements (基础信息项) whose collection by two departments is duplicate collection.
MASTER_ELEMENTS: tuple[str, ...] = (
    "resident_id",
    "uscc",
    "person_name",
    "org_name",
    "address",
    "phone",
    "email",
)
#: Share of a dataset's identifiers already held by another department's shareable dataset from
#: which a reuse suggestion is made.
SUGGEST_MIN_OVERLAP = Ratio(1, 2)

DEFINITIONS = {
    "duplicated_elements": (
        "重复采集信息项 = master-data elements (resident_id, uscc, person_name, org_name, "
        "address, phone, email) carried by fields of catalog entries of more than one provider "
        "department."
    ),
    "duplicate_instance_rate": (
        "重复采集率 = over every identifier field (element resident_id, uscc or phone) of every "
        "entry's current version: distinct tokens that also occur in an entry of another "
        "department ÷ distinct tokens; summed over fields and departments (a department's "
        "identifiers collected again by it in another entry do not count)."
    ),
    "suggestion": (
        "复用建议 = for an entry Y of department B and a shareable entry X of another department "
        "A holding the same identifier element: when at least half of Y's distinct identifiers "
        "already occur in X, B could reuse X instead of collecting Y's master-data fields that "
        "X also holds."
    ),
}


@dataclass(frozen=True)
class _TokenSet:
    code: str
    title: str
    department: str
    share_type: str
    field: str
    element: str
    tokens: pa.Array  # distinct, non-null


def _read_tokens(
    lake: Lakehouse, name: str, version: int, columns: list[str], code: str
) -> pa.Table:
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError, TableNotFoundError

    try:
        dt = DeltaTable(lake.table_uri(name), version=version)
        files = dt.file_uris()
        if not files:
            return pa.table({c: pa.array([], pa.string()) for c in columns})
        return pq.read_table(files, columns=columns)
    except (TableNotFoundError, DeltaError, OSError, pa.ArrowException) as exc:
        raise ReportError(
            f"duplicate-collection: cannot read token columns {columns} of {code} "
            f"(table {name!r}, version {version}): {exc}"
        ) from exc


def duplicate_collection(
    *,
    session: Session,
    lakehouse: Lakehouse,
    department: str | None = None,
    period: Period | None = None,
    now: datetime | None = None,
) -> Report:
    """Compute the duplicate-collection report (重复采集报告).

    Args:
        session: a catalog session.
        lakehouse: the lakehouse holding the entries' Delta tables.
        department: restrict rows (department B, the one that collected again) to this code;
            overlaps are still measured against every other department.
        period: shown on the report; the report is a snapshot of current versions.
        now: report time (default: current UTC time).

    Returns:
        :class:`Report` ``duplicate-collection``: figures ``duplicated_elements`` (int),
        ``duplicate_instance_rate`` (:class:`Ratio`); tables ``departments`` (per department:
        identifier tokens, of which held elsewhere, rate), ``elements`` (element, departments,
        fields), ``overlaps`` (entry Y field → entry X field: shared of Y's distinct tokens),
        ``suggestions``.

    Raises:
        ReportError: a catalog query failed or a token column could not be read (names the
            entry and version).
    """
    period = period or Period()
    # -- element level ---------------------------------------------------------------------
    rows = run(
        session,
        select(
            DatasetField.element,
            Dataset.department_code,
            Dataset.code,
            DatasetField.name,
        )
        .join(Dataset, Dataset.id == DatasetField.dataset_id)
        .where(DatasetField.element.in_(MASTER_ELEMENTS))
        .order_by(DatasetField.element, Dataset.department_code, Dataset.code),
    )
    by_element: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for element, dept, code, fname in rows:
        by_element[element][dept].append(f"{code}.{fname}")
    dup_elements = {e: d for e, d in by_element.items() if len(d) > 1}
    if department is not None:
        dup_elements = {e: d for e, d in dup_elements.items() if department in d}

    # -- instance level (tokens of current versions) ---------------------------------------
    fields = run(
        session,
        select(
            Dataset.code,
            Dataset.name,
            Dataset.title,
            Dataset.department_code,
            Dataset.share_type,
            DatasetVersion.delta_version,
            DatasetField.name,
            DatasetField.element,
        )
        .join(DatasetVersion, DatasetVersion.id == Dataset.current_version_id)
        .join(DatasetField, DatasetField.dataset_id == Dataset.id)
        .where(DatasetField.element.in_(sorted(TOKEN_ELEMENTS)))
        .order_by(Dataset.code, DatasetField.position),
    )
    per_entry: dict[str, list[Any]] = defaultdict(list)
    for row in fields:
        per_entry[row[0]].append(row)
    sets: list[_TokenSet] = []
    for code, frows in per_entry.items():
        _, name, title, dept, share, version, _, _ = frows[0]
        cols = [f"{r[6]}{TOKEN_SUFFIX}" for r in frows]
        table = _read_tokens(lakehouse, name, int(version), cols, code)
        for r, col in zip(frows, cols, strict=True):
            if col not in table.column_names:
                continue  # a version written before tokenisation: nothing to compare
            tokens = pc.unique(pc.drop_null(table[col]).combine_chunks())
            sets.append(_TokenSet(code, title, dept, share, r[6], r[7], tokens))

    # union of tokens per (element, department)
    union: dict[tuple[str, str], pa.Array] = {}
    for (element, dept), group in _group(sets).items():
        union[(element, dept)] = pc.unique(pa.concat_arrays([s.tokens for s in group]))

    dept_ratio: dict[str, Ratio] = defaultdict(lambda: Ratio(0, 0))
    overlaps: list[dict[str, Any]] = []
    for (element, dept), mine in union.items():
        others = [u for (e, d), u in union.items() if e == element and d != dept]
        held = (
            int(pc.sum(pc.is_in(mine, value_set=pc.unique(pa.concat_arrays(others)))).as_py() or 0)
            if others and len(mine)
            else 0
        )
        dept_ratio[dept] = dept_ratio[dept] + Ratio(held, len(mine))
    for y in sets:
        for x in sets:
            if x.element != y.element or x.department == y.department:
                continue
            n = (
                int(pc.sum(pc.is_in(y.tokens, value_set=x.tokens)).as_py() or 0)
                if len(y.tokens)
                else 0
            )
            overlaps.append(
                {
                    "department": y.department,
                    "entry": y.code,
                    "field": y.field,
                    "element": y.element,
                    "other_department": x.department,
                    "other_entry": x.code,
                    "other_field": x.field,
                    "other_shareable": x.share_type != "none",
                    "shared": Ratio(n, len(y.tokens)),
                    "_x": x,
                    "_y": y,
                }
            )

    master_fields = _master_fields(session)
    suggestions = []
    for o in overlaps:
        x, y, r = o.pop("_x"), o.pop("_y"), o["shared"]
        if not o["other_shareable"] or r.denominator == 0:
            continue
        if r.fraction is None or r.fraction < SUGGEST_MIN_OVERLAP.fraction:
            continue
        x_elems = {e for _, e in master_fields.get(x.code, [])}
        reuse = [f for f, e in master_fields.get(y.code, []) if e in x_elems]
        suggestions.append(
            {
                "department": y.department,
                "entry": y.code,
                "reuse_department": x.department,
                "reuse_entry": x.code,
                "fields": ", ".join(reuse),
                "matched_on": f"{y.field} ↔ {x.code}.{x.field} ({y.element})",
                "shared": r,
                "text": (
                    f"{y.department}: reuse {x.department}'s dataset {x.code} ({x.title}) instead of "
                    f"collecting {', '.join(reuse)} in {y.code} — {r.numerator} of "
                    f"{r.denominator} identifiers ({r.percent()}) are already there "
                    f"(建议复用{x.department}的{x.code}，不再重复采集)"
                ),
            }
        )

    dept_rows = []
    total = Ratio(0, 0)
    for code, name in departments(session, department):
        r = dept_ratio.get(code, Ratio(0, 0))
        total += r
        dept_rows.append(
            {
                "department": code,
                "name": name,
                "identifiers": r.denominator,
                "held_elsewhere": r.numerator,
                "duplicate_instance_rate": r,
                "elements_shared": ", ".join(
                    sorted(e for e, d in dup_elements.items() if code in d)
                ),
            }
        )
    if department is not None:
        overlaps = [o for o in overlaps if o["department"] == department]
        suggestions = [s for s in suggestions if s["department"] == department]

    report = Report(
        name="duplicate-collection",
        title="Duplicate collection (重复采集)",
        period=period,
        department=department,
        generated_at=now or utcnow(),
        figures=[
            Figure(
                "duplicated_elements",
                "Elements collected by more than one department (多部门重复采集的信息项)",
                len(dup_elements),
                DEFINITIONS["duplicated_elements"],
                unit="elements",
            ),
            Figure(
                "duplicate_instance_rate",
                "Duplicate collection rate (重复采集率)",
                total,
                DEFINITIONS["duplicate_instance_rate"],
            ),
        ],
        tables=[
            Table(
                "departments",
                "By department (按部门)",
                [
                    Column("department", "Department (部门)"),
                    Column("name", "Name (名称)"),
                    Column(
                        "identifiers",
                        "Distinct identifiers (去重标识数)",
                        "distinct tokens per identifier element, summed over elements",
                    ),
                    Column("held_elsewhere", "Also held by another department (他部门已有)"),
                    Column(
                        "duplicate_instance_rate",
                        "Duplicate collection rate (重复采集率)",
                        DEFINITIONS["duplicate_instance_rate"],
                    ),
                    Column("elements_shared", "Elements also collected elsewhere (重复信息项)"),
                ],
                dept_rows,
            ),
            Table(
                "elements",
                "Elements collected by more than one department (重复采集信息项)",
                [
                    Column("element", "Element (信息项)", DEFINITIONS["duplicated_elements"]),
                    Column("departments", "Departments (部门)"),
                    Column("fields", "Fields (字段)"),
                ],
                [
                    {
                        "element": e,
                        "departments": ", ".join(sorted(d)),
                        "fields": "; ".join(f for dd in sorted(d) for f in d[dd]),
                    }
                    for e, d in sorted(dup_elements.items())
                ],
            ),
            Table(
                "overlaps",
                "Identifier overlaps, measured on tokens (标识重合, 基于令牌)",
                [
                    Column("department", "Department B (部门)"),
                    Column("entry", "Entry Y (条目)"),
                    Column("field", "Field (字段)"),
                    Column("element", "Element (信息项)"),
                    Column("other_department", "Department A (他部门)"),
                    Column("other_entry", "Entry X (他部门条目)"),
                    Column("other_field", "Field in X"),
                    Column(
                        "shared",
                        "Y's identifiers already in X (已存在于X)",
                        "distinct tokens of Y.field found in X.field ÷ distinct tokens of Y.field",
                    ),
                ],
                [{k: v for k, v in o.items() if k != "other_shareable"} for o in overlaps],
            ),
            Table(
                "suggestions",
                "Reuse suggestions (复用建议)",
                [
                    Column("text", "Suggestion (建议)", DEFINITIONS["suggestion"]),
                    Column("shared", "Identifiers already there (已存在比例)"),
                ],
                suggestions,
            ),
        ],
        notes=[
            "Target of the plan: data collected twice under 10% (重复采集率 < 10%).",
            "Snapshot of each entry's current version; the period does not filter it.",
            "Tokens are keyed per element domain, so equal identifiers give equal tokens in "
            "every dataset; no identifier is decrypted for this report.",
        ],
    )
    report.charts = [
        Chart(
            "rate_by_department",
            "bar",
            "Duplicate collection rate by department (各部门重复采集率)",
            [r["department"] for r in dept_rows],
            {
                "duplicate collection rate (重复采集率)": [
                    r["duplicate_instance_rate"].value for r in dept_rows
                ]
            },
        ),
    ]
    return report


def _group(sets: list[_TokenSet]) -> dict[tuple[str, str], list[_TokenSet]]:
    out: dict[tuple[str, str], list[_TokenSet]] = defaultdict(list)
    for s in sets:
        out[(s.element, s.department)].append(s)
    return out


def _master_fields(session: Session) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for code, fname, element in run(
        session,
        select(Dataset.code, DatasetField.name, DatasetField.element)
        .join(Dataset, Dataset.id == DatasetField.dataset_id)
        .where(DatasetField.element.in_(MASTER_ELEMENTS))
        .order_by(Dataset.code, DatasetField.position),
    ):
        out[code].append((fname, element))
    return out
