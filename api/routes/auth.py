"""``/api/v1/auth``: the OAuth2 password-flow token endpoint and the caller's identity.

Failed logins are rate-limited per user name and per client address (``limits`` moving
windows, ``GOVDX_LOGIN_FAILURES`` / ``GOVDX_LOGIN_FAILURES_PER_IP``) and every failure and
throttled attempt is written to the audit chain (``auth.login.fail``, ``auth.login.throttled``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from api import crud
from api.deps import AnyUser, PublicRoute, SessionDep, StateDep
from api.schemas import Token, UserPublic
from api.security import create_access_token

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class LoginForm(BaseModel):
    """OAuth2 password grant (RFC 6749 §4.3), form-encoded."""

    model_config = ConfigDict(extra="ignore")

    grant_type: Literal["password"] | None = None
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    scope: str = Field(default="", max_length=200)


@router.post("/token", response_model=Token, summary="Get an access token (登录)")
def login(
    _: PublicRoute,
    form: Annotated[LoginForm, Form()],
    request: Request,
    state: StateDep,
    session: SessionDep,
) -> Token:
    """Exchange a user name and password for a short-lived bearer token (JWT, HS256)."""
    ip = request.client.host if request.client else "-"
    audit = state.sandbox.audit
    lim = state.limiter
    keys = ((state.login_item, "login-user", form.username), (state.login_ip_item, "login-ip", ip))
    if not all(lim.test(item, *k) for item, *k in keys):
        audit.record(form.username, "auth.login.throttled", "auth", {"ip": ip})
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many failed logins; try again later (登录失败次数过多)",
            headers={"Retry-After": "60"},
        )
    user = crud.authenticate(session=session, name=form.username, password=form.password)
    if user is None:
        for item, *k in keys:
            lim.hit(item, *k)
        audit.record(form.username, "auth.login.fail", "auth", {"ip": ip})
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "wrong user name or password (用户名或口令错误)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token, ttl = create_access_token(
        key=state.jwt_key,
        user=user.name,
        role=user.role,
        department=user.department_code,
        ttl_minutes=state.settings.token_ttl_minutes,
    )
    audit.record(user.name, "auth.login", "auth", {"ip": ip})
    return Token(access_token=token, expires_in=ttl)


@router.get("/me", response_model=UserPublic, summary="The caller (当前用户)")
def me(user: AnyUser) -> UserPublic:
    """Name, role and department of the token's user."""
    return UserPublic(name=user.name, role=user.role, department=user.department)
