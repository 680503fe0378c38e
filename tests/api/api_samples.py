"""One sample request per route of the app, for the role matrix and the no-rows test.

``SAMPLES[(method, path)]`` is a function ``(ctx, role) -> Req``; the request it builds must
succeed (status in ``ok``) for every role the route admits. A route of the app without a sample
fails ``test_every_route_has_a_rule_and_a_sample``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from api_testdata import OPEN_CODE, OWNED, ROLE_USER, password, spec_json

SUBMITTERS = {"requester", "analyst", "steward"}


@dataclass
class Req:
    method: str
    url: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    ok: frozenset[int] = frozenset({200})
    after: Callable[[], None] | None = None


class Ctx:
    """What the samples need: the client, headers, the settings, a PSI request, a job factory."""

    def __init__(self, client, role_headers, settings, psi_request: bytes, tmp: Path) -> None:
        self.client = client
        self.headers = role_headers
        self.settings = settings
        self.psi_request = psi_request
        self.tmp = tmp
        self._n = 0

    def new_job(self, user: str) -> str:
        """Submit a fresh PSI job as ``user`` in-process (not through the rate-limited API)."""
        from sandbox import Sandbox, parse_job_spec

        self._n += 1
        req = self.tmp / f"req{self._n}.bin"
        req.write_bytes(self.psi_request)
        spec = parse_job_spec(json.loads(spec_json()))
        spec = spec.model_copy(update={"inputs": {"request": str(req)}})
        box = Sandbox(self.settings)
        try:
            return box.submit(spec, user=user)["id"]
        finally:
            box.close()

    def job_for(self, role: str | None) -> str:
        user = ROLE_USER[role] if role in SUBMITTERS else "bank"
        return self.new_job(user)

    def contract_text(self) -> str:
        import catalog

        with catalog.session_scope(self.settings.catalog_db_url) as s:
            data = yaml.safe_load(catalog.get_dataset(session=s, code=OWNED).contract_yaml)
        data["source"]["path"] = "tax_payment.csv"  # uploads read from the department's inbox
        return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def _login(ctx: Ctx, role: str | None) -> Req:
    name = ROLE_USER.get(role or "", "bank")
    return Req(
        "POST", "/api/v1/auth/token", {"data": {"username": name, "password": password(name)}}
    )


def _republish(ctx: Ctx) -> Callable[[], None]:
    def go() -> None:
        r = ctx.client.post(
            f"/api/v1/catalog/datasets/{OWNED}/publish", headers=ctx.headers["steward"]
        )
        assert r.status_code == 200, r.text

    return go


V1 = "/api/v1"
A3 = "/api/3/action"
SAMPLES: dict[tuple[str, str], Callable[[Ctx, str | None], Req]] = {
    ("POST", f"{V1}/auth/token"): _login,
    ("GET", f"{V1}/auth/me"): lambda c, r: Req("GET", f"{V1}/auth/me"),
    ("GET", f"{V1}/catalog/datasets"): lambda c, r: Req(
        "GET", f"{V1}/catalog/datasets", {"params": {"q": "纳税"}}
    ),
    ("GET", f"{V1}/catalog/datasets/{{code}}"): lambda c, r: Req(
        "GET", f"{V1}/catalog/datasets/{OWNED}"
    ),
    ("PATCH", f"{V1}/catalog/datasets/{{code}}"): lambda c, r: Req(
        "PATCH",
        f"{V1}/catalog/datasets/{OWNED}",
        {"json": {"summary": "企业分年度实缴税额与纳税信用等级（A/B/C/D/M）"}},
    ),
    ("POST", f"{V1}/catalog/datasets/{{code}}/publish"): lambda c, r: Req(
        "POST", f"{V1}/catalog/datasets/{OWNED}/publish"
    ),
    ("POST", f"{V1}/catalog/datasets/{{code}}/unpublish"): lambda c, r: Req(
        "POST", f"{V1}/catalog/datasets/{OWNED}/unpublish", after=_republish(c)
    ),
    ("PUT", f"{V1}/catalog/contracts"): lambda c, r: Req(
        "PUT",
        f"{V1}/catalog/contracts",
        {"files": {"contract": ("tax.yaml", c.contract_text().encode(), "application/yaml")}},
    ),
    ("GET", f"{V1}/catalog/datasets/{{code}}/rows"): lambda c, r: Req(
        "GET", f"{V1}/catalog/datasets/{OWNED}/rows", {"params": {"limit": 5}}
    ),
    ("POST", f"{V1}/sandbox/jobs"): lambda c, r: Req(
        "POST",
        f"{V1}/sandbox/jobs",
        {"data": {"spec": spec_json()}, "files": {"inputs": ("req.bin", c.psi_request)}},
        ok=frozenset({201}),
    ),
    ("GET", f"{V1}/sandbox/jobs"): lambda c, r: Req("GET", f"{V1}/sandbox/jobs"),
    ("GET", f"{V1}/sandbox/jobs/{{job_id}}"): lambda c, r: Req(
        "GET", f"{V1}/sandbox/jobs/{c.job_for(r)}"
    ),
    ("POST", f"{V1}/sandbox/jobs/{{job_id}}/approve"): lambda c, r: Req(
        "POST", f"{V1}/sandbox/jobs/{c.new_job('bank')}/approve", {"json": {"reason": "同意"}}
    ),
    ("POST", f"{V1}/sandbox/jobs/{{job_id}}/reject"): lambda c, r: Req(
        "POST", f"{V1}/sandbox/jobs/{c.new_job('bank')}/reject", {"json": {"reason": "用途不明"}}
    ),
    ("POST", f"{V1}/sandbox/jobs/{{job_id}}/cancel"): lambda c, r: Req(
        "POST", f"{V1}/sandbox/jobs/{c.job_for(r)}/cancel", {"json": {"reason": "不再需要"}}
    ),
    # a fresh job has no result yet: an admitted role gets 409 (the role rule passed); the
    # released download (200) is tested end to end in test_api_sandbox.py
    ("GET", f"{V1}/sandbox/jobs/{{job_id}}/result"): lambda c, r: Req(
        "GET", f"{V1}/sandbox/jobs/{c.job_for(r)}/result", ok=frozenset({409})
    ),
    ("GET", f"{V1}/sandbox/budget"): lambda c, r: Req("GET", f"{V1}/sandbox/budget"),
    ("GET", f"{V1}/reports/sharing-rate"): lambda c, r: Req("GET", f"{V1}/reports/sharing-rate"),
    ("GET", f"{V1}/reports/quality"): lambda c, r: Req("GET", f"{V1}/reports/quality"),
    ("GET", f"{V1}/reports/duplicate-collection"): lambda c, r: Req(
        "GET", f"{V1}/reports/duplicate-collection"
    ),
    ("GET", f"{V1}/reports/security-coverage"): lambda c, r: Req(
        "GET", f"{V1}/reports/security-coverage"
    ),
    ("GET", f"{V1}/audit/verify"): lambda c, r: Req("GET", f"{V1}/audit/verify"),
    ("GET", f"{V1}/audit/entries"): lambda c, r: Req(
        "GET", f"{V1}/audit/entries", {"params": {"limit": 20}}
    ),
    ("GET", f"{A3}/package_search"): lambda c, r: Req(
        "GET", f"{A3}/package_search", {"params": {"q": "人口"}}
    ),
    ("POST", f"{A3}/package_search"): lambda c, r: Req(
        "POST", f"{A3}/package_search", {"json": {"q": "人口"}}
    ),
    ("GET", f"{A3}/package_show"): lambda c, r: Req(
        "GET", f"{A3}/package_show", {"params": {"id": OPEN_CODE.lower()}}
    ),
    ("POST", f"{A3}/package_show"): lambda c, r: Req(
        "POST", f"{A3}/package_show", {"json": {"id": OPEN_CODE.lower()}}
    ),
    ("GET", f"{A3}/package_list"): lambda c, r: Req("GET", f"{A3}/package_list"),
    ("POST", f"{A3}/package_list"): lambda c, r: Req("POST", f"{A3}/package_list", {"json": {}}),
    ("GET", f"{A3}/organization_list"): lambda c, r: Req("GET", f"{A3}/organization_list"),
    ("POST", f"{A3}/organization_list"): lambda c, r: Req(
        "POST", f"{A3}/organization_list", {"json": {"all_fields": True}}
    ),
    ("GET", f"{A3}/organization_show"): lambda c, r: Req(
        "GET", f"{A3}/organization_show", {"params": {"id": "tjj"}}
    ),
    ("POST", f"{A3}/organization_show"): lambda c, r: Req(
        "POST", f"{A3}/organization_show", {"json": {"id": "tjj", "include_datasets": True}}
    ),
    ("GET", "/catalog.jsonld"): lambda c, r: Req("GET", "/catalog.jsonld"),
    ("GET", "/dataset/{ident}.jsonld"): lambda c, r: Req(
        "GET", f"/dataset/{OPEN_CODE.lower()}.jsonld"
    ),
    ("GET", "/healthz"): lambda c, r: Req("GET", "/healthz"),
    ("GET", "/metrics"): lambda c, r: Req("GET", "/metrics"),
}
# the legacy CKAN prefix (/api/action, ckanapi's default) serves the same actions
for (_m, _p), _f in list(SAMPLES.items()):
    if _p.startswith(A3 + "/"):

        def _legacy(c, r, _f=_f):
            req = _f(c, r)
            req.url = req.url.replace(A3, "/api/action", 1)
            return req

        SAMPLES[(_m, _p.replace(A3, "/api/action", 1))] = _legacy
