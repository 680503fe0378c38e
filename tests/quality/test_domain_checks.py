"""Domain checks chosen by element, quarantine counts on the seeded demo, findings vs rejects."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pytest

import quality._rules as rules_mod
from govdx import load_contract
from govdx.demo import write_credit_demo
from pipelines._cast import cast_table
from pipelines._parse import map_columns, read_source
from pipelines._validate import validate
from quality import check_table, resident_id_check_char
from tests.conftest import make_contract

AS_OF = date(2026, 11, 29)
RID = "11010519491231002X"  # GB 11643 example, region 110105 朝阳区


def _rid(first17: str) -> str:
    return first17 + resident_id_check_char(first17)


RID_XUANWU = _rid("11010419800101001")  # 110104 宣武区, abolished 2010: still a valid region
RID_UNKNOWN_REGION = _rid("99000019800101001")  # well formed, region never in GB/T 2260
RID_FUTURE = _rid("11010520990101001")  # born 2099
USCC_OK = "91350100M000100Y43"

# demo defect kinds → the rule that catches them (rows quarantined unless noted)
REGISTRY_RULES = {
    "uscc_bad_check": "uscc.uscc.check_char",
    "resident_id_bad_check": "legal_rep_id.resident_id.check_char",
    "blank_required": "enterprise_name.required",
    "duplicate_key": "uscc.primary_key.unique",
    "malformed_date": "established_on.type",
    "negative_capital": "registered_capital.amount.non_negative",
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    files, paths = write_credit_demo(tmp_path_factory.mktemp("demo"), rows=2000, seed=20261129)
    results = {}
    for p in paths:
        c = load_contract(p)
        raw = read_source(c.source_path(), c.source)
        cast = cast_table(map_columns(raw.table, c, file=p.name), c)
        prior = pa.concat_tables(
            [r.select(["_row", "field", "value", "reason"]) for r in (raw.rejects, cast.rejects)]
        )
        results[c.name] = validate(
            cast.table, c, rows_in=raw.rows_in, prior_rejects=prior, as_of=AS_OF
        )
    return files, results


def test_exact_quarantine_counts_on_the_seeded_demo(demo):
    files, results = demo
    reg = results["enterprise_registry"]
    d = files.defects["enterprise_registry"]
    assert d == {
        "uscc_bad_check": 4,
        "resident_id_bad_check": 4,
        "blank_required": 2,
        "duplicate_key": 1,
        "malformed_date": 1,
        "negative_capital": 1,
    }
    assert reg.rows_quarantined == sum(d.values()) == 13
    assert reg.passed.num_rows == 2000 - 13
    by_rule = reg.scores.failed_by_rule()
    for kind, rule in REGISTRY_RULES.items():
        assert by_rule[rule] == d[kind], rule
    # the steward's GX expectation (registered_capital >= 0) ran natively and agrees
    assert by_rule["registered_capital.gx.0.expect_column_values_to_be_between"] == 1
    assert by_rule["legal_rep_id.resident_id.region_known"] == 0  # historical codes count

    tax = results["tax_payment"]
    dt = files.defects["tax_payment"]
    assert tax.rows_quarantined == sum(dt.values()) == 7
    assert tax.scores.rule("taxpayer_id.uscc.check_char").failed == dt["uscc_bad_check"]
    assert tax.scores.rule("taxpayer_id,tax_year.primary_key.unique").failed == dt["duplicate_key"]

    si = results["social_insurance"]
    ds = files.defects["social_insurance"]
    assert (
        si.rows_quarantined
        == (
            ds["resident_id_legacy_15"]
            + ds["resident_id_bad_check"]
            + ds["blank_required"]
            + ds["duplicate_key"]
        )
        == 4
    )
    assert si.scores.rule("resident_id.resident_id.legacy_15").failed == 1
    assert si.scores.rule("resident_id.resident_id.lower_x").failed == 1
    assert si.findings["rule"].to_pylist() == ["resident_id.resident_id.lower_x"]
    assert not any(v.endswith("x") for v in si.passed["resident_id"].to_pylist())
    assert set(si.rejects.column_names) >= {"_row", "field", "value", "reason", "rule", "dimension"}
    assert set(si.rejects["dimension"].to_pylist()) == {"规范性", "完整性", "准确性", "唯一性"}


def _ids(values, contract=None, **kw):
    contract = contract or make_contract(primary_key=[])
    n = len(values)
    t = pa.table(
        {
            "uscc": pa.array([USCC_OK] * n),
            "legal_rep_id": pa.array(values, pa.string()),
            "reg_capital": pa.array([None] * n, pa.decimal128(38, 2)),
            "_row": pa.array(range(n), pa.int64()),
        }
    )
    return check_table(t, contract, as_of=AS_OF, **kw)


def test_resident_id_checks_findings_and_rejections():
    out = _ids(
        [
            RID,
            RID_XUANWU,
            "11010519491231002x",
            "110105491231002",
            "11010519491231002Y",
            "110105194912310021",
            RID_UNKNOWN_REGION,
            RID_FUTURE,
            None,
            "bogus",
        ]
    )
    by = {r.rule: r.failed for r in out.scores.rules}
    rows = {
        r: sorted(out.rejects.filter(pa.compute.equal(out.rejects["rule"], r))["_row"].to_pylist())
        for r in set(out.rejects["rule"].to_pylist())
    }
    assert rows["legal_rep_id.resident_id.legacy_15"] == [3]
    assert rows["legal_rep_id.resident_id.format"] == [4, 9]
    assert rows["legal_rep_id.resident_id.check_char"] == [5]
    assert by["legal_rep_id.resident_id.lower_x"] == 1  # a finding, row 2 passes
    assert sorted(out.findings["_row"].to_pylist()) == [2, 6]  # lower x; unknown region 990000
    assert by["legal_rep_id.resident_id.region_known"] == 1
    assert out.scores.rows_passed == 10 - 4 - 1  # 2099 birth date is in the future → rejected
    assert "legal_rep_id.resident_id.birth_date" in rows and rows[
        "legal_rep_id.resident_id.birth_date"
    ] == [7]
    assert out.table["legal_rep_id"][2].as_py() == RID  # normalised to X


def test_unknown_region_rejected_when_strict():
    strict = make_contract(
        primary_key=[], quality={"min_pass_rate": 0.5, "fields": {"legal_rep_id": {"strict": True}}}
    )
    out = _ids([RID, RID_UNKNOWN_REGION], strict)
    assert out.rejects["rule"].to_pylist() == ["legal_rep_id.resident_id.region_known"]
    assert out.rejects["dimension"].to_pylist() == ["准确性"]


def _contract_with(contract_fields, **quality):
    return make_contract(
        primary_key=[], fields=contract_fields, quality={"min_pass_rate": 0.0, **quality}
    )


def test_phone_date_amount_and_consistency_rules():
    c = _contract_with(
        [
            {"name": "phone", "element": "phone"},
            {"name": "born", "type": "date", "element": "date"},
            {"name": "id", "element": "resident_id"},
            {"name": "paid", "type": "decimal", "scale": 2, "element": "amount"},
            {"name": "refund", "type": "decimal", "scale": 2, "element": "amount"},
        ],
        fields={"born": {"min_date": "1900-01-01"}, "refund": {"allow_negative": True}},
        consistency=[
            {"check": "birth_date_matches_id", "id_column": "id", "date_column": "born"},
            {"check": "not_after", "column": "born", "other": "ingestion_date"},
        ],
    )
    t = pa.table(
        {
            "phone": [
                "13812345678",
                "010-62345678",
                "+8613912345678",
                "12345678901",
                "0755-8123456",
            ],
            "born": pa.array(
                [date(1949, 12, 31), date(1980, 1, 1), date(1899, 1, 1), date(2027, 1, 1), None],
                pa.date32(),
            ),
            "id": [RID, RID, None, None, None],
            "paid": pa.array([1, -1, 0, None, 2], pa.decimal128(38, 2)),
            "refund": pa.array([-5, -5, 0, 0, 0], pa.decimal128(38, 2)),
            "_row": pa.array(range(5), pa.int64()),
        }
    )
    out = check_table(t, c, as_of=AS_OF)
    got = {}
    for r, row in zip(
        out.rejects["rule"].to_pylist(), out.rejects["_row"].to_pylist(), strict=True
    ):
        got.setdefault(r, []).append(row)
    assert got == {
        "phone.phone.format": [3],
        "born.date.not_future": [3],
        "born.date.min_date": [2],
        "paid.amount.non_negative": [1],
        "id,born.consistency.birth_date_matches_id": [1],
        "born.consistency.not_after_ingestion": [3],
    }
    assert out.scores.dimensions["一致性"] == pytest.approx(4 / 5)
    assert out.scores.dimensions["时效性"] == pytest.approx(4 / 5)
    assert out.scores.rows_passed == 2


def test_a_check_that_raises_fails_that_row_and_the_run_goes_on(monkeypatch):
    real = rules_mod.uscc_checks

    def fragile(values, **kw):
        if any(
            v == "91350100M000100Y4!"
            for v in pa.chunked_array([values]).to_pylist()
            if isinstance(values, pa.Array | pa.ChunkedArray)
        ):
            raise ValueError("weird value")
        return real(values, **kw)

    monkeypatch.setattr(rules_mod, "uscc_checks", fragile)
    c = make_contract(primary_key=[])
    t = pa.table(
        {
            "uscc": [USCC_OK, "91350100M000100Y4!", USCC_OK],
            "legal_rep_id": [RID, RID, RID],
            "reg_capital": pa.array([None] * 3, pa.decimal128(38, 2)),
            "_row": pa.array([10, 11, 12], pa.int64()),
        }
    )
    out = check_table(t, c, as_of=AS_OF)
    assert out.rejects["_row"].to_pylist() == [11]
    assert out.rejects["rule"].to_pylist() == ["uscc.uscc.check_error"]
    assert "ValueError: weird value" in out.rejects["reason"][0].as_py()
    assert out.scores.rows_passed == 2
