"""The audit log in the catalog DB: a SQL :class:`privacy._audit_chain.AuditStore`, and the
platform's audit helper that retries when another process took the next seq.

Each append runs in its own short transaction (committed at once), so an audit entry survives
a job transaction that rolls back, and the uniqueness of ``audit_entries.seq`` turns a race
between two writers (a CLI and a worker) into an ``IntegrityError`` that :class:`Auditor`
answers by re-reading the tail and appending again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from privacy._audit_chain import AuditChain, AuditEntry, Checkpoint, VerifyReport
from sandbox._errors import SandboxError
from sandbox._models import AuditCheckpointRow, AuditEntryRow

#: Where the platform's SM2 checkpoint key lives, relative to ``Settings.keys_dir``.
PLATFORM_KEY_FILE = "platform_sm2.pem"


def _entry(row: AuditEntryRow) -> AuditEntry:
    return AuditEntry(
        row.seq,
        row.at,
        row.actor,
        row.action,
        row.subject,
        json.loads(row.details),
        row.prev_hash,
        row.entry_hash,
    )


class SqlAuditStore:
    """:class:`~privacy._audit_chain.AuditStore` over the ``audit_entries`` and
    ``audit_checkpoints`` tables. Append-only: no update or delete is offered.

    Args:
        factory: a catalog session factory (``catalog.open_catalog(url)``).
    """

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def append(self, entry: AuditEntry) -> None:
        """Insert ``entry`` and commit.

        Raises:
            sqlalchemy.exc.IntegrityError: its seq is already taken (another writer won).
        """
        with self.factory.begin() as s:
            s.add(
                AuditEntryRow(
                    seq=entry.seq,
                    at=entry.at,
                    actor=entry.actor,
                    action=entry.action,
                    subject=entry.subject,
                    details=json.dumps(entry.details, ensure_ascii=False, sort_keys=True),
                    prev_hash=entry.prev_hash,
                    entry_hash=entry.entry_hash,
                )
            )

    def entries(self) -> list[AuditEntry]:
        """All entries, ascending seq."""
        with self.factory() as s:
            return [_entry(r) for r in s.scalars(select(AuditEntryRow).order_by(AuditEntryRow.seq))]

    def last(self) -> AuditEntry | None:
        """The entry with the highest seq, or None."""
        with self.factory() as s:
            row = s.scalar(select(AuditEntryRow).order_by(AuditEntryRow.seq.desc()).limit(1))
            return None if row is None else _entry(row)

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Insert a checkpoint and commit."""
        with self.factory.begin() as s:
            s.add(
                AuditCheckpointRow(
                    seq=checkpoint.seq,
                    entry_hash=checkpoint.entry_hash,
                    at=checkpoint.at,
                    signature=checkpoint.signature,
                    public_key=checkpoint.public_key,
                )
            )

    def checkpoints(self) -> list[Checkpoint]:
        """All checkpoints, ascending seq."""
        with self.factory() as s:
            rows = s.scalars(
                select(AuditCheckpointRow).order_by(AuditCheckpointRow.seq, AuditCheckpointRow.id)
            )
            return [Checkpoint(r.seq, r.entry_hash, r.at, r.signature, r.public_key) for r in rows]


class Auditor:
    """The platform's audit log (平台审计日志): an :class:`AuditChain` over the SQL store,
    signed with the platform SM2 key, with retries on seq races.

    Args:
        factory: catalog session factory.
        keys_dir: ``Settings.keys_dir``; the key is ``keys_dir/platform_sm2.pem`` (created 0600
            on first use by :func:`privacy._sm2.load_or_create_signing_key`).
        checkpoint_every: sign a checkpoint every this many entries.
    """

    RETRIES = 8

    def __init__(
        self, factory: sessionmaker[Session], keys_dir: Path, *, checkpoint_every: int = 10
    ) -> None:
        from privacy._sm2 import load_or_create_signing_key

        self.store = SqlAuditStore(factory)
        signer = load_or_create_signing_key(Path(keys_dir) / PLATFORM_KEY_FILE)
        self.chain = AuditChain(self.store, signer, checkpoint_every)

    def record(
        self, actor: str, action: str, subject: str, details: Mapping[str, Any] | None = None
    ) -> AuditEntry:
        """Append one entry; on a seq race re-read the tail and try again.

        Raises:
            SandboxError: the entry could not be stored after several attempts.
        """
        from tenacity import (
            RetryError,
            Retrying,
            retry_if_exception_type,
            stop_after_attempt,
            wait_random,
        )

        retrying = Retrying(  # seq taken by another writer, or the DB busy: re-read the tail
            retry=retry_if_exception_type((IntegrityError, OperationalError)),
            stop=stop_after_attempt(self.RETRIES),
            wait=wait_random(0, 0.05),
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self.chain.append(actor or "-", action, subject or "-", details)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            raise SandboxError(
                f"audit entry {action} on {subject} could not be stored: {last}"
            ) from last
        raise AssertionError("unreachable")  # pragma: no cover

    def callback(self, actor: str, subject: str):
        """An ``(event, details)`` callback (for ``decrypt_column``/``Keyring``) that records
        ``event`` by ``actor`` on ``subject``."""

        def _cb(event: str, details: dict) -> None:
            self.record(actor, event, subject, details)

        return _cb

    def verify(self) -> VerifyReport:
        """Verify the whole chain (hashes, links, SM2 checkpoint signatures)."""
        return self.chain.verify()
