"""users.disabled_at (停用时间): an admin can disable an account without deleting its history.

Revision ID: 0006_user_disabled
Revises: 0005_job_decided_at
Create Date: 2026-11-29

A disabled user (``disabled_at`` not NULL) cannot log in, its API tokens are refused within the
user cache's lifetime (5 s), and the CLI refuses it as an acting user; its jobs, approvals and
audit entries stay as they were (they name the user). ``govdx users disable|enable``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_user_disabled"
down_revision: str | Sequence[str] | None = "0005_job_decided_at"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("disabled_at")
