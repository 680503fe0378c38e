"""govdx HTTP API (接口服务): FastAPI over the catalog, sandbox, reports and audit, with
OAuth2/JWT authentication, role rules on every route, and CKAN / DCAT-AP open-data views.

Typical use::

    from api import ApiSettings, create_app
    app = create_app(ApiSettings())          # then: uvicorn.run(app) — or `govdx serve`

Errors (below ``govdx.GovdxRuntimeError``)::

    AuthError          a password or token could not be checked
    └── InvalidToken   malformed, expired, wrongly signed or for another audience
    ApiError           a request refused by the API itself (carries an HTTP status)
"""

from api.config import ApiSettings
from api.crud import ENCRYPTED, ApiError, CatalogIndex
from api.deps import ALL_ROLES, PUBLIC, Principal, require_role, route_rule
from api.main import DOC_PATHS, create_app
from api.security import (
    AuthError,
    InvalidToken,
    create_access_token,
    decode_access_token,
    hash_password,
    load_or_create_jwt_key,
    verify_password,
)

__all__ = [
    "ALL_ROLES",
    "DOC_PATHS",
    "ENCRYPTED",
    "PUBLIC",
    "ApiError",
    "ApiSettings",
    "AuthError",
    "CatalogIndex",
    "InvalidToken",
    "Principal",
    "create_access_token",
    "create_app",
    "decode_access_token",
    "hash_password",
    "load_or_create_jwt_key",
    "require_role",
    "route_rule",
    "verify_password",
]
