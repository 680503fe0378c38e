"""SM4 column encryption (SM4 列加密), vectorised over whole Arrow arrays.

Construction (format version 1, see docs/crypto.md for the rationale)::

    K_enc ‖ K_mac = HKDF-SM3(IKM = DEK, salt = none, info = "govdx/sm4-ctr-cmac/v1", L = 32)
    per call (batch):  N = 12 random bytes (os.urandom)
    keystream          SM4-CTR(K_enc), initial counter block N ‖ 0x00000000 (one OpenSSL call
                       over the concatenated UTF-8 of all non-null cells of the batch)
    cell i             p_i = byte offset of cell i in that concatenation (u32)
                       C_i = P_i XOR keystream[p_i : p_i + len(P_i)]
    tag_i              CMAC-SM4(K_mac, prefix(dataset, column, key_id, N) ‖ be32(p_i) ‖ C_i)
    stored cell        0x01 ‖ N ‖ be32(p_i) ‖ C_i ‖ tag_i          (33 bytes + plaintext)

CMAC (NIST SP 800-38B) is evaluated for all cells at once: the CBC-MAC state after the
batch-constant prefix is computed once (one CBC call), then one SM4-ECB call per block index
advances every cell's state together (numpy builds the blocks). Tests check each tag against
``cryptography``'s own CMAC, so this is CMAC, computed in bulk, not a new MAC.

On decryption every tag is verified before any plaintext is produced, then cell order is
checked: inside a run of cells sharing one batch nonce N the offsets must not overlap and must
increase (rows may be filtered out, never swapped or duplicated), and each N forms one run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from numpy.lib.stride_tricks import sliding_window_view

from privacy._errors import DecryptionError, KeyManagementError, PrivacyError

if TYPE_CHECKING:
    from privacy._keys import DataKey

__all__ = [
    "CELL_OVERHEAD_BYTES",
    "FORMAT_VERSION",
    "decrypt_column",
    "encrypt_column",
    "sm4_block_encrypt",
]

FORMAT_VERSION = 1
"""Version byte that starts every stored cell (格式版本)."""
_NONCE = 12
_HDR = 1 + _NONCE + 4
_TAG = 16
CELL_OVERHEAD_BYTES = _HDR + _TAG
"""Bytes a stored cell adds to its plaintext: version 1 + nonce 12 + offset 4 + tag 16 = 33."""
_KDF_INFO = b"govdx/sm4-ctr-cmac/v1"
_PREFIX_LABEL = b"govdx/cell/v1\x00"
# batch size bound: keeps offsets in u32 and the CTR block counter far below 2**32 (no carry
# into the nonce)
_MAX_BATCH_BYTES = 1 << 31

Audit = Callable[[str, dict], None]


# --- primitives (all cipher work is OpenSSL through `cryptography`) ----------------------------
def _subkeys(dek: bytes) -> tuple[bytes, bytes]:
    """K_enc, K_mac (16 bytes each) from a 16-byte DEK with HKDF-SM3 (RFC 5869)."""
    if len(dek) != 16:
        raise KeyManagementError(f"SM4 data key must be 16 bytes (128 bit), got {len(dek)}")
    okm = HKDF(algorithm=hashes.SM3(), length=32, salt=None, info=_KDF_INFO).derive(dek)
    return okm[:16], okm[16:]


def _ctr(k_enc: bytes, nonce: bytes, block: int):
    return Cipher(algorithms.SM4(k_enc), modes.CTR(nonce + block.to_bytes(4, "big"))).encryptor()


def _dbl(block: bytes) -> bytes:
    """Doubling in GF(2^128) (NIST SP 800-38B §6.1, CMAC subkey generation)."""
    n = int.from_bytes(block, "big") << 1
    if block[0] & 0x80:
        n ^= 0x87
    return (n & ((1 << 128) - 1)).to_bytes(16, "big")


class _BulkCmac:
    """CMAC-SM4 (NIST SP 800-38B) of many messages sharing a block-aligned prefix."""

    def __init__(self, k_mac: bytes) -> None:
        self._k = k_mac
        self._ecb = Cipher(algorithms.SM4(k_mac), modes.ECB()).encryptor()
        l0 = self._ecb.update(bytes(16))
        self.k1 = _dbl(l0)
        self.k2 = _dbl(self.k1)

    def prefix_state(self, prefix: bytes) -> np.ndarray:
        """CBC-MAC state (16 uint8) after the block-aligned, non-final ``prefix``."""
        out = Cipher(algorithms.SM4(self._k), modes.CBC(bytes(16))).encryptor().update(prefix)
        return np.frombuffer(out[-16:], dtype=np.uint8)

    def tags(
        self,
        states: np.ndarray,
        pos: np.ndarray,
        data: np.ndarray,
        starts: np.ndarray,
        lengths: np.ndarray,
    ) -> np.ndarray:
        """Tags (n × 16 uint8) of messages ``prefix ‖ be32(pos_i) ‖ data[starts_i : +lengths_i]``.

        ``states`` (n × 16) is each message's CBC-MAC state after its prefix.
        """
        n = len(lengths)
        out = np.empty((n, 16), dtype=np.uint8)
        if n == 0:
            return out
        nb = (lengths + 4 + 15) // 16  # blocks after the prefix, >= 1
        max_w = int(nb.max()) * 16 - 4
        padded = np.concatenate([data, np.zeros(max_w, dtype=np.uint8)])
        pos_be = pos.astype(">u4").view(np.uint8).reshape(n, 4)
        k1 = np.frombuffer(self.k1, dtype=np.uint8)
        k2 = np.frombuffer(self.k2, dtype=np.uint8)
        groups = [int(nb[0])] if int(nb.min()) == int(nb.max()) else np.unique(nb).tolist()
        for g in groups:
            idx = None if len(groups) == 1 else np.flatnonzero(nb == g)
            width = g * 16 - 4
            sel_l = lengths if idx is None else lengths[idx]
            sel_s = starts if idx is None else starts[idx]
            k = len(sel_l)
            msg = np.empty((k, g * 16), dtype=np.uint8)
            msg[:, :4] = pos_be if idx is None else pos_be[idx]
            lo, hi = int(sel_l.min()), int(sel_l.max())
            if lo == hi and k > 1 and bool(np.all(np.diff(sel_s) == lo)):
                # equal-length, back-to-back cells (the common case): a reshape, no gather
                s0 = int(sel_s[0])
                msg[:, 4 : 4 + lo] = padded[s0 : s0 + k * lo].reshape(k, lo)
                msg[:, 4 + lo :] = 0
            else:
                msg[:, 4:] = sliding_window_view(padded, width)[sel_s]
                if lo == hi:
                    msg[:, 4 + lo :] = 0
                else:
                    msg[:, 4:][np.arange(width) >= sel_l[:, None]] = 0
            incomplete = sel_l < width
            if lo == hi:
                if lo < width:
                    msg[:, 4 + lo] = 0x80
            else:
                rows = np.flatnonzero(incomplete)
                msg[rows, 4 + sel_l[rows]] = 0x80
            last = msg[:, -16:]
            if lo == hi:
                last ^= k2 if lo < width else k1
            else:
                last ^= np.where(incomplete[:, None], k2, k1)
            state = states if idx is None else states[idx]
            for j in range(g):
                x = np.bitwise_xor(state, msg[:, 16 * j : 16 * j + 16])
                state = np.frombuffer(self._ecb.update(x), dtype=np.uint8).reshape(k, 16)
            if idx is None:
                out[:] = state
            else:
                out[idx] = state
        return out


def _prefix(dataset: str, column: str, key_id: str, nonce: bytes) -> bytes:
    parts = [_PREFIX_LABEL, bytes([FORMAT_VERSION])]
    for name, value in (("dataset", dataset), ("column", column), ("key_id", key_id)):
        raw = value.encode("utf-8")
        if len(raw) > 0xFFFF:
            raise PrivacyError(f"{name} {value[:40]!r}… is longer than 65535 UTF-8 bytes")
        parts += [len(raw).to_bytes(2, "big"), raw]
    parts.append(nonce)
    p = b"".join(parts)
    return p + bytes(-len(p) % 16)


# --- Arrow plumbing -----------------------------------------------------------------------------
def _offsets_data(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets int64[n+1] starting at 0, data uint8) of a large_string/large_binary array."""
    bufs = arr.buffers()
    offs = np.frombuffer(bufs[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    base, end = int(offs[0]), int(offs[-1])
    if bufs[2] is None or end == base:
        data = np.zeros(0, dtype=np.uint8)
    else:
        data = np.frombuffer(bufs[2], dtype=np.uint8)[base:end]
    return offs - base, data


def _var_array(typ: pa.DataType, offsets: np.ndarray, data: np.ndarray | bytes) -> pa.Array:
    n = len(offsets) - 1
    large = pa.types.is_large_binary(typ) or pa.types.is_large_string(typ)
    offs = offsets.astype(np.int64 if large else np.int32, copy=False)
    return pa.Array.from_buffers(typ, n, [None, pa.py_buffer(offs), pa.py_buffer(data)])


def _fixed_as_binary(rows: np.ndarray) -> pa.Array:
    n, w = rows.shape
    return _var_array(pa.large_binary(), np.arange(n + 1, dtype=np.int64) * w, rows.reshape(-1))


def _combine(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    if not isinstance(values, pa.Array):
        raise TypeError(f"expected a pyarrow Array or ChunkedArray, got {type(values).__name__}")
    return values


def _reinsert_nulls(compact: pa.Array, valid: np.ndarray | None) -> pa.Array:
    if valid is None:
        return compact
    idx = np.cumsum(valid) - 1
    return compact.take(pa.array(idx, mask=~valid))


def _valid_mask(arr: pa.Array) -> np.ndarray | None:
    if arr.null_count == 0:
        return None
    return np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def _check_key(key: DataKey, dataset: str, column: str) -> None:
    if not dataset or not column:
        raise PrivacyError("dataset and column must be non-empty (数据集代码与字段名不能为空)")
    if key.dataset != dataset:
        raise KeyManagementError(
            f"data key {key.key_id!r} belongs to dataset {key.dataset!r}, not {dataset!r} "
            "(数据密钥与数据集不符)"
        )


# --- public API ------------------------------------------------------------------------------
def sm4_block_encrypt(key: bytes, block: bytes, *, iterations: int = 1) -> bytes:
    """Encrypt one 16-byte block with raw SM4, ``iterations`` times (SM4 分组加密).

    For test vectors and interoperability checks only (GB/T 32907-2016 Appendix A): a single
    block under raw SM4 is not a secure way to encrypt data; use :func:`encrypt_column`.

    Args:
        key: 16 bytes.
        block: 16 bytes.
        iterations: how many times to apply SM4 to the block (≥ 1).

    Returns:
        16 bytes.

    Raises:
        ValueError: wrong key/block length or ``iterations`` < 1.

    Examples:
        >>> k = bytes.fromhex("0123456789abcdeffedcba9876543210")
        >>> sm4_block_encrypt(k, k).hex()
        '681edf34d206965e86b3e94f536e4246'
    """
    if len(key) != 16 or len(block) != 16:
        raise ValueError(f"SM4 needs a 16-byte key and block, got {len(key)} and {len(block)}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    update = Cipher(algorithms.SM4(key), modes.ECB()).encryptor().update
    for _ in range(iterations):
        block = update(block)
    return block


def encrypt_column(
    values: pa.Array | pa.ChunkedArray,
    *,
    key: DataKey,
    dataset: str,
    column: str,
) -> pa.Array:
    """Encrypt a column cell by cell with SM4-CTR + CMAC-SM4 (SM4 列加密, GB/T 32907-2016).

    Every non-null cell is individually authenticated and bound to ``dataset``, ``column``,
    ``key.key_id``, its batch nonce and its byte offset in the batch (format in docs/crypto.md).
    The work is a handful of OpenSSL calls per batch: one SM4-CTR call over all cells, one CBC
    call for the shared prefix, one SM4-ECB call per 16-byte block index of the MAC.

    Args:
        values: pyarrow Array or ChunkedArray[n] of any type castable to string. Each cell is
            encrypted as the UTF-8 of ``pc.cast(values, pa.string())`` (dates ISO 8601,
            decimals plain). Nulls stay null.
        key: the dataset's data key (DEK), a :class:`~privacy.DataKey` of ``dataset``.
        dataset: dataset code (数据集代码), bound into every tag.
        column: column name (字段名), bound into every tag.

    Returns:
        pyarrow ``binary`` Array[n] (``large_binary`` past 2 GiB); a cell is
        ``0x01 ‖ nonce(12) ‖ offset(4, big-endian) ‖ ciphertext ‖ tag(16)``, 33 bytes plus
        its plaintext's length.

    Raises:
        KeyManagementError: ``key`` belongs to another dataset or is not 16 bytes.
        PrivacyError: empty ``dataset``/``column``, or values that cannot be cast to string.
        TypeError: ``values`` is not a pyarrow array.

    Source: SM4 in CTR mode and CMAC (NIST SP 800-38B) from OpenSSL through ``cryptography``;
    HKDF-SM3 (RFC 5869) for key separation.
    """
    _check_key(key, dataset, column)
    arr = _combine(values)
    try:
        text = pc.cast(pc.cast(arr, pa.string()), pa.large_string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise PrivacyError(
            f"{dataset}.{column}: cannot cast {arr.type} to string for encryption: {exc}"
        ) from exc
    valid = _valid_mask(text)
    compact = text.drop_null() if valid is not None else text
    k_enc, k_mac = _subkeys(key.key)
    cmac = _BulkCmac(k_mac)
    offsets, data = _offsets_data(compact)
    n = len(compact)
    pieces: list[pa.Array] = [pa.array([], pa.large_binary())] if n == 0 else []
    first = 0
    while first < n:  # cells [first, last) whose bytes fit in one batch (one nonce)
        last = int(np.searchsorted(offsets, offsets[first] + _MAX_BATCH_BYTES, side="right")) - 1
        last = min(max(last, first + 1), n)
        batch = offsets[first : last + 1]
        pieces.append(_encrypt_batch(batch, data, cmac, k_enc, key, dataset, column))
        first = last
    out = pieces[0] if len(pieces) == 1 else pa.concat_arrays(pieces)
    out = _reinsert_nulls(out, valid)
    if out.nbytes < (1 << 31) - 1:
        out = out.cast(pa.binary())
    return out


def _encrypt_batch(
    offsets: np.ndarray,
    data: np.ndarray,
    cmac: _BulkCmac,
    k_enc: bytes,
    key: DataKey,
    dataset: str,
    column: str,
) -> pa.Array:
    n = len(offsets) - 1
    base = int(offsets[0])
    pt = data[base : int(offsets[-1])]
    nonce = os.urandom(_NONCE)
    pos = (offsets[:-1] - base).astype(np.uint32)
    lengths = np.diff(offsets)
    ct = np.frombuffer(_ctr(k_enc, nonce, 0).update(pt), dtype=np.uint8) if len(pt) else pt
    state = cmac.prefix_state(_prefix(dataset, column, key.key_id, nonce))
    tags = cmac.tags(np.broadcast_to(state, (n, 16)), pos, ct, pos.astype(np.int64), lengths)
    header = np.empty((n, _HDR), dtype=np.uint8)
    header[:, 0] = FORMAT_VERSION
    header[:, 1 : 1 + _NONCE] = np.frombuffer(nonce, dtype=np.uint8)
    header[:, 1 + _NONCE :] = pos.astype(">u4").view(np.uint8).reshape(n, 4)
    lo, hi = int(lengths.min()), int(lengths.max())
    if lo == hi:  # equal-length cells (identifiers): one (n × cell) matrix, no ragged copy
        w = CELL_OVERHEAD_BYTES + lo
        mat = np.empty((n, w), dtype=np.uint8)
        mat[:, :_HDR] = header
        mat[:, _HDR : _HDR + lo] = ct.reshape(n, lo)
        mat[:, _HDR + lo :] = tags
        return _var_array(pa.large_binary(), np.arange(n + 1, dtype=np.int64) * w, mat.reshape(-1))
    ct_arr = _var_array(pa.large_binary(), offsets - base, ct)
    return pc.binary_join_element_wise(
        _fixed_as_binary(header), ct_arr, _fixed_as_binary(tags), pa.scalar(b"", pa.large_binary())
    )


def decrypt_column(
    cipher: pa.Array | pa.ChunkedArray,
    *,
    key: DataKey,
    dataset: str,
    column: str,
    audit: Audit | None = None,
) -> pa.StringArray:
    """Verify and decrypt a column written by :func:`encrypt_column` (SM4 列解密).

    All tags are verified before any plaintext is produced; then the cell order is checked
    (cells of one batch may be filtered out, not swapped, duplicated or interleaved with
    another batch). A single cell can be decrypted alone (an array of one cell).

    Args:
        cipher: pyarrow binary/large_binary Array or ChunkedArray[n] of stored cells, in
            storage order (decrypt before sorting or shuffling rows).
        key: the data key with the ``key_id`` the column was encrypted under.
        dataset: dataset code the column was encrypted for.
        column: column name the column was encrypted for.
        audit: optional callback, called once per call, before any plaintext is produced, with
            ``("decrypt", {"dataset", "column", "key_id", "cells"})`` (cells = non-null cells).

    Returns:
        pyarrow ``string`` Array[n] (``large_string`` past 2 GiB) of the canonical strings; nulls
        stay null.

    Raises:
        DecryptionError: a cell is truncated, has an unknown version byte, fails its tag (flipped
            bit, wrong key, wrong dataset/column, moved from another column or dataset), or
            cells were swapped/duplicated; ``.rows`` lists the first offending rows.
        KeyManagementError: ``key`` belongs to another dataset.
        TypeError: ``cipher`` is not a binary pyarrow array.
    """
    _check_key(key, dataset, column)
    arr = _combine(cipher)
    if not (pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type)):
        raise TypeError(f"{dataset}.{column}: ciphertext must be binary, got {arr.type}")
    arr = arr.cast(pa.large_binary())
    valid = _valid_mask(arr)
    compact = arr.drop_null() if valid is not None else arr
    rows = np.flatnonzero(valid) if valid is not None else None
    where = f"{dataset}.{column} (key {key.key_id})"

    def fail(msg: str, bad: np.ndarray) -> DecryptionError:
        orig = (rows[bad] if rows is not None else bad)[:10].tolist()
        return DecryptionError(f"{where}: {msg} at rows {orig} (密文校验失败)", rows=orig)

    if audit is not None:
        audit(
            "decrypt",
            {"dataset": dataset, "column": column, "key_id": key.key_id, "cells": len(compact)},
        )
    n = len(compact)
    if n == 0:
        return _reinsert_nulls(pa.array([], pa.string()), valid)
    offsets, data = _offsets_data(compact)
    lengths = np.diff(offsets)
    short = np.flatnonzero(lengths < CELL_OVERHEAD_BYTES)
    if len(short):
        raise fail(f"cell shorter than {CELL_OVERHEAD_BYTES} bytes", short)
    starts = offsets[:-1]
    bad_ver = np.flatnonzero(data[starts] != FORMAT_VERSION)
    if len(bad_ver):
        raise fail("unknown format version byte", bad_ver)
    ct_len = lengths - CELL_OVERHEAD_BYTES
    w = int(lengths[0])
    if bool(np.all(lengths == w)):  # equal-length cells: fields are column slices of a matrix
        mat = data.reshape(n, w)
        nonces, pos_b, tags = mat[:, 1 : _HDR - 4], mat[:, _HDR - 4 : _HDR], mat[:, w - _TAG :]
        ct = np.ascontiguousarray(mat[:, _HDR : w - _TAG]).reshape(-1)
        ct_off = np.arange(n + 1, dtype=np.int64) * (w - CELL_OVERHEAD_BYTES)
    else:
        nonces = sliding_window_view(data, _NONCE)[starts + 1]
        pos_b = sliding_window_view(data, 4)[starts + 1 + _NONCE]
        tags = sliding_window_view(data, _TAG)[offsets[1:] - _TAG]
        ct_off, ct = _offsets_data(pc.binary_slice(compact, _HDR, -_TAG))
    pos = np.ascontiguousarray(pos_b).view(">u4").ravel().astype(np.int64)

    # runs of consecutive cells sharing a batch nonce
    hi = np.ascontiguousarray(nonces[:, :8]).view("<u8").ravel()
    lo = np.ascontiguousarray(nonces[:, 8:]).view("<u4").ravel()
    change = np.empty(n, dtype=bool)
    change[0] = True
    change[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
    run_starts = np.flatnonzero(change)
    run_ids = np.cumsum(change) - 1

    k_enc, k_mac = _subkeys(key.key)
    cmac = _BulkCmac(k_mac)
    run_states = np.stack(
        [
            cmac.prefix_state(_prefix(dataset, column, key.key_id, nonces[s].tobytes()))
            for s in run_starts.tolist()
        ]
    )
    states = (
        np.broadcast_to(run_states[0], (n, 16)) if len(run_starts) == 1 else run_states[run_ids]
    )
    expect = cmac.tags(states, pos, ct, ct_off[:-1], ct_len)
    bad = np.flatnonzero(np.any(expect != tags, axis=1))
    if len(bad):
        raise fail("authentication tag mismatch (bit flip, wrong key, dataset or column)", bad)

    heads = np.stack([hi[run_starts], lo[run_starts].astype(np.uint64)], axis=1)
    if len(np.unique(heads, axis=0)) != len(run_starts):
        dup = np.flatnonzero(change)[1:]
        raise fail("cells of one batch are not contiguous (swapped or moved cells)", dup)
    same = ~change[1:]
    overlap = np.flatnonzero(same & (pos[1:] < pos[:-1] + ct_len[:-1])) + 1
    if len(overlap):
        raise fail("cells out of order or duplicated within a batch (swapped cells)", overlap)

    pt = np.empty(len(ct), dtype=np.uint8)
    bounds = [*run_starts.tolist(), n]
    for r in range(len(run_starts)):
        a, b = bounds[r], bounds[r + 1]
        c0, c1 = int(ct_off[a]), int(ct_off[b])
        if c0 == c1:
            continue
        p0 = int(pos[a])
        enc = _ctr(k_enc, nonces[a].tobytes(), p0 // 16)
        skip = p0 % 16
        if bool(np.all(pos[a:b] - ct_off[a:b] == p0 - c0)):  # no gaps: one stream
            if skip:
                enc.update(bytes(skip))
            pt[c0:c1] = np.frombuffer(enc.update(ct[c0:c1]), dtype=np.uint8)
        else:  # rows filtered out: keystream over the span, gathered per byte
            span = int(pos[b - 1] + ct_len[b - 1]) - (p0 - skip)
            ks = np.frombuffer(enc.update(bytes(span)), dtype=np.uint8)
            shift = np.repeat(pos[a:b] - (p0 - skip) - ct_off[a:b], ct_len[a:b])
            pt[c0:c1] = ct[c0:c1] ^ ks[np.arange(c0, c1) + shift]
    large = len(pt) >= (1 << 31) - 1
    out = _var_array(pa.large_string() if large else pa.string(), ct_off, pt)
    return _reinsert_nulls(out, valid)
