"""``/api/v1/audit``: verify the hash-chained audit log and page through it (admins only)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api import crud
from api.deps import Principal, SessionDep, StateDep, require_role
from api.schemas import AuditQuery

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])
Admin = Annotated[Principal, require_role("admin")]


@router.get("/verify", summary="Verify the audit chain (审计链校验)")
def verify(user: Admin, state: StateDep) -> dict[str, Any]:
    """SM3 hash links and SM2-signed checkpoints of the whole log (``VerifyReport``)."""
    report = state.sandbox.audit.verify()
    state.sandbox.audit.record(user.name, "audit.verify", "audit", {"ok": report.ok})
    return asdict(report)


@router.get("/entries", summary="Audit entries (审计记录)")
def entries(
    user: Admin, session: SessionDep, query: Annotated[AuditQuery, Query()]
) -> dict[str, Any]:
    """Entries newest first, optionally of one actor or action."""
    return crud.audit_entries(
        session=session,
        actor=query.actor,
        action=query.action,
        offset=query.offset,
        limit=query.limit,
    )
