"""``/api/3/action`` (and ``/api/action``): a CKAN-compatible read API over the open catalog entries (anonymous).

Actions ``package_search``, ``package_show``, ``package_list``, ``organization_list``,
``organization_show``, by GET (query string) or POST (JSON body), answering in CKAN's envelope
``{"help", "success", "result"}`` or ``{"help", "success": false, "error": {"__type",
"message"}}`` (404 Not Found Error, 409 Validation Error / Search Query Error), so ``ckanapi``
and CKAN harvesters read it. See :mod:`api.opendata` for what is listed.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from api import opendata
from api.deps import PublicRoute, StateDep
from api.schemas import (
    OrganizationListParams,
    OrganizationShowParams,
    PackageSearchParams,
    PackageShowParams,
)

#: Mounted at :data:`PREFIX` (CKAN API version 3) and, hidden from the OpenAPI document, at
#: :data:`LEGACY_PREFIX` (``/api/action``, what ``ckanapi.RemoteCKAN`` calls by default).
router = APIRouter(tags=["ckan"])
PREFIX = "/api/3/action"
LEGACY_PREFIX = "/api/action"


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def ckan_ok(request: Request, action: str, result: Any) -> dict[str, Any]:
    """CKAN success envelope."""
    return {
        "help": f"{_base(request)}/api/3/action/help_show?name={action}",
        "success": True,
        "result": result,
    }


def ckan_error(
    request: Request, action: str, status: int, etype: str, message: Any
) -> JSONResponse:
    """CKAN error envelope with its HTTP status."""
    err: dict[str, Any] = {"__type": etype, "message": message}
    return JSONResponse(
        {
            "help": f"{_base(request)}/api/3/action/help_show?name={action}",
            "success": False,
            "error": err,
        },
        status_code=status,
    )


def _search(request: Request, state: StateDep, p: PackageSearchParams):
    try:
        result = opendata.package_search(
            state.index.entries(),
            q=p.q,
            fq=p.fq,
            rows=p.rows,
            start=p.start,
            sort=p.sort,
            base_url=_base(request),
        )
    except opendata.CkanQueryError as exc:
        return ckan_error(request, "package_search", 409, "Search Query Error", str(exc))
    return ckan_ok(request, "package_search", result)


@router.get("/package_search", summary="CKAN package_search")
def package_search_get(
    _: PublicRoute,
    request: Request,
    state: StateDep,
    params: Annotated[PackageSearchParams, Query()],
) -> Any:
    """Search open entries (CKAN ``q``, ``fq``, ``rows``, ``start``, ``sort``)."""
    return _search(request, state, params)


@router.post("/package_search", summary="CKAN package_search (POST)")
def package_search_post(
    _: PublicRoute,
    request: Request,
    state: StateDep,
    params: PackageSearchParams | None = None,
) -> Any:
    """Search open entries; parameters as a JSON body (what ``ckanapi`` sends)."""
    return _search(request, state, params or PackageSearchParams())


def _show(request: Request, state: StateDep, p: PackageShowParams):
    entry = opendata.find_open(state.index.entries(), p.id)
    if entry is None:
        return ckan_error(request, "package_show", 404, "Not Found Error", "Not found")
    return ckan_ok(request, "package_show", opendata.package_dict(entry, _base(request)))


@router.get("/package_show", summary="CKAN package_show")
def package_show_get(
    _: PublicRoute,
    request: Request,
    state: StateDep,
    params: Annotated[PackageShowParams, Query()],
) -> Any:
    """One open entry by CKAN name, id or catalog code."""
    return _show(request, state, params)


@router.post("/package_show", summary="CKAN package_show (POST)")
def package_show_post(
    _: PublicRoute,
    request: Request,
    state: StateDep,
    params: PackageShowParams,
) -> Any:
    """One open entry; ``{"id": ...}`` as a JSON body."""
    return _show(request, state, params)


@router.get("/package_list", summary="CKAN package_list")
def package_list(_: PublicRoute, request: Request, state: StateDep) -> Any:
    """Names of every open entry."""
    return _package_list(request, state)


@router.post("/package_list", summary="CKAN package_list (POST)")
def package_list_post(_: PublicRoute, request: Request, state: StateDep) -> Any:
    """Names of every open entry (POST, as ``ckanapi`` sends it)."""
    return _package_list(request, state)


def _package_list(request: Request, state: StateDep) -> Any:
    names = [opendata.package_name(e.code) for e in state.index.entries() if opendata.is_open(e)]
    return ckan_ok(request, "package_list", names)


def _org_list(request: Request, state: StateDep, p: OrganizationListParams):
    orgs = opendata.organizations(state.index.entries())
    key, _, direction = p.sort.partition(" ")
    if key not in ("name", "title", "package_count") or direction.strip() not in (
        "",
        "asc",
        "desc",
    ):
        return ckan_error(
            request,
            "organization_list",
            409,
            "Validation Error",
            {"sort": [f"cannot sort by {p.sort!r}"]},
        )
    orgs.sort(key=lambda o: o[key], reverse=direction.strip() == "desc")
    page = orgs[p.offset : p.offset + p.limit]
    return ckan_ok(
        request, "organization_list", page if p.all_fields else [o["name"] for o in page]
    )


@router.get("/organization_list", summary="CKAN organization_list")
def organization_list_get(
    _: PublicRoute,
    request: Request,
    state: StateDep,
    params: Annotated[OrganizationListParams, Query()],
) -> Any:
    """Departments with open entries (names, or dicts with ``all_fields``)."""
    return _org_list(request, state, params)


@router.post("/organization_list", summary="CKAN organization_list (POST)")
def organization_list_post(
    _: PublicRoute,
    request: Request,
    state: StateDep,
    params: OrganizationListParams | None = None,
) -> Any:
    """Departments with open entries; parameters as a JSON body."""
    return _org_list(request, state, params or OrganizationListParams())


def _org_show(request: Request, state: StateDep, p: OrganizationShowParams):
    entries = state.index.entries()
    org = next((o for o in opendata.organizations(entries) if p.id in (o["name"], o["id"])), None)
    if org is None:
        return ckan_error(request, "organization_show", 404, "Not Found Error", "Not found")
    if p.include_datasets:
        org["packages"] = [
            opendata.package_dict(e, _base(request))
            for e in entries
            if opendata.is_open(e) and opendata.org_id(e.department) == org["id"]
        ]
    return ckan_ok(request, "organization_show", org)


@router.get("/organization_show", summary="CKAN organization_show")
def organization_show_get(
    _: PublicRoute,
    request: Request,
    state: StateDep,
    params: Annotated[OrganizationShowParams, Query()],
) -> Any:
    """One department with open entries, by name or id."""
    return _org_show(request, state, params)


@router.post("/organization_show", summary="CKAN organization_show (POST)")
def organization_show_post(
    _: PublicRoute,
    request: Request,
    state: StateDep,
    params: OrganizationShowParams,
) -> Any:
    """One department; ``{"id": ...}`` as a JSON body."""
    return _org_show(request, state, params)
