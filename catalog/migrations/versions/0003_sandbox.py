"""Sandbox tables: users, jobs, transitions, approvals, releases, audit log and checkpoints.

Revision ID: 0003_sandbox
Revises: 0001 (a sibling of 0002_quality; ``catalog.migrate`` upgrades ``heads``)
Create Date: 2026-11-29

Generated with Alembic autogenerate from ``sandbox._models`` against a DB at 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_sandbox"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)  # UTC; read back tz-aware by catalog._db.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("signature", sa.String(length=200), nullable=False),
        sa.Column("public_key", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoints")),
    )
    with op.batch_alter_table("audit_checkpoints", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_checkpoints_seq"), ["seq"], unique=False)

    op.create_table(
        "audit_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entries")),
        sa.UniqueConstraint("seq", name=op.f("uq_audit_entries_seq")),
    )
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_entries_action"), ["action"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_entries_actor"), ["actor"], unique=False)

    op.create_table(
        "users",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("department_code", sa.String(length=32), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_users")),
    )
    op.create_table(
        "sandbox_jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("requester", sa.String(length=64), nullable=False),
        sa.Column("dataset_code", sa.String(length=64), nullable=False),
        sa.Column("delta_version", sa.BigInteger(), nullable=False),
        sa.Column("computation", sa.String(length=64), nullable=False),
        sa.Column("spec_json", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("decision_json", sa.Text(), nullable=False),
        sa.Column("inputs_json", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("deadline_at", _TS, nullable=True),
        sa.Column("result_digest", sa.String(length=64), nullable=True),
        sa.Column("result_bytes", sa.BigInteger(), nullable=True),
        sa.Column("media_type", sa.String(length=64), nullable=True),
        sa.Column("summary_json", sa.Text(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["requester"], ["users.name"], name=op.f("fk_sandbox_jobs_requester_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_jobs")),
    )
    with op.batch_alter_table("sandbox_jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sandbox_jobs_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_sandbox_jobs_dataset_code"), ["dataset_code"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_sandbox_jobs_requester"), ["requester"], unique=False)
        batch_op.create_index(batch_op.f("ix_sandbox_jobs_state"), ["state"], unique=False)

    op.create_table(
        "sandbox_approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("approver", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("decision", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["approver"], ["users.name"], name=op.f("fk_sandbox_approvals_approver_users")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["sandbox_jobs.id"],
            name=op.f("fk_sandbox_approvals_job_id_sandbox_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_approvals")),
        sa.UniqueConstraint(
            "job_id", "approver", name=op.f("uq_sandbox_approvals_job_id_approver")
        ),
    )
    op.create_table(
        "sandbox_job_transitions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("from_state", sa.String(length=24), nullable=True),
        sa.Column("to_state", sa.String(length=24), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["sandbox_jobs.id"],
            name=op.f("fk_sandbox_job_transitions_job_id_sandbox_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_job_transitions")),
    )
    with op.batch_alter_table("sandbox_job_transitions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sandbox_job_transitions_job_id"), ["job_id"], unique=False
        )

    op.create_table(
        "sandbox_releases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("recipient", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("released_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["sandbox_jobs.id"],
            name=op.f("fk_sandbox_releases_job_id_sandbox_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_releases")),
    )
    with op.batch_alter_table("sandbox_releases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sandbox_releases_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sandbox_releases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sandbox_releases_job_id"))

    op.drop_table("sandbox_releases")
    with op.batch_alter_table("sandbox_job_transitions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sandbox_job_transitions_job_id"))

    op.drop_table("sandbox_job_transitions")
    op.drop_table("sandbox_approvals")
    with op.batch_alter_table("sandbox_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sandbox_jobs_state"))
        batch_op.drop_index(batch_op.f("ix_sandbox_jobs_requester"))
        batch_op.drop_index(batch_op.f("ix_sandbox_jobs_dataset_code"))
        batch_op.drop_index(batch_op.f("ix_sandbox_jobs_created_at"))

    op.drop_table("sandbox_jobs")
    op.drop_table("users")
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_entries_actor"))
        batch_op.drop_index(batch_op.f("ix_audit_entries_action"))

    op.drop_table("audit_entries")
    with op.batch_alter_table("audit_checkpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_checkpoints_seq"))

    op.drop_table("audit_checkpoints")
