"""Expectation suites from contracts: load-time checks of the quality section, the GX suite."""

from __future__ import annotations

import pytest

from govdx import ContractError, load_contract
from govdx.demo import CONTRACTS_DIR
from quality import build_suite, check_contract, quality_spec
from tests.conftest import make_contract


def _with_expectations(*exps, **quality):
    return make_contract(quality={"min_pass_rate": 0.5, "expectations": list(exps), **quality})


@pytest.mark.parametrize(
    ("quality", "key", "match"),
    [
        pytest.param(
            {"expectations": [{"expectation": "expect_nonsense", "column": "uscc"}]},
            "quality.expectations.0.expectation",
            "unknown Great Expectations",
            id="name",
        ),
        pytest.param(
            {
                "expectations": [
                    {
                        "expectation": "expect_column_values_to_be_between",
                        "column": "reg_capital",
                        "min_valu": 0,
                    }
                ]
            },
            "quality.expectations.0.min_valu",
            "extra fields not permitted",
            id="arg",
        ),
        pytest.param(
            {
                "expectations": [
                    {
                        "expectation": "expect_column_values_to_be_between",
                        "column": "reg_capital",
                        "min_value": "abc",
                    }
                ]
            },
            "quality.expectations.0.min_value",
            "not a valid",
            id="arg-type",
        ),
        pytest.param(
            {
                "expectations": [
                    {
                        "expectation": "expect_column_values_to_be_between",
                        "column": "nope",
                        "min_value": 0,
                    }
                ]
            },
            "quality.expectations.0.column",
            "not a field",
            id="column",
        ),
        pytest.param(
            {
                "expectations": [
                    {"expectation": "expect_table_row_count_to_be_between", "min_value": 1}
                ]
            },
            "quality.expectations.0.expectation",
            "row-level",
            id="not-map",
        ),
        pytest.param(
            {
                "expectations": [
                    {
                        "expectation": "expect_column_values_to_not_be_null",
                        "column": "uscc",
                        "dimension": "美观性",
                    }
                ]
            },
            "quality.expectations.0.dimension",
            "unknown dimension",
            id="dimension",
        ),
        pytest.param(
            {"fields": {"nope": {"strict": True}}}, "quality.fields.nope", "not a field", id="field"
        ),
        pytest.param(
            {"fields": {"uscc": {"stritc": True}}},
            "quality.fields.uscc.stritc",
            "unknown key",
            id="field-option",
        ),
        pytest.param(
            {"consistency": [{"check": "not_after", "column": "uscc"}]},
            "quality.consistency.0.other",
            "needs other",
            id="consistency",
        ),
    ],
)
def test_bad_quality_section_fails_at_load_naming_the_key(quality, key, match):
    with pytest.raises(ContractError, match=match) as info:
        make_contract(quality={"min_pass_rate": 0.5, **quality})
    assert info.value.key == key


def test_load_contract_names_file_and_key(tmp_path):
    text = (CONTRACTS_DIR / "enterprise_registry.yaml").read_text(encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("min_value: 0}", "min_valu: 0}"), encoding="utf-8")
    with pytest.raises(ContractError, match=r"bad\.yaml: quality\.expectations\.0\.min_valu"):
        load_contract(bad)


def test_demo_contract_suite_lists_builtin_and_steward_expectations():
    contract = load_contract(CONTRACTS_DIR / "enterprise_registry.yaml")
    check_contract(contract)
    spec = quality_spec(contract)
    assert spec.min_pass_rate == 0.95 and len(spec.expectations) == 1
    suite = build_suite(contract)
    types = [e.expectation_type for e in suite.expectations]
    rules = [e.meta["govdx_rule"] for e in suite.expectations]
    assert suite.name == "SCJG-0001"
    assert types[-1] == "expect_column_values_to_be_between"
    assert set(types[:-1]) == {"expect_column_values_to_pass_govdx_check"}
    for rule in (
        "uscc.required",
        "uscc.uscc.check_char",
        "uscc.uscc.org_code",
        "legal_rep_id.resident_id.check_char",
        "legal_rep_id.resident_id.lower_x",
        "region_code.region_code.region_known",
        "registered_capital.amount.non_negative",
        "established_on.date.not_future",
        "uscc.primary_key.unique",
        "registered_capital.gx.0.expect_column_values_to_be_between",
    ):
        assert rule in rules
    severities = {e.meta["govdx_rule"]: e.meta["severity"] for e in suite.expectations}
    assert severities["legal_rep_id.resident_id.lower_x"] == "finding"
    assert severities["region_code.region_code.region_known"] == "finding"
    assert severities["uscc.uscc.check_char"] == "reject"


def test_strict_makes_unknown_region_a_rejection():
    contract = make_contract(quality={"min_pass_rate": 0.5, "strict": True})
    suite = build_suite(contract)
    severities = {e.meta["govdx_rule"]: e.meta["severity"] for e in suite.expectations}
    assert severities["uscc.uscc.region_known"] == "reject"
    assert severities["legal_rep_id.resident_id.region_known"] == "reject"
