"""sandbox_jobs.decided_at (审批决定时间) and the reports' composite index.

Revision ID: 0005_job_decided_at
Revises: 0004_dp_ledger
Create Date: 2026-11-29

``decided_at`` is the time a job first moved to approved or rejected (each state is reached at
most once: no transition leads back before a decision). ``Sandbox._transition`` sets it from
now on; existing rows are backfilled from ``sandbox_job_transitions``. The index
``(created_at, dataset_code, state, decided_at)`` covers the sharing-rate report's scan of the
jobs, so the report reads neither the wide job rows nor the transitions.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_job_decided_at"
down_revision: str | Sequence[str] | None = "0004_dp_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)  # UTC; read back tz-aware by catalog._db.UTCDateTime
_INDEX = "ix_sandbox_jobs_created_at_dataset_code_state"


def upgrade() -> None:
    with op.batch_alter_table("sandbox_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("decided_at", _TS, nullable=True))
    # backfill: the (only) transition to approved or rejected; undecided jobs keep NULL
    op.execute(
        "UPDATE sandbox_jobs SET decided_at = ("
        " SELECT min(t.at) FROM sandbox_job_transitions t"
        " WHERE t.job_id = sandbox_jobs.id AND t.to_state IN ('approved', 'rejected'))"
        " WHERE state NOT IN ('submitted', 'policy_checked', 'awaiting_approval')"
    )
    with op.batch_alter_table("sandbox_jobs", schema=None) as batch_op:
        batch_op.create_index(
            _INDEX, ["created_at", "dataset_code", "state", "decided_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("sandbox_jobs", schema=None) as batch_op:
        batch_op.drop_index(_INDEX)
        batch_op.drop_column("decided_at")
