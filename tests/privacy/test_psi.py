"""PSI (OpenMined ECDH-PSI wrapped): normalisation, exact results against a plain set
intersection, no plaintext on the wire, message validation, policy refusals, empty sets."""

from __future__ import annotations

import json
import random
import stat
import struct
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy._errors import PrivacyError
from privacy._psi import (
    PSI_FORMAT_VERSION,
    PsiClientSession,
    PsiError,
    PsiPolicyError,
    PsiRequest,
    PsiResponse,
    normalize_identifiers,
    psi_bucket_of,
    psi_serve,
)
from quality import is_valid_uscc, org_code_check_char, resident_id_check_char, uscc_check_char

FULLWIDTH = {ord(c): ord(c) + 0xFEE0 for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def make_uscc(rng: random.Random) -> str:
    """A valid USCC (GB 32100-2015): 9 1 350100, a digits-only org code with its GB 11714 check."""
    org8 = "".join(rng.choice("0123456789") for _ in range(8))
    first17 = "91350100" + org8 + org_code_check_char(org8)
    return first17 + uscc_check_char(first17)


def usccs(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out: dict[str, None] = {}
    while len(out) < n:
        out[make_uscc(rng)] = None
    return list(out)


def messy(value: str, i: int) -> str:
    """One of several spellings of the same identifier."""
    return [
        value,
        value.lower(),
        value.translate(FULLWIDTH),
        f" {value[:9]} {value[9:]}\u3000",
        f"\u00a0{value}\ufeff",
    ][i % 5]


@pytest.fixture(scope="module")
def data() -> dict[str, object]:
    """Client 2,000 × server 3,000 distinct USCCs, overlap exactly 700; the client list is
    messed up (spellings, duplicates, blanks), the server list has duplicates too."""
    pool = usccs(4300, seed=20240601)
    client_norm = pool[:2000]
    server_norm = pool[1300:4300]
    rng = random.Random(7)
    raw_client = [messy(v, i) for i, v in enumerate(client_norm)]
    raw_client += [messy(v, i + 1) for i, v in enumerate(client_norm[:300])]  # duplicates
    raw_client += [None, "", "   "]
    rng.shuffle(raw_client)
    raw_server = server_norm + server_norm[:50]
    expected_order = normalize_identifiers(raw_client, element="uscc").items
    inter = set(client_norm) & set(server_norm)
    assert len(inter) == 700
    return {
        "raw_client": raw_client,
        "raw_server": raw_server,
        "client_order": expected_order,
        "inter": inter,
        "client_norm": client_norm,
        "server_norm": server_norm,
    }


def run(
    raw_client,
    raw_server,
    *,
    reveal: bool,
    buckets: int = 1,
    processes: int = 1,
    element: str = "uscc",
):
    session, request = PsiClientSession.create(
        raw_client,
        reveal_intersection=reveal,
        buckets=buckets,
        element=element,
        processes=processes,
    )
    req_bytes = request.to_bytes()
    response = psi_serve(
        raw_server,
        req_bytes,
        processes=processes,
        allow_reveal=reveal,
        max_buckets=buckets,
    )
    resp_bytes = response.to_bytes()
    return session.finish(resp_bytes, processes=processes), req_bytes, resp_bytes


# --- normalisation ------------------------------------------------------------------------------
def test_normalize_formatting_variants_collapse() -> None:
    v = "91350100M000100Y43"
    raw = [
        v.lower(),
        v.translate(FULLWIDTH),
        f"\u3000{v[:4]} {v[4:]}\u00a0",
        f"\ufeff{v}\u200b",
        None,
        "",
        " \t\u3000",
        "11010519491231002x",
    ]
    ns = normalize_identifiers(raw, element="identifier")
    assert ns.items == [v, "11010519491231002X"]
    assert ns.rejected == []
    assert ns.empty == 3
    assert ns.duplicates == 3
    assert unicodedata.is_normalized("NFKC", "".join(ns.items))


def test_normalize_uscc_rejects_with_reasons() -> None:
    good = "91350100M000100Y43"
    assert is_valid_uscc(good)
    org_bad17 = "91350100M000100Y5"  # org code check char should be 4
    org_bad = org_bad17 + uscc_check_char(org_bad17)
    raw = [good, "91350100M000100Y44", "91350100M00010", "91350100I000100Y43", org_bad, good]
    ns = normalize_identifiers(raw, element="uscc")
    assert ns.items == [good]
    assert ns.rejected == [
        (1, "check character mismatch (校验码错误)"),
        (2, "length 14, expected 18 (长度错误)"),
        (3, "character outside the allowed set (字符集错误)"),
        (4, "organisation code check mismatch (组织机构代码校验码错误)"),
    ]
    assert ns.duplicates == 1


def test_normalize_resident_id_rejects_with_reasons() -> None:
    bad_date17 = "11010519491331002"  # month 13
    bad_date = bad_date17 + resident_id_check_char(bad_date17)
    raw = [
        "11010519491231002x",
        "110105491231002",
        "110105194912310021",
        bad_date,
        "1101051949123100AX",
    ]
    ns = normalize_identifiers(raw, element="resident_id")
    assert ns.items == ["11010519491231002X"]
    assert ns.rejected == [
        (1, "legacy 15-digit number, upgrade to 18 first (15位旧号码)"),
        (2, "check character mismatch (校验码错误)"),
        (3, "birth date is not a calendar date (出生日期错误)"),
        (4, "character outside the allowed set (字符集错误)"),
    ]


def test_normalize_refuses_unknown_element_and_non_strings() -> None:
    with pytest.raises(PsiError, match="unknown PSI element 'phone'"):
        normalize_identifiers(["a"], element="phone")
    with pytest.raises(PsiError, match="index 1 is int"):
        normalize_identifiers(["a", 5], element="identifier")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=12)), max_size=20))
def test_normalize_is_idempotent(values: list[str | None]) -> None:
    once = normalize_identifiers(values, element="identifier").items
    assert normalize_identifiers(once, element="identifier").items == once
    assert len(set(once)) == len(once)
    assert all(once)


def test_bucket_hash_is_sm3_prefix() -> None:
    # GB/T 32905-2016 test vector: SM3("abc") = 66c7f0f4 62eeedd9 ...
    assert psi_bucket_of(["abc"], 1000).tolist() == [0x66C7F0F4 % 1000]
    assert psi_bucket_of(["abc", "x"], 1).tolist() == [0, 0]


# --- protocol results ---------------------------------------------------------------------------
@pytest.mark.parametrize("buckets", [1, 4])
@pytest.mark.parametrize("reveal", [False, True], ids=["cardinality", "reveal"])
def test_psi_equals_plain_intersection(data, reveal: bool, buckets: int) -> None:
    outcome, _, _ = run(data["raw_client"], data["raw_server"], reveal=reveal, buckets=buckets)
    assert outcome.cardinality == 700
    if reveal:
        assert set(outcome.intersection) == data["inter"]
        assert outcome.intersection == [x for x in data["client_order"] if x in data["inter"]]
    else:
        assert outcome.intersection is None


@pytest.mark.parametrize("reveal", [False, True], ids=["cardinality", "reveal"])
def test_psi_with_worker_processes(data, reveal: bool) -> None:
    # 2,000 client items over 2 processes → chunks of 2,048/… : exercises the pool and merging
    client = data["client_norm"] + usccs(2500, seed=99)
    outcome, _, _ = run(client, data["raw_server"], reveal=reveal, buckets=2, processes=2)
    inter = set(client) & set(data["server_norm"])
    assert outcome.cardinality == len(inter)
    if reveal:
        assert outcome.intersection == [x for x in client if x in inter]


def test_messages_carry_no_plaintext(data) -> None:
    _, req_bytes, resp_bytes = run(data["raw_client"], data["raw_server"], reveal=True, buckets=4)
    client_strings = {v for v in data["raw_client"] if v and v.strip()} | set(data["client_norm"])
    for v in client_strings:
        for enc in ("utf-8", "utf-16-le"):
            assert v.encode(enc) not in req_bytes
    for v in data["server_norm"]:
        assert v.encode() not in resp_bytes
        assert v.encode() not in req_bytes
    # ≈ 35 bytes per distinct client item (33-byte compressed P-256 points + protobuf tags)
    assert 2000 * 35 <= len(req_bytes) < 2000 * 35 + 400


def test_session_save_load(tmp_path: Path, data) -> None:
    session, request = PsiClientSession.create(
        data["raw_client"], reveal_intersection=True, buckets=4, element="uscc"
    )
    path = session.save(tmp_path / "psi-session.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["version"] == PSI_FORMAT_VERSION and len(doc["bucket_of"]) == 2000
    assert "key_b64" not in repr(session) and doc["key_b64"] not in repr(session)
    loaded = PsiClientSession.load(path)
    assert loaded.items == session.items and loaded.bucket_of == session.bucket_of
    response = psi_serve(
        data["raw_server"], request.to_bytes(), processes=1, allow_reveal=True, max_buckets=4
    )
    outcome = loaded.finish(response.to_bytes())
    assert outcome.cardinality == 700
    assert set(outcome.intersection) == data["inter"]


def test_session_load_refuses_bad_file(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"format": "govdx-psi-client-session", "version": 1}), encoding="utf-8")
    with pytest.raises(PsiError, match=r"s\.json: header key 'items' missing"):
        PsiClientSession.load(p)
    p.write_text("{nope", encoding="utf-8")
    with pytest.raises(PsiError, match="cannot read the PSI session"):
        PsiClientSession.load(p)


def test_response_bound_to_its_request(data) -> None:
    s1, r1 = PsiClientSession.create(["A", "B"], reveal_intersection=False)
    _, r2 = PsiClientSession.create(["A", "B"], reveal_intersection=False)
    response = psi_serve(["A"], r2, processes=1)
    with pytest.raises(PsiError, match="answers another request"):
        s1.finish(response)
    assert s1.finish(psi_serve(["A"], r1, processes=1)).cardinality == 1


# --- message validation -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_messages() -> tuple[PsiRequest, PsiResponse]:
    _, request = PsiClientSession.create(
        [f"ID{i}" for i in range(40)], reveal_intersection=False, buckets=2
    )
    response = psi_serve([f"ID{i}" for i in range(20, 60)], request, processes=1, max_buckets=2)
    return request, response


def test_round_trip_bytes(small_messages) -> None:
    request, response = small_messages
    assert PsiRequest.from_bytes(request.to_bytes()) == request
    assert PsiResponse.from_bytes(response.to_bytes()) == response
    assert response.request_sm3 == request.sm3()


@pytest.mark.parametrize("cut", [3, 9, 12, 40, -1, -30])
def test_truncated_messages_refused(small_messages, cut: int) -> None:
    request, response = small_messages
    with pytest.raises(PsiError, match=r"truncated|frames for|not a valid"):
        PsiRequest.from_bytes(request.to_bytes()[:cut])
    with pytest.raises(PsiError, match=r"truncated|frames for|not a valid"):
        PsiResponse.from_bytes(response.to_bytes()[:cut])


def test_wrong_version_magic_kind_refused(small_messages) -> None:
    request, _ = small_messages
    raw = bytearray(request.to_bytes())
    raw[4] = PSI_FORMAT_VERSION + 1
    with pytest.raises(PsiError, match="unsupported message version 2, expected 1"):
        PsiRequest.from_bytes(bytes(raw))
    with pytest.raises(PsiError, match="bad magic"):
        PsiRequest.from_bytes(b"XXXX" + request.to_bytes()[4:])
    with pytest.raises(PsiError, match="message kind 'Q', expected 'R'"):
        PsiResponse.from_bytes(request.to_bytes())
    with pytest.raises(PsiError, match="expected bytes"):
        PsiRequest.from_bytes("text")  # type: ignore[arg-type]


def test_inconsistent_messages_refused(small_messages) -> None:
    request, response = small_messages
    bad = PsiRequest(False, "identifier", (*request.bucket_sizes, 0), request.frames)
    with pytest.raises(PsiError, match="2 frames for 3 buckets"):
        PsiRequest.from_bytes(bad.to_bytes())
    sizes = (request.bucket_sizes[0] + 1, request.bucket_sizes[1])
    bad = PsiRequest(False, "identifier", sizes, request.frames)
    with pytest.raises(PsiError, match=r"bucket 0: \d+ elements, header says"):
        PsiRequest.from_bytes(bad.to_bytes())
    bad = PsiRequest(
        False, "identifier", request.bucket_sizes, (b"\xff\xff\xff", request.frames[1])
    )
    with pytest.raises(PsiError, match=r"not a valid psi_proto\.Request"):
        PsiRequest.from_bytes(bad.to_bytes())
    bad = PsiRequest(True, "identifier", request.bucket_sizes, request.frames)  # frames say False
    with pytest.raises(PsiError, match="reveal flag differs"):
        PsiRequest.from_bytes(bad.to_bytes())
    # header that is not JSON
    head = b"{not json"
    blob = struct.pack(">4sBBI", b"GDXP", 1, ord("Q"), len(head)) + head
    with pytest.raises(PsiError, match="header is not UTF-8 JSON"):
        PsiRequest.from_bytes(blob)
    bad_resp = PsiResponse(
        False,
        response.fpr,
        response.bucket_sizes,
        response.request_sm3,
        response.setups[:1],
        response.responses[:1],
    )
    with pytest.raises(PsiError, match="2 frames for 2 buckets, expected 4"):
        PsiResponse.from_bytes(bad_resp.to_bytes())


# --- policy -------------------------------------------------------------------------------------
def test_cap_refusals() -> None:
    _, request = PsiClientSession.create([f"ID{i}" for i in range(120)], reveal_intersection=False)
    with pytest.raises(PsiPolicyError, match="holds 120 items, over the cap max_items=100") as ei:
        psi_serve(["ID1"], request, max_items=100, processes=1)
    assert (ei.value.limit, ei.value.actual) == (100, 120)
    _, small = PsiClientSession.create(["ID1"], reveal_intersection=False)
    with pytest.raises(
        PsiPolicyError, match="server set holds 150 distinct items, over the cap max_items=100"
    ):
        psi_serve([f"ID{i}" for i in range(150)] + ["id1"], small, max_items=100, processes=1)
    assert psi_serve(["ID1"], small, max_items=1, processes=1).bucket_sizes == (1,)


def test_reveal_refused_unless_allowed() -> None:
    session, request = PsiClientSession.create(["ID1", "ID2"], reveal_intersection=True)
    with pytest.raises(PsiPolicyError, match="allow_reveal=False"):
        psi_serve(["ID1"], request, processes=1)
    outcome = session.finish(psi_serve(["id1 "], request, processes=1, allow_reveal=True))
    assert outcome.intersection == ["ID1"] and outcome.cardinality == 1


def test_buckets_refused_over_cap() -> None:
    _, request = PsiClientSession.create(["ID1"], reveal_intersection=False, buckets=4)
    with pytest.raises(PsiPolicyError, match="4 buckets, over the cap max_buckets=1"):
        psi_serve(["ID1"], request, processes=1)


def test_bad_arguments() -> None:
    _, request = PsiClientSession.create(["ID1"], reveal_intersection=False)
    with pytest.raises(PsiError, match=r"fpr must be in \(0, 1\)"):
        psi_serve(["ID1"], request, fpr=0.0, processes=1)
    with pytest.raises(PsiError, match="processes must be an int"):
        psi_serve(["ID1"], request, processes=0)
    with pytest.raises(PsiError, match=r"buckets must be an int in 1\.\.1024"):
        PsiClientSession.create(["ID1"], reveal_intersection=False, buckets=0)
    assert issubclass(PsiPolicyError, PsiError) and issubclass(PsiError, PrivacyError)


# --- empty sets ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("client", "server"),
    [
        pytest.param([], ["ID1", "ID2"], id="empty-client"),
        pytest.param(["ID1", "ID2"], [], id="empty-server"),
        pytest.param([None, " "], [None], id="both-blank"),
    ],
)
@pytest.mark.parametrize("reveal", [False, True], ids=["cardinality", "reveal"])
def test_empty_sets(client, server, reveal: bool) -> None:
    outcome, _, _ = run(client, server, reveal=reveal, buckets=4, element="identifier")
    assert outcome.cardinality == 0
    assert outcome.intersection == ([] if reveal else None)
