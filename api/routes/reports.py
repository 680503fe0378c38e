"""``/api/v1/reports`` (analysts and admins): the analysts' reports of the ``reports`` package.

Each route returns ``reports.to_dict(...)`` of :func:`reports.build_report` — figures as exact
fractions with their definitions printed beside them (docs/reports.md). Query parameters:
``period`` (``FROM..TO``, each ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``, ends inclusive, either
open) and ``department`` (a provider department code). No report carries row-level data.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from api.deps import Principal, SessionDep, StateDep, require_role


def _known_query_only(request: Request) -> None:
    """Refuse query parameters the report routes do not take (422 naming them): a misspelt
    ``departmnet=`` or an unsupported ``dataset=`` would otherwise give a silently wider report."""
    unknown = sorted(set(request.query_params) - {"period", "department"})
    if unknown:
        raise HTTPException(
            status_code=422,
            detail=[
                {"loc": ["query", k], "msg": "unknown query parameter (period, department only)",
                 "type": "extra_forbidden"}
                for k in unknown
            ],
        )  # fmt: skip


router = APIRouter(
    prefix="/api/v1/reports", tags=["reports"], dependencies=[Depends(_known_query_only)]
)
Analyst = Annotated[Principal, require_role("analyst", "admin")]
PeriodQ = Annotated[
    str | None, Query(max_length=40, description="FROM..TO, e.g. 2026-01..2026-06 (报告期)")
]
DepartmentQ = Annotated[str | None, Query(max_length=32, description="provider department code")]


def _report(
    name: str, state, session, period: str | None, department: str | None
) -> dict[str, Any]:
    import reports
    from pipelines import Lakehouse

    settings = state.settings
    verify = None
    if name == "security-coverage":
        import catalog
        from sandbox import Auditor

        verify = Auditor(catalog.open_catalog(settings.catalog_db_url), settings.keys_dir).verify
    try:
        report = reports.build_report(
            name,
            session=session,
            lakehouse=Lakehouse(settings.lakehouse_dir, settings.quarantine_dir),
            period=reports.Period.parse(period) if period else None,
            department=department,
            verify_audit=verify,
        )
    except reports.ReportDefinitionError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    return reports.to_dict(report)


@router.get("/sharing-rate", summary="Sharing rate (共享率), request satisfaction, open rate")
def sharing_rate(
    _: Analyst,
    state: StateDep,
    session: SessionDep,
    period: PeriodQ = None,
    department: DepartmentQ = None,
) -> dict[str, Any]:
    """Catalog share rate, actual share rate, request satisfaction, time to decision, open rate."""
    return _report("sharing-rate", state, session, period, department)


@router.get("/duplicate-collection", summary="Duplicate collection (重复采集率)")
def duplicate_collection(
    _: Analyst,
    state: StateDep,
    session: SessionDep,
    period: PeriodQ = None,
    department: DepartmentQ = None,
) -> dict[str, Any]:
    """Elements collected by several departments, measured on tokens, with reuse suggestions."""
    return _report("duplicate-collection", state, session, period, department)


@router.get("/quality", summary="Quality roll-up (质量报告, GB/T 36344)")
def quality_report(
    _: Analyst,
    state: StateDep,
    session: SessionDep,
    period: PeriodQ = None,
    department: DepartmentQ = None,
) -> dict[str, Any]:
    """Pass rates and dimension scores per department and period (no example values)."""
    return _report("quality", state, session, period, department)


@router.get("/security-coverage", summary="Security coverage (安全覆盖率)")
def security_coverage(
    _: Analyst,
    state: StateDep,
    session: SessionDep,
    period: PeriodQ = None,
    department: DepartmentQ = None,
) -> dict[str, Any]:
    """Encrypted storage, classification, two-person approval, audit chain verified."""
    return _report("security-coverage", state, session, period, department)
