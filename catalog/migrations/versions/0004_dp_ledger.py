"""Privacy-budget ledger: dp_budgets (lock rows) and dp_ledger (one row per DP job attempt).

Revision ID: 0004_dp_ledger
Revises: 0003_sandbox
Create Date: 2026-11-30

Models: ``sandbox._ledger`` (DpBudget, DpLedgerEntry). ε and δ are stored as exact rationals
(numerator/denominator decimal strings), never floats.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_dp_ledger"
down_revision: str | Sequence[str] | None = "0003_sandbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)  # UTC; read back tz-aware by catalog._db.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "dp_budgets",
        sa.Column("requester", sa.String(length=64), nullable=False),
        sa.Column("dataset_code", sa.String(length=64), nullable=False),
        sa.Column("lock_seq", sa.Integer(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("requester", "dataset_code", name=op.f("pk_dp_budgets")),
    )
    op.create_table(
        "dp_ledger",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("requester", sa.String(length=64), nullable=False),
        sa.Column("dataset_code", sa.String(length=64), nullable=False),
        sa.Column("eps_num", sa.String(length=80), nullable=False),
        sa.Column("eps_den", sa.String(length=80), nullable=False),
        sa.Column("delta_num", sa.String(length=80), nullable=False),
        sa.Column("delta_den", sa.String(length=80), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("mechanism", sa.String(length=64), nullable=False),
        sa.Column("statistic", sa.String(length=32), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dp_ledger")),
        sa.UniqueConstraint("job_id", "attempt", name=op.f("uq_dp_ledger_job_id_attempt")),
    )
    with op.batch_alter_table("dp_ledger", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dp_ledger_dataset_code"), ["dataset_code"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_dp_ledger_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_dp_ledger_requester"), ["requester"], unique=False)
        batch_op.create_index(batch_op.f("ix_dp_ledger_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dp_ledger", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dp_ledger_status"))
        batch_op.drop_index(batch_op.f("ix_dp_ledger_requester"))
        batch_op.drop_index(batch_op.f("ix_dp_ledger_job_id"))
        batch_op.drop_index(batch_op.f("ix_dp_ledger_dataset_code"))
    op.drop_table("dp_ledger")
    op.drop_table("dp_budgets")
