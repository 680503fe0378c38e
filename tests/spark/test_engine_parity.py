"""engine=spark and engine=duckdb give the same rows, quarantine and scores on the demo data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

import catalog
from govdx import load_contract
from govdx.demo import write_credit_demo
from pipelines import IngestError, Lakehouse, ingest, transform
from pipelines import _spark as engine
from pipelines._spark import _cut_points, transform_spark
from privacy import decrypt_column, keyring_from_settings
from quality._gx import SPARK_DATASOURCE, gx_context
from tests.conftest import make_contract

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::FutureWarning"),  # pyspark on pandas 3
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo")
    files, contracts = write_credit_demo(work, rows=400, seed=11)
    return files, {load_contract(c).name: c for c in contracts}


def _plain(table: pa.Table, contract, keyring) -> pa.Table:
    """The table with every SM4 column decrypted (ciphertexts carry random nonces)."""
    cols = []
    for name in table.column_names:
        col = table[name]
        meta = table.schema.field(name).metadata or {}
        if meta.get(b"govdx.cipher") == b"SM4":
            key = keyring.get(contract.code, meta[b"govdx.key_id"].decode())
            col = decrypt_column(col, key=key, dataset=contract.code, column=name)
        cols.append(col)
    return pa.table(cols, names=table.column_names)


def _assert_same(contract, data: bytes, file: str, spark, keyring) -> dict:
    kw = dict(file=file, keyring=keyring, run_id="run-1", digest="d" * 64)
    p_duck, q_duck, c_duck = transform(data, contract, **kw)
    p_spark, q_spark, c_spark = transform_spark(data, contract, spark=spark, **kw)
    # the Spark run's GX suite ran on GX's Spark data source (SparkDFExecutionEngine), not pandas
    vd = gx_context().validation_definitions.get(contract.code)
    assert vd.data_source.name == f"{SPARK_DATASOURCE}:{contract.code}"
    assert type(vd.data_source).__name__ == "SparkDatasource"
    assert vd.data_source.execution_engine_type.__name__ == "SparkDFExecutionEngine"
    assert c_spark == c_duck  # rows in/passed/quarantined, encoding, GB/T 36344 scores, gate
    assert p_spark.schema.equals(p_duck.schema, check_metadata=True)
    assert _plain(p_spark, contract, keyring).equals(_plain(p_duck, contract, keyring))
    keep = [c for c in q_duck.column_names if c != "value_encrypted"]
    assert q_spark.select(keep).equals(q_duck.select(keep))
    assert pc.is_null(q_spark["value_encrypted"]).equals(pc.is_null(q_duck["value_encrypted"]))
    return c_duck


@pytest.mark.parametrize(
    ("name", "encoding", "quarantined"),
    [
        pytest.param("enterprise_registry", "utf-8", 6, id="csv-utf8"),
        pytest.param("tax_payment", "gb18030", 3, id="csv-gbk-crlf"),
        pytest.param("social_insurance", "utf-8", 4, id="xlsx"),
    ],
)
def test_transform_parity_on_demo_data(demo, settings, spark, name, encoding, quarantined):
    files, contracts = demo
    contract = load_contract(contracts[name])
    data = contract.source_path().read_bytes()
    counts = _assert_same(
        contract, data, contract.source_path().name, spark, keyring_from_settings(settings)
    )
    assert counts["rows_in"] == files.rows[name] and counts["encoding"] == encoding
    assert counts["rows_quarantined"] == quarantined
    assert counts["rows_passed"] + counts["rows_quarantined"] == files.rows[name]


def test_csv_chunks_keep_quoted_newlines_bad_rows_and_line_numbers(settings, spark, tmp_path):
    contract = make_contract(
        source={"path": "x.csv", "format": "csv", "header_row": 3, "footer_rows": 1},
        fields=[
            {"name": "uscc", "title": "统一社会信用代码", "required": True},
            {
                "name": "legal_rep_id",
                "title": "法定代表人身份证号",
                "element": "resident_id",
                "grade": "important",
                "pi": "sensitive",
            },
            {"name": "reg_capital", "title": "注册资本(万元)", "type": "decimal", "scale": 2},
        ],
    )
    good = "91110000TEST"  # repeated on the quoted rows: primary-key duplicates
    lines = [
        "企业登记 2026年10月",
        "单位: 万元",
        "统一社会信用代码,法定代表人身份证号,注册资本(万元)",
    ]
    for i in range(1, 301):
        if i % 37 == 0:
            lines.append(f'"{good}","11010519491231002X","1{i}\n.5"')  # quoted newline
        elif i % 41 == 0:
            lines.append(f"{good},only-two-fields")
        elif i % 43 == 0:
            lines.append("")
        else:
            lines.append(f"{good}{i},11010519491231002X,{i}.25")
    lines.append("注: 本表为测试数据")
    data = ("\n".join(lines) + "\n").encode("utf-8")
    body = data.split(b"\n", 3)[3]
    cuts = _cut_points(body, 8)
    assert len(cuts) > 3 and all(body[c - 1 : c] == b"\n" for c in cuts[1:-1])
    assert all(body[:c].count(b'"') % 2 == 0 for c in cuts)  # never inside a quoted value
    counts = _assert_same(contract, data, "x.csv", spark, keyring_from_settings(settings))
    assert counts["rows_in"] == 300 - 300 // 43  # blank lines are not records
    # 8 quoted rows: 1 cast reject each ("1<i>\n.5" is no number); 7 short rows; no other
    assert counts["rows_quarantined"] == 8 + 7 and counts["gate_error"] is None


def test_odd_quotes_are_not_cut():
    assert _cut_points(b'a,"b\nc\nd\n', 4) == [0, 9]
    assert _cut_points(b"", 4) == [0, 0]


def test_ingest_engine_spark_commits_the_same_table(demo, tmp_path, spark):
    from govdx import Settings

    _, contracts = demo
    outcomes, tables = {}, {}
    for eng in ("duckdb", "spark"):
        s = Settings(home=tmp_path / eng)
        s.ensure_home()
        outcomes[eng] = ingest(contracts["tax_payment"], settings=s, engine=eng)
        contract = load_contract(contracts["tax_payment"])
        lake = Lakehouse(s.lakehouse_dir, s.quarantine_dir)
        plain = _plain(lake.read("tax_payment"), contract, keyring_from_settings(s))
        # token keys are per home: compare the tokens' presence, the decrypted values exactly
        assert "taxpayer_id_token" in plain.column_names
        tables[eng] = (
            plain.drop_columns(["taxpayer_id_token"]),
            lake.read_quarantine("tax_payment").num_rows,
        )
        with catalog.session_scope(s.catalog_db_url) as session:
            v = catalog.current_version(session=session, code="SWJ-0001")
            tables[eng] += (v.delta_version, v.row_count, v.quarantined_count)
    d, sp = outcomes["duckdb"], outcomes["spark"]
    assert (
        (sp.rows_in, sp.rows_committed, sp.rows_quarantined, sp.version)
        == (d.rows_in, d.rows_committed, d.rows_quarantined, d.version)
        == (560, 557, 3, 0)
    )
    assert tables["spark"][0].equals(tables["duckdb"][0])
    assert tables["spark"][1:] == tables["duckdb"][1:] == (3, 0, 557, 3)


def test_failing_spark_task_leaves_the_previous_version(
    demo, settings, spark, tmp_path, monkeypatch
):
    files, contracts = demo
    first = ingest(contracts["enterprise_registry"], settings=settings, engine="spark")
    assert (first.created, first.version) == (True, 0)

    def failing(batches, **kw):  # pickled by value into the executors
        for b in batches:
            if b.num_rows:
                raise RuntimeError("injected executor failure on one batch")
            yield b

    monkeypatch.setattr(engine, "_protect_batches", failing)
    c = yaml.safe_load(Path(contracts["enterprise_registry"]).read_text(encoding="utf-8"))
    changed = tmp_path / "enterprise_next.csv"
    shutil.copy(files.enterprise_registry, changed)
    with changed.open("ab") as fh:
        fh.write(b"\n")  # new bytes, same rows
    c["source"]["path"] = str(changed)
    p2 = tmp_path / "enterprise_next.yaml"
    p2.write_text(yaml.safe_dump(c, allow_unicode=True), encoding="utf-8")
    with pytest.raises(IngestError, match=r"Spark protect job failed.*injected executor failure"):
        ingest(p2, settings=settings, engine="spark")
    lake = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)
    assert lake.current_version("enterprise_registry") == 0
    assert lake.read("enterprise_registry").num_rows == first.rows_committed
    with catalog.session_scope(settings.catalog_db_url) as s:
        assert catalog.current_version(session=s, code="SCJG-0001").delta_version == 0


def test_source_errors_are_raised_on_the_driver_as_embedded(settings, spark):
    from pipelines import MissingColumnError, SourceError

    contract = make_contract()
    kw = dict(file="x.csv", keyring=keyring_from_settings(settings), run_id="r", digest="d")
    with pytest.raises(MissingColumnError, match="uscc"):
        transform_spark("名称,注册资本(万元)\nx,1\n".encode(), contract, spark=spark, **kw)
    with pytest.raises(SourceError, match="无数据行"):
        transform_spark("统一社会信用代码,注册资本(万元)\n\n".encode(), contract, spark=spark, **kw)
