"""Protect step (加密与令牌化): sensitive fields never reach storage in plaintext.

For each field that is sensitive personal information or graded core/important (GB/T 43697),
the column is replaced by its SM4 ciphertext (see ``privacy`` column encryption) under the
dataset's data key. Identifier fields (resident_id, uscc, phone) also get a deterministic
keyed HMAC-SM3 token column ``<name>_token`` so joins, PSI and duplicate counting work without
decrypting. Rejected values bound for quarantine are masked and encrypted the same way.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from govdx import Contract
from pipelines._validate import ROW
from privacy import Keyring, encrypt_column, mask_array, token_column

TOKEN_ELEMENTS = frozenset({"resident_id", "uscc", "phone"})
TOKEN_SUFFIX = "_token"
CIPHER_META = b"govdx.cipher"
KEY_META = b"govdx.key_id"


def protect(table: pa.Table, contract: Contract, *, keyring: Keyring) -> pa.Table:
    """Encrypt protected columns and add token columns.

    Args:
        table: typed rows, pyarrow.Table[rows × (contract fields [+ ``_row``])].
        contract: the dataset contract.
        keyring: gives the dataset's current data key and the per-element token keys.

    Returns:
        pyarrow.Table with protected columns as binary ciphertext (field metadata
        ``govdx.cipher``, ``govdx.key_id``) and ``<name>_token`` string columns (64 hex chars)
        after each identifier field; ``_row`` dropped.
    """
    key = keyring.current(contract.code)
    columns: list[pa.Array] = []
    fields: list[pa.Field] = []
    for f in contract.fields:
        col = table[f.name]
        if f.protected:
            enc = encrypt_column(col, key=key, dataset=contract.code, column=f.name)
            meta = {CIPHER_META: b"SM4", KEY_META: key.key_id.encode()}
            columns.append(enc)
            fields.append(pa.field(f.name, enc.type, metadata=meta))
        else:
            columns.append(col)
            fields.append(pa.field(f.name, col.type))
        if f.element in TOKEN_ELEMENTS:
            tok = token_column(col, key=keyring.token_key(f.element), domain=f.element)
            columns.append(tok)
            fields.append(pa.field(f.name + TOKEN_SUFFIX, pa.string()))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string()),
        pa.field("source_digest", pa.string()),
        pa.field("row", pa.int64()),
        pa.field("field", pa.string()),
        pa.field("value_masked", pa.string()),
        pa.field("value_encrypted", pa.binary()),
        pa.field("reason", pa.string()),
        pa.field("rule", pa.string()),
        pa.field("dimension", pa.string()),
    ]
)


def protect_rejects(
    rejects: pa.Table, contract: Contract, *, keyring: Keyring, run_id: str, digest: str
) -> pa.Table:
    """Turn plaintext rejects into quarantine rows safe to store.

    Values of protected fields are stored masked (for people) and SM4-encrypted (for the steward
    to recover through a pipeline run); other values stay as read.

    Returns:
        pyarrow.Table in :data:`QUARANTINE_SCHEMA`; ``rule`` and ``dimension`` (GB/T 36344 term)
        are carried from the rejects, null when the rejects lack those columns.
    """
    n = rejects.num_rows
    values = rejects["value"].combine_chunks() if n else pa.array([], pa.string())
    reasons = rejects["reason"].combine_chunks() if n else pa.array([], pa.string())
    masked = values
    encrypted = pa.nulls(n, pa.binary())
    key = keyring.current(contract.code) if n else None
    # Row-level rejects (field null: an unreadable line) hold the whole raw line: when the
    # dataset has any protected field, they are treated as protected too.
    targets = [(f.name, f.element) for f in contract.protected_fields]
    if targets and n:
        targets.append((None, None))
    for name, element in targets:
        mask = pc.is_null(rejects["field"]) if name is None else pc.equal(rejects["field"], name)
        mask = pc.fill_null(mask, False)
        if not pc.any(mask).as_py():
            continue
        masked = pc.if_else(mask, mask_array(values, element), masked)
        column = f"quarantine.{name or '_row'}"
        # Encrypt only this field's rejects (others null): format v2 authenticates groups of
        # consecutive non-null cells, so the cells of one field must form whole groups. The
        # masks are disjoint (one field per reject), so `value_encrypted` filtered by `field`
        # decrypts as one column (docs/crypto.md, partial groups).
        only = pc.if_else(mask, values, pa.scalar(None, values.type))
        enc = encrypt_column(only, key=key, dataset=contract.code, column=column)
        encrypted = pc.if_else(mask, enc.cast(pa.binary()), encrypted)
        reasons = pc.if_else(mask, _scrub(reasons, values, masked), reasons)
    return pa.table(
        {
            "run_id": pa.array([run_id] * n, pa.string()),
            "source_digest": pa.array([digest] * n, pa.string()),
            "row": rejects[ROW],
            "field": rejects["field"],
            "value_masked": masked,
            "value_encrypted": encrypted,
            "reason": reasons,
            "rule": _optional(rejects, "rule", n),
            "dimension": _optional(rejects, "dimension", n),
        },
        schema=QUARANTINE_SCHEMA,
    )


def _scrub(reasons: pa.Array, values: pa.Array, masked: pa.Array) -> pa.Array:
    """Reasons with the plaintext value replaced by its masked form (reasons may quote it).

    One Python step per reject of a protected field: rejects are the exceptions, not the bulk.
    """
    out = []
    for r, v, m in zip(reasons.to_pylist(), values.to_pylist(), masked.to_pylist(), strict=True):
        out.append(r.replace(v, m or "***") if r and v else r)
    return pa.array(out, pa.string())


def _optional(rejects: pa.Table, name: str, n: int) -> pa.ChunkedArray | pa.Array:
    return (
        rejects[name].cast(pa.string())
        if name in rejects.column_names
        else pa.nulls(n, pa.string())
    )
