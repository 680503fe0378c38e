"""Catalog write routes keep the CLI's rules: publication needs 100 % encryption coverage, and
another department's unpublished entry does not exist for a steward (404, not 403)."""

from __future__ import annotations

import json

import yaml
from api_testdata import OWNED

UNPUBLISHED_OTHER = "RSJ-0001"  # registered by 人社, never published
SCJG = "SCJG-0001"  # scjg_steward's published entry


def _h(tokens: dict[str, str], name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[name]}"}


def test_another_departments_unpublished_entry_is_absent_on_every_steward_route(client, tokens):
    h = _h(tokens, "scjg_steward")
    base = f"/api/v1/catalog/datasets/{UNPUBLISHED_OTHER}"
    for method, path, kw in [
        ("GET", base, {}),
        ("PATCH", base, {"json": {"summary": "x"}}),
        ("POST", f"{base}/publish", {}),
        ("POST", f"{base}/unpublish", {}),
        ("GET", f"{base}/rows", {}),
    ]:
        r = client.request(method, path, headers=h, **kw)
        assert r.status_code == 404, (method, path, r.text)
        # the same answer as for a code that does not exist: the owner is not named
        assert r.json()["detail"] == f"catalog entry {UNPUBLISHED_OTHER!r} not found"
    # a published entry of another department is visible, so its refusal may say whose it is
    r = client.post(f"/api/v1/catalog/datasets/{OWNED}/publish", headers=h)
    assert r.status_code == 403 and "SWJ" in r.json()["detail"]


def test_publish_through_the_api_needs_full_encryption_coverage(client, tokens, api_home):
    import catalog
    from govdx import Contract

    settings, _ = api_home
    h = _h(tokens, "scjg_steward")
    with catalog.session_scope(settings.catalog_db_url) as s:
        original = catalog.get_dataset(session=s, code=SCJG).contract_yaml
    data = yaml.safe_load(original)
    plain = next(f for f in data["fields"] if Contract.from_dict(data).field(f["name"]).protected
                 is False and f.get("type", "string") == "string")  # fmt: skip
    plain["grade"] = "important"  # regraded in the catalog; the stored version is plaintext
    regraded = Contract.from_dict(data, path="test")
    assert client.post(f"/api/v1/catalog/datasets/{SCJG}/unpublish", headers=h).status_code == 200
    try:
        with catalog.session_scope(settings.catalog_db_url) as s:
            catalog.upsert_dataset(session=s, contract=regraded)
        r = client.post(f"/api/v1/catalog/datasets/{SCJG}/publish", headers=h)
        assert r.status_code == 409, r.text
        detail = r.json()["detail"]
        assert "publication refused (发布被拒绝)" in detail
        assert detail.endswith(f"plaintext protected fields: {plain['name']}")
        with catalog.session_scope(settings.catalog_db_url) as s:
            assert catalog.get_dataset(session=s, code=SCJG).published is False
    finally:
        with catalog.session_scope(settings.catalog_db_url) as s:
            catalog.upsert_dataset(
                session=s,
                contract=Contract.from_dict(yaml.safe_load(original), path="test"),
                contract_yaml=original,
            )
    r = client.post(f"/api/v1/catalog/datasets/{SCJG}/publish", headers=h)
    assert r.status_code == 200, r.text


def test_patch_cannot_open_protected_data_to_all(client, tokens):
    r = client.patch(
        f"/api/v1/catalog/datasets/{SCJG}",
        headers=_h(tokens, "scjg_steward"),
        json={"open": {"type": "unconditional"}},
    )
    assert r.status_code == 422, r.text
    assert "open.type: 'unconditional' (无条件开放)" in json.dumps(r.json(), ensure_ascii=False)
