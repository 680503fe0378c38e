"""Tokens, passwords, login throttling and its audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from api_testdata import password

from api import (
    InvalidToken,
    create_access_token,
    decode_access_token,
    hash_password,
    load_or_create_jwt_key,
    verify_password,
)


def test_password_hash_is_argon2id_and_verifies() -> None:
    h = hash_password("correct horse")
    assert h.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert verify_password("correct horse", h) is True
    assert verify_password("correct hors", h) is False
    assert verify_password("x", None) is False
    assert verify_password("x", "not-a-hash") is False


def test_password_length_floor_depends_on_the_deployment_mode() -> None:
    from api.security import MIN_PASSWORD_LENGTH, AuthError

    with pytest.raises(AuthError, match=r"8\.\.1024 characters, got 1"):
        hash_password("a")
    assert hash_password("eight ch").startswith("$argon2id$")
    floor = MIN_PASSWORD_LENGTH["production"]
    assert floor == 12
    with pytest.raises(AuthError, match=r"12\.\.1024 characters, got 11"):
        hash_password("x" * 11, min_length=floor)
    with pytest.raises(AuthError, match="got 1025"):
        hash_password("x" * 1025)


def test_jwt_key_file_is_0600_and_stable(tmp_path) -> None:
    k1 = load_or_create_jwt_key(tmp_path / "keys")
    k2 = load_or_create_jwt_key(tmp_path / "keys")
    assert k1 == k2 and len(k1) == 32
    assert (tmp_path / "keys" / "jwt.key").stat().st_mode & 0o777 == 0o600


def test_token_round_trip_expiry_and_tampering(tmp_path) -> None:
    key = load_or_create_jwt_key(tmp_path)
    tok, ttl = create_access_token(
        key=key, user="bank", role="requester", department=None, ttl_minutes=15
    )
    assert ttl == 900
    c = decode_access_token(tok, key=key)
    assert (c.sub, c.role, c.dept) == ("bank", "requester", None)
    old, _ = create_access_token(
        key=key,
        user="bank",
        role="requester",
        department=None,
        ttl_minutes=1,
        now=datetime.now(UTC) - timedelta(minutes=5),
    )
    with pytest.raises(InvalidToken, match="expired"):
        decode_access_token(old, key=key)
    with pytest.raises(InvalidToken, match="InvalidSignatureError"):
        decode_access_token(tok, key=b"\x00" * 32)
    forged = jwt.encode({"sub": "bank", "role": "admin"}, key="", algorithm="none")
    with pytest.raises(InvalidToken):
        decode_access_token(forged, key=key)


def test_login_and_me(client) -> None:
    r = client.post(
        "/api/v1/auth/token", data={"username": "analyst1", "password": password("analyst1")}
    )
    assert r.status_code == 200 and r.json()["token_type"] == "bearer"
    assert r.json()["expires_in"] == 15 * 60
    me = client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"}
    )
    assert me.json() == {"name": "analyst1", "role": "analyst", "department": "TJJ"}


def test_bad_tokens_are_401(client, api_home) -> None:
    settings = api_home[0]
    key = load_or_create_jwt_key(settings.keys_dir)
    for headers in (
        {"Authorization": "Bearer nonsense"},
        {"Authorization": "Basic YWRtaW46eA=="},
    ):
        assert client.get("/api/v1/auth/me", headers=headers).status_code == 401
    # signed with the right key but naming a role the user does not have
    tok, _ = create_access_token(key=key, user="bank", role="admin", department=None, ttl_minutes=5)
    r = client.get("/api/v1/audit/verify", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 401
    ghost, _ = create_access_token(
        key=key, user="ghost", role="admin", department=None, ttl_minutes=5
    )
    assert (
        client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {ghost}"}).status_code
        == 401
    )


def test_failed_logins_are_throttled_and_audited(client, role_headers) -> None:
    for _ in range(5):
        r = client.post("/api/v1/auth/token", data={"username": "victim", "password": "wrong"})
        assert r.status_code == 401
    r = client.post(
        "/api/v1/auth/token", data={"username": "victim", "password": password("victim")}
    )
    assert r.status_code == 429 and r.headers["Retry-After"] == "60"
    audit = client.get(
        "/api/v1/audit/entries",
        headers=role_headers["admin"],
        params={"actor": "victim", "limit": 10},
    ).json()
    actions = [e["action"] for e in audit["entries"]]
    assert actions.count("auth.login.fail") == 5
    assert actions[0] == "auth.login.throttled"
    assert all(e["details"] == {"ip": "127.0.0.1"} for e in audit["entries"])
    # an unknown user costs the same and is audited the same way
    r = client.post("/api/v1/auth/token", data={"username": "nobody", "password": "x"})
    assert r.status_code == 401


def test_users_passwd_cli(api_home, monkeypatch) -> None:
    from typer.testing import CliRunner

    import catalog
    from govdx.cli._auth import users_passwd_command  # noqa: F401 - registers the command
    from govdx.cli._sandbox import users_app
    from sandbox import User

    settings = api_home[0]
    monkeypatch.setenv("GOVDX_HOME", str(settings.home))
    res = CliRunner().invoke(
        users_app, ["passwd", "burst", "--password-stdin"], input="n3w-pass word\n"
    )
    assert res.exit_code == 0, res.output
    with catalog.session_scope(settings.catalog_db_url) as s:
        h = s.get(User, "burst").password_hash
    assert verify_password("n3w-pass word", h)
    res = CliRunner().invoke(users_app, ["passwd", "nobody", "--password-stdin"], input="x\n")
    assert res.exit_code == 1 and "unknown user 'nobody'" in res.output


def test_a_disabled_user_can_neither_log_in_nor_use_its_token(client, api_home) -> None:
    """Disabling takes effect on the live server: the old token is refused within the user
    cache's 5 s, the login is refused like a wrong password; enabling restores both."""
    import time

    from api_testdata import password

    from sandbox import Sandbox

    settings, _ = api_home
    name = "analyst1"
    login = {"username": name, "password": password(name)}
    token = client.post("/api/v1/auth/token", data=login).json()["access_token"]
    h = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/catalog/datasets", headers=h).status_code == 200
    box = Sandbox(settings)
    try:
        box.add_user("ops_disable", "admin")
        box.set_disabled(name, True, actor="ops_disable")
        deadline = time.monotonic() + 15
        while client.get("/api/v1/catalog/datasets", headers=h).status_code != 401:
            assert time.monotonic() < deadline, "token still accepted 15 s after disabling"
            time.sleep(0.5)
        r = client.post("/api/v1/auth/token", data=login)
        assert r.status_code == 401
    finally:
        box.set_disabled(name, False, actor="ops_disable")
        box.close()
    assert client.post("/api/v1/auth/token", data=login).status_code == 200
