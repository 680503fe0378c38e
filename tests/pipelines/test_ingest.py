"""The ingest pipeline end to end, without Airflow (the same task functions the DAG calls)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
import yaml

import catalog
from govdx import ContractError, Settings, load_contract
from govdx.demo import write_credit_demo
from pipelines import CommitError, IngestError, Lakehouse, QualityGateError, SourceError, ingest
from privacy import decrypt_column, keyring_from_settings

# defect kinds the validate step quarantines; a lower-case x is a 规范性 finding, not a rejection
CAUGHT = {
    "blank_required",
    "duplicate_key",
    "malformed_date",
    "uscc_bad_check",
    "resident_id_bad_check",
    "resident_id_legacy_15",
    "negative_capital",
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo")
    files, contracts = write_credit_demo(work, rows=400, seed=11)
    return files, {load_contract(c).name: c for c in contracts}


def _catalog_state(settings: Settings, code: str):
    with catalog.session_scope(settings.catalog_db_url) as s:
        versions = [
            (v.delta_version, v.row_count) for v in catalog.list_versions(session=s, code=code)
        ]
        events = [e.event_type for e in catalog.lineage_events(session=s)]
        cur = catalog.current_version(session=s, code=code)
        return versions, events, cur.delta_version if cur else None


def test_ingest_registry_counts_encryption_and_lineage(demo, settings):
    files, contracts = demo
    outcome = ingest(contracts["enterprise_registry"], settings=settings)
    expected_q = sum(n for k, n in files.defects["enterprise_registry"].items() if k in CAUGHT)
    assert outcome.rows_in == files.rows["enterprise_registry"] == 400
    assert outcome.rows_quarantined == expected_q
    assert outcome.rows_committed + outcome.rows_quarantined == outcome.rows_in
    assert outcome.created and outcome.version == 0

    lake = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)
    table = lake.read("enterprise_registry", 0)
    assert table.num_rows == outcome.rows_committed
    field = table.schema.field("legal_rep_id")
    assert str(field.type) == "binary" and field.metadata[b"govdx.cipher"] == b"SM4"
    assert "legal_rep_id_token" in table.column_names and "uscc_token" in table.column_names

    # the ciphertext decrypts to the very IDs of the source file, in order
    keyring = keyring_from_settings(settings)
    key = keyring.get("SCJG-0001", field.metadata[b"govdx.key_id"].decode())
    plain = decrypt_column(
        table["legal_rep_id"], key=key, dataset="SCJG-0001", column="legal_rep_id"
    )
    source = pacsv.read_csv(
        files.enterprise_registry,
        convert_options=pacsv.ConvertOptions(
            column_types={"统一社会信用代码": "string", "法定代表人身份证号": "string"}
        ),
    )
    by_uscc: dict[str, str] = {}  # first occurrence wins, as in the pipeline's duplicate check
    for u, r in zip(
        source["统一社会信用代码"].to_pylist(),
        source["法定代表人身份证号"].to_pylist(),
        strict=True,
    ):
        by_uscc.setdefault(u, r)
    for uscc, rid in zip(table["uscc"].to_pylist()[:50], plain.to_pylist()[:50], strict=True):
        assert by_uscc[uscc] == rid
    # no plaintext identifier is stored anywhere in the table's files
    raw = b"".join(
        p.read_bytes() for p in Path(lake.table_uri("enterprise_registry")).glob("*.parquet")
    )
    assert plain[0].as_py().encode() not in raw

    quarantine = lake.read_quarantine("enterprise_registry")
    assert len(pc.unique(quarantine["row"])) == expected_q
    assert set(quarantine["run_id"].to_pylist()) == {outcome.run_id}

    versions, events, current = _catalog_state(settings, "SCJG-0001")
    assert versions == [(0, outcome.rows_committed)] and current == 0
    assert events == ["START", "COMPLETE"]


def test_same_bytes_twice_is_a_noop_and_new_bytes_make_a_version(demo, settings, tmp_path):
    files, contracts = demo
    path = contracts["tax_payment"]
    first = ingest(path, settings=settings)
    again = ingest(path, settings=settings)
    assert (again.created, again.version) == (False, first.version)
    assert (
        Lakehouse(settings.lakehouse_dir, settings.quarantine_dir).current_version("tax_payment")
        == 0
    )
    # next month's file: fewer rows → version 1, version 0 still readable
    c = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    lines = files.tax_payment.read_bytes().split(b"\r\n")
    smaller = tmp_path / "tax_next.csv"
    smaller.write_bytes(b"\r\n".join(lines[:101]) + b"\r\n")
    c["source"]["path"] = str(smaller)
    p2 = tmp_path / "tax.yaml"
    p2.write_text(yaml.safe_dump(c, allow_unicode=True), encoding="utf-8")
    second = ingest(p2, settings=settings)
    assert second.created and second.version == 1 and second.rows_in == 100
    lake = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)
    assert lake.read("tax_payment", 0).num_rows == first.rows_committed
    versions, _, current = _catalog_state(settings, "SWJ-0001")
    assert [v for v, _ in versions] == [0, 1] and current == 1


def test_failure_in_commit_leaves_previous_version_and_catalog(
    demo, settings, tmp_path, monkeypatch
):
    files, contracts = demo
    first = ingest(contracts["social_insurance"], settings=settings)
    before_versions, before_events, _ = _catalog_state(settings, "RSJ-0001")

    c = yaml.safe_load(Path(contracts["social_insurance"]).read_text(encoding="utf-8"))
    changed = tmp_path / "si.xlsx"
    shutil.copy(files.social_insurance, changed)
    changed.write_bytes(changed.read_bytes() + b"")  # same bytes would be a no-op: alter below
    import openpyxl

    wb = openpyxl.load_workbook(changed)
    wb.active.delete_rows(wb.active.max_row)
    wb.save(changed)
    c["source"]["path"] = str(changed)
    p2 = tmp_path / "si.yaml"
    p2.write_text(yaml.safe_dump(c, allow_unicode=True), encoding="utf-8")

    import pipelines._lakehouse as lakemod

    def boom(*args, **kwargs):
        raise OSError("injected: object store unavailable")

    monkeypatch.setattr(lakemod, "write_deltalake", boom)
    with pytest.raises(CommitError, match="injected"):
        ingest(p2, settings=settings)
    monkeypatch.undo()

    versions, events, current = _catalog_state(settings, "RSJ-0001")
    assert versions == before_versions and current == first.version
    assert events == [*before_events, "START", "FAIL"]
    lake = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)
    assert lake.current_version("social_insurance") == 0
    assert lake.read("social_insurance").num_rows == first.rows_committed
    # the raw file stays landed: two files in the landing zone now
    assert len(list((settings.landing_dir / "RSJ-0001").iterdir())) == 2
    # and a retry after the outage succeeds
    assert ingest(p2, settings=settings).version == 1


def _variant(tmp_path: Path, contract_path: Path, **changes) -> Path:
    c = yaml.safe_load(Path(contract_path).read_text(encoding="utf-8"))
    base = Path(contract_path).parent
    c["source"]["path"] = str((base / c["source"]["path"]).resolve())
    for key, value in changes.items():
        section, _, sub = key.partition("__")
        if sub:
            c[section][sub] = value
        else:
            c[section] = value
    out = tmp_path / "variant.yaml"
    out.write_text(yaml.safe_dump(c, allow_unicode=True), encoding="utf-8")
    return out


def test_quality_gate_refuses_commit_but_keeps_quarantine(demo, settings, tmp_path):
    _, contracts = demo
    strict = _variant(tmp_path, contracts["enterprise_registry"], quality={"min_pass_rate": 1.0})
    with pytest.raises(QualityGateError, match="min_pass_rate"):
        ingest(strict, settings=settings)
    lake = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)
    assert lake.current_version("enterprise_registry") is None
    assert lake.read_quarantine("enterprise_registry").num_rows > 0
    with catalog.session_scope(settings.catalog_db_url) as s:
        assert [e.event_type for e in catalog.lineage_events(session=s)] == ["START", "FAIL"]


def test_wrong_declared_encoding_names_file_and_row(demo, settings, tmp_path):
    _, contracts = demo
    bad = _variant(tmp_path, contracts["tax_payment"], source__encoding="utf-8")
    with pytest.raises(SourceError, match=r"tax_payment\.csv.*(row|line) \d+"):
        ingest(bad, settings=settings)


def test_missing_required_column_is_named(demo, settings, tmp_path):
    _, contracts = demo
    c = yaml.safe_load(Path(contracts["enterprise_registry"]).read_text(encoding="utf-8"))
    c["fields"][0]["source_column"] = "不存在的列"
    bad = _variant(tmp_path, contracts["enterprise_registry"], fields=c["fields"])
    with pytest.raises(IngestError, match="不存在的列"):
        ingest(bad, settings=settings)


def _with_district_domain(tmp_path: Path, contract_path: Path, domain: str) -> Path:
    """The social-insurance contract with ``sandbox.dp.public_domains.employer_district``."""
    c = yaml.safe_load(Path(contract_path).read_text(encoding="utf-8"))
    c["sandbox"]["dp"]["public_domains"] = {"employer_district": domain}
    return _variant(tmp_path, contract_path, sandbox=c["sandbox"])


@pytest.mark.parametrize(
    ("domain", "reason"),
    [
        pytest.param("region_codes:32011", "is not a named domain", id="five-digits"),
        pytest.param("region_codes:3299", "no GB/T 2260 county-level code in use", id="no-city"),
        pytest.param("region_codes:abcd", "is not a named domain", id="letters"),
        pytest.param("region_codes:99", "no GB/T 2260 county-level code in use", id="no-prov"),
    ],
)
def test_bad_dp_public_domain_is_refused_at_ingest_before_anything_is_written(
    demo, settings, tmp_path, domain, reason
):
    _, contracts = demo
    bad = _with_district_domain(tmp_path, contracts["social_insurance"], domain)
    key = "sandbox.dp.public_domains.employer_district"
    with pytest.raises(ContractError, match=re.escape(f"variant.yaml: {key}: ")) as info:
        ingest(bad, settings=settings)
    assert info.value.key == key and reason in str(info.value) and domain in str(info.value)
    with pytest.raises(ContractError, match=re.escape(key)):
        load_contract(bad)  # the loader every task, the DAG factory and the CLI use
    # nothing landed, committed, registered or recorded
    assert not (settings.landing_dir / "RSJ-0001").exists()
    lake = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)
    assert lake.current_version("social_insurance") is None
    with catalog.session_scope(settings.catalog_db_url) as s:
        with pytest.raises(catalog.DatasetNotFound):
            catalog.get_dataset(session=s, code="RSJ-0001")
        assert catalog.lineage_events(session=s) == []


def test_city_dp_public_domain_passes_at_load(demo, tmp_path):
    _, contracts = demo
    good = _with_district_domain(tmp_path, contracts["social_insurance"], "region_codes:3201")
    c = load_contract(good)
    assert c.sandbox["dp"]["public_domains"] == {"employer_district": "region_codes:3201"}


def _contract_for(
    tmp_path: Path, base: Path, source: Path, name: str = "c.yaml", **changes
) -> Path:
    c = yaml.safe_load(Path(base).read_text(encoding="utf-8"))
    c["source"]["path"] = str(source)
    c.update(changes)
    out = tmp_path / name
    out.write_text(yaml.safe_dump(c, allow_unicode=True), encoding="utf-8")
    return out


def test_resending_an_older_file_restores_it_as_a_new_version(demo, settings, tmp_path):
    files, contracts = demo
    lines = files.tax_payment.read_bytes().split(b"\r\n")
    small = tmp_path / "small.csv"
    small.write_bytes(b"\r\n".join(lines[:51]) + b"\r\n")
    v0 = ingest(
        _contract_for(tmp_path, contracts["tax_payment"], files.tax_payment), settings=settings
    )
    v1 = ingest(
        _contract_for(tmp_path, contracts["tax_payment"], small, "s.yaml"), settings=settings
    )
    back = ingest(
        _contract_for(tmp_path, contracts["tax_payment"], files.tax_payment, "b.yaml"),
        settings=settings,
    )
    assert (v0.version, v1.version, back.version) == (0, 1, 2) and back.created
    lake = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)
    assert lake.read("tax_payment").num_rows == v0.rows_committed


def test_header_only_delivery_is_refused_and_table_kept(demo, settings, tmp_path):
    files, contracts = demo
    first = ingest(contracts["tax_payment"], settings=settings)
    header_only = tmp_path / "header.csv"
    header_only.write_bytes(files.tax_payment.read_bytes().split(b"\r\n")[0] + b"\r\n")
    with pytest.raises(SourceError, match=r"header\.csv.*no data rows"):
        ingest(_contract_for(tmp_path, contracts["tax_payment"], header_only), settings=settings)
    lake = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)
    assert lake.read("tax_payment").num_rows == first.rows_committed


def test_changed_classification_reingests_same_bytes(demo, settings, tmp_path):
    files, contracts = demo
    base = contracts["enterprise_registry"]
    ingest(base, settings=settings)
    c = yaml.safe_load(Path(base).read_text(encoding="utf-8"))
    for f in c["fields"]:
        if f["name"] == "region_code":
            f.update(grade="core", pi="sensitive")
    c["source"]["path"] = str(files.enterprise_registry)
    p = tmp_path / "graded.yaml"
    p.write_text(yaml.safe_dump(c, allow_unicode=True), encoding="utf-8")
    again = ingest(p, settings=settings)
    assert again.created and again.version == 1
    t = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir).read("enterprise_registry", 1)
    assert str(t.schema.field("region_code").type) == "binary"


def test_quarantine_never_stores_sensitive_plaintext(demo, settings, tmp_path):
    files, contracts = demo
    rows = files.enterprise_registry.read_text(encoding="utf-8").splitlines()
    header, first = rows[0], rows[1]
    rid = first.split(",")[3].strip('"')
    assert len(rid) == 18
    bad_date = first.replace(first.split(",")[-1], "2021-02-30")
    ragged = first + ",extra"
    src = tmp_path / "bad.csv"
    src.write_text("\n".join([header, *rows[2:40], bad_date, ragged]) + "\n", encoding="utf-8")
    c = yaml.safe_load(Path(contracts["enterprise_registry"]).read_text(encoding="utf-8"))
    for f in c["fields"]:
        if f["name"] == "established_on":
            f.update(grade="core")
    c["source"]["path"] = str(src)
    c["quality"]["min_pass_rate"] = 0.5
    p = tmp_path / "q.yaml"
    p.write_text(yaml.safe_dump(c, allow_unicode=True), encoding="utf-8")
    ingest(p, settings=settings)
    q = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir).read_quarantine(
        "enterprise_registry"
    )
    text = json.dumps(
        q.drop_columns(["value_encrypted"]).to_pylist(), ensure_ascii=False, default=str
    )
    assert rid not in text and "2021-02-30" not in text
    stored = b"".join(f.read_bytes() for f in settings.quarantine_dir.rglob("*") if f.is_file())
    assert rid.encode() not in stored and b"2021-02-30" not in stored


FILE_02 = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "data"
    / "02_nbs_monthly_money_supply_m0_m1_m2_gbk.csv"
)


@pytest.mark.skipif(
    not FILE_02.exists(), reason="file 02 is not shipped (no licence); needs ../shared/data"
)
def test_ingest_unshipped_public_file_02_straight_from_shared_data(settings, tmp_path):
    """NBS monthly money supply (GBK, metadata above, comma-padded footnotes below): ingested
    from ../shared/data, never copied into the project."""
    money = {"type": "decimal", "precision": 18, "scale": 2, "unit": "亿元"}
    rate = {"type": "decimal", "precision": 6, "scale": 1, "unit": "%"}
    contract = {
        "code": "TJJ-PUB-0002",
        "name": "tjj_money_supply_monthly",
        "title": "货币供应量（月度）",
        "department": {"code": "TJJ", "name": "国家统计局"},
        "source": {
            "path": str(FILE_02),
            "format": "csv",
            "encoding": "gbk",
            "header_row": 3,
            "footer_rows": 2,
        },
        "primary_key": ["period"],
        "share": {"type": "unconditional"},
        "open": {"type": "unconditional"},
        "update_cycle": "monthly",
        "fields": [
            {"name": "period", "title": "时间", "required": True},
            {"name": "m2", "source_column": "货币和准货币(M2)供应量期末值(亿元)", **money},
            {"name": "m2_yoy", "source_column": "货币和准货币(M2)供应量同比增长(%)", **rate},
            {"name": "m1", "source_column": "货币(M1)供应量期末值(亿元)", **money},
            {"name": "m0", "source_column": "流通中现金(M0)供应量期末值(亿元)", **money},
        ],
    }
    p = tmp_path / "money.yaml"
    p.write_text(yaml.safe_dump(contract, allow_unicode=True), encoding="utf-8")
    out = ingest(p, settings=settings)
    assert (out.rows_in, out.rows_committed, out.rows_quarantined) == (258, 258, 0)
    t = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir).read("tjj_money_supply_monthly")
    assert t["period"][0].as_py() == "2021年5月" and str(t["m2"][0].as_py()) == "2275538.07"
