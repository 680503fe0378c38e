"""Catalog write routes keep the CLI's rules: publication needs 100 % encryption coverage, and
another department's unpublished entry does not exist for a steward (404, not 403)."""

from __future__ import annotations

import json

import pytest
import yaml
from api_testdata import OWNED

import catalog

UNPUBLISHED_OTHER = "RSJ-0001"  # registered by 人社, never published
SCJG = "SCJG-0001"  # scjg_steward's published entry


@pytest.fixture
def catalog_session(api_home):
    """A catalog session factory on the live server's home (commits on exit)."""
    settings, _ = api_home
    return lambda: catalog.session_scope(settings.catalog_db_url)


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


def _upload(client, tokens, data: dict):
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False).encode()
    return client.put(
        "/api/v1/catalog/contracts",
        headers=_h(tokens, "scjg_steward"),
        files={"contract": ("c.yaml", text)},
    )


def test_upload_cannot_rename_a_registered_table_and_refusals_are_audited(
    client, tokens, catalog_session
):
    with catalog_session() as s:
        data = yaml.safe_load(catalog.get_dataset(session=s, code=SCJG).contract_yaml)
    data["source"]["path"] = "enterprise.csv"
    data["name"] = "renamed_registry"
    r = _upload(client, tokens, data)
    assert r.status_code == 422, r.text
    [err] = r.json()["detail"]
    assert err["loc"][-1] == "name" and "keeps its table name" in err["msg"]
    audit = client.get(
        "/api/v1/audit/entries",
        headers=_h(tokens, "admin1"),
        params={"actor": "scjg_steward", "action": "catalog.refuse"},
    ).json()
    assert any(
        e["subject"] == "contract-upload" and "keeps its table name" in e["details"]["reason"]
        for e in audit["entries"]
    )


def test_an_upload_that_leaves_a_protected_field_in_plaintext_withdraws_publication(
    client, tokens, catalog_session
):
    from govdx import Contract

    with catalog_session() as s:
        ds = catalog.get_dataset(session=s, code=SCJG)
        original, was_published = ds.contract_yaml, ds.published
    assert was_published
    data = yaml.safe_load(original)
    data["source"]["path"] = "enterprise.csv"
    plain = next(f for f in data["fields"] if Contract.from_dict(data).field(f["name"]).protected
                 is False and f.get("type", "string") == "string")  # fmt: skip
    plain["grade"] = "important"
    try:
        r = _upload(client, tokens, data)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["unpublished"].endswith(f"plaintext protected fields: {plain['name']}")
        with catalog_session() as s:
            assert catalog.get_dataset(session=s, code=SCJG).published is False
    finally:
        with catalog_session() as s:
            catalog.upsert_dataset(
                session=s,
                contract=Contract.from_dict(yaml.safe_load(original), path="test"),
                contract_yaml=original,
            )
        # republish through the API: the server's catalog index is refreshed with it
        r = client.post(
            f"/api/v1/catalog/datasets/{SCJG}/publish", headers=_h(tokens, "scjg_steward")
        )
        assert r.status_code == 200, r.text
