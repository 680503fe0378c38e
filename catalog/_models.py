"""Catalog tables (数据资源目录): departments, entries, fields, versions and lineage events.

Entries follow the 政务信息资源目录 fields (resource code 信息资源代码, name, provider department
信息资源提供方, summary 摘要, format 格式, data items 信息项, share type 共享类型 and conditions,
open type 开放类型 and conditions, update cycle 更新周期, publish date 发布日期), and carry the
GB/T 43697-2024 grade (核心/重要/一般) of each field and of the entry.

Tables::

    departments             code PK, name
    datasets                one catalog entry per contract; current_version_id says which Delta
                            version readers see (the authority, not the Delta log's newest)
    dataset_fields          the contract's fields, replaced on every registration
    dataset_versions        one row per committed Delta version: row counts, SM3 digest of the
                            raw file, OpenLineage run id
    lineage_events          OpenLineage run events as received (full JSON payload)
    lineage_event_datasets  the inputs/outputs of each event, indexed for graph queries

All timestamps are tz-aware UTC (:class:`catalog._db.UTCDateTime`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from catalog._db import Base, UTCDateTime, utcnow


class Department(Base):
    """A provider department (信息资源提供方), e.g. ``SCJG`` 市场监督管理局."""

    __tablename__ = "departments"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))

    datasets: Mapped[list[Dataset]] = relationship(back_populates="department")


class Dataset(Base):
    """A catalog entry (政务信息资源目录条目), one per dataset contract.

    Attributes:
        code: 信息资源代码, unique. name: lakehouse table name (snake_case), unique.
        share_type / open_type: ``unconditional`` | ``conditional`` | ``none``
            (无条件/有条件/不予 共享·开放). grade: highest field grade
            (``core`` | ``important`` | ``general``).
        current_version_id: the version readers see; ``None`` until a first commit.
        contract_yaml: the contract text as registered.
    """

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text, default="")
    department_code: Mapped[str] = mapped_column(
        ForeignKey("departments.code", onupdate="CASCADE"), index=True
    )
    format: Mapped[str] = mapped_column(String(16))
    share_type: Mapped[str] = mapped_column(String(16))
    share_conditions: Mapped[str | None] = mapped_column(Text)
    open_type: Mapped[str] = mapped_column(String(16))
    open_conditions: Mapped[str | None] = mapped_column(Text)
    update_cycle: Mapped[str] = mapped_column(String(16))
    grade: Mapped[str] = mapped_column(String(16))
    published: Mapped[bool] = mapped_column(Boolean, default=False)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    current_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("dataset_versions.id", use_alter=True, ondelete="SET NULL")
    )
    contract_yaml: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    department: Mapped[Department] = relationship(back_populates="datasets")
    fields: Mapped[list[DatasetField]] = relationship(
        back_populates="dataset",
        cascade="all, delete-orphan",
        order_by="DatasetField.position",
        passive_deletes=True,
    )
    versions: Mapped[list[DatasetVersion]] = relationship(
        back_populates="dataset",
        cascade="all, delete-orphan",
        order_by="DatasetVersion.delta_version",
        foreign_keys="DatasetVersion.dataset_id",
        passive_deletes=True,
    )
    current_version: Mapped[DatasetVersion | None] = relationship(
        foreign_keys=[current_version_id], post_update=True
    )

    def __repr__(self) -> str:
        return f"Dataset(code={self.code!r}, name={self.name!r})"


class DatasetField(Base):
    """One field (信息项 / data element) of a catalog entry, in contract order.

    Attributes:
        position: 1-based position in the contract. type: logical type (``string``,
            ``integer``, ``decimal``, ``date``, ``timestamp``, ``boolean``).
        grade: GB/T 43697 grade. pi: ``sensitive`` | ``general`` | ``none`` (敏感个人信息 ...).
        protected: stored encrypted (SM4) in the lakehouse.
    """

    __tablename__ = "dataset_fields"
    __table_args__ = (
        UniqueConstraint("dataset_id", "name"),
        UniqueConstraint("dataset_id", "position"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(128))
    title: Mapped[str | None] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(16))
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    element: Mapped[str | None] = mapped_column(String(64))
    grade: Mapped[str] = mapped_column(String(16))
    pi: Mapped[str] = mapped_column(String(16))
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    unit: Mapped[str | None] = mapped_column(String(32))
    description: Mapped[str | None] = mapped_column(Text)

    dataset: Mapped[Dataset] = relationship(back_populates="fields")


class DatasetVersion(Base):
    """One committed Delta table version of a dataset (数据集版本).

    Attributes:
        delta_version: Delta Lake table version number (0-based). row_count: rows committed.
        quarantined_count: rows sent to quarantine (隔离区) by this run.
        source_digest: SM3 digest (GB/T 32905-2016) of the raw file, 64 lowercase hex chars.
        source_name: original file name. source_bytes: raw file size in bytes.
        run_id: OpenLineage run id (UUID) of the ingest run. engine: ``duckdb`` | ``spark``.
    """

    __tablename__ = "dataset_versions"
    __table_args__ = (
        UniqueConstraint("dataset_id", "delta_version"),
        Index("ix_dataset_versions_dataset_id_source_digest", "dataset_id", "source_digest"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    delta_version: Mapped[int] = mapped_column(BigInteger)
    row_count: Mapped[int] = mapped_column(BigInteger)
    quarantined_count: Mapped[int] = mapped_column(BigInteger, default=0)
    source_digest: Mapped[str] = mapped_column(String(64))
    source_name: Mapped[str] = mapped_column(String(500))
    source_bytes: Mapped[int] = mapped_column(BigInteger)
    run_id: Mapped[str] = mapped_column(String(36), index=True)
    engine: Mapped[str] = mapped_column(String(16), default="duckdb")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    dataset: Mapped[Dataset] = relationship(back_populates="versions", foreign_keys=[dataset_id])

    def __repr__(self) -> str:
        return f"DatasetVersion(dataset_id={self.dataset_id}, delta_version={self.delta_version})"


class LineageEvent(Base):
    """An OpenLineage run event as received (血缘事件).

    Attributes:
        run_id: OpenLineage ``run.runId`` (UUID). event_type: ``START`` | ``RUNNING`` |
            ``COMPLETE`` | ``FAIL`` | ``ABORT`` | ``OTHER``.
        payload: the full event, JSON text (UTF-8, keys sorted).
        inputs / outputs: JSON arrays of ``"namespace/name"`` strings, for reading;
            :attr:`datasets` holds the same, indexed, for queries.
    """

    __tablename__ = "lineage_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(String(36), index=True)
    event_type: Mapped[str] = mapped_column(String(16))
    job_namespace: Mapped[str] = mapped_column(String(200))
    job_name: Mapped[str] = mapped_column(String(500))
    event_time: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    payload: Mapped[str] = mapped_column(Text)
    inputs: Mapped[str] = mapped_column(Text, default="[]")
    outputs: Mapped[str] = mapped_column(Text, default="[]")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    datasets: Mapped[list[LineageEventDataset]] = relationship(
        back_populates="event", cascade="all, delete-orphan", passive_deletes=True
    )


class LineageEventDataset(Base):
    """One input or output dataset of a lineage event (``direction``: ``input`` | ``output``)."""

    __tablename__ = "lineage_event_datasets"
    __table_args__ = (Index("ix_lineage_event_datasets_namespace_name", "namespace", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(
        ForeignKey("lineage_events.id", ondelete="CASCADE"), index=True
    )
    direction: Mapped[str] = mapped_column(String(8))
    namespace: Mapped[str] = mapped_column(String(500))
    name: Mapped[str] = mapped_column(String(1000))

    event: Mapped[LineageEvent] = relationship(back_populates="datasets")
