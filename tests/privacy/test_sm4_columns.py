"""SM4 column encryption: round trips, tamper detection, CMAC equality and gmssl interop."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from cryptography.hazmat.primitives import cmac as crypto_cmac
from cryptography.hazmat.primitives.ciphers import algorithms
from gmssl import sm3 as gsm3
from gmssl import sm4 as gsm4
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privacy import (
    CELL_OVERHEAD_BYTES,
    DataKey,
    DecryptionError,
    KeyManagementError,
    decrypt_column,
    encrypt_column,
)
from privacy._sm4 import _BulkCmac

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DEK = bytes.fromhex("00112233445566778899aabbccddeeff")
KEY = DataKey("SCJG-0001", "k1-0a0b0c0d", DEK, NOW)
DS, COL = "SCJG-0001", "id_number"


def enc(values, column: str = COL, key: DataKey = KEY) -> pa.Array:
    return encrypt_column(
        pa.array(values) if isinstance(values, list) else values,
        key=key,
        dataset=key.dataset,
        column=column,
    )


def dec(cipher, column: str = COL, key: DataKey = KEY) -> list:
    return decrypt_column(cipher, key=key, dataset=key.dataset, column=column).to_pylist()


# --- round trips ------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(st.none(), st.text(), st.sampled_from(["张三", "北京市海淀区", ""])), max_size=40
    )
)
def test_round_trip_any_strings(values: list[str | None]) -> None:
    cipher = enc(pa.array(values, pa.string()))
    assert cipher.type == pa.binary()
    assert len(cipher) == len(values)
    assert dec(cipher) == values
    for v, c in zip(values, cipher.to_pylist(), strict=True):
        assert (c is None) == (v is None)
        if v is not None:
            assert len(c) == CELL_OVERHEAD_BYTES + len(v.encode("utf-8"))


def test_round_trip_canonical_strings_of_other_types() -> None:
    assert dec(enc([1, None, -42])) == ["1", None, "-42"]
    assert dec(enc([dt.date(1949, 12, 31)])) == ["1949-12-31"]
    assert dec(enc(pa.array([Decimal("1.20"), Decimal("-3.05")]))) == ["1.20", "-3.05"]


def test_chunked_and_large_string_input() -> None:
    chunked = pa.chunked_array([["a", "bb"], [], ["中文", None]], pa.large_string())
    assert dec(enc(chunked)) == ["a", "bb", "中文", None]
    assert dec(enc(pa.chunked_array([], pa.string()))) == []


def test_randomised_equal_plaintexts_differ() -> None:
    c = enc(["11010519491231002X", "11010519491231002X"])
    assert c[0].as_py() != c[1].as_py()
    assert enc(["x"])[0].as_py() != enc(["x"])[0].as_py()


def test_single_cell_slice_and_filtered_rows_decrypt() -> None:
    values = [f"{i:018d}" for i in range(50)] + ["", "长地址" * 20, "z"]
    c = enc(values)
    assert dec(c[7:8]) == [values[7]]
    assert dec(c[10:30]) == values[10:30]
    keep = np.arange(len(values)) % 3 != 1
    assert dec(c.filter(pa.array(keep))) == [v for v, k in zip(values, keep, strict=True) if k]


def test_concatenated_batches_decrypt() -> None:
    a, b = enc(["a1", "a2", "a3"]), enc(["b1", "b2"])
    assert dec(pa.chunked_array([a, b])) == ["a1", "a2", "a3", "b1", "b2"]


def test_million_equal_length_ids_round_trip_fast_path() -> None:
    ids = pa.array([f"{i:017d}X" for i in range(200_000)])
    cipher = enc(ids)
    assert decrypt_column(cipher, key=KEY, dataset=DS, column=COL).equals(ids)
    keep = pa.array(np.arange(len(ids)) % 7 != 3)
    got = decrypt_column(cipher.filter(keep), key=KEY, dataset=DS, column=COL)
    assert got.equals(ids.filter(keep))


def test_audit_called_once_with_cell_count() -> None:
    events: list[tuple[str, dict]] = []
    c = enc(["a", None, "b"])
    decrypt_column(c, key=KEY, dataset=DS, column=COL, audit=lambda e, d: events.append((e, d)))
    assert events == [("decrypt", {"dataset": DS, "column": COL, "key_id": KEY.key_id, "cells": 2})]


# --- tamper detection -------------------------------------------------------------------------
def _cells(c: pa.Array) -> list[bytes]:
    return c.to_pylist()


@pytest.mark.parametrize(
    "index",
    [0, 5, 13, 17, 20, -1],
    ids=["version", "nonce", "offset", "ct", "tag-start", "tag-end"],
)
def test_bit_flip_anywhere_is_refused(index: int) -> None:
    cells = _cells(enc(["11010519491231002X", "abc", "def"]))
    raw = bytearray(cells[1] if index < 19 else cells[0])
    raw[index] ^= 0x01
    tampered = [cells[0], bytes(raw), cells[2]] if index < 19 else [bytes(raw), *cells[1:]]
    with pytest.raises(DecryptionError) as err:
        dec(pa.array(tampered, pa.binary()))
    assert err.value.rows == ([1] if index < 19 else [0])


def test_swapped_cells_between_rows_are_refused() -> None:
    cells = _cells(enc(["alice", "bob", "carol", "dave"]))
    cells[1], cells[2] = cells[2], cells[1]
    with pytest.raises(DecryptionError, match=r"order|contiguous"):
        dec(pa.array(cells, pa.binary()))


def test_swapped_empty_and_nonempty_cells_are_refused() -> None:
    cells = _cells(enc(["", "bob"]))
    with pytest.raises(DecryptionError):
        dec(pa.array([cells[1], cells[0]], pa.binary()))


def test_duplicated_cell_is_refused() -> None:
    cells = _cells(enc(["alice", "bob", "carol"]))
    with pytest.raises(DecryptionError):
        dec(pa.array([cells[0], cells[0], cells[2]], pa.binary()))


def test_swap_between_batches_is_refused() -> None:
    a, b = _cells(enc(["a1", "a2"])), _cells(enc(["b1", "b2"]))
    with pytest.raises(DecryptionError, match="contiguous"):
        dec(pa.array([a[0], b[0], a[1], b[1]], pa.binary()))


def test_cell_moved_from_another_column_is_refused() -> None:
    name = _cells(enc(["alice"], column="name"))
    ident = _cells(enc(["110105"], column=COL))
    with pytest.raises(DecryptionError, match="tag"):
        dec(pa.array([name[0]], pa.binary()), column=COL)
    assert dec(pa.array(ident, pa.binary())) == ["110105"]


def test_wrong_dataset_binding_is_refused() -> None:
    other = DataKey("RSJ-0002", KEY.key_id, DEK, NOW)  # same key bytes and id, other dataset
    with pytest.raises(DecryptionError, match="tag"):
        dec(enc(["alice"]), key=other)


@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param(DataKey(DS, KEY.key_id, os.urandom(16), NOW), id="other-bytes"),
        pytest.param(DataKey(DS, "k2-ffffffff", DEK, NOW), id="other-key-id"),
    ],
)
def test_wrong_key_is_refused(wrong: DataKey) -> None:
    with pytest.raises(DecryptionError, match=r"rows \[0, 1\]"):
        dec(enc(["alice", "bob"]), key=wrong)


def test_truncated_cell_and_non_binary_are_refused() -> None:
    with pytest.raises(DecryptionError, match="shorter than 33"):
        dec(pa.array([b"\x01" * 32], pa.binary()))
    with pytest.raises(TypeError, match="binary"):
        dec(pa.array(["not binary"]))


def test_key_of_another_dataset_is_refused_up_front() -> None:
    with pytest.raises(KeyManagementError, match="belongs to dataset"):
        encrypt_column(pa.array(["a"]), key=KEY, dataset="RSJ-0002", column=COL)


# --- the bulk CMAC is CMAC ---------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.binary(max_size=70), min_size=1, max_size=25), st.binary(min_size=16, max_size=16)
)
def test_bulk_cmac_equals_cryptography_cmac(messages: list[bytes], k: bytes) -> None:
    prefix = b"p" * 32
    bulk = _BulkCmac(k)
    data = np.frombuffer(b"".join(messages), dtype=np.uint8)
    lengths = np.array([len(m) for m in messages], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    pos = np.arange(len(messages), dtype=np.uint32) * 1000 + 7
    states = np.broadcast_to(bulk.prefix_state(prefix), (len(messages), 16))
    tags = bulk.tags(states, pos, data, starts, lengths)
    for i, m in enumerate(messages):
        ref = crypto_cmac.CMAC(algorithms.SM4(k))
        ref.update(prefix + int(pos[i]).to_bytes(4, "big") + m)
        assert tags[i].tobytes() == ref.finalize()


# --- interop with gmssl's independent pure-Python SM4/SM3 --------------------------------------
def g_sm3(b: bytes) -> bytes:
    return bytes.fromhex(gsm3.sm3_hash(list(b)))


def g_hmac(k: bytes, m: bytes) -> bytes:
    k = (g_sm3(k) if len(k) > 64 else k).ljust(64, b"\0")
    return g_sm3(bytes(x ^ 0x5C for x in k) + g_sm3(bytes(x ^ 0x36 for x in k) + m))


def g_hkdf(ikm: bytes, info: bytes, length: int) -> bytes:
    prk = g_hmac(bytes(32), ikm)
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = g_hmac(prk, t + info + bytes([i]))
        out, i = out + t, i + 1
    return out[:length]


def g_block(k: bytes, block: bytes) -> bytes:
    c = gsm4.CryptSM4()
    c.set_key(k, gsm4.SM4_ENCRYPT)
    return c.crypt_ecb(block)[:16]  # PKCS#7 adds a full padding block: drop it


def g_dbl(b: bytes) -> bytes:
    n = int.from_bytes(b, "big") << 1
    return ((n ^ (0x87 if b[0] & 0x80 else 0)) & ((1 << 128) - 1)).to_bytes(16, "big")


def g_cmac(k: bytes, m: bytes) -> bytes:
    k1 = g_dbl(g_block(k, bytes(16)))
    k2 = g_dbl(k1)
    if m and len(m) % 16 == 0:
        blocks = [m[i : i + 16] for i in range(0, len(m), 16)]
        blocks[-1] = bytes(a ^ b for a, b in zip(blocks[-1], k1, strict=True))
    else:
        padded = m + b"\x80" + bytes(15 - len(m) % 16)
        blocks = [padded[i : i + 16] for i in range(0, len(padded), 16)]
        blocks[-1] = bytes(a ^ b for a, b in zip(blocks[-1], k2, strict=True))
    x = bytes(16)
    for blk in blocks:
        x = g_block(k, bytes(a ^ b for a, b in zip(x, blk, strict=True)))
    return x


def g_ctr_xor(k: bytes, nonce: bytes, pos: int, data: bytes) -> bytes:
    first, skip = divmod(pos, 16)
    nblocks = (skip + len(data) + 15) // 16
    ks = b"".join(g_block(k, nonce + (first + j).to_bytes(4, "big")) for j in range(nblocks))
    return bytes(a ^ b for a, b in zip(data, ks[skip:], strict=False))


def g_prefix(dataset: str, column: str, key_id: str, nonce: bytes) -> bytes:
    """The documented prefix (docs/crypto.md), written out independently."""
    p = b"govdx/cell/v1\x00\x01"
    for s in (dataset, column, key_id):
        p += len(s.encode()).to_bytes(2, "big") + s.encode()
    p += nonce
    return p + bytes(-len(p) % 16)


SUBKEYS = g_hkdf(DEK, b"govdx/sm4-ctr-cmac/v1", 32)
K_ENC, K_MAC = SUBKEYS[:16], SUBKEYS[16:]


def test_gmssl_decrypts_project_cells() -> None:
    values = ["11010519491231002X", "", "张三丰", "x" * 37]
    for cell, want in zip(_cells(enc(values)), values, strict=True):
        assert cell[0] == 1
        nonce, pos, ct, tag = (
            cell[1:13],
            int.from_bytes(cell[13:17], "big"),
            cell[17:-16],
            cell[-16:],
        )
        msg = g_prefix(DS, COL, KEY.key_id, nonce) + cell[13:17] + ct
        assert g_cmac(K_MAC, msg) == tag
        assert g_ctr_xor(K_ENC, nonce, pos, ct).decode("utf-8") == want


def test_project_decrypts_gmssl_cells() -> None:
    nonce = bytes(range(12))
    cells, pos = [], 0
    values = ["身份证 110105", "", "abcdefghijklmnopq"]
    for v in values:
        ct = g_ctr_xor(K_ENC, nonce, pos, v.encode())
        head = b"\x01" + nonce + pos.to_bytes(4, "big")
        tag = g_cmac(K_MAC, g_prefix(DS, COL, KEY.key_id, nonce) + pos.to_bytes(4, "big") + ct)
        cells.append(head + ct + tag)
        pos += len(v.encode())
    assert dec(pa.array(cells, pa.binary())) == values
    assert dec(pa.array(cells[2:], pa.binary())) == values[2:]  # one cell alone, offset 16+
