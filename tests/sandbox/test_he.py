"""psi_sum and he_sum jobs end to end: he_sum results equal the plaintext computation on seeded
data (exact integers in fen, negatives included); psi_sum releases the clamped intersection sum
plus OpenDP discrete Laplace noise of the declared scale, charged to the DP ledger; the
department never receives the requester's identifiers in the clear; bad input, missing bounds
or budget are refused before any encryption; small groups suppressed."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sandbox_testdata import AGG_POLICY, publish_dataset, tax_contract, valid_usccs

from privacy._blind import (
    KIND_UNMASK_REQUEST,
    JoinRequest,
    JoinResponse,
    PiSumClient,
    pisum_pack,
)
from privacy._digest import sm3_hex
from privacy._dp import laplace_accuracy
from privacy._paillier import HeDecryptionError, PhePaillier, PublicKey
from privacy._psi import PsiError
from sandbox import JobSpecError, PolicyRefused, Sandbox, decrypt_he_sum, parse_job_spec
from sandbox._errors import RunError
from sandbox._he import clamp_ints, psi_sum_noise, sum_sensitivity
from sandbox._ledger import BudgetExceeded, budget_status

#: clamp bounds of one taxpayer's total, whole 元 → [0, 10^8] fen; Δ = 10^8 fen
BOUNDS_YUAN = (0, 1_000_000)
DELTA_FEN = 100_000_000
HE_DP = {
    "epsilon_cap": "2001",
    "per_query_epsilon_max": "1000",  # large only so a test can see the clamped sum sharply
    "max_contributions": 1,
    "bounds": {"tax_paid": list(BOUNDS_YUAN)},
}
HE_POLICY = {
    **AGG_POLICY,
    "allowed_computations": ["psi_sum", "he_sum"],
    "sum_columns": ["tax_paid"],
    "min_group_size_k": 10,
    "dp": HE_DP,
}
CODE = "SWJ-H001"


def he_contract(sandbox: dict, code: str = CODE, name: str = "tax_he"):
    return tax_contract(sandbox=sandbox, code=code, name=name).model_copy(
        update={"privacy_unit": "taxpayer_id"}
    )


def he_table(ids: list[str], seed: int = 11) -> pa.Table:
    """Two tax years per id; amounts in yuan with refunds (negative), 3 districts; the last
    district ('盐田区') has only 4 ids (8 rows) — under k = 10."""
    rng = random.Random(seed)
    rows = []
    for i, x in enumerate(ids):
        d = "盐田区" if i >= len(ids) - 4 else ["福田区", "南山区"][i % 2]
        for year in (2023, 2024):
            cents = rng.randint(-50_000_00, 900_000_00)
            rows.append((x, d, year, Decimal(cents) / 100))
    cols = list(zip(*rows, strict=True))
    return pa.table(
        {
            "taxpayer_id": pa.array(cols[0], pa.string()),
            "district": pa.array(cols[1], pa.string()),
            "tax_year": pa.array(cols[2], pa.int64()),
            "tax_paid": pa.array(cols[3], pa.decimal128(18, 2)),
        }
    )


def fen(d: Decimal) -> int:
    return int(d * 100)


@pytest.fixture
def he_box(box: Sandbox, settings, ids) -> Sandbox:
    publish_dataset(settings, he_contract(HE_POLICY), he_table(ids))
    return box


@pytest.fixture(scope="module")
def keys():
    return PhePaillier().keygen(2048)


def spec(comp: dict, inputs: dict | None = None):
    return parse_job_spec(
        {
            "purpose": "银税互动: 申请企业纳税总额",
            "legal_basis": "企业授权书",
            "dataset": CODE,
            "computation": comp,
            **({"inputs": inputs} if inputs else {}),
        }
    )


def run_approved(box: Sandbox, s) -> dict:
    jid = box.submit(s, user="bank")["id"]
    box.approve(jid, user="swj_steward")
    box.approve(jid, user="rev1")
    return box.run(jid)


PSI_PARAMS = {"column": "taxpayer_id", "value_column": "tax_paid", "max_items": 100}


def stored_job(
    box: Sandbox,
    comp: str,
    params: dict,
    *,
    code: str = CODE,
    requester: str = "bank",
    state: str = "succeeded",
    attempts: int = 1,
) -> str:
    """A job row as the service stores it, without running it: the first job a reveal or a
    cohort sum names, for submit-time checks that read the job table only."""
    from catalog._db import utcnow
    from sandbox._models import Job, new_job_id

    jid = new_job_id()
    doc = {
        "purpose": "测试",
        "legal_basis": "测试",
        "dataset": code,
        "version": 0,
        "requester": requester,
        "computation": {"name": comp, "params": params},
        "inputs": {"request": "inputs/request"},
    }
    now = utcnow()
    with box.factory.begin() as s:
        s.add(
            Job(
                id=jid,
                requester=requester,
                dataset_code=code,
                delta_version=0,
                computation=comp,
                spec_json=json.dumps(doc),
                state=state,
                attempts=attempts,
                created_at=now,
                updated_at=now,
            )
        )
    return jid


def forget_job(box: Sandbox, job_id: str) -> None:
    """Make the job table say a job never ran (as if a second job had been submitted in the same
    instant as the first): what is left to stop the second is the worker's own check."""
    from sandbox._models import Job

    with box.factory.begin() as s:
        s.query(Job).filter_by(id=job_id).update({"state": "cancelled", "attempts": 0})


@contextmanager
def held_flock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` as another worker process would."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


def test_first_job_lock_lets_one_second_phase_job_at_a_time(tmp_path):
    from sandbox._he import HeCohort, _first_job_lock

    state = tmp_path / "state" / "he_cohort.json"
    state.parent.mkdir()
    busy = r"offer_job J1: another sum job of this offer is running"
    with (
        held_flock(tmp_path / "state" / "he_cohort.json.lock"),
        pytest.raises(RunError, match=busy),
        _first_job_lock(state, HeCohort.LINK, "J1"),
    ):
        pytest.fail("entered while another sum held the offer")
    entered = []
    with _first_job_lock(state, HeCohort.LINK, "J1"):
        entered.append(1)
        with pytest.raises(RunError, match=busy), _first_job_lock(state, HeCohort.LINK, "J1"):
            pass  # a second taker in the same moment
    # no state folder at all (not an offer): entered, the read that follows names the reason
    with _first_job_lock(tmp_path / "none" / "he_cohort.json", HeCohort.LINK, "J2"):
        entered.append(2)
    assert entered == [1, 2]


def stored_join(box: Sandbox, code: str = CODE, **kw) -> str:
    return stored_job(box, "psi_sum", {**PSI_PARAMS, "phase": "join"}, code=code, **kw)


def per_id_fen(table: pa.Table) -> dict[str, int]:
    """Each taxpayer's exact total in fen (rows summed per id), before clamping."""
    out: dict[str, int] = {}
    for x, v in zip(table["taxpayer_id"].to_pylist(), table["tax_paid"].to_pylist(), strict=True):
        out[x] = out.get(x, 0) + fen(v)
    return out


def clamped_fen(total: int) -> int:
    lo, hi = (b * 100 for b in BOUNDS_YUAN)
    return min(max(total, lo), hi)


def join_and_reveal(box: Sandbox, tmp_path: Path, mine: list[str], epsilon: str):
    """Run the join and the reveal for the requester's set; (client, reveal job, result bytes)."""
    client, request, rejected = PiSumClient.create(mine, element="uscc")
    assert rejected == []
    (tmp_path / "j.bin").write_bytes(request.to_bytes())
    job = run_approved(
        box, spec({"name": "psi_sum", "params": PSI_PARAMS}, {"request": str(tmp_path / "j.bin")})
    )
    assert job["state"] == "succeeded", job["reason"]
    (tmp_path / "u.bin").write_bytes(client.finish(box.result(job["id"], user="bank").data))
    reveal = {**PSI_PARAMS, "phase": "reveal", "join_job": job["id"], "epsilon": epsilon}
    job2 = run_approved(
        box, spec({"name": "psi_sum", "params": reveal}, {"request": str(tmp_path / "u.bin")})
    )
    assert job2["state"] == "succeeded", job2["reason"]
    return client, job2, box.result(job2["id"], user="bank").data


def test_clamp_and_sensitivity_exact():
    assert clamp_ints([-5, 0, 7, 10, 11, 10**30], 0, 10) == [0, 0, 7, 10, 10, 10]
    assert sum_sensitivity(0, DELTA_FEN) == DELTA_FEN
    assert sum_sensitivity(-30, 10) == 40  # merged ids straddling 0: hi − lo
    assert sum_sensitivity(-30, -10) == 30
    assert sum_sensitivity(0, 0) == 1


def test_psi_sum_equals_clamped_sum_plus_noise_and_hides_identifiers(he_box, tmp_path, ids):
    table = he_table(ids)
    totals = per_id_fen(table)
    others = valid_usccs(15, seed=99)
    mine = ids[:25] + others
    raw = [f"  {x.lower()} " if i % 5 == 0 else x for i, x in enumerate(mine)]
    exact = sum(totals[x] for x in ids[:25])
    expected = sum(clamped_fen(totals[x]) for x in ids[:25])
    assert any(fen(v) < 0 for v in table["tax_paid"].to_pylist())
    # ε = 1000 → scale = Δ/ε = 10^5 fen; 30 scales (P(|η| > 30·scale) ≈ e^-30) is far below
    # what clamping changes here, so the check sees the clamped, per-taxpayer sum exactly
    scale = DELTA_FEN / 1000
    tol = 30 * scale
    assert abs(exact - expected) > 10 * tol

    client, request, rejected = PiSumClient.create(raw, element="uscc")
    assert rejected == []
    req = tmp_path / "join.bin"
    req.write_bytes(request.to_bytes())
    # the department side never receives an identifier in the clear
    sent = req.read_bytes()
    for x in mine:
        assert x.encode() not in sent and x.lower().encode() not in sent
    assert JoinRequest.from_bytes(sent).points == sorted(request.points)

    job = run_approved(
        he_box, spec({"name": "psi_sum", "params": PSI_PARAMS}, {"request": str(req)})
    )
    assert job["state"] == "succeeded", job["reason"]
    summary = job["result"]["summary"]  # the stock is empty: a fresh key, CRT obfuscators
    assert (summary["key_source"], summary["stock_pack"], summary["fresh_obfuscators"]) == (
        "fresh",
        None,
        60,
    )
    join_id = job["id"]
    stored = (he_box.job_dir(join_id) / "inputs" / "request").read_bytes()
    for x in mine:
        assert x.encode() not in stored
    data = he_box.result(join_id, user="bank").data
    for x in ids:  # nor does the requester receive the department's identifiers
        assert x.encode() not in data
    unmask = client.finish(data)
    assert client.cardinality == 25
    um = tmp_path / "unmask.bin"
    um.write_bytes(unmask)
    reveal = {**PSI_PARAMS, "phase": "reveal", "join_job": join_id, "epsilon": "1000"}
    job2 = run_approved(he_box, spec({"name": "psi_sum", "params": reveal}, {"request": str(um)}))
    assert job2["state"] == "succeeded", job2["reason"]
    assert job2["result"]["summary"]["scale"] == scale
    released = client.reveal(he_box.result(job2["id"], user="bank").data)
    assert abs(released - expected) <= tol
    # one reveal per join: refused at submit (names the reveal that used it) ...
    again = spec({"name": "psi_sum", "params": reveal}, {"request": str(um)})
    with pytest.raises(PolicyRefused, match=rf"already has reveal job {job2['id']} \(released\)"):
        he_box.submit(again, user="bank")
    # ... and by the worker, whose key is gone (a reveal that slipped past the submit check)
    forget_job(he_box, job2["id"])
    job3 = run_approved(he_box, again)
    assert job3["state"] == "failed" and "one reveal per join" in job3["reason"]


def test_reveal_made_for_another_join_is_refused_at_submit(he_box, tmp_path, ids):
    """A careless requester sends join A's unmask request in a reveal naming join B: refused
    at submit (before approval), so join B's one reveal and its ε are not burnt in the worker."""
    from sandbox._ledger import budget_status

    made = []
    for part in (ids[:12], ids[12:24]):
        client, request, _ = PiSumClient.create(part, element="uscc")
        (tmp_path / f"j{len(made)}.bin").write_bytes(request.to_bytes())
        s = spec(
            {"name": "psi_sum", "params": PSI_PARAMS},
            {"request": str(tmp_path / f"j{len(made)}.bin")},
        )
        job = run_approved(he_box, s)
        assert job["state"] == "succeeded", job["reason"]
        made.append((job["id"], client.finish(he_box.result(job["id"], user="bank").data)))
    (a_id, unmask_a), (b_id, _) = made
    (tmp_path / "ua.bin").write_bytes(unmask_a)
    reveal = {**PSI_PARAMS, "phase": "reveal", "join_job": b_id, "epsilon": "1/2"}
    wrong = spec({"name": "psi_sum", "params": reveal}, {"request": str(tmp_path / "ua.bin")})
    with pytest.raises(PolicyRefused, match=rf"answers another join than job {b_id}"):
        he_box.submit(wrong, user="bank")
    with he_box.factory() as s:
        st = budget_status(
            s, requester="bank", dataset=CODE, epsilon_cap=Fraction(2001), delta_cap=Fraction(0)
        )
    assert (st.epsilon_held, st.epsilon_spent) == (0, 0)
    right = {**reveal, "join_job": a_id}
    job = run_approved(
        he_box, spec({"name": "psi_sum", "params": right}, {"request": str(tmp_path / "ua.bin")})
    )
    assert job["state"] == "succeeded", job["reason"]


def test_psi_sum_tampered_unmask_fails(he_box, tmp_path, ids):
    client, request, _ = PiSumClient.create(ids[:12], element="uscc")
    (tmp_path / "j.bin").write_bytes(request.to_bytes())
    job = run_approved(
        he_box,
        spec({"name": "psi_sum", "params": PSI_PARAMS}, {"request": str(tmp_path / "j.bin")}),
    )
    unmask = bytearray(client.finish(he_box.result(job["id"], user="bank").data))
    unmask[-3] ^= 0x40  # flip a bit of the masked ciphertext
    (tmp_path / "u.bin").write_bytes(bytes(unmask))
    reveal = {**PSI_PARAMS, "phase": "reveal", "join_job": job["id"], "epsilon": "1/2"}
    rid = he_box.submit(
        spec({"name": "psi_sum", "params": reveal}, {"request": str(tmp_path / "u.bin")}),
        user="bank",
    )["id"]
    he_box.approve(rid, user="swj_steward")
    he_box.approve(rid, user="rev1")
    # while another worker reveals this join (it holds the join's lock) this run fails, and the
    # join's key stays for a later run of the same job
    with held_flock(he_box.job_dir(job["id"]) / "state" / "psi_sum.json.lock"):
        busy = he_box.run(rid)
    assert busy["state"] == "failed"
    assert "another reveal job of this join is running" in busy["reason"]
    job2 = he_box.run(rid)
    assert job2["state"] == "succeeded", job2["reason"]
    answer = he_box.result(job2["id"], user="bank").data
    # V names the U it answered: not one this state made
    with pytest.raises(PsiError, match=r"an unmask request this state did not make"):
        client.reveal(answer)
    # without that name (an older department) the decryption is out of range
    from privacy._blind import KIND_UNMASK_RESPONSE, pisum_unpack

    header, body = pisum_unpack(answer, KIND_UNMASK_RESPONSE, "V")
    assert header["unmask_sm3"] == sm3_hex(bytes(unmask))
    del header["unmask_sm3"]
    with pytest.raises(HeDecryptionError, match="tampered, wrong key, or an unmask request"):
        client.reveal(pisum_pack(KIND_UNMASK_RESPONSE, header, body))


def test_psi_sum_and_cohort_sets_under_k_refused_at_submit(he_box, settings, tmp_path, ids):
    """A join or offer request under psi_min_items or min_group_size_k distinct points is refused
    at submit (before two approvers see it), not in the worker; approvers see the count."""
    small = 12  # k = 12 > psi_min_items = 5 on this dataset
    policy = {**HE_POLICY, "allowed_computations": ["psi_sum", "he_cohort"], "min_group_size_k": small,
              "psi_min_items": 5, "psi_keep_cohort_allowed": True}  # fmt: skip
    publish_dataset(settings, he_contract(policy, code="SWJ-H010", name="tax_k12"), he_table(ids))
    req = tmp_path / "j.bin"

    def submit(comp: str, points: list[bytes]) -> dict:
        req.write_bytes(JoinRequest("uscc", points).to_bytes())
        params = PSI_PARAMS if comp == "psi_sum" else COHORT_PARAMS
        s = spec({"name": comp, "params": params}, {"request": str(req)})
        return he_box.submit(s.model_copy(update={"dataset": "SWJ-H010"}), user="bank")

    _client, request, _ = PiSumClient.create(ids[:small], element="uscc")
    pts = request.points
    for comp in ("psi_sum", "he_cohort"):
        with pytest.raises(
            PolicyRefused,
            match=r"holds 3 distinct item\(s\), fewer than sandbox\.psi_min_items = 5",
        ):
            submit(comp, pts[:3])
        with pytest.raises(
            PolicyRefused,
            match=r"holds 11 distinct item\(s\), under sandbox\.min_group_size_k = 12",
        ):
            submit(comp, pts[:11])
        with pytest.raises(PolicyRefused, match=r"holds 1 distinct item\(s\)"):
            submit(comp, [pts[0]] * small)  # one identifier repeated is one item
        job = submit(comp, pts)
        assert (job["state"], job["request_items"]) == ("awaiting_approval", small)
    refusals = [e for e in he_box.audit.store.entries() if e.action == "job.refuse"]
    assert len(refusals) == 6


def test_he_sum_grouped_totals_equal_plaintext(he_box, ids, keys):
    pk, sk = keys
    table = he_table(ids)
    params = {
        "value_column": "tax_paid",
        "group_by": ["district"],
        "public_key": pk.to_json(),
        "partitions": 3,
    }
    job = run_approved(he_box, spec({"name": "he_sum", "params": params}))
    assert job["state"] == "succeeded", job["reason"]
    assert job["result"]["summary"]["partitions"] == 3
    data = he_box.result(job["id"], user="bank").data
    doc = json.loads(data)
    assert "tax_paid" not in json.dumps(doc["groups"])
    out = decrypt_he_sum(data, sk)
    expected: dict[str, list[int]] = {}
    for d, v in zip(table["district"].to_pylist(), table["tax_paid"].to_pylist(), strict=True):
        n, s = expected.get(d, [0, 0])
        expected[d] = [n + 1, s + fen(v)]
    assert out["columns"] == ["district", "n", "sum"] and out["scale"] == 2
    assert {r[0]: [r[1], r[2]] for r in out["rows"]} == {
        d: ns for d, ns in expected.items() if ns[0] >= 10
    }
    assert out["suppressed_groups"] == 1  # 盐田区: 8 rows < k
    assert "盐田区" not in data.decode()
    # the private key of another requester cannot read it
    with pytest.raises(HeDecryptionError, match="encrypted under key"):
        decrypt_he_sum(data, PhePaillier().keygen(2048)[1])


def test_he_sum_cohort_under_k_is_refused_before_encryption(box, settings, keys):
    few = he_table(valid_usccs(4, seed=5))  # 8 rows < k = 10
    publish_dataset(
        settings, tax_contract(sandbox=HE_POLICY, code="SWJ-H002", name="tax_few_he"), few
    )
    s = parse_job_spec(
        {
            "purpose": "银税互动: 申请企业纳税总额",
            "legal_basis": "企业授权书",
            "dataset": "SWJ-H002",
            "computation": {
                "name": "he_sum",
                "params": {"value_column": "tax_paid", "public_key": keys[0].to_json()},
            },
        }
    )
    job = run_approved(box, s)
    assert job["state"] == "failed"
    assert "cohort of 8 rows is under sandbox.min_group_size_k = 10" in job["reason"]
    assert not (box.job_dir(job["id"]) / "result" / "result.bin").exists()


def _short_key_json() -> str:
    from phe import paillier

    short, _ = paillier.generate_paillier_keypair(n_length=1024)
    doc = PublicKey(0).to_dict() | {"n": PublicKey(short.n).to_dict()["n"]}
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        pytest.param(
            {"public_key": "SHORT"}, "1024 bits, below the minimum of 2048", id="short-key"
        ),
        pytest.param({"public_key": "{not json"}, "not JSON", id="malformed-key"),
        pytest.param(
            {"value_column": "district"}, "'district' is string, not a number", id="not-numeric"
        ),
        pytest.param(
            {"value_column": "tax_year"}, "summing 'tax_year' is not allowed", id="not-allowed"
        ),
        pytest.param(
            {"group_by": ["taxpayer_id"]}, "may not group by 'taxpayer_id'", id="group-by-id"
        ),
        pytest.param(
            {"group_by": ["tax_paid"]}, "may not group by 'tax_paid'", id="group-by-protected"
        ),
    ],
)
def test_he_sum_bad_input_refused_at_submit(he_box, keys, params, match):
    p = {"value_column": "tax_paid", "group_by": [], "public_key": keys[0].to_json(), **params}
    if p["public_key"] == "SHORT":
        p["public_key"] = _short_key_json()
    with pytest.raises(PolicyRefused, match=match):
        he_box.submit(spec({"name": "he_sum", "params": p}), user="bank")
    assert not list(Path(he_box.root).glob("*/result"))  # no job ran, nothing encrypted


def test_psi_sum_refusals(he_box, tmp_path, ids):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GDXH\x01Jgarbage")
    with pytest.raises(PolicyRefused, match="not a well-formed PSI-sum join message"):
        he_box.submit(
            spec({"name": "psi_sum", "params": PSI_PARAMS}, {"request": str(bad)}), user="bank"
        )
    _, request, _ = PiSumClient.create(ids[:30], element="uscc")
    bad.write_bytes(request.to_bytes())
    with pytest.raises(
        PolicyRefused, match=r"holds 30 items, more than computation\.params\.max_items = 20"
    ):
        he_box.submit(
            spec(
                {"name": "psi_sum", "params": {**PSI_PARAMS, "max_items": 20}},
                {"request": str(bad)},
            ),
            user="bank",
        )
    with pytest.raises(PolicyRefused, match="'district' is string, not a number"):
        he_box.submit(
            spec(
                {"name": "psi_sum", "params": {**PSI_PARAMS, "value_column": "district"}},
                {"request": str(bad)},
            ),
            user="bank",
        )


def test_psi_sum_padding_attack_gets_noise_of_declared_scale_and_is_charged(he_box, tmp_path, ids):
    """One real taxpayer padded with 11 made-up identifiers (set ≥ k): the reveal returns its
    clamped total plus discrete Laplace noise at Δ = 10^8 fen, ε = 1/2 (scale 2·10^8 fen)."""
    target = ids[0]
    true = clamped_fen(per_id_fen(he_table(ids))[target])
    mine = [target, *valid_usccs(11, seed=123)]
    client, job2, data = join_and_reveal(he_box, tmp_path, mine, "1/2")
    assert client.cardinality == 1
    terms = psi_sum_noise(data)
    assert terms["mechanism"] == "discrete_laplace"
    assert (terms["epsilon"], terms["delta"]) == ("1/2", "0")
    assert terms["sensitivity"] == DELTA_FEN and terms["bounds"] == [0, DELTA_FEN]
    assert terms["scale"] == 2 * DELTA_FEN and terms["value_scale"] == 2
    assert terms["privacy_unit"] == "taxpayer_id" and terms["confidence"] == 0.95
    assert terms["ci_halfwidth"] == laplace_accuracy(2 * DELTA_FEN, 0.95) > 5 * DELTA_FEN
    summary = job2["result"]["summary"]
    assert (summary["epsilon"], summary["mechanism"], summary["scale"]) == (
        "1/2",
        "discrete_laplace",
        2 * DELTA_FEN,
    )
    released = client.reveal(data)
    # P(η = 0) = tanh(1/(2·scale)) ≈ 2.5·10^-9: the exact value is not returned
    assert released != true
    assert abs(released - true) <= 40 * 2 * DELTA_FEN  # P ≈ e^-40 to fail by chance
    # the ledger was charged ε = 1/2 at the reveal (spent on release); the join cost nothing
    with he_box.factory() as s:
        st = budget_status(
            s, requester="bank", dataset=CODE, epsilon_cap=Fraction(2001), delta_cap=Fraction(0)
        )
    assert (st.epsilon_spent, st.epsilon_held, st.delta_spent) == (Fraction(1, 2), 0, 0)


def _fake_unmask(tmp_path: Path) -> str:
    p = tmp_path / "fake_unmask.bin"
    p.write_bytes(pisum_pack(KIND_UNMASK_REQUEST, {"join_sm3": "0" * 64}, b"\x01"))
    return str(p)


def test_psi_sum_reveal_budget_refusals(he_box, tmp_path):
    req = _fake_unmask(tmp_path)
    base = {**PSI_PARAMS, "phase": "reveal", "join_job": "A" * 22}
    with pytest.raises(PolicyRefused, match="the reveal phase spends ε"):
        he_box.submit(spec({"name": "psi_sum", "params": base}, {"request": req}), user="bank")
    with pytest.raises(PolicyRefused, match=r"ε = 1001 is above the per-query maximum 1000"):
        he_box.submit(
            spec({"name": "psi_sum", "params": {**base, "epsilon": "1001"}}, {"request": req}),
            user="bank",
        )
    for eps in ("1000", "1000"):  # reserved at submit: 2000 of 2001 (one reveal per join)
        he_box.submit(
            spec(
                {
                    "name": "psi_sum",
                    "params": {**base, "epsilon": eps, "join_job": stored_join(he_box)},
                },
                {"request": req},
            ),
            user="bank",
        )
    with pytest.raises(BudgetExceeded, match=r"asks ε = 3/2.*remaining ε = 1 "):
        he_box.submit(
            spec(
                {
                    "name": "psi_sum",
                    "params": {**base, "epsilon": "3/2", "join_job": stored_join(he_box)},
                },
                {"request": req},
            ),
            user="bank",
        )
    with he_box.factory() as s:
        st = budget_status(
            s, requester="bank", dataset=CODE, epsilon_cap=Fraction(2001), delta_cap=Fraction(0)
        )
    assert (st.epsilon_spent, st.epsilon_held) == (0, 2000)


def test_psi_sum_join_epsilon_refused(he_box, tmp_path, ids):
    _, request, _ = PiSumClient.create(ids[:12], element="uscc")
    (tmp_path / "j.bin").write_bytes(request.to_bytes())
    with pytest.raises(PolicyRefused, match="only the reveal phase spends ε"):
        he_box.submit(
            spec(
                {"name": "psi_sum", "params": {**PSI_PARAMS, "epsilon": "1/2"}},
                {"request": str(tmp_path / "j.bin")},
            ),
            user="bank",
        )


@pytest.mark.parametrize(
    ("sandbox", "unit", "match"),
    [
        pytest.param(
            {k: v for k, v in HE_POLICY.items() if k != "dp"},
            "taxpayer_id",
            "has no sandbox.dp block",
            id="no-dp-block",
        ),
        pytest.param(
            {**HE_POLICY, "dp": {**HE_DP, "bounds": {}}},
            "taxpayer_id",
            r"'tax_paid' has no clamp bounds \(sandbox\.dp\.bounds\)",
            id="no-bounds",
        ),
        pytest.param(HE_POLICY, None, "declares no privacy_unit", id="no-privacy-unit"),
    ],
)
def test_psi_sum_without_bounds_or_unit_refused(box, settings, tmp_path, ids, sandbox, unit, match):
    contract = tax_contract(sandbox=sandbox, code="SWJ-H003", name="tax_nodp").model_copy(
        update={"privacy_unit": unit}
    )
    publish_dataset(settings, contract, he_table(ids))
    _, request, _ = PiSumClient.create(ids[:12], element="uscc")
    (tmp_path / "j.bin").write_bytes(request.to_bytes())
    for params, inp in (
        (PSI_PARAMS, str(tmp_path / "j.bin")),
        (
            {**PSI_PARAMS, "phase": "reveal", "join_job": "A" * 22, "epsilon": "1/2"},
            _fake_unmask(tmp_path),
        ),
    ):
        s = parse_job_spec(
            {
                "purpose": "银税互动: 申请企业纳税总额",
                "legal_basis": "企业授权书",
                "dataset": "SWJ-H003",
                "computation": {"name": "psi_sum", "params": params},
                "inputs": {"request": inp},
            }
        )
        with pytest.raises(PolicyRefused, match=match):
            box.submit(s, user="bank")


# --- he_cohort: he_sum over the private intersection (docs/he.md "Cohorts") ----------------------
COHORT_CODE = "SWJ-H003"
COHORT_POLICY = {
    **HE_POLICY,
    "allowed_computations": ["psi_sum", "he_sum", "he_cohort"],
    "psi_keep_cohort_allowed": True,
}
COHORT_PARAMS = {"column": "taxpayer_id", "max_items": 100}


def cohort_spec(comp: dict, inputs: dict, code: str = COHORT_CODE):
    return parse_job_spec(
        {
            "purpose": "银税互动: 申请企业分区纳税总额",
            "legal_basis": "企业授权书",
            "dataset": code,
            "computation": comp,
            "inputs": inputs,
        }
    )


def cohort_request(mine: list[str]) -> tuple[bytes, bytes]:
    """The requester's blinded set (what it sends) and its blinding key a (what it keeps)."""
    from privacy._blind import blind, new_blinding_key
    from privacy._psi import normalize_identifiers

    a = new_blinding_key()
    items = normalize_identifiers(mine, element="uscc").items
    return JoinRequest("uscc", sorted(blind(items, a))).to_bytes(), a


def run_cohort(
    box: Sandbox,
    tmp_path: Path,
    mine: list[str],
    pk,
    *,
    code: str = COHORT_CODE,
    epsilon: str | None = "1/2",
) -> tuple[dict, dict, bytes]:
    """Offer, reply and sum; ``epsilon`` goes into the sum's params (None: left out)."""
    from sandbox._he import cohort_reply

    request, a = cohort_request(mine)
    (tmp_path / "c.bin").write_bytes(request)
    offer = run_approved(
        box,
        cohort_spec(
            {"name": "he_cohort", "params": COHORT_PARAMS},
            {"request": str(tmp_path / "c.bin")},
            code=code,
        ),
    )
    assert offer["state"] == "succeeded", offer["reason"]
    offered = box.result(offer["id"], user="bank").data
    (tmp_path / "d.bin").write_bytes(cohort_reply(offered, a))
    params = {
        **COHORT_PARAMS,
        "phase": "sum",
        "offer_job": offer["id"],
        "value_column": "tax_paid",
        "group_by": ["district"],
        "public_key": pk.to_json(),
        "partitions": 2,
        **({"epsilon": epsilon} if epsilon is not None else {}),
    }
    job = run_approved(
        box,
        cohort_spec(
            {"name": "he_cohort", "params": params},
            {"request": str(tmp_path / "d.bin")},
            code=code,
        ),
    )
    return offer, job, offered


@pytest.fixture
def cohort_box(box: Sandbox, settings, ids) -> Sandbox:
    contract = he_contract(COHORT_POLICY, code=COHORT_CODE, name="tax_cohort")
    publish_dataset(settings, contract, he_table(ids))
    return box


#: a contract without a sandbox.dp block: the he_cohort sum releases exact totals (as before)
EXACT_CODE = "SWJ-H006"
EXACT_POLICY = {k: v for k, v in COHORT_POLICY.items() if k != "dp"}


@pytest.fixture
def exact_cohort_box(box: Sandbox, settings, ids) -> Sandbox:
    contract = he_contract(EXACT_POLICY, code=EXACT_CODE, name="tax_cohort_exact")
    publish_dataset(settings, contract, he_table(ids))
    return box


def test_he_cohort_totals_equal_plaintext_over_the_intersection(
    exact_cohort_box, tmp_path, ids, keys
):
    """Without sandbox.dp the sum phase takes no ε and the totals and row counts are exact;
    k counts taxpayers (the privacy unit), not rows."""
    cohort_box = exact_cohort_box
    pk, sk = keys
    table = he_table(ids)
    # 10 members in 福田区 and 9 in 南山区 (20 and 18 rows: two tax years each), 1 member of
    # 盐田区 (2 rows), 6 outsiders: only 福田区 has k = 10 taxpayers
    members = ids[:19] + ids[-1:]
    mine = members + valid_usccs(6, seed=77)
    offer, job, offered = run_cohort(cohort_box, tmp_path, mine, pk, code=EXACT_CODE, epsilon=None)
    for x in ids:  # the offer holds the department's ids blinded only
        assert x.encode() not in offered
    assert offer["result"]["summary"]["offered"] == 60
    assert job["state"] == "succeeded", job["reason"]
    assert job["result"]["summary"]["cohort"] == 20
    out = decrypt_he_sum(cohort_box.result(job["id"], user="bank").data, sk)
    expected: dict[str, list[int]] = {}
    for x, d, v in zip(
        table["taxpayer_id"].to_pylist(),
        table["district"].to_pylist(),
        table["tax_paid"].to_pylist(),
        strict=True,
    ):
        if x in members:
            n, s = expected.get(d, [0, 0])
            expected[d] = [n + 1, s + fen(v)]
    assert [expected[d][0] for d in ("福田区", "南山区", "盐田区")] == [20, 18, 2]
    # 南山区: 18 rows ≥ k but 9 taxpayers < k — suppressed (rows would have released it)
    assert {r[0]: [r[1], r[2]] for r in out["rows"]} == {"福田区": expected["福田区"]}
    assert out["suppressed_groups"] == 2 and out["dp"] is None
    assert "epsilon" not in job["result"]["summary"]
    # one sum per offer: refused at submit, and by the worker (the state is gone)
    again_spec = cohort_spec(
        {
            "name": "he_cohort",
            "params": {
                **COHORT_PARAMS,
                "phase": "sum",
                "offer_job": offer["id"],
                "value_column": "tax_paid",
                "public_key": pk.to_json(),
            },
        },
        {"request": str(tmp_path / "d.bin")},
        code=EXACT_CODE,
    )
    with pytest.raises(PolicyRefused, match=rf"already has sum job {job['id']} \(released\)"):
        cohort_box.submit(again_spec, user="bank")
    forget_job(cohort_box, job["id"])
    again = run_approved(cohort_box, again_spec)
    assert again["state"] == "failed" and "one sum per offer" in again["reason"]
    # nothing was charged: the contract has no budget
    with cohort_box.factory() as s:
        from sandbox._ledger import DpLedgerEntry

        assert s.query(DpLedgerEntry).filter_by(dataset_code=EXACT_CODE).count() == 0


def test_he_cohort_small_cohort_refused_before_encryption(cohort_box, tmp_path, ids, keys):
    # 12 items pass the set-size check, but only 3 are taxpayers here: cohort 3 < k = 10
    mine = ids[:3] + valid_usccs(9, seed=78)
    offer, job, _ = run_cohort(cohort_box, tmp_path, mine, keys[0])
    assert offer["state"] == "succeeded"
    assert job["state"] == "failed"
    assert "cohort of 3 identifiers is under sandbox.min_group_size_k = 10" in job["reason"]
    assert not (cohort_box.job_dir(job["id"]) / "result" / "result.bin").exists()
    # the sum (ε = 1/2: the contract declares sandbox.dp) started, so its ε was drawn for good
    st = _cohort_budget(cohort_box)
    assert (st.epsilon_spent, st.epsilon_held) == (0, Fraction(1, 2))


def test_he_cohort_needs_the_declared_leakage(he_box, tmp_path, ids):
    # HE_POLICY leaves psi_keep_cohort_allowed at false (and he_cohort not allowed)
    request, _ = cohort_request(ids[:12])
    (tmp_path / "c.bin").write_bytes(request)
    policy = {**HE_POLICY, "allowed_computations": ["he_sum", "he_cohort"]}
    publish_dataset(
        he_box.settings, he_contract(policy, code="SWJ-H004", name="tax_nocohort"), he_table(ids)
    )
    s = cohort_spec(
        {"name": "he_cohort", "params": COHORT_PARAMS},
        {"request": str(tmp_path / "c.bin")},
        code="SWJ-H004",
    )
    with pytest.raises(PolicyRefused, match=r"sandbox\.psi_keep_cohort_allowed = false"):
        he_box.submit(s, user="bank")


# --- he_cohort under sandbox.dp (docs/he.md "Cohorts ... differential privacy") ------------------
SUM_PARAMS = {**COHORT_PARAMS, "phase": "sum", "offer_job": "A" * 22, "value_column": "tax_paid"}


def _fake_reply(tmp_path: Path) -> str:
    from sandbox._he import KIND_COHORT_REPLY

    p = tmp_path / "fake_reply.bin"
    p.write_bytes(pisum_pack(KIND_COHORT_REPLY, {"items": 0, "offer_sm3": "0" * 64}, b""))
    return str(p)


def _cohort_budget(box: Sandbox, code: str = COHORT_CODE):
    with box.factory() as s:
        return budget_status(
            s, requester="bank", dataset=code, epsilon_cap=Fraction(2001), delta_cap=Fraction(0)
        )


def test_he_cohort_dp_terms_refused_at_submit(cohort_box, settings, tmp_path, ids, keys):
    req = _fake_reply(tmp_path)
    base = {**SUM_PARAMS, "public_key": keys[0].to_json()}

    def submit(params: dict, code: str = COHORT_CODE, inp: str = req) -> dict:
        s = cohort_spec({"name": "he_cohort", "params": params}, {"request": inp}, code=code)
        return cohort_box.submit(s, user="bank")

    with pytest.raises(
        PolicyRefused, match=r"SWJ-H003 declares sandbox\.dp, so the he_cohort sum releases noisy"
    ):
        submit(base)
    with pytest.raises(PolicyRefused, match=r"ε = 1001 is above the per-query maximum 1000"):
        submit({**base, "epsilon": "1001"})
    with pytest.raises(JobSpecError, match=r"computation\.params\.epsilon: .*must be > 0"):
        submit({**base, "epsilon": "0"})
    (tmp_path / "c.bin").write_bytes(cohort_request(ids[:12])[0])
    with pytest.raises(PolicyRefused, match="the offer phase takes column and max_items only"):
        submit({**COHORT_PARAMS, "epsilon": "1/2"}, inp=str(tmp_path / "c.bin"))
    no_bounds = {**COHORT_POLICY, "dp": {**HE_DP, "bounds": {}}}
    publish_dataset(settings, he_contract(no_bounds, "SWJ-H007", "tax_nobounds"), he_table(ids))
    with pytest.raises(PolicyRefused, match=r"'tax_paid' has no clamp bounds"):
        submit({**base, "epsilon": "1/2"}, code="SWJ-H007")
    no_unit = tax_contract(sandbox=COHORT_POLICY, code="SWJ-H008", name="tax_nounit")
    publish_dataset(settings, no_unit, he_table(ids))
    with pytest.raises(PolicyRefused, match=r"SWJ-H008 declares no privacy_unit"):
        submit({**base, "epsilon": "1/2"}, code="SWJ-H008")
    publish_dataset(settings, he_contract(EXACT_POLICY, EXACT_CODE, "tax_exact"), he_table(ids))
    with pytest.raises(
        PolicyRefused, match=r"SWJ-H006 has no sandbox\.dp block.*leave epsilon out"
    ):
        submit({**base, "epsilon": "1/2"}, code=EXACT_CODE)
    offer = stored_job(cohort_box, "he_cohort", COHORT_PARAMS, code=EXACT_CODE)
    submit({**base, "offer_job": offer}, code=EXACT_CODE)  # exact totals: no dp block here
    st = _cohort_budget(cohort_box)
    assert (st.epsilon_spent, st.epsilon_held) == (0, 0)  # no refused job reserved anything


def test_he_cohort_dp_ledger_charged_exactly(cohort_box, tmp_path, keys):
    req = _fake_reply(tmp_path)
    base = {**SUM_PARAMS, "public_key": keys[0].to_json()}

    def submit(eps: str) -> dict:  # one sum per offer: each names an offer of its own
        offer = stored_job(cohort_box, "he_cohort", COHORT_PARAMS, code=COHORT_CODE)
        params = {**base, "epsilon": eps, "offer_job": offer}
        s = cohort_spec({"name": "he_cohort", "params": params}, {"request": req})
        return cohort_box.submit(s, user="bank")

    jobs = [submit(e) for e in ("1000", "1000", "1/2")]  # 2000 + 1/2 of the cap 2001
    assert _cohort_budget(cohort_box).epsilon_held == Fraction(4001, 2)
    with pytest.raises(BudgetExceeded, match=r"asks ε = 2/3.*remaining ε = 1/2 "):
        submit("2/3")
    submit("1/2")  # exactly the rest
    with pytest.raises(BudgetExceeded, match=r"asks ε = 1/1000.*remaining ε = 0 "):
        submit("1/1000")
    st = _cohort_budget(cohort_box)
    assert (st.epsilon_held, st.epsilon_spent, st.delta_held) == (2001, 0, 0)
    cohort_box.reject(jobs[2]["id"], user="swj_steward", reason="测试")  # returned: 1/2 free
    assert _cohort_budget(cohort_box).epsilon_held == Fraction(4001, 2)
    submit("1/2")
    with pytest.raises(BudgetExceeded):
        submit("1/1000")
    # psi_sum reveals share the (requester, dataset) budget
    with pytest.raises(BudgetExceeded, match=r"remaining ε = 0 "):
        cohort_box.submit(
            cohort_spec(
                {
                    "name": "psi_sum",
                    "params": {**PSI_PARAMS, "phase": "reveal", "epsilon": "1/1000",
                               "join_job": stored_join(cohort_box, COHORT_CODE)},
                },
                {"request": _fake_unmask(tmp_path)},
            ),
            user="bank",
        )  # fmt: skip


def _units_table() -> tuple[pa.Table, pa.Array]:
    """Crafted rows (storage order): unit A pays 1,300,000.00 元 in 福田区 (above the bound);
    B −50.00 (a net refund); C 100.00 in 南山区 first, then 12.34 in 福田区; D has no value; a row
    without a unit."""
    rows = [
        ("C", "南山区", "100.00"),
        ("A", "福田区", "600000.00"),
        ("B", "福田区", "-30.00"),
        ("A", "福田区", "700000.00"),
        ("C", "福田区", "12.34"),
        ("B", "福田区", "-20.00"),
        ("D", "福田区", None),
        (None, "福田区", "5.00"),
    ]
    units, district, paid = zip(*rows, strict=True)
    table = pa.table(
        {
            "district": pa.array(district, pa.string()),
            "tax_paid": pa.array(
                [None if v is None else Decimal(v) for v in paid], pa.decimal128(18, 2)
            ),
        }
    )
    return table, pa.array(units, pa.string())


@pytest.mark.parametrize(
    ("kw", "keys_", "counts", "sums", "suppressed", "dropped"),
    [
        pytest.param(  # C keeps its first group (南山区: its first row); A exactly the bound
            {"max_groups": 1}, [["南山区"], ["福田区"]], [1, 2], [10_000, 10**8 - 1_000], 0, 1,
            id="first-group-per-unit",
        ),
        pytest.param(
            {"max_groups": 2}, [["南山区"], ["福田区"]], [1, 3], [10_000, 10**8 - 1_000 + 1_234],
            0, 0, id="two-groups-per-unit",
        ),
        pytest.param(
            {"max_groups": 1, "min_units": 2}, [["福田区"]], [2], [10**8 - 1_000], 1, 1,
            id="k-suppression-counts-units",
        ),
        pytest.param(  # the public domain: every key, rows outside it dropped before bounding
            {"max_groups": 1, "domain": (("福田区", "罗湖区"),), "min_units": 99},
            [["福田区"], ["罗湖区"]], [3, 0], [10**8 - 1_000 + 1_234, 0], 0, 0,
            id="public-domain",
        ),
        pytest.param(  # no group-by: one cell per unit, C's rows summed (112.34)
            {"max_groups": 1, "group_by": []}, [[]], [3], [10**8 - 1_000 + 11_234], 0, 0,
            id="no-group-by",
        ),
    ],
)  # fmt: skip
def test_bounded_totals_clamp_each_unit_before_noise(kw, keys_, counts, sums, suppressed, dropped):
    """The seam of the exact values the noise is added to: a unit above the bound contributes
    exactly the bound (A: 1.3·10^8 fen → 10^8), one below it exactly the lower bound (B: −5,000
    fen → −1,000)."""
    from sandbox._he import bounded_totals

    table, units = _units_table()
    args = {"group_by": ["district"], "min_units": 0, **kw}
    bt = bounded_totals(
        table,
        units,
        value_column="tax_paid",
        value_scale=2,
        bounds=(-1_000, 10**8),
        **args,
    )
    assert bt.keys == keys_
    assert bt.counts.tolist() == counts and bt.sums.tolist() == sums
    assert (bt.suppressed, bt.dropped_cells) == (suppressed, dropped)
    assert bt.cell_value.min() >= -1_000 and bt.cell_value.max() <= 10**8
    assert int(bt.cell_value.sum()) == sum(sums)  # the partials add up to the totals


def test_cohort_dp_terms_are_pure_and_scale_is_sensitivity_over_epsilon():
    from privacy._dp import make_vector_laplace
    from sandbox._he import CohortDp, HeCohortParams

    def terms(dp: dict, group_by: list[str], eps: str = "3/4") -> CohortDp:
        contract = he_contract({**COHORT_POLICY, "dp": {**HE_DP, **dp}})
        params = HeCohortParams(
            phase="sum", column="taxpayer_id", max_items=100, offer_job="A" * 22,
            value_column="tax_paid", group_by=group_by, public_key="{}", epsilon=eps,
        )  # fmt: skip
        return CohortDp.build(params, contract)

    two = {"max_contributions": 3, "public_domains": {"district": ["福田区", "南山区"]}}
    t = terms(two, ["district"])
    assert (t.max_groups, t.sum_sensitivity, t.count_sensitivity) == (2, 2 * DELTA_FEN, 2)
    assert (t.epsilon_sum, t.epsilon_count) == (Fraction(3, 8), Fraction(3, 8))
    assert t.epsilon_sum + t.epsilon_count == t.epsilon == Fraction(3, 4)
    assert t.domain == (("福田区", "南山区"),)
    assert terms({"max_contributions": 3}, ["district"]).max_groups == 3  # groups from data
    assert terms({"max_contributions": 3}, []).max_groups == 1  # one total per unit
    _, _, doc = t.release(np.zeros(2, np.int64), np.zeros(2, np.int64))
    want = float(Fraction(2 * DELTA_FEN) / Fraction(3, 8))  # sensitivity / ε_sum
    assert doc["sum"]["scale"] == make_vector_laplace(2 * DELTA_FEN, Fraction(3, 8))[1]
    assert doc["scale"] == doc["sum"]["scale"] and abs(doc["scale"] / want - 1) < 1e-12
    assert abs(doc["count"]["scale"] / float(Fraction(2) / Fraction(3, 8)) - 1) < 1e-12
    assert doc["ci_halfwidth"] == laplace_accuracy(doc["scale"], 0.95)
    assert (doc["epsilon"], doc["sum"]["epsilon"], doc["count"]["epsilon"], doc["delta"]) == (
        "3/4",
        "3/8",
        "3/8",
        "0",
    )
    with pytest.raises(PolicyRefused, match="above the per-query maximum"):
        terms({}, [], eps="1001")


@pytest.mark.parametrize(
    "domain", [None, ["南山区", "福田区", "盐田区", "罗湖区"]], ids=["data-groups", "public-domain"]
)
def test_he_cohort_dp_totals_near_the_clamped_totals_and_charged(
    box, settings, tmp_path, ids, keys, domain
):
    """ε = 1000 (the test policy's per-query maximum): ε_sum = 500, scale 2·10^5 fen, so the
    decrypted totals sit within 30 scales of the clamped exact totals — far closer than the
    unclamped totals are; counts (scale 1/500) are the exact numbers of units."""
    pk, sk = keys
    code = "SWJ-H010"
    dp = {**HE_DP, **({"public_domains": {"district": domain}} if domain else {})}
    contract = he_contract({**COHORT_POLICY, "dp": dp}, code=code, name="tax_cohort_dp")
    table = he_table(ids)
    publish_dataset(settings, contract, table)
    members = ids[:40] + ids[-1:]  # 20 units each in 福田区/南山区, 1 in 盐田区
    _, job, _ = run_cohort(
        box, tmp_path, members + valid_usccs(6, seed=77), pk, code=code, epsilon="1000"
    )
    assert job["state"] == "succeeded", job["reason"]
    summary = job["result"]["summary"]
    assert summary["cohort"] == 41 and summary["partitions"] == 2
    assert (summary["epsilon"], summary["delta"], summary["mechanism"]) == (
        "1000",
        "0",
        "discrete_laplace",
    )
    assert summary["sensitivity"] == DELTA_FEN and summary["scale"] == DELTA_FEN / 500
    assert summary["count_sensitivity"] == 1
    assert summary["groups_from"] == ("public_domain" if domain else "data")
    data = box.result(job["id"], user="bank").data
    out = decrypt_he_sum(data, sk)
    totals = per_id_fen(table)
    district = dict(
        zip(table["taxpayer_id"].to_pylist(), table["district"].to_pylist(), strict=True)
    )
    exact: dict[str, list[int]] = {}
    for x in members:
        n, c, raw = exact.get(district[x], [0, 0, 0])
        exact[district[x]] = [n + 1, c + clamped_fen(totals[x]), raw + totals[x]]
    tol = 30 * DELTA_FEN / 500
    assert max(abs(raw - c) for _, c, raw in exact.values()) > 10 * tol  # clamping shows
    if domain:
        assert [r[0] for r in out["rows"]] == domain and out["suppressed_groups"] == 0
        exact["罗湖区"] = [0, 0, 0]
    else:  # 盐田区 (1 unit < k = 10) suppressed
        assert [r[0] for r in out["rows"]] == ["南山区", "福田区"]
        assert out["suppressed_groups"] == 1 and "盐田区" not in data.decode()
    for d, n, total in out["rows"]:
        assert n == exact[d][0]
        assert abs(total - exact[d][1]) <= tol
    assert out["dp"]["scale"] == DELTA_FEN / 500 and out["dp"]["bounds"] == [0, DELTA_FEN]
    st = _cohort_budget(box, code)
    assert (st.epsilon_spent, st.epsilon_held) == (1000, 0)  # spent at release


# --- the key stock (docs/he.md "Key stock"): single-use packs claimed by psi_sum joins -------------
STOCK_CODE = "SWJ-H005"
#: bounds wide enough for negative per-taxpayer totals (refunds)
SIGNED_POLICY = {**HE_POLICY, "dp": {**HE_DP, "bounds": {"tax_paid": [-1_000_000, 1_000_000]}}}


def signed_table(ids: list[str]) -> pa.Table:
    """Two rows per id; every third id has a negative total (net refund); all within bounds."""
    rows = []
    for i, x in enumerate(ids):
        a = Decimal((i * 7919) % 500_000_00) / 100
        b = -a - Decimal(i + 1) if i % 3 == 0 else Decimal(123_45 + i) / 100
        rows += [(x, "福田区", 2023, a), (x, "福田区", 2024, b)]
    cols = list(zip(*rows, strict=True))
    return pa.table(
        {
            "taxpayer_id": pa.array(cols[0], pa.string()),
            "district": pa.array(cols[1], pa.string()),
            "tax_year": pa.array(cols[2], pa.int64()),
            "tax_paid": pa.array(cols[3], pa.decimal128(18, 2)),
        }
    )


@pytest.fixture
def stock_box(box: Sandbox, settings, ids) -> Sandbox:
    contract = he_contract(SIGNED_POLICY, code=STOCK_CODE, name="tax_stock")
    publish_dataset(settings, contract, signed_table(ids))
    return box


def put_pack(box: Sandbox, sk, code: str, count: int, *, bits: int = 2048, tag: str = "a"):
    """A pack file in the stock, made with a shared test key (only key generation is skipped)."""
    from privacy._paillier import KeyPack, ObfuscatorPool
    from sandbox._he_stock import HeStock

    pack_id = f"20261129T0000{len(tag):02d}Z-{bits}-{count}-{tag * 8}"
    d = HeStock(box.root).dataset_dir(code, create=True)
    pool = ObfuscatorPool.precompute(sk, count, processes=1)
    KeyPack(sk, pool, {"dataset": code, "pack_id": pack_id}).save(d / f"{pack_id}.pack")
    return pack_id


def exact_reveal(box: Sandbox, job: dict, client: PiSumClient) -> int:
    """The department-side decryption without noise (key read from the join's state)."""
    from privacy._blind import pisum_unmask
    from privacy._digest import sm3_hex
    from privacy._paillier import PrivateKey

    doc = json.loads((box.job_dir(job["id"]) / "state" / "psi_sum.json").read_text())
    data = box.result(job["id"], user="bank").data
    unmask = client.finish(data)
    sk = PrivateKey.from_dict(doc["key"])
    return client.reveal(pisum_unmask(unmask, sk, sm3_hex(data))), sk


@pytest.mark.parametrize("spare", [5, -7], ids=["pack-covers", "pack-too-small"])
def test_psi_sum_join_with_a_stock_pack_is_exact(stock_box, tmp_path, ids, keys, spare):
    from sandbox._he_stock import HeStock

    sk = keys[1]
    table = signed_table(ids)
    totals = per_id_fen(table)
    assert sum(t < 0 for t in totals.values()) == 20  # negative totals included
    need = len(ids)  # distinct taxpayers encrypted by the join
    pack_id = put_pack(stock_box, sk, STOCK_CODE, need + spare)
    mine = ids[:30] + valid_usccs(5, seed=42)
    client, request, _ = PiSumClient.create(mine, element="uscc")
    (tmp_path / "j.bin").write_bytes(request.to_bytes())
    s = spec({"name": "psi_sum", "params": PSI_PARAMS}, {"request": str(tmp_path / "j.bin")})
    job = run_approved(stock_box, s.model_copy(update={"dataset": STOCK_CODE}))
    assert job["state"] == "succeeded", job["reason"]
    summary = job["result"]["summary"]
    covered = min(need, need + spare)
    assert (summary["key_source"], summary["stock_pack"]) == ("stock", pack_id)
    assert (summary["stock_obfuscators"], summary["fresh_obfuscators"]) == (
        covered,
        need - covered,
    )
    # single use: the pack left the stock and the job's state keeps only the key
    assert HeStock(stock_box.root).list(STOCK_CODE) == []
    claims = [e for e in stock_box.audit.store.entries() if e.action == "he_stock.claim"]
    assert [(e.subject, e.details["pack"], e.details["need"]) for e in claims] == [
        (f"job:{job['id']}", pack_id, need)
    ]
    assert sorted(p.name for p in (stock_box.job_dir(job["id"]) / "state").iterdir()) == [
        "psi_sum.json"
    ]
    total, used = exact_reveal(stock_box, job, client)
    assert used == sk  # the join used the pack's key
    assert client.cardinality == 30
    assert total == sum(totals[x] for x in ids[:30]) and total < sum(
        abs(totals[x]) for x in ids[:30]
    )


def test_psi_sum_reveal_works_with_the_stock_key(stock_box, tmp_path, ids, keys):
    sk = keys[1]
    put_pack(stock_box, sk, STOCK_CODE, len(ids))
    expected = sum(per_id_fen(signed_table(ids))[x] for x in ids[:20])
    client, request, _ = PiSumClient.create(ids[:20], element="uscc")
    (tmp_path / "j.bin").write_bytes(request.to_bytes())
    base = {"purpose": "银税互动: 申请企业纳税总额", "legal_basis": "企业授权书"}
    job = run_approved(
        stock_box,
        parse_job_spec(
            {
                **base,
                "dataset": STOCK_CODE,
                "computation": {"name": "psi_sum", "params": PSI_PARAMS},
                "inputs": {"request": str(tmp_path / "j.bin")},
            }
        ),
    )
    assert job["result"]["summary"]["key_source"] == "stock"
    # the join's declared items count towards the PSI quota, and the API reports the same count
    from datetime import UTC, datetime

    from api.crud import quota_usage
    from sandbox._service import usage_since

    with stock_box.factory() as s:
        used = usage_since(s, "bank", STOCK_CODE, datetime(2000, 1, 1, tzinfo=UTC))
        shown = quota_usage(session=s, user="bank", codes=[STOCK_CODE])
    assert (used.jobs, used.psi_items) == (1, PSI_PARAMS["max_items"])
    assert (shown[0]["jobs"], shown[0]["psi_items"]) == (1, PSI_PARAMS["max_items"])
    from typer.testing import CliRunner

    from govdx.cli._client import client_app

    joined = stock_box.result(job["id"], user="bank").data
    (tmp_path / "k.bin").write_bytes(joined)
    client.save(tmp_path / "s.json")
    client.save(tmp_path / "copy.json")  # a copy of the state, finished on its own below

    def finish(state: str, out: str) -> object:
        return CliRunner().invoke(
            client_app,
            ["psi-sum", "finish", "--result", str(tmp_path / "k.bin"), "--state",
             str(tmp_path / state), "--out", str(tmp_path / out), "--json"],
        )  # fmt: skip

    # finish run twice: the second reuses ρ, so the FIRST unmask request still reveals
    for made, out in enumerate(("u.bin", "u2.bin"), start=1):
        res = finish("s.json", out)
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["cardinality"] == 20
        assert json.loads(res.stdout)["unmask_requests"] == made
    assert (tmp_path / "u.bin").read_bytes() != (tmp_path / "u2.bin").read_bytes()
    assert finish("copy.json", "u3.bin").exit_code == 0  # another ρ
    # finishing a state with another join response (same request) is refused, state unchanged
    other = JoinResponse.from_bytes(joined)
    other = dataclasses.replace(other, pairs=other.pairs[:-1]).to_bytes()
    done = PiSumClient.load(tmp_path / "s.json")
    before = dict(done._s)
    with pytest.raises(PsiError, match="already finished another join response"):
        done.finish(other)
    assert done._s == before and len(before["unmask_sm3"]) == 2
    # another requester cannot reveal bank's join (submit-time, nothing reserved)
    reveal = {**PSI_PARAMS, "phase": "reveal", "join_job": job["id"], "epsilon": "1000"}
    reveal_spec = parse_job_spec(
        {
            **base,
            "dataset": STOCK_CODE,
            "computation": {"name": "psi_sum", "params": reveal},
            "inputs": {"request": str(tmp_path / "u.bin")},
        }
    )
    with pytest.raises(PolicyRefused, match=rf"job {job['id']} was submitted by another"):
        stock_box.submit(reveal_spec, user="bank2")
    job2 = run_approved(stock_box, reveal_spec)
    assert job2["state"] == "succeeded", job2["reason"]
    data = stock_box.result(job2["id"], user="bank").data
    client = PiSumClient.load(tmp_path / "s.json")
    released = client.reveal(data)
    assert abs(released - expected) <= 30 * DELTA_FEN / 1000  # ε = 1000: scale 10^5 fen
    assert not (stock_box.job_dir(job["id"]) / "state" / "psi_sum.json").exists()
    # the copy's ρ is not the one the reveal answered: said so, not "tampered or wrong key"
    with pytest.raises(
        PsiError, match=r"an unmask request this state did not make \(响应与请求不匹配\)"
    ):
        PiSumClient.load(tmp_path / "copy.json").reveal(data)
    # the client CLI prints the DP terms beside the sum
    (tmp_path / "v.bin").write_bytes(data)
    args = [
        "psi-sum",
        "reveal",
        "--result",
        str(tmp_path / "v.bin"),
        "--state",
        str(tmp_path / "s.json"),
    ]
    res = CliRunner().invoke(client_app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert (doc["sum"], doc["cardinality"], doc["scale"]) == (released, 20, 2)
    assert (doc["dp"]["mechanism"], doc["dp"]["epsilon"], doc["dp"]["scale"]) == (
        "discrete_laplace",
        "1000",
        DELTA_FEN * 2 / 1000,
    )
    text = CliRunner().invoke(client_app, args).stdout
    assert "ε = 1000" in text and f"± {doc['dp']['ci_halfwidth']}" in text


def test_two_claims_never_get_the_same_pack(box, keys, tmp_path, monkeypatch):
    import threading

    from sandbox._he_stock import HeStock

    sk = keys[1]
    stock = HeStock(box.root)
    p1 = put_pack(box, sk, CODE, 40, tag="a")
    p2 = put_pack(box, sk, CODE, 50, tag="bb")
    stale = stock.list(CODE)  # what a second claimer listed before the first renamed
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    (tmp_path / "C").mkdir()
    first = stock.claim(CODE, bits=2048, need=30, dest_dir=tmp_path / "A")
    assert first is not None and first.info.pack_id == p1  # the smallest that covers
    monkeypatch.setattr(HeStock, "list", lambda self, code=None, **kw: stale)
    second = stock.claim(CODE, bits=2048, need=30, dest_dir=tmp_path / "B")
    assert second is not None and second.info.pack_id == p2  # p1's rename failed: next one
    assert stock.claim(CODE, bits=2048, need=30, dest_dir=tmp_path / "C") is None
    assert not (tmp_path / "C" / "he_pack.pack").exists()
    with pytest.raises(Exception, match="already there"):  # a claimed pack is never reused
        stock.claim(CODE, bits=2048, need=30, dest_dir=tmp_path / "A")
    monkeypatch.undo()
    # real concurrency: 8 threads, 3 packs → exactly 3 claims, all different
    for t in ("c", "dd", "eee"):
        put_pack(box, sk, CODE, 10, tag=t)
    got: list[str] = []

    def claim(i: int) -> None:
        d = tmp_path / f"t{i}"
        d.mkdir()
        c = stock.claim(CODE, bits=2048, need=10, dest_dir=d)
        if c is not None:
            got.append(c.info.pack_id)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 3 and len(set(got)) == 3 and stock.list(CODE) == []


def test_packs_of_another_dataset_or_size_are_never_used(box, keys, tmp_path):
    from sandbox._he_stock import HeStock

    sk = keys[1]
    stock = HeStock(box.root)
    other = put_pack(box, sk, "SWJ-OTHER", 40)
    wide = put_pack(box, sk, CODE, 40, bits=3072, tag="w")  # named 3072: skipped unopened
    state = tmp_path / "state"
    state.mkdir()
    assert stock.claim(CODE, bits=2048, need=10, dest_dir=state) is None
    assert [i.pack_id for i in stock.list()] == [wide, other]  # by dataset code
    # a pack moved into the wrong dataset's folder is claimed, refused and destroyed
    src = stock.dataset_dir("SWJ-OTHER") / f"{other}.pack"
    src.rename(stock.dataset_dir(CODE) / src.name)
    assert stock.claim(CODE, bits=2048, need=10, dest_dir=state) is None
    assert [i.pack_id for i in stock.list()] == [wide]
    assert list(state.iterdir()) == []


def test_make_stock_modes_size_roles_and_audit(stock_box, settings):
    from sandbox import PermissionDenied
    from sandbox._he_stock import HeStock, list_stock, make_stock

    seen: list[tuple[int, int, int]] = []
    made = make_stock(
        stock_box,
        user="swj_steward",
        dataset=STOCK_CODE,
        processes=1,
        progress=lambda i, d, t: seen.append((i, d, t)),
    )
    assert [(m["dataset"], m["bits"], m["count"]) for m in made] == [(STOCK_CODE, 2048, 60)]
    assert seen[-1] == (0, 60, 60)  # sized to the 60 distinct taxpayers (120 rows)
    d = HeStock(stock_box.root).dataset_dir(STOCK_CODE)
    for p in (d.parent.parent, d.parent, d):
        assert p.stat().st_mode & 0o777 == 0o700
    (f,) = d.iterdir()
    assert f.stat().st_mode & 0o777 == 0o600 and f.name == f"{made[0]['pack_id']}.pack"
    assert list_stock(stock_box, user="root") == made
    assert list_stock(stock_box, user="scjg_steward") == []  # another department's stock
    for who in ("bank", "scjg_steward", "rev1"):
        with pytest.raises(PermissionDenied, match="may not fill the key stock of SWJ-H005"):
            make_stock(stock_box, user=who, dataset=STOCK_CODE, size=5)
    entries = stock_box.audit.store.entries()
    mk = [e for e in entries if e.action == "he_stock.make"]
    assert [(e.actor, e.subject, e.details["pack_id"]) for e in mk] == [
        ("swj_steward", f"dataset:{STOCK_CODE}", made[0]["pack_id"])
    ]
    assert sum(e.action == "he_stock.refuse" for e in entries) == 3


def test_make_stock_refused_where_psi_sum_is_not_allowed(box, settings, ids):
    from sandbox import Refused
    from sandbox._he_stock import HeStock, make_stock

    code = "SWJ-H009"
    policy = {**HE_POLICY, "allowed_computations": ["he_sum"]}
    publish_dataset(settings, he_contract(policy, code=code, name="tax_no_psi_sum"), he_table(ids))
    with pytest.raises(Refused, match=r"SWJ-H009 does not allow psi_sum"):
        make_stock(box, user="root", dataset=code, size=5)
    assert HeStock(box.root).list(code) == []
    refusals = [e for e in box.audit.store.entries() if e.action == "he_stock.refuse"]
    assert [e.subject for e in refusals] == [f"dataset:{code}"]


def test_he_cohort_through_the_client_cli(cohort_box, tmp_path, ids, keys):
    from typer.testing import CliRunner

    from govdx.cli._client import client_app

    pk, sk = keys
    runner = CliRunner()
    mine = ids[:14] + valid_usccs(6, seed=77)
    (tmp_path / "ids.csv").write_text(
        "uscc\n" + "".join(f"{x}\n" for x in mine) + "91BAD\n", encoding="utf-8"
    )
    state = tmp_path / "c.json"
    res = runner.invoke(
        client_app,
        ["he-cohort", "request", "--ids", str(tmp_path / "ids.csv"), "--column", "uscc",
         "--out", str(tmp_path / "J.bin"), "--state", str(state), "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["items"] == 20 and json.loads(res.output)["rejected"] == 1
    assert state.stat().st_mode & 0o777 == 0o600
    sent = (tmp_path / "J.bin").read_bytes()
    assert all(x.encode() not in sent for x in mine)
    offer = run_approved(
        cohort_box,
        cohort_spec(
            {"name": "he_cohort", "params": COHORT_PARAMS}, {"request": str(tmp_path / "J.bin")}
        ),
    )
    assert offer["state"] == "succeeded", offer["reason"]
    (tmp_path / "C.bin").write_bytes(cohort_box.result(offer["id"], user="bank").data)
    res = runner.invoke(
        client_app,
        ["he-cohort", "reply", "--result", str(tmp_path / "C.bin"), "--state", str(state),
         "--out", str(tmp_path / "D.bin"), "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["offered"] == 60
    # the state of another request does not fit this offer: refused, not a silent wrong reply
    other = runner.invoke(
        client_app,
        ["he-cohort", "request", "--ids", str(tmp_path / "ids.csv"), "--column", "uscc",
         "--out", str(tmp_path / "J2.bin"), "--state", str(tmp_path / "other.json")],
    )  # fmt: skip
    assert other.exit_code == 0, other.output
    bad = runner.invoke(
        client_app,
        ["he-cohort", "reply", "--result", str(tmp_path / "C.bin"), "--state",
         str(tmp_path / "other.json"), "--out", str(tmp_path / "D3.bin")],
    )  # fmt: skip
    assert bad.exit_code == 1 and "响应与请求不匹配" in bad.output
    assert "answers another request" in bad.output and not (tmp_path / "D3.bin").exists()
    params = {
        **COHORT_PARAMS,
        "phase": "sum",
        "offer_job": offer["id"],
        "value_column": "tax_paid",
        "public_key": pk.to_json(),
        "epsilon": "1000",  # the contract declares sandbox.dp: noisy totals
    }
    sum_spec = cohort_spec(
        {"name": "he_cohort", "params": params}, {"request": str(tmp_path / "D.bin")}
    )
    with pytest.raises(PolicyRefused, match=rf"job {offer['id']} was submitted by another"):
        cohort_box.submit(sum_spec, user="bank2")  # another requester cannot burn bank's offer
    job = run_approved(cohort_box, sum_spec)
    assert job["state"] == "succeeded", job["reason"]
    assert job["result"]["summary"]["cohort"] == 14
    data = cohort_box.result(job["id"], user="bank").data
    (tmp_path / "r.json").write_bytes(data)
    sk.save(tmp_path / "sk.json")
    out = decrypt_he_sum(data, sk)
    totals = per_id_fen(he_table(ids))
    expected = sum(clamped_fen(totals[x]) for x in ids[:14])  # no group-by: one cell per unit
    ((n, total),) = out["rows"]
    assert n == 14  # privacy units; noise scale 1/500 (P(n ≠ 14) ≈ 10^-217)
    assert abs(total - expected) <= 30 * DELTA_FEN / 500  # ε_sum = 500: scale 2·10^5 fen
    res = runner.invoke(
        client_app,
        ["decrypt", "--result", str(tmp_path / "r.json"), "--key", str(tmp_path / "sk.json"),
         "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["rows"] == out["rows"]
    assert (doc["dp"]["epsilon"], doc["dp"]["sum"]["epsilon"], doc["dp"]["scale"]) == (
        "1000",
        "500",
        DELTA_FEN / 500,
    )
    text = runner.invoke(
        client_app,
        ["decrypt", "--result", str(tmp_path / "r.json"), "--key", str(tmp_path / "sk.json")],
    ).stdout
    assert "ε = 1000 (sums 500, counts 500)" in text and "δ = 0" in text
    assert f"sum ± {doc['dp']['ci_halfwidth']} (95% per group" in text
    assert f"n ± {doc['dp']['count']['ci_halfwidth']} (95% per group" in text
    assert doc["dp"]["groups_from"] == "none"
    bad = runner.invoke(
        client_app,
        ["he-cohort", "reply", "--result", str(tmp_path / "J.bin"), "--state", str(state),
         "--out", str(tmp_path / "D2.bin"), "--json"],
    )  # fmt: skip
    assert bad.exit_code == 1 and "expected 'C'" in bad.output


# --- the second job must name the requester's own, unused first job (submit-time) ---------------
def test_reveal_and_cohort_sum_name_the_requesters_own_unused_first_job(
    cohort_box, settings, tmp_path, ids, keys
):
    """A psi_sum reveal (he_cohort sum) is refused at submit — before approval, nothing reserved —
    unless it names an existing psi_sum join (he_cohort offer) of the same requester, on the same
    dataset, succeeded or released, with no other reveal (sum) already naming it."""
    from sandbox._ledger import DpLedgerEntry

    unmask, reply = _fake_unmask(tmp_path), _fake_reply(tmp_path)
    reveal = {**PSI_PARAMS, "phase": "reveal", "epsilon": "1/2"}
    csum = {**SUM_PARAMS, "public_key": keys[0].to_json(), "epsilon": "1/2"}

    def submit(comp: str, params: dict, user: str = "bank", code: str = COHORT_CODE) -> dict:
        inp = unmask if comp == "psi_sum" else reply
        s = cohort_spec({"name": comp, "params": params}, {"request": inp}, code=code)
        return cohort_box.submit(s, user=user)

    join = stored_join(cohort_box, COHORT_CODE)
    offer = stored_job(cohort_box, "he_cohort", COHORT_PARAMS, code=COHORT_CODE)
    refused = [
        ("psi_sum", "join_job", "A" * 22, r"join_job: there is no job A{22}"),
        ("psi_sum", "join_job", stored_join(cohort_box, COHORT_CODE, requester="bank2"),
         r"was submitted by another requester; only its own requester may reveal it"),
        ("psi_sum", "join_job", offer, r"is a he_cohort job, not a psi_sum join"),
        ("psi_sum", "join_job", stored_join(cohort_box, CODE),
         r"ran on dataset SWJ-H001, not SWJ-H003"),
        ("psi_sum", "join_job", stored_join(cohort_box, COHORT_CODE, state="running"),
         r"is running \(运行中\); the reveal phase needs it succeeded or released"),
        ("he_cohort", "offer_job", stored_job(cohort_box, "he_cohort", COHORT_PARAMS,
                                              code=COHORT_CODE, requester="bank2"),
         r"only its own requester may sum it"),
        ("he_cohort", "offer_job", join, r"is a psi_sum job of phase 'join', not a he_cohort offer"),
    ]  # fmt: skip
    for comp, key, first, match in refused:
        params = {**(reveal if comp == "psi_sum" else csum), key: first}
        with pytest.raises(PolicyRefused, match=match):
            submit(comp, params)
        assert first in str(cohort_box.audit.store.entries()[-1].details["reason"])
    # the refusals reserved nothing; bank2 was never charged for bank's join
    with cohort_box.factory() as s:
        assert s.query(DpLedgerEntry).count() == 0
    # bank's own join and offer: accepted once each, then "one reveal / one sum per first job"
    first_reveal = submit("psi_sum", {**reveal, "join_job": join})
    first_sum = submit("he_cohort", {**csum, "offer_job": offer})
    assert first_reveal["state"] == first_sum["state"] == "awaiting_approval"
    with pytest.raises(PolicyRefused, match=rf"already has reveal job {first_reveal['id']} "):
        submit("psi_sum", {**reveal, "join_job": join})
    with pytest.raises(PolicyRefused, match=rf"already has sum job {first_sum['id']} "):
        submit("he_cohort", {**csum, "offer_job": offer})
    # a cancelled reveal never used the key: the join may be revealed again
    cohort_box.cancel(first_reveal["id"], user="bank")
    assert submit("psi_sum", {**reveal, "join_job": join})["state"] == "awaiting_approval"
    # a sum that started consumed its offer, whatever became of it (the state is deleted)
    used = stored_job(cohort_box, "he_cohort", COHORT_PARAMS, code=COHORT_CODE)
    stored_job(cohort_box, "he_cohort", {**csum, "offer_job": used}, code=COHORT_CODE,
               state="cancelled", attempts=1)  # fmt: skip
    with pytest.raises(
        PolicyRefused, match=r"already has sum job .* \(cancelled\).*it started, which consumes"
    ):
        submit("he_cohort", {**csum, "offer_job": used})
    # exact totals (no sandbox.dp: no ε, no ledger) are checked just the same
    publish_dataset(settings, he_contract(EXACT_POLICY, EXACT_CODE, "tax_exact"), he_table(ids))
    exact = {k: v for k, v in csum.items() if k != "epsilon"}
    theirs = stored_job(cohort_box, "he_cohort", COHORT_PARAMS, code=EXACT_CODE, requester="bank2")
    with pytest.raises(PolicyRefused, match=rf"offer_job: job {theirs} was submitted by another"):
        submit("he_cohort", {**exact, "offer_job": theirs}, code=EXACT_CODE)
    mine = stored_job(cohort_box, "he_cohort", COHORT_PARAMS, code=EXACT_CODE)
    assert submit("he_cohort", {**exact, "offer_job": mine}, code=EXACT_CODE)["state"] == (
        "awaiting_approval"
    )


def test_a_pack_put_back_after_its_claim_is_destroyed_not_reused(box, keys, tmp_path):
    """A pack file restored after its claim (a backup) or copied under another name is never
    claimed again: the claim left a durable marker; the copy is destroyed and audited."""
    from sandbox._he_stock import HeStock

    events: list[tuple[str, dict]] = []
    stock = HeStock(box.root, audit=lambda e, d: events.append((e, d)))
    pid = put_pack(box, keys[1], CODE, 20)
    path = stock.dataset_dir(CODE) / f"{pid}.pack"
    backup = path.read_bytes()
    for d in ("A", "B", "C"):
        (tmp_path / d).mkdir()
    first = stock.claim(CODE, bits=2048, need=10, dest_dir=tmp_path / "A")
    assert first is not None and first.info.pack_id == pid
    first.burn()
    marker = stock.used_dir / pid
    assert (marker.stat().st_mode & 0o777, stock.used_dir.stat().st_mode & 0o777) == (0o600, 0o700)
    assert json.loads(marker.read_text())["fingerprint"] == keys[1].public.fingerprint
    path.write_bytes(backup)  # restored from a backup
    assert stock.list(CODE) == []  # not shown as stock
    assert [i.pack_id for i in stock.list(CODE, verify=False)] == [pid]
    assert stock.claim(CODE, bits=2048, need=10, dest_dir=tmp_path / "B") is None
    assert not path.exists() and list((tmp_path / "B").iterdir()) == []
    assert [e for e, _ in events] == ["he_stock.claim", "he_stock.reuse_refused"]
    assert (events[1][1]["pack"], events[1][1]["dataset"]) == (pid, CODE)
    # the same bytes under a fresh name: the header's pack id is not the file's; destroyed
    renamed = stock.dataset_dir(CODE) / f"{pid[:-8]}{'z' * 8}.pack"
    renamed.write_bytes(backup)
    assert stock.list(CODE) == []
    assert stock.claim(CODE, bits=2048, need=10, dest_dir=tmp_path / "C") is None
    assert not renamed.exists() and len(events) == 2
    # a pack whose header names another dataset than its folder is not listed either
    other = put_pack(box, keys[1], "SWJ-OTHER", 5, tag="o")
    moved = stock.dataset_dir("SWJ-OTHER") / f"{other}.pack"
    moved.rename(stock.dataset_dir(CODE) / moved.name)
    assert stock.list(CODE) == [] and stock.list() == []
    assert [i.pack_id for i in stock.list(verify=False)] == [other]


@pytest.mark.parametrize("data", [b"GDXH\x01V\x00\x00\x00\x02{}", b"\xff\xfe", b'{"format": "x"}'])
def test_client_decrypt_names_a_file_that_is_not_an_he_sum_result(tmp_path, keys, data):
    from typer.testing import CliRunner

    from govdx.cli._client import client_app

    keys[1].save(tmp_path / "sk.json")
    (tmp_path / "r.bin").write_bytes(data)
    res = CliRunner().invoke(
        client_app,
        ["decrypt", "--result", str(tmp_path / "r.bin"), "--key", str(tmp_path / "sk.json")],
    )
    assert res.exit_code == 1
    assert "r.bin: not a govdx he_sum result" in " ".join(res.output.split())
