"""Dependencies of the routes (依赖项), as ``Annotated`` aliases, and the route → roles rules.

Every route states who may call it in its own signature, through exactly one *rule*:

* ``user: Annotated[Principal, require_role("steward", "admin")]`` — a bearer token of one of
  these roles (401 without a valid token, 403 for another role);
* ``_: PublicRoute`` — no token needed (health, the CKAN/DCAT open-data read API).

:func:`route_rule` finds the rule of a route by walking its dependency tree, so the role-matrix
test enumerates ``app.routes`` and fails for a route that has none. Department scope (a
steward acts only on its own department's entries) is checked by the routes, which know the
entry.

Source: FastAPI docs "Dependencies", "Security — OAuth2 with Password (and hashing), Bearer
with JWT tokens"; fastapi/full-stack-fastapi-template ``backend/app/api/deps.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.routing import APIRoute
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session, sessionmaker

from api.config import ApiSettings
from api.security import InvalidToken, decode_access_token

#: Every role of the platform (sandbox.ROLES): 数据管理员, 审核员, 数据需求方, 分析员, 平台管理员.
ALL_ROLES: tuple[str, ...] = ("steward", "reviewer", "requester", "analyst", "admin")
#: Marker returned by :func:`route_rule` for routes open to anonymous callers.
PUBLIC = frozenset({"*"})

TOKEN_URL = "/api/v1/auth/token"
oauth2_scheme = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller (当前用户). ``department`` is its department code or None."""

    name: str
    role: str
    department: str | None


@dataclass
class AppState:
    """What the routes share, built once by :func:`api.create_app` (``app.state.govdx``).

    Attributes:
        settings: the :class:`ApiSettings`. factory: catalog session factory.
        jwt_key: the HS256 key (32 bytes). sandbox: the :class:`sandbox.Sandbox` service.
        limiter / login_item / login_ip_item / submit_item: ``limits`` rate limiter and items.
        index: the in-memory catalog index (:class:`api.crud.CatalogIndex`).
    """

    settings: ApiSettings
    factory: sessionmaker[Session]
    jwt_key: bytes
    sandbox: Any
    limiter: Any
    login_item: Any
    login_ip_item: Any
    submit_item: Any
    index: Any
    user_ttl_seconds: float = 5.0
    _users: dict[str, tuple[float, Principal | None]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def lookup_user(self, name: str) -> Principal | None:
        """The user ``name`` from the DB, cached for ``user_ttl_seconds`` (so a removed user or a
        changed role takes effect within that time)."""
        now = time.monotonic()
        hit = self._users.get(name)
        if hit is not None and hit[0] > now:
            return hit[1]
        from sandbox import User

        with self.factory() as s:
            u = s.get(User, name)
            gone = u is None or u.disabled_at is not None  # removed or disabled: no access
            p = None if gone else Principal(u.name, u.role, u.department_code)
        with self._lock:
            self._users[name] = (now + self.user_ttl_seconds, p)
        return p

    def forget_user(self, name: str) -> None:
        """Drop ``name`` from the user cache (after a password or role change)."""
        with self._lock:
            self._users.pop(name, None)


async def get_state(request: Request) -> AppState:
    """The :class:`AppState` of the running app."""
    return request.app.state.govdx


StateDep = Annotated[AppState, Depends(get_state)]


async def get_settings(state: StateDep) -> ApiSettings:
    """The app's settings."""
    return state.settings


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]


def get_session(state: StateDep) -> Iterator[Session]:
    """A catalog session for one request; routes that write call ``session.commit()``."""
    with state.factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
TokenDep = Annotated[str | None, Depends(oauth2_scheme)]

_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


async def get_current_user(state: StateDep, token: TokenDep) -> Principal:
    """The caller of a bearer token (401 when missing, invalid, expired, or its user is gone or
    changed role since the token was issued). Async: the user lookup is cached (a DB read at
    most every ``user_ttl_seconds`` per user), so it does not need a worker thread."""
    if not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "not authenticated (未认证)", headers=_UNAUTHORIZED
        )
    try:
        claims = decode_access_token(token, key=state.jwt_key)
    except InvalidToken as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc), headers=_UNAUTHORIZED) from exc
    user = state.lookup_user(claims.sub)
    if user is None or user.role != claims.role or user.department != claims.dept:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "token no longer matches the user (用户或角色已变更)",
            headers=_UNAUTHORIZED,
        )
    return user


CurrentUser = Annotated[Principal, Depends(get_current_user)]


class RoleRule:
    """A route's access rule: the roles it admits (``roles``), or :data:`PUBLIC`."""

    def __init__(self, roles: frozenset[str]) -> None:
        self.roles = roles

    def __repr__(self) -> str:
        return f"RoleRule({sorted(self.roles)})"


class _RequireRole(RoleRule):
    async def __call__(self, user: CurrentUser) -> Principal:
        if user.role not in self.roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"role {user.role!r} may not call this route; allowed: {sorted(self.roles)} "
                "(无权访问)",
            )
        return user


class _Public(RoleRule):
    async def __call__(self) -> None:
        return None


def require_role(*roles: str) -> Any:
    """``Depends`` admitting a bearer token of one of ``roles`` (the route's one rule).

    Raises:
        ValueError: no role, or a role that does not exist (at import of the route module).
    """
    unknown = sorted(set(roles) - set(ALL_ROLES))
    if not roles or unknown:
        raise ValueError(f"require_role: unknown or no roles {unknown or roles}")
    return Depends(_RequireRole(frozenset(roles)))


#: The rule of anonymous routes (health, CKAN action API, DCAT JSON-LD).
PublicRoute = Annotated[None, Depends(_Public(PUBLIC))]
AnyUser = Annotated[Principal, require_role(*ALL_ROLES)]


def route_rule(route: Any) -> frozenset[str] | None:
    """The roles a route admits (:data:`PUBLIC` for anonymous ones), or None when it has no
    rule. Non-API routes (FastAPI's docs pages) answer None; the app lists those separately."""
    if not isinstance(route, APIRoute):
        return None
    found: list[frozenset[str]] = []
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        if isinstance(dep.call, RoleRule):
            found.append(dep.call.roles)
        stack.extend(dep.dependencies)
    return found[0] if len(found) == 1 else None  # none, or ambiguous: both are errors
