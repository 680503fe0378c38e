"""SM4 column encryption: round trips, tamper detection, group structure, the legacy format 1,
bulk CMAC equality and interoperability with gmssl's independent pure-Python SM4."""

from __future__ import annotations

import datetime as dt
import itertools
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
    FORMAT_VERSION,
    GROUP_CELLS,
    GROUP_HEADER_BYTES,
    DataKey,
    DecryptionError,
    KeyManagementError,
    decrypt_column,
    encrypt_column,
)
from privacy._sm4 import _BulkCmac, _encrypt

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DEK = bytes.fromhex("00112233445566778899aabbccddeeff")
KEY = DataKey("SCJG-0001", "k1-0a0b0c0d", DEK, NOW)
DS, COL = "SCJG-0001", "id_number"
HEAD = CELL_OVERHEAD_BYTES + GROUP_HEADER_BYTES  # 46
# characters in GB 18030 but not in GBK: CJK Ext. A/B, Mongolian, Tibetan, Uyghur (Arabic script)
GB18030_ONLY = "䶮𠀀𪚥ᠮᠣᠩᠭᠣᠯབོད་ئۇيغۇر"


def enc(
    values,
    column: str = COL,
    key: DataKey = KEY,
    *,
    version: int = FORMAT_VERSION,
    group_cells: int = GROUP_CELLS,
) -> pa.Array:
    arr = pa.array(values) if isinstance(values, list) else values
    if version == FORMAT_VERSION and group_cells == GROUP_CELLS:
        return encrypt_column(arr, key=key, dataset=key.dataset, column=column)
    return _encrypt(
        arr, key=key, dataset=key.dataset, column=column, version=version, group_cells=group_cells
    )


def dec(cipher, column: str = COL, key: DataKey = KEY) -> list:
    return decrypt_column(cipher, key=key, dataset=key.dataset, column=column).to_pylist()


def _cells(c: pa.Array) -> list[bytes]:
    return c.to_pylist()


def _bin(cells: list[bytes | None]) -> pa.Array:
    return pa.array(cells, pa.binary())


# --- constants and round trips ------------------------------------------------------------------
def test_format_constants() -> None:
    assert (FORMAT_VERSION, GROUP_CELLS, CELL_OVERHEAD_BYTES, GROUP_HEADER_BYTES) == (2, 256, 2, 44)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.none(), st.text(), st.sampled_from(["张三", "北京市海淀区", "", GB18030_ONLY])
        ),
        max_size=40,
    ),
    st.sampled_from([1, 2, 3, 7, GROUP_CELLS]),
)
def test_round_trip_any_strings(values: list[str | None], group_cells: int) -> None:
    cipher = enc(pa.array(values, pa.string()), group_cells=group_cells)
    assert cipher.type == pa.binary()
    assert len(cipher) == len(values)
    assert dec(cipher) == values
    present = [(v, c) for v, c in zip(values, cipher.to_pylist(), strict=True) if v is not None]
    assert [c is None for c in cipher.to_pylist()] == [v is None for v in values]
    for i, (v, c) in enumerate(present):  # nulls are not part of any group
        head = i % group_cells == 0
        assert c[:2] == bytes([2, 1 if head else 0])
        assert len(c) == (HEAD if head else CELL_OVERHEAD_BYTES) + len(v.encode("utf-8"))


def test_round_trip_canonical_strings_of_other_types() -> None:
    assert dec(enc([1, None, -42])) == ["1", None, "-42"]
    assert dec(enc([dt.date(1949, 12, 31)])) == ["1949-12-31"]
    assert dec(enc(pa.array([Decimal("1.20"), Decimal("-3.05")]))) == ["1.20", "-3.05"]


def test_gb18030_only_characters_round_trip() -> None:
    assert GB18030_ONLY.encode("gb18030").decode("gb18030") == GB18030_ONLY
    with pytest.raises(UnicodeEncodeError):
        GB18030_ONLY.encode("gbk")
    values = [GB18030_ONLY, "", None, GB18030_ONLY[::-1]]
    assert dec(enc(values)) == values
    assert dec(enc(values, group_cells=1)) == values


@pytest.mark.parametrize("values", [[], [None], [None, None], ["x"], [""], [None, "x", None]])
def test_empty_single_and_all_null_arrays(values: list) -> None:
    cipher = enc(pa.array(values, pa.string()))
    assert cipher.type == pa.binary() and len(cipher) == len(values)
    assert cipher.null_count == values.count(None)
    assert dec(cipher) == values


def test_chunked_and_large_string_input() -> None:
    chunked = pa.chunked_array([["a", "bb"], [], ["中文", None]], pa.large_string())
    assert dec(enc(chunked)) == ["a", "bb", "中文", None]
    assert dec(enc(pa.chunked_array([], pa.string()))) == []


def test_randomised_equal_plaintexts_differ() -> None:
    c = enc(["11010519491231002X", "11010519491231002X"])
    assert c[0].as_py()[HEAD:] != c[1].as_py()[CELL_OVERHEAD_BYTES:]
    assert enc(["x"])[0].as_py() != enc(["x"])[0].as_py()


@pytest.mark.parametrize("n", [GROUP_CELLS - 1, GROUP_CELLS, GROUP_CELLS + 1, 3 * GROUP_CELLS])
def test_group_boundaries_and_stored_size(n: int) -> None:
    ids = pa.array([f"{i:017d}X" for i in range(n)])
    cipher = enc(ids)
    groups = -(-n // GROUP_CELLS)
    cells = _cells(cipher)
    assert [i for i, c in enumerate(cells) if c[1] == 1] == [g * GROUP_CELLS for g in range(groups)]
    assert len(b"".join(cells)) == n * (CELL_OVERHEAD_BYTES + 18) + groups * GROUP_HEADER_BYTES
    for g in range(groups):  # header: group index and cell count, big-endian
        h = cells[g * GROUP_CELLS]
        assert int.from_bytes(h[22:26], "big") == g
        assert int.from_bytes(h[26:30], "big") == min(GROUP_CELLS, n - g * GROUP_CELLS)
        assert h[14:22] == cells[0][14:22]  # one batch id per call
    assert len({cells[g * GROUP_CELLS][2:14] for g in range(groups)}) == groups  # fresh nonces
    assert decrypt_column(cipher, key=KEY, dataset=DS, column=COL).equals(ids)


def test_ragged_cells_across_groups() -> None:
    values = [("长地址" * (i % 9)) + str(i) if i % 5 else None for i in range(700)]
    assert dec(enc(values)) == values
    assert dec(enc(values, group_cells=3)) == values


def test_slices_at_group_boundaries_decrypt() -> None:
    values = [f"{i:018d}" for i in range(50)] + ["", "长地址" * 20, "z"]
    c = enc(values, group_cells=4)
    assert dec(c[8:12]) == values[8:12]
    assert dec(c[12:]) == values[12:]
    assert dec(c[:48]) == values[:48]
    assert dec(pa.chunked_array([c[:4], c[20:28]])) == values[:4] + values[20:28]  # groups left out
    keep = np.repeat(np.arange(14) % 3 != 1, 4)[: len(values)]  # whole groups filtered out
    assert dec(c.filter(pa.array(keep))) == [v for v, k in zip(values, keep, strict=True) if k]


def test_null_rows_may_be_dropped_or_added() -> None:
    values = ["a", None, "b", None, "c", "d", None]
    c = enc(values, group_cells=2)
    assert dec(c.drop_null()) == ["a", "b", "c", "d"]
    assert dec(pa.concat_arrays([pa.nulls(2, pa.binary()), c])) == [None, None, *values]


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(slice(1, None), id="head-missing"),
        pytest.param(slice(0, 6), id="tail-missing"),
        pytest.param(slice(5, 7), id="middle-only"),
    ],
)
def test_partial_groups_are_refused_with_storage_order_advice(cut: slice) -> None:
    c = enc([f"v{i}" for i in range(10)], group_cells=4)
    with pytest.raises(DecryptionError, match="storage order") as err:
        dec(c[cut])
    assert "分组不完整" in str(err.value)


def test_filtered_subset_of_a_group_is_refused() -> None:
    c = enc([f"v{i}" for i in range(10)], group_cells=4)
    keep = pa.array([i != 5 for i in range(10)])
    with pytest.raises(DecryptionError, match=r"3 of its 4 cells.*rows \[4, 5, 6\]"):
        dec(c.filter(keep))


def test_million_equal_length_ids_round_trip_fast_path() -> None:
    ids = pa.array([f"{i:017d}X" for i in range(200_000)])
    cipher = enc(ids)
    assert decrypt_column(cipher, key=KEY, dataset=DS, column=COL).equals(ids)
    lo, hi = 7 * GROUP_CELLS, 500 * GROUP_CELLS
    got = decrypt_column(cipher[lo:hi], key=KEY, dataset=DS, column=COL)
    assert got.equals(ids[lo:hi])


def test_audit_called_once_with_cell_count() -> None:
    events: list[tuple[str, dict]] = []
    c = enc(["a", None, "b"])
    decrypt_column(c, key=KEY, dataset=DS, column=COL, audit=lambda e, d: events.append((e, d)))
    assert events == [("decrypt", {"dataset": DS, "column": COL, "key_id": KEY.key_id, "cells": 2})]


# --- tamper detection, format 2 ------------------------------------------------------------------
TEN = [f"1101051949123100{i:02d}" for i in range(10)]  # 18 B each; groups of 4: rows 0-3, 4-7, 8-9


def _ten() -> list[bytes]:
    return _cells(enc(TEN, group_cells=4))


@pytest.mark.parametrize(
    ("row", "index", "rows"),
    [
        pytest.param(4, 0, [4], id="head-version"),
        pytest.param(4, 1, [0, 1, 2, 3, 4, 5, 6, 7], id="head-kind"),
        pytest.param(4, 2, [4, 5, 6, 7], id="nonce"),
        pytest.param(4, 14, [4, 5, 6, 7], id="batch-id"),
        pytest.param(4, 25, [4, 5, 6, 7], id="group-index"),
        pytest.param(4, 29, [4, 5, 6, 7], id="cell-count"),
        pytest.param(4, 30, [4, 5, 6, 7], id="tag-start"),
        pytest.param(4, 45, [4, 5, 6, 7], id="tag-end"),
        pytest.param(4, 46, [4, 5, 6, 7], id="head-ciphertext"),
        pytest.param(6, 0, [6], id="cell-version"),
        pytest.param(6, 1, [6], id="cell-kind"),
        pytest.param(6, 2, [4, 5, 6, 7], id="cell-ciphertext-start"),
        pytest.param(6, -1, [4, 5, 6, 7], id="cell-ciphertext-end"),
        pytest.param(9, -1, [8, 9], id="last-group"),
    ],
)
def test_bit_flip_anywhere_is_refused(row: int, index: int, rows: list[int]) -> None:
    cells = _ten()
    raw = bytearray(cells[row])
    raw[index] ^= 0x01
    cells[row] = bytes(raw)
    with pytest.raises(DecryptionError) as err:
        dec(_bin(cells))
    assert err.value.rows == rows


def test_untampered_ten_decrypt() -> None:
    assert dec(_bin(_ten())) == TEN


@pytest.mark.parametrize(
    ("i", "j"), [(5, 6), (4, 5), (6, 9)], ids=["inside-group", "with-head", "across-groups"]
)
def test_swapped_cells_are_refused(i: int, j: int) -> None:
    cells = _ten()
    cells[i], cells[j] = cells[j], cells[i]
    with pytest.raises(DecryptionError) as err:
        dec(_bin(cells))
    assert set(err.value.rows) & {i, j}


def test_swapped_cells_of_different_lengths_are_refused() -> None:
    cells = _cells(enc(["alice", "bob", "carol", "dave"], group_cells=4))
    cells[1], cells[2] = cells[2], cells[1]
    with pytest.raises(DecryptionError, match="tag mismatch") as err:
        dec(_bin(cells))
    assert err.value.rows == [0, 1, 2, 3]


def test_swapped_empty_and_nonempty_cells_are_refused() -> None:
    cells = _cells(enc(["x", "", "bob"]))
    with pytest.raises(DecryptionError, match="tag mismatch"):
        dec(_bin([cells[0], cells[2], cells[1]]))


def test_resplit_cells_are_refused() -> None:
    cells = _ten()  # move one ciphertext byte from cell 5 to cell 6: same bytes, other lengths
    c5, c6 = cells[5], cells[6]
    cells[5], cells[6] = c5[:-1], c6[:2] + c5[-1:] + c6[2:]
    with pytest.raises(DecryptionError, match="tag mismatch") as err:
        dec(_bin(cells))
    assert err.value.rows == [4, 5, 6, 7]


def test_duplicated_cell_is_refused() -> None:
    cells = _ten()
    with pytest.raises(DecryptionError, match="cells inserted") as err:
        dec(_bin([*cells[:6], cells[5], *cells[6:]]))
    assert err.value.rows == [4, 5, 6, 7, 8]


def test_removed_cell_is_refused() -> None:
    cells = _ten()
    with pytest.raises(DecryptionError, match="3 of its 4 cells") as err:
        dec(_bin(cells[:5] + cells[6:]))
    assert err.value.rows == [4, 5, 6]


def test_removed_cell_replaced_by_null_is_refused() -> None:
    cells = _ten()
    cells[5] = None
    with pytest.raises(DecryptionError, match="3 of its 4 cells") as err:
        dec(_bin(cells))
    assert err.value.rows == [4, 6, 7]  # rows of the array given, nulls skipped


def test_swapped_or_duplicated_groups_are_refused() -> None:
    cells = _ten()
    with pytest.raises(DecryptionError, match="out of order"):
        dec(_bin(cells[4:8] + cells[:4] + cells[8:]))
    with pytest.raises(DecryptionError, match="out of order"):
        dec(_bin(cells[:4] + cells[:4]))


def test_group_moved_between_batches_is_refused() -> None:
    a, b = _ten(), _ten()
    with pytest.raises(DecryptionError, match="contiguous"):
        dec(_bin(a[:4] + b[:4] + a[4:8]))
    assert dec(_bin(a[:8] + b[:4])) == TEN[:8] + TEN[:4]  # whole batches may follow each other


def test_cell_moved_from_another_column_is_refused() -> None:
    name = _cells(enc(["alice"], column="name"))
    ident = _cells(enc(["110105"], column=COL))
    with pytest.raises(DecryptionError, match="tag"):
        dec(_bin(name), column=COL)
    assert dec(_bin(ident)) == ["110105"]


def test_wrong_dataset_binding_is_refused() -> None:
    other = DataKey("RSJ-0002", KEY.key_id, DEK, NOW)  # same key bytes and id, other dataset
    with pytest.raises(DecryptionError, match="tag"):
        dec(enc(["alice"]), key=other)


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param(DataKey(DS, KEY.key_id, os.urandom(16), NOW), id="other-bytes"),
        pytest.param(DataKey(DS, "k2-ffffffff", DEK, NOW), id="other-key-id"),
    ],
)
def test_wrong_key_is_refused(wrong: DataKey, version: int) -> None:
    with pytest.raises(DecryptionError, match=r"rows \[0, 1\]"):
        dec(enc(["alice", "bob"], version=version), key=wrong)


def test_truncated_cells_and_non_binary_are_refused() -> None:
    cells = _ten()
    with pytest.raises(DecryptionError, match="shorter than 2") as err:
        dec(_bin([*cells[:5], b"\x02", *cells[6:]]))
    assert err.value.rows == [5]
    with pytest.raises(DecryptionError, match="head cell shorter than 46"):
        dec(_bin([cells[0][:45], *cells[1:4]]))
    with pytest.raises(DecryptionError, match="no version byte"):
        dec(_bin([b""]))
    with pytest.raises(DecryptionError, match="unknown format version"):
        dec(_bin([b"\x03" + cells[0][1:]]))
    with pytest.raises(DecryptionError, match="unknown cell kind"):
        dec(_bin([b"\x02\x07" + cells[0][2:]]))
    with pytest.raises(TypeError, match="binary"):
        dec(pa.array(["not binary"]))


def test_key_of_another_dataset_is_refused_up_front() -> None:
    with pytest.raises(KeyManagementError, match="belongs to dataset"):
        encrypt_column(pa.array(["a"]), key=KEY, dataset="RSJ-0002", column=COL)
    with pytest.raises(ValueError, match="group_cells"):
        _encrypt(pa.array(["a"]), key=KEY, dataset=DS, column=COL, group_cells=0)


# --- format 1 (legacy, read only) ------------------------------------------------------------------
# Written by the format-1 encrypt_column (govdx before format 2) under KEY for SCJG-0001.id_number:
# ["11010519491231002X", None, "", "张三丰"] — data in old table versions looks exactly like this.
V1_FIXTURE = [
    "0140a497132b32fd25c8d8af09000000008c36aa61a754bed3c00feb7a8afb2ef30de21e3aabaad768a77cb6ef3b39f6eb7b4c",
    None,
    "0140a497132b32fd25c8d8af0900000012d2558253c7515555a22024b3d719c492",
    "0140a497132b32fd25c8d8af09000000129110a03cce19ee9b854043db8698182140a3ac4171b929557d",
]
V1_PLAIN = ["11010519491231002X", None, "", "张三丰"]
V1_OVERHEAD = 33


def _fixture() -> pa.Array:
    return _bin([None if h is None else bytes.fromhex(h) for h in V1_FIXTURE])


def test_stored_v1_fixture_still_decrypts() -> None:
    assert dec(_fixture()) == V1_PLAIN
    assert dec(_fixture()[3:]) == V1_PLAIN[3:]  # format 1: one cell alone decrypts
    with pytest.raises(DecryptionError, match="tag"):
        dec(_fixture(), column="name")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.none(), st.text(), st.just(GB18030_ONLY)), max_size=30))
def test_v1_round_trip_any_strings(values: list[str | None]) -> None:
    cipher = enc(pa.array(values, pa.string()), version=1)
    assert dec(cipher) == values
    for v, c in zip(values, cipher.to_pylist(), strict=True):
        if v is not None:
            assert c[0] == 1 and len(c) == V1_OVERHEAD + len(v.encode("utf-8"))


def test_v1_single_cell_slice_and_filtered_rows_decrypt() -> None:
    values = [f"{i:018d}" for i in range(50)] + ["", "长地址" * 20, "z"]
    c = enc(values, version=1)
    assert dec(c[7:8]) == [values[7]]
    assert dec(c[10:30]) == values[10:30]
    keep = np.arange(len(values)) % 3 != 1
    assert dec(c.filter(pa.array(keep))) == [v for v, k in zip(values, keep, strict=True) if k]


def test_v1_equal_length_ids_filtered_fast_path() -> None:
    ids = pa.array([f"{i:017d}X" for i in range(20_000)])
    cipher = enc(ids, version=1)
    keep = pa.array(np.arange(len(ids)) % 7 != 3)
    got = decrypt_column(cipher.filter(keep), key=KEY, dataset=DS, column=COL)
    assert got.equals(ids.filter(keep))


@pytest.mark.parametrize("index", [0, 5, 13, 17, 20, -1])
def test_v1_bit_flip_anywhere_is_refused(index: int) -> None:
    cells = _cells(enc(["11010519491231002X", "abc", "def"], version=1))
    raw = bytearray(cells[1] if index < 19 else cells[0])
    raw[index] ^= 0x01
    tampered = [cells[0], bytes(raw), cells[2]] if index < 19 else [bytes(raw), *cells[1:]]
    with pytest.raises(DecryptionError) as err:
        dec(_bin(tampered))
    assert err.value.rows == ([1] if index < 19 else [0])


def test_v1_swapped_duplicated_and_interleaved_cells_are_refused() -> None:
    cells = _cells(enc(["alice", "bob", "carol", "dave"], version=1))
    with pytest.raises(DecryptionError, match=r"order|contiguous"):
        dec(_bin([cells[0], cells[2], cells[1], cells[3]]))
    with pytest.raises(DecryptionError):
        dec(_bin([cells[0], cells[0], cells[2]]))
    other = _cells(enc(["b1", "b2"], version=1))
    with pytest.raises(DecryptionError, match="contiguous"):
        dec(_bin([cells[0], other[0], cells[1], other[1]]))
    assert dec(pa.chunked_array([_bin(cells), _bin(other)])) == [
        "alice", "bob", "carol", "dave", "b1", "b2"
    ]  # fmt: skip
    with pytest.raises(DecryptionError, match="shorter than 33"):
        dec(_bin([b"\x01" * 32]))


def test_mixed_v1_and_v2_cells_decrypt_in_row_order() -> None:
    v2 = _ten()
    mixed = [*_cells(_fixture()), *v2[:4], *_cells(enc(["old"], version=1)), *v2[4:]]
    assert dec(_bin(mixed)) == [*V1_PLAIN, *TEN[:4], "old", *TEN[4:]]


def test_v1_cell_inside_a_v2_group_is_refused() -> None:
    v2 = _ten()
    mixed = [*v2[:2], bytes.fromhex(V1_FIXTURE[0]), *v2[2:]]
    with pytest.raises(DecryptionError, match="inside a format-2 group") as err:
        dec(_bin(mixed))
    assert err.value.rows == [0, 1, 3, 4]


# --- the bulk CMAC (format 1) is CMAC --------------------------------------------------------------
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


# --- interop with gmssl's independent pure-Python SM4/SM3 -------------------------------------
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


def g_ecb(k: bytes, blocks: bytes) -> bytes:
    """SM4-ECB of whole 16-byte blocks with gmssl (PKCS#7 adds a full padding block: drop it)."""
    c = gsm4.CryptSM4()
    c.set_key(k, gsm4.SM4_ENCRYPT)
    return c.crypt_ecb(blocks)[: len(blocks)]


def g_block(k: bytes, block: bytes) -> bytes:
    return g_ecb(k, block)


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
    ks = g_ecb(k, b"".join(nonce + (first + j).to_bytes(4, "big") for j in range(nblocks)))
    return bytes(a ^ b for a, b in zip(data, ks[skip:], strict=False))


# TEST REFERENCE ONLY: a textbook GHASH (NIST SP 800-38D §6.3-6.4, Algorithm 1 bit by bit) so the
# GCM tag can be checked without OpenSSL. Slow and not constant-time; checked against the
# RFC 8998 SM4-GCM vector below before it is trusted. Never used by govdx itself.
def ref_gf_mul(x: int, y: int) -> int:
    r, z, v = 0xE1 << 120, 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ r if v & 1 else v >> 1
    return z


def ref_ghash(h: bytes, aad: bytes, ct: bytes) -> bytes:
    def blocks(b: bytes) -> list[bytes]:
        b += bytes(-len(b) % 16)
        return [b[i : i + 16] for i in range(0, len(b), 16)]

    lens = (8 * len(aad)).to_bytes(8, "big") + (8 * len(ct)).to_bytes(8, "big")
    y, hi = 0, int.from_bytes(h, "big")
    for blk in [*blocks(aad), *blocks(ct), lens]:
        y = ref_gf_mul(y ^ int.from_bytes(blk, "big"), hi)
    return y.to_bytes(16, "big")


def g_gcm(k: bytes, nonce: bytes, aad: bytes, data: bytes) -> tuple[bytes, bytes]:
    """SM4-GCM with a 96-bit nonce from gmssl's SM4-ECB + the reference GHASH: (ct, tag).

    Counter blocks: J0 = nonce ‖ 00000001 masks the tag, data uses nonce ‖ 00000002 onwards.
    XOR is symmetric, so this encrypts, and for decryption returns the plaintext and the tag the
    ciphertext ``data`` must carry when called as ``g_gcm_open``.
    """
    ct = g_ctr_xor(k, nonce, 32, data)  # byte 32 = start of counter block 2
    s = ref_ghash(g_block(k, bytes(16)), aad, ct)
    return ct, bytes(a ^ b for a, b in zip(g_block(k, nonce + b"\0\0\0\1"), s, strict=True))


def g_gcm_open(k: bytes, nonce: bytes, aad: bytes, ct: bytes) -> tuple[bytes, bytes]:
    """(plaintext, expected tag) of a GCM ciphertext, with gmssl + the reference GHASH."""
    s = ref_ghash(g_block(k, bytes(16)), aad, ct)
    tag = bytes(a ^ b for a, b in zip(g_block(k, nonce + b"\0\0\0\1"), s, strict=True))
    return g_ctr_xor(k, nonce, 32, ct), tag


def test_reference_gcm_matches_rfc8998_sm4_gcm_vector() -> None:
    """RFC 8998 Appendix A.1 (SM4-GCM) through gmssl + the reference GHASH."""
    k = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    iv = bytes.fromhex("00001234567800000000ABCD")
    aad = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    pt = bytes.fromhex("".join(c * 16 for c in "ABCDEFEA"))
    ct, tag = g_gcm(k, iv, aad, pt)
    assert ct.hex().upper() == (
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
        "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
    )
    assert tag.hex().upper() == "83DE3541E4C2B58177E065A9BF7B62EC"
    assert g_gcm_open(k, iv, aad, ct) == (pt, tag)


def g_prefix_v1(dataset: str, column: str, key_id: str, nonce: bytes) -> bytes:
    """The documented format-1 prefix (docs/crypto.md), written out independently."""
    p = b"govdx/cell/v1\x00\x01"
    for s in (dataset, column, key_id):
        p += len(s.encode()).to_bytes(2, "big") + s.encode()
    p += nonce
    return p + bytes(-len(p) % 16)


def g_aad_v2(dataset: str, column: str, key_id: str, fixed: bytes, lengths: list[int]) -> bytes:
    """The documented format-2 AAD (docs/crypto.md), written out independently."""
    p = b"govdx/cell/v2\x00\x02"
    for s in (dataset, column, key_id):
        p += len(s.encode()).to_bytes(2, "big") + s.encode()
    return p + fixed + b"".join(n.to_bytes(4, "big") for n in lengths)


SUBKEYS = g_hkdf(DEK, b"govdx/sm4-ctr-cmac/v1", 32)
K_ENC, K_MAC = SUBKEYS[:16], SUBKEYS[16:]
K_GCM = g_hkdf(DEK, b"govdx/sm4-gcm/v2", 16)


def test_gmssl_decrypts_project_v2_groups() -> None:
    values = ["11010519491231002X", "", "张三丰", GB18030_ONLY, "x" * 37]
    cells = _cells(enc(values, group_cells=3))  # groups: rows 0-2, rows 3-4
    got = []
    for head in (0, 3):
        h = cells[head]
        assert h[:2] == b"\x02\x01"
        nonce, batch, fixed, tag = h[2:14], h[14:22], h[2:30], h[30:46]
        index, count = int.from_bytes(h[22:26], "big"), int.from_bytes(h[26:30], "big")
        assert (index, count) == (head // 3, 3 if head == 0 else 2)
        assert batch == cells[0][14:22]
        group = [h[46:]] + [c[2:] for c in cells[head + 1 : head + count]]
        assert all(c[:2] == b"\x02\x00" for c in cells[head + 1 : head + count])
        aad = g_aad_v2(DS, COL, KEY.key_id, fixed, [len(c) for c in group])
        pt, want_tag = g_gcm_open(K_GCM, nonce, aad, b"".join(group))
        assert want_tag == tag
        lens = np.cumsum([0] + [len(c) for c in group])
        got += [pt[a:b].decode("utf-8") for a, b in itertools.pairwise(lens)]
    assert got == values


def _gmssl_v2_cells(values: list[str], nonce: bytes, batch: bytes, index: int) -> list[bytes]:
    plain = [v.encode("utf-8") for v in values]
    fixed = nonce + batch + index.to_bytes(4, "big") + len(plain).to_bytes(4, "big")
    aad = g_aad_v2(DS, COL, KEY.key_id, fixed, [len(p) for p in plain])
    ct, tag = g_gcm(K_GCM, nonce, aad, b"".join(plain))
    cells, pos = [], 0
    for i, p in enumerate(plain):
        prefix = b"\x02\x01" + fixed + tag if i == 0 else b"\x02\x00"
        cells.append(prefix + ct[pos : pos + len(p)])
        pos += len(p)
    return cells


def test_project_decrypts_gmssl_v2_groups() -> None:
    batch = bytes.fromhex("0102030405060708")
    g0 = _gmssl_v2_cells(["身份证 110105", "", "abcdefghijklmnopq"], bytes(range(12)), batch, 0)
    g1 = _gmssl_v2_cells([GB18030_ONLY, "z"], bytes(range(12, 24)), batch, 1)
    assert dec(_bin(g0 + g1)) == ["身份证 110105", "", "abcdefghijklmnopq", GB18030_ONLY, "z"]
    assert dec(_bin(g1)) == [GB18030_ONLY, "z"]  # a slice at a group boundary
    forged = bytearray(g1[0])
    forged[-1] ^= 0x80
    with pytest.raises(DecryptionError, match="tag mismatch"):
        dec(_bin([*g0, bytes(forged), g1[1]]))


def test_gmssl_decrypts_project_v1_cells() -> None:
    values = ["11010519491231002X", "", "张三丰", "x" * 37]
    for cell, want in zip(_cells(enc(values, version=1)), values, strict=True):
        assert cell[0] == 1
        nonce, pos, ct, tag = (
            cell[1:13],
            int.from_bytes(cell[13:17], "big"),
            cell[17:-16],
            cell[-16:],
        )
        msg = g_prefix_v1(DS, COL, KEY.key_id, nonce) + cell[13:17] + ct
        assert g_cmac(K_MAC, msg) == tag
        assert g_ctr_xor(K_ENC, nonce, pos, ct).decode("utf-8") == want


def test_project_decrypts_gmssl_v1_cells() -> None:
    nonce = bytes(range(12))
    cells, pos = [], 0
    values = ["身份证 110105", "", "abcdefghijklmnopq"]
    for v in values:
        ct = g_ctr_xor(K_ENC, nonce, pos, v.encode())
        head = b"\x01" + nonce + pos.to_bytes(4, "big")
        tag = g_cmac(K_MAC, g_prefix_v1(DS, COL, KEY.key_id, nonce) + pos.to_bytes(4, "big") + ct)
        cells.append(head + ct + tag)
        pos += len(v.encode())
    assert dec(_bin(cells)) == values
    assert dec(_bin(cells[2:])) == values[2:]  # one cell alone, offset 16+
