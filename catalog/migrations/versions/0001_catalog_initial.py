"""Catalog initial schema: departments, datasets, fields, versions, lineage events.

Revision ID: 0001
Revises:
Create Date: 2026-11-29

``datasets.current_version_id`` and ``dataset_versions.dataset_id`` reference each other, so the
first of those foreign keys is added after both tables exist (an ALTER on PostgreSQL, a table
copy in SQLite batch mode).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)  # UTC; read back tz-aware by catalog._db.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "departments",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_departments")),
    )
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("department_code", sa.String(length=32), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("share_type", sa.String(length=16), nullable=False),
        sa.Column("share_conditions", sa.Text(), nullable=True),
        sa.Column("open_type", sa.String(length=16), nullable=False),
        sa.Column("open_conditions", sa.Text(), nullable=True),
        sa.Column("update_cycle", sa.String(length=16), nullable=False),
        sa.Column("grade", sa.String(length=16), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("published_at", _TS, nullable=True),
        sa.Column("current_version_id", sa.Integer(), nullable=True),
        sa.Column("contract_yaml", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["department_code"],
            ["departments.code"],
            name=op.f("fk_datasets_department_code_departments"),
            onupdate="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("code", name=op.f("uq_datasets_code")),
        sa.UniqueConstraint("name", name=op.f("uq_datasets_name")),
    )
    op.create_index(
        op.f("ix_datasets_department_code"), "datasets", ["department_code"], unique=False
    )
    op.create_table(
        "dataset_fields",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=True),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("element", sa.String(length=64), nullable=True),
        sa.Column("grade", sa.String(length=16), nullable=False),
        sa.Column("pi", sa.String(length=16), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_dataset_fields_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_fields")),
        sa.UniqueConstraint("dataset_id", "name", name=op.f("uq_dataset_fields_dataset_id_name")),
        sa.UniqueConstraint(
            "dataset_id", "position", name=op.f("uq_dataset_fields_dataset_id_position")
        ),
    )
    op.create_table(
        "dataset_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("delta_version", sa.BigInteger(), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("quarantined_count", sa.BigInteger(), nullable=False),
        sa.Column("source_digest", sa.String(length=64), nullable=False),
        sa.Column("source_name", sa.String(length=500), nullable=False),
        sa.Column("source_bytes", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("engine", sa.String(length=16), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_dataset_versions_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_versions")),
        sa.UniqueConstraint(
            "dataset_id",
            "delta_version",
            name=op.f("uq_dataset_versions_dataset_id_delta_version"),
        ),
    )
    op.create_index(
        "ix_dataset_versions_dataset_id_source_digest",
        "dataset_versions",
        ["dataset_id", "source_digest"],
        unique=False,
    )
    op.create_index(
        op.f("ix_dataset_versions_run_id"), "dataset_versions", ["run_id"], unique=False
    )
    with op.batch_alter_table("datasets") as batch_op:
        batch_op.create_foreign_key(
            op.f("fk_datasets_current_version_id_dataset_versions"),
            "dataset_versions",
            ["current_version_id"],
            ["id"],
            ondelete="SET NULL",
        )

    op.create_table(
        "lineage_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=16), nullable=False),
        sa.Column("job_namespace", sa.String(length=200), nullable=False),
        sa.Column("job_name", sa.String(length=500), nullable=False),
        sa.Column("event_time", _TS, nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=False),
        sa.Column("outputs", sa.Text(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lineage_events")),
    )
    op.create_index(
        op.f("ix_lineage_events_event_time"), "lineage_events", ["event_time"], unique=False
    )
    op.create_index(op.f("ix_lineage_events_run_id"), "lineage_events", ["run_id"], unique=False)
    op.create_table(
        "lineage_event_datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("namespace", sa.String(length=500), nullable=False),
        sa.Column("name", sa.String(length=1000), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["lineage_events.id"],
            name=op.f("fk_lineage_event_datasets_event_id_lineage_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lineage_event_datasets")),
    )
    op.create_index(
        op.f("ix_lineage_event_datasets_event_id"),
        "lineage_event_datasets",
        ["event_id"],
        unique=False,
    )
    op.create_index(
        "ix_lineage_event_datasets_namespace_name",
        "lineage_event_datasets",
        ["namespace", "name"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("lineage_event_datasets")
    op.drop_table("lineage_events")
    with op.batch_alter_table("datasets") as batch_op:
        batch_op.drop_constraint(
            op.f("fk_datasets_current_version_id_dataset_versions"), type_="foreignkey"
        )
    op.drop_table("dataset_versions")
    op.drop_table("dataset_fields")
    op.drop_table("datasets")
    op.drop_table("departments")
