"""SM2 signatures (GB/T 32918.2): published vectors, OpenSSL interop both ways, refusals."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy._errors import KeyConfigError
from privacy._sm2 import (
    DEFAULT_SIGNER_ID,
    SM2_CURVE,
    SignatureError,
    Sm2Curve,
    Sm2KeyPair,
    generate_sm2_keypair,
    load_or_create_signing_key,
    sm2_keypair_from_pem,
    sm2_keypair_from_private,
    sm2_private_key_to_pem,
    sm2_public_key_to_pem,
    sm2_sign,
    sm2_sign_raw,
    sm2_signature_from_der,
    sm2_signature_to_der,
    sm2_verify,
    sm2_verify_raw,
    sm2_z_a,
)


def _sm3(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


# GB/T 32918.2-2016 Annex A.2 (= draft-shen-sm2-ecdsa-02, example 1): the 256-bit prime-field
# *example* curve, not the recommended one. Curve, key, k, r and s as in OpenSSL's
# test/sm2_internal_test.c (sm2_sig_test, "From draft-shen-sm2-ecdsa-02"); x_A, y_A, Z_A and e
# as printed in the standard's Annex A.2.
ANNEX_A_CURVE = Sm2Curve(
    name="GB/T 32918.2 Annex A example Fp-256",
    p=0x8542D69E4C044F18E8B92435BF6FF7DE457283915C45517D722EDB8B08F1DFC3,
    a=0x787968B4FA32C3FD2417842E73BBFEFF2F3C848B6831D7E0EC65228B3937E498,
    b=0x63E4C6D3B23B0C849CF84241484BFE48F61D59A5B16BA06E6E12D1DA27C5249A,
    n=0x8542D69E4C044F18E8B92435BF6FF7DD297720630485628D5AE74EE7C32E79B7,
    gx=0x421DEBD61B62EAB6746434EBC3CC315E32220B3BADD50BDC4C4E6C147FEDD43D,
    gy=0x0680512BCBB42C07D47349D2153B70C4E5D7FDFCBFA36EA1A85841B9E46E09A2,
)
ANNEX_A = {
    "id": b"ALICE123@YAHOO.COM",
    "message": b"message digest",
    "d": "128B2FA8BD433C6C068C8D803DFF79792A519A55171B1B650C23661D15897263",
    "public": "04"
    "0AE4C7798AA0F119471BEE11825BE46202BB79E2A5844495E97C04FF4DF2548A"
    "7C0240F88F1CD4E16352A73C17B7F16F07353E53A176D684A9FE0C6BB798E857",
    "z_a": "F4A38489E32B45B6F876E3AC2168CA392362DC8F23459C1D1146FC3DBFB7BC9A",
    "e": "B524F552CD82B8B028476E005C377FB19A87E6FC682D48BB5D42E3D9B9EFFE76",
    "k": 0x6CB28D99385C175C94F94E934817663FC176D925DD72B727260DBAAE1FB2F96F,
    "r": "40F1EC59F793D9F49E09DCEF49130D4194F79FB1EED2CAA55BACDB49C4E755D1",
    "s": "6FC6DAC32C5D5CF10C77DFB20F7C2EB667A457872FB09EC56327A67EC7DEEBE7",
}

# GM/T 0003.5-2012 / GB/T 32918.5-2017 Annex A: the *recommended* curve sm2p256v1, default ID
# 1234567812345678. Values as in guanzhi/GmSSL crypto/sm2/sm2test.c (Z_exp, Dgst_exp, sig_exp
# and its fake RNG numbers d, k).
RECOMMENDED = {
    "message": b"message digest",
    "d": "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8",
    "public": "04"
    "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
    "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13",
    "z_a": "B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3",
    "e": "F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640",
    "k": 0x59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21,
    "r": "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3",
    "s": "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA",
}


@pytest.fixture(scope="module")
def keypair() -> Sm2KeyPair:
    return generate_sm2_keypair()


# --- published vectors --------------------------------------------------------------------


def test_annex_a_example_curve_vector_reproduced_exactly() -> None:
    kp = sm2_keypair_from_private(ANNEX_A["d"], curve=ANNEX_A_CURVE)
    assert kp.public_key_hex == ANNEX_A["public"].lower()
    z_a = sm2_z_a(kp.public_key_hex, ANNEX_A["id"], curve=ANNEX_A_CURVE)
    assert z_a.hex().upper() == ANNEX_A["z_a"]
    assert _sm3(z_a + ANNEX_A["message"]).hex().upper() == ANNEX_A["e"]
    raw = sm2_sign_raw(ANNEX_A["message"], kp, signer_id=ANNEX_A["id"], k=ANNEX_A["k"])
    assert raw.hex().upper() == ANNEX_A["r"] + ANNEX_A["s"]
    assert sm2_verify_raw(
        ANNEX_A["message"], raw, kp.public_key_hex, signer_id=ANNEX_A["id"], curve=ANNEX_A_CURVE
    )
    der = sm2_sign(ANNEX_A["message"], kp, signer_id=ANNEX_A["id"], k=ANNEX_A["k"])
    assert der.hex().upper() == "30440220" + ANNEX_A["r"] + "0220" + ANNEX_A["s"]


def test_recommended_curve_vector_reproduced_exactly() -> None:
    kp = sm2_keypair_from_private(RECOMMENDED["d"])
    assert kp.public_key_hex == RECOMMENDED["public"].lower()
    z_a = sm2_z_a(kp.public_key_hex)
    assert z_a.hex().upper() == RECOMMENDED["z_a"]
    assert _sm3(z_a + RECOMMENDED["message"]).hex().upper() == RECOMMENDED["e"]
    raw = sm2_sign_raw(RECOMMENDED["message"], kp, k=RECOMMENDED["k"])
    assert raw.hex().upper() == RECOMMENDED["r"] + RECOMMENDED["s"]
    assert sm2_verify_raw(RECOMMENDED["message"], raw, RECOMMENDED["public"])
    # r and s both have the top bit set, so DER pads each with 0x00 (72 bytes).
    der = sm2_sign(RECOMMENDED["message"], kp, k=RECOMMENDED["k"])
    assert len(der) == 72
    assert sm2_verify(RECOMMENDED["message"], der, kp.public_key_hex)


# --- OpenSSL 3 command line, both ways ----------------------------------------------------


def _openssl_sm2() -> str | None:
    binary = shutil.which("openssl")
    if binary is None:
        return None
    listing = subprocess.run(
        [binary, "list", "-public-key-algorithms"], capture_output=True, text=True, check=False
    )
    return binary if "SM2" in listing.stdout else None


OPENSSL = _openssl_sm2()
needs_openssl = pytest.mark.skipif(
    OPENSSL is None, reason="no openssl binary with SM2 (`openssl list -public-key-algorithms`)"
)


def _run(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert OPENSSL is not None
    return subprocess.run([OPENSSL, *args], capture_output=True, check=False)


def _openssl_verify(tmp: Path, pub_pem: bytes, message: bytes, der: bytes, distid: str) -> bool:
    (tmp / "pub.pem").write_bytes(pub_pem)
    (tmp / "msg").write_bytes(message)
    (tmp / "sig").write_bytes(der)
    done = _run(
        "pkeyutl", "-verify", "-pubin", "-inkey", str(tmp / "pub.pem"), "-rawin",
        "-digest", "sm3", "-in", str(tmp / "msg"), "-sigfile", str(tmp / "sig"),
        "-pkeyopt", f"distid:{distid}",
    )  # fmt: skip
    return done.returncode == 0 and b"Signature Verified Successfully" in done.stdout


@needs_openssl
@pytest.mark.parametrize(
    "private_hex",
    [
        pytest.param(None, id="fresh-key"),
        # 11·G has x = 04b3cb10…: gmssl's lstrip("04") would corrupt this key.
        pytest.param(f"{11:064x}", id="x-starts-with-04"),
    ],
)
def test_openssl_accepts_our_signature(tmp_path: Path, private_hex: str | None) -> None:
    kp = generate_sm2_keypair() if private_hex is None else sm2_keypair_from_private(private_hex)
    message = "审计检查点 checkpoint #1".encode()
    der = sm2_sign(message, kp)
    pub_pem = sm2_public_key_to_pem(kp.public_key_hex)
    assert _openssl_verify(tmp_path, pub_pem, message, der, "1234567812345678")
    assert not _openssl_verify(tmp_path, pub_pem, message + b"!", der, "1234567812345678")
    assert not _openssl_verify(tmp_path, pub_pem, message, der, "1234567812345679")


@needs_openssl
def test_our_verify_accepts_openssl_signature(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    assert _run("genpkey", "-algorithm", "SM2", "-out", str(key)).returncode == 0
    kp = sm2_keypair_from_pem(key.read_bytes())
    message = b"job 42 approved by reviewer"
    (tmp_path / "msg").write_bytes(message)
    for distid, signer_id in (("1234567812345678", DEFAULT_SIGNER_ID), ("ALICE123@YAHOO.COM", b"ALICE123@YAHOO.COM")):  # fmt: skip
        done = _run(
            "pkeyutl", "-sign", "-inkey", str(key), "-rawin", "-digest", "sm3",
            "-in", str(tmp_path / "msg"), "-pkeyopt", f"distid:{distid}",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert sm2_verify(message, done.stdout, kp.public_key_hex, signer_id=signer_id)
        assert not sm2_verify(message + b" ", done.stdout, kp.public_key_hex, signer_id=signer_id)
    # Same key through OpenSSL's public-key export and our reader: identical point.
    pub = _run("pkey", "-in", str(key), "-pubout")
    assert pub.stdout == sm2_public_key_to_pem(kp.public_key_hex)


@needs_openssl
def test_openssl_reads_our_private_key_pem(tmp_path: Path, keypair: Sm2KeyPair) -> None:
    (tmp_path / "key.pem").write_bytes(sm2_private_key_to_pem(keypair))
    done = _run("pkey", "-in", str(tmp_path / "key.pem"), "-pubout")
    assert done.returncode == 0, done.stderr
    assert done.stdout == sm2_public_key_to_pem(keypair.public_key_hex)


# --- refusals: changed message, ID, key; malformed input ----------------------------------


def test_changed_message_or_id_or_key_fails(keypair: Sm2KeyPair) -> None:
    message = b"decrypt column id_card of dataset hr.staff"
    der = sm2_sign(message, keypair)
    assert sm2_verify(message, der, keypair.public_key_hex)
    assert not sm2_verify(message + b"\x00", der, keypair.public_key_hex)
    assert not sm2_verify(message, der, keypair.public_key_hex, signer_id=b"1234567812345679")
    assert not sm2_verify(message, der, generate_sm2_keypair().public_key_hex)
    custom = sm2_sign(message, keypair, signer_id="审计员".encode())
    assert sm2_verify(message, custom, keypair.public_key_hex, signer_id="审计员".encode())
    assert not sm2_verify(message, custom, keypair.public_key_hex)


def test_malformed_signatures_are_false_not_errors(keypair: Sm2KeyPair) -> None:
    message = b"m"
    raw = sm2_sign_raw(message, keypair)
    n = SM2_CURVE.n.to_bytes(32, "big")
    zero = bytes(32)
    assert not sm2_verify_raw(message, zero + raw[32:], keypair.public_key_hex)  # r = 0
    assert not sm2_verify_raw(message, n + raw[32:], keypair.public_key_hex)  # r = n
    assert not sm2_verify_raw(message, raw[:32] + n, keypair.public_key_hex)  # s = n
    assert not sm2_verify_raw(message, raw[:63], keypair.public_key_hex)
    assert not sm2_verify(message, raw, keypair.public_key_hex)  # raw where DER is expected
    der = sm2_signature_to_der(raw)
    # BER long-form length: same integers, non-canonical bytes.
    ber = b"\x30\x81" + der[1:]
    assert not sm2_verify(message, ber, keypair.public_key_hex)
    assert sm2_signature_from_der(der) == raw
    with pytest.raises(SignatureError, match=r"SM2 signature is not DER|not canonical"):
        sm2_signature_from_der(ber)


def test_bad_keys_are_refused(keypair: Sm2KeyPair) -> None:
    off_curve = keypair.public_key_hex[:-1] + ("0" if keypair.public_key_hex[-1] != "0" else "1")
    with pytest.raises(SignatureError, match="not a point of curve sm2p256v1"):
        sm2_verify(b"m", sm2_sign(b"m", keypair), off_curve)
    with pytest.raises(SignatureError, match="130 hex digits"):
        sm2_z_a(keypair.public_key_hex[2:])
    with pytest.raises(SignatureError, match="not d·G"):
        Sm2KeyPair(keypair.private_key_hex, generate_sm2_keypair().public_key_hex)
    with pytest.raises(SignatureError, match=r"\[1, n-2\]"):
        sm2_keypair_from_private(f"{SM2_CURVE.n - 1:064x}")
    with pytest.raises(SignatureError, match=r"k must lie in \[1, n-1\]"):
        sm2_sign(b"m", keypair, k=SM2_CURVE.n)
    with pytest.raises(SignatureError, match="8191"):
        sm2_z_a(keypair.public_key_hex, b"x" * 8192)
    assert keypair.private_key_hex not in repr(keypair)


@settings(max_examples=15, deadline=None)
@given(message=st.binary(max_size=200), signer_id=st.binary(min_size=0, max_size=40))
def test_sign_verify_round_trip(message: bytes, signer_id: bytes) -> None:
    kp = sm2_keypair_from_private(RECOMMENDED["d"])
    der = sm2_sign(message, kp, signer_id=signer_id)
    assert sm2_verify(message, der, kp.public_key_hex, signer_id=signer_id)
    assert not sm2_verify(message + b"x", der, kp.public_key_hex, signer_id=signer_id)


# --- the platform key file ----------------------------------------------------------------


def test_signing_key_file_created_0600_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-sm2.pem"
    first = load_or_create_signing_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    again = load_or_create_signing_key(path)
    assert again == first
    assert sm2_verify(b"x", sm2_sign(b"x", again), first.public_key_hex)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_signing_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "audit-sm2.pem"
    load_or_create_signing_key(path)
    os.chmod(path, mode)
    with pytest.raises(KeyConfigError, match=rf"audit-sm2\.pem.*mode {mode:04o}"):
        load_or_create_signing_key(path)


def test_signing_key_file_with_garbage_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit-sm2.pem"
    path.write_bytes(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    os.chmod(path, 0o600)
    with pytest.raises(KeyConfigError, match=r"audit-sm2\.pem: not an SM2 PKCS#8 private key"):
        load_or_create_signing_key(path)
