"""``govdx catalog list/show`` and ``govdx lineage show`` over a temporary GOVDX_HOME."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from catalog_testdata import RUN_1, RUN_2, SM3_ABC, SM3_EMPTY, make_contract
from typer.testing import CliRunner

import catalog
from govdx import Settings
from govdx.cli._catalog import catalog_app, lineage_app

runner = CliRunner()
T0 = datetime(2025, 6, 1, 2, 0, tzinfo=UTC)


def _ingest(s, digest: str, run_id: str, version: int, rows: int, quarantined: int, t: datetime):
    ds = catalog.get_dataset(session=s, code="SCJG-0001")
    catalog.add_version(
        session=s,
        dataset=ds,
        delta_version=version,
        row_count=rows,
        quarantined_count=quarantined,
        source_digest=digest,
        source_name="企业登记.csv",
        source_bytes=1_234_567,
        run_id=run_id,
    )
    raw = catalog.landing_dataset("SCJG-0001", f"{digest}.csv")
    for etype, dt in (("START", 0), ("COMPLETE", 1)):
        catalog.record_lineage(
            session=s,
            event=catalog.build_run_event(
                event_type=etype,
                run_id=run_id,
                job_name="ingest.enterprise_registry",
                inputs=[raw],
                outputs=[catalog.table_dataset("enterprise_registry")],
                event_time=t + timedelta(minutes=dt),
            ),
        )


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A GOVDX_HOME whose catalog holds SCJG-0001 (two versions) and SWJ-0001 (none)."""
    monkeypatch.setenv("GOVDX_HOME", str(tmp_path))
    monkeypatch.delenv("GOVDX_CATALOG_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    settings = Settings()
    catalog.migrate(settings.catalog_db_url)
    factory = catalog.open_catalog(settings.catalog_db_url)
    with factory.begin() as s:
        catalog.upsert_dataset(session=s, contract=make_contract(tags=["信易贷", "企业"]))
        catalog.upsert_dataset(
            session=s,
            contract=make_contract(
                code="SWJ-0001",
                name="tax_registry",
                title="纳税登记信息",
                department={"code": "SWJ", "name": "税务局"},
                share={"type": "unconditional"},
                open={"type": "conditional", "conditions": "实名申请"},
                fields=[{"name": "uscc", "title": "统一社会信用代码"}],
                primary_key=[],
            ),
        )
        _ingest(s, SM3_ABC, RUN_1, 0, 1000, 3, T0)
        _ingest(s, SM3_EMPTY, RUN_2, 1, 1500, 0, T0 + timedelta(days=30))
        catalog.set_published(session=s, code="SCJG-0001", published=True)
    factory.kw["bind"].dispose()
    return tmp_path


def test_list_json(home):
    result = runner.invoke(catalog_app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [(d["code"], d["current_version"], d["row_count"]) for d in data] == [
        ("SCJG-0001", 1, 1500),
        ("SWJ-0001", None, None),
    ]
    assert data[1]["open"] == {
        "type": "conditional",
        "type_zh": "有条件开放",
        "conditions": "实名申请",
    }
    assert "有条件共享" in result.stdout  # ensure_ascii=False: Chinese is not escaped


def test_list_by_department(home):
    result = runner.invoke(catalog_app, ["list", "--department", "SWJ", "--json"])
    assert [d["code"] for d in json.loads(result.stdout)] == ["SWJ-0001"]
    result = runner.invoke(catalog_app, ["list", "-d", "GAJ"])
    assert result.exit_code == 0
    assert "no catalog entries of department GAJ" in result.stdout


def test_list_table(home):
    result = runner.invoke(catalog_app, ["list"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in (
        "SCJG-0001",
        "企业登记信息",
        "市场监督管理局 (SCJG)",
        "有条件共享 conditional",
        "无条件共享 unconditional",
        "重要数据 important",
        "1,500",
        "是 yes",
        "否 no",
    ):
        assert text in out, text


def test_show_json(home):
    result = runner.invoke(catalog_app, ["show", "SCJG-0001", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dataset"]["code"] == "SCJG-0001"
    assert data["dataset"]["published"] is True
    assert data["dataset"]["tags"] == ["信易贷", "企业"]
    assert [
        (v["delta_version"], v["row_count"], v["quarantined_count"], v["current"])
        for v in data["versions"]
    ] == [(0, 1000, 3, False), (1, 1500, 0, True)]
    assert data["versions"][0]["source_digest"] == SM3_ABC
    assert [(e["event_type"], e["run_id"]) for e in data["lineage_events"]] == [
        ("START", RUN_1),
        ("COMPLETE", RUN_1),
        ("START", RUN_2),
        ("COMPLETE", RUN_2),
    ]
    assert data["lineage_events"][1]["outputs"] == ["govdx-lakehouse/enterprise_registry"]


def test_show_tables(home):
    result = runner.invoke(catalog_app, ["show", "SCJG-0001"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in (
        "共享类型 share type",
        "信易贷, 企业",
        "有条件共享 conditional — 共享条件: 用于信贷审批",
        "不予开放 none",
        "legal_rep_id",
        "敏感 sensitive",
        "SM4 encrypted 加密存储",
        "decimal (万元)",
        "1 *",  # current version starred
        "1,500",
        SM3_ABC[:12] + "…",
        "2025-07-01 02:01:00Z",
        "ingest.enterprise_registry",
    ):
        assert text in out, text
    assert SM3_ABC not in out  # digests are shortened for people
    assert out.count("SM4 encrypted 加密存储") == 2  # legal_rep_id, reg_capital


def test_show_unknown_code_fails_naming_it(home):
    result = runner.invoke(catalog_app, ["show", "NOPE-9"])
    assert result.exit_code == 1
    assert "'NOPE-9' not found" in result.stderr
    assert result.stdout == ""


def test_lineage_show_json(home):
    result = runner.invoke(lineage_app, ["show", "SCJG-0001", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["namespace"], data["name"]) == ("govdx-lakehouse", "enterprise_registry")
    assert [(e["name"], e["run_id"]) for e in data["upstream"]] == [
        (f"SCJG-0001/{SM3_ABC}.csv", RUN_1),
        (f"SCJG-0001/{SM3_EMPTY}.csv", RUN_2),
    ]
    assert data["downstream"] == []
    assert data["upstream"][0]["event_time"] == "2025-06-01T02:01:00+00:00"


def test_lineage_show_table(home):
    result = runner.invoke(lineage_app, ["show", "SCJG-0001"])
    assert result.exit_code == 0, result.output
    assert f"govdx-landing/SCJG-0001/{SM3_ABC}.csv" in result.stdout
    assert "downstream 下游 (runs that read it): none" in result.stdout
    result = runner.invoke(lineage_app, ["show", "NOPE-9"])
    assert result.exit_code == 1 and "'NOPE-9' not found" in result.stderr


@pytest.mark.parametrize(
    ("app", "args", "text"),
    [
        pytest.param(catalog_app, ["--help"], "govdx catalog show SCJG-0001", id="catalog"),
        pytest.param(catalog_app, ["list", "--help"], "--department", id="list"),
        pytest.param(catalog_app, ["show", "--help"], "SM3 digest", id="show"),
        pytest.param(lineage_app, ["show", "--help"], "upstream", id="lineage"),
    ],
)
def test_help_texts(app, args, text):
    result = runner.invoke(app, args)
    assert result.exit_code == 0
    assert text in result.stdout


def test_commands_migrate_an_empty_home(tmp_path, monkeypatch):
    monkeypatch.setenv("GOVDX_HOME", str(tmp_path / "fresh"))
    (tmp_path / "fresh").mkdir()
    result = runner.invoke(catalog_app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []
    assert (tmp_path / "fresh" / "catalog.db").is_file()
