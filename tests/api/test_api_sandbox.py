"""A PSI job through the HTTP API end to end: the requester uploads a blinded request, two
approvers approve (双人复核), a worker runs it, the requester downloads the response and
finishes locally; nobody else gets the result."""

from __future__ import annotations

import pytest
from api_testdata import OWNED, spec_json


@pytest.mark.slow
def test_psi_job_over_the_api(client, tokens, api_home, tmp_path) -> None:
    from pipelines import Lakehouse
    from privacy._digest import sm3_hex
    from privacy._psi import PsiClientSession
    from sandbox import Sandbox

    settings = api_home[0]
    h = {n: {"Authorization": f"Bearer {t}"} for n, t in tokens.items()}
    ids = sorted(
        {
            i
            for i in Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)
            .read("tax_payment")["taxpayer_id"]
            .to_pylist()
            if i
        }
    )
    mine = ids[:25] + [i for i in ("91110000600037341L",) if i not in ids]  # + 1 unknown
    session, request = PsiClientSession.create(mine, reveal_intersection=False, element="uscc")

    r = client.post(
        "/api/v1/sandbox/jobs",
        headers=h["bank"],
        data={"spec": spec_json(max_items=100)},
        files={"inputs": ("req.bin", request.to_bytes())},
    )
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["state"] == "awaiting_approval" and job["dataset"] == OWNED
    assert job["decision"]["reviewer_required"] is True
    jid = job["id"]

    r = client.post(f"/api/v1/sandbox/jobs/{jid}/approve", headers=h["scjg_steward"], json={})
    assert r.status_code == 403  # not the owning department
    r = client.post(f"/api/v1/sandbox/jobs/{jid}/approve", headers=h["swj_steward"], json={})
    assert r.status_code == 200 and r.json()["state"] == "awaiting_approval"
    r = client.post(f"/api/v1/sandbox/jobs/{jid}/approve", headers=h["reviewer1"])
    assert r.status_code == 200 and r.json()["state"] == "approved"

    box = Sandbox(settings)
    try:
        assert box.run(jid)["state"] == "succeeded"
    finally:
        box.close()

    for other in ("burst", "analyst1", "swj_steward"):
        assert client.get(f"/api/v1/sandbox/jobs/{jid}/result", headers=h[other]).status_code == 403
    r = client.get(f"/api/v1/sandbox/jobs/{jid}/result", headers=h["bank"])
    assert r.status_code == 200
    assert r.headers["x-govdx-sm3"] == sm3_hex(r.content)
    assert session.finish(r.content).cardinality == 25
    shown = client.get(f"/api/v1/sandbox/jobs/{jid}", headers=h["bank"]).json()
    assert shown["state"] == "released" and shown["releases"][0]["recipient"] == "bank"
    assert client.get(f"/api/v1/sandbox/jobs/{jid}", headers=h["burst"]).status_code == 403

    budget = client.get(
        "/api/v1/sandbox/budget", headers=h["bank"], params={"dataset": OWNED}
    ).json()
    assert budget[0]["dataset"] == OWNED and budget[0]["jobs_per_day"] == 1000
    assert budget[0]["jobs"] >= 1 and budget[0]["psi_items"] >= 100
