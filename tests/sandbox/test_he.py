"""psi_sum and he_sum jobs end to end: results equal the plaintext computation on seeded data
(exact integers in fen, negatives included); the department never receives the requester's
identifiers in the clear; bad input is refused before any encryption; small groups suppressed."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from sandbox_testdata import AGG_POLICY, publish_dataset, tax_contract, valid_usccs

from privacy._blind import JoinRequest, PiSumClient
from privacy._paillier import HeDecryptionError, PhePaillier, PublicKey
from sandbox import PolicyRefused, Sandbox, decrypt_he_sum, parse_job_spec

HE_POLICY = {
    **AGG_POLICY,
    "allowed_computations": ["psi_sum", "he_sum"],
    "sum_columns": ["tax_paid"],
    "min_group_size_k": 10,
}
CODE = "SWJ-H001"


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
    publish_dataset(
        settings, tax_contract(sandbox=HE_POLICY, code=CODE, name="tax_he"), he_table(ids)
    )
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


def test_psi_sum_equals_plaintext_and_hides_identifiers(he_box, tmp_path, ids):
    table = he_table(ids)
    others = valid_usccs(15, seed=99)
    mine = ids[:25] + others
    raw = [f"  {x.lower()} " if i % 5 == 0 else x for i, x in enumerate(mine)]
    expected = sum(
        fen(v)
        for x, v in zip(
            table["taxpayer_id"].to_pylist(), table["tax_paid"].to_pylist(), strict=True
        )
        if x in set(ids[:25])
    )
    assert any(fen(v) < 0 for v in table["tax_paid"].to_pylist())

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
    reveal = {**PSI_PARAMS, "phase": "reveal", "join_job": join_id}
    job2 = run_approved(he_box, spec({"name": "psi_sum", "params": reveal}, {"request": str(um)}))
    assert job2["state"] == "succeeded", job2["reason"]
    assert client.reveal(he_box.result(job2["id"], user="bank").data) == expected
    # one reveal per join: the department key is gone
    job3 = run_approved(he_box, spec({"name": "psi_sum", "params": reveal}, {"request": str(um)}))
    assert job3["state"] == "failed" and "one reveal per join" in job3["reason"]


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
    reveal = {**PSI_PARAMS, "phase": "reveal", "join_job": job["id"]}
    job2 = run_approved(
        he_box, spec({"name": "psi_sum", "params": reveal}, {"request": str(tmp_path / "u.bin")})
    )
    assert job2["state"] == "succeeded"
    with pytest.raises(HeDecryptionError):
        client.reveal(he_box.result(job2["id"], user="bank").data)


def test_psi_sum_set_under_k_fails_before_encryption(he_box, tmp_path, ids):
    _client, request, _ = PiSumClient.create(ids[:3], element="uscc")
    (tmp_path / "j.bin").write_bytes(request.to_bytes())
    job = run_approved(
        he_box,
        spec({"name": "psi_sum", "params": PSI_PARAMS}, {"request": str(tmp_path / "j.bin")}),
    )
    assert job["state"] == "failed"
    assert "holds 3 items, under sandbox.min_group_size_k = 10" in job["reason"]
    assert not (he_box.job_dir(job["id"]) / "state").exists()


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
