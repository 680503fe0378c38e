"""One entry point for every report by name (CLI ``govdx report NAME``, API report routes)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipelines._lakehouse import Lakehouse
from reports._duplicates import duplicate_collection
from reports._errors import ReportDefinitionError
from reports._figures import Period, Report
from reports._quality_rollup import quality_rollup
from reports._security import security_coverage
from reports._sharing import sharing_rate

REPORT_NAMES = ("sharing-rate", "duplicate-collection", "quality", "security-coverage")


def build_report(
    name: str,
    *,
    session: Session,
    lakehouse: Lakehouse | None = None,
    period: Period | None = None,
    department: str | None = None,
    verify_audit: Callable[[], Any] | None = None,
    now: datetime | None = None,
) -> Report:
    """Compute the report called ``name`` (one of :data:`REPORT_NAMES`).

    Args:
        name: ``sharing-rate`` | ``duplicate-collection`` | ``quality`` | ``security-coverage``.
        session: a catalog session.
        lakehouse: needed by ``duplicate-collection`` and ``security-coverage``.
        period: the period (default: all time). department: one provider department code.
        verify_audit: for ``security-coverage``: returns a ``privacy.VerifyReport``.
        now: report time (default: current UTC time).

    Raises:
        ReportDefinitionError: unknown name, an unknown ``department`` code, or no lakehouse
            for a report that reads it.
        ReportError: the report could not be computed.
    """
    if name not in REPORT_NAMES:
        raise ReportDefinitionError(f"unknown report {name!r} (reports: {', '.join(REPORT_NAMES)})")
    if name in ("duplicate-collection", "security-coverage") and lakehouse is None:
        raise ReportDefinitionError(f"report {name} reads the lakehouse: pass lakehouse=")
    if department is not None:
        import catalog

        known = sorted(d.code for d in session.scalars(select(catalog.Department)))
        if department not in known:  # a typo would otherwise give an empty report
            raise ReportDefinitionError(
                f"department {department!r}: no such department in the catalog (部门不存在); "
                f"known: {', '.join(known) or 'none'}"
            )
    kw: dict[str, Any] = {
        "session": session,
        "period": period,
        "department": department,
        "now": now,
    }
    if name == "sharing-rate":
        return sharing_rate(**kw)
    if name == "quality":
        return quality_rollup(**kw)
    if name == "duplicate-collection":
        return duplicate_collection(lakehouse=lakehouse, **kw)  # type: ignore[arg-type]
    return security_coverage(lakehouse=lakehouse, verify_audit=verify_audit, **kw)  # type: ignore[arg-type]
