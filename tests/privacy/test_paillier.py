"""Paillier behind the HomomorphicScheme interface: exact round trips (negatives included),
packing bounds, refused keys and values, tampered ciphertexts and wrong keys fail loudly."""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from govdx import DefinitionError
from privacy._paillier import (
    EncryptedVector,
    HeDecryptionError,
    HeError,
    HeKeyError,
    HeValueError,
    HomomorphicScheme,
    KeyPack,
    ObfuscatorPool,
    PhePaillier,
    PrivateKey,
    PublicKey,
    SlotLayout,
    decode_signed,
    encode_signed,
    make_obfuscators,
)

SCHEME = PhePaillier()


@pytest.fixture(scope="module")
def keys() -> tuple[PublicKey, PrivateKey]:
    return SCHEME.keygen(2048)


@pytest.fixture(scope="module")
def other_keys() -> tuple[PublicKey, PrivateKey]:
    return SCHEME.keygen(2048)


def test_scheme_implements_the_interface():
    assert isinstance(SCHEME, HomomorphicScheme)


def test_keygen_size_and_serialisation(keys, tmp_path):
    pk, sk = keys
    assert pk.bits == 2048 and sk.p * sk.q == pk.n
    assert PublicKey.from_json(pk.to_json()) == pk
    path = sk.save(tmp_path / "k.json")
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert PrivateKey.load(path) == sk
    assert str(sk.p) not in repr(sk) and str(sk.q) not in repr(sk)


def test_short_key_refused_by_keygen_and_by_the_parser():
    with pytest.raises(HeKeyError, match=r"use 2048\.\.4096"):
        SCHEME.keygen(1024)
    from phe import paillier

    short, _ = paillier.generate_paillier_keypair(n_length=1024)
    doc = PublicKey(0).to_dict() | {"n": PublicKey(short.n).to_dict()["n"]}
    with pytest.raises(HeKeyError, match="1024 bits, below the minimum of 2048") as exc:
        PublicKey.from_dict(doc)
    assert isinstance(exc.value, DefinitionError)


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        pytest.param({"format": "x"}, "format 'x'", id="format"),
        pytest.param({"n": "!!"}, "not base64", id="not-base64"),
        pytest.param({"n": None}, "missing", id="missing"),
        pytest.param({"g": "2"}, "unsupported", id="generator"),
    ],
)
def test_malformed_public_key_refused(keys, patch, match):
    with pytest.raises(HeKeyError, match=match):
        PublicKey.from_dict(keys[0].to_dict() | patch)


def test_even_modulus_refused(keys):
    even = keys[0].n + 1
    with pytest.raises(HeKeyError, match="not a product of two large primes"):
        PublicKey.from_dict(keys[0].to_dict() | {"n": PublicKey(even).to_dict()["n"]})
    with pytest.raises(HeKeyError, match="not JSON"):
        PublicKey.from_json("{")


@pytest.mark.parametrize("owner", [False, True], ids=["public", "crt-owner"])
def test_encrypt_decrypt_exact_with_negatives(keys, owner):
    pk, sk = keys
    values = [0, 1, -1, 123_456_789, -(2**62), 2**62, -5_000_00]
    plain = [encode_signed(v, pk.n) for v in values]
    cts = SCHEME.encrypt_vector(pk, plain, private_key=sk if owner else None, processes=1)
    assert len(set(cts)) == len(cts)  # fresh randomness per value
    assert [decode_signed(m, pk.n) for m in SCHEME.decrypt_vector(sk, cts)] == values
    total = SCHEME.sum(pk, cts)
    assert decode_signed(SCHEME.decrypt_vector(sk, [total])[0], pk.n) == sum(values)


def test_owner_obfuscators_are_nth_residues(keys):
    pk, sk = keys
    lam = math.lcm(sk.p - 1, sk.q - 1)
    n2 = pk.nsquare
    for o in make_obfuscators(sk, 3, processes=1) + make_obfuscators(pk, 2, processes=1):
        assert pow(o, lam, n2) == 1 and math.gcd(o, pk.n) == 1
    # a random element of Z*_{n²} is not an n-th residue
    assert pow(pk.n + 2, lam, n2) != 1


def test_pool_is_used_once_and_round_trips(keys, tmp_path):
    pk, sk = keys
    pool = ObfuscatorPool.precompute(sk, 4, processes=1)
    assert len(pool) == 4
    cts = SCHEME.encrypt_vector(pk, [5, 6, 7], pool=pool)
    assert len(pool) == 1 and SCHEME.decrypt_vector(sk, cts) == [5, 6, 7]
    pool.save(tmp_path / "pool.bin")
    again = ObfuscatorPool.load(tmp_path / "pool.bin")
    assert len(again) == 1 and again.key == pk
    with pytest.raises(Exception, match="holds 1, 2 needed"):
        again.take(2)


def test_values_must_be_integers(keys):
    with pytest.raises(HeValueError, match="value 1 is float"):
        EncryptedVector.encrypt([1, 2.5], keys[0], processes=1)
    with pytest.raises(HeValueError, match="value 0 is str"):
        SlotLayout().pack(["12"], keys[0])
    with pytest.raises(HeValueError, match=r"outside \[0, n\)"):
        SCHEME.encrypt_vector(keys[0], [-1])


def test_slot_layout_bounds(keys):
    pk = keys[0]
    lay = SlotLayout()
    assert lay.slots(pk) == 25 and lay.max_terms == 65_536
    edge = [2**63 - 1, -(2**63), 0, -1]
    assert lay.unpack(lay.pack(edge, pk), 4, 1, pk) == edge
    with pytest.raises(HeValueError, match="more than 64 signed bits"):
        lay.pack([2**63], pk)
    with pytest.raises(HeValueError, match="more than 64 signed bits"):
        lay.pack([-(2**63) - 1], pk)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(-(2**63), 2**63 - 1), min_size=30, max_size=30), min_size=1, max_size=4
    )
)
def test_packed_sums_are_exact_plaintext_level(vectors):
    """Adding packed plaintexts (what ciphertext addition does) decodes to the exact sums."""
    pk = PublicKey(_N)
    lay = SlotLayout()
    acc = [0] * 2
    for v in vectors:
        acc = [a + b for a, b in zip(acc, lay.pack(v, pk), strict=True)]
    assert all(a < pk.n for a in acc)
    assert lay.unpack(acc, 30, len(vectors), pk) == [sum(c) for c in zip(*vectors, strict=True)]


def test_encrypted_vector_sum_tamper_and_wrong_key(keys, other_keys):
    pk, sk = keys
    a = [10, -20, 30] * 10
    b = [-(2**62), 5, 2**62] * 10
    total = EncryptedVector.encrypt(a, pk, processes=1) + EncryptedVector.encrypt(
        b, pk, processes=1
    )
    doc = total.to_dict()
    back = EncryptedVector.from_dict(doc)
    assert back.terms == 2 and len(back.ciphertexts) == 2
    assert back.decrypt(sk) == [x + y for x, y in zip(a, b, strict=True)]
    # tampered: one bit of one ciphertext flipped
    bad = back.ciphertexts[0] ^ (1 << 100)
    tampered = EncryptedVector(
        back.key, back.count, back.terms, back.layout, (bad, back.ciphertexts[1])
    )
    with pytest.raises(HeDecryptionError, match=r"tampered ciphertext or wrong key|out of range"):
        tampered.decrypt(sk)
    # wrong key: named by fingerprint, nothing decrypted
    with pytest.raises(HeDecryptionError, match=f"encrypted under key {pk.fingerprint}"):
        back.decrypt(other_keys[1])
    # a forged header claiming the other key still fails on the plaintext range
    forged = EncryptedVector(other_keys[0], back.count, back.terms, back.layout, back.ciphertexts)
    with pytest.raises(HeDecryptionError):
        forged.decrypt(other_keys[1])
    with pytest.raises(HeDecryptionError, match="outside"):
        SCHEME.decrypt_vector(sk, [0])


def test_headroom_limit(keys):
    pk = keys[0]
    v = EncryptedVector.encrypt([1], pk, processes=1)
    full = EncryptedVector(pk, 1, SlotLayout().max_terms, SlotLayout(), v.ciphertexts)
    with pytest.raises(Exception, match="exceed the slot headroom"):
        full + v


# a fixed 2048-bit modulus for the plaintext-level property test (no key generation per example)
_N = (2**2047) + 1_000_000_007 * 2 + 1


# --- key packs (single-use key + obfuscators made ahead, docs/he.md "Key stock") -----------------
def test_progress_is_reported_to_the_end(keys):
    seen: list[tuple[int, int]] = []
    out = make_obfuscators(keys[1], 5, processes=1, progress=lambda d, t: seen.append((d, t)))
    assert len(out) == 5 and seen == [(5, 5)]


def test_key_pack_round_trip_encrypts_with_one_mulmod_each(tmp_path):
    pack = KeyPack.make(2048, 6, processes=1, meta={"dataset": "SWJ-0001"})
    pk, sk = pack.public, pack.private_key
    assert pk.bits == 2048 and len(pack.pool) == 6
    path = pack.save(tmp_path / "p.pack")
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["p.pack"]  # no temporary file left
    assert KeyPack.read_meta(path) == {
        "bits": 2048,
        "count": 6,
        "fingerprint": pk.fingerprint,
        "meta": {"dataset": "SWJ-0001"},
    }
    back = KeyPack.load(path)
    assert back.private_key == sk and back.meta == {"dataset": "SWJ-0001"}
    values = [0, -1, 123_456_789, -(2**62), 2**62]
    obf = list(back.pool._values[:5])
    cts = SCHEME.encrypt_vector(
        pk, [encode_signed(v, pk.n) for v in values], private_key=sk, pool=back.pool
    )
    # exactly the definition (1 + m·n)·o mod n² with the pack's obfuscators, in order
    assert cts == [
        (1 + encode_signed(v, pk.n) * pk.n) * o % pk.nsquare
        for v, o in zip(values, obf, strict=True)
    ]
    assert len(back.pool) == 1
    assert [decode_signed(m, pk.n) for m in SCHEME.decrypt_vector(sk, cts)] == values
    # more values than the pack holds: the rest get fresh CRT obfuscators
    more = SCHEME.encrypt_vector(pk, [1, 2, 3], private_key=sk, pool=back.pool)
    assert len(back.pool) == 0 and SCHEME.decrypt_vector(sk, more) == [1, 2, 3]


def test_key_pack_refuses_truncated_foreign_and_non_residue_files(keys, tmp_path):
    pk, sk = keys
    pack = KeyPack(sk, ObfuscatorPool.precompute(sk, 2, processes=1), {})
    path = pack.save(tmp_path / "p.pack")
    raw = path.read_bytes()
    (tmp_path / "t.pack").write_bytes(raw[:-1])
    with pytest.raises(HeError, match="truncated or malformed obfuscators"):
        KeyPack.load(tmp_path / "t.pack")
    # obfuscators that are not n-th residues of the key (e.g. another key's) fail the spot check
    fake = KeyPack(sk, ObfuscatorPool(pk, [pk.n + 2, pk.n + 2]), {})
    with pytest.raises(HeError, match="not an n-th residue"):
        KeyPack.load(fake.save(tmp_path / "f.pack"))
    pool_only = ObfuscatorPool.precompute(sk, 1, processes=1).save(tmp_path / "pool.bin")
    with pytest.raises(HeError, match="not a govdx-paillier-key-pack"):
        KeyPack.load(pool_only)
    assert os.stat(pool_only).st_mode & 0o777 == 0o600
    with pytest.raises(HeError, match="key pack size -1"):
        KeyPack.make(2048, -1)
