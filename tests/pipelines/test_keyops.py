"""Key rotation (KEK and dataset DEK), encryption coverage and the publication gate."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from typer.testing import CliRunner

import catalog
from govdx.cli import app
from govdx.demo import write_credit_demo
from pipelines import Lakehouse, ingest
from pipelines._keyops import encryption_coverage, rotate_kek
from privacy import decrypt_column, keyring_from_settings
from tests.conftest import make_contract

runner = CliRunner()


@pytest.fixture
def registry(settings, tmp_path):
    _, contracts = write_credit_demo(tmp_path / "w", rows=200, seed=3)
    path = next(c for c in contracts if c.name == "enterprise_registry.yaml")
    ingest(path, settings=settings)
    for args in (
        ["ops", "--role", "admin"],
        ["scjg", "--role", "steward", "--department", "SCJG"],
        ["swj", "--role", "steward", "--department", "SWJ"],
        ["bank", "--role", "requester", "--department", "BANK"],
    ):
        assert runner.invoke(app, ["users", "add", *args]).exit_code == 0
    return settings


def _plain_ids(settings, version: int) -> list[str]:
    lake = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)
    t = lake.read("enterprise_registry", version)
    f = t.schema.field("legal_rep_id")
    key = keyring_from_settings(settings).get("SCJG-0001", f.metadata[b"govdx.key_id"].decode())
    return decrypt_column(
        t["legal_rep_id"], key=key, dataset="SCJG-0001", column="legal_rep_id"
    ).to_pylist()


def test_dataset_key_rotation_writes_a_new_version_under_a_new_key(registry):
    before = _plain_ids(registry, 0)
    refused = runner.invoke(app, ["keys", "rotate", "--dataset", "SCJG-0001", "--user", "scjg"])
    assert refused.exit_code == 1 and "needs one of ['admin']" in refused.output
    res = runner.invoke(
        app, ["keys", "rotate", "--dataset", "SCJG-0001", "--json", "--user", "ops"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert (out["from_version"], out["version"]) == (0, 1)
    lake = Lakehouse(registry.lakehouse_dir, registry.quarantine_dir)
    k0 = lake.read("enterprise_registry", 0).schema.field("legal_rep_id").metadata[b"govdx.key_id"]
    k1 = lake.read("enterprise_registry", 1).schema.field("legal_rep_id").metadata[b"govdx.key_id"]
    assert k0 != k1 and k1.decode() == out["key_id"]
    assert _plain_ids(registry, 1) == before == _plain_ids(registry, 0)
    with catalog.session_scope(registry.catalog_db_url) as s:
        assert catalog.current_version(session=s, code="SCJG-0001").delta_version == 1
    for action in ("key.rotate", "dataset.reencrypt"):
        shown = json.loads(
            runner.invoke(app, ["audit", "show", "--action", action, "--json"]).output
        )
        assert [e["subject"] for e in shown] == ["dataset:SCJG-0001"]


def test_kek_rotation_rewraps_without_touching_data_and_resumes(registry):
    before = _plain_ids(registry, 0)
    kek_file = registry.keys_dir / "kek.key"
    old = kek_file.read_text()
    out = rotate_kek(registry)
    assert out["rewrapped"] >= 2 and out["old_kek_id"] != out["new_kek_id"]
    assert kek_file.read_text() != old and not (registry.keys_dir / "kek.key.next").exists()
    assert oct(kek_file.stat().st_mode & 0o777) == "0o600"
    assert _plain_ids(registry, 0) == before
    # an interrupted rotation (next key written, not yet installed) resumes with that key
    nxt = registry.keys_dir / "kek.key.next"
    nxt.write_text("00112233445566778899aabbccddeeff\n")
    nxt.chmod(0o600)
    rotate_kek(registry)
    assert kek_file.read_text().strip() == "00112233445566778899aabbccddeeff"
    assert _plain_ids(registry, 0) == before


def test_coverage_counts_plaintext_protected_fields_and_publication_is_refused(settings):
    contract = make_contract()
    lake = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)
    plain = pa.table(
        {
            "uscc": ["1"],
            "legal_rep_id": ["11010519491231002X"],
            "reg_capital": pa.array([None], pa.decimal128(38, 2)),
        }
    )
    lake.commit(contract.name, plain, digest="a" * 64, run_id="r")
    cov = encryption_coverage(contract, lakehouse=lake, version=0)
    assert (cov.protected, cov.encrypted, cov.missing, cov.ratio) == (
        ["legal_rep_id"],
        [],
        ["legal_rep_id"],
        0.0,
    )
    import yaml

    with catalog.session_scope(settings.catalog_db_url) as s:
        ds = catalog.upsert_dataset(
            session=s,
            contract=contract,
            contract_yaml=yaml.safe_dump(contract.model_dump(mode="json"), allow_unicode=True),
        )
        catalog.add_version(
            session=s,
            dataset=ds,
            delta_version=0,
            row_count=1,
            quarantined_count=0,
            source_digest="a" * 64,
            source_name="x.csv",
            source_bytes=1,
            run_id=catalog.new_run_id(),
        )
    runner.invoke(app, ["users", "add", "scjg", "--role", "steward", "--department", "SCJG"])
    res = runner.invoke(app, ["catalog", "publish", contract.code, "--user", "scjg"])
    assert (
        res.exit_code == 1 and "publication refused" in res.output and "legal_rep_id" in res.output
    )
    with catalog.session_scope(settings.catalog_db_url) as s:
        assert catalog.get_dataset(session=s, code=contract.code).published is False


def test_publication_allowed_at_full_coverage(registry):
    for user, why in (("bank", "needs one of"), ("swj", "not of SCJG"), ("nobody", "unknown user")):
        res = runner.invoke(app, ["catalog", "publish", "SCJG-0001", "--user", user])
        assert res.exit_code == 1 and why in res.output, res.output
    res = runner.invoke(app, ["catalog", "publish", "SCJG-0001", "--json", "--user", "scjg"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["published"] is True
