"""Catalog store: entries, fields, versions, publishing, summaries, transactions, constraints."""

from __future__ import annotations

import inspect
import json
from datetime import UTC, datetime

import pytest
import yaml
from catalog_testdata import RUN_1, RUN_2, RUN_3, SM3_ABC, SM3_EMPTY, contract_dict, make_contract
from sqlalchemy import func, select, text
from sqlalchemy.exc import StatementError

import catalog
from govdx import Contract, GovdxRuntimeError


def _add(session, ds, version, digest=SM3_ABC, run=RUN_1, **kw):
    args = {
        "delta_version": version,
        "row_count": 1000 + version,
        "quarantined_count": version,
        "source_digest": digest,
        "source_name": f"enterprise_{version}.csv",
        "source_bytes": 52_311,
        "run_id": run,
    }
    args.update(kw)
    return catalog.add_version(session=session, dataset=ds, **args)


def test_all_is_complete_and_resolves():
    public = {
        name
        for name, obj in vars(catalog).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", "").startswith("catalog.")
    }
    assert public <= set(catalog.__all__), sorted(public - set(catalog.__all__))
    for name in catalog.__all__:
        assert hasattr(catalog, name), name


def test_errors_hang_under_govdx_runtime_error():
    exc = catalog.DatasetNotFound("XX-9")
    assert isinstance(exc, catalog.CatalogError)
    assert isinstance(exc, GovdxRuntimeError)
    assert exc.code == "XX-9"
    assert "'XX-9'" in str(exc)


def test_upsert_creates_department_entry_and_fields(session, contract):
    ds = catalog.upsert_dataset(session=session, contract=contract)
    session.commit()
    assert ds.id is not None
    dept = session.get(catalog.Department, "SCJG")
    assert dept.name == "市场监督管理局"
    assert (ds.code, ds.name, ds.title, ds.department_code) == (
        "SCJG-0001",
        "enterprise_registry",
        "企业登记信息",
        "SCJG",
    )
    assert (ds.format, ds.share_type, ds.share_conditions, ds.open_type, ds.open_conditions) == (
        "csv",
        "conditional",
        "用于信贷审批",
        "none",
        None,
    )
    assert (ds.update_cycle, ds.grade, ds.published, ds.published_at) == (
        "monthly",
        "important",  # highest field grade: reg_capital
        False,
        None,
    )
    assert ds.current_version is None
    rows = [(f.position, f.name, f.type, f.grade, f.pi, f.protected) for f in ds.fields]
    assert rows == [
        (1, "uscc", "string", "general", "none", False),
        (2, "ent_name", "string", "general", "none", False),
        (3, "legal_rep_id", "string", "general", "sensitive", True),
        (4, "reg_capital", "decimal", "important", "none", True),
        (5, "region_code", "string", "general", "none", False),
    ]
    assert ds.fields[3].unit == "万元"
    assert ds.fields[0].required is True and ds.fields[2].required is False
    # the default contract_yaml is the contract itself
    again = Contract.from_dict(yaml.safe_load(ds.contract_yaml))
    assert again == contract


def test_upsert_keeps_given_yaml_verbatim(session, contract):
    text_ = "# 市场监管\ncode: SCJG-0001\n"
    ds = catalog.upsert_dataset(session=session, contract=contract, contract_yaml=text_)
    assert ds.contract_yaml == text_


def test_upsert_again_replaces_fields_and_keeps_state(session, contract):
    ds = catalog.upsert_dataset(session=session, contract=contract)
    v = _add(session, ds, 0)
    catalog.set_published(session=session, code="SCJG-0001", published=True)
    session.commit()
    created = ds.created_at

    changed = make_contract(
        title="企业登记信息(新)",
        department={"code": "SCJG", "name": "市场监管局"},
        share={"type": "unconditional"},
        fields=[
            {"name": "ent_name", "title": "企业名称"},  # was position 2
            {"name": "uscc", "title": "统一社会信用代码", "grade": "core"},
        ],
        primary_key=[],
    )
    ds2 = catalog.upsert_dataset(session=session, contract=changed)
    session.commit()
    assert ds2.id == ds.id
    assert [(f.position, f.name, f.grade) for f in ds2.fields] == [
        (1, "ent_name", "general"),
        (2, "uscc", "core"),
    ]
    assert session.scalar(select(func.count()).select_from(catalog.DatasetField)) == 2
    assert (ds2.title, ds2.share_type, ds2.share_conditions, ds2.grade) == (
        "企业登记信息(新)",
        "unconditional",
        None,
        "core",
    )
    assert session.get(catalog.Department, "SCJG").name == "市场监管局"
    assert ds2.published is True
    assert ds2.current_version_id == v.id
    assert ds2.created_at == created
    assert ds2.updated_at > created


def test_upsert_refuses_table_name_of_another_entry(session, contract):
    catalog.upsert_dataset(session=session, contract=contract)
    other = make_contract(code="SCJG-0002")  # same name enterprise_registry
    with pytest.raises(catalog.CatalogError, match=r"'enterprise_registry'.*'SCJG-0001'"):
        catalog.upsert_dataset(session=session, contract=other)


def test_get_dataset_missing_names_the_code(session):
    with pytest.raises(catalog.DatasetNotFound, match="'NOPE-1'"):
        catalog.get_dataset(session=session, code="NOPE-1")
    for fn in (catalog.current_version, catalog.list_versions):
        with pytest.raises(catalog.DatasetNotFound, match="'NOPE-1'"):
            fn(session=session, code="NOPE-1")


def test_list_datasets_by_department(session):
    catalog.upsert_dataset(session=session, contract=make_contract())
    catalog.upsert_dataset(
        session=session,
        contract=make_contract(
            code="SWJ-0001",
            name="tax_registry",
            title="纳税登记",
            department={"code": "SWJ", "name": "税务局"},
        ),
    )
    catalog.upsert_dataset(
        session=session, contract=make_contract(code="SCJG-0003", name="annual_reports")
    )
    assert [d.code for d in catalog.list_datasets(session=session)] == [
        "SCJG-0001",
        "SCJG-0003",
        "SWJ-0001",
    ]
    assert [d.code for d in catalog.list_datasets(session=session, department="SWJ")] == [
        "SWJ-0001"
    ]
    assert catalog.list_datasets(session=session, department="GAJ") == []


def test_versions_current_and_digest_lookup(session, contract):
    ds = catalog.upsert_dataset(session=session, contract=contract)
    v0 = _add(session, ds, 0, SM3_ABC, RUN_1)
    assert catalog.current_version(session=session, code="SCJG-0001") is v0
    v1 = _add(session, ds, 1, SM3_EMPTY, RUN_2)
    assert catalog.current_version(session=session, code="SCJG-0001") is v1
    # a version committed but not (yet) made current: readers still see v1
    v2 = _add(session, ds, 2, SM3_ABC, RUN_3, make_current=False)
    session.commit()
    assert catalog.current_version(session=session, code="SCJG-0001") is v1
    assert [v.delta_version for v in catalog.list_versions(session=session, code="SCJG-0001")] == [
        0,
        1,
        2,
    ]
    # newest version of that digest
    assert catalog.version_by_digest(session=session, code="SCJG-0001", source_digest=SM3_ABC) is v2
    assert (
        catalog.version_by_digest(session=session, code="SCJG-0001", source_digest="0" * 64) is None
    )
    assert (v1.row_count, v1.quarantined_count, v1.source_bytes, v1.engine) == (
        1001,
        1,
        52_311,
        "duckdb",
    )


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        pytest.param({"source_digest": SM3_ABC.upper()}, "not 64 lowercase hex", id="upper-digest"),
        pytest.param({"source_digest": SM3_ABC[:40]}, "not 64 lowercase hex", id="sha1-length"),
        pytest.param({"row_count": -1}, "row_count must be ≥ 0", id="negative-rows"),
        pytest.param({"quarantined_count": -3}, "quarantined_count", id="negative-quarantine"),
        pytest.param({"run_id": "manual__2025-01-01"}, "not a UUID", id="airflow-run-id"),
    ],
)
def test_add_version_refuses_bad_values(session, contract, kw, match):
    ds = catalog.upsert_dataset(session=session, contract=contract)
    with pytest.raises(catalog.CatalogError, match=match):
        _add(session, ds, 0, **kw)
    assert session.scalar(select(func.count()).select_from(catalog.DatasetVersion)) == 0


def test_add_version_refuses_duplicate_delta_version(session, contract):
    ds = catalog.upsert_dataset(session=session, contract=contract)
    _add(session, ds, 4)
    with pytest.raises(catalog.CatalogError, match=r"'SCJG-0001' version 4 is already registered"):
        _add(session, ds, 4, SM3_EMPTY, RUN_2)


def test_caller_owns_the_transaction(db_url, contract):
    factory = catalog.open_catalog(db_url)
    with factory() as s:
        ds = catalog.upsert_dataset(session=s, contract=contract)
        _add(s, ds, 0)
        s.rollback()  # e.g. the Delta commit failed after registering
    with factory() as s:
        assert catalog.list_datasets(session=s) == []
        assert s.scalar(select(func.count()).select_from(catalog.Department)) == 0
    with factory.begin() as s:
        ds = catalog.upsert_dataset(session=s, contract=contract)
        _add(s, ds, 0)
    with factory() as s:
        assert catalog.current_version(session=s, code="SCJG-0001").delta_version == 0
    factory.kw["bind"].dispose()


def test_set_published_sets_keeps_and_clears_date(session, contract):
    catalog.upsert_dataset(session=session, contract=contract)
    ds = catalog.set_published(session=session, code="SCJG-0001", published=True)
    first = ds.published_at
    assert ds.published is True and first is not None and first.tzinfo is UTC
    ds = catalog.set_published(session=session, code="SCJG-0001", published=True)
    assert ds.published_at == first
    ds = catalog.set_published(session=session, code="SCJG-0001", published=False)
    assert (ds.published, ds.published_at) == (False, None)
    with pytest.raises(catalog.DatasetNotFound):
        catalog.set_published(session=session, code="X-1", published=True)


def test_timestamps_read_back_tz_aware_utc(db_url, contract):
    factory = catalog.open_catalog(db_url)
    with factory.begin() as s:
        ds = catalog.upsert_dataset(session=s, contract=contract)
        ds.published_at = datetime.fromisoformat("2025-03-01T08:00:00+08:00")
    with factory() as s:
        ds = catalog.get_dataset(session=s, code="SCJG-0001")
        assert ds.published_at == datetime(2025, 3, 1, 0, 0, tzinfo=UTC)
        assert ds.published_at.tzinfo is UTC
        assert ds.created_at.tzinfo is UTC
        ds.published_at = datetime(2025, 3, 1, 8, 0)  # naive: refused
        with pytest.raises(StatementError, match="naive datetime"):
            s.flush()
    factory.kw["bind"].dispose()


def test_sqlite_pragmas_and_foreign_keys(session, contract):
    assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
    assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    ds = catalog.upsert_dataset(session=session, contract=contract)
    session.add(
        catalog.DatasetVersion(
            dataset_id=ds.id + 99,
            delta_version=0,
            row_count=0,
            quarantined_count=0,
            source_digest=SM3_ABC,
            source_name="x",
            source_bytes=0,
            run_id=RUN_1,
        )
    )
    with pytest.raises(Exception, match="FOREIGN KEY constraint failed"):
        session.flush()


def test_deleting_an_entry_cascades(session, contract):
    ds = catalog.upsert_dataset(session=session, contract=contract)
    _add(session, ds, 0)
    _add(session, ds, 1, SM3_EMPTY, RUN_2)
    session.commit()
    session.delete(ds)
    session.commit()
    for model in (catalog.Dataset, catalog.DatasetField, catalog.DatasetVersion):
        assert session.scalar(select(func.count()).select_from(model)) == 0


def test_summaries_are_json_ready(session, contract):
    ds = catalog.upsert_dataset(session=session, contract=contract)
    v = _add(session, ds, 3, SM3_ABC, RUN_1, engine="spark")
    session.commit()
    d = catalog.dataset_summary(ds)
    json.dumps(d, ensure_ascii=False)
    assert d["code"] == "SCJG-0001"
    assert d["department"] == {"code": "SCJG", "name": "市场监督管理局"}
    assert d["share"] == {
        "type": "conditional",
        "type_zh": "有条件共享",
        "conditions": "用于信贷审批",
    }
    assert d["open"] == {"type": "none", "type_zh": "不予开放", "conditions": None}
    assert (d["grade"], d["grade_zh"], d["current_version"], d["published"]) == (
        "important",
        "重要数据",
        3,
        False,
    )
    assert [f["name"] for f in d["fields"] if f["protected"]] == ["legal_rep_id", "reg_capital"]
    assert [f["name"] for f in d["fields"] if f["sensitive"]] == ["legal_rep_id"]
    assert d["created_at"].endswith("+00:00")
    vs = catalog.version_summary(v)
    assert vs == {
        "dataset": "SCJG-0001",
        "delta_version": 3,
        "current": True,
        "row_count": 1003,
        "quarantined_count": 3,
        "source_digest": SM3_ABC,
        "source_name": "enterprise_3.csv",
        "source_bytes": 52_311,
        "run_id": RUN_1,
        "engine": "spark",
        "created_at": v.created_at.isoformat(),
    }


def test_contract_fixture_is_valid():
    assert Contract.from_dict(contract_dict()).protected_fields[0].name == "legal_rep_id"
