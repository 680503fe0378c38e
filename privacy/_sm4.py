"""SM4 column encryption (SM4 列加密), vectorised over whole Arrow arrays.

Two stored formats; docs/crypto.md §1 gives both exactly, with the reasons.

Format version 2 (written by :func:`encrypt_column`): SM4-GCM (NIST SP 800-38D with SM4) over
groups of up to :data:`GROUP_CELLS` consecutive non-null cells, one OpenSSL call per group::

    K        = HKDF-SM3(IKM = DEK, salt = none, info = "govdx/sm4-gcm/v2", L = 16)
    per call B = 8 random bytes (batch id); per group j: N_j = 12 random bytes (GCM nonce)
    H_j      = N_j ‖ B ‖ be32(j) ‖ be32(n_j)                        (28 bytes, n_j = cells)
    AAD_j    = "govdx/cell/v2" 00 ‖ 02 ‖ u16 len ‖ dataset ‖ u16 len ‖ column ‖ u16 len ‖ key_id
               ‖ H_j ‖ be32(len P_0) ‖ … ‖ be32(len P_{n_j-1})
    C ‖ T_j  = SM4-GCM(K, N_j, AAD_j, P_0 ‖ … ‖ P_{n_j-1});  C_i = cell i's slice of C
    head cell (first of the group)  02 ‖ 01 ‖ H_j ‖ T_j ‖ C_0       (46 bytes + plaintext)
    other cells                     02 ‖ 00 ‖ C_i                    (2 bytes + plaintext)

A group is verified as a whole, so a group must reach ``decrypt_column`` complete and in
storage order (slices at group boundaries are fine, filtered subsets of a group are refused).

Format version 1 (read only, legacy): SM4-CTR over the whole batch + one CMAC-SM4 tag per cell::

    K_enc ‖ K_mac = HKDF-SM3(IKM = DEK, salt = none, info = "govdx/sm4-ctr-cmac/v1", L = 32)
    per call (batch):  N = 12 random bytes (os.urandom)
    keystream          SM4-CTR(K_enc), initial counter block N ‖ 0x00000000 (one OpenSSL call
                       over the concatenated UTF-8 of all non-null cells of the batch)
    cell i             p_i = byte offset of cell i in that concatenation (u32)
                       C_i = P_i XOR keystream[p_i : p_i + len(P_i)]
    tag_i              CMAC-SM4(K_mac, prefix(dataset, column, key_id, N) ‖ be32(p_i) ‖ C_i)
    stored cell        0x01 ‖ N ‖ be32(p_i) ‖ C_i ‖ tag_i          (33 bytes + plaintext)

v1 CMAC is evaluated for all cells at once: the CBC-MAC state after the batch-constant prefix is
computed once (one CBC call), then one SM4-ECB call per block index advances every cell's state
together (numpy builds the blocks). Tests check each tag against ``cryptography``'s own CMAC.

On decryption every tag is verified before any plaintext is returned, then cell/group order is
checked (v1: inside a run of cells sharing one batch nonce the offsets must increase; v2: inside
a run of groups sharing one batch id the group indices must increase; each batch forms one run).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.exceptions import InvalidTag
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
    "GROUP_CELLS",
    "GROUP_HEADER_BYTES",
    "decrypt_column",
    "encrypt_column",
    "sm4_block_encrypt",
]

FORMAT_VERSION = 2
"""Version byte that starts every cell :func:`encrypt_column` writes (格式版本); cells starting
with ``01`` (format 1) are still read."""
GROUP_CELLS = 256
"""Non-null cells per SM4-GCM group (分组) in format 2; the last group of a call may be shorter."""
CELL_OVERHEAD_BYTES = 2
"""Bytes every format-2 cell adds to its plaintext: version 1 + kind 1."""
GROUP_HEADER_BYTES = 44
"""Bytes the head cell of a format-2 group adds on top: nonce 12 + batch id 8 + group index 4 +
cell count 4 + tag 16."""

_V1 = 1
_NONCE = 12
_HDR = 1 + _NONCE + 4
_TAG = 16
_V1_OVERHEAD = _HDR + _TAG  # 33
_KDF_INFO_V1 = b"govdx/sm4-ctr-cmac/v1"
_PREFIX_LABEL = b"govdx/cell/v1\x00"
# batch size bound: keeps offsets in u32 and the CTR block counter far below 2**32 (no carry
# into the nonce)
_MAX_BATCH_BYTES = 1 << 31

_KDF_INFO_V2 = b"govdx/sm4-gcm/v2"
_AAD_LABEL_V2 = b"govdx/cell/v2\x00"
_BATCH_ID = 8
_GROUP_FIXED = _NONCE + _BATCH_ID + 4 + 4  # 28: the header fields bound into the AAD
_HEAD = CELL_OVERHEAD_BYTES + GROUP_HEADER_BYTES  # 46: head cell bytes before its ciphertext
_KIND_HEAD, _KIND_NEXT = 1, 0

Audit = Callable[[str, dict], None]


# --- primitives (all cipher work is OpenSSL through `cryptography`) ----------------------------
def _subkeys(dek: bytes) -> tuple[bytes, bytes]:
    """K_enc, K_mac (16 bytes each) from a 16-byte DEK with HKDF-SM3 (RFC 5869)."""
    if len(dek) != 16:
        raise KeyManagementError(f"SM4 data key must be 16 bytes (128 bit), got {len(dek)}")
    okm = HKDF(algorithm=hashes.SM3(), length=32, salt=None, info=_KDF_INFO_V1).derive(dek)
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


def _prefix_v1(dataset: str, column: str, key_id: str, nonce: bytes) -> bytes:
    parts = [_PREFIX_LABEL, bytes([_V1])]
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


# --- format 2 primitives ------------------------------------------------------------------------
def _gcm_key(dek: bytes) -> bytes:
    """K (16 bytes) of format 2 from a 16-byte DEK with HKDF-SM3 (RFC 5869)."""
    if len(dek) != 16:
        raise KeyManagementError(f"SM4 data key must be 16 bytes (128 bit), got {len(dek)}")
    return HKDF(algorithm=hashes.SM3(), length=16, salt=None, info=_KDF_INFO_V2).derive(dek)


def _aad_prefix(dataset: str, column: str, key_id: str) -> bytes:
    """The call-constant start of every format-2 AAD (length-prefixed, so injective)."""
    parts = [_AAD_LABEL_V2, bytes([FORMAT_VERSION])]
    for name, value in (("dataset", dataset), ("column", column), ("key_id", key_id)):
        raw = value.encode("utf-8")
        if len(raw) > 0xFFFF:
            raise PrivacyError(f"{name} {value[:40]!r}… is longer than 65535 UTF-8 bytes")
        parts += [len(raw).to_bytes(2, "big"), raw]
    return b"".join(parts)


def _be32(values: np.ndarray) -> np.ndarray:
    """(n × 4) uint8 big-endian bytes of ``values`` (< 2**32)."""
    return values.astype(">u4").view(np.uint8).reshape(-1, 4)


def _group_views(buf: np.ndarray, groups: int, cells: int, width: int) -> tuple:
    """Views into a run of ``groups`` full uniform groups of stored cells.

    ``buf`` holds the groups back to back, each ``GROUP_HEADER_BYTES + cells × width`` bytes
    (``width`` = 2 + ciphertext bytes per cell). Returns ``(rows, cell_view)``: rows is
    (groups × group bytes), cell_view (groups × cells × width) where cell k of a group starts
    ``GROUP_HEADER_BYTES + k × width`` bytes into its row; cell 0's first two bytes are then
    the last two of the 46-byte head prefix, which the caller writes after the cells.
    """
    rows = buf.reshape(groups, GROUP_HEADER_BYTES + cells * width)
    return rows, rows[:, GROUP_HEADER_BYTES:].reshape(groups, cells, width)


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
    """Encrypt a column with SM4-GCM over groups of cells (SM4 列加密, GB/T 32907-2016), format 2.

    Non-null cells are taken in order in groups of :data:`GROUP_CELLS` (the last group may be
    shorter); each group is one SM4-GCM encryption whose tag covers every cell's ciphertext and
    length, the group's position (batch id, group index, cell count), ``dataset``, ``column`` and
    ``key.key_id`` (format in docs/crypto.md §1). The work is one OpenSSL call per group plus
    numpy/Arrow buffer assembly.

    Args:
        values: pyarrow Array or ChunkedArray[n] of any type castable to string. Each cell is
            encrypted as the UTF-8 of ``pc.cast(values, pa.string())`` (dates ISO 8601,
            decimals plain). Nulls stay null and are not part of any group.
        key: the dataset's data key (DEK), a :class:`~privacy.DataKey` of ``dataset``.
        dataset: dataset code (数据集代码), bound into every tag.
        column: column name (字段名), bound into every tag.

    Returns:
        pyarrow ``binary`` Array[n] (``large_binary`` past 2 GiB). The first cell of each group
        is ``02 ‖ 01 ‖ nonce(12) ‖ batch id(8) ‖ be32 group index ‖ be32 cells ‖ tag(16) ‖
        ciphertext`` (46 bytes + plaintext), every other cell ``02 ‖ 00 ‖ ciphertext``
        (2 bytes + plaintext): ≈ 2.2 bytes of overhead per cell at 256 cells per group.
        Decrypt it whole, or sliced at group boundaries, in storage order.

    Raises:
        KeyManagementError: ``key`` belongs to another dataset or is not 16 bytes.
        PrivacyError: empty ``dataset``/``column``, or values that cannot be cast to string.
        TypeError: ``values`` is not a pyarrow array.

    Source: SM4-GCM (NIST SP 800-38D with SM4, as in RFC 8998) from OpenSSL through
    ``cryptography``; HKDF-SM3 (RFC 5869) for key separation.
    """
    return _encrypt(values, key=key, dataset=dataset, column=column)


def _encrypt(
    values: pa.Array | pa.ChunkedArray,
    *,
    key: DataKey,
    dataset: str,
    column: str,
    version: int = FORMAT_VERSION,
    group_cells: int = GROUP_CELLS,
) -> pa.Array:
    """:func:`encrypt_column` with the format chosen: ``version=1`` writes the legacy format
    (tests and fixtures only), ``group_cells`` sets the format-2 group size (≥ 1)."""
    _check_key(key, dataset, column)
    if version not in (_V1, FORMAT_VERSION):
        raise ValueError(f"unknown SM4 column format version {version}")
    if group_cells < 1:
        raise ValueError(f"group_cells must be >= 1, got {group_cells}")
    arr = _combine(values)
    try:
        text = pc.cast(pc.cast(arr, pa.string()), pa.large_string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise PrivacyError(
            f"{dataset}.{column}: cannot cast {arr.type} to string for encryption: {exc}"
        ) from exc
    valid = _valid_mask(text)
    compact = text.drop_null() if valid is not None else text
    offsets, data = _offsets_data(compact)
    if version == FORMAT_VERSION:
        out = _encrypt_v2(offsets, data, key, dataset, column, group_cells)
    else:
        out = _encrypt_v1(offsets, data, key, dataset, column)
    out = _reinsert_nulls(out, valid)
    if pa.types.is_large_binary(out.type) and out.nbytes < (1 << 31) - 1:
        out = out.cast(pa.binary())
    return out


def _encrypt_v2(
    offsets: np.ndarray,
    data: np.ndarray,
    key: DataKey,
    dataset: str,
    column: str,
    group_cells: int,
) -> pa.Array:
    """Format-2 cells (binary, or large_binary past 2 GiB) of the n non-null cells
    ``data[offsets[i] : offsets[i + 1]]``."""
    n = len(offsets) - 1
    if n == 0:
        return pa.array([], pa.binary())
    lengths = np.diff(offsets)
    if int(lengths.max()) > 0xFFFFFFFF:
        raise PrivacyError(f"{dataset}.{column}: a cell is longer than 4 GiB")
    g = group_cells
    ng = -(-n // g)
    if ng > 0xFFFFFFFF:
        raise PrivacyError(f"{dataset}.{column}: more than 2**32 groups in one call")
    heads = np.arange(ng, dtype=np.int64) * g
    counts = np.minimum(g, n - heads)
    hdr = np.empty((ng, GROUP_HEADER_BYTES), dtype=np.uint8)
    hdr[:, :_NONCE] = np.frombuffer(os.urandom(_NONCE * ng), dtype=np.uint8).reshape(ng, _NONCE)
    hdr[:, _NONCE : _NONCE + _BATCH_ID] = np.frombuffer(os.urandom(_BATCH_ID), dtype=np.uint8)
    hdr[:, _NONCE + _BATCH_ID : _NONCE + _BATCH_ID + 4] = _be32(np.arange(ng))
    hdr[:, _NONCE + _BATCH_ID + 4 : _GROUP_FIXED] = _be32(counts)
    fixed = np.ascontiguousarray(hdr[:, :_GROUP_FIXED]).tobytes()
    lens_be = lengths.astype(">u4").tobytes()
    prefix = _aad_prefix(dataset, column, key.key_id)
    k = _gcm_key(key.key)
    ct = np.empty(len(data) + 16, dtype=np.uint8)  # update_into wants block_size - 1 spare bytes
    ct_mv, pt_mv = memoryview(ct), memoryview(data)
    cuts = offsets[np.append(heads, n)].tolist()
    tags = bytearray()
    for j in range(ng):  # one SM4-GCM call per group
        a, b = j * g, min(j * g + g, n)
        enc = Cipher(algorithms.SM4(k), modes.GCM(fixed[j * 28 : j * 28 + _NONCE])).encryptor()
        enc.authenticate_additional_data(
            prefix + fixed[j * 28 : j * 28 + 28] + lens_be[4 * a : 4 * b]
        )
        c0, c1 = cuts[j], cuts[j + 1]
        enc.update_into(pt_mv[c0:c1], ct_mv[c0 : c1 + 15])
        enc.finalize()
        tags += enc.tag
    hdr[:, _GROUP_FIXED:] = np.frombuffer(bytes(tags), dtype=np.uint8).reshape(ng, 16)
    ct = ct[: len(data)]
    total = int(offsets[-1]) + CELL_OVERHEAD_BYTES * n + GROUP_HEADER_BYTES * ng
    typ = pa.large_binary() if total >= (1 << 31) - 1 else pa.binary()
    lo, hi = int(lengths.min()), int(lengths.max())
    if lo == hi:  # equal-length cells (identifiers): strided copies, no per-cell work
        width = CELL_OVERHEAD_BYTES + lo
        out = np.empty(total, dtype=np.uint8)
        full, tail = divmod(n, g)
        pos = 0
        for groups, cells, first in ((full, g, 0), (1 if tail else 0, tail, full)):
            if not groups:
                continue
            size = groups * (GROUP_HEADER_BYTES + cells * width)
            rows, view = _group_views(out[pos : pos + size], groups, cells, width)
            view[:, :, 0] = FORMAT_VERSION
            view[:, :, 1] = _KIND_NEXT
            view[:, :, 2:] = ct[first * g * lo : (first * g + groups * cells) * lo].reshape(
                groups, cells, lo
            )
            rows[:, 0] = FORMAT_VERSION
            rows[:, 1] = _KIND_HEAD
            rows[:, 2:_HEAD] = hdr[first : first + groups]
            pos += size
        i = np.arange(n + 1, dtype=np.int64)  # cells before i: i, of which ceil(i / g) heads
        out_off = i * width + (i + g - 1) // g * GROUP_HEADER_BYTES
        return _var_array(typ, out_off, out)
    # ragged cells: per-cell prefixes (2 or 46 bytes) joined to the ciphertexts by Arrow
    plen = np.full(n, CELL_OVERHEAD_BYTES, dtype=np.int64)
    plen[heads] = _HEAD
    poff = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(plen, out=poff[1:])
    pbuf = np.empty(int(poff[-1]), dtype=np.uint8)
    pbuf[poff[:-1]] = FORMAT_VERSION
    pbuf[poff[:-1] + 1] = _KIND_NEXT
    hstart = poff[heads]
    pbuf[hstart + 1] = _KIND_HEAD
    pbuf[hstart[:, None] + np.arange(2, _HEAD)] = hdr
    joined = pc.binary_join_element_wise(
        _var_array(pa.large_binary(), poff, pbuf),
        _var_array(pa.large_binary(), offsets, ct),
        pa.scalar(b"", pa.large_binary()),
    )
    return joined if typ == pa.large_binary() else joined.cast(typ)


def _encrypt_v1(
    offsets: np.ndarray, data: np.ndarray, key: DataKey, dataset: str, column: str
) -> pa.Array:
    """Format-1 cells (large_binary) of the n non-null cells (legacy writer, tests only)."""
    k_enc, k_mac = _subkeys(key.key)
    cmac = _BulkCmac(k_mac)
    n = len(offsets) - 1
    pieces: list[pa.Array] = [pa.array([], pa.large_binary())] if n == 0 else []
    first = 0
    while first < n:  # cells [first, last) whose bytes fit in one batch (one nonce)
        last = int(np.searchsorted(offsets, offsets[first] + _MAX_BATCH_BYTES, side="right")) - 1
        last = min(max(last, first + 1), n)
        batch = offsets[first : last + 1]
        pieces.append(_encrypt_batch_v1(batch, data, cmac, k_enc, key, dataset, column))
        first = last
    return pieces[0] if len(pieces) == 1 else pa.concat_arrays(pieces)


def _encrypt_batch_v1(
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
    state = cmac.prefix_state(_prefix_v1(dataset, column, key.key_id, nonce))
    tags = cmac.tags(np.broadcast_to(state, (n, 16)), pos, ct, pos.astype(np.int64), lengths)
    header = np.empty((n, _HDR), dtype=np.uint8)
    header[:, 0] = _V1
    header[:, 1 : 1 + _NONCE] = np.frombuffer(nonce, dtype=np.uint8)
    header[:, 1 + _NONCE :] = pos.astype(">u4").view(np.uint8).reshape(n, 4)
    lo, hi = int(lengths.min()), int(lengths.max())
    if lo == hi:  # equal-length cells (identifiers): one (n × cell) matrix, no ragged copy
        w = _V1_OVERHEAD + lo
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
    """Verify and decrypt a column written by :func:`encrypt_column` (SM4 列解密), format 2 or 1.

    All tags are verified before any plaintext is returned; then the order is checked. Format 2
    (SM4-GCM groups): every group must be complete and its cells in storage order, the groups of
    one encryption call in increasing order (whole groups may be left out: slices at group
    boundaries decrypt). Format 1 (legacy, one CMAC per cell): cells of one batch may be filtered
    out, not swapped or duplicated. Nulls are never part of a group, so dropping or adding nulls
    changes nothing.

    Args:
        cipher: pyarrow binary/large_binary Array or ChunkedArray[n] of stored cells, in
            storage order: decrypt a whole column as read from storage, *then* sort or filter.
        key: the data key with the ``key_id`` the column was encrypted under.
        dataset: dataset code the column was encrypted for.
        column: column name the column was encrypted for.
        audit: optional callback, called once per call, before any plaintext is produced, with
            ``("decrypt", {"dataset", "column", "key_id", "cells"})`` (cells = non-null cells).

    Returns:
        pyarrow ``string`` Array[n] (``large_string`` past 2 GiB) of the canonical strings; nulls
        stay null.

    Raises:
        DecryptionError: a cell is truncated or has an unknown version byte; a group fails its
            tag (flipped bit, wrong key, wrong dataset/column/key id, a cell swapped, moved,
            duplicated or removed inside the group); a group is incomplete (a filtered or sliced
            read that cut a group: 分组不完整); groups or cells are out of order. ``.rows`` lists
            the first offending rows (at most 10; for a group, its first rows).
        KeyManagementError: ``key`` belongs to another dataset.
        TypeError: ``cipher`` is not a binary pyarrow array.

    Source: SM4-GCM (NIST SP 800-38D) / SM4-CTR + CMAC (NIST SP 800-38B) from OpenSSL through
    ``cryptography``.
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
    empty = np.flatnonzero(offsets[1:] == offsets[:-1])
    if len(empty):
        raise fail("empty cell (no version byte)", empty)
    version = data[offsets[:-1]]
    is_v2 = version == FORMAT_VERSION
    bad_ver = np.flatnonzero(~is_v2 & (version != _V1))
    if len(bad_ver):
        raise fail("unknown format version byte", bad_ver)
    if bool(is_v2.all()):
        pt_off, pt = _decrypt_v2(offsets, data, key, dataset, column, fail)
    elif not bool(is_v2.any()):
        pt_off, pt = _decrypt_v1(compact, offsets, data, key, dataset, column, fail)
    else:  # both formats in one array: each decrypted on its own, then merged in row order
        idx2, idx1 = np.flatnonzero(is_v2), np.flatnonzero(~is_v2)
        parts = []
        for idx, fn in ((idx1, _decrypt_v1_array), (idx2, _decrypt_v2_array)):
            sub = compact.take(pa.array(idx))
            parts.append(fn(sub, key, dataset, column, lambda m, b, idx=idx: fail(m, idx[b])))
        order = np.empty(n, dtype=np.int64)
        order[np.concatenate([idx1, idx2])] = np.arange(n)
        merged = pa.concat_arrays(parts).take(pa.array(order))
        # a format-1 cell inside a format-2 group would be an inserted row: refuse it
        o2, d2 = _offsets_data(compact.take(pa.array(idx2)))
        heads = np.flatnonzero(d2[o2[:-1] + 1] == _KIND_HEAD)
        ends = np.append(heads[1:], len(idx2)) - 1
        split = np.flatnonzero(idx2[ends] - idx2[heads] != ends - heads)
        if len(split):
            j = int(split[0])
            raise fail(
                "a format-1 cell sits inside a format-2 group (inserted row)",
                idx2[heads[j] : ends[j] + 1],
            )
        return _reinsert_nulls(merged, valid)
    large = len(pt) >= (1 << 31) - 1
    out = _var_array(pa.large_string() if large else pa.string(), pt_off, pt)
    return _reinsert_nulls(out, valid)


def _decrypt_v1_array(sub: pa.Array, key, dataset, column, fail) -> pa.Array:
    offsets, data = _offsets_data(sub)
    pt_off, pt = _decrypt_v1(sub, offsets, data, key, dataset, column, fail)
    return _var_array(pa.large_string(), pt_off, pt)


def _decrypt_v2_array(sub: pa.Array, key, dataset, column, fail) -> pa.Array:
    offsets, data = _offsets_data(sub)
    pt_off, pt = _decrypt_v2(offsets, data, key, dataset, column, fail)
    return _var_array(pa.large_string(), pt_off, pt)


def _decrypt_v2(
    offsets: np.ndarray,
    data: np.ndarray,
    key: DataKey,
    dataset: str,
    column: str,
    fail: Callable[[str, np.ndarray], DecryptionError],
) -> tuple[np.ndarray, np.ndarray]:
    """(plaintext offsets int64[n+1], plaintext uint8) of n format-2 cells, all verified."""
    n = len(offsets) - 1
    starts = offsets[:-1]
    lengths = np.diff(offsets)
    short = np.flatnonzero(lengths < CELL_OVERHEAD_BYTES)
    if len(short):
        raise fail(f"cell shorter than {CELL_OVERHEAD_BYTES} bytes", short)
    kind = data[starts + 1]
    bad_kind = np.flatnonzero(kind > _KIND_HEAD)
    if len(bad_kind):
        raise fail("unknown cell kind byte", bad_kind)
    heads = np.flatnonzero(kind == _KIND_HEAD)
    partial = (
        "group incomplete: {what}; a group of cells is verified as a whole, so decrypt the "
        "column in storage order, whole or sliced at group boundaries, before filtering, "
        "sorting or slicing rows (分组不完整：请按存储顺序解密整列后再筛选)"
    )
    if len(heads) == 0 or heads[0] != 0:
        first = int(heads[0]) if len(heads) else n
        raise fail(partial.format(what="its head cell is missing"), np.arange(first))
    ng = len(heads)
    short_head = np.flatnonzero(lengths[heads] < _HEAD)
    if len(short_head):
        raise fail(f"group head cell shorter than {_HEAD} bytes", heads[short_head])
    hdr = sliding_window_view(data, GROUP_HEADER_BYTES)[starts[heads] + CELL_OVERHEAD_BYTES]
    fields = np.ascontiguousarray(hdr[:, _NONCE + _BATCH_ID : _GROUP_FIXED]).view(">u4")
    index, counts = fields[:, 0].astype(np.int64), fields[:, 1].astype(np.int64)
    nxt = np.append(heads[1:], n)
    wrong = np.flatnonzero(heads + counts != nxt)
    if len(wrong):
        j = int(wrong[0])
        a, b = int(heads[j]), int(nxt[j])
        if a + int(counts[j]) > b:
            what = f"{b - a} of its {int(counts[j])} cells are present (cells removed or filtered)"
        else:
            what = f"{b - a} cells where its header says {int(counts[j])} (cells inserted)"
        raise fail(partial.format(what=what), np.arange(a, b))
    ct_len = lengths - CELL_OVERHEAD_BYTES
    ct_len[heads] -= GROUP_HEADER_BYTES
    ct_off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(ct_len, out=ct_off[1:])
    g = int(counts[0])
    lo, hi = int(ct_len.min()), int(ct_len.max())
    if lo == hi and bool(np.all(counts[:-1] == g)):  # uniform groups: strided copies
        ct = np.empty(int(ct_off[-1]), dtype=np.uint8)
        width = CELL_OVERHEAD_BYTES + lo
        pos = 0
        for groups, cells, first in ((ng - 1, g, 0), (1, int(counts[-1]), ng - 1)):
            if not groups:
                continue
            size = groups * (GROUP_HEADER_BYTES + cells * width)
            _, view = _group_views(data[pos : pos + size], groups, cells, width)
            c0 = first * g * lo
            ct[c0 : c0 + groups * cells * lo].reshape(groups, cells, lo)[:] = view[:, :, 2:]
            pos += size
    else:
        keep = np.ones(len(data), dtype=bool)  # ragged cells: drop prefix bytes, keep the rest
        keep[starts] = False
        keep[starts + 1] = False
        keep[starts[heads][:, None] + np.arange(CELL_OVERHEAD_BYTES, _HEAD)] = False
        ct = data[keep]
    hbytes = np.ascontiguousarray(hdr).tobytes()
    lens_be = ct_len.astype(">u4").tobytes()
    prefix = _aad_prefix(dataset, column, key.key_id)
    k = _gcm_key(key.key)
    pt = np.empty(len(ct) + 16, dtype=np.uint8)  # update_into wants block_size - 1 spare bytes
    ct_mv, pt_mv = memoryview(ct), memoryview(pt)
    cuts = ct_off[np.append(heads, n)].tolist()
    bounds = [*heads.tolist(), n]
    H = GROUP_HEADER_BYTES
    for j in range(ng):  # one SM4-GCM call per group; each tag checked at finalize()
        a, b = bounds[j], bounds[j + 1]
        h = hbytes[j * H : j * H + H]
        dec = Cipher(algorithms.SM4(k), modes.GCM(h[:_NONCE], h[_GROUP_FIXED:])).decryptor()
        dec.authenticate_additional_data(prefix + h[:_GROUP_FIXED] + lens_be[4 * a : 4 * b])
        c0, c1 = cuts[j], cuts[j + 1]
        dec.update_into(ct_mv[c0:c1], pt_mv[c0 : c1 + 15])
        try:
            dec.finalize()
        except InvalidTag as exc:
            raise fail(
                f"authentication tag mismatch in the group of rows {a}–{b - 1} (bit flip, wrong "
                "key, dataset, column or key id, or cells swapped, moved or re-split)",
                np.arange(a, b),
            ) from exc
    # groups of one batch (one encrypt call) form one run with increasing group indices
    batch = np.ascontiguousarray(hdr[:, _NONCE : _NONCE + _BATCH_ID]).view("<u8").ravel()
    change = np.ones(ng, dtype=bool)
    change[1:] = batch[1:] != batch[:-1]
    if len(np.unique(batch[change])) != int(change.sum()):
        dup = heads[np.flatnonzero(change)[1:]]
        raise fail("groups of one batch are not contiguous (groups swapped or moved)", dup)
    back = np.flatnonzero(~change[1:] & (index[1:] <= index[:-1])) + 1
    if len(back):
        j = int(back[0])
        raise fail(
            "groups out of order or duplicated within a batch (groups swapped)",
            np.arange(heads[j], nxt[j]),
        )
    return ct_off, pt[: len(ct)]


def _decrypt_v1(
    compact: pa.Array,
    offsets: np.ndarray,
    data: np.ndarray,
    key: DataKey,
    dataset: str,
    column: str,
    fail: Callable[[str, np.ndarray], DecryptionError],
) -> tuple[np.ndarray, np.ndarray]:
    """(plaintext offsets int64[n+1], plaintext uint8) of n format-1 cells, all verified."""
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    short = np.flatnonzero(lengths < _V1_OVERHEAD)
    if len(short):
        raise fail(f"cell shorter than {_V1_OVERHEAD} bytes", short)
    starts = offsets[:-1]
    ct_len = lengths - _V1_OVERHEAD
    w = int(lengths[0])
    if bool(np.all(lengths == w)):  # equal-length cells: fields are column slices of a matrix
        mat = data.reshape(n, w)
        nonces, pos_b, tags = mat[:, 1 : _HDR - 4], mat[:, _HDR - 4 : _HDR], mat[:, w - _TAG :]
        ct = np.ascontiguousarray(mat[:, _HDR : w - _TAG]).reshape(-1)
        ct_off = np.arange(n + 1, dtype=np.int64) * (w - _V1_OVERHEAD)
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
            cmac.prefix_state(_prefix_v1(dataset, column, key.key_id, nonces[s].tobytes()))
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
    return ct_off, pt
