"""Federated training on Flower (sandbox._fl, sandbox._fl_apps): math, policy, partitions, and
real loopback deployments (SuperLink + 3 SuperNodes, SecAgg+) marked slow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sandbox_testdata import tax_contract

from govdx._errors import ContractError
from sandbox import FlError, FlTrain, FlTrainParams, fl_policy, partition_parties, run_federated
from sandbox._fl_apps import (
    auc_exact,
    auc_from_histograms,
    local_train,
    metrics,
    read_party_table,
    sigmoid,
    split_holdout,
)

pytestmark = pytest.mark.filterwarnings("ignore:Protobuf gencode:UserWarning")

FEATURES = ["f0", "f1", "f2"]
TRUE_W = np.array([1.5, -1.0, 0.5])


# --- model math ------------------------------------------------------------------------------
def test_auc_rank_statistic_on_known_example():
    # pairs (pos, neg): 0.9>0.1, 0.9>0.4, 0.35<0.4, 0.35>0.1 → 3 of 4
    assert auc_exact(np.array([1, 1, 0, 0]), np.array([0.9, 0.35, 0.4, 0.1])) == 0.75
    assert auc_exact(np.array([1, 0]), np.array([0.5, 0.5])) == 0.5


def test_histogram_auc_matches_rank_auc_without_ties_in_bins():
    pos = np.zeros(10, dtype=np.int64)
    neg = np.zeros(10, dtype=np.int64)
    pos[[9, 3]] = 1  # scores 0.95, 0.35
    neg[[4, 1]] = 1  # scores 0.45, 0.15
    assert auc_from_histograms(pos, neg) == 0.75


def test_metrics_exact_values():
    m = metrics(np.array([1.0, 0.0]), np.array([0.8, 0.4]))
    assert m["accuracy"] == 1.0 and m["auc"] == 1.0 and m["rows"] == 2
    assert m["log_loss"] == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)


def test_local_training_recovers_a_planted_model():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20_000, 3))
    y = (rng.random(20_000) < sigmoid(x @ TRUE_W - 0.3)).astype(float)
    w, b = local_train(x, y, np.zeros(3), 0.0, epochs=400, lr=1.0, l2=0.0)
    np.testing.assert_allclose(w, TRUE_W, atol=0.1)
    assert b == pytest.approx(-0.3, abs=0.1)


def test_holdout_split_is_seeded_and_sized():
    a = split_holdout(1000, 0.2, 5)
    assert a.sum() == 200 and np.array_equal(a, split_holdout(1000, 0.2, 5))


def test_party_with_a_different_schema_is_refused(tmp_path):
    pq.write_table(pa.table({"f0": [1.0], "label": [1.0]}), tmp_path / "party.parquet")
    with pytest.raises(ValueError, match=r"schema differs.*\['f1'\]"):
        read_party_table(str(tmp_path), ["f0", "f1"], "label")


# --- policy and params -----------------------------------------------------------------------
def _contract(fl: dict[str, Any] | None = None):
    sandbox: dict[str, Any] = {"allowed_computations": ["fl_train"]}
    if fl is not None:
        sandbox["fl"] = fl
    return tax_contract(sandbox=sandbox)


def _params(**kw: Any) -> FlTrainParams:
    base: dict[str, Any] = {
        "features": [{"column": "tax_paid", "transform": "log1p", "center": 10, "scale": 2}],
        "label": "synthetic_default",
        "partition": {"column": "district", "parties": ["福田区", "南山区", "罗湖区"]},
    }
    base.update(kw)
    return FlTrainParams.model_validate(base)


def test_fl_block_unknown_key_names_it():
    with pytest.raises(ContractError, match=r"sandbox\.fl\.bogus"):
        fl_policy(_contract({"bogus": 1}))


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        pytest.param(
            {"partition": {"column": "district", "parties": ["a", "b", "c", "d"]}},
            "4 parties, outside [3, 3]",
            id="too-many-parties",
        ),
        pytest.param({"secure_aggregation": False}, "requires SecAgg+", id="secagg-off"),
        pytest.param({"rounds": 50}, "above sandbox.fl.max_rounds = 10", id="rounds"),
        pytest.param(
            {"features": [{"column": "taxpayer_id"}]}, "is an identifier", id="identifier"
        ),
        pytest.param({"label": "nope"}, "has no field 'nope'", id="label"),
    ],
)
def test_bad_jobs_are_refused(kw, fragment):
    contract = _contract({"max_parties": 3, "max_rounds": 10})
    reasons = FlTrain.check(_params(**kw), contract, None)
    assert any(fragment in r for r in reasons), reasons


def test_two_parties_cannot_be_declared():
    with pytest.raises(ValueError, match="at least 3"):
        _params(partition={"column": "district", "parties": ["a", "b"]})


def test_good_job_passes_and_reads_only_needed_columns():
    p = _params()
    assert FlTrain.check(p, _contract(), None) == []
    assert FlTrain.columns(p, _contract()) == ["tax_paid", "district", "credit_grade"]


# --- partitions ------------------------------------------------------------------------------
def _grade_table(n: int, seed: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "city": pa.array(rng.choice(["4403", "4401", "4419", "1101"], n)),
            "credit_grade": pa.array(rng.choice(list("ABCDM"), n)),
            "tax_paid": pa.array(np.exp(rng.normal(10.5, 1.5, n))),
        }
    )


def test_partition_writes_each_party_only_its_rows(tmp_path):
    t = _grade_table(4000)
    p = _params(
        features=[
            {"column": "tax_paid", "transform": "log1p", "center": 10.5, "scale": 1.5},
            {"column": "credit_grade", "transform": "onehot", "levels": ["A", "C", "D", "M"]},
        ],
        partition={"column": "city", "parties": ["4403", "4401", "4419"]},
    )
    out = partition_parties(t, p, tmp_path, min_rows=100)
    city = np.asarray(t["city"].to_numpy(zero_copy_only=False))
    for key, info in out.items():
        got = pq.read_table(info["dir"] / "party.parquet")
        assert info["rows"] == got.num_rows == int((city == key).sum())
        assert got.column_names == [
            "tax_paid",
            "credit_grade=A",
            "credit_grade=C",
            "credit_grade=D",
            "credit_grade=M",
            "label",
        ]
    assert not (tmp_path / "party_1101").exists()


def test_party_below_minimum_rows_is_named(tmp_path):
    p = _params(partition={"column": "city", "parties": ["4403", "4401", "9999"]})
    with pytest.raises(FlError, match=r"party '9999' .* holds 0 usable rows.*minimum 100"):
        partition_parties(_grade_table(1000), p, tmp_path, min_rows=100)


# --- real loopback deployments ---------------------------------------------------------------
def _parties(root: Path, n_rows: int = 2000) -> dict[str, Path]:
    rng = np.random.default_rng(11)
    out = {}
    for i, name in enumerate(["A", "B", "C"]):
        d = root / f"party_{name}"
        d.mkdir(parents=True)
        x = rng.normal(size=(n_rows, 3)) + 0.2 * i  # slightly non-IID
        y = (rng.random(n_rows) < sigmoid(x @ TRUE_W - 0.2)).astype(float)
        pq.write_table(
            pa.table({"f0": x[:, 0], "f1": x[:, 1], "f2": x[:, 2], "label": y}),
            d / "party.parquet",
        )
        out[name] = d
    return out


def _no_leaks(pids: list[int]) -> None:
    import psutil

    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert alive == []


@pytest.mark.slow
@pytest.mark.integration
def test_federated_run_matches_central_and_never_shows_an_update(tmp_path):
    parties = _parties(tmp_path / "data")
    envs = {k: {"GOVDX_FL_OPEN_LOG": str(tmp_path / f"open_{k}.log")} for k in parties}
    seen: list[int] = []
    res = run_federated(
        parties,
        features=FEATURES,
        work_dir=tmp_path / "run",
        rounds=2,
        local_epochs=30,
        learning_rate=1.0,
        l2=0.0,
        round_timeout=30,
        time_limit=150,
        record=True,
        env_per_party=envs,
        on_started=lambda dep: seen.extend(dep.pids()),
    )
    assert res["status"] == "ok", res
    assert res["rounds"] == 2 and set(res["per_party"]) == {"A", "B", "C"}
    _no_leaks(seen)

    # each party process opened its own table and no other
    for k, d in parties.items():
        lines = (tmp_path / f"open_{k}.log").read_text().splitlines()
        assert lines and {line.split("\t")[1] for line in lines} == {str(d / "party.parquet")}

    # centralized training on the pooled training rows, evaluated on the pooled hold-out
    xs, ys, xh, yh, n_train = [], [], [], [], []
    for d in parties.values():
        x, y = read_party_table(str(d), FEATURES, "label")
        hold = split_holdout(len(y), 0.2, 0)
        xs.append(x[~hold]), ys.append(y[~hold]), xh.append(x[hold]), yh.append(y[hold])
        n_train.append(int((~hold).sum()))
    w, b = local_train(
        np.vstack(xs), np.concatenate(ys), np.zeros(3), 0.0, epochs=60, lr=1.0, l2=0.0
    )
    central = metrics(np.concatenate(yh), sigmoid(np.vstack(xh) @ w + b))
    assert abs(res["pooled"]["accuracy"] - central["accuracy"]) <= 0.02
    assert res["pooled"]["auc"] == pytest.approx(central["auc"], abs=0.01)

    # SecAgg+: the server's replies hold no party's plaintext update, yet the model is their
    # weighted mean (the sum the protocol unmasks) up to quantization
    last = {}
    for k, d in parties.items():
        ups = sorted((d / "record").glob("update_2_*.npy"))
        assert len(ups) == 1
        last[k] = np.load(ups[0])
    received = [np.load(p) for p in sorted((tmp_path / "run" / "server_record").glob("*.npy"))]
    assert received
    for arr in received:
        for up in last.values():
            for i in range(len(arr) - len(up) + 1):
                assert not np.allclose(arr[i : i + len(up)], up, atol=1e-3)
    mean = sum(n * last[k] for n, k in zip(n_train, parties, strict=True)) / sum(n_train)
    model = np.array([*res["coefficients"].values(), res["intercept"]])
    np.testing.assert_allclose(model, mean, atol=2e-3)


@pytest.mark.slow
@pytest.mark.integration
def test_killed_party_ends_the_job_with_a_reason_and_no_model(tmp_path):
    import time

    parties = _parties(tmp_path / "data", n_rows=500)
    seen: list[int] = []

    def kill_c(dep: Any) -> None:
        seen.extend(dep.pids())
        time.sleep(1.0)
        dep.kill_party("C")

    t0 = time.monotonic()
    res = run_federated(
        parties,
        features=FEATURES,
        work_dir=tmp_path / "run",
        rounds=3,
        round_timeout=4,
        time_limit=90,
        on_started=kill_c,
    )
    assert res["status"] == "failed"
    assert "参与方" in res["reason"] and "coefficients" not in res
    assert time.monotonic() - t0 < 60
    _no_leaks(seen)


@pytest.mark.slow
@pytest.mark.integration
def test_fl_train_job_runs_in_the_sandbox_and_is_released(settings):
    """submit → 双人复核 (tax_paid is important) → worker → Flower → released JSON."""
    import json
    from decimal import Decimal

    from sandbox_testdata import add_users, publish_dataset

    from govdx import Contract
    from sandbox import Sandbox, parse_job_spec

    contract = Contract.from_dict(
        {
            "code": "SWJ-F001",
            "name": "tax_fl",
            "title": "企业纳税信息(联邦测试)",
            "department": {"code": "SWJ", "name": "税务局"},
            "source": {"path": "tax.csv", "format": "csv"},
            "primary_key": ["taxpayer_id"],
            "share": {"type": "conditional", "conditions": "用于信贷审批"},
            "sandbox": {
                "allowed_computations": ["fl_train"],
                "time_limit_seconds": 120,
                "fl": {"min_party_rows": 100, "round_timeout_seconds": 30},
            },
            "fields": [
                {"name": "taxpayer_id", "title": "纳税人识别号", "element": "uscc"},
                {"name": "city", "title": "城市"},
                {"name": "credit_grade", "title": "纳税信用等级"},
                {
                    "name": "tax_paid",
                    "title": "实缴税额",
                    "type": "decimal",
                    "precision": 18,
                    "scale": 2,
                    "grade": "important",
                },
            ],
        }
    )
    rng = np.random.default_rng(4)
    n = 1200
    table = pa.table(
        {
            "taxpayer_id": pa.array([f"9144{i:014d}" for i in range(n)]),
            "city": pa.array(rng.choice(["4403", "4401", "4419"], n)),
            "credit_grade": pa.array(rng.choice(list("ABCDM"), n)),
            "tax_paid": pa.array(
                [Decimal(int(v)) / 100 for v in np.exp(rng.normal(10.5, 1.5, n)) * 100],
                pa.decimal128(18, 2),
            ),
        }
    )
    box = Sandbox(settings)
    try:
        add_users(box)
        publish_dataset(settings, contract, table)
        params = {
            "features": [
                {"column": "tax_paid", "transform": "log1p", "center": 10.5, "scale": 1.5},
                {"column": "credit_grade", "transform": "onehot", "levels": ["A", "C", "D", "M"]},
            ],
            "label": "synthetic_default",
            "partition": {"column": "city", "parties": ["4403", "4401", "4419"]},
            "rounds": 1,
            "local_epochs": 50,
            "learning_rate": 1.0,
        }
        spec = parse_job_spec(
            {
                "purpose": "违约风险联合建模",
                "legal_basis": "测试协议",
                "dataset": "SWJ-F001",
                "computation": {"name": "fl_train", "params": params},
            }
        )
        job = box.submit(spec, user="bank")
        box.approve(job["id"], user="swj_steward")
        box.approve(job["id"], user="rev1")
        ran = box.run(job["id"])
        assert ran["state"] == "succeeded", ran.get("reason")
        doc = json.loads(box.result(job["id"], user="bank").data)
    finally:
        box.close()
    assert set(doc["coefficients"]) == {
        "tax_paid",
        "credit_grade=A",
        "credit_grade=C",
        "credit_grade=D",
        "credit_grade=M",
    }
    # the planted signal: grade D raises the risk, grade A and more tax lower it
    assert doc["coefficients"]["credit_grade=D"] > 0 > doc["coefficients"]["credit_grade=A"]
    assert doc["coefficients"]["tax_paid"] < 0
    assert doc["metrics"]["pooled"]["auc"] > 0.65
    assert sum(p["rows"] for p in doc["parties"].values()) == n
