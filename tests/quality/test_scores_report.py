"""Scores per GB/T 36344 dimension, their storage per version, the reports, and the gate."""

from __future__ import annotations

import json
import re
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import catalog
from govdx import load_contract
from govdx.demo import CONTRACTS_DIR, write_credit_demo
from quality import (
    build_report,
    check_table,
    quality_history,
    record_quality,
    render_html,
    render_json,
)
from tests.conftest import make_contract

AS_OF = date(2026, 11, 29)
USCC = ["91110108MA01AAAA55", "91110108MA01BBBB84", "91110108MA01CCCC01", "91110108MA01DDDD30"]


def _scores(usccs, prior=None, rows_in=None):
    n = len(usccs)
    t = pa.table(
        {
            "uscc": pa.array(usccs, pa.string()),
            "legal_rep_id": pa.array(["11010519491231002X"] * n),
            "reg_capital": pa.array([None] * n, pa.decimal128(38, 2)),
            "_row": pa.array(range(n), pa.int64()),
        }
    )
    return check_table(t, make_contract(), as_of=AS_OF, prior_rejects=prior, rows_in=rows_in).scores


def test_dimension_pass_rates_count_rows_over_rows_in():
    # rows: ok, bad check char (准确性), duplicate of row 0 (唯一性), lower-case (finding, 规范性)
    bad = USCC[1][:-1] + ("0" if USCC[1][-1] != "0" else "1")
    prior = pa.table(
        {
            "_row": pa.array([4, 5], pa.int64()),
            "field": ["uscc", "reg_capital"],
            "value": ["", "x"],
            "reason": ["required value is blank (必填项为空)", "not a decimal number (不是数值)"],
        }
    )
    s = _scores([USCC[0], bad, USCC[0], USCC[2].lower()], prior=prior, rows_in=6)
    assert s.rows_in == 6 and s.rows_passed == 2 and s.rows_quarantined == 4
    assert s.pass_rate == pytest.approx(2 / 6)
    assert s.dimensions["准确性"] == pytest.approx(5 / 6)
    assert s.dimensions["唯一性"] == pytest.approx(5 / 6)
    assert s.dimensions["完整性"] == pytest.approx(5 / 6)  # the blank required uscc (cast step)
    assert s.dimensions["规范性"] == pytest.approx(4 / 6)  # lower case finding + reg_capital type
    assert s.dimensions["一致性"] is None and s.dimensions["可访问性"] is None
    measured = [v for v in s.dimensions.values() if v is not None]
    assert s.overall == pytest.approx(sum(measured) / len(measured))
    assert s.rule("uscc.required").failed == 1 and s.rule("reg_capital.type").failed == 1
    assert s.rule("uscc.uscc.lower_case").severity == "finding"
    assert s.rules[0].failed == 1  # worst first


def test_examples_of_sensitive_fields_are_masked():
    n = 2
    t = pa.table(
        {
            "uscc": pa.array(USCC[:n]),
            "legal_rep_id": pa.array(["110105194912310021", "11010519491231002X"]),
            "reg_capital": pa.array([None] * n, pa.decimal128(38, 2)),
            "_row": pa.array(range(n), pa.int64()),
        }
    )
    s = check_table(t, make_contract(), as_of=AS_OF).scores
    assert s.rule("legal_rep_id.resident_id.check_char").examples == ["110105**********21"]


@pytest.fixture
def session(tmp_path):
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    catalog.migrate(url)
    factory = catalog.open_catalog(url)
    with factory() as s:
        yield s
    factory.kw["bind"].dispose()


def test_scores_are_stored_per_version_and_reported(session, tmp_path):
    contract = load_contract(CONTRACTS_DIR / "enterprise_registry.yaml")
    ds = catalog.upsert_dataset(session=session, contract=contract)
    good = _scores([USCC[0], USCC[1]])
    worse = _scores([USCC[0], USCC[0], USCC[2], USCC[3]])
    for v, scores in enumerate((good, worse)):
        ver = catalog.add_version(
            session=session,
            dataset=ds,
            delta_version=v,
            row_count=10,
            quarantined_count=scores.rows_quarantined,
            source_digest=f"{v:064x}",
            source_name="x.csv",
            source_bytes=100,
            run_id=f"00000000-0000-0000-0000-00000000000{v}",
        )
        record_quality(session=session, dataset_version=ver, scores=scores)
    session.commit()
    history = quality_history(session=session, code="SCJG-0001")
    assert [h.dataset_version.delta_version for h in history] == [0, 1]
    assert history[1].dimensions["唯一性"] == pytest.approx(0.75)
    assert history[0].overall_score == pytest.approx(1.0)

    report = build_report(session=session, code="SCJG-0001")
    assert json.loads(render_json(report))["datasets"][0]["latest"]["delta_version"] == 1
    entry = report["datasets"][0]
    assert [v["pass_rate"] for v in entry["versions"]] == [1.0, 0.75]
    assert entry["worst_rules"][0]["rule"] == "uscc.primary_key.unique"
    assert report["departments"][0]["code"] == "SCJG"

    page = render_html(report)
    assert (
        page.count('<svg class="chart bars"') == 1 and page.count('<svg class="chart trend"') == 1
    )
    assert page.count('class="bar"') == 4  # 规范性 完整性 准确性 唯一性 measured
    assert page.count('class="line"') == 2  # overall and pass rate across versions
    assert "uscc.primary_key.unique" in page
    refs = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert refs == []  # self-contained: no external resource, no CDN
    assert "<script" not in page


def test_gate_refuses_a_bad_version_and_the_old_one_stays_current(tmp_path, settings):
    from pipelines import Lakehouse, QualityGateError, ingest

    files, paths = write_credit_demo(tmp_path / "demo", rows=400, seed=7)
    contract_path = paths[0]
    first = ingest(contract_path, settings=settings)
    assert first.version == 0
    # a new delivery where a quarter of the USCCs carry a wrong check character
    data = files.enterprise_registry.read_text(encoding="utf-8").splitlines()
    broken = [
        line if i == 0 or i % 4 else line[:17] + ("0" if line[17] != "0" else "1") + line[18:]
        for i, line in enumerate(data)
    ]
    files.enterprise_registry.write_text("\n".join(broken) + "\n", encoding="utf-8")
    with pytest.raises(QualityGateError, match="min_pass_rate") as err:
        ingest(contract_path, settings=settings)
    # the error names the command that shows the refused run's rejects
    hint = re.search(r"govdx quarantine show SCJG-0001 --run (\S+)$", str(err.value))
    assert hint is not None, str(err.value)
    refused_run = hint.group(1)
    with catalog.session_scope(settings.catalog_db_url) as s:
        assert catalog.current_version(session=s, code="SCJG-0001").delta_version == 0
        assert len(catalog.list_versions(session=s, code="SCJG-0001")) == 1
    q = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir).read_quarantine(
        "enterprise_registry"
    )
    q = q.filter(pc.not_equal(q["run_id"], first.run_id))  # the refused run's evidence
    check = q.filter(pc.equal(q["rule"], "uscc.uscc.check_char"))
    # rows 4, 8, … 400 broken here, plus the file's own bad check characters
    already = files.defects["enterprise_registry"]["uscc_bad_check"]
    assert 100 - already <= check.num_rows <= 100 + already
    assert set(check["dimension"].to_pylist()) == {"准确性"}
    assert set(q["run_id"].to_pylist()) == {refused_run}
    # the CLI lists that run beside the current one and counts its rejects by rule
    from typer.testing import CliRunner

    from govdx.cli import app

    res = CliRunner().invoke(app, ["quarantine", "show", "SCJG-0001"])
    assert res.exit_code == 0 and refused_run in res.output and "--run RUN_ID" in res.output
    args = ["quarantine", "show", "SCJG-0001", "--run", refused_run, "--json"]
    res = CliRunner().invoke(app, args)
    doc = json.loads(res.output)
    [uscc] = [c for c in doc["by_rule"] if c["rule"] == "uscc.uscc.check_char"]
    assert (uscc["field"], uscc["count"]) == ("uscc", check.num_rows)
    assert doc["total"] == q.num_rows and doc["other_runs"][0]["run_id"] == first.run_id


def test_cli_report_writes_one_html_file_with_charts(settings, tmp_path):
    from typer.testing import CliRunner

    from govdx.cli._quality import quality_app

    contract = load_contract(CONTRACTS_DIR / "enterprise_registry.yaml")
    with catalog.session_scope(settings.catalog_db_url) as s:
        ds = catalog.upsert_dataset(session=s, contract=contract)
        ver = catalog.add_version(
            session=s,
            dataset=ds,
            delta_version=0,
            row_count=4,
            quarantined_count=1,
            source_digest="0" * 64,
            source_name="x.csv",
            source_bytes=1,
            run_id="00000000-0000-0000-0000-000000000000",
        )
        record_quality(
            session=s, dataset_version=ver, scores=_scores([USCC[0], USCC[0], USCC[1], USCC[2]])
        )
    out = tmp_path / "r.html"
    result = CliRunner().invoke(
        quality_app, ["report", "--dataset", "SCJG-0001", "--format", "html", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert page.count("<svg") == 2 and "SCJG-0001" in page and "75.00%" in page
    result = CliRunner().invoke(quality_app, ["report", "--dataset", "NOPE-1"])
    assert result.exit_code == 1
