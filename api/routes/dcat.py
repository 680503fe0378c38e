"""DCAT-AP 3 JSON-LD export of the open catalog entries (anonymous): ``/catalog.jsonld`` and
``/dataset/{id}.jsonld`` (``application/ld+json``). See :mod:`api.opendata`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, status
from fastapi.responses import JSONResponse

from api import opendata
from api.deps import PublicRoute, StateDep

router = APIRouter(tags=["dcat"])

LD_JSON = "application/ld+json"


class JsonLdResponse(JSONResponse):
    """JSON-LD (``application/ld+json``)."""

    media_type = LD_JSON


@router.get("/catalog.jsonld", response_class=JsonLdResponse, summary="DCAT-AP catalog")
def catalog_jsonld(_: PublicRoute, request: Request, state: StateDep) -> JsonLdResponse:
    """The ``dcat:Catalog`` with one ``dcat:Dataset`` per open entry."""
    base = str(request.base_url).rstrip("/")
    return JsonLdResponse(opendata.dcat_catalog(state.index.entries(), base))


@router.get("/dataset/{ident}.jsonld", response_class=JsonLdResponse, summary="DCAT-AP dataset")
def dataset_jsonld(
    ident: Annotated[str, Path(min_length=1, max_length=200)],
    _: PublicRoute,
    request: Request,
    state: StateDep,
) -> JsonLdResponse:
    """One open entry (by CKAN name, id or catalog code) as a ``dcat:Dataset`` document."""
    entry = opendata.find_open(state.index.entries(), ident)
    if entry is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"open dataset {ident!r} not found")
    return JsonLdResponse(opendata.dcat_document(entry, str(request.base_url).rstrip("/")))
