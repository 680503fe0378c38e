"""Passwords and access tokens (口令与访问令牌).

* Passwords are hashed with Argon2id (RFC 9106) through ``argon2-cffi``'s
  :class:`argon2.PasswordHasher` (its default parameters: t=3, m=64 MiB, p=4) and stored in
  ``users.password_hash`` as the PHC string (``$argon2id$v=19$m=65536,t=3,p=4$...``).
* Access tokens are JWTs (RFC 7519) signed with HMAC-SHA-256 (``HS256``, PyJWT) under a 256-bit
  key kept in ``$GOVDX_HOME/keys/jwt.key`` (64 hex chars, created 0600 on first use). Claims:
  ``sub`` (user), ``role``, ``dept``, ``iss`` = ``govdx``, ``aud`` = ``govdx-api``, ``iat``,
  ``exp`` (``iat`` + ``TOKEN_TTL_MINUTES``), ``jti`` (128 random bits). Rotating the key (delete
  the file, restart) invalidates every token.

Errors::

    govdx.GovdxRuntimeError
    └── AuthError              a token or password could not be checked
        └── InvalidToken       malformed, expired, wrongly signed or for another audience
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from govdx import GovdxRuntimeError

JWT_KEY_FILE = "jwt.key"
JWT_ALGORITHM = "HS256"
JWT_ISSUER = "govdx"
JWT_AUDIENCE = "govdx-api"

_hasher = PasswordHasher()
#: A hash of a random password, verified against when the user does not exist, so a login
#: for an unknown name costs as much as one for a known name (no user enumeration by timing).
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class AuthError(GovdxRuntimeError):
    """Authentication failed or could not be checked (认证失败)."""


class InvalidToken(AuthError):
    """The bearer token is malformed, expired, wrongly signed or for another audience."""


#: Shortest password accepted (characters), per deployment mode. NIST SP 800-63B §5.1.1.2 asks
#: for at least 8 characters for a user-chosen memorized secret; production asks for 12.
MIN_PASSWORD_LENGTH = {"development": 8, "production": 12}


def hash_password(password: str, *, min_length: int = MIN_PASSWORD_LENGTH["development"]) -> str:
    """Argon2id PHC hash of ``password`` (argon2-cffi ``PasswordHasher.hash``).

    Args:
        password: the new password. min_length: shortest accepted (characters).

    Raises:
        AuthError: the password is shorter than ``min_length`` or longer than 1024 characters.
    """
    if len(password) < min_length or len(password) > 1024:
        raise AuthError(
            f"a password must have {min_length}..1024 characters, got {len(password)} "
            "(口令长度不合法)"
        )
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    """True when ``password`` matches ``password_hash``; constant work when there is no hash.

    Args:
        password: the offered password.
        password_hash: the stored PHC string, or None (user unknown or without a password).
    """
    if password_hash is None:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_DUMMY_HASH, password)
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the stored hash uses weaker parameters than the current defaults."""
    return _hasher.check_needs_rehash(password_hash)


def load_or_create_jwt_key(keys_dir: Path) -> bytes:
    """The 32-byte HS256 key from ``keys_dir/jwt.key``; created (0600, 64 hex chars) if missing.

    Raises:
        AuthError: the file exists but is not 64 hex characters.
    """
    path = Path(keys_dir) / JWT_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(32))
    text = path.read_text(encoding="ascii").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError as exc:
        raise AuthError(f"{path}: not hex (JWT 签名密钥格式错误)") from exc
    if len(key) != 32:
        raise AuthError(f"{path}: expected 32 bytes (64 hex chars), got {len(key)} bytes")
    return key


@dataclass(frozen=True)
class TokenClaims:
    """The verified claims of an access token.

    Attributes:
        sub: user name. role: role at issue time. dept: department code or None.
        jti: token id (hex). exp: expiry (UTC).
    """

    sub: str
    role: str
    dept: str | None
    jti: str
    exp: datetime


def create_access_token(
    *,
    key: bytes,
    user: str,
    role: str,
    department: str | None,
    ttl_minutes: int,
    now: datetime | None = None,
) -> tuple[str, int]:
    """Sign an access token (HS256 JWT).

    Returns:
        ``(token, expires_in)``: the compact JWT and its lifetime in seconds.
    """
    now = now or datetime.now(UTC)
    exp = now + timedelta(minutes=ttl_minutes)
    claims: dict[str, Any] = {
        "sub": user,
        "role": role,
        "dept": department,
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "iat": int(now.timestamp()),
        "exp": int(exp.timestamp()),
        "jti": secrets.token_hex(16),
    }
    return jwt.encode(claims, key, algorithm=JWT_ALGORITHM), ttl_minutes * 60


def decode_access_token(token: str, *, key: bytes) -> TokenClaims:
    """Verify signature, issuer, audience and expiry of a token (PyJWT ``jwt.decode``).

    Raises:
        InvalidToken: anything wrong with it (the reason is in the message, never the token).
    """
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[JWT_ALGORITHM],
            audience=JWT_AUDIENCE,
            issuer=JWT_ISSUER,
            options={"require": ["sub", "exp", "iat", "iss", "aud", "jti"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("access token expired (令牌已过期)") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"invalid access token (令牌无效): {type(exc).__name__}") from exc
    if not isinstance(claims.get("sub"), str) or not isinstance(claims.get("role"), str):
        raise InvalidToken("invalid access token (令牌无效): bad sub/role claim")
    return TokenClaims(
        sub=claims["sub"],
        role=claims["role"],
        dept=claims.get("dept"),
        jti=str(claims["jti"]),
        exp=datetime.fromtimestamp(claims["exp"], UTC),
    )
