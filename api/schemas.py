"""Request and response models of the API (接口数据模型), Pydantic 2.

Families follow the full-stack template: ``XBase`` (shared fields), ``XCreate``/``XUpdate``
(bodies), ``XPublic``/``XsPublic`` (responses), ``XQuery`` (query strings). Bodies and query
models of the govdx API forbid unknown keys, so a typo is a 422 naming the key; the CKAN query
models ignore unknown keys, as CKAN does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

GradeName = Literal["core", "important", "general"]
ShareTypeName = Literal["unconditional", "conditional", "none"]
JobStateName = Literal[
    "submitted",
    "policy_checked",
    "awaiting_approval",
    "approved",
    "rejected",
    "running",
    "succeeded",
    "failed",
    "released",
    "cancelled",
    "expired",
]
UpdateCycle = Literal["realtime", "daily", "weekly", "monthly", "quarterly", "yearly", "irregular"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# --- auth -----------------------------------------------------------------------------------
class Token(BaseModel):
    """OAuth2 token response (RFC 6749 §5.1). ``expires_in`` in seconds."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class UserPublic(BaseModel):
    """A user as the API shows it (no password hash)."""

    name: str
    role: str
    department: str | None


# --- catalog --------------------------------------------------------------------------------
class DatasetSearchQuery(_Strict):
    """Catalog search (目录检索). Every given filter must hold.

    ``q``: keywords, Chinese or English, whitespace-separated, each matched case-insensitively
    against codes, names, titles, summary, department, fields (name, title, element), tags and
    the share/open/grade labels.
    """

    q: str | None = Field(default=None, max_length=200)
    department: str | None = Field(default=None, max_length=32)
    grade: GradeName | None = None
    share_type: ShareTypeName | None = None
    open_type: ShareTypeName | None = None
    element: str | None = Field(default=None, max_length=64)
    published: bool | None = None
    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class DatasetsPublic(BaseModel):
    """A page of catalog entries: ``count`` matches in all, ``data`` this page."""

    count: int
    data: list[dict[str, Any]]


class DatasetPublic(BaseModel):
    """One catalog entry in full: the entry (fields, grades), versions, quality, lineage."""

    entry: dict[str, Any]
    versions: list[dict[str, Any]]
    quality: dict[str, Any] | None
    lineage: dict[str, Any]


class ShareUpdate(_Strict):
    """Share type and conditions (共享类型, 共享条件)."""

    type: ShareTypeName
    conditions: str | None = Field(default=None, max_length=2000)


class OpenUpdate(_Strict):
    """Open type and conditions (开放类型, 开放条件)."""

    type: ShareTypeName
    conditions: str | None = Field(default=None, max_length=2000)


class DatasetUpdate(_Strict):
    """Catalog-level edits of an entry by its steward; omitted keys stay as they are."""

    title: str | None = Field(default=None, min_length=1, max_length=200)
    summary: str | None = Field(default=None, max_length=4000)
    share: ShareUpdate | None = None
    open: OpenUpdate | None = None
    update_cycle: UpdateCycle | None = None
    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=50
    )

    @field_validator("tags")
    @classmethod
    def _distinct_tags(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            dup = sorted({t for t in v if v.count(t) > 1})
            raise ValueError(f"duplicate tag(s) {dup} (标签重复)")
        return v


class RowsQuery(_Strict):
    """A page of rows: ``offset`` (rows) and ``limit`` (rows, at most ``MAX_ROWS_PER_PAGE``)."""

    offset: int = Field(default=0, ge=0, le=1_000_000_000)
    limit: int = Field(default=100, ge=1, le=100_000)


class RowsPublic(BaseModel):
    """Rows of the stored table; protected columns hold ``"[encrypted]"`` (never decrypted)."""

    dataset: str
    version: int
    offset: int
    limit: int
    total: int
    columns: list[dict[str, Any]]
    rows: list[list[Any]]


class ContractRegistered(BaseModel):
    """Outcome of a contract upload. ``unpublished``: why a published entry was withdrawn (its
    stored version no longer holds every protected field encrypted; the next ingest re-encrypts,
    then publish again), else None."""

    code: str
    created: bool
    entry: dict[str, Any]
    unpublished: str | None = None


# --- sandbox --------------------------------------------------------------------------------
class JobsQuery(_Strict):
    """Job listing filter."""

    state: JobStateName | None = None


class JobApprove(_Strict):
    """An approval, with an optional note (审批意见)."""

    reason: str | None = Field(default=None, max_length=2000)


class JobReject(_Strict):
    """A rejection; the reason is required (驳回理由)."""

    reason: str = Field(min_length=1, max_length=2000)


class JobCancel(_Strict):
    """A cancellation, with an optional reason."""

    reason: str | None = Field(default=None, max_length=2000)


class BudgetQuery(_Strict):
    """Datasets to report the quota of; default: every published entry the user may see."""

    dataset: list[str] | None = Field(default=None, max_length=100)


# --- audit ----------------------------------------------------------------------------------
class AuditQuery(_Strict):
    """A page of audit entries, newest first, optionally of one actor or action."""

    actor: str | None = Field(default=None, max_length=64)
    action: str | None = Field(default=None, max_length=64)
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=100, ge=1, le=1000)


# --- CKAN -----------------------------------------------------------------------------------
class _Ckan(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class PackageSearchParams(_Ckan):
    """CKAN ``package_search`` parameters (CKAN API docs, ``ckan.logic.action.get``).

    ``q``: keywords, or ``field:value`` terms; ``fq``: ``field:value`` filters (space
    separated; fields ``organization``, ``tags``, ``name``, ``id``, ``res_format``,
    ``license_id``, ``open_type``); ``rows`` (0..1000, default 10), ``start``; ``sort``:
    ``score desc, metadata_modified desc`` (default), ``name asc|desc``,
    ``title_string asc|desc``, ``metadata_modified asc|desc``, ``metadata_created asc|desc``.
    """

    q: str = Field(default="", max_length=500)
    fq: str = Field(default="", max_length=1000)
    rows: int = Field(default=10, ge=0, le=1000)
    start: int = Field(default=0, ge=0, le=1_000_000)
    sort: str = Field(default="score desc, metadata_modified desc", max_length=200)


class PackageShowParams(_Ckan):
    """CKAN ``package_show``: ``id`` is the package id or name."""

    id: str = Field(min_length=1, max_length=200)


class OrganizationListParams(_Ckan):
    """CKAN ``organization_list``: names, or full dicts with ``all_fields``."""

    all_fields: bool = False
    sort: str = Field(default="name asc", max_length=100)
    limit: int = Field(default=1000, ge=0, le=1000)
    offset: int = Field(default=0, ge=0)


class OrganizationShowParams(_Ckan):
    """CKAN ``organization_show``: ``id`` is the organization id or name."""

    id: str = Field(min_length=1, max_length=200)
    include_datasets: bool = False
