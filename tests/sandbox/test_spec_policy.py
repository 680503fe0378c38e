"""Job specs (errors name the key) and the policy matrix: share type × grade × computation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from sandbox_testdata import tax_contract

from govdx import ContractError, load_contract
from sandbox import (
    JobSpecError,
    SandboxPolicy,
    Usage,
    evaluate_policy,
    load_job_spec,
    parse_job_spec,
    sandbox_policy,
)

CONTRACTS_DIR = Path(__file__).resolve().parents[2] / "govdx" / "demo" / "contracts" / "credit"
BASE = {"purpose": "信贷审批前核验", "legal_basis": "企业授权书 2024-001", "dataset": "SWJ-T001"}
PSI = {"name": "psi", "params": {"column": "taxpayer_id", "max_items": 500}}
AGG = {"name": "aggregate", "params": {"group_by": ["district"], "metrics": [{"op": "count"}]}}


def spec(comp=AGG, **kw):
    inputs = {"request": "/tmp/r.bin"} if comp["name"] == "psi" else {}
    return parse_job_spec({**BASE, "computation": comp, "inputs": inputs, **kw})


@dataclass
class U:
    name: str = "bank"
    role: str = "requester"
    department_code: str | None = "ICBC"


# --- spec -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "key", "msg"),
    [
        pytest.param(
            {
                **BASE,
                "computation": {"name": "psi", "params": {"column": "x", "max_items": 0}},
                "inputs": {"request": "r"},
            },
            "computation.params.max_items",
            "greater than 0",
            id="max-items",
        ),
        pytest.param(
            {
                **BASE,
                "computation": {
                    "name": "psi",
                    "params": {"column": "x", "max_items": 5, "colour": 1},
                },
                "inputs": {"request": "r"},
            },
            "computation.params.colour",
            "unknown key",
            id="extra-param",
        ),
        pytest.param(
            {
                **BASE,
                "computation": {"name": "psi", "params": {"max_items": 5}},
                "inputs": {"request": "r"},
            },
            "computation.params.column",
            "required key",
            id="missing-param",
        ),
        pytest.param(
            {**BASE, "computation": {"name": "psi", "params": {"column": "x", "max_items": 5}}},
            "inputs.request",
            "needs input",
            id="missing-input",
        ),
        pytest.param(
            {**BASE, "computation": {"name": "nope"}},
            "computation.name",
            "unknown computation",
            id="unknown-computation",
        ),
        pytest.param(
            {**BASE, "purpose": "x", "computation": AGG},
            "purpose",
            "at least 4",
            id="short-purpose",
        ),
        pytest.param(
            {**BASE, "version": -1, "computation": AGG}, "version", None, id="negative-version"
        ),
        pytest.param(
            {k: v for k, v in BASE.items() if k != "legal_basis"} | {"computation": AGG},
            "legal_basis",
            "required key",
            id="no-legal-basis",
        ),
        pytest.param(
            {**BASE, "computation": AGG, "owner": "me"}, "owner", "unknown key", id="extra-top"
        ),
        pytest.param(
            {**BASE, "computation": {"name": "aggregate", "params": {"metrics": [{"op": "max"}]}}},
            "computation.params.metrics.0.op",
            None,
            id="max-not-offered",
        ),
    ],
)
def test_spec_errors_name_the_key(data, key, msg):
    with pytest.raises(JobSpecError) as info:
        parse_job_spec(data, path="job.yaml")
    assert info.value.key == key
    assert str(info.value).startswith(f"job.yaml: {key}: ")
    if msg:
        assert msg in str(info.value)


def test_load_yaml_resolves_inputs(tmp_path: Path):
    (tmp_path / "job.yaml").write_text(
        "purpose: 核验纳税记录\nlegal_basis: 授权书\ndataset: SWJ-0001\nversion: 3\n"
        "computation: {name: psi, params: {column: taxpayer_id, max_items: 10}}\n"
        "inputs: {request: req.bin}\n",
        encoding="utf-8",
    )
    s = load_job_spec(tmp_path / "job.yaml")
    assert s.version == 3
    assert s.inputs == {"request": str(tmp_path / "req.bin")}
    assert s.computation.params == {
        "column": "taxpayer_id",
        "max_items": 10,
        "reveal": False,
        "fpr": 1e-9,
    }


def test_load_bad_yaml(tmp_path: Path):
    (tmp_path / "j.json").write_text("{nope", encoding="utf-8")
    with pytest.raises(JobSpecError, match="not valid JSON"):
        load_job_spec(tmp_path / "j.json")
    with pytest.raises(JobSpecError, match="not found"):
        load_job_spec(tmp_path / "missing.yaml")


# --- SandboxPolicy ------------------------------------------------------------------------------
def test_defaults_are_safe():
    p = sandbox_policy(tax_contract())
    assert p == SandboxPolicy()
    assert (p.allowed_computations, p.psi_reveal_allowed, p.min_group_size_k) == (
        ["psi"],
        False,
        10,
    )


def test_bad_sandbox_block_names_the_key():
    with pytest.raises(ContractError, match=r"sandbox\.min_group_size_k"):
        sandbox_policy(tax_contract(sandbox={"min_group_size_k": 1}))
    with pytest.raises(ContractError, match=r"sandbox\.colour: unknown key"):
        sandbox_policy(tax_contract(sandbox={"colour": 1}))


def test_demo_tax_contract_block():
    p = sandbox_policy(load_contract(CONTRACTS_DIR / "tax_payment.yaml"))
    assert p.allowed_computations == ["psi", "he_sum", "fl_train"]
    assert p.psi_columns == ["taxpayer_id"] and p.sum_columns == ["tax_paid"]
    assert p.psi_max_items == 100_000 and p.psi_reveal_allowed is False


# --- the matrix ---------------------------------------------------------------------------------
OPEN = {"allowed_computations": ["psi", "aggregate"]}


@pytest.mark.parametrize(
    ("share", "grade", "comp", "expect"),
    [
        ("none", "general", AGG, "refused"),
        ("none", "important", PSI, "refused"),
        ("conditional", "general", AGG, (1, False, False)),
        ("conditional", "general", PSI, (1, False, False)),
        ("conditional", "important", AGG, (2, True, False)),
        ("conditional", "core", PSI, (2, True, False)),
        ("unconditional", "general", AGG, (0, False, True)),
        ("unconditional", "general", PSI, (1, False, False)),
        ("unconditional", "important", AGG, (2, True, False)),
        ("unconditional", "core", PSI, (2, True, False)),
    ],
)
def test_policy_matrix(share, grade, comp, expect):
    c = tax_contract(share=share, tax_grade=grade, sandbox=OPEN)
    d = evaluate_policy(spec(comp), c, U())
    if expect == "refused":
        assert not d.allowed
        assert any("不予共享" in r for r in d.reasons)
        return
    assert d.allowed, d.reasons
    assert (d.approvals_required, d.reviewer_required, d.auto_approve) == expect
    assert d.owner_department == "SWJ" and d.owner is False


def test_sensitive_pi_field_needs_two_people():
    c = tax_contract(share="unconditional", tax_grade="general", sandbox=OPEN)
    data = c.model_dump(mode="json")
    data["fields"].append({"name": "legal_rep_id", "element": "resident_id", "pi": "sensitive"})
    from govdx import Contract

    d = evaluate_policy(spec(AGG), Contract.from_dict(data), U())
    assert (d.approvals_required, d.reviewer_required, d.auto_approve) == (2, True, False)


@pytest.mark.parametrize(
    ("comp", "sandbox", "fragment"),
    [
        (AGG, None, "'aggregate' is not allowed"),
        (
            {"name": "psi", "params": {"column": "taxpayer_id", "max_items": 100_001}},
            None,
            "exceeds the cap of 100000",
        ),
        (
            {"name": "psi", "params": {"column": "taxpayer_id", "max_items": 10, "reveal": True}},
            None,
            "仅可返回交集基数",
        ),
        (
            {"name": "psi", "params": {"column": "district", "max_items": 10}},
            None,
            "PSI is not allowed on column 'district'",
        ),
        (
            {"name": "psi", "params": {"column": "nope", "max_items": 10}},
            None,
            "has no field 'nope'",
        ),
        (
            {
                "name": "aggregate",
                "params": {"group_by": ["taxpayer_id"], "metrics": [{"op": "count"}]},
            },
            OPEN,
            "may not group by 'taxpayer_id'",
        ),
        (
            {"name": "aggregate", "params": {"metrics": [{"op": "sum", "column": "district"}]}},
            OPEN,
            "needs a numeric column",
        ),
    ],
)
def test_refusals_name_the_rule(comp, sandbox, fragment):
    d = evaluate_policy(spec(comp), tax_contract(sandbox=sandbox), U())
    assert not d.allowed
    assert any(fragment in r for r in d.reasons), d.reasons


def test_quotas():
    c = tax_contract(
        sandbox={"psi_max_items": 1000, "psi_items_per_day": 1200, "quota_jobs_per_day": 3}
    )
    assert evaluate_policy(spec(PSI), c, U(), usage=Usage(jobs=2, psi_items=700)).allowed
    d = evaluate_policy(spec(PSI), c, U(), usage=Usage(jobs=2, psi_items=701))
    assert [r for r in d.reasons if "psi_items_per_day = 1200" in r]
    d = evaluate_policy(spec(PSI), c, U(), usage=Usage(jobs=3))
    assert [r for r in d.reasons if "quota_jobs_per_day = 3" in r]


def test_roles_that_may_not_submit():
    d = evaluate_policy(spec(PSI), tax_contract(), U(role="reviewer"))
    assert not d.allowed and "may not submit" in d.reasons[0]


def test_owner_flag():
    d = evaluate_policy(
        spec(PSI), tax_contract(), U(name="s", role="steward", department_code="SWJ")
    )
    assert d.allowed and d.owner
