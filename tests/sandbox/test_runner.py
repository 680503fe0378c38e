"""Runs in a spawned worker: results, decryption audit, limits, kills, re-runs, leaks."""

from __future__ import annotations

import json
import os
import signal
import stat
import threading
import time
from decimal import Decimal

import pyarrow as pa
import pytest
from sandbox_testdata import AGG_POLICY, publish_dataset, tax_contract, tax_table

from pipelines._lakehouse import Lakehouse
from sandbox import Sandbox, leaked_values, parse_job_spec


def approved(box: Sandbox, comp: dict, dataset: str = "SWJ-T001") -> str:
    jid = box.submit(
        parse_job_spec(
            {
                "purpose": "测试运行作业",
                "legal_basis": "测试授权",
                "dataset": dataset,
                "computation": comp,
            }
        ),
        user="bank",
    )["id"]
    box.approve(jid, user="swj_steward")
    box.approve(jid, user="rev1")
    return jid


def test_aggregate_end_to_end(box, settings, ids):
    comp = {
        "name": "aggregate",
        "params": {
            "group_by": ["district"],
            "metrics": [{"op": "sum", "column": "tax_paid"}, {"op": "count"}],
        },
    }
    jid = approved(box, comp)
    job = box.run(jid)
    assert job["state"] == "succeeded", job["reason"]
    bundle = box.result(jid, user="bank")
    doc = json.loads(bundle.data)
    plain = tax_table(ids)
    expected = {}
    for d, v in zip(plain["district"].to_pylist(), plain["tax_paid"].to_pylist(), strict=True):
        n, s = expected.get(d, (0, 0))
        expected[d] = (n + 1, s + v)
    assert doc["columns"] == ["district", "n", "sum_tax_paid"]
    assert {r[0]: (r[1], r[2]) for r in doc["rows"]} == {
        k: (n, str(s)) for k, (n, s) in expected.items()
    }
    assert doc["suppressed_groups"] == 0
    # the protected column was decrypted, audited before plaintext, and only that column
    dec = [e for e in box.audit.store.entries() if e.action == "decrypt"]
    assert [(e.actor, e.subject, e.details["column"], e.details["cells"]) for e in dec] == [
        ("bank", f"job:{jid}", "tax_paid", 60)
    ]
    job = box.show(jid, user="bank")
    assert job["state"] == "released"
    assert job["releases"][0]["digest"] == bundle.digest == job["result"]["digest"]
    # fetching again is another recorded release of the same bytes
    assert box.result(jid, user="bank").data == bundle.data
    assert len(box.show(jid, user="bank")["releases"]) == 2
    assert box.audit.verify().ok


def test_small_groups_are_suppressed(box, settings):
    comp = {"name": "aggregate", "params": {"group_by": ["district"], "metrics": [{"op": "count"}]}}
    few = tax_table([f"91{i:016d}" for i in range(25)])  # districts of 9, 8, 8 rows < k = 10
    publish_dataset(
        settings, tax_contract(sandbox=AGG_POLICY, code="SWJ-T009", name="tax_few"), few
    )
    jid = approved(box, comp, dataset="SWJ-T009")
    assert box.run(jid)["state"] == "succeeded"
    doc = json.loads(box.result(jid, user="bank").data)
    assert doc["rows"] == [] and doc["suppressed_groups"] == 3


def test_leak_is_stopped_by_disclosure_control(box, ids):
    jid = approved(box, {"name": "test_leak"})
    job = box.run(jid)
    assert job["state"] == "failed"
    assert "DisclosureError" in job["reason"] and "'x'←'taxpayer_id'" in job["reason"]
    for v in ids:
        assert v not in job["reason"]
    assert not (box.job_dir(jid) / "result" / "result.bin").exists()


def test_time_limit(box, settings, ids):
    publish_dataset(
        settings,
        tax_contract(
            sandbox={**AGG_POLICY, "time_limit_seconds": 4}, code="SWJ-T002", name="tax_slow"
        ),
        tax_table(ids),
    )
    jid = approved(box, {"name": "test_sleep", "params": {"seconds": 60}}, dataset="SWJ-T002")
    t0 = time.monotonic()
    job = box.run(jid)
    assert time.monotonic() - t0 < 20
    assert job["state"] == "failed" and "time limit of 4 s exceeded" in job["reason"]


def test_memory_limit(box):
    job = box.run(approved(box, {"name": "test_hog"}))
    assert job["state"] == "failed" and "memory limit of 2048 MiB exceeded" in job["reason"]


def test_worker_that_dies(box):
    job = box.run(approved(box, {"name": "test_die"}))
    assert job["state"] == "failed" and "exited with code 9" in job["reason"]


def test_unexpected_error_is_withheld_from_the_requester_but_kept_for_the_operator(box):
    jid = approved(box, {"name": "test_crash"})
    job = box.run(jid)
    assert job["state"] == "failed" and "91350100M000100Y3Y" not in job["reason"]
    assert "computation failed with ValueError" in job["reason"]
    assert "result/traceback.txt" in job["reason"]
    tb = box.job_dir(jid) / "result" / "traceback.txt"
    assert stat.S_IMODE(tb.stat().st_mode) == 0o600
    text = tb.read_text(encoding="utf-8")
    assert "ValueError: bad cell" in text and "91350100M000100Y3Y" in text


def test_killed_mid_job_fails_and_rerun_succeeds(box, tmp_path):
    marker = tmp_path / "started"
    jid = approved(box, {"name": "test_sleep", "params": {"seconds": 60, "marker": str(marker)}})
    out: dict = {}
    t = threading.Thread(target=lambda: out.update(box.run(jid)))
    t.start()
    pid_file = box.job_dir(jid) / "result" / "worker.pid"
    deadline = time.monotonic() + 30
    while not (marker.exists() and pid_file.exists()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert box.show(jid, user="bank")["state"] == "running"
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    t.join(30)
    assert out["state"] == "failed" and "signal SIGKILL" in out["reason"]
    job = box.run(jid)  # failed → running → succeeded; the marker makes the re-run quick
    assert job["state"] == "succeeded" and job["attempts"] == 2
    assert json.loads(box.result(jid, user="bank").data) == {"rows": 60}
    states = [tr["to"] for tr in job["transitions"]]
    assert states[-4:] == ["running", "failed", "running", "succeeded"]


def test_worker_once_runs_approved_jobs(box):
    jid = approved(box, {"name": "test_sleep", "params": {"seconds": 0}})
    ran = box.work_once()
    assert [j["id"] for j in ran] == [jid] and ran[0]["state"] == "succeeded"
    assert box.work_once() == []


def test_no_result_contains_values_of_the_dataset(box, settings, ids):
    """Scan every released result against the raw dataset's plaintext (the test helper)."""
    comp = {
        "name": "aggregate",
        "params": {
            "group_by": ["district", "tax_year"],
            "metrics": [{"op": "mean", "column": "tax_paid"}],
        },
    }
    jid = approved(box, comp)
    box.run(jid)
    data = box.result(jid, user="bank").data
    doc = json.loads(data)
    out = pa.table(
        {c: pa.array([str(r[i]) for r in doc["rows"]]) for i, c in enumerate(doc["columns"])}
    )
    raw = tax_table(ids)
    assert leaked_values(out, raw, ["taxpayer_id"]) == []
    assert leaked_values(pa.table({"x": raw["taxpayer_id"]}), raw, ["taxpayer_id"]) == [
        ("x", "taxpayer_id")
    ]
    text = data.decode()
    for v in ids:
        assert v not in text
    stored = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir).read("tax_test", 0)
    assert stored.schema.field("tax_paid").metadata[b"govdx.key_id"]  # encrypted at rest


def test_aggregate_k_counts_taxpayers_not_rows(box, settings, ids):
    """福田区: 12 rows of 3 taxpayers (4 years each) — at least k = 10 rows but 3 taxpayers, so
    suppressed; 南山区: 10 taxpayers — released, its exact count and sum."""
    contract = tax_contract(sandbox=AGG_POLICY, code="SWJ-T009", name="tax_units").model_copy(
        update={"privacy_unit": "taxpayer_id"}
    )
    few, many = ids[:3], ids[3:13]
    rows = [(x, "福田区", 2020 + y, Decimal("100.00")) for x in few for y in range(4)]
    rows += [(x, "南山区", 2023, Decimal("7.50")) for x in many]
    cols = list(zip(*rows, strict=True))
    table = pa.table(
        {
            "taxpayer_id": pa.array(cols[0], pa.string()),
            "district": pa.array(cols[1], pa.string()),
            "tax_year": pa.array(cols[2], pa.int64()),
            "tax_paid": pa.array(cols[3], pa.decimal128(18, 2)),
        }
    )
    publish_dataset(settings, contract, table)
    comp = {
        "name": "aggregate",
        "params": {"group_by": ["district"], "metrics": [{"op": "sum", "column": "tax_paid"}]},
    }
    job = box.run(approved(box, comp, dataset="SWJ-T009"))
    assert job["state"] == "succeeded", job["reason"]
    doc = json.loads(box.result(job["id"], user="bank").data)
    assert doc["columns"] == ["district", "n", "sum_tax_paid"]  # the unit count is not released
    assert doc["rows"] == [["南山区", 10, "75.00"]]
    assert (doc["suppressed_groups"], doc["k_counts"]) == (1, "distinct taxpayer_id")


def test_aggregate_sums_a_protected_field_only_with_the_stewards_consent(box, settings, ids):
    from sandbox import PolicyRefused

    policy = {k: v for k, v in AGG_POLICY.items() if k != "sum_columns"}
    publish_dataset(
        settings, tax_contract(sandbox=policy, code="SWJ-T008", name="tax_nosum"), tax_table(ids)
    )
    comp = {
        "name": "aggregate",
        "params": {"group_by": ["district"], "metrics": [{"op": "mean", "column": "tax_paid"}]},
    }
    with pytest.raises(PolicyRefused, match=r"mean over the protected field 'tax_paid' needs"):
        approved(box, comp, dataset="SWJ-T008")
