"""``/api/v1/reports`` (analysts and admins): what can be computed from the catalog today.

* ``sharing-rate`` — share of entries with share type ≠ none (共享率) and open type ≠ none
  (开放率), overall and per department (:func:`api.crud.sharing_rate`);
* ``quality`` — the quality package's report over stored results (:func:`quality.build_report`);
* ``security-coverage`` — protected fields stored as ciphertext ÷ protected fields, checked on
  the Parquet footers of the current versions (:func:`api.crud.security_coverage`).

The report issue may redefine these; the routes then call its functions instead.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter

from api import crud
from api.deps import Principal, SessionDep, StateDep, require_role

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])
Analyst = Annotated[Principal, require_role("analyst", "admin")]


@router.get("/sharing-rate", summary="Sharing and open rates (共享率/开放率)")
def sharing_rate(_: Analyst, state: StateDep) -> dict[str, Any]:
    """Entries, shared, open, published and the rates, overall and per department."""
    return crud.sharing_rate(state.index.entries())


@router.get("/quality", summary="Quality report (质量报告)")
def quality_report(_: Analyst, session: SessionDep) -> dict[str, Any]:
    """Per dataset and department: pass rates by GB/T 36344 dimension, latest and history
    (without the examples of rejected values: those are row data)."""
    return crud.quality_report(session=session)


@router.get("/security-coverage", summary="Encryption coverage (安全覆盖率)")
def security_coverage(_: Analyst, state: StateDep, session: SessionDep) -> dict[str, Any]:
    """Protected fields stored as ciphertext, per dataset and overall."""
    return crud.security_coverage(session=session, settings=state.settings)
