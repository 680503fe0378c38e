"""The FastAPI application (接口服务): :func:`create_app` builds it from settings; nothing is
built at import.

Layout::

    /api/v1/auth        token (OAuth2 password flow → JWT), me
    /api/v1/catalog     search, show, edit, publish/unpublish, contracts, owner's rows
    /api/v1/sandbox     jobs: submit, list, show, approve, reject, cancel, result; budget
    /api/v1/reports     sharing-rate, quality, security-coverage
    /api/v1/audit       verify, entries
    /api/3/action       CKAN-compatible read API (anonymous, open entries only); also at
                        /api/action (ckanapi's default), hidden from the OpenAPI document
    /catalog.jsonld, /dataset/{id}.jsonld   DCAT-AP 3 JSON-LD (anonymous, open entries only)
    /healthz, /metrics  health and Prometheus metrics (anonymous)
    /docs, /redoc, /openapi.json            the OpenAPI description and its pages

Run with ``govdx serve`` (uvicorn).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

import catalog
import sandbox
from api import crud
from api.config import ApiSettings
from api.deps import AppState
from api.metrics import BodyLimitMiddleware, Metrics, MetricsMiddleware
from api.routes import audit, auth, ckan, dcat, health, reports
from api.routes import catalog as catalog_routes
from api.routes import sandbox as sandbox_routes
from api.security import AuthError, load_or_create_jwt_key
from govdx import ContractError, GovdxError, Settings

#: Routes FastAPI adds itself (not ``APIRoute``s): the OpenAPI document and its pages. Public.
#: Documentation pages and their bundled assets (public, no data)
DOC_PATHS = frozenset(
    {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/static-offline-docs"}
)

API_DESCRIPTION = """\
govdx HTTP API — 政务数据共享交换, 数据可用不可见.

Authenticate at `POST /api/v1/auth/token` (OAuth2 password flow) and send
`Authorization: Bearer <token>`. Every route states the roles it admits; only `/healthz`,
`/metrics`, the CKAN action API (`/api/3/action/*`) and the DCAT-AP export are anonymous, and
those show open catalog metadata only. No route returns rows of a dataset except
`GET /api/v1/catalog/datasets/{code}/rows`, to the owning department's steward, audited, with
encrypted columns left encrypted.
"""


def _problem(status: int, detail: Any) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _loc(prefix: list[str], key: str | None) -> list[str]:
    return [*prefix, *(key.split(".") if key else [])]


def _install_error_handlers(app: FastAPI) -> None:
    """Map the packages' errors to HTTP statuses (routes stay thin)."""

    @app.exception_handler(catalog.DatasetNotFound)
    async def _not_found(_: Request, exc: catalog.DatasetNotFound) -> JSONResponse:
        return _problem(404, f"catalog entry {exc.code!r} not found (目录条目不存在)")

    @app.exception_handler(sandbox.JobNotFound)
    async def _job_not_found(_: Request, exc: sandbox.JobNotFound) -> JSONResponse:
        return _problem(404, str(exc))

    @app.exception_handler(sandbox.Refused)
    async def _refused(_: Request, exc: sandbox.Refused) -> JSONResponse:
        if isinstance(exc, sandbox.InputRefused):  # the client's file: malformed or unfit
            return _problem(422, exc.reason)
        if isinstance(exc, (sandbox.PermissionDenied, sandbox.PolicyRefused)):
            return _problem(403, exc.reason)
        if isinstance(exc, sandbox.TransitionRefused):
            return _problem(409, exc.reason)
        return _problem(422, exc.reason)

    @app.exception_handler(sandbox.UserError)
    async def _user_error(_: Request, exc: sandbox.UserError) -> JSONResponse:
        return _problem(403, str(exc))

    @app.exception_handler(sandbox.JobSpecError)
    async def _spec_error(_: Request, exc: sandbox.JobSpecError) -> JSONResponse:
        return _problem(  # one entry per offending key, as FastAPI's own validation errors
            422,
            [
                {"loc": _loc(["body", "spec"], key), "msg": msg, "type": "value_error"}
                for key, msg in exc.errors
            ],
        )

    @app.exception_handler(ContractError)
    async def _contract_error(_: Request, exc: ContractError) -> JSONResponse:
        return _problem(
            422,
            [{"loc": _loc(["body", "contract"], exc.key), "msg": str(exc), "type": "value_error"}],
        )

    @app.exception_handler(crud.ApiError)
    async def _api_error(_: Request, exc: crud.ApiError) -> JSONResponse:
        return _problem(exc.status, str(exc))

    @app.exception_handler(AuthError)
    async def _auth_error(_: Request, exc: AuthError) -> JSONResponse:
        return _problem(422, str(exc))

    @app.exception_handler(catalog.CatalogError)
    async def _catalog_error(_: Request, exc: catalog.CatalogError) -> JSONResponse:
        return _problem(409, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        path = request.url.path
        if path.startswith(
            (ckan.PREFIX + "/", ckan.LEGACY_PREFIX + "/")
        ):  # CKAN clients expect 409 Validation Error
            errors: dict[str, list[str]] = {}
            for e in exc.errors():
                errors.setdefault(".".join(str(p) for p in e["loc"][1:]) or "body", []).append(
                    e["msg"]
                )
            return ckan.ckan_error(
                request, path.rsplit("/", 1)[-1], 409, "Validation Error", errors
            )
        return await request_validation_exception_handler(request, exc)

    @app.exception_handler(GovdxError)
    async def _govdx_error(_: Request, exc: GovdxError) -> JSONResponse:
        return _problem(500, f"{type(exc).__name__}: {exc}")


def create_app(settings: Settings) -> FastAPI:
    """Build the API over the home of ``settings``: migrate the catalog DB, open it, load (or
    create, 0600) the JWT key, start the sandbox service, rate limiter, catalog index and
    metrics.

    Args:
        settings: :class:`govdx.Settings` or :class:`api.ApiSettings` (API knobs then come from
            ``GOVDX_*`` variables, see :mod:`api.config`).

    Returns:
        The FastAPI app; ``app.state.govdx`` holds its :class:`api.deps.AppState`.

    Raises:
        catalog.CatalogError: the catalog DB cannot be migrated or opened.
        api.security.AuthError: the JWT key file is malformed.
    """
    from limits import parse, storage, strategies

    s = ApiSettings.from_settings(settings)
    s.ensure_home()
    catalog.migrate(s.catalog_db_url)
    factory = catalog.open_catalog(s.catalog_db_url)
    limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(s.rate_limit_storage))
    state = AppState(
        settings=s,
        factory=factory,
        jwt_key=load_or_create_jwt_key(s.keys_dir),
        sandbox=sandbox.Sandbox(s, factory=factory),
        limiter=limiter,
        login_item=parse(s.login_failures),
        login_ip_item=parse(s.login_failures_per_ip),
        submit_item=parse(s.submit_rate),
        index=crud.CatalogIndex(factory),
    )
    metrics = Metrics()
    state.metrics = metrics  # type: ignore[attr-defined]

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        factory.kw["bind"].dispose()

    # FastAPIOffline (fastapi-offline): /docs and /redoc load Swagger UI and ReDoc from assets
    # bundled in the package (/static-offline-docs), never from a CDN — government networks are
    # often isolated from the internet
    app = FastAPIOffline(
        title="govdx API",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "auth", "description": "Tokens (认证)"},
            {"name": "catalog", "description": "Catalog (数据资源目录)"},
            {"name": "sandbox", "description": "Sandbox jobs (沙箱作业)"},
            {"name": "reports", "description": "Reports (统计报表)"},
            {"name": "audit", "description": "Audit log (审计)"},
            {"name": "ckan", "description": "CKAN-compatible open-data read API"},
            {"name": "dcat", "description": "DCAT-AP 3 JSON-LD export"},
            {"name": "health", "description": "Health and metrics"},
        ],
    )
    app.state.govdx = state
    for r in (
        auth.router,
        catalog_routes.router,
        sandbox_routes.router,
        reports.router,
        audit.router,
        dcat.router,
        health.router,
    ):
        app.include_router(r)
    app.include_router(ckan.router, prefix=ckan.PREFIX)
    app.include_router(ckan.router, prefix=ckan.LEGACY_PREFIX, include_in_schema=False)
    _install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, limit=s.max_upload_bytes + (1 << 20))
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
