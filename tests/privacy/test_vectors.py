"""Official test vectors through govdx's own functions (GB/T 32907-2016, GB/T 32905-2016) and
the SM4-GCM vector of RFC 8998 through the OpenSSL primitive column format 2 is built on."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import privacy
from privacy import sm3_file, sm3_hex, sm4_block_encrypt

KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")


def test_sm4_example_1() -> None:
    assert sm4_block_encrypt(KEY, KEY).hex() == "681edf34d206965e86b3e94f536e4246"


def test_sm4_example_2_million_iterations_through_openssl() -> None:
    t0 = time.perf_counter()
    out = sm4_block_encrypt(KEY, KEY, iterations=1_000_000)
    elapsed = time.perf_counter() - t0
    assert out.hex() == "595298c7c6fd271f0402f804c33d3f66"
    assert elapsed < 10, f"1e6 SM4 blocks took {elapsed:.1f} s: not OpenSSL?"


def test_sm4_gcm_rfc8998_vector_through_openssl() -> None:
    """RFC 8998 Appendix A.1: SM4-GCM as ``encrypt_column`` format 2 calls it (96-bit nonce)."""
    iv = bytes.fromhex("00001234567800000000ABCD")
    aad = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    pt = bytes.fromhex("".join(c * 16 for c in "ABCDEFEA"))
    ct = bytes.fromhex(
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
        "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
    )
    tag = bytes.fromhex("83DE3541E4C2B58177E065A9BF7B62EC")
    enc = Cipher(algorithms.SM4(KEY), modes.GCM(iv)).encryptor()
    enc.authenticate_additional_data(aad)
    assert enc.update(pt) + enc.finalize() == ct
    assert enc.tag == tag
    dec = Cipher(algorithms.SM4(KEY), modes.GCM(iv, tag)).decryptor()
    dec.authenticate_additional_data(aad)
    assert dec.update(ct) + dec.finalize() == pt


@pytest.mark.parametrize(
    ("key", "block", "iterations"),
    [
        pytest.param(KEY[:15], KEY, 1, id="short-key"),
        pytest.param(KEY, KEY + b"x", 1, id="long-block"),
        pytest.param(KEY, KEY, 0, id="zero-iterations"),
    ],
)
def test_sm4_block_refuses_bad_input(key: bytes, block: bytes, iterations: int) -> None:
    with pytest.raises(ValueError):
        sm4_block_encrypt(key, block, iterations=iterations)


@pytest.mark.parametrize(
    ("message", "digest"),
    [
        pytest.param(
            b"abc",
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0",
            id="abc",
        ),
        pytest.param(
            b"abcd" * 16,
            "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732",
            id="abcd*16",
        ),
    ],
)
def test_sm3_examples(message: bytes, digest: str, tmp_path) -> None:
    assert sm3_hex(message) == digest
    f = tmp_path / "m.bin"
    f.write_bytes(message)
    assert sm3_file(f) == digest
    assert sm3_file(f, chunk_bytes=3) == digest  # streamed across chunk borders


def test_sm3_file_large_streamed_matches_one_shot(tmp_path) -> None:
    data = bytes(range(256)) * 5000 + b"tail"
    f = tmp_path / "big.bin"
    f.write_bytes(data)
    assert sm3_file(f, chunk_bytes=4096) == sm3_hex(data)
    assert sm3_file(f, chunk_bytes=4096) != sm3_hex(data[:-1])


def test_sm3_file_missing_names_the_file(tmp_path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(privacy.PrivacyError, match=r"nope\.csv"):
        sm3_file(missing)


def test_sm3_file_refuses_zero_chunk(tmp_path) -> None:
    with pytest.raises(ValueError, match="chunk_bytes"):
        sm3_file(tmp_path, chunk_bytes=0)


def test_all_is_complete() -> None:
    public = {
        name
        for name in dir(privacy)
        if not name.startswith("_") and not isinstance(getattr(privacy, name), type(privacy))
    }
    assert public == set(privacy.__all__)
    assert issubclass(privacy.KeyConfigError, privacy.PrivacyError)
    import govdx

    assert issubclass(privacy.PrivacyError, govdx.GovdxRuntimeError)
    assert issubclass(privacy.KeyConfigError, govdx.DefinitionError)
