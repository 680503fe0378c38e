"""HMAC-SM3 join tokens: normalisation, determinism, domain separation, independent check."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest
from gmssl import sm3 as gsm3

from privacy import KeyManagementError, token_column

KEY = bytes(range(32))


def g_sm3(b: bytes) -> bytes:
    return bytes.fromhex(gsm3.sm3_hash(list(b)))


def g_hmac(k: bytes, m: bytes) -> bytes:
    """HMAC (RFC 2104) over gmssl's pure-Python SM3: independent of OpenSSL."""
    k = (g_sm3(k) if len(k) > 64 else k).ljust(64, b"\0")
    return g_sm3(bytes(x ^ 0x5C for x in k) + g_sm3(bytes(x ^ 0x36 for x in k) + m))


def test_tokens_match_independent_hmac_sm3() -> None:
    out = token_column(pa.array(["11010519491231002X", "abc"]), key=KEY, domain="resident_id")
    assert out.type == pa.string()
    assert out.to_pylist() == [
        g_hmac(KEY, b"resident_id\x0011010519491231002X").hex(),
        g_hmac(KEY, b"resident_id\x00ABC").hex(),
    ]


def test_normalisation_strip_and_upper() -> None:
    out = token_column(
        pa.array(["11010519491231002x", " 11010519491231002X\t", "11010519491231002X"]),
        key=KEY,
        domain="resident_id",
    ).to_pylist()
    assert out[0] == out[1] == out[2]
    assert len(out[0]) == 64


def test_nulls_repeats_and_chunks() -> None:
    values = pa.chunked_array([["a", None], ["b", "a"]])
    out = token_column(values, key=KEY, domain="d").to_pylist()
    assert out[1] is None
    assert out[0] == out[3] != out[2]
    assert token_column(pa.array([], pa.string()), key=KEY, domain="d").to_pylist() == []


def test_domain_and_key_separate_tokens() -> None:
    v = pa.array(["91110000600037341L"])
    base = token_column(v, key=KEY, domain="uscc")[0].as_py()
    assert token_column(v, key=KEY, domain="resident_id")[0].as_py() != base
    assert token_column(v, key=os.urandom(32), domain="uscc")[0].as_py() != base
    assert token_column(v, key=KEY, domain="uscc")[0].as_py() == base


def test_non_string_values_use_canonical_string() -> None:
    assert (
        token_column(pa.array([42]), key=KEY, domain="d")[0].as_py()
        == token_column(pa.array(["42"]), key=KEY, domain="d")[0].as_py()
    )


@pytest.mark.parametrize(
    ("key", "domain", "match"),
    [
        pytest.param(b"short", "d", "at least 16", id="short-key"),
        pytest.param(KEY, "", "non-empty", id="empty-domain"),
    ],
)
def test_refused_arguments(key: bytes, domain: str, match: str) -> None:
    with pytest.raises(KeyManagementError, match=match):
        token_column(pa.array(["a"]), key=key, domain=domain)
