"""PSI jobs end to end: the sandbox serves, the requester finishes; results equal a plain set
intersection on seeded data, in cardinality and in reveal mode; abuse is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from sandbox_testdata import AGG_POLICY, publish_dataset, tax_contract, tax_table, valid_usccs

from sandbox import PolicyRefused, Sandbox, parse_job_spec

psi = pytest.importorskip("privacy._psi")


def client_items(ids: list[str]) -> tuple[list[str], set[str]]:
    """25 of the dataset's ids (some lower-cased / padded), 15 others, 2 malformed."""
    others = valid_usccs(15, seed=99)
    mine = ids[:25] + others
    raw = [f"  {x.lower()} " if i % 5 == 0 else x for i, x in enumerate(mine)] + [
        "not-a-uscc",
        "91BAD",
    ]
    return raw, set(ids) & set(mine)


def submit_psi(
    box: Sandbox,
    tmp: Path,
    items: list[str],
    *,
    reveal: bool,
    max_items: int = 100,
    dataset: str = "SWJ-T001",
    element: str = "uscc",
    buckets: int = 1,
):
    session, request = psi.PsiClientSession.create(
        items, reveal_intersection=reveal, element=element, buckets=buckets
    )
    req = tmp / "req.bin"
    req.write_bytes(request.to_bytes())
    spec = parse_job_spec(
        {
            "purpose": "银税互动: 核验申请企业纳税记录",
            "legal_basis": "企业授权书",
            "dataset": dataset,
            "computation": {
                "name": "psi",
                "params": {"column": "taxpayer_id", "max_items": max_items, "reveal": reveal},
            },
            "inputs": {"request": str(req)},
        }
    )
    return session, box.submit(spec, user="bank")["id"]


def approve(box: Sandbox, jid: str) -> None:
    box.approve(jid, user="swj_steward")
    box.approve(jid, user="rev1")


def test_cardinality_equals_plain_intersection(box, tmp_path, ids):
    raw, expected = client_items(ids)
    session, jid = submit_psi(box, tmp_path, raw, reveal=False)
    approve(box, jid)
    job = box.run(jid)
    assert job["state"] == "succeeded", job["reason"]
    bundle = box.result(jid, user="bank")
    assert bundle.media_type == "application/x-govdx-psi-response"
    outcome = session.finish(psi.PsiResponse.from_bytes(bundle.data))
    assert outcome.cardinality == len(expected) == 25
    assert outcome.intersection is None
    for v in ids:  # the response never carries the dataset's identifiers
        assert v.encode() not in bundle.data


def test_reveal_mode_equals_plain_intersection(box, settings, tmp_path, ids):
    publish_dataset(
        settings,
        tax_contract(
            sandbox={**AGG_POLICY, "psi_reveal_allowed": True}, code="SWJ-T003", name="tax_reveal"
        ),
        tax_table(ids),
    )
    raw, expected = client_items(ids)
    session, jid = submit_psi(box, tmp_path, raw, reveal=True, dataset="SWJ-T003")
    approve(box, jid)
    assert box.run(jid)["state"] == "succeeded"
    outcome = session.finish(psi.PsiResponse.from_bytes(box.result(jid, user="bank").data))
    assert set(outcome.intersection) == expected and outcome.cardinality == 25


def test_reveal_refused_when_policy_says_cardinality_only(box, tmp_path, ids):
    with pytest.raises(PolicyRefused, match="仅可返回交集基数"):
        submit_psi(box, tmp_path, ids[:3], reveal=True)


def test_request_over_declared_size_is_refused(box, tmp_path, ids):
    with pytest.raises(
        PolicyRefused, match=r"holds 30 items, more than computation\.params\.max_items = 20"
    ):
        submit_psi(box, tmp_path, ids[:30], reveal=False, max_items=20)


def test_set_over_the_cap_is_refused(box, tmp_path):
    # a requester set of "every id of a region" is stopped by the cap (1000 here)
    with pytest.raises(PolicyRefused, match="exceeds the cap of 1000"):
        submit_psi(box, tmp_path, ["91440300000000000X"], reveal=False, max_items=1001)


def test_quota_stops_enumeration_over_many_jobs(box, tmp_path, ids):
    for _ in range(5):  # 5 × 1000 items = psi_items_per_day
        submit_psi(box, tmp_path, ids[:2], reveal=False, max_items=1000)
    with pytest.raises(PolicyRefused, match="psi_items_per_day = 5000") as err:
        submit_psi(box, tmp_path, ids[:2], reveal=False, max_items=1000)
    assert [type(r).__name__ for r in err.value.reasons] == ["QuotaReason"]
    assert [e.action for e in box.audit.store.entries()][-1] == "job.refuse"


def test_request_for_another_identifier_type_is_refused_before_approval(box, tmp_path, ids):
    """taxpayer_id holds USCCs: a request normalized as plain identifiers (or resident ids)
    would never match; it is refused at submit, not in the worker after two approvals."""
    with pytest.raises(
        PolicyRefused,
        match=r"normalized as 'identifier', column 'taxpayer_id' is 'uscc'; create it with "
        r"--element uscc \(标识类型不符\)",
    ):
        submit_psi(box, tmp_path, ids[:20], reveal=False, element="identifier")
    assert [e.action for e in box.audit.store.entries()][-1] == "job.refuse"


def test_request_with_more_buckets_than_the_sandbox_answers_is_refused_at_submit(
    box, tmp_path, ids
):
    with pytest.raises(PolicyRefused, match=r"uses 4 buckets; the sandbox answers at most 1"):
        submit_psi(box, tmp_path, ids[:20], reveal=False, buckets=4)


def test_malformed_request_is_refused(box, tmp_path):
    bad = tmp_path / "req.bin"
    bad.write_bytes(b"GDXP\x01Qgarbage")
    spec = parse_job_spec(
        {
            "purpose": "银税互动核验",
            "legal_basis": "授权",
            "dataset": "SWJ-T001",
            "computation": {"name": "psi", "params": {"column": "taxpayer_id", "max_items": 10}},
            "inputs": {"request": str(bad)},
        }
    )
    with pytest.raises(PolicyRefused, match="not a well-formed PSI request"):
        box.submit(spec, user="bank")


def test_malformed_identifiers_are_rejected_on_the_client(ids):
    session, request = psi.PsiClientSession.create(
        ["91BAD", ids[0], ""], reveal_intersection=False, element="uscc"
    )
    assert request.size == 1 and [i for i, _ in session.rejected] == [0]


def test_small_sets_are_refused_and_approvers_see_the_real_size(settings, tmp_path, ids):
    """A set of one asks "is this enterprise a taxpayer?": refused under psi_min_items; above it
    the job shows approvers the item count actually in the request, not the claimed bound."""
    box = Sandbox(settings)
    box.add_user("bank", "requester", "ICBC")
    publish_dataset(
        settings, tax_contract(sandbox={**AGG_POLICY, "psi_min_items": 5}), tax_table(ids)
    )
    with pytest.raises(PolicyRefused, match=r"holds 1 distinct item\(s\), fewer than .*= 5"):
        submit_psi(box, tmp_path, ids[:1], reveal=False, max_items=500)
    _, job_id = submit_psi(box, tmp_path, ids[:6], reveal=False, max_items=500)
    assert box.show(job_id, user="bank")["request_items"] == 6
    box.close()


def test_unpublished_dataset_takes_no_job(settings, tmp_path, ids):
    box = Sandbox(settings)
    box.add_user("bank", "requester", "ICBC")
    publish_dataset(settings, tax_contract(sandbox=AGG_POLICY), tax_table(ids), published=False)
    with pytest.raises(PolicyRefused, match="not published"):
        submit_psi(box, tmp_path, ids[:20], reveal=False, max_items=100)
    box.close()
