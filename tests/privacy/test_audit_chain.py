"""Hash-chained, SM2-checkpointed audit log: format, tamper detection and naming."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from itertools import pairwise
from typing import Any

import pytest
from gmssl import sm3 as gmssl_sm3
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from privacy._audit_chain import (
    GENESIS_HASH,
    AuditChain,
    AuditEntry,
    AuditError,
    AuditStore,
    InMemoryAuditStore,
    canonical_entry,
    checkpoint_message,
    compute_entry_hash,
)
from privacy._sm2 import Sm2KeyPair, sm2_keypair_from_private, sm2_sign, sm2_verify

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
ACTIONS = ("key.create", "decrypt", "job.approve", "login.fail")


@cache
def signer() -> Sm2KeyPair:
    return sm2_keypair_from_private("5a1e" * 16)


@cache
def attacker() -> Sm2KeyPair:
    return sm2_keypair_from_private("bad0" * 16)


def build(n: int, every: int = 100) -> tuple[InMemoryAuditStore, AuditChain]:
    store = InMemoryAuditStore()
    chain = AuditChain(store, signer(), every, clock=lambda: T0 + timedelta(days=1))
    for i in range(n):
        chain.append(
            f"user{i % 7}",
            ACTIONS[i % 4],
            f"dataset.{i % 11}",
            {"i": i, "rows": [i, i * 2], "why": "例行审计"},
            at=T0 + timedelta(seconds=i),
        )
    return store, chain


def rehashed(entry: AuditEntry, **changes: Any) -> AuditEntry:
    """What an attacker with the public algorithm can do: change fields, recompute the hash."""
    draft = replace(entry, **changes)
    return replace(draft, entry_hash=compute_entry_hash(draft))


# --- format ------------------------------------------------------------------------------


def test_canonical_form_and_entry_hash_match_an_independent_sm3() -> None:
    entry = AuditEntry(
        seq=1,
        at=datetime(2024, 5, 1, 8, 30, tzinfo=timezone(timedelta(hours=8))),
        actor="张三",
        action="decrypt",
        subject="hr.staff",
        details={"rows": 3, "reason": "复核", "cols": ["id_card"]},
        prev_hash=GENESIS_HASH,
        entry_hash="",
    )
    expected = (
        '{"action":"decrypt","actor":"张三","at":"2024-05-01T00:30:00.000000+00:00",'
        '"details":{"cols":["id_card"],"reason":"复核","rows":3},'
        '"prev_hash":"' + "0" * 64 + '","seq":1,"subject":"hr.staff"}'
    ).encode()
    assert canonical_entry(entry) == expected
    # gmssl's pure-Python SM3 is an implementation independent of OpenSSL's.
    assert compute_entry_hash(entry) == gmssl_sm3.sm3_hash(list(bytes(32) + expected))


def test_valid_chain_of_250_verifies_with_two_checkpoints() -> None:
    store, chain = build(250)
    assert isinstance(store, AuditStore)
    assert [e.seq for e in store.entries()] == list(range(1, 251))
    assert store.rows[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.entry_hash for a, b in pairwise(store.rows))
    assert [(c.seq, c.entry_hash) for c in store.checkpoints()] == [
        (100, store.rows[99].entry_hash),
        (200, store.rows[199].entry_hash),
    ]
    cp = store.checkpoints()[0]
    message = checkpoint_message(cp.seq, cp.entry_hash, cp.at)
    assert message.startswith(b"govdx.audit.checkpoint.v1\n{")
    assert sm2_verify(message, bytes.fromhex(cp.signature), signer().public_key_hex)
    report = chain.verify()
    assert report.ok
    assert (report.entries_checked, report.checkpoints_checked) == (250, 2)
    assert (report.first_bad_seq, report.problem) == (None, None)


def test_details_are_stored_as_hashed_and_bad_input_refused() -> None:
    store, chain = build(0)
    entry = chain.append("a", "key.create", "k1", {"ids": (1, 2)}, at=T0)
    assert entry.details == {"ids": [1, 2]}
    with pytest.raises(AuditError, match="not JSON-serialisable"):
        chain.append("a", "decrypt", "s", {"when": T0})
    with pytest.raises(AuditError, match="not JSON-serialisable"):
        chain.append("a", "decrypt", "s", {"x": float("nan")})
    with pytest.raises(AuditError, match="key 1 is not a string"):
        chain.append("a", "decrypt", "s", {1: "x"})  # type: ignore[dict-item]
    with pytest.raises(AuditError, match="timezone-aware"):
        chain.append("a", "decrypt", "s", {}, at=datetime(2024, 1, 1))
    with pytest.raises(AuditError, match="actor must be a non-empty string"):
        chain.append("", "decrypt", "s")
    assert len(store.rows) == 1
    assert chain.verify().ok


def test_checkpoint_on_demand() -> None:
    store, chain = build(7, every=100)
    assert store.checkpoints() == []
    cp = chain.checkpoint()
    assert (cp.seq, cp.entry_hash) == (7, store.rows[-1].entry_hash)
    assert chain.checkpoint() == cp  # nothing new to sign
    assert len(store.checkpoints()) == 1
    assert chain.verify().checkpoints_checked == 1
    with pytest.raises(AuditError, match="empty log"):
        AuditChain(InMemoryAuditStore(), signer()).checkpoint()
    with pytest.raises(AuditError, match="no signer"):
        AuditChain(store, None).checkpoint()


def test_no_signer_when_a_checkpoint_is_due_is_refused() -> None:
    chain = AuditChain(InMemoryAuditStore(), None, checkpoint_every=2)
    chain.append("a", "login.fail", "u1")
    with pytest.raises(AuditError, match="seq 2 is due a checkpoint"):
        chain.append("a", "login.fail", "u1")


def test_read_only_verifier_needs_a_trusted_key() -> None:
    store, _ = build(120)
    with pytest.raises(AuditError, match="no trusted SM2 public key"):
        AuditChain(store, None).verify()
    report = AuditChain(store, None, trusted_public_keys=[signer().public_key_hex]).verify()
    assert report.ok and report.checkpoints_checked == 1


# --- tampering ---------------------------------------------------------------------------


def _edit(store: InMemoryAuditStore) -> None:
    store.rows[41] = replace(store.rows[41], actor="mallory")


def _edit_and_rehash(store: InMemoryAuditStore) -> None:
    store.rows[41] = rehashed(store.rows[41], details={"i": 41, "rows": []})


def _edit_prev_hash_and_rehash(store: InMemoryAuditStore) -> None:
    store.rows[41] = rehashed(store.rows[41], prev_hash="ab" * 32)


def _edit_seq(store: InMemoryAuditStore) -> None:
    store.rows[41] = replace(store.rows[41], seq=7)


def _delete(store: InMemoryAuditStore) -> None:
    del store.rows[41]


def _delete_first(store: InMemoryAuditStore) -> None:
    del store.rows[0]


def _delete_and_renumber(store: InMemoryAuditStore) -> None:
    del store.rows[41]
    store.rows[41:] = [replace(e, seq=e.seq - 1) for e in store.rows[41:]]


def _insert_duplicate_seq(store: InMemoryAuditStore) -> None:
    forged = rehashed(store.rows[41], actor="mallory", prev_hash=store.rows[40].entry_hash)
    store.rows.insert(41, forged)


def _insert_and_renumber(store: InMemoryAuditStore) -> None:
    forged = rehashed(store.rows[41], actor="mallory", prev_hash=store.rows[40].entry_hash)
    store.rows[41:] = [forged] + [replace(e, seq=e.seq + 1) for e in store.rows[41:]]


def _swap_rows(store: InMemoryAuditStore) -> None:
    store.rows[41], store.rows[42] = store.rows[42], store.rows[41]


def _swap_seq_values(store: InMemoryAuditStore) -> None:
    # How a reorder looks in a database read back ORDER BY seq: the seq values were swapped.
    a, b = store.rows[41], store.rows[42]
    store.rows[41], store.rows[42] = replace(b, seq=42), replace(a, seq=43)


def _swap_and_rehash(store: InMemoryAuditStore) -> None:
    a, b = store.rows[41], store.rows[42]
    store.rows[41], store.rows[42] = rehashed(b, seq=42), rehashed(a, seq=43)


def _truncate_past_checkpoint(store: InMemoryAuditStore) -> None:
    del store.rows[150:]


def _rewrite_everything_after(store: InMemoryAuditStore) -> None:
    rows = store.rows
    rows[141] = replace(rows[141], action="job.reject")
    for i in range(141, len(rows)):
        rows[i] = rehashed(rows[i], prev_hash=rows[i - 1].entry_hash)


def _forge_checkpoint_signature(store: InMemoryAuditStore) -> None:
    cp = store.checkpoint_rows[1]
    raw = bytearray(bytes.fromhex(cp.signature))
    raw[-1] ^= 0x01
    store.checkpoint_rows[1] = replace(cp, signature=raw.hex())


def _resign_with_attacker_key(store: InMemoryAuditStore) -> None:
    # Rewrite the tail and sign a fresh checkpoint with a key the platform does not trust.
    _rewrite_everything_after(store)
    cp = store.checkpoint_rows[1]
    new_hash = store.rows[cp.seq - 1].entry_hash
    sig = sm2_sign(checkpoint_message(cp.seq, new_hash, cp.at), attacker())
    store.checkpoint_rows[1] = replace(
        cp, entry_hash=new_hash, signature=sig.hex(), public_key=attacker().public_key_hex
    )


def _drop_checkpoint(store: InMemoryAuditStore) -> None:
    del store.checkpoint_rows[0]


TAMPERS: list[Any] = [
    pytest.param(_edit, "edited", 42, id="edit"),
    pytest.param(_edit_and_rehash, "edited", 42, id="edit+rehash"),
    pytest.param(_edit_prev_hash_and_rehash, "edited", 42, id="edit-prev_hash+rehash"),
    pytest.param(_edit_seq, "edited", 42, id="edit-seq"),
    pytest.param(_delete, "deleted", 42, id="delete"),
    pytest.param(_delete_first, "deleted", 1, id="delete-first"),
    pytest.param(_delete_and_renumber, "deleted", 42, id="delete+renumber"),
    pytest.param(_insert_duplicate_seq, "inserted", 42, id="insert-duplicate-seq"),
    pytest.param(_insert_and_renumber, "inserted", 42, id="insert+renumber"),
    pytest.param(_swap_rows, "reordered", 42, id="swap-rows"),
    pytest.param(_swap_seq_values, "reordered", 42, id="swap-seq-values"),
    pytest.param(_swap_and_rehash, "reordered", 42, id="swap+rehash"),
    pytest.param(_truncate_past_checkpoint, "deleted", 151, id="truncate-tail"),
    pytest.param(_rewrite_everything_after, "edited", 101, id="rewrite-suffix"),
    pytest.param(_forge_checkpoint_signature, "bad signature", 200, id="forged-signature"),
    pytest.param(_resign_with_attacker_key, "bad signature", 200, id="untrusted-key"),
    pytest.param(_drop_checkpoint, "deleted", 100, id="checkpoint-deleted"),
]


@pytest.mark.parametrize(("tamper", "problem", "seq"), TAMPERS)
def test_tampering_is_detected_and_named(
    tamper: Callable[[InMemoryAuditStore], None], problem: str, seq: int
) -> None:
    store, chain = build(250)
    tamper(store)
    report = chain.verify()
    assert not report.ok
    assert (report.problem, report.first_bad_seq) == (problem, seq), report.message
    assert f"seq {seq}" in report.message


def test_rewritten_suffix_is_ranged_between_checkpoints() -> None:
    store, chain = build(250)
    _rewrite_everything_after(store)
    report = chain.verify()
    assert "entries seq 101..200 were rewritten" in report.message


# --- property: any single edit of any field of any entry is named --------------------------


@cache
def _base() -> tuple[AuditEntry, ...]:
    store, _ = build(30, every=10)
    return tuple(store.rows)


@cache
def _base_checkpoints() -> tuple[Any, ...]:
    store, _ = build(30, every=10)
    return tuple(store.checkpoint_rows)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip

_EDITS = {
    "seq": st.integers(min_value=-3, max_value=40),
    "at": st.datetimes(timezones=st.just(UTC)),
    "actor": st.text(max_size=10),
    "action": st.text(max_size=10),
    "subject": st.text(max_size=10),
    "details": st.dictionaries(st.text(max_size=5), _json, max_size=3),
    "prev_hash": st.text(alphabet="0123456789abcdef", min_size=64, max_size=64) | st.text(max_size=5),
    "entry_hash": st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
}  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    index=st.integers(min_value=0, max_value=29),
    edit=st.sampled_from(sorted(_EDITS)).flatmap(lambda f: st.tuples(st.just(f), _EDITS[f])),
)
def test_any_single_field_edit_is_detected(index: int, edit: tuple[str, Any]) -> None:
    name, value = edit
    original = _base()[index]
    assume(getattr(original, name) != value)
    store = InMemoryAuditStore(list(_base()), list(_base_checkpoints()))
    store.rows[index] = replace(original, **{name: value})
    report = AuditChain(store, signer(), 10).verify()
    assert not report.ok
    assert (report.problem, report.first_bad_seq) == ("edited", index + 1), report.message
