"""Catalog edits and ingest must not undo or break each other.

A steward's entry edit (``PATCH`` → ``api.crud.edit_entry``) survives the next ingest; the next
ingest of the same bytes is a no-op, not a crash; a contract upload that regrades a field makes
the next ingest of the same bytes write a new, encrypted version.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import catalog
from api import crud
from govdx import Contract, ContractError, Settings, load_contract
from govdx.demo import write_credit_demo
from pipelines import Lakehouse, ingest
from pipelines._ingest import (
    keep_catalog_metadata,
    task_commit,
    task_land,
    task_register,
    task_transform,
)
from pipelines._keyops import encryption_coverage, rotate_dataset_key
from pipelines._lakehouse import DEFINITION_KEY
from pipelines._progress import use_reporter

CODE = "SCJG-0001"
TABLE = "enterprise_registry"
NEW_SUMMARY = "经目录管理员修改的摘要"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = tmp_path_factory.mktemp("edits")
    files, contracts = write_credit_demo(work, rows=200, seed=5)
    return files, {load_contract(c).name: Path(c) for c in contracts}


def _entry(settings: Settings) -> dict:
    with catalog.session_scope(settings.catalog_db_url) as s:
        ds = catalog.get_dataset(session=s, code=CODE)
        cur = catalog.current_version(session=s, code=CODE)
        registered = yaml.safe_load(ds.contract_yaml)
        return {
            "share": ds.share_type,
            "summary": ds.summary,
            "title": ds.title,
            "tags": registered.get("tags"),
            "yaml_share": registered["share"]["type"],
            "grades": {f.name: (f.grade, f.protected) for f in ds.fields},
            "versions": [v.delta_version for v in catalog.list_versions(session=s, code=CODE)],
            "current": cur.delta_version if cur else None,
            "events": [e.event_type for e in catalog.lineage_events(session=s)],
        }


def _edit(settings: Settings, changes: dict) -> None:
    with catalog.session_scope(settings.catalog_db_url) as s:
        crud.edit_entry(session=s, code=CODE, changes=changes)


def _contract_copy(tmp_path: Path, base: Path, source: Path, name: str, edit=None) -> Path:
    """The demo contract reading ``source`` (absolute), optionally edited by ``edit(dict)``."""
    c = yaml.safe_load(base.read_text(encoding="utf-8"))
    c["source"]["path"] = str(source)
    if edit is not None:
        edit(c)
    out = tmp_path / name
    out.write_text(yaml.safe_dump(c, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return out


def _lake(settings: Settings) -> Lakehouse:
    return Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)


def test_entry_edit_survives_reingest_of_the_same_file(demo, settings):
    _, contracts = demo
    first = ingest(contracts[TABLE], settings=settings)
    assert first.created and first.version == 0
    assert _entry(settings)["share"] == "conditional"
    _edit(settings, {"share": {"type": "none"}, "summary": NEW_SUMMARY})
    assert _entry(settings)["share"] == "none"

    messages: list[str] = []
    with use_reporter(lambda step, msg: messages.append(f"{step}: {msg}")):
        again = ingest(contracts[TABLE], settings=settings)  # raised CatalogError before the fix
    assert (again.created, again.version) == (False, 0)
    assert any("nothing to do" in m for m in messages), messages
    assert _lake(settings).current_version(TABLE) == 0
    e = _entry(settings)
    assert (e["share"], e["yaml_share"], e["summary"]) == ("none", "none", NEW_SUMMARY)
    assert e["versions"] == [0] and e["current"] == 0
    assert e["events"] == ["START", "COMPLETE", "START", "COMPLETE"]


def test_entry_edit_survives_ingest_of_a_changed_file(demo, settings, tmp_path):
    files, contracts = demo
    ingest(contracts[TABLE], settings=settings)
    _edit(
        settings,
        {"share": {"type": "none"}, "summary": NEW_SUMMARY, "tags": ["已编辑"], "title": "企业库"},
    )
    lines = files.enterprise_registry.read_bytes().splitlines(keepends=True)
    smaller = tmp_path / "enterprise_next.csv"
    smaller.write_bytes(b"".join(lines[:121]))  # header + 120 rows
    nxt = _contract_copy(tmp_path, contracts[TABLE], smaller, "next.yaml")
    second = ingest(nxt, settings=settings)
    assert second.created and second.version == 1 and second.rows_in == 120
    e = _entry(settings)
    assert (e["share"], e["yaml_share"], e["summary"], e["title"], e["tags"]) == (
        "none",
        "none",
        NEW_SUMMARY,
        "企业库",
        ["已编辑"],
    )
    assert e["versions"] == [0, 1] and e["current"] == 1
    # the registered contract is the file's (its source) with the catalog's metadata
    with catalog.session_scope(settings.catalog_db_url) as s:
        registered = yaml.safe_load(catalog.get_dataset(session=s, code=CODE).contract_yaml)
    assert registered["source"]["path"] == str(smaller)
    # and the scheduled re-run of the same file stays a no-op
    assert ingest(nxt, settings=settings).created is False
    assert _entry(settings)["versions"] == [0, 1]


def _regrade(c: dict) -> None:
    for f in c["fields"]:
        if f["name"] == "registered_capital":
            f["grade"] = "important"


def test_regraded_upload_then_ingest_of_the_same_bytes_encrypts(demo, settings, tmp_path):
    files, contracts = demo
    first = ingest(contracts[TABLE], settings=settings)
    plain = _lake(settings).read(TABLE, 0)
    assert str(plain.schema.field("registered_capital").type).startswith("decimal128")

    # an uploaded contract reads from its department's inbox: the very same bytes, put there
    inbox = settings.inbox_dir / "SCJG"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "enterprise.csv").write_bytes(files.enterprise_registry.read_bytes())
    upload = _contract_copy(tmp_path, contracts[TABLE], Path("enterprise.csv"), "u.yaml", _regrade)
    with catalog.session_scope(settings.catalog_db_url) as s:
        _, created = crud.register_contract(
            session=s,
            settings=settings,
            text=upload.read_text(encoding="utf-8"),
            department="SCJG",
        )
    assert created is False
    assert _entry(settings)["grades"]["registered_capital"] == ("important", True)

    registered = settings.contracts_dir / f"{CODE}.yaml"  # what the scheduled DAG reads
    again = ingest(registered, settings=settings)  # "nothing to do" (plaintext kept) before
    assert again.created and again.version == 1 and again.rows_committed == first.rows_committed
    t = _lake(settings).read(TABLE, 1)
    field = t.schema.field("registered_capital")
    assert str(field.type) == "binary"
    assert field.metadata[b"govdx.cipher"] == b"SM4" and field.metadata[b"govdx.key_id"]
    cov = encryption_coverage(load_contract(registered), lakehouse=_lake(settings), version=1)
    assert cov.missing == [] and "registered_capital" in cov.encrypted
    assert _entry(settings)["versions"] == [0, 1]
    assert ingest(registered, settings=settings).created is False  # and then it is settled


def test_contract_file_changing_only_catalog_metadata_is_a_noop(demo, settings, tmp_path):
    files, contracts = demo
    ingest(contracts[TABLE], settings=settings)
    original = _entry(settings)["summary"]

    def retitle(c: dict) -> None:
        c["summary"] = "文件里改了摘要"
        c["tags"] = ["改了标签"]
        c["share"] = {"type": "unconditional"}

    edited = _contract_copy(
        tmp_path, contracts[TABLE], files.enterprise_registry.resolve(), "s.yaml", retitle
    )
    assert (
        load_contract(edited).definition_digest()
        == load_contract(contracts[TABLE]).definition_digest()
    )
    messages: list[str] = []
    with use_reporter(lambda step, msg: messages.append(msg)):
        again = ingest(edited, settings=settings)
    assert (again.created, again.version) == (False, 0)
    assert any("nothing to do" in m for m in messages), messages
    assert _lake(settings).current_version(TABLE) == 0
    e = _entry(settings)  # the catalog owns the metadata once the entry exists
    assert (e["summary"], e["share"], e["versions"]) == (original, "conditional", [0])


def test_definition_digest_ignores_catalog_metadata_only():
    from tests.conftest import make_contract

    base = make_contract().definition_digest()
    assert len(base) == 64 and int(base, 16) >= 0
    same = [
        make_contract(title="别名"),
        make_contract(summary="另一个摘要"),
        make_contract(share={"type": "none"}),
        make_contract(open={"type": "conditional", "conditions": "申请开放"}),
        make_contract(update_cycle="daily"),
        make_contract(tags=["a", "b"]),
        make_contract(department={"code": "SCJG", "name": "另一个名称"}),
        make_contract().with_source("elsewhere.csv"),
    ]
    assert [c.definition_digest() for c in same] == [base] * len(same)
    data = make_contract().model_dump(mode="json")
    data["fields"][2]["grade"] = "important"
    different = [
        Contract.from_dict(data),
        make_contract(primary_key=[]),
        make_contract(department={"code": "RSJ", "name": "市场监督管理局"}),
        make_contract(quality={"min_pass_rate": 0.9}),
        make_contract(source={"path": "enterprise.csv", "format": "csv", "header_row": 2}),
        make_contract(privacy_unit="uscc"),
    ]
    digests = [c.definition_digest() for c in different]
    assert base not in digests and len(set(digests)) == len(digests)


def test_merged_contract_keeps_file_text_when_metadata_agrees(demo):
    _, contracts = demo
    path = contracts[TABLE]
    contract, text = load_contract(path), path.read_text(encoding="utf-8")
    assert keep_catalog_metadata(contract, text, None) == (contract, text)
    registered = load_contract(path).with_source("/elsewhere/e.csv")  # path is not metadata
    assert keep_catalog_metadata(contract, text, registered) == (contract, text)
    edited = registered.model_copy(update={"summary": NEW_SUMMARY, "tags": []})
    merged, merged_text = keep_catalog_metadata(contract, text, edited)
    assert (merged.summary, merged.tags) == (NEW_SUMMARY, [])
    assert merged.source == contract.source and merged.base_dir == contract.base_dir
    assert merged.definition_digest() == contract.definition_digest()
    assert yaml.safe_load(merged_text)["summary"] == NEW_SUMMARY
    assert Contract.from_dict(yaml.safe_load(merged_text)).fields == contract.fields


def _tasks(path: Path, settings: Settings, run_id: str) -> tuple[dict, dict, dict, dict]:
    landed = task_land(str(path), settings=settings, run_id=run_id)
    staged = task_transform(str(path), landed["landed"], settings=settings, run_id=run_id)
    committed = task_commit(str(path), landed["landed"], staged, settings=settings, run_id=run_id)
    return landed, staged, committed, {"run_id": run_id}


def test_a_commit_left_unregistered_is_registered_by_the_next_run(demo, settings):
    _, contracts = demo
    path = contracts[TABLE]
    _, _, committed, _ = _tasks(path, settings, catalog.new_run_id())  # register never ran
    assert committed["version"] == 0 and committed["created"]
    again = ingest(path, settings=settings)
    assert (again.created, again.version) == (True, 0)
    assert _lake(settings).current_version(TABLE) == 0  # no second Delta version
    e = _entry(settings)
    assert e["versions"] == [0] and e["current"] == 0
    assert ingest(path, settings=settings).created is False


def test_register_of_an_already_registered_commit_completes_the_run(demo, settings):
    _, contracts = demo
    path = str(contracts[TABLE])
    first = ingest(path, settings=settings)
    run_id = catalog.new_run_id()
    landed = task_land(path, settings=settings, run_id=run_id)["landed"]
    committed = {"name": TABLE, "version": first.version, "rows": 1, "created": False}
    staged = {"rows_quarantined": 0, "scores": None, "staged": "/nonexistent/x/table.parquet"}
    out = task_register(path, landed, staged, committed, settings=settings, run_id=run_id)
    assert out == {"dataset": CODE, "delta_version": 0, "registered": False}
    e = _entry(settings)
    assert e["versions"] == [0] and e["events"][-2:] == ["START", "COMPLETE"]
    # the same Delta version claimed by other bytes is a genuine conflict
    other = {**landed, "digest": "0" * 64}
    with pytest.raises(catalog.CatalogError, match=r"'SCJG-0001' version 0 is already registered"):
        task_register(path, other, staged, committed, settings=settings, run_id=run_id)


def test_key_rotation_keeps_the_definition_so_reingest_stays_a_noop(demo, settings):
    _, contracts = demo
    path = contracts[TABLE]
    first = ingest(path, settings=settings)
    contract = load_contract(path)
    with catalog.session_scope(settings.catalog_db_url) as s:
        cur = catalog.current_version(session=s, code=CODE)
        digest, name, size = cur.source_digest, cur.source_name, cur.source_bytes
    run_id = catalog.new_run_id()
    result, key_id = rotate_dataset_key(
        contract, settings=settings, version=0, run_id=run_id, digest=digest
    )
    assert result.created and result.version == 1 and key_id
    assert _lake(settings).latest_commit(TABLE)[DEFINITION_KEY] == contract.definition_digest()
    with catalog.session_scope(settings.catalog_db_url) as s:
        catalog.add_version(
            session=s,
            dataset=catalog.get_dataset(session=s, code=CODE),
            delta_version=1,
            row_count=result.rows,
            quarantined_count=first.rows_quarantined,
            source_digest=digest,
            source_name=name,
            source_bytes=size,
            run_id=run_id,
            engine="key-rotation",
        )
    again = ingest(path, settings=settings)
    assert (again.created, again.version) == (False, 1)
    assert _lake(settings).current_version(TABLE) == 1


def test_entry_edit_also_updates_the_scheduled_contract(demo, settings):
    """The DAG of an entry reads contracts/<code>.yaml: an edit of update_cycle must move its
    schedule, and the file must agree with the catalog (a later scheduled run keeps both)."""
    from pipelines._airflow import SCHEDULES

    _, contracts = demo
    settings.ensure_home()
    scheduled = settings.contracts_dir / f"{CODE}.yaml"
    doc = yaml.safe_load(contracts[TABLE].read_text(encoding="utf-8"))
    doc["source"]["path"] = str(load_contract(contracts[TABLE]).source_path())  # as installed
    scheduled.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    before = yaml.safe_load(scheduled.read_text(encoding="utf-8"))
    ingest(scheduled, settings=settings)
    with catalog.session_scope(settings.catalog_db_url) as s:
        crud.edit_entry(
            session=s,
            code=CODE,
            changes={"update_cycle": "daily", "share": {"type": "none"}},
            settings=settings,
        )
    after = yaml.safe_load(scheduled.read_text(encoding="utf-8"))
    assert before["update_cycle"] != "daily"
    assert (after["update_cycle"], after["share"]["type"]) == ("daily", "none")
    assert after["fields"] == before["fields"] and after["source"] == before["source"]
    assert load_contract(scheduled).update_cycle == "daily" and "daily" in SCHEDULES
    again = ingest(scheduled, settings=settings)  # the scheduled run: nothing to do, edits kept
    assert again.created is False and _entry(settings)["share"] == "none"


def test_catalog_metadata_that_no_longer_fits_fails_before_any_work(demo, settings, tmp_path):
    """The catalog opened an entry with no protected field to all (PATCH); the next contract
    file regrades a field to protected: the ingest fails at once, saying to edit the entry,
    and writes no Delta version."""
    files, contracts = demo

    def all_general(c: dict) -> None:
        for f in c["fields"]:
            f["grade"], f["pi"] = "general", "none"

    plain = _contract_copy(
        tmp_path, contracts[TABLE], files.enterprise_registry, "plain.yaml", all_general
    )
    ingest(plain, settings=settings)
    _edit(settings, {"open": {"type": "unconditional"}})
    regraded = _contract_copy(tmp_path, contracts[TABLE], files.enterprise_registry, "reg.yaml")
    with pytest.raises(ContractError, match=r"open\.type: 'unconditional'") as err:
        ingest(regraded, settings=settings)
    assert "edit the entry first (PATCH /api/v1/catalog/datasets/SCJG-0001)" in str(err.value)
    assert _lake(settings).current_version(TABLE) == 0  # nothing committed


def test_an_unprotected_id_number_is_warned_about(demo, settings, tmp_path):
    """element resident_id with pi: none (and grade general) is the steward's declaration — it
    is stored in plaintext, and the ingest says so in its progress output."""
    from pipelines._ingest import plaintext_personal_fields

    files, contracts = demo

    def undeclared(c: dict) -> None:
        f = next(f for f in c["fields"] if f.get("element") == "resident_id")
        f["pi"], f["grade"] = "none", "general"

    path = _contract_copy(
        tmp_path, contracts[TABLE], files.enterprise_registry, "u.yaml", undeclared
    )
    assert plaintext_personal_fields(load_contract(path)) == ["legal_rep_id"]
    assert plaintext_personal_fields(load_contract(contracts[TABLE])) == []
    messages: list[str] = []
    with use_reporter(lambda step, msg: messages.append(f"{step}: {msg}")):
        ingest(path, settings=settings)
    [warning] = [m for m in messages if "warning" in m]
    assert warning.startswith("protect: warning: field 'legal_rep_id' holds resident_id")
    assert "declare pi: sensitive to encrypt it" in warning
