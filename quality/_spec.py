"""The ``quality`` section of a contract (质量规则声明), parsed and checked at load time.

Keys (all optional except what :class:`govdx.Contract` already requires)::

    quality:
      min_pass_rate: 0.95            # share of rows that must pass for a commit (govdx.Quality)
      strict: false                  # unknown GB/T 2260 region codes reject the row (all fields)
      fields:                        # per-field rule options, keyed by field name
        established_on: {min_date: 1949-10-01}
        registered_capital: {allow_negative: false, max_value: 1.0e+8}
        region_code: {strict: true}
        credit_grade: {value_set: [A, B, C, D, M]}
        phone: {regex: '^1[3-9][0-9]{9}$'}
      consistency:                   # cross-field rules (一致性)
        - {check: birth_date_matches_id, id_column: resident_id, date_column: birth_date}
        - {check: not_after, column: established_on, other: ingestion_date}
      expectations:                  # Great Expectations 1.x row-level (map) expectations
        - {expectation: expect_column_values_to_be_between, column: registered_capital,
           min_value: 0, dimension: 准确性}

``expectations`` entries use GX's own snake_case names and arguments; ``dimension`` (optional)
names the GB/T 36344 dimension the expectation scores, else one is inferred from its name.
Every error is a :class:`govdx.ContractError` naming the key, e.g.
``quality.expectations.0.min_valu: extra fields not permitted``.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from govdx._errors import ContractError
from quality._dimensions import DIMENSION_ALIASES, Dimension

if TYPE_CHECKING:
    from govdx import Contract

__all__ = [
    "ConsistencyRule",
    "FieldRules",
    "QualitySpec",
    "StewardExpectation",
    "check_contract",
    "quality_spec",
]

INGESTION_DATE = "ingestion_date"
"""The ``other`` value of a ``not_after`` rule that means the run's ingestion date (as_of)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldRules(_Strict):
    """Per-field options of the built-in rules.

    Attributes:
        strict: an unknown (never valid) GB/T 2260 region code rejects the row (default: it is
            an accuracy finding, 准确性, and the row passes).
        min_date: dates before it fail (``date`` element, and date-typed fields).
        allow_negative: amounts below zero pass (``amount``/``count`` elements).
        min_value, max_value: inclusive numeric range (准确性).
        value_set: allowed values (规范性).
        regex: a full-match pattern for string values (规范性, RE2 syntax of Arrow).
    """

    strict: bool | None = None
    min_date: date | None = None
    allow_negative: bool = False
    min_value: float | None = None
    max_value: float | None = None
    value_set: list[Any] | None = None
    regex: str | None = None


class ConsistencyRule(_Strict):
    """A cross-field rule (一致性 consistency).

    ``birth_date_matches_id``: the date in ``date_column`` equals the birth date inside the
    resident ID in ``id_column``. ``not_after``: ``column`` is no later than ``other`` (a date
    field, or ``ingestion_date`` = the run's date, which scores 时效性 timeliness).
    """

    check: Literal["birth_date_matches_id", "not_after"]
    id_column: str | None = None
    date_column: str | None = None
    column: str | None = None
    other: str | None = None


class StewardExpectation(BaseModel):
    """One GX expectation a steward wrote: ``expectation`` name, its GX arguments, a dimension."""

    model_config = ConfigDict(extra="allow", frozen=True)

    expectation: str
    dimension: str | None = None

    @property
    def kwargs(self) -> dict[str, Any]:
        """The GX arguments (every key but ``expectation`` and ``dimension``)."""
        return dict(self.model_extra or {})


class QualitySpec(_Strict):
    """The parsed ``quality`` section (see the module docstring)."""

    min_pass_rate: float = Field(default=0.95, ge=0.0, le=1.0)
    strict: bool = False
    fields: dict[str, FieldRules] = Field(default_factory=dict)
    consistency: list[ConsistencyRule] = Field(default_factory=list)
    expectations: list[StewardExpectation] = Field(default_factory=list)

    def field_rules(self, name: str) -> FieldRules:
        """Options of field ``name`` (defaults when the contract gives none)."""
        return self.fields.get(name) or FieldRules()

    def is_strict(self, name: str) -> bool:
        """Whether unknown region codes of field ``name`` reject the row."""
        s = self.field_rules(name).strict
        return self.strict if s is None else s


def _key(loc: tuple[Any, ...]) -> str:
    return ".".join(["quality", *(str(p) for p in loc)])


def quality_spec(contract: Contract) -> QualitySpec:
    """Parse ``contract.quality`` into a :class:`QualitySpec` (no GX check; see check_contract).

    Raises:
        ContractError: a key is unknown or has a wrong value (``quality.fields.x.min_date``).
    """
    q = contract.quality
    data = {"min_pass_rate": q.min_pass_rate, **(q.model_extra or {})}
    try:
        return QualitySpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        msg = (
            first["msg"]
            if first["type"] != "extra_forbidden"
            else f"unknown key {first['loc'][-1]!r}"
        )
        raise ContractError(msg, key=_key(first["loc"])) from exc


def _gx_expectation_class(name: str, key: str) -> type:
    from great_expectations.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.registry import get_expectation_impl

    try:
        return get_expectation_impl(name)
    except ExpectationNotFoundError as exc:
        raise ContractError(
            f"unknown Great Expectations expectation {name!r} (未知的质量规则)", key=key
        ) from exc


def check_contract(contract: Contract, *, path: str | None = None) -> None:
    """Check the ``quality`` section of a contract before any data moves (质量规则校验).

    Field names must be contract fields; steward expectations must be Great Expectations 1.x
    *row-level* (column map, column pair map, multicolumn map) expectations whose arguments GX
    accepts, on columns of the contract.

    Args:
        contract: the validated contract.
        path: the contract file, named in errors.

    Raises:
        ContractError: with ``key`` naming the culprit, e.g. ``quality.expectations.0.expectation``
            (unknown name), ``quality.expectations.0.min_valu`` (argument GX refuses),
            ``quality.fields.nope`` (no such field), ``quality.consistency.1.column``.
    """
    try:
        _check(contract)
    except ContractError as exc:
        if path is None or exc.path:
            raise
        msg = str(exc)
        if exc.key and msg.startswith(exc.key + ": "):
            msg = msg[len(exc.key) + 2 :]
        raise ContractError(msg, path=path, key=exc.key) from exc


def _check(contract: Contract) -> None:
    spec = quality_spec(contract)
    names = {f.name for f in contract.fields}
    for name in spec.fields:
        if name not in names:
            raise ContractError(
                f"{name!r} is not a field of the contract", key=f"quality.fields.{name}"
            )
    for i, rule in enumerate(spec.consistency):
        need = (
            ("id_column", "date_column")
            if rule.check == "birth_date_matches_id"
            else ("column", "other")
        )
        for attr in need:
            value = getattr(rule, attr)
            key = f"quality.consistency.{i}.{attr}"
            if value is None:
                raise ContractError(f"{rule.check} needs {attr}", key=key)
            if value not in names and not (attr == "other" and value == INGESTION_DATE):
                raise ContractError(f"{value!r} is not a field of the contract", key=key)
    if not spec.expectations:
        return
    from quality._gxenv import import_gx

    import_gx()  # before any great_expectations module (see quality._gxenv)
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )
    from pydantic.v1 import ValidationError as V1ValidationError

    import quality._gx  # noqa: F401  (registers the govdx expectation)

    for i, e in enumerate(spec.expectations):
        base = f"quality.expectations.{i}"
        if e.dimension is not None and e.dimension not in DIMENSION_ALIASES:
            raise ContractError(
                f"unknown dimension {e.dimension!r}; one of {sorted(d.value for d in Dimension)}",
                key=f"{base}.dimension",
            )
        cls = _gx_expectation_class(e.expectation, f"{base}.expectation")
        if not issubclass(
            cls, ColumnMapExpectation | ColumnPairMapExpectation | MulticolumnMapExpectation
        ):
            raise ContractError(
                f"{e.expectation!r} is not a row-level (map) expectation; only those can "
                "quarantine rows (仅支持逐行规则)",
                key=f"{base}.expectation",
            )
        try:
            cls(**e.kwargs)
        except (V1ValidationError, ValueError, TypeError) as exc:
            errors = exc.errors() if isinstance(exc, V1ValidationError) else []
            loc = errors[0]["loc"][0] if errors and errors[0]["loc"] else None
            msg = errors[0]["msg"] if errors else str(exc)
            key = f"{base}.{loc}" if loc and loc != "__root__" else base
            raise ContractError(f"{e.expectation}: {msg}", key=key) from exc
        for arg in ("column", "column_A", "column_B"):
            col = e.kwargs.get(arg)
            if col is not None and col not in names:
                raise ContractError(f"{col!r} is not a field of the contract", key=f"{base}.{arg}")
        for j, col in enumerate(e.kwargs.get("column_list") or []):
            if col not in names:
                raise ContractError(
                    f"{col!r} is not a field of the contract", key=f"{base}.column_list.{j}"
                )
