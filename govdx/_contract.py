"""Dataset contracts (数据集契约): the steward's declaration of one dataset, one YAML file each.

A contract names the dataset and its catalog entry (政务信息资源目录 fields: resource code, name,
provider department, summary, share/open type, update cycle), where its source file lives and
how to read it, and its fields with their data element, grade (GB/T 43697-2024 核心/重要/一般)
and personal-information sensitivity. It is validated when loaded; every error names the file
and the dotted key (``fields.2.type``).

Example::

    code: SCJG-0001
    name: enterprise_registry
    title: 企业登记信息
    department: {code: SCJG, name: 市场监督管理局}
    summary: 在本市登记的企业基本信息
    source: {path: data/enterprise.csv, format: csv, encoding: auto, header_row: 1}
    primary_key: [uscc]
    share: {type: conditional, conditions: 用于信贷审批}
    open: {type: none}
    update_cycle: monthly
    quality: {min_pass_rate: 0.95}
    fields:
      - {name: uscc, title: 统一社会信用代码, type: string, required: true, element: uscc}
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from govdx._errors import ContractError

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# a dotted key at the head of a validator's reason: "Value error, public_domains.district: ..."
_INNER_KEY = re.compile(r"^(?:Value error, )?([a-z_][a-z0-9_]*(?:\.[^\s:.]+)+): ")


class FieldType(StrEnum):
    """Logical type of a field; maps to an Arrow type in the lakehouse."""

    string = "string"
    integer = "integer"  # int64
    decimal = "decimal"  # decimal128(precision, scale)
    date = "date"  # date32, calendar date, no time zone
    timestamp = "timestamp"  # timestamp[us, tz=Asia/Shanghai] unless the value carries an offset
    boolean = "boolean"


class Grade(StrEnum):
    """Data grade per GB/T 43697-2024 数据分类分级: 核心 core / 重要 important / 一般 general."""

    core = "core"
    important = "important"
    general = "general"


class PersonalInfo(StrEnum):
    """Personal-information class of a field: 敏感个人信息 sensitive / 一般个人信息 general / none."""

    sensitive = "sensitive"
    general = "general"
    none = "none"


class ShareType(StrEnum):
    """Share type (共享类型): 无条件共享 unconditional / 有条件共享 conditional / 不予共享 none."""

    unconditional = "unconditional"
    conditional = "conditional"
    none = "none"


class OpenType(StrEnum):
    """Open type (开放类型): 无条件开放 unconditional / 有条件开放 conditional / 不予开放 none."""

    unconditional = "unconditional"
    conditional = "conditional"
    none = "none"


SHARE_TYPE_ZH = {"unconditional": "无条件共享", "conditional": "有条件共享", "none": "不予共享"}
OPEN_TYPE_ZH = {"unconditional": "无条件开放", "conditional": "有条件开放", "none": "不予开放"}
GRADE_ZH = {"core": "核心数据", "important": "重要数据", "general": "一般数据"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Department(_Strict):
    """Provider department (信息资源提供方)."""

    code: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1)


class Source(_Strict):
    """Where the department file is and how to read it.

    Attributes:
        path: file path; relative paths resolve against the contract file's folder.
        format: ``csv`` | ``xlsx`` | ``json`` (array of objects, JSON lines, or a tree with
            ``tree_children``).
        encoding: ``auto`` (strict-decode UTF-8 with/without BOM, else GB18030) | ``utf-8`` |
            ``gbk`` | ``gb18030``; GBK is always decoded as GB18030, its superset.
        header_row: 1-based row of the header; rows above it (titles, metadata) are skipped.
        footer_rows: trailing rows of notes (统计报表脚注) dropped below the data.
        sheet: XLSX sheet name (default: the first sheet).
        fill_merged: XLSX: fill values of merged cells into every cell of the range.
        delimiter: CSV delimiter, one character.
        tree_children: JSON tree: the key holding child nodes; every node becomes a row with
            ``parent_<first field>`` style parent key and ``level`` (1 = root) columns.
        allow_empty: accept a delivery with no data rows (an empty table version); by default
            such a file is refused, since it usually means a failed export.
    """

    path: str
    format: Literal["csv", "xlsx", "json"]
    encoding: Literal["auto", "utf-8", "gbk", "gb18030"] = "auto"
    header_row: int = Field(default=1, ge=1)
    footer_rows: int = Field(default=0, ge=0)
    sheet: str | None = None
    fill_merged: bool = False
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    tree_children: str | None = None
    allow_empty: bool = False


class Share(_Strict):
    """Share type and its conditions (共享类型, 共享条件)."""

    type: ShareType
    conditions: str | None = None

    @model_validator(mode="after")
    def _conditions_when_conditional(self) -> Share:
        if self.type is ShareType.conditional and not self.conditions:
            raise ValueError("share.type 'conditional' needs share.conditions (共享条件)")
        return self


class Open(_Strict):
    """Open type and its conditions (开放类型, 开放条件)."""

    type: OpenType
    conditions: str | None = None


class Quality(BaseModel):
    """Quality settings. ``min_pass_rate``: share of rows (0..1) that must pass for a commit.

    Keys other than ``min_pass_rate`` are kept for the quality package (e.g. ``expectations``).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    min_pass_rate: float = Field(default=0.95, ge=0.0, le=1.0)


class ContractField(_Strict):
    """One field (数据项 / data element) of a dataset.

    Attributes:
        name: column name in the lakehouse, snake_case.
        title: Chinese title (中文名称); also the default source column.
        type: logical type (see :class:`FieldType`).
        required: blank values are quarantined when true.
        element: data element standard the field follows (resident_id, uscc, region_code,
            phone, person_name, address, date, amount, ...).
        grade: GB/T 43697 grade; core and important fields are stored encrypted.
        pi: personal information class; ``sensitive`` fields are stored encrypted.
        source_column: source column header, when it differs from ``title`` and ``name``.
        precision, scale: for ``decimal`` (default 38, 4).
        description: free text.
    """

    name: str
    title: str | None = None
    type: FieldType = FieldType.string
    required: bool = False
    element: str | None = None
    grade: Grade = Grade.general
    pi: PersonalInfo = PersonalInfo.none
    source_column: str | None = None
    precision: int = Field(default=38, ge=1, le=38)
    scale: int = Field(default=4, ge=0, le=38)
    description: str | None = None
    unit: str | None = None

    @field_validator("name")
    @classmethod
    def _snake(cls, v: str) -> str:
        if not _SNAKE.match(v):
            raise ValueError(f"field name {v!r} must be snake_case (a-z, 0-9, _)")
        return v

    @property
    def protected(self) -> bool:
        """True when the field must never be stored in plaintext (sensitive PI or core/important)."""
        return self.pi is PersonalInfo.sensitive or self.grade in (Grade.core, Grade.important)

    def source_candidates(self) -> list[str]:
        """Source column names this field matches, in priority order."""
        if self.source_column:
            return [self.source_column]
        return [c for c in (self.title, self.name) if c]


#: Catalog-level metadata (目录元数据) of a contract: set by the contract file when an entry is
#: first registered, owned by the catalog afterwards (``PATCH`` of the entry, a contract upload);
#: left out of :meth:`Contract.definition_digest`, since it never changes the stored table.
CATALOG_KEYS = ("title", "summary", "share", "open", "update_cycle", "tags")


class Contract(_Strict):
    """A dataset contract. Build with :func:`load_contract` or :meth:`from_dict`.

    The contract's folder (``base_dir``) anchors relative source paths.
    """

    code: str = Field(description="信息资源代码")
    name: str = Field(description="table name, snake_case")
    title: str
    department: Department
    summary: str = ""
    source: Source
    primary_key: list[str] = Field(default_factory=list)
    share: Share
    open: Open = Open(type=OpenType.none)
    update_cycle: Literal[
        "realtime", "daily", "weekly", "monthly", "quarterly", "yearly", "irregular"
    ] = "irregular"
    quality: Quality = Quality()
    fields: list[ContractField] = Field(min_length=1)
    sandbox: dict[str, Any] | None = None
    privacy_unit: str | None = None
    tags: list[str] = Field(default_factory=list)
    base_dir: str | None = Field(default=None, exclude=True)

    @field_validator("code")
    @classmethod
    def _code(cls, v: str) -> str:
        if not _CODE.match(v):
            raise ValueError(f"code {v!r} may hold letters, digits, '-', '_' and '.' only")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _SNAKE.match(v):
            raise ValueError(f"name {v!r} must be snake_case (a-z, 0-9, _)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Contract:
        names = [f.name for f in self.fields]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"fields: duplicate field name(s) {dup}")
        for key in self.primary_key:
            if key not in names:
                raise ValueError(f"primary_key: {key!r} is not a field name")
        if self.privacy_unit is not None and self.privacy_unit not in names:
            raise ValueError(f"privacy_unit: {self.privacy_unit!r} is not a field name")
        protected = [f.name for f in self.fields if f.protected]
        if self.open.type.value == "unconditional" and protected:
            # 公共数据开放: data holding sensitive personal information or important / core data
            # is not opened to all; it may be opened on conditions (有条件开放) or not at all
            raise ValueError(
                f"open.type: 'unconditional' (无条件开放) for a dataset with protected fields "
                f"{protected} (sensitive PI or important/core data); use 'conditional' with "
                "open.conditions, or 'none'"
            )
        return self

    # --- derived views --------------------------------------------------------------------
    def field(self, name: str) -> ContractField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def protected_fields(self) -> list[ContractField]:
        """Fields stored encrypted (sensitive PI or core/important grade)."""
        return [f for f in self.fields if f.protected]

    @property
    def grade(self) -> Grade:
        """The dataset's grade: the highest grade of its fields."""
        order = [Grade.general, Grade.important, Grade.core]
        return max((f.grade for f in self.fields), key=order.index)

    def source_path(self) -> Path:
        """Absolute path of the source file (relative paths resolve against ``base_dir``)."""
        p = Path(self.source.path).expanduser()
        if not p.is_absolute() and self.base_dir:
            p = Path(self.base_dir) / p
        return p.resolve()

    def definition_digest(self) -> str:
        """SM3 hex digest (GB/T 32905-2016, 64 lowercase hex) of the data definition.

        Covers what turns a file's bytes into a stored table version: ``code``, ``name``,
        ``department.code``, the source format and parsing options, ``primary_key``, the
        fields (type, grade, pi, element, source candidates, ...), quality rules,
        ``privacy_unit`` and the ``sandbox`` block. Left out: ``source.path`` (same layout,
        another file), ``base_dir``, ``department.name`` and the catalog-level metadata
        (目录元数据) that an entry edit (``PATCH`` of the entry) changes without touching the
        data: title, summary, share, open, update_cycle, tags.

        Two contracts with equal digests turn the same bytes into the same table version; a
        change of a field's grade, type or source layout changes the digest. The ingest records
        it in each Delta commit (``govdx.contract_definition``). Tables committed before this
        narrower digest (govdx ≤ the release that hashed the whole contract) re-ingest once,
        as one new version, the first time the same bytes are ingested again.
        """
        import hashlib
        import json

        exclude: dict[str, Any] = dict.fromkeys(CATALOG_KEYS, True)
        exclude.update(base_dir=True, source={"path"}, department={"name"})
        doc = self.model_dump(mode="json", exclude=exclude)
        canonical = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.new("sm3", canonical.encode("utf-8")).hexdigest()

    def with_source(self, path: str | Path) -> Contract:
        """A copy of this contract reading another file of the same layout."""
        return self.model_copy(
            update={"source": self.source.model_copy(update={"path": str(path)})}
        )

    # --- construction -----------------------------------------------------------------------
    @classmethod
    def from_dict(
        cls, data: Any, *, path: str | Path | None = None, base_dir: str | Path | None = None
    ) -> Contract:
        """Validate a parsed contract mapping.

        Raises:
            ContractError: naming the file and the first offending key, e.g.
                ``contracts/x.yaml: fields.2.type: Input should be 'string', ...``.
        """
        where = str(path) if path else None
        if not isinstance(data, dict):
            raise ContractError("a contract must be a YAML mapping", path=where)
        data = dict(data)
        if base_dir is not None:
            data["base_dir"] = str(base_dir)
        try:
            contract = cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or None
            loc, named = first["loc"], ""
            if len(loc) >= 2 and loc[0] == "fields" and isinstance(loc[1], int):
                fields = data.get("fields")
                name = (
                    fields[loc[1]].get("name")
                    if isinstance(fields, list)
                    and loc[1] < len(fields)
                    and isinstance(fields[loc[1]], dict)
                    else None
                )
                named = f"field {name!r}: " if name else ""
            msg = first["msg"]
            if first["type"] == "extra_forbidden":
                msg = f"unknown key {first['loc'][-1]!r}"
            elif first["type"] == "missing":
                msg = "required key is missing"
            others = [
                ".".join(str(x) for x in e["loc"])
                + ": "
                + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"])
                for e in exc.errors()[1:6]
            ]
            if others:  # every reason, not only the first
                more = len(exc.errors()) - 1 - len(others)
                msg += "; also " + "; ".join(others) + (f"; and {more} more" if more else "")
            raise ContractError(named + msg, path=where, key=key) from exc
        if contract.quality.model_extra:  # quality rules are checked before any data moves
            from quality._spec import check_contract

            check_contract(contract, path=where)
        if contract.sandbox is not None:  # so is the sandbox block (docs/sandbox.md, dp.md)
            _check_sandbox(contract, path=where)
        return contract


def _check_sandbox(contract: Contract, *, path: str | None) -> None:
    """Validate the ``sandbox:`` block at load: the policy, ``sandbox.dp`` and ``sandbox.fl``.

    Imported lazily, as the quality check above: the sandbox package imports this module, and
    a contract without a ``sandbox:`` block never pays for it (≈0.1 s when the pipeline's
    imports are loaded already).

    Raises:
        ContractError: naming the file and the key, down to the column where the reason names
            one (``sandbox.dp.public_domains.employer_district``).
    """
    from sandbox._dp import dp_policy
    from sandbox._fl import fl_policy
    from sandbox._policy import sandbox_policy

    for check in (sandbox_policy, dp_policy, fl_policy):
        try:
            check(contract)
        except ContractError as exc:  # re-raised naming the file instead of the dataset code
            key = exc.key or "sandbox"
            reason = str(exc).removeprefix(": ".join(p for p in (exc.path, exc.key) if p) + ": ")
            # "sandbox.dp.public_domains" + "Value error, public_domains.x: ..." → "….public_domains.x"
            inner = _INNER_KEY.match(reason)
            if inner and inner.group(1).split(".")[0] == key.rsplit(".", 1)[-1]:
                key = key.rsplit(".", 1)[0] + "." + inner.group(1)
                reason = reason[inner.end() :]
            raise ContractError(reason, path=path or exc.path, key=key) from exc


def load_contract(path: str | Path) -> Contract:
    """Load and validate a contract YAML file.

    Args:
        path: the contract file (UTF-8 YAML).

    Returns:
        The validated :class:`Contract`; relative source paths resolve against its folder.

    Raises:
        ContractError: the file is missing, is not YAML, or a key is wrong (the key is named).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ContractError("contract file not found", path=str(p)) from exc
    except UnicodeDecodeError as exc:
        raise ContractError(f"contract is not UTF-8 ({exc.reason})", path=str(p)) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ContractError(yaml_error_text(exc), path=str(p)) from exc
    return Contract.from_dict(data, path=p, base_dir=p.resolve().parent)


def yaml_error_text(exc: Exception) -> str:
    """One line for a PyYAML error: ``not valid YAML at line L, column C: <problem> (<context>)``
    (1-based positions from the error's ``problem_mark``), instead of PyYAML's multi-line text
    that quotes ``<unicode string>``."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = getattr(exc, "context", None)
    return f"not valid YAML{where}: {problem}" + (f" ({context})" if context else "")
