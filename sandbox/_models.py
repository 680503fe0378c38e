"""Sandbox tables on ``catalog.Base`` (沙箱作业库).

Tables::

    users                      name PK, role, department_code, password_hash (for the API later)
    sandbox_jobs               one row per job: spec JSON, state, pinned Delta version, result
    sandbox_job_transitions    every state change: from, to, actor, reason, time
    sandbox_approvals          one decision per (job, approver): approve | reject
    sandbox_releases           every release: recipient, SM3 digest and size of what left
    audit_entries              the hash-chained audit log (privacy.AuditChain), unique seq
    audit_checkpoints          SM2-signed checkpoints of the audit log

All timestamps are tz-aware UTC (:class:`catalog.UTCDateTime`).
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from catalog._db import Base, UTCDateTime, utcnow

ROLES = ("steward", "reviewer", "requester", "analyst", "admin")


class User(Base):
    """A platform user (用户).

    Attributes:
        name: login name, PK. role: ``steward`` (数据管理员) | ``reviewer`` (审核员) |
            ``requester`` (数据需求方) | ``analyst`` (分析员) | ``admin`` (平台管理员).
        department_code: the user's department (a steward approves jobs on its datasets).
        password_hash: Argon2id hash of the HTTP API password (nullable: none set).
        disabled_at: when an admin disabled the account (停用), or None; a disabled user can
            neither log in nor act (migration ``0006_user_disabled``).
    """

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    department_code: Mapped[str | None] = mapped_column(String(32))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


def new_job_id() -> str:
    """A fresh job id: 128 random bits as 26 lowercase RFC 4648 base32 characters ``[a-z2-7]``.

    Not ``secrets.token_urlsafe``: one id in 64 of those starts with ``-`` and a shell user's
    ``govdx sandbox approve -Xy…`` is then parsed as an option (exit 2, "No such option").
    Base32 ids also select whole with a double click in a terminal.
    """
    return base64.b32encode(secrets.token_bytes(16)).decode("ascii").rstrip("=").lower()


class Job(Base):
    """A sandbox job (沙箱作业).

    Attributes:
        id: :func:`new_job_id` — 26 lowercase base32 characters (128 random bits,
            unguessable; never starts with ``-``, so it is a safe command-line argument).
        requester: submitting user. dataset_code: catalog code. delta_version: pinned version.
        computation: computation name. spec_json: the validated spec (JSON).
        state: :class:`sandbox.JobState` value. reason: why it failed / was rejected.
        decision_json: the policy decision at submit (JSON).
        inputs_json: input name → SM3 digest of the stored input file (JSON).
        attempts: runs started. deadline_at: when a running job's worker is presumed lost.
        result_digest / result_bytes / media_type: the stored result (SM3 hex, bytes).
        summary_json: small facts of the run (JSON, no data values).
        decided_at: when the job first moved to approved or rejected (审批决定时间); None while
            undecided. Set by ``Sandbox._transition``; read by the sharing-rate report.
    """

    __tablename__ = "sandbox_jobs"
    __table_args__ = (
        # the reports' scan: period on created_at, per dataset, state (covering with decided_at)
        Index(
            "ix_sandbox_jobs_created_at_dataset_code_state",
            "created_at",
            "dataset_code",
            "state",
            "decided_at",
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    requester: Mapped[str] = mapped_column(ForeignKey("users.name"), index=True)
    dataset_code: Mapped[str] = mapped_column(String(64), index=True)
    delta_version: Mapped[int] = mapped_column(BigInteger)
    computation: Mapped[str] = mapped_column(String(64))
    spec_json: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(24), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    decision_json: Mapped[str] = mapped_column(Text, default="{}")
    inputs_json: Mapped[str] = mapped_column(Text, default="{}")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    result_digest: Mapped[str | None] = mapped_column(String(64))
    result_bytes: Mapped[int | None] = mapped_column(BigInteger)
    media_type: Mapped[str | None] = mapped_column(String(64))
    summary_json: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class JobTransition(Base):
    """One state change of a job (状态变更记录). ``from_state`` is None for the first."""

    __tablename__ = "sandbox_job_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(
        ForeignKey("sandbox_jobs.id", ondelete="CASCADE"), index=True
    )
    from_state: Mapped[str | None] = mapped_column(String(24))
    to_state: Mapped[str] = mapped_column(String(24))
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Approval(Base):
    """A decision on a job by one approver (审批意见); one per (job, approver)."""

    __tablename__ = "sandbox_approvals"
    __table_args__ = (UniqueConstraint("job_id", "approver"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("sandbox_jobs.id", ondelete="CASCADE"))
    approver: Mapped[str] = mapped_column(ForeignKey("users.name"))
    role: Mapped[str] = mapped_column(String(16))
    decision: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Release(Base):
    """One release of a result (结果发布): who got it, SM3 digest and size of the bytes."""

    __tablename__ = "sandbox_releases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(
        ForeignKey("sandbox_jobs.id", ondelete="CASCADE"), index=True
    )
    recipient: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    released_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AuditEntryRow(Base):
    """One audit entry (审计记录) of :class:`privacy._audit_chain.AuditEntry`; seq unique."""

    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(200))
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpointRow(Base):
    """An SM2-signed checkpoint (签名检查点) of the audit log."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, index=True)
    entry_hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    signature: Mapped[str] = mapped_column(String(200))
    public_key: Mapped[str] = mapped_column(String(200))
