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
    # the first admin is the operator's bootstrap (no --user); after it an admin adds users
    assert runner.invoke(app, ["users", "add", "ops", "--role", "admin"]).exit_code == 0
    for args in (
        ["scjg", "--role", "steward", "--department", "SCJG"],
        ["swj", "--role", "steward", "--department", "SWJ"],
        ["bank", "--role", "requester", "--department", "BANK"],
    ):
        assert runner.invoke(app, ["users", "add", *args, "--user", "ops"]).exit_code == 0
    return settings


def test_only_an_admin_adds_users_once_one_exists(registry):
    res = runner.invoke(app, ["users", "add", "evil", "--role", "admin", "--user", "bank"])
    assert res.exit_code == 1 and "'bank' is a requester; adding users needs an admin" in res.output
    res = runner.invoke(app, ["users", "add", "evil", "--role", "admin"])
    assert res.exit_code == 1 and "an admin exists: pass --user ADMIN" in res.output
    res = runner.invoke(app, ["users", "add", "ana", "--role", "analyst", "--user", "ops"])
    assert res.exit_code == 0 and res.output == "user 'ana' added (已添加用户): role analyst\n"
    names = {u["name"] for u in json.loads(runner.invoke(app, ["users", "list", "--json"]).output)}
    assert "ana" in names and "evil" not in names
    res = runner.invoke(
        app, ["users", "add", "st2", "--role", "steward", "--department", "scjg", "--user", "ops"]
    )
    assert res.exit_code == 1 and "the catalog spells it 'SCJG'" in res.output
    res = runner.invoke(app, ["users", "disable", "ana", "--user", "bank"])
    assert res.exit_code == 1 and "this needs an admin" in res.output
    assert runner.invoke(app, ["users", "disable", "ana", "--user", "ops"]).exit_code == 0
    users = json.loads(runner.invoke(app, ["users", "list", "--json"]).output)
    assert [u["disabled_at"] is not None for u in users if u["name"] == "ana"] == [True]
    res = runner.invoke(app, ["users", "add", "x", "--role", "analyst", "--user", "ana"])
    assert res.exit_code == 1 and "用户已停用" in res.output  # a disabled user cannot act


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

    _register_version0(settings, contract, digest="a" * 64, source_name="x.csv")
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


# --- concurrency of key operations (密钥运维并发) -------------------------------------------------
def _assert_keyring_healthy(settings) -> None:
    """Every DEK of every dataset (and the token master) unwraps under the KEK of kek.key now."""
    ring = keyring_from_settings(settings)
    current = ring.kms.kek_id
    assert not (settings.keys_dir / "kek.key.next").exists()
    n = 0
    for path in sorted((settings.keys_dir / "deks").glob("*.json")):
        doc = json.loads(path.read_text())
        for entry in doc["keys"]:
            assert entry["kek_id"] == current, (path.name, entry["key_id"])
            assert len(ring.get(doc["dataset"], entry["key_id"]).key) == 16
            n += 1
        assert doc["current"] == doc["keys"][-1]["key_id"]
    assert n >= 1
    tm = settings.keys_dir / "token-master.json"
    if tm.exists():
        assert json.loads(tm.read_text())["kek_id"] == current


def test_dataset_rotation_racing_a_kek_rotation_wraps_under_the_current_kek(registry, monkeypatch):
    """Deterministic interleaving: a KEK rotation completes while a dataset rotation is between
    loading the keyring and creating its new DEK (the seam: the lakehouse read)."""
    import pipelines._keyops as keyops

    before = _plain_ids(registry, 0)
    real_read = keyops.Lakehouse.read
    rotated: list[dict] = []

    def read_then_rotate_kek(self, name, version=None):
        table = real_read(self, name, version)
        if not rotated:
            rotated.append(rotate_kek(registry))
        return table

    monkeypatch.setattr(keyops.Lakehouse, "read", read_then_rotate_kek)
    contract = next(
        c
        for c in (keyops.contract_of(d) for d in _catalog_entries(registry))
        if c.code == "SCJG-0001"
    )
    result, key_id = keyops.rotate_dataset_key(
        contract, settings=registry, version=0, run_id="r-race", digest="d" * 64
    )
    monkeypatch.undo()
    assert len(rotated) == 1 and result.version == 1
    doc = json.loads((registry.keys_dir / "deks" / "SCJG-0001.json").read_text())
    assert doc["current"] == key_id
    assert {e["kek_id"] for e in doc["keys"]} == {rotated[0]["new_kek_id"]}
    _assert_keyring_healthy(registry)
    again = rotate_kek(registry)  # failed with 主密钥不符 before the fix
    assert again["old_kek_id"] == rotated[0]["new_kek_id"]
    _assert_keyring_healthy(registry)
    assert _plain_ids(registry, 1) == before == _plain_ids(registry, 0)


def _catalog_entries(settings):
    with catalog.session_scope(settings.catalog_db_url) as s:
        out = catalog.list_datasets(session=s)
        s.expunge_all()
    return out


def test_a_keyring_opened_before_a_kek_rotation_keeps_working(registry):
    """A long-lived keyring (an ingestion, a sandbox run) that loaded the KEK before a rotation
    reads the re-wrapped keys and creates new ones under the new KEK, never the retired one."""
    stale = keyring_from_settings(registry)
    old_key_id = json.loads((registry.keys_dir / "deks" / "SCJG-0001.json").read_text())["current"]
    out = rotate_kek(registry)
    assert stale.get("SCJG-0001", old_key_id).key_id == old_key_id
    stale.new_data_key("SCJG-0001")
    stale.current("NEW-0001")
    for path in (registry.keys_dir / "deks").glob("*.json"):
        assert {e["kek_id"] for e in json.loads(path.read_text())["keys"]} == {out["new_kek_id"]}
    rotate_kek(registry)
    _assert_keyring_healthy(registry)


def test_an_interrupted_kek_rotation_is_readable_and_resumes(registry):
    """Crash after re-wrapping, before kek.key was replaced: both KEKs are on disk; keys under
    either are readable, new keys are wrapped under kek.key, and the re-run finishes."""
    from privacy import Keyring, LocalKms

    before = _plain_ids(registry, 0)
    nxt = registry.keys_dir / "kek.key.next"
    nxt.write_text("00112233445566778899aabbccddeeff\n")
    nxt.chmod(0o600)
    old = LocalKms.from_file(registry.keys_dir / "kek.key")
    Keyring(registry.keys_dir, old).rewrap(LocalKms.from_file(nxt))  # the crashed rotation
    assert _plain_ids(registry, 0) == before  # readable under the pending KEK
    ring = keyring_from_settings(registry)
    ring.new_data_key("SCJG-0001")
    rotate_kek(registry)
    assert (registry.keys_dir / "kek.key").read_text().strip() == "00112233445566778899aabbccddeeff"
    _assert_keyring_healthy(registry)
    assert _plain_ids(registry, 0) == before


def test_a_dek_under_a_retired_kek_is_explained_and_repaired_with_old_kek(registry, tmp_path):
    """A keyring broken before the fix (a DEK wrapped under the KEK a rotation retired): the
    rotation names the key, the retired KEK and the command that repairs it."""
    from privacy import KeyManagementError, Keyring, LocalKms

    assert (
        runner.invoke(app, ["users", "add", "admin1", "--role", "admin", "--user", "ops"]).exit_code
        == 0
    )
    backup = tmp_path / "kek-backup.key"
    backup.write_text((registry.keys_dir / "kek.key").read_text())
    backup.chmod(0o600)
    first = rotate_kek(registry)
    broken = Keyring(registry.keys_dir, LocalKms.from_file(backup)).new_data_key("SCJG-0001")
    res = runner.invoke(app, ["keys", "rotate", "--kek", "--user", "admin1"])
    assert res.exit_code == 1
    msg = " ".join(res.output.split())
    assert f"key '{broken.key_id}'" in msg and first["old_kek_id"] in msg
    assert "retired" in msg and "--old-kek" in msg, msg
    with pytest.raises(KeyManagementError, match="--old-kek"):
        rotate_kek(registry)
    wrong = tmp_path / "wrong.key"
    wrong.write_text("ff" * 16 + "\n")
    wrong.chmod(0o600)
    res = runner.invoke(
        app, ["keys", "rotate", "--kek", "--old-kek", str(wrong), "--user", "admin1"]
    )
    assert res.exit_code == 1 and "--old-kek" in res.output
    res = runner.invoke(
        app, ["keys", "rotate", "--kek", "--old-kek", str(backup), "--json", "--user", "admin1"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["rewrapped"] >= 3
    _assert_keyring_healthy(registry)
    assert keyring_from_settings(registry).get("SCJG-0001", broken.key_id).key == broken.key


class _NoAudit:
    """Stands in for the CLI's auditor in the worker processes (the audit DB is not under test)."""

    def callback(self, user, subject):
        return None

    def record(self, *args, **kwargs):
        return None


def _rotate_worker(home: str, what: str, rounds: int, barrier, errors) -> None:
    """One process of the concurrency test: `rotate --dataset` as the CLI runs it, or `--kek`;
    imports once, then one operation per round between two barrier waits."""
    from govdx import Settings
    from govdx.cli._keys import _rotate_dataset

    settings = Settings(home=home)
    for _ in range(rounds):
        barrier.wait(timeout=120)
        try:
            if what == "kek":
                rotate_kek(settings)
            else:
                _rotate_dataset(settings, what, auditor=_NoAudit(), user="ops")
        except Exception as exc:  # reported to the parent
            errors.put(f"{what}: {type(exc).__name__}: {exc}")
        barrier.wait(timeout=120)


@pytest.mark.slow
def test_concurrent_dataset_and_kek_rotations_in_processes(registry):
    """`rotate --dataset` twice and `rotate --kek` at once in three processes, five rounds: all
    succeed, no version is lost and every DEK unwraps under the KEK of kek.key after each round."""
    import multiprocessing as mp

    rounds = 5
    ctx = mp.get_context("spawn")  # deltalake's tokio runtime does not survive fork
    before = _plain_ids(registry, 0)
    barrier, errors = ctx.Barrier(4), ctx.Queue()
    procs = [
        ctx.Process(target=_rotate_worker, args=(str(registry.home), w, rounds, barrier, errors))
        for w in ("SCJG-0001", "SCJG-0001", "kek")
    ]
    for p in procs:
        p.start()
    try:
        for _ in range(rounds):
            barrier.wait(timeout=180)  # go
            barrier.wait(timeout=180)  # all three done
            failures = []
            while not errors.empty():
                failures.append(errors.get())
            assert failures == []
            _assert_keyring_healthy(registry)
    finally:
        barrier.abort()
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    with catalog.session_scope(registry.catalog_db_url) as s:
        v = catalog.current_version(session=s, code="SCJG-0001").delta_version
    assert v == 2 * rounds  # every rotation wrote its own version, none overwritten
    assert _plain_ids(registry, v) == before
    rotate_kek(registry)
    _assert_keyring_healthy(registry)


# --- datasets without protected fields ------------------------------------------------------------
def _register_plain_dataset(settings):
    """A catalog entry with one stored version and no protected field (like TJJ-PUB-0001)."""

    contract = make_contract(
        code="TJJ-T001",
        name="stats_test",
        fields=[
            {"name": "uscc", "title": "统一社会信用代码", "required": True, "element": "uscc"},
            {"name": "reg_capital", "title": "注册资本(万元)", "type": "decimal", "scale": 2},
        ],
    )
    assert contract.protected_fields == []
    lake = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)
    table = pa.table({"uscc": ["1"], "reg_capital": pa.array([None], pa.decimal128(38, 2))})
    lake.commit(contract.name, table, digest="b" * 64, run_id="r")
    _register_version0(settings, contract, digest="b" * 64, source_name="stats.csv")
    return contract


def test_coverage_of_a_dataset_without_protected_fields_is_0_of_0(registry):
    _register_plain_dataset(registry)
    rows = {
        r["code"]: r for r in json.loads(runner.invoke(app, ["keys", "coverage", "--json"]).output)
    }
    assert (rows["TJJ-T001"]["protected"], rows["TJJ-T001"]["ratio"]) == ([], None)
    assert rows["SCJG-0001"]["ratio"] == 1.0
    res = runner.invoke(app, ["keys", "coverage"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if "TJJ-T001" in ln)
    assert "— (0 of 0)" in line and "100" not in line
    line = next(ln for ln in res.output.splitlines() if "SCJG-0001" in ln)
    assert "100.0% (1 of 1)" in line


def test_rotating_a_dataset_without_encrypted_columns_writes_nothing(registry):
    contract = _register_plain_dataset(registry)
    lake = Lakehouse(registry.lakehouse_dir, registry.quarantine_dir)
    res = runner.invoke(app, ["keys", "rotate", "--dataset", "TJJ-T001", "--user", "ops"])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "nothing to rotate" in said and "(0 protected fields)" in said
    res = runner.invoke(app, ["keys", "rotate", "--dataset", "TJJ-T001", "--json", "--user", "ops"])
    out = json.loads(res.output)
    assert (out["rotated"], out["version"], out["from_version"], out["key_id"]) == (
        False,
        0,
        0,
        None,
    )
    assert lake.current_version(contract.name) == 0
    assert not (registry.keys_dir / "deks" / "TJJ-T001.json").exists()
    with catalog.session_scope(registry.catalog_db_url) as s:
        assert catalog.current_version(session=s, code="TJJ-T001").delta_version == 0
    shown = json.loads(
        runner.invoke(app, ["audit", "show", "--action", "key.rotate", "--json"]).output
    )
    assert shown == []


def _register_version0(settings, contract, *, digest: str, source_name: str) -> None:
    """Register ``contract`` and its Delta version 0 (one row) in the catalog."""
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
            source_digest=digest,
            source_name=source_name,
            source_bytes=1,
            run_id=catalog.new_run_id(),
        )


def test_commands_refuse_a_home_that_does_not_exist(tmp_path, monkeypatch):
    """An unset GOVDX_HOME is ./var of the current directory: from elsewhere a command must not
    start a new deployment there (new keys included) without a word."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GOVDX_HOME", raising=False)
    monkeypatch.delenv("GOVDX_CATALOG_URL", raising=False)
    for args in (["catalog", "list"], ["sandbox", "list", "--user", "bank"], ["audit", "verify"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 1, (args, res.output)
        assert f"no govdx home at {tmp_path / 'var'} (GOVDX_HOME is unset" in " ".join(
            res.output.split()
        )
    assert not (tmp_path / "var").exists()
    assert runner.invoke(app, ["catalog", "list", "--help"]).exit_code == 0
