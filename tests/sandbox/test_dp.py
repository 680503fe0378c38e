"""dp_query: refusals, exact privacy loss from OpenDP's map, contribution bounding and clamping
on crafted data, public group domains, the released document, the ledger hooks and an end-to-end
run through the sandbox worker."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sandbox_testdata import publish_dataset
from typer.testing import CliRunner

from govdx import Contract
from sandbox import (
    BudgetExceeded,
    DpQuery,
    DpQueryComputation,
    DpQueryParams,
    JobSpecError,
    PolicyRefused,
    budget_report,
    parse_job_spec,
)
from sandbox._ledger import budget_status

DP = {
    "epsilon_cap": 1,
    "per_query_epsilon_max": "1/2",
    "max_contributions": 2,
    "bounds": {"wage": [0, 100]},
    "public_domains": {"district": ["a", "b", "c"], "emp_region": ["440305", "110101"]},
    "derived": {"emp_region": {"column": "employer", "start": 2, "length": 6}},
}


def si_contract(*, dp: dict[str, Any] | None = None, unit: str | None = "pid", **kw) -> Contract:
    data: dict[str, Any] = {
        "code": "RSJ-T001",
        "name": "si_test",
        "title": "参保(测试)",
        "department": {"code": "RSJ", "name": "人力资源和社会保障局"},
        "source": {"path": "x.csv", "format": "csv"},
        "share": {"type": "conditional", "conditions": "统计"},
        "fields": [
            {"name": "pid", "element": "resident_id", "grade": "important", "pi": "sensitive"},
            {"name": "district"},
            {"name": "employer", "element": "uscc"},
            {"name": "wage", "type": "decimal", "precision": 18, "scale": 2},
            {"name": "salary_secret", "type": "integer", "grade": "important"},
        ],
        "sandbox": {
            "allowed_computations": ["dp_query"],
            "quota_jobs_per_day": 50,
            "time_limit_seconds": 60,
            **({"dp": dp} if dp is not None else {}),
        },
        **kw,
    }
    if unit is not None:
        data["privacy_unit"] = unit
    return Contract.from_dict(data)


def crafted() -> pa.Table:
    """p1 has 5 rows (3 in a, 2 in b), p2 one row in b, p3 one row outside the domain (z),
    p4 one row in c with a NULL wage; wages include out-of-bounds values."""
    return pa.table(
        {
            "pid": ["p1", "p1", "p1", "p1", "p1", "p2", "p3", "p4"],
            "district": ["a", "a", "a", "b", "b", "b", "z", "c"],
            "employer": ["91440305MA000001"] * 8,
            "wage": pa.array(
                [
                    Decimal(x) if x is not None else None
                    for x in ["500", "-5", "50.4", "60", "70", "10", "7", None]
                ],
                pa.decimal128(18, 2),
            ),
            "salary_secret": [1] * 8,
        }
    )


def q(stat: str = "count", **kw: Any) -> DpQuery:
    return DpQuery.build(
        DpQueryParams(statistic=stat, epsilon=kw.pop("epsilon", "1/2"), **kw), si_contract(dp=DP)
    )


# --- refusals --------------------------------------------------------------------------------
def test_dataset_without_privacy_unit_is_refused():
    c = si_contract(dp=DP, unit=None)
    reasons = DpQuery.reasons(DpQueryParams(statistic="count", epsilon="1/2"), c, None)
    assert reasons == [
        "dataset RSJ-T001 declares no privacy_unit (未声明隐私单位): DP queries need the person "
        "or enterprise whose contribution is bounded; refused"
    ]


def test_dataset_without_dp_block_is_refused():
    reasons = DpQuery.reasons(DpQueryParams(statistic="count", epsilon=1), si_contract(), None)
    assert reasons == [
        "dataset RSJ-T001 has no sandbox.dp block (未配置差分隐私): dp_query refused"
    ]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        pytest.param(
            {"epsilon": "3/4"}, "above the per-query maximum 1/2", id="eps-over-query-max"
        ),
        pytest.param({"epsilon": "1/2", "delta": "1/1000"}, "δ must be 0", id="delta"),
        pytest.param(
            {"epsilon": "1/2", "group_by": ["pid"]}, "may not group by 'pid'", id="gb-unit"
        ),
        pytest.param(
            {"epsilon": "1/2", "group_by": ["employer"]},
            "may not group by 'employer'",
            id="gb-identifier",
        ),
        pytest.param(
            {"epsilon": "1/2", "group_by": ["salary_secret"]},
            "may not group by 'salary_secret'",
            id="gb-sensitive",
        ),
        pytest.param(
            {"epsilon": "1/2", "group_by": ["wage"]}, "no declared public domain", id="gb-no-domain"
        ),
        pytest.param(
            {"epsilon": "1/2", "filters": [{"column": "pid", "op": "eq", "value": "p1"}]},
            "may not filter on 'pid'",
            id="filter-unit",
        ),
        pytest.param(
            {"epsilon": "1/2", "filters": [{"column": "salary_secret", "op": "eq", "value": 1}]},
            "may not filter on 'salary_secret'",
            id="filter-protected",
        ),
    ],
)
def test_bad_queries_are_refused(params, fragment):
    reasons = DpQuery.reasons(DpQueryParams(statistic="count", **params), si_contract(dp=DP), None)
    assert any(fragment in r for r in reasons), reasons


def test_measured_column_needs_bounds():
    dp = {**DP, "bounds": {}}
    reasons = DpQuery.reasons(
        DpQueryParams(statistic="sum", column="wage", epsilon="1/2"), si_contract(dp=dp), None
    )
    assert reasons == [
        "computation.params.column: 'wage' has no clamp bounds (sandbox.dp.bounds); refused"
    ]


@pytest.mark.parametrize("eps", [0, -1, "nan", float("nan"), "inf", "x"])
def test_epsilon_not_positive_finite_is_refused_at_the_door(eps):
    with pytest.raises(JobSpecError, match=r"computation\.params\.epsilon"):
        parse_job_spec(
            {
                "purpose": "统计测试用途",
                "legal_basis": "测试",
                "dataset": "RSJ-T001",
                "computation": {
                    "name": "dp_query",
                    "params": {"statistic": "count", "epsilon": eps},
                },
            }
        )


def test_bad_dp_block_names_the_key():
    from govdx._errors import ContractError

    # refused when the contract is loaded (Contract.from_dict) ...
    with pytest.raises(ContractError, match=r"sandbox\.dp\.max_contributions"):
        si_contract(dp={**DP, "max_contributions": 0})
    # ... and by the build, for a contract that skipped the load check
    good = si_contract(dp=DP)
    bad = good.model_copy(
        update={"sandbox": {**good.sandbox, "dp": {**DP, "max_contributions": 0}}}
    )
    with pytest.raises(PolicyRefused, match=r"sandbox\.dp\.max_contributions"):
        DpQuery.build(DpQueryParams(statistic="count", epsilon=1), bad)


# --- privacy loss without data ---------------------------------------------------------------
def test_count_loss_is_exact():
    query = q("count", group_by=["district"])
    assert query.privacy_loss() == (Fraction(1, 2), Fraction(0))
    assert query.parts[0].sensitivity == 2  # m
    assert query.map_losses() == {"count": 0.5}
    assert query.parts[0].scale == 4.0


def test_sum_sensitivity_is_contributions_times_bound():
    query = q("sum", column="wage")
    assert query.parts[0].sensitivity == 2 * 100
    assert query.map_losses() == {"sum": 0.5}
    assert query.parts[0].scale == 400.0


def test_mean_splits_epsilon_exactly():
    query = q("mean", column="wage", epsilon="1/3")
    assert [p.epsilon for p in query.parts] == [Fraction(1, 6), Fraction(1, 6)]
    assert query.privacy_loss()[0] == Fraction(1, 3)
    losses = query.map_losses()
    assert Fraction(losses["sum"]) <= Fraction(1, 6) and Fraction(losses["count"]) <= Fraction(1, 6)


# --- bounding, clamping, domains on crafted data ---------------------------------------------
def test_contribution_bound_and_domain_on_crafted_rows():
    agg = q("count", group_by=["district"]).aggregate(crafted())
    # p1 keeps 2 of its 5 rows; p2 1 row in b; p3 outside the domain; p4 in c
    assert int(agg["count"].sum()) == 2 + 1 + 1
    assert agg["count"][2] == 1  # c
    assert agg["count"][0] + agg["count"][1] == 3


def test_truncation_is_stable_when_another_unit_is_added():
    base = q("sum", column="wage", group_by=["district"])
    before = base.aggregate(crafted())
    extra = pa.table(
        {
            "pid": ["p9"],
            "district": ["a"],
            "employer": ["91440305MA000001"],
            "wage": pa.array([Decimal("30")], pa.decimal128(18, 2)),
            "salary_secret": [1],
        }
    )
    after = base.aggregate(pa.concat_tables([crafted(), extra]))
    assert (after["count"] - before["count"]).tolist() == [1, 0, 0]
    assert (after["sum"] - before["sum"]).tolist() == [30, 0, 0]


def test_values_are_clamped_to_bounds():
    one_each = DpQuery.build(
        DpQueryParams(statistic="sum", column="wage", epsilon="1/2"),
        si_contract(dp={**DP, "max_contributions": 10}),
    )
    agg = one_each.aggregate(crafted())
    # 500→100, -5→0, 50.4→50, 60, 70, 10, 7 (p3: no group-by, so kept); NULL dropped
    assert agg["sum"].tolist() == [100 + 0 + 50 + 60 + 70 + 10 + 7]
    assert agg["count"].tolist() == [7]


def test_derived_group_key_uses_the_public_domain():
    agg = q("count", group_by=["emp_region"]).aggregate(crafted())
    # every row's employer is in 440305: p1 2 (bounded) + p2 + p3 + p4; 110101 has no rows
    assert agg["count"].tolist() == [5, 0]


def test_bounding_is_per_version_and_applies_before_filters():
    """Bounding keeps the first m rows of each unit in storage order, whatever the query: p1
    keeps its two 'a' rows, so a filter on 'b' sees only p2 (changed deliberately: before the
    bounding cache, filters ran first and p1's two 'b' rows were kept for this query)."""
    query = q("count", filters=[{"column": "district", "op": "in", "value": ["b"]}])
    assert query.aggregate(crafted())["count"].tolist() == [1]
    on_a = q("count", filters=[{"column": "district", "op": "eq", "value": "a"}])
    assert on_a.aggregate(crafted())["count"].tolist() == [2]  # p1's first two rows
    single = q("count", filters=[{"column": "district", "op": "eq", "value": "c"}])
    assert single.aggregate(crafted())["count"].tolist() == [1]  # isolates p4: still noisy


def test_histogram_counts_cells_of_group_and_bin():
    query = DpQuery.build(
        DpQueryParams(statistic="histogram", column="wage", bins=[0, 50, 101], epsilon="1/2"),
        si_contract(dp={**DP, "max_contributions": 10}),
    )
    assert query.aggregate(crafted())["count"].tolist() == [3, 4]  # 0,10,7 | 100,50,60,70


# --- the released document -------------------------------------------------------------------
def test_release_covers_the_whole_domain_and_carries_noise_facts():
    doc, table = q("count", group_by=["district"]).release(crafted())
    assert doc["columns"] == ["district", "value", "ci_low", "ci_high"]
    assert [r[0] for r in doc["rows"]] == ["a", "b", "c"]
    assert doc["epsilon"] == "1/2" and doc["delta"] == "0"
    assert doc["mechanism"] == "discrete_laplace"
    n = doc["noise"][0]
    assert (n["sensitivity"], n["scale"], n["epsilon_map"]) == (2, 4.0, 0.5)
    assert n["ci_halfwidth"] == pytest.approx(12.45176, abs=1e-4)
    for _, value, lo, hi in doc["rows"]:
        assert lo == pytest.approx(value - n["ci_halfwidth"], abs=1e-5)
        assert hi == pytest.approx(value + n["ci_halfwidth"], abs=1e-5)
    assert table.num_rows == 3


def test_mean_and_quantile_stay_within_bounds():
    doc, _ = q("mean", column="wage", group_by=["district"]).release(crafted())
    for _, value, lo, hi in doc["rows"]:
        assert 0 <= lo <= value <= hi <= 100 or (lo <= hi and 0 <= value <= 100)
    doc, _ = q("quantile", column="wage").release(crafted())
    assert doc["rows"][0][0] in range(0, 101) and doc["rows"][0][1] is None


# --- ledger hooks and the end-to-end run -----------------------------------------------------
def _spec(eps: str = "1/2", **params: Any):
    return parse_job_spec(
        {
            "purpose": "分区参保人数统计",
            "legal_basis": "测试协议",
            "dataset": "RSJ-T001",
            "computation": {
                "name": "dp_query",
                "params": {
                    "statistic": "count",
                    "group_by": ["district"],
                    "epsilon": eps,
                    **params,
                },
            },
        }
    )


def test_hooks_reserve_draw_spend_and_refuse_over_cap(box):
    contract = si_contract(dp=DP)
    params = _spec().params
    with box.factory.begin() as s:
        DpQueryComputation.on_submit(
            s, job_id="j1", requester="bank", contract=contract, params=params
        )
        DpQueryComputation.on_submit(
            s, job_id="j2", requester="bank", contract=contract, params=params
        )
    with box.factory.begin() as s, pytest.raises(BudgetExceeded, match="remaining ε = 0"):
        DpQueryComputation.on_submit(
            s, job_id="j3", requester="bank", contract=contract, params=params
        )
    with box.factory.begin() as s:
        assert DpQueryComputation.on_abandon(s, job_id="j2").status == "returned"
        assert (
            DpQueryComputation.on_run_start(
                s, job_id="j1", requester="bank", contract=contract, params=params
            ).status
            == "drawn"
        )
    with box.factory.begin() as s:  # a re-run of j1 (its first run failed) pays again
        entry = DpQueryComputation.on_run_start(
            s, job_id="j1", requester="bank", contract=contract, params=params
        )
        assert (entry.attempt, entry.status) == (2, "drawn")
        assert DpQueryComputation.on_release(s, job_id="j1").attempt == 2
    cap = Fraction(DP["epsilon_cap"])
    with box.factory() as s:  # the failed first attempt counts for good, apart from "held"
        st = budget_status(
            s, requester="bank", dataset=contract.code, epsilon_cap=cap, delta_cap=Fraction(0)
        )
    assert st.entries == {"returned": 1, "forfeited": 1, "spent": 1}
    assert (st.epsilon_spent, st.epsilon_forfeited, st.epsilon_held) == (cap / 2, cap / 2, 0)


def test_end_to_end_release_through_the_worker(box, settings):
    rng = np.random.default_rng(3)
    n = 400
    table = pa.table(
        {
            "pid": [f"p{i % 300}" for i in range(n)],
            "district": pa.array(np.array(["a", "b", "c", "z"])[rng.integers(0, 4, n)]),
            "employer": ["91440305MA000001"] * n,
            "wage": pa.array(
                [Decimal(int(x)) for x in rng.integers(0, 200, n)], pa.decimal128(18, 2)
            ),
            "salary_secret": pa.array(rng.integers(0, 9, n)),
        }
    )
    publish_dataset(settings, si_contract(dp=DP), table)
    job = box.submit(_spec("1/2"), user="bank")
    assert job["state"] == "awaiting_approval"
    box.approve(job["id"], user="rev1")
    box.add_user("rsj_steward", "steward", "RSJ")
    box.approve(job["id"], user="rsj_steward")
    ran = box.run(job["id"])
    assert ran["state"] == "succeeded", ran["reason"]
    assert ran["result"]["summary"]["epsilon"] == "1/2"
    doc = json.loads(box.result(job["id"], user="bank").data)
    assert [r[0] for r in doc["rows"]] == ["a", "b", "c"]
    assert doc["noise"][0]["scale"] == 4.0


def _bank_reserved_a_third(box, settings) -> None:
    """The DP dataset published and job j1 of 'bank' holding ε = 1/3 of its budget."""
    publish_dataset(settings, si_contract(dp=DP), crafted())
    with box.factory.begin() as s:
        DpQueryComputation.on_submit(
            s,
            job_id="j1",
            requester="bank",
            contract=si_contract(dp=DP),
            params=_spec("1/3").params,
        )


def test_budget_report_and_cli(box, settings, monkeypatch):
    _bank_reserved_a_third(box, settings)
    [row] = budget_report(box.factory, requester="bank")
    assert (row["epsilon_cap"], row["epsilon_held"], row["epsilon_remaining"]) == (
        "1",
        "1/3",
        "2/3",
    )
    import typer

    from govdx.cli._sandbox import sandbox_app

    app = typer.Typer()
    app.add_typer(sandbox_app, name="sandbox")
    res = CliRunner().invoke(
        app, ["sandbox", "budget", "--requester", "bank", "--dataset", "RSJ-T001", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)[0]["epsilon_remaining"] == "2/3"


def _sandbox_cli() -> Any:
    import typer

    from govdx.cli._sandbox import sandbox_app

    app = typer.Typer()
    app.add_typer(sandbox_app, name="sandbox")
    return app


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        pytest.param(
            ["--requester", "nobody"], "UserError", "unknown user 'nobody' (用户不存在)", id="user"
        ),
        pytest.param(
            ["--dataset", "NOPE-0001"],
            "DatasetNotFound",
            "catalog entry 'NOPE-0001' not found",
            id="dataset",
        ),
        pytest.param(
            ["--requester", "bank", "--dataset", "NOPE-0001"],
            "DatasetNotFound",
            "catalog entry 'NOPE-0001' not found",
            id="pair",
        ),
    ],
)
def test_budget_cli_refuses_unknown_requester_or_dataset(box, args, error, message):
    app = _sandbox_cli()
    res = CliRunner().invoke(app, ["sandbox", "budget", *args])
    assert res.exit_code == 1 and "error:" in res.output and message in res.output, res.output
    assert "ε cap" not in res.output  # no (empty) table
    res = CliRunner().invoke(app, ["sandbox", "budget", *args, "--json"])
    assert res.exit_code == 1
    doc = json.loads(res.output)
    assert doc["error"] == error and message in doc["message"]


def test_budget_report_refuses_unknown_names_and_is_empty_for_known_ones(box, settings):
    from catalog import DatasetNotFound
    from sandbox import UserError

    with pytest.raises(UserError, match="unknown user 'nobody'"):
        budget_report(box.factory, requester="nobody")
    with pytest.raises(DatasetNotFound, match="NOPE-0001"):
        budget_report(box.factory, dataset="NOPE-0001")
    assert budget_report(box.factory, requester="bank2") == []
    assert budget_report(box.factory, dataset="SWJ-T001") == []


def test_budget_cli_notes_a_known_requester_without_entries(box, settings):
    _bank_reserved_a_third(box, settings)
    app = _sandbox_cli()
    for args, note in [
        (["--requester", "bank2"], "no DP budget used yet by bank2 (尚未使用差分隐私预算)"),
        (["--dataset", "SWJ-T001"], "no DP budget used yet on SWJ-T001 (尚未使用差分隐私预算)"),
    ]:
        res = CliRunner().invoke(app, ["sandbox", "budget", *args])
        assert res.exit_code == 0 and res.output.strip() == note, res.output
        res = CliRunner().invoke(app, ["sandbox", "budget", *args, "--json"])
        assert res.exit_code == 0 and json.loads(res.output) == []
    # a requester with entries still gets its table
    res = CliRunner().invoke(app, ["sandbox", "budget", "--requester", "bank"])
    assert res.exit_code == 0 and "ε cap" in res.output and "RSJ-T001" in res.output
    assert "2/3" in res.output and res.output.splitlines()[0].count("┳") == 7  # 8 columns
    # j1 runs, fails and is cancelled: its ε is forfeited (shown apart), not held
    with box.factory.begin() as s:
        DpQueryComputation.on_run_start(
            s, job_id="j1", requester="bank", contract=si_contract(dp=DP), params=_spec().params
        )
        DpQueryComputation.on_abandon(s, job_id="j1")
    res = CliRunner().invoke(app, ["sandbox", "budget", "--requester", "bank", "--json"])
    [row] = json.loads(res.output)
    assert (row["epsilon_held"], row["epsilon_forfeited"], row["epsilon_remaining"]) == (
        "0",
        "1/3",
        "2/3",
    )
    res = CliRunner().invoke(app, ["sandbox", "budget", "--requester", "bank"])
    assert res.exit_code == 0 and res.output.splitlines()[0].count("┳") == 8  # 9 columns now


def test_demo_step_on_the_social_insurance_contract(settings):
    from govdx import load_contract
    from govdx.demo._generate import CONTRACTS_DIR
    from sandbox import demo_dp_step

    contract = load_contract(CONTRACTS_DIR / "social_insurance.yaml")
    n = 300
    ids = [f"44030519900101{i:04d}" for i in range(n)]
    regions = ["440305", "110101", "999999"]  # the last is outside the public domain
    table = pa.table(
        {
            "resident_id": ids,
            "person_name": ["张三"] * n,
            "employer_uscc": [f"91{regions[i % 3]}MA5D{i:06d}" for i in range(n)],
            "contribution_base": pa.array([Decimal(6500)] * n, pa.decimal128(18, 2)),
            "months_paid": pa.array([12] * n, pa.int64()),
        }
    )
    publish_dataset(settings, contract, table)
    out = demo_dp_step(settings, epsilon="1/2")
    assert out["epsilon"] == "1/2" and out["mechanism"] == "discrete_laplace"
    assert out["scale"] == 2.0  # m = 1, ε = 1/2
    assert out["districts"] == 2846  # every county code in use, not the data's
    # the cells shown are the first codes (fixed), not the largest noisy counts
    codes = [r[0] for r in out["sample_districts"]]
    assert codes == sorted(codes) and codes[0] == "110101" and len(codes) == 5
    # 110101 has 100 true rows; noise scale 2 (95 % half-width ≈ 6); its neighbours are empty
    assert abs(out["sample_districts"][0][1] - 100) <= 40
    assert all(abs(r[1]) <= 40 for r in out["sample_districts"][1:])


def test_service_charges_the_ledger_and_refuses_past_the_cap(box, settings):
    """Through Sandbox itself: submit reserves ε, release spends it, cancel returns it, and a
    submission past the cap is refused before any job exists (remaining budget named)."""
    publish_dataset(settings, si_contract(dp=DP), crafted())
    cap = Fraction(DP["epsilon_cap"])
    per = cap / 2
    first = box.submit(_spec(str(per)), user="bank")
    second = box.submit(_spec(str(per)), user="bank")
    with pytest.raises(BudgetExceeded, match="remaining ε = 0"):
        box.submit(_spec(str(per)), user="bank")
    box.cancel(second["id"], user="bank")  # never ran: its reservation comes back
    third = box.submit(_spec(str(per)), user="bank")
    [row] = budget_report(box.factory, requester="bank")
    assert Fraction(row["epsilon_held"]) == cap
    assert {first["id"], third["id"]} <= {j["id"] for j in box.list_jobs(user="bank")}


# --- several statistics in one job -----------------------------------------------------------
def test_count_and_sum_in_one_job_split_epsilon_exactly():
    query = q(["count", "sum"], column="wage", group_by=["district"], epsilon="1/3")
    assert [(p.name, p.epsilon) for p in query.parts] == [
        ("sum", Fraction(1, 6)),
        ("count", Fraction(1, 6)),
    ]
    assert query.privacy_loss() == (Fraction(1, 3), Fraction(0))
    assert query.params.statistic_name == "count+sum"
    assert [p.sensitivity for p in query.parts] == [2 * 100, 2]
    exact = query.aggregate(crafted())
    # p1 keeps its first two rows (a: 500→100, -5→0); p2 b 10; p3 outside; p4 NULL wage
    assert exact["count"].tolist() == [2, 1, 0] and exact["sum"].tolist() == [100, 10, 0]
    doc, table = query.release(crafted())
    assert doc["statistic"] == ["count", "sum"]
    assert doc["columns"] == [
        "district",
        *("count", "count_ci_low", "count_ci_high"),
        *("sum", "sum_ci_low", "sum_ci_high"),
    ]
    half = {n["part"]: n["ci_halfwidth"] for n in doc["noise"]}
    assert {n["ci_level"] for n in doc["noise"]} == {1 - 0.05 / 2}  # Bonferroni over 2 parts
    for row in doc["rows"]:
        assert row[2] == pytest.approx(row[1] - half["count"], abs=1e-5)
        assert row[6] == pytest.approx(row[4] + half["sum"], abs=1e-5)
    assert table.num_rows == 3


def test_count_sum_and_mean_share_the_two_noisy_vectors():
    query = q(["mean", "sum", "count"], column="wage", epsilon="1/2")
    assert query.params.statistics == ("count", "sum", "mean")
    assert [p.name for p in query.parts] == ["sum", "count"]
    assert query.privacy_loss()[0] == Fraction(1, 2)
    doc, _ = query.release(crafted())
    [row] = doc["rows"]
    assert doc["columns"][6:] == ["mean", "mean_ci_low", "mean_ci_high"]
    assert 0 <= row[6] <= 100


@pytest.mark.parametrize(
    ("statistic", "fragment"),
    [
        pytest.param(["count", "count"], "without repeats", id="repeat"),
        pytest.param([], "without repeats", id="empty"),
        pytest.param(["count", "histogram"], "statistic", id="histogram-in-list"),
    ],
)
def test_bad_statistic_lists_are_refused_at_the_door(statistic, fragment):
    with pytest.raises(JobSpecError, match=fragment):
        _spec(statistic=statistic, column="wage")


def test_statistic_list_with_sum_needs_a_bounded_column():
    reasons = DpQuery.reasons(
        DpQueryParams(statistic=["count", "sum"], epsilon="1/2"), si_contract(dp=DP), None
    )
    assert reasons == ["computation.params.column: count+sum needs a column"]


def test_one_ledger_charge_for_a_list_of_statistics(box):
    params = _spec("1/2", statistic=["count", "sum"], column="wage").params
    with box.factory.begin() as s:
        entry = DpQueryComputation.on_submit(
            s, job_id="jm", requester="bank", contract=si_contract(dp=DP), params=params
        )
        assert (entry.statistic, entry.eps_num, entry.eps_den) == ("count+sum", "1", "2")


# --- filters on typed columns (Arrow compute) ------------------------------------------------
def test_filters_on_a_decimal_column_and_a_bad_filter_value():
    wide = {**DP, "max_contributions": 10}
    query = DpQuery.build(
        DpQueryParams(
            statistic="count", epsilon="1/2", filters=[{"column": "wage", "op": "ge", "value": 60}]
        ),
        si_contract(dp=wide),
    )
    assert query.aggregate(crafted())["count"].tolist() == [3]  # 500, 60, 70
    bad = DpQuery.build(
        DpQueryParams(
            statistic="count",
            epsilon="1/2",
            filters=[{"column": "wage", "op": "eq", "value": "abc"}],
        ),
        si_contract(dp=wide),
    )
    from sandbox import RunError

    with pytest.raises(RunError, match=r"filters\.0: .* column 'wage'"):
        bad.aggregate(crafted())


# --- public domains under a prefix -----------------------------------------------------------
def test_region_prefix_domain_is_the_citys_county_codes():
    from quality import division_codes
    from sandbox import dp_policy
    from sandbox._dp import domain_keys

    dp = dp_policy(si_contract(dp={**DP, "public_domains": {"district": "region_codes:3201"}}))
    keys = domain_keys(dp.public_domains["district"])
    in_use = division_codes().county_codes_in_use()
    assert keys == [c for c in in_use if c.startswith("3201")]
    assert len(keys) == 11 and keys[0] == "320102" and "320103" not in keys  # 白下区 retired
    assert len(domain_keys("region_codes:32")) > len(keys)
    query = DpQuery.build(
        DpQueryParams(statistic="count", group_by=["district"], epsilon="1/2"),
        si_contract(dp={**DP, "public_domains": {"district": "region_codes:3201"}}),
    )
    assert query.n_groups == 11


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        pytest.param("region_codes:9999", "no GB/T 2260 county-level code in use", id="unknown"),
        pytest.param("region_codes:32x", "is not a named domain", id="malformed"),
        pytest.param("region_codes:320", "is not a named domain", id="three-digits"),
    ],
)
def test_unknown_region_prefix_is_refused_naming_the_key(spec, fragment):
    from govdx._errors import ContractError
    from sandbox import dp_policy

    # refused when the contract is loaded, naming the column in the key ...
    with pytest.raises(ContractError, match=r"sandbox\.dp\.public_domains\.district: ") as info:
        si_contract(dp={**DP, "public_domains": {"district": spec}})
    assert info.value.key == "sandbox.dp.public_domains.district" and fragment in str(info.value)
    # ... and by dp_policy, for a contract that skipped the load check
    good = si_contract(dp=DP)
    c = good.model_copy(
        update={"sandbox": {**good.sandbox, "dp": {**DP, "public_domains": {"district": spec}}}}
    )
    with pytest.raises(ContractError, match=r"sandbox\.dp\.public_domains") as info:
        dp_policy(c)
    assert "public_domains.district" in str(info.value) and fragment in str(info.value)
