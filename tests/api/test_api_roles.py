"""Every route × every role against the live server: admitted roles succeed, the others get
403, anonymous callers 401 — generated from ``app.routes``, so a route without a rule (or
without a sample request) fails here."""

from __future__ import annotations

import pytest
from api_samples import SAMPLES, Ctx
from api_testdata import ROLES

from api import DOC_PATHS, PUBLIC, create_app, route_rule


@pytest.fixture(scope="session")
def app_routes(api_home):
    app = create_app(api_home[0])
    try:
        yield app.routes
    finally:
        app.state.govdx.factory.kw["bind"].dispose()


@pytest.fixture(scope="session")
def ctx(client, role_headers, api_home, psi_request, tmp_path_factory) -> Ctx:
    return Ctx(client, role_headers, api_home[0], psi_request, tmp_path_factory.mktemp("jobs"))


def _api_routes(routes):
    for r in routes:
        if r.path in DOC_PATHS:
            continue
        for m in sorted(r.methods - {"HEAD"}):
            yield m, r.path, r


def test_every_route_has_a_rule_and_a_sample(app_routes) -> None:
    missing_rule = [(m, p) for m, p, r in _api_routes(app_routes) if route_rule(r) is None]
    assert missing_rule == []
    keys = {(m, p) for m, p, _ in _api_routes(app_routes)}
    assert keys - set(SAMPLES) == set(), "add a sample request in api_samples.py"
    assert set(SAMPLES) - keys == set(), "sample for a route that no longer exists"
    assert {p for p in DOC_PATHS} <= {r.path for r in app_routes}


def test_doc_pages_are_served_without_any_cdn(client) -> None:
    """/docs and /redoc work on a network cut off from the internet: every script and style
    they load is served by the API itself (fastapi-offline's bundled assets)."""
    import re

    assert client.get("/openapi.json").json()["info"]["title"] == "govdx API"
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert any(a.endswith(".js") for a in assets), (page, assets)
        for a in assets:
            assert not a.startswith(("http:", "https:", "//")), (page, a)
            r = client.get(a)
            assert r.status_code == 200 and len(r.content) > 1000, (page, a, r.status_code)
    assert "swagger-ui" in client.get("/docs").text


def test_role_matrix(app_routes, ctx: Ctx) -> None:
    failures = []
    calls = 0
    for method, path, route in _api_routes(app_routes):
        rule = route_rule(route)
        for role in (*ROLES, None):
            req = SAMPLES[(method, path)](ctx, role)
            r = ctx.client.request(req.method, req.url, headers=ctx.headers[role], **req.kwargs)
            calls += 1
            if rule == PUBLIC or (role is not None and role in rule):
                expected = req.ok
                if r.status_code in expected and req.after:
                    req.after()
            elif role is None:
                expected = frozenset({401})
            else:
                expected = frozenset({403})
            if r.status_code not in expected:
                failures.append((method, path, role, r.status_code, r.text[:200]))
    assert failures == []
    assert calls == 6 * len(list(_api_routes(app_routes)))
