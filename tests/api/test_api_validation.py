"""Validation at the door: 422 with field paths, size limits, submission rate limit."""

from __future__ import annotations

import json

import pytest
import yaml
from api_testdata import OWNED, spec_json


@pytest.fixture(scope="module")
def h(tokens):
    return {n: {"Authorization": f"Bearer {t}"} for n, t in tokens.items()}


def test_query_errors_name_the_field(client, h) -> None:
    r = client.get("/api/v1/catalog/datasets", params={"limit": 0}, headers=h["bank"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "limit"]
    r = client.get("/api/v1/catalog/datasets", params={"grade": "secret"}, headers=h["bank"])
    assert r.json()["detail"][0]["loc"] == ["query", "grade"]
    r = client.get("/api/v1/catalog/datasets", params={"bogus": 1}, headers=h["bank"])
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "extra_forbidden"


def test_catalog_search_filters(client, h) -> None:
    def codes(**params):
        r = client.get("/api/v1/catalog/datasets", params=params, headers=h["bank"])
        return [d["code"] for d in r.json()["data"]]

    assert codes() == ["SCJG-0001", "SWJ-0001", "TJJ-PUB-0001"]  # RSJ-0001 unpublished
    assert codes(q="纳税 信用") == ["SWJ-0001"]
    assert codes(q="ENTERPRISE") == ["SCJG-0001"]
    assert codes(element="resident_id") == ["SCJG-0001"]
    assert codes(open_type="unconditional") == ["TJJ-PUB-0001"]
    assert codes(grade="important", department="SWJ") == ["SWJ-0001"]
    r = client.get("/api/v1/catalog/datasets", params={"q": "社会保险"}, headers=h["swj_steward"])
    assert r.json()["count"] == 0
    r = client.get("/api/v1/catalog/datasets/RSJ-0001", headers=h["bank"])
    assert r.status_code == 404
    assert client.get("/api/v1/catalog/datasets/RSJ-0001", headers=h["admin1"]).status_code == 200


def test_body_errors_name_the_key(client, h) -> None:
    r = client.patch(
        f"/api/v1/catalog/datasets/{OWNED}",
        headers=h["swj_steward"],
        json={"share": {"type": "conditional"}},
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "contract", "share"]
    r = client.patch(
        f"/api/v1/catalog/datasets/{OWNED}", headers=h["swj_steward"], json={"tittle": "x"}
    )
    assert r.json()["detail"][0]["loc"] == ["body", "tittle"]
    bad = json.loads(spec_json())
    bad["computation"]["params"]["max_items"] = 0
    r = client.post(
        "/api/v1/sandbox/jobs",
        headers=h["victim"],
        data={"spec": json.dumps(bad)},
        files={"inputs": ("req.bin", b"x")},
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "spec", "computation", "params", "max_items"]
    bad["computation"]["params"]["colour"] = "red"  # two errors: one entry each
    r = client.post(
        "/api/v1/sandbox/jobs",
        headers=h["analyst1"],  # another submitter: victim's submission rate stays low
        data={"spec": json.dumps(bad)},
        files={"inputs": ("req.bin", b"x")},
    )
    assert sorted(e["loc"][-1] for e in r.json()["detail"]) == ["colour", "max_items"]
    # a valid spec with a malformed request file: the client's input, so 422 (not a 403 policy)
    r = client.post(
        "/api/v1/sandbox/jobs",
        headers=h["analyst1"],
        data={"spec": spec_json()},
        files={"inputs": ("req.bin", b"GDXP\x01Qgarbage")},
    )
    assert r.status_code == 422 and "not a well-formed PSI request" in r.json()["detail"]


def test_contract_upload_checks(client, h) -> None:
    text = (
        "code: SWJ-9\nname: t\ntitle: t\ndepartment: {code: SWJ, name: 税务局}\n"
        "source: {path: x.csv, format: csv}\nshare: {type: none}\n"
        "fields: [{name: a, type: text}]\n"
    )
    r = client.put(
        "/api/v1/catalog/contracts",
        headers=h["swj_steward"],
        files={"contract": ("c.yaml", text.encode())},
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == [
        "body",
        "contract",
        "fields",
        "0",
        "type",
    ]
    other = text.replace("SWJ, name: 税务局", "SCJG, name: 市场监督管理局").replace(
        "text", "string"
    )
    r = client.put(
        "/api/v1/catalog/contracts",
        headers=h["swj_steward"],
        files={"contract": ("c.yaml", other.encode())},
    )
    assert r.status_code == 403 and "SCJG" in r.json()["detail"]
    r = client.put(
        "/api/v1/catalog/contracts",
        headers=h["swj_steward"],
        files={"contract": ("c.yaml", b"#" * (300 << 10))},
    )
    assert r.status_code == 413


def test_uploaded_contracts_read_only_from_the_departments_inbox(client, h, api_home) -> None:
    """A steward's contract is ingested by the platform: its source must lie in
    ``<home>/inbox/<DEPT>/``, or it could read another department's raw file or the key store."""
    settings, _ = api_home
    keys = settings.keys_dir / "kek.key"
    (settings.inbox_dir / "SWJ").mkdir(parents=True, exist_ok=True)
    (settings.inbox_dir / "SWJ" / "out").symlink_to(settings.keys_dir)

    def upload(path: str):
        text = (
            "code: SWJ-8\nname: t8\ntitle: t\ndepartment: {code: SWJ, name: 税务局}\n"
            f"source: {{path: '{path}', format: csv}}\nshare: {{type: none}}\n"
            "fields: [{name: a, type: string}]\n"
        )
        return client.put(
            "/api/v1/catalog/contracts",
            headers=h["swj_steward"],
            files={"contract": ("c.yaml", text.encode())},
        )

    for bad in (str(keys), "../keys/kek.key", "~/x.csv", "a/../../keys/kek.key", "out/kek.key"):
        r = upload(bad)
        assert r.status_code == 422, (bad, r.text)
        [err] = r.json()["detail"]
        assert err["loc"][-2:] == ["source", "path"] and "inbox" in err["msg"], (bad, err)
    r = upload("2025/tax.csv")
    assert r.status_code == 200, r.text
    stored = yaml.safe_load((settings.contracts_dir / "SWJ-8.yaml").read_text(encoding="utf-8"))
    assert stored["source"]["path"] == str(settings.inbox_dir / "SWJ" / "2025" / "tax.csv")


def test_size_limits(client, h) -> None:
    r = client.post(
        "/api/v1/sandbox/jobs",
        headers=h["victim"],
        data={"spec": spec_json()},
        files={"inputs": ("req.bin", b"\0" * ((1 << 20) + 1))},
    )
    assert r.status_code == 413 and "inputs.request" in r.json()["detail"]
    r = client.post(
        "/api/v1/auth/token",
        content=b"u" * (3 << 20),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413


def test_submission_rate_limit(client, h) -> None:
    codes = [
        client.post("/api/v1/sandbox/jobs", headers=h["burst"], data={"spec": "{}"}).status_code
        for _ in range(6)
    ]
    assert codes == [422] * 5 + [429]
    r = client.get(
        "/api/v1/audit/entries",
        headers=h["admin1"],
        params={"actor": "burst", "action": "job.submit.throttled"},
    )
    assert r.json()["count"] == 1


def test_reports_refuse_unknown_parameters_and_departments(client, h) -> None:
    r = client.get(
        "/api/v1/reports/sharing-rate",
        headers=h["analyst1"],
        params={"dataset": "SWJ-0001", "departmnet": "SWJ"},
    )
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["detail"]] == [["query", "dataset"], ["query", "departmnet"]]
    r = client.get(
        "/api/v1/reports/sharing-rate", headers=h["analyst1"], params={"department": "NOPE"}
    )
    assert r.status_code == 422 and "department 'NOPE': no such department" in r.text
    r = client.get(
        "/api/v1/reports/sharing-rate", headers=h["analyst1"], params={"department": "SWJ"}
    )
    assert r.status_code == 200


def test_tags_are_bounded(client, h) -> None:
    r = client.patch(
        "/api/v1/catalog/datasets/SWJ-0001", headers=h["swj_steward"], json={"tags": ["x" * 65]}
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-2:] == ["tags", 0]
    r = client.patch(
        "/api/v1/catalog/datasets/SWJ-0001", headers=h["swj_steward"], json={"tags": ["a", "a"]}
    )
    assert r.status_code == 422 and "duplicate tag(s) ['a']" in r.text
