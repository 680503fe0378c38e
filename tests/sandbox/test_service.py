"""The sandbox service without workers: submit, two-person rule, abuse refusals, audit."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta

import pytest
from sandbox_testdata import publish_dataset, tax_contract, tax_table
from sqlalchemy import select, update

from catalog._db import utcnow
from sandbox import (
    Job,
    JobNotFound,
    PermissionDenied,
    PolicyRefused,
    Refused,
    Sandbox,
    TransitionRefused,
    UserError,
    parse_job_spec,
)
from sandbox._models import new_job_id
from sandbox._service import _JOB_RUN_NAMESPACE

AGG = {"name": "aggregate", "params": {"group_by": ["district"], "metrics": [{"op": "count"}]}}


def spec(comp=AGG, **kw):
    data = {
        "purpose": "信贷审批统计",
        "legal_basis": "企业授权书",
        "dataset": "SWJ-T001",
        "computation": comp,
        **kw,
    }
    return parse_job_spec(data)


def actions(box: Sandbox) -> list[tuple[str, str, str]]:
    return [(e.actor, e.action, e.subject) for e in box.audit.store.entries()]


def test_submit_awaits_two_approvals_and_is_audited(box):
    job = box.submit(spec(), user="bank")
    assert re.fullmatch(r"[a-z2-7]{26}", job["id"])  # base32 of 128 random bits
    assert job["state"] == "awaiting_approval" and job["version"] == 0
    assert [(t["from"], t["to"]) for t in job["transitions"]] == [
        (None, "submitted"),
        ("submitted", "policy_checked"),
        ("policy_checked", "awaiting_approval"),
    ]
    assert job["decision"]["approvals_required"] == 2 and job["decision"]["reviewer_required"]
    assert ("bank", "job.submit", job["id"]) in actions(box)
    assert box.audit.verify().ok


def test_job_ids_are_safe_command_line_arguments():
    # token_urlsafe ids started with "-" one time in 64 and the CLI then read them as options
    ids = [new_job_id() for _ in range(20_000)]
    assert all(re.fullmatch(r"[a-z2-7]{26}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    # all 32 base32 letters occur in the first position, so no leading character is excluded
    assert len({i[0] for i in ids}) == 32


def test_two_person_rule(box):
    jid = box.submit(spec(), user="bank")["id"]
    with pytest.raises(PermissionDenied, match="不得审批本人提交的作业"):
        box.approve(jid, user="bank")
    with pytest.raises(PermissionDenied, match=r"a steward .* of SWJ"):
        box.approve(jid, user="scjg_steward")  # steward of another department
    with pytest.raises(PermissionDenied, match="may not approve"):
        box.approve(jid, user="root")  # admins do not approve
    assert box.approve(jid, user="swj_steward")["state"] == "awaiting_approval"
    with pytest.raises(PermissionDenied, match="双人复核须由不同人员完成"):
        box.approve(jid, user="swj_steward")  # a second approval by the same person
    with pytest.raises(PermissionDenied, match="already has its steward approval"):
        box.approve(jid, user="swj_steward2")  # a second steward does not make two people
    job = box.approve(jid, user="rev1")
    assert job["state"] == "approved"
    assert [(a["approver"], a["role"]) for a in job["approvals"]] == [
        ("swj_steward", "steward"),
        ("rev1", "reviewer"),
    ]
    with pytest.raises(TransitionRefused, match="not awaiting approval"):
        box.approve(jid, user="rev2")
    refused = [a for a in actions(box) if a[1] == "job.approve.refuse"]
    assert [a[0] for a in refused] == [
        "bank",
        "scjg_steward",
        "root",
        "swj_steward",
        "swj_steward2",
        "rev2",
    ]


def test_conditional_general_needs_one_steward(settings, ids):
    box = Sandbox(settings)
    box.add_user("bank", "requester", "ICBC")
    box.add_user("st", "steward", "SWJ")
    publish_dataset(
        settings,
        tax_contract(tax_grade="general", sandbox={"allowed_computations": ["aggregate"]}),
        tax_table(ids),
    )
    jid = box.submit(spec(), user="bank")["id"]
    assert box.approve(jid, user="st")["state"] == "approved"
    box.close()


def test_unconditional_general_aggregate_is_auto_approved(settings, ids):
    box = Sandbox(settings)
    box.add_user("bank", "requester", "ICBC")
    publish_dataset(
        settings,
        tax_contract(
            share="unconditional",
            tax_grade="general",
            sandbox={"allowed_computations": ["aggregate"]},
        ),
        tax_table(ids),
    )
    job = box.submit(spec(), user="bank")
    assert job["state"] == "approved"
    assert job["transitions"][-1]["reason"].startswith("auto-approved")
    # the run that read the table is downstream of the entry in its lineage
    import catalog

    with box.factory() as s:
        assert catalog.lineage_graph(session=s, code="SWJ-T001").downstream == []
    assert box.run(job["id"])["state"] == "succeeded"
    with box.factory() as s:
        [edge] = catalog.lineage_graph(session=s, code="SWJ-T001").downstream
    assert (edge.job_name, edge.name) == ("sandbox.aggregate", None)
    assert edge.run_id == str(uuid.uuid5(_JOB_RUN_NAMESPACE, job["id"]))
    box.close()


def test_share_none_refuses_and_audits(settings, ids):
    box = Sandbox(settings)
    box.add_user("bank", "requester", "ICBC")
    publish_dataset(
        settings,
        tax_contract(share="none", sandbox={"allowed_computations": ["aggregate"]}),
        tax_table(ids),
    )
    with pytest.raises(PolicyRefused, match="不予共享"):
        box.submit(spec(), user="bank")
    with box.factory() as s:
        assert s.scalar(select(Job.id)) is None
    assert actions(box)[-1] == ("bank", "job.refuse", "dataset:SWJ-T001")
    box.close()


@pytest.mark.parametrize(
    ("kw", "user", "exc", "fragment"),
    [
        ({"dataset": "NOPE-1"}, "bank", Refused, "catalog entry 'NOPE-1' not found"),
        ({"version": 7}, "bank", Refused, "has no registered version 7"),
        ({"requester": "bank2"}, "bank", Refused, "names requester 'bank2'"),
        ({}, "ghost", UserError, "unknown user 'ghost'"),
        ({}, None, UserError, "GOVDX_USER"),
    ],
)
def test_bad_submissions(box, ids, kw, user, exc, fragment):
    with pytest.raises(exc, match=fragment) as info:
        box.submit(spec(**kw), user=user)
    for value in ids:  # nothing of the dataset in the error
        assert value not in str(info.value)


def test_job_ids_are_unguessable_and_unknown_ids_refused(box):
    a = box.submit(spec(), user="bank")["id"]
    b = box.submit(spec(), user="bank")["id"]
    assert a != b
    with pytest.raises(JobNotFound, match="not found"):
        box.show("x" * 22, user="bank")


def test_visibility_and_reject(box):
    jid = box.submit(spec(), user="bank")["id"]
    with pytest.raises(PermissionDenied):
        box.show(jid, user="bank2")
    with pytest.raises(PermissionDenied):
        box.show(jid, user="scjg_steward")
    assert box.show(jid, user="swj_steward")["id"] == jid
    assert [j["id"] for j in box.list_jobs(user="bank2")] == []
    assert [j["id"] for j in box.list_jobs(user="bank")] == [jid]
    with pytest.raises(Refused, match="needs --reason"):
        box.reject(jid, user="swj_steward", reason=" ")
    with pytest.raises(PermissionDenied, match="only a steward of SWJ or a reviewer"):
        box.reject(jid, user="bank2", reason="no")
    job = box.reject(jid, user="rev1", reason="用途不明确")
    assert job["state"] == "rejected" and job["reason"] == "用途不明确"
    with pytest.raises(TransitionRefused):
        box.approve(jid, user="swj_steward")


def test_cancel_by_requester_only(box):
    jid = box.submit(spec(), user="bank")["id"]
    with pytest.raises(PermissionDenied):
        box.cancel(jid, user="bank2")
    assert box.cancel(jid, user="bank")["state"] == "cancelled"
    with pytest.raises(TransitionRefused):
        box.cancel(jid, user="bank")


def test_result_before_run_and_by_someone_else(box):
    jid = box.submit(spec(), user="bank")["id"]
    with pytest.raises(PermissionDenied, match="only to its requester"):
        box.result(jid, user="swj_steward")
    with pytest.raises(TransitionRefused, match="no result to release"):
        box.result(jid, user="bank")
    assert [a[1] for a in actions(box)][-2:] == ["job.result.refuse", "job.result.refuse"]


def test_expiry(box):
    jid = box.submit(spec(), user="bank")["id"]
    later = utcnow() + timedelta(hours=73)
    box.clock = lambda: later
    assert box.expire_stale() == [jid]
    assert box.show(jid, user="bank")["state"] == "expired"


def test_optimistic_concurrency_one_winner(box):
    jid = box.submit(spec(), user="bank")["id"]
    box.approve(jid, user="swj_steward")
    box.approve(jid, user="rev1")
    from sandbox import JobState

    with box.factory.begin() as s:
        box._transition(s, jid, JobState.approved, JobState.running, "w1")
    with (
        pytest.raises(TransitionRefused, match="state changed concurrently"),
        box.factory.begin() as s,
    ):
        box._transition(s, jid, JobState.approved, JobState.running, "w2")


def test_restart_loses_no_job_and_lost_runs_fail(box, settings):
    jid = box.submit(spec(), user="bank")["id"]
    box.approve(jid, user="swj_steward")
    box.approve(jid, user="rev1")
    with box.factory.begin() as s:  # a worker claimed it, then the whole service died
        s.execute(
            update(Job)
            .where(Job.id == jid)
            .values(state="running", deadline_at=utcnow() - timedelta(seconds=1))
        )
    box.close()
    again = Sandbox(settings)
    assert again.recover_lost() == [jid]
    job = again.show(jid, user="bank")
    assert job["state"] == "failed" and "worker lost" in job["reason"]
    assert again.audit.verify().ok
    again.close()


def test_users(box):
    with pytest.raises(UserError, match="already exists"):
        box.add_user("bank", "requester")
    with pytest.raises(UserError, match="not one of"):
        box.add_user("x", "god")
    with pytest.raises(UserError, match="needs --department"):
        box.add_user("y", "steward")
    names = [u["name"] for u in box.list_users()]
    assert names == sorted(names) and "rev1" in names


def test_audit_chain_detects_tampering(box):
    box.submit(spec(), user="bank")
    from sandbox import AuditEntryRow

    with box.factory.begin() as s:
        row = s.scalar(select(AuditEntryRow).where(AuditEntryRow.action == "job.submit"))
        d = json.loads(row.details)
        d["purpose"] = "something else"
        row.details = json.dumps(d, ensure_ascii=False)
    report = box.audit.verify()
    assert not report.ok and report.problem == "edited"


def test_audit_append_retries_a_seq_race_then_names_the_failure(box, monkeypatch):
    """A lost seq race is retried (tenacity); when every attempt loses, the error says so."""
    from sqlalchemy.exc import IntegrityError

    from sandbox import SandboxError

    real = box.audit.chain.append
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] < 3:
            raise IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed: seq"))
        return real(*args, **kwargs)

    monkeypatch.setattr(box.audit.chain, "append", flaky)
    entry = box.audit.record("t", "test.race", "s", {})
    assert calls["n"] == 3 and entry.action == "test.race"

    def always(*args, **kwargs):
        raise IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed: seq"))

    monkeypatch.setattr(box.audit.chain, "append", always)
    with pytest.raises(SandboxError, match=r"test\.lost on s could not be stored: .*UNIQUE"):
        box.audit.record("t", "test.lost", "s", {})


def test_an_admin_disables_and_enables_a_user(box, settings):
    box.add_user("ops", "admin")
    with pytest.raises(PermissionDenied, match="'bank' is a requester; this needs an admin"):
        box.set_disabled("st", True, actor="bank")
    with pytest.raises(PermissionDenied, match="cannot disable itself"):
        box.set_disabled("ops", True, actor="ops")
    out = box.set_disabled("bank", True, actor="ops")
    assert out["name"] == "bank" and out["disabled_at"] is not None
    with pytest.raises(UserError, match=r"user 'bank' was disabled at .*用户已停用"):
        box.get_user("bank")
    with pytest.raises(UserError, match="用户已停用"):
        box.submit(spec(), user="bank")
    assert box.set_disabled("bank", False, actor="ops")["disabled_at"] is None
    assert box.submit(spec(), user="bank")["state"] == "awaiting_approval"
    assert [(a, s) for a, act, s in actions(box) if act.startswith("user.")][-2:] == [
        ("ops", "bank"),
        ("ops", "bank"),
    ]
    assert [act for _, act, _ in actions(box) if act in ("user.disable", "user.enable")] == [
        "user.disable",
        "user.enable",
    ]
