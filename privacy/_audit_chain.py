"""A tamper-evident audit log (防篡改审计日志): an SM3 hash chain with SM2-signed checkpoints.

Pure logic over an abstract store: :class:`AuditStore` is the one narrow interface (the catalog
DB implements it later); :class:`InMemoryAuditStore` is the in-memory double for tests.

Entry hash (GB/T 32905 SM3 through ``cryptography``)::

    canonical(e) = UTF-8 JSON of {"seq", "at", "actor", "action", "subject", "details",
                   "prev_hash"}: keys sorted at every level, separators "," and ":",
                   ensure_ascii=False, NaN/Infinity refused; "at" is ISO-8601 UTC with
                   microseconds and "+00:00" (``2024-05-01T08:30:00.000000+00:00``).
    entry_hash(e) = SM3( bytes.fromhex(e.prev_hash) ‖ canonical(e) )   (hex, 64 digits)
    prev_hash of seq 1 = 64 zeros (genesis); seq counts from 1 without gaps.

Checkpoint (签名检查点): every ``checkpoint_every`` entries (seq a multiple of it) and on demand,
the signer signs with SM2 (GB/T 32918.2, default ID ``1234567812345678``, DER signature)::

    b"govdx.audit.checkpoint.v1\\n" ‖ UTF-8 JSON {"at", "entry_hash", "seq"} (same canon rules)

What :meth:`AuditChain.verify` tells apart, naming the first affected seq:

* ``edited`` — an entry's content no longer matches its hash, or its hash no longer matches
  the prev_hash its successor recorded, or a signed checkpoint disagrees with a consistently
  rehashed segment (then the seq named is the first of the segment the checkpoint guards);
* ``deleted`` — a seq is missing (gap), the entries after a deletion were renumbered, the tail
  is shorter than a signed checkpoint, or a periodic checkpoint is missing;
* ``inserted`` — a seq appears twice, or the entries after a forged one were renumbered;
* ``reordered`` — entries are out of seq order, or two entries swapped their seq values;
* ``bad signature`` — a checkpoint's SM2 signature is invalid or made by an untrusted key.

Limits (by design of any hash chain): whoever can write the store can append well-formed
entries after the last checkpoint, or truncate them together with the checkpoints past the cut;
copy checkpoints to a second place (another database, a WORM volume, a peer department) to
anchor them.

Cost (measured, one core): append ≈ 20 µs per entry plus ≈ 4 ms per checkpoint signature;
verify ≈ 15 µs per entry plus ≈ 7.5 ms per checkpoint (1,000,000 entries ≈ 15 s). verify reads
the whole log into memory.

Errors: :class:`AuditError` for misuse (no signer, non-JSON details, naive timestamps, no
trusted key).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol, runtime_checkable

from cryptography.hazmat.primitives import hashes

from privacy._errors import PrivacyError
from privacy._sm2 import DEFAULT_SIGNER_ID, SignatureError, Sm2KeyPair, sm2_sign, sm2_verify

#: prev_hash of the first entry (创世哈希).
GENESIS_HASH: Final = "0" * 64
CHECKPOINT_DOMAIN: Final = b"govdx.audit.checkpoint.v1\n"

Problem = Literal["edited", "deleted", "inserted", "reordered", "bad signature"]


class AuditError(PrivacyError):
    """The audit log was misused (审计日志错误): details that are not JSON, a naive timestamp,
    a checkpoint without a signer, verification of signed checkpoints without a trusted key."""


@dataclass(frozen=True)
class AuditEntry:
    """One audit record (审计记录).

    Attributes:
        seq: position in the chain, 1, 2, 3, … without gaps.
        at: time of the event, timezone-aware, stored in UTC.
        actor: who acted (user or service id).
        action: what happened, dotted, e.g. ``key.create``, ``decrypt``, ``job.approve``,
            ``login.fail``.
        subject: what it was done to (dataset code, job id, key id…).
        details: JSON-serialisable mapping (str keys; no NaN/Infinity).
        prev_hash: entry_hash of seq − 1 (64 hex digits; 64 zeros for seq 1).
        entry_hash: SM3 over prev_hash ‖ canonical(entry) (64 hex digits).
    """

    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    entry_hash: str


@dataclass(frozen=True)
class Checkpoint:
    """An SM2-signed statement "the entry at ``seq`` has hash ``entry_hash``" (签名检查点).

    Attributes:
        seq: the entry it covers.
        entry_hash: that entry's hash (64 hex digits).
        at: when it was signed (UTC).
        signature: DER SM2 signature, hex.
        public_key: the signer's public key ``04‖x‖y``, hex.
    """

    seq: int
    entry_hash: str
    at: datetime
    signature: str
    public_key: str


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of :meth:`AuditChain.verify` (审计链校验结果).

    Attributes:
        ok: True when no problem was found.
        entries_checked: entries read from the store.
        checkpoints_checked: checkpoints whose signature was checked.
        first_bad_seq: the first seq affected, or None.
        problem: ``edited``, ``deleted``, ``inserted``, ``reordered``, ``bad signature`` or None.
        message: a sentence naming the entry (or checkpoint) and what is wrong with it.
    """

    ok: bool
    entries_checked: int
    checkpoints_checked: int
    first_bad_seq: int | None = None
    problem: Problem | None = None
    message: str = "audit chain intact (审计链完整)"


@runtime_checkable
class AuditStore(Protocol):
    """Where entries and checkpoints live. Append-only; no update or delete in the interface."""

    def append(self, entry: AuditEntry) -> None:
        """Store ``entry``; a store with a uniqueness constraint on seq raises on a duplicate."""

    def entries(self) -> Sequence[AuditEntry]:
        """All entries in ascending seq order (in append order for an append-only list)."""

    def last(self) -> AuditEntry | None:
        """The entry with the highest seq, or None when empty."""

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store a checkpoint."""

    def checkpoints(self) -> Sequence[Checkpoint]:
        """All checkpoints in ascending seq order."""


@dataclass
class InMemoryAuditStore:
    """In-memory :class:`AuditStore` for tests and the embedded demo.

    Attributes:
        rows: the stored entries, in append order. Public so tests can play the attacker who
            has write access to the database (edit, delete, insert, reorder rows).
        checkpoint_rows: the stored checkpoints, in append order.
    """

    rows: list[AuditEntry] = field(default_factory=list)
    checkpoint_rows: list[Checkpoint] = field(default_factory=list)

    def append(self, entry: AuditEntry) -> None:
        """Append ``entry``."""
        self.rows.append(entry)

    def entries(self) -> list[AuditEntry]:
        """The entries as stored (a copy of the list)."""
        return list(self.rows)

    def last(self) -> AuditEntry | None:
        """The last appended entry, or None."""
        return self.rows[-1] if self.rows else None

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Append ``checkpoint``."""
        self.checkpoint_rows.append(checkpoint)

    def checkpoints(self) -> list[Checkpoint]:
        """The checkpoints as stored (a copy of the list)."""
        return list(self.checkpoint_rows)


# --- canonical form and hashes -------------------------------------------------------------


def _utc_iso(at: datetime) -> str:
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise AuditError(f"audit timestamp (审计时间) must be timezone-aware, got {at!r}")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _dumps(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def canonical_entry(entry: AuditEntry) -> bytes:
    """The canonical bytes of ``entry`` without its entry_hash (see the module docstring).

    Returns:
        UTF-8 JSON bytes, keys sorted, no insignificant whitespace.

    Raises:
        AuditError: a naive timestamp, or details that are not JSON-serialisable.
    """
    body = {
        "seq": entry.seq,
        "at": _utc_iso(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "subject": entry.subject,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
    }
    try:
        return _dumps(body)
    except (TypeError, ValueError) as exc:
        raise AuditError(f"audit entry seq {entry.seq}: not JSON-serialisable: {exc}") from exc


def _sm3_hex(data: bytes) -> str:
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize().hex()


def compute_entry_hash(entry: AuditEntry) -> str:
    """entry_hash = SM3(bytes.fromhex(prev_hash) ‖ canonical(entry)), 64 lower-case hex digits.

    Raises:
        AuditError: prev_hash is not 64 hex digits, or the entry is not canonicalisable.
    """
    try:
        prev = bytes.fromhex(entry.prev_hash)
    except (TypeError, ValueError) as exc:
        raise AuditError(f"audit entry seq {entry.seq}: prev_hash is not hex") from exc
    if len(prev) != 32:
        raise AuditError(f"audit entry seq {entry.seq}: prev_hash must be 32 bytes (64 hex)")
    return _sm3_hex(prev + canonical_entry(entry))


def checkpoint_message(seq: int, entry_hash: str, at: datetime) -> bytes:
    """The bytes an SM2 checkpoint signature covers (see the module docstring)."""
    return CHECKPOINT_DOMAIN + _dumps({"at": _utc_iso(at), "entry_hash": entry_hash, "seq": seq})


def _normalise_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    if details is None:
        return {}
    if not isinstance(details, Mapping):
        raise AuditError(f"audit details must be a mapping, got {type(details).__name__}")
    for key in details:
        if not isinstance(key, str):
            raise AuditError(f"audit details key {key!r} is not a string")
    try:
        # A JSON round trip stores exactly what is hashed (tuples become lists, and so on).
        return json.loads(_dumps(dict(details)))
    except (TypeError, ValueError) as exc:
        raise AuditError(f"audit details are not JSON-serialisable: {exc}") from exc


def _safe_hash(entry: AuditEntry, **changes: Any) -> str | None:
    try:
        return compute_entry_hash(replace(entry, **changes) if changes else entry)
    except (AuditError, TypeError, ValueError, AttributeError, OverflowError):
        return None


# --- the chain -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Finding:
    seq: int
    problem: Problem
    message: str


class AuditChain:
    """Append to and verify a hash-chained, SM2-checkpointed audit log (审计链).

    Args:
        store: where entries and checkpoints live.
        signer: the platform's SM2 key pair that signs checkpoints; None for a read-only
            verifier (then pass ``trusted_public_keys``) or a log without checkpoints.
        checkpoint_every: sign a checkpoint after every this many entries (seq a multiple of
            it), ≥ 1; verification also demands those periodic checkpoints.
        trusted_public_keys: public keys (``04‖x‖y``) whose checkpoints are accepted; default
            the signer's. A checkpoint signed by any other key is a ``bad signature``.
        signer_id: SM2 ID_A used for checkpoint signatures (default ``1234567812345678``).
        clock: returns the current time (timezone-aware); default ``datetime.now(UTC)``.

    Raises:
        AuditError: checkpoint_every < 1.

    Appends are serialised by a lock inside one process; a shared database store must also
    enforce unique seq (a second writer's duplicate seq then fails at insert).
    """

    def __init__(
        self,
        store: AuditStore,
        signer: Sm2KeyPair | None,
        checkpoint_every: int = 100,
        *,
        trusted_public_keys: Iterable[str] | None = None,
        signer_id: bytes = DEFAULT_SIGNER_ID,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
            raise AuditError(f"checkpoint_every must be an integer ≥ 1, got {checkpoint_every!r}")
        self.store = store
        self.signer = signer
        self.checkpoint_every = checkpoint_every
        keys = set(trusted_public_keys or ())
        if signer is not None:
            keys.add(signer.public_key_hex)
        self.trusted_public_keys = frozenset(k.strip().lower() for k in keys)
        self.signer_id = signer_id
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()

    # -- writing --

    def append(
        self,
        actor: str,
        action: str,
        subject: str,
        details: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AuditEntry:
        """Append one entry (and a checkpoint when its seq is a multiple of checkpoint_every).

        Args:
            actor: who acted.
            action: what happened (``key.create``, ``decrypt``, ``job.approve``, ``login.fail``…).
            subject: what it was done to.
            details: JSON-serialisable mapping with str keys; stored after a JSON round trip.
            at: event time, timezone-aware; default the clock's now.

        Returns:
            The stored :class:`AuditEntry`.

        Raises:
            AuditError: non-JSON details, non-str actor/action/subject, naive ``at``, or a
                periodic checkpoint due while no signer is configured.
        """
        for name, value in (("actor", actor), ("action", action), ("subject", subject)):
            if not isinstance(value, str) or not value:
                raise AuditError(f"audit {name} must be a non-empty string, got {value!r}")
        stamp = self._clock() if at is None else at
        _utc_iso(stamp)
        clean = _normalise_details(details)
        with self._lock:
            last = self.store.last()
            seq = 1 if last is None else last.seq + 1
            prev = GENESIS_HASH if last is None else last.entry_hash
            draft = AuditEntry(seq, stamp.astimezone(UTC), actor, action, subject, clean, prev, "")
            entry = replace(draft, entry_hash=compute_entry_hash(draft))
            self.store.append(entry)
            if seq % self.checkpoint_every == 0:
                if self.signer is None:
                    raise AuditError(
                        f"audit entry seq {seq} is due a checkpoint but the chain has no signer"
                    )
                self._sign_checkpoint(entry)
        return entry

    def checkpoint(self) -> Checkpoint:
        """Sign a checkpoint over the current last entry now (on demand, e.g. at shutdown).

        Returns:
            The new checkpoint, or the existing one when the last entry already has one.

        Raises:
            AuditError: no signer, or an empty log.
        """
        if self.signer is None:
            raise AuditError("cannot sign an audit checkpoint: the chain has no signer (签名密钥)")
        with self._lock:
            last = self.store.last()
            if last is None:
                raise AuditError("cannot sign an audit checkpoint over an empty log")
            for existing in self.store.checkpoints():
                if existing.seq == last.seq and existing.entry_hash == last.entry_hash:
                    return existing
            return self._sign_checkpoint(last)

    def _sign_checkpoint(self, entry: AuditEntry) -> Checkpoint:
        assert self.signer is not None
        at = self._clock().astimezone(UTC)
        message = checkpoint_message(entry.seq, entry.entry_hash, at)
        signature = sm2_sign(message, self.signer, signer_id=self.signer_id)
        checkpoint = Checkpoint(
            entry.seq, entry.entry_hash, at, signature.hex(), self.signer.public_key_hex
        )
        self.store.add_checkpoint(checkpoint)
        return checkpoint

    # -- verifying --

    def verify(self) -> VerifyReport:
        """Check the whole log: seq order, every hash and link, every checkpoint signature.

        Returns:
            A :class:`VerifyReport`; on failure it names the first affected seq and the kind of
            tampering (see the module docstring for how each kind is recognised).

        Raises:
            AuditError: the store holds checkpoints but no trusted public key is configured.
        """
        entries = list(self.store.entries())
        checkpoints = sorted(self.store.checkpoints(), key=lambda c: c.seq)
        if checkpoints and not self.trusted_public_keys:
            raise AuditError(
                "cannot verify audit checkpoints: no trusted SM2 public key (可信公钥) configured"
            )
        structural, stop = _structural_scan(entries)
        chained = _hash_scan(entries[:stop], checkpoints)
        precise = [f for f in (structural, chained) if f is not None]
        # The lower seq wins; on a tie the structural finding (it explains the hash break).
        finding = min(precise, key=lambda f: (f.seq, f is not structural), default=None)
        signature_finding, checked = self._checkpoint_scan(entries, checkpoints)
        if signature_finding is not None and (
            finding is None or signature_finding.sort_key < finding.seq
        ):
            finding = signature_finding.finding
        if finding is None:
            return VerifyReport(True, len(entries), checked)
        return VerifyReport(
            False, len(entries), checked, finding.seq, finding.problem, finding.message
        )

    def _checkpoint_scan(
        self, entries: list[AuditEntry], checkpoints: list[Checkpoint]
    ) -> tuple[_Ranked | None, int]:
        by_seq: dict[int, AuditEntry] = {}
        for entry in entries:
            by_seq.setdefault(entry.seq, entry)
        last_seq = max(by_seq, default=0)
        findings: list[_Ranked] = []
        verified_upto = 0
        checked = 0
        for cp in checkpoints:
            checked += 1
            if not self._checkpoint_signature_ok(cp):
                findings.append(
                    _Ranked(
                        cp.seq,
                        _Finding(
                            cp.seq,
                            "bad signature",
                            f"checkpoint at seq {cp.seq}: SM2 signature invalid or key untrusted "
                            "(检查点签名无效)",
                        ),
                    )
                )
                continue
            entry = by_seq.get(cp.seq)
            if entry is None:
                gone = last_seq + 1 if cp.seq > last_seq else cp.seq
                findings.append(
                    _Ranked(
                        gone,
                        _Finding(
                            gone,
                            "deleted",
                            f"entry seq {gone} is missing: a signed checkpoint covers seq {cp.seq} "
                            f"but the log ends at seq {last_seq} (审计记录被删除)",
                        ),
                    )
                )
            elif entry.entry_hash != cp.entry_hash:
                start = verified_upto + 1
                findings.append(
                    _Ranked(
                        cp.seq,
                        _Finding(
                            start,
                            "edited",
                            f"entries seq {start}..{cp.seq} were rewritten and rehashed: the signed "
                            f"checkpoint at seq {cp.seq} holds another hash (审计记录被篡改)",
                        ),
                    )
                )
            else:
                verified_upto = max(verified_upto, cp.seq)
        have = {cp.seq for cp in checkpoints}
        for due in range(self.checkpoint_every, last_seq + 1, self.checkpoint_every):
            if due not in have:
                findings.append(
                    _Ranked(
                        due,
                        _Finding(
                            due,
                            "deleted",
                            f"the periodic checkpoint for seq {due} (every {self.checkpoint_every} "
                            "entries) is missing (检查点被删除)",
                        ),
                    )
                )
                break
        return min(findings, key=lambda f: f.sort_key, default=None), checked

    def _checkpoint_signature_ok(self, cp: Checkpoint) -> bool:
        key = cp.public_key.strip().lower() if isinstance(cp.public_key, str) else ""
        if key not in self.trusted_public_keys:
            return False
        try:
            message = checkpoint_message(cp.seq, cp.entry_hash, cp.at)
            signature = bytes.fromhex(cp.signature)
            return sm2_verify(message, signature, key, signer_id=self.signer_id)
        except (AuditError, SignatureError, TypeError, ValueError):
            return False


@dataclass(frozen=True)
class _Ranked:
    """A checkpoint finding with the seq it competes at (a range finding ranks at its end)."""

    sort_key: int
    finding: _Finding


def _structural_scan(entries: list[AuditEntry]) -> tuple[_Finding | None, int]:
    """Find the first position where the seq column is not 1, 2, 3, …

    Returns:
        (finding or None, position of the anomaly or len(entries)).
    """
    seqs = [
        e.seq if isinstance(e.seq, int) and not isinstance(e.seq, bool) else None for e in entries
    ]
    counts = Counter(seqs)
    expected = 1
    prev_hash = GENESIS_HASH
    for pos, (entry, seq) in enumerate(zip(entries, seqs, strict=True)):
        if seq == expected:
            expected += 1
            prev_hash = entry.entry_hash
            continue
        # Only the seq field changed? The entry still hashes right at its expected seq.
        if entry.prev_hash == prev_hash and _safe_hash(entry, seq=expected) == entry.entry_hash:
            return _Finding(
                expected,
                "edited",
                f"entry seq {expected} was edited: its seq field now reads {entry.seq!r} "
                "(审计记录被篡改)",
            ), pos
        if seq is not None and counts[seq] > 1:
            return _Finding(
                seq,
                "inserted",
                f"seq {seq} appears {counts[seq]} times: an entry was inserted (审计记录被插入)",
            ), pos
        later = {s for s in seqs[pos + 1 :] if s is not None}
        if seq is not None and seq > expected:
            if expected in later:
                return _Finding(
                    expected,
                    "reordered",
                    f"entry seq {expected} comes after seq {seq}: entries were reordered "
                    "(审计记录顺序被调换)",
                ), pos
            return _Finding(
                expected,
                "deleted",
                f"entry seq {expected} is missing (next is seq {seq}): entries were deleted "
                "(审计记录被删除)",
            ), pos
        if seq is not None and seq < expected:
            return _Finding(
                seq,
                "reordered",
                f"entry seq {seq} comes after seq {expected - 1}: entries were reordered "
                "(审计记录顺序被调换)",
            ), pos
        return _Finding(
            expected,
            "edited",
            f"entry at position {pos + 1} has an invalid seq {entry.seq!r} (审计记录被篡改)",
        ), pos
    return None, len(entries)


def _hash_scan(entries: list[AuditEntry], checkpoints: list[Checkpoint]) -> _Finding | None:
    """Walk a structurally sound prefix (seq 1, 2, 3, …) checking each hash and link."""
    signed = {(cp.seq, cp.entry_hash) for cp in checkpoints}
    prev_hash = GENESIS_HASH
    for i, entry in enumerate(entries):
        after = entries[i + 1] if i + 1 < len(entries) else None
        self_ok = _safe_hash(entry) == entry.entry_hash
        link_ok = entry.prev_hash == prev_hash
        if self_ok and link_ok:
            prev_hash = entry.entry_hash
            continue
        seq = entry.seq
        if not self_ok:
            if _safe_hash(entry, seq=seq + 1) == entry.entry_hash:
                # Renumbered down by one: the entry before it was deleted, or two swapped seqs.
                if after is not None and _safe_hash(after, seq=after.seq - 1) == after.entry_hash:
                    return _Finding(
                        seq,
                        "reordered",
                        f"entries seq {seq} and {seq + 1} swapped places (审计记录顺序被调换)",
                    )
                return _Finding(
                    seq,
                    "deleted",
                    f"entry seq {seq} was deleted and later entries renumbered (审计记录被删除)",
                )
            if _safe_hash(entry, seq=seq - 1) == entry.entry_hash:
                return _Finding(
                    seq - 1,
                    "inserted",
                    f"an entry was inserted at seq {seq - 1} and later entries renumbered "
                    "(审计记录被插入)",
                )
            if after is not None and _safe_hash(after, seq=after.seq - 1) == after.entry_hash:
                return _Finding(
                    seq,
                    "inserted",
                    f"entry seq {seq} was inserted and later entries renumbered (审计记录被插入)",
                )
            return _Finding(
                seq,
                "edited",
                f"entry seq {seq} was edited: its content no longer matches its hash "
                "(审计记录被篡改)",
            )
        # Self-consistent but not linked to its predecessor (both rehashed individually).
        if after is not None and after.prev_hash == prev_hash:
            return _Finding(
                seq,
                "reordered",
                f"entry seq {seq} was moved: the next entry links to seq {seq - 1} "
                "(审计记录顺序被调换)",
            )
        if (after is not None and after.prev_hash != entry.entry_hash) or (
            i > 0 and (entries[i - 1].seq, entries[i - 1].entry_hash) in signed
        ):
            return _Finding(
                seq,
                "edited",
                f"entry seq {seq} was rewritten and rehashed: its prev_hash does not match "
                f"seq {seq - 1} (审计记录被篡改)",
            )
        return _Finding(
            seq - 1,
            "edited",
            f"entry seq {seq - 1} was rewritten and rehashed: seq {seq} recorded another hash "
            "for it (审计记录被篡改)",
        )
    return None
