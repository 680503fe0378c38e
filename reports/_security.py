"""Security-coverage report (安全覆盖率报告): encrypted storage of sensitive fields, classified
fields, two-person approval where required, and the audit chain's verification.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pyarrow.parquet as pq
import yaml
from sqlalchemy import and_, case, exists, func, select, true
from sqlalchemy.orm import Session

from catalog._db import utcnow
from catalog._models import Dataset, DatasetField, DatasetVersion
from pipelines._lakehouse import Lakehouse
from pipelines._protect import CIPHER_META
from reports._errors import ReportError
from reports._figures import Chart, Column, Figure, Period, Ratio, Report, Table
from reports._sharing import AFTER_APPROVAL, MAYBE_APPROVED
from reports._sql import departments, dialect_of, in_period, run
from sandbox._models import Approval, Job, JobTransition

DEFINITIONS = {
    "encrypted_storage": (
        "敏感数据加密存储率 = protected fields (sensitive personal information, or graded core / "
        "important per GB/T 43697-2024) of entries with a stored version whose column in the "
        "entry's current version is SM4 ciphertext (field metadata govdx.cipher = SM4) ÷ "
        "protected fields of those entries. Entries without a stored version hold no data and "
        "are listed apart."
    ),
    "fields_classified": (
        "分类分级覆盖率 = fields whose registered contract states both their grade (分级: core / "
        "important / general) and their personal-information class (pi: sensitive / general / "
        "none) explicitly, rather than leaving the defaults ÷ all fields of catalog entries."
    ),
    "two_person_approval": (
        "双人复核执行率 = jobs submitted in the period whose policy required a reviewer "
        "(core/important or sensitive data) and that were approved, approved by at least two "
        "different people one of whom is a reviewer (审核员) ÷ such jobs approved."
    ),
    "audit_chain": (
        "审计链校验 = the whole audit log re-verified when the report is made: every SM3 entry "
        "hash and link, every SM2-signed checkpoint."
    ),
}


def _json_true(column: Any, key: str, dialect: str) -> Any:
    """``column`` (JSON text) has ``key: true``; SQLite ``json_extract``, PostgreSQL ``->>``."""
    if dialect == "sqlite":
        return func.json_extract(column, f"$.{key}") == 1
    from sqlalchemy import cast
    from sqlalchemy.dialects.postgresql import JSONB

    return cast(column, JSONB)[key].astext == "true"


def _stored_cipher_fields(lake: Lakehouse, name: str, version: int, code: str) -> set[str]:
    """Names of the columns stored as SM4 ciphertext in a version (reads one file's schema)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError, TableNotFoundError

    try:
        files = DeltaTable(lake.table_uri(name), version=version).file_uris()
        if not files:
            return set()
        schema = pq.read_schema(files[0])
    except (TableNotFoundError, DeltaError, OSError) as exc:
        raise ReportError(
            f"security-coverage: cannot read the schema of {code} (table {name!r}, version "
            f"{version}): {exc}"
        ) from exc
    return {f.name for f in schema if (f.metadata or {}).get(CIPHER_META) == b"SM4"}


def _classified(contract_yaml: str | None) -> tuple[int, int]:
    """(fields with explicit grade and pi, fields) of a registered contract text."""
    try:
        data = yaml.safe_load(contract_yaml or "") or {}
    except yaml.YAMLError:
        return 0, 0
    fields = data.get("fields") or [] if isinstance(data, dict) else []
    ok = sum(1 for f in fields if isinstance(f, dict) and "grade" in f and "pi" in f)
    return ok, len(fields)


def security_coverage(
    *,
    session: Session,
    lakehouse: Lakehouse,
    period: Period | None = None,
    department: str | None = None,
    verify_audit: Callable[[], Any] | None = None,
    now: datetime | None = None,
) -> Report:
    """Compute the security-coverage report (安全覆盖率报告).

    Args:
        session: a catalog session.
        lakehouse: the lakehouse (schemas of current versions are read, no data).
        period: jobs submitted in this period count for the two-person figure.
        department: restrict to one provider department.
        verify_audit: returns a ``privacy.VerifyReport`` (e.g. ``sandbox.Auditor.verify``);
            None reports the chain as not checked.
        now: report time (default: current UTC time); also the audit verification time.

    Returns:
        :class:`Report` ``security-coverage``: figures ``encrypted_storage``,
        ``fields_classified``, ``two_person_approval`` (:class:`Ratio`), ``audit_chain``
        (``"yes"`` / ``"no"`` / ``"not checked"``) and ``audit_checked_at``; tables
        ``departments`` and ``entries`` (per entry: protected, encrypted, missing fields).

    Raises:
        ReportError: a catalog query failed or a version's schema could not be read.
    """
    period = period or Period()
    now = now or utcnow()
    dialect = dialect_of(session)
    scope = Dataset.department_code == department if department is not None else true()

    entries = run(
        session,
        select(
            Dataset.code,
            Dataset.name,
            Dataset.department_code,
            Dataset.contract_yaml,
            DatasetVersion.delta_version,
        )
        .outerjoin(DatasetVersion, DatasetVersion.id == Dataset.current_version_id)
        .where(scope)
        .order_by(Dataset.code),
    )
    protected: dict[str, list[str]] = {}
    for code, fname in run(
        session,
        select(Dataset.code, DatasetField.name)
        .join(Dataset, Dataset.id == DatasetField.dataset_id)
        .where(scope, DatasetField.protected.is_(True))
        .order_by(Dataset.code, DatasetField.position),
    ):
        protected.setdefault(code, []).append(fname)

    enc: dict[str, Ratio] = {}
    cls: dict[str, Ratio] = {}
    entry_rows = []
    for code, name, dept, contract_yaml, version in entries:
        prot = protected.get(code, [])
        ok, n = _classified(contract_yaml)
        cls[dept] = cls.get(dept, Ratio(0, 0)) + Ratio(ok, n)
        if version is None:
            entry_rows.append(
                {
                    "department": dept,
                    "entry": code,
                    "version": None,
                    "protected": len(prot),
                    "encrypted": 0,
                    "missing": "(no stored version)",
                }
            )
            continue
        cipher = _stored_cipher_fields(lakehouse, name, int(version), code)
        done = [p for p in prot if p in cipher]
        enc[dept] = enc.get(dept, Ratio(0, 0)) + Ratio(len(done), len(prot))
        entry_rows.append(
            {
                "department": dept,
                "entry": code,
                "version": int(version),
                "protected": len(prot),
                "encrypted": len(done),
                "missing": ", ".join(p for p in prot if p not in cipher),
            }
        )

    # two-person approval: jobs needing a reviewer that were approved, and how
    approved = case(
        (Job.state.in_(AFTER_APPROVAL), True),
        (
            and_(
                Job.state.in_(MAYBE_APPROVED),
                exists(
                    select(JobTransition.id).where(
                        JobTransition.job_id == Job.id, JobTransition.to_state == "approved"
                    )
                ),
            ),
            True,
        ),
        else_=False,
    )
    approvers = (
        select(
            Approval.job_id.label("job_id"),
            func.count(func.distinct(Approval.approver)).label("people"),
            func.sum(case((Approval.role == "reviewer", 1), else_=0)).label("reviewers"),
        )
        .where(Approval.decision == "approve")
        .group_by(Approval.job_id)
        .subquery("approvers")
    )
    two = case((and_(approvers.c.people >= 2, approvers.c.reviewers >= 1), 1), else_=0)
    tpa = {
        d: Ratio(int(k or 0), int(n))
        for d, n, k in run(
            session,
            select(Dataset.department_code, func.count(), func.sum(two))
            .select_from(Job)
            .join(Dataset, Dataset.code == Job.dataset_code)
            .outerjoin(approvers, approvers.c.job_id == Job.id)
            .where(
                scope,
                in_period(Job.created_at, period),
                _json_true(Job.decision_json, "reviewer_required", dialect),
                approved,
            )
            .group_by(Dataset.department_code),
        )
    }

    audit_ok: str = "not checked"
    audit_msg = "no audit verifier given (未校验)"
    checked = 0
    if verify_audit is not None:
        rep = verify_audit()
        audit_ok = "yes" if rep.ok else "no"
        audit_msg = rep.message
        checked = rep.entries_checked

    rows = []
    tot = {"enc": Ratio(0, 0), "cls": Ratio(0, 0), "tpa": Ratio(0, 0)}
    for code, name in departments(session, department):
        r = {
            "department": code,
            "name": name,
            "encrypted_storage": enc.get(code, Ratio(0, 0)),
            "fields_classified": cls.get(code, Ratio(0, 0)),
            "two_person_approval": tpa.get(code, Ratio(0, 0)),
        }
        tot["enc"] += r["encrypted_storage"]
        tot["cls"] += r["fields_classified"]
        tot["tpa"] += r["two_person_approval"]
        rows.append(r)
    report = Report(
        name="security-coverage",
        title="Security coverage (安全覆盖率)",
        period=period,
        department=department,
        generated_at=now,
        figures=[
            Figure(
                "encrypted_storage",
                "Sensitive fields stored encrypted (敏感数据加密存储率)",
                tot["enc"],
                DEFINITIONS["encrypted_storage"],
            ),
            Figure(
                "fields_classified",
                "Fields classified (分类分级覆盖率)",
                tot["cls"],
                DEFINITIONS["fields_classified"],
            ),
            Figure(
                "two_person_approval",
                "Two-person approval where required (双人复核执行率)",
                tot["tpa"],
                DEFINITIONS["two_person_approval"],
            ),
            Figure(
                "audit_chain",
                "Audit chain verified (审计链校验)",
                audit_ok,
                DEFINITIONS["audit_chain"],
            ),
            Figure(
                "audit_entries_checked",
                "Audit entries checked (已校验审计记录)",
                checked,
                "entries read and verified by the check above",
                unit="entries",
            ),
            Figure(
                "audit_checked_at",
                "Audit chain checked at (校验时间)",
                now.isoformat() if verify_audit is not None else None,
                "UTC time of the verification above",
            ),
        ],
        tables=[
            Table(
                "departments",
                "By provider department (按提供部门)",
                [
                    Column("department", "Department (部门)"),
                    Column("name", "Name (名称)"),
                    Column(
                        "encrypted_storage",
                        "Encrypted storage (加密存储率)",
                        DEFINITIONS["encrypted_storage"],
                    ),
                    Column(
                        "fields_classified",
                        "Classified (分类分级)",
                        DEFINITIONS["fields_classified"],
                    ),
                    Column(
                        "two_person_approval",
                        "Two-person approval (双人复核)",
                        DEFINITIONS["two_person_approval"],
                    ),
                ],
                rows,
            ),
            Table(
                "entries",
                "Protected fields per entry (各条目受保护字段)",
                [
                    Column("department", "Department (部门)"),
                    Column("entry", "Entry (条目)"),
                    Column("version", "Current version (当前版本)"),
                    Column("protected", "Protected fields (受保护字段)"),
                    Column("encrypted", "Stored encrypted (已加密)"),
                    Column("missing", "Stored in plaintext (明文存储)"),
                ],
                entry_rows,
            ),
        ],
        notes=[
            "Target of the plan: 100% encrypted storage of sensitive data (敏感数据100%加密存储).",
            f"Audit chain: {audit_msg}",
        ],
    )
    report.charts = [
        Chart(
            "coverage_by_department",
            "bar",
            "Coverage by department (各部门覆盖率)",
            [r["department"] for r in rows],
            {
                "encrypted storage (加密存储)": [r["encrypted_storage"].value for r in rows],
                "classified (分类分级)": [r["fields_classified"].value for r in rows],
                "two-person approval (双人复核)": [r["two_person_approval"].value for r in rows],
            },
        ),
    ]
    return report
