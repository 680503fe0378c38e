"""Job specs (作业描述): what a requester asks of a dataset, validated at the door.

A spec is YAML or JSON::

    requester: icbc_sz                  # optional; must be the submitting user
    purpose: 信贷审批前核验企业纳税记录   # 用途
    legal_basis: 企业授权书 2024-001      # 依据 (law, contract or consent the use rests on)
    dataset: SWJ-0001                    # catalog code (信息资源代码)
    version: current                     # Delta version to pin, or "current" (pinned at submit)
    computation:
      name: psi
      params: {column: taxpayer_id, max_items: 5000, reveal: false}
    inputs:
      request: psi-request.bin           # files the computation needs, relative to the spec

Every error names the file and the dotted key (``computation.params.max_items``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sandbox._errors import JobSpecError


class ComputationSpec(BaseModel):
    """The computation of a job: its registered ``name`` and its ``params`` (validated by the
    computation's own params model, see :mod:`sandbox._computations`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)


class JobSpec(BaseModel):
    """A validated job spec. Build with :func:`parse_job_spec` or :func:`load_job_spec`.

    Attributes:
        requester: the submitting user's name; None = whoever submits.
        purpose: 用途, at least 4 characters.
        legal_basis: 依据, at least 2 characters.
        dataset: catalog code of the dataset.
        version: Delta version to pin (≥ 0) or ``"current"``.
        computation: name and raw params (``params`` holds the validated model's dump).
        inputs: input name → file path (relative to the spec file).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    requester: str | None = Field(default=None, min_length=1, max_length=64)
    purpose: str = Field(min_length=4, max_length=2000)
    legal_basis: str = Field(min_length=2, max_length=2000)
    dataset: str = Field(min_length=1, max_length=64)
    version: int | Literal["current"] = "current"
    computation: ComputationSpec
    inputs: dict[str, str] = Field(default_factory=dict)

    @field_validator("version")
    @classmethod
    def _non_negative(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 0:
            raise ValueError("version must be ≥ 0 or 'current'")
        return v

    @property
    def params(self) -> BaseModel:
        """The computation's params as its validated model.

        Raises:
            JobSpecError: the computation is unknown.
        """
        from sandbox._computations import get_computation

        comp = get_computation(self.computation.name)
        if comp is None:
            raise JobSpecError(
                f"unknown computation {self.computation.name!r}", key="computation.name"
            )
        return comp.Params.model_validate(self.computation.params)


def _raise(exc: ValidationError, path: str | None, prefix: tuple[str, ...] = ()) -> None:
    def one(e: Any) -> tuple[str | None, str]:
        loc = (*prefix, *(str(p) for p in e["loc"]))
        if e["type"] == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r}"
        elif e["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = e["msg"]
        return ".".join(loc) or None, msg

    errors = [one(e) for e in exc.errors()[:20]]
    key, msg = errors[0]
    others = [f"{k}: {m}" for k, m in errors[1:6]]
    if others:  # every reason, not only the first
        more = len(exc.errors()) - 1 - len(others)
        msg += "; also " + "; ".join(others) + (f"; and {more} more" if more else "")
    raise JobSpecError(msg, path=path, key=key, errors=errors) from exc


def parse_job_spec(data: Any, *, path: str | Path | None = None) -> JobSpec:
    """Validate a parsed job spec mapping, including the computation's params.

    Args:
        data: the mapping (from YAML or JSON).
        path: the file it came from, for messages.

    Returns:
        The :class:`JobSpec`; ``computation.params`` holds the params model's JSON dump
        (defaults filled in).

    Raises:
        JobSpecError: naming the first offending key, e.g.
            ``job.yaml: computation.params.max_items: Input should be greater than 0``.
    """
    from sandbox._computations import get_computation

    where = str(path) if path is not None else None
    if not isinstance(data, dict):
        raise JobSpecError("a job spec must be a mapping (YAML/JSON object)", path=where)
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        _raise(exc, where)
    comp = get_computation(spec.computation.name)
    if comp is None:
        from sandbox._computations import computation_names

        raise JobSpecError(
            f"unknown computation {spec.computation.name!r} (known: {computation_names()})",
            path=where,
            key="computation.name",
        )
    try:
        params = comp.Params.model_validate(spec.computation.params)
    except ValidationError as exc:
        _raise(exc, where, ("computation", "params"))
    missing = sorted(set(comp.required_inputs) - set(spec.inputs))
    if missing:
        raise JobSpecError(
            f"computation {comp.name!r} needs input file(s) {missing}",
            path=where,
            key=f"inputs.{missing[0]}",
        )
    extra = sorted(set(spec.inputs) - set(comp.required_inputs))
    if extra:
        raise JobSpecError(
            f"unknown input {extra[0]!r} for computation {comp.name!r}",
            path=where,
            key=f"inputs.{extra[0]}",
        )
    computation = ComputationSpec(name=comp.name, params=params.model_dump(mode="json"))
    return spec.model_copy(update={"computation": computation})


def load_job_spec(path: str | Path) -> JobSpec:
    """Load a job spec from a YAML (``.yaml``/``.yml``) or JSON file; input paths are made
    absolute against the spec's folder.

    Raises:
        JobSpecError: unreadable file, bad YAML/JSON, or an invalid key (named).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise JobSpecError("job spec file not found", path=str(p)) from exc
    except UnicodeDecodeError as exc:
        raise JobSpecError(f"job spec is not UTF-8 ({exc.reason})", path=str(p)) from exc
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise JobSpecError(
            f"not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {exc}", path=str(p)
        ) from exc
    spec = parse_job_spec(data, path=p)
    base = p.resolve().parent
    inputs = {
        k: str((base / v).resolve()) if not Path(v).is_absolute() else v
        for k, v in spec.inputs.items()
    }
    return spec.model_copy(update={"inputs": inputs})
