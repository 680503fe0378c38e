"""Homomorphic sums in the sandbox (同态求和): ``psi_sum`` and ``he_sum``. Protocols: docs/he.md.

* ``psi_sum`` — private intersection-sum-with-cardinality (Ion et al., EuroS&P 2020), department
  side. Two jobs: ``phase: join`` (input ``request`` = the requester's blinded set; result = the
  re-blinded set, the department's blinded ids with their values encrypted under a fresh
  department Paillier key) and ``phase: reveal`` (input ``request`` = the requester's masked
  encrypted sum; result = its decryption ``S + ρ mod n``, uniform to the department). The
  department key lives in ``<job>/state/psi_sum.json`` (0600) of the join job and is deleted
  after the one reveal it allows.
* ``he_sum`` — grouped encrypted totals: per-group partial sums of a numeric column, groups under
  ``min_group_size_k`` suppressed, each partition's partial vector packed and encrypted under the
  requester's Paillier public key (a job param), the partials added as ciphertexts; the
  requester decrypts with ``govdx client decrypt``.

Values are exact integers in fixed-point units: a ``decimal(p, s)`` column is read as integers of
``10^-s`` of its unit (``tax_paid`` decimal(18,2) 元 → fen); ``integer`` columns as is. Bad input
(a short or malformed key, a non-numeric or not-allowed value column, a group-by on an identifier
or protected field, a set or cohort under k) is refused before any encryption starts.
"""

from __future__ import annotations

import json
import os
import re
from decimal import Decimal
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator

from govdx._contract import Contract
from sandbox._computations import (
    Computation,
    Output,
    RunContext,
    _field_or_reason,
    register_computation,
)
from sandbox._errors import RunError

__all__ = ["HeSum", "HeSumParams", "PsiSum", "PsiSumParams", "decrypt_he_sum", "fixed_point_ints"]

_NUMERIC = {"integer", "decimal"}
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
STATE_DIR = "state"
STATE_FILE = "psi_sum.json"
#: media types of the results
MEDIA_PSI_SUM = "application/x-govdx-psi-sum"
MEDIA_HE_SUM = "application/json"


def fixed_point_ints(arr: pa.Array | pa.ChunkedArray, scale: int) -> list[int | None]:
    """Exact integers of a numeric column in units of ``10^-scale`` (no float on the way).

    Args:
        arr: pyarrow integer or decimal array[n].
        scale: the field's decimal scale (0 for integers).

    Returns:
        list[n] of int (None for nulls).

    Raises:
        RunError: a value that is not a whole number of units, or a non-numeric array.
    """
    t = arr.type
    if pa.types.is_integer(t):
        return arr.to_pylist()
    if not pa.types.is_decimal(t):
        raise RunError(f"value column of type {t} is not numeric (数值列类型错误)")
    out: list[int | None] = []
    for d in arr.to_pylist():
        if d is None:
            out.append(None)
            continue
        v = Decimal(d).scaleb(scale)
        if v != v.to_integral_value():
            raise RunError(f"a value has more than {scale} decimal places (精度超出)")
        out.append(int(v))
    return out


def _value_checks(contract: Contract, policy: Any, column: str, key: str) -> list[str]:
    f, reasons = _field_or_reason(contract, column, key)
    if f is None:
        return reasons
    if f.type.value not in _NUMERIC:
        reasons.append(f"{key}: {column!r} is {f.type.value}, not a number (数值列)")
    allowed = policy.sum_columns or []
    if column not in allowed:
        reasons.append(
            f"{key}: summing {column!r} is not allowed on {contract.code} "
            f"(sandbox.sum_columns: {allowed})"
        )
    return reasons


def _scale(contract: Contract, column: str) -> int:
    f = contract.field(column)
    return f.scale if f.type.value == "decimal" else 0


def _unit(contract: Contract, column: str) -> str | None:
    return contract.field(column).unit


# --- psi_sum --------------------------------------------------------------------------------------
class PsiSumParams(BaseModel):
    """Params of ``psi_sum``.

    Attributes:
        phase: ``join`` (first job) or ``reveal`` (second job, names ``join_job``).
        column: the dataset's identifier column (as for ``psi``).
        value_column: the numeric column summed (in ``sandbox.sum_columns``).
        max_items: the requester's set size bound (items).
        key_bits: the department's fresh Paillier modulus, 2048 or 3072 bits.
        join_job: reveal phase: id of the join job whose key decrypts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    phase: Literal["join", "reveal"] = "join"
    column: str = Field(min_length=1)
    value_column: str = Field(min_length=1)
    max_items: int = Field(gt=0)
    key_bits: Literal[2048, 3072] = 2048
    join_job: str | None = None

    @field_validator("join_job")
    @classmethod
    def _job_id(cls, v: str | None) -> str | None:
        if v is not None and not _JOB_ID.match(v):
            raise ValueError("join_job must be a sandbox job id")
        return v


@register_computation
class PsiSum(Computation):
    """Private intersection-sum-with-cardinality (隐私求交求和), department side (docs/he.md)."""

    name = "psi_sum"
    kind = "psi"
    Params = PsiSumParams
    required_inputs = frozenset({"request"})

    @classmethod
    def check(cls, params: PsiSumParams, contract: Contract, policy: Any) -> list[str]:
        from sandbox._policy import IDENTIFIER_ELEMENTS

        reasons: list[str] = []
        f, r = _field_or_reason(contract, params.column, "computation.params.column")
        reasons += r
        if f is not None:
            allowed = policy.psi_columns
            if allowed is None:
                allowed = [x.name for x in contract.fields if x.element in IDENTIFIER_ELEMENTS]
            if params.column not in allowed:
                reasons.append(
                    f"computation.params.column: PSI is not allowed on column {params.column!r} "
                    f"of {contract.code} (allowed: {allowed})"
                )
        reasons += _value_checks(
            contract, policy, params.value_column, "computation.params.value_column"
        )
        if params.max_items > policy.psi_max_items:
            reasons.append(
                f"computation.params.max_items: {params.max_items} items exceeds the cap of "
                f"{policy.psi_max_items} (sandbox.psi_max_items, 求交集合规模上限)"
            )
        if params.phase == "reveal" and params.join_job is None:
            reasons.append("computation.params.join_job: the reveal phase names its join job")
        if params.phase == "join" and params.join_job is not None:
            reasons.append("computation.params.join_job: only the reveal phase names a join job")
        return reasons

    @classmethod
    def check_quota(cls, params: PsiSumParams, policy: Any, usage: Any) -> list[str]:
        if params.phase == "join" and usage.psi_items + params.max_items > policy.psi_items_per_day:
            return [
                f"quota: {usage.psi_items} + {params.max_items} PSI items in 24 h exceeds "
                f"sandbox.psi_items_per_day = {policy.psi_items_per_day} (求交配额)"
            ]
        return []

    @classmethod
    def columns(cls, params: PsiSumParams, contract: Contract) -> list[str]:
        return [params.column, params.value_column] if params.phase == "join" else []

    @classmethod
    def check_inputs(cls, params: PsiSumParams, inputs: dict[str, bytes]) -> list[str]:
        from privacy._blind import KIND_UNMASK_REQUEST, JoinRequest, PsiError, pisum_unpack

        data = inputs["request"]
        try:
            if params.phase == "reveal":
                pisum_unpack(data, KIND_UNMASK_REQUEST, "PSI-sum unmask request")
                return []
            request = JoinRequest.from_bytes(data)
        except PsiError as exc:
            return [f"inputs.request: not a well-formed PSI-sum {params.phase} message ({exc})"]
        if len(request.points) > params.max_items:
            return [
                f"inputs.request: the request holds {len(request.points)} items, more than "
                f"computation.params.max_items = {params.max_items}"
            ]
        return []

    @classmethod
    def run(cls, ctx: RunContext) -> Output:
        p: PsiSumParams = ctx.params
        if p.phase == "reveal":
            return cls._reveal(ctx)
        return cls._join(ctx)

    @classmethod
    def _join(cls, ctx: RunContext) -> Output:
        from privacy._blind import JoinRequest, pisum_join
        from privacy._digest import sm3_hex
        from privacy._psi import PSI_ELEMENTS

        p: PsiSumParams = ctx.params
        request = JoinRequest.from_bytes(ctx.inputs["request"].read_bytes())
        cap = min(p.max_items, ctx.policy.psi_max_items)
        n_items = len(request.points)
        if n_items > cap:
            raise RunError(f"PSI-sum request holds {n_items} items, over the cap of {cap}")
        k = ctx.policy.min_group_size_k
        if n_items < k:
            raise RunError(
                f"PSI-sum request holds {n_items} items, under sandbox.min_group_size_k = {k}: "
                "a sum over so few could be one taxpayer's value (集合规模低于 k)"
            )
        element = ctx.contract.field(p.column).element
        element = element if element in PSI_ELEMENTS else "identifier"
        if request.element != element:
            raise RunError(
                f"PSI-sum request was normalized as {request.element!r}, column {p.column!r} is "
                f"{element!r}; create it with --element {element}"
            )
        ids, values = _per_identifier_sums(ctx, p.column, p.value_column, element)
        response, sk = pisum_join(
            request,
            ids,
            values,
            key_bits=p.key_bits,
            processes=2,
            scale=_scale(ctx.contract, p.value_column),
            unit=_unit(ctx.contract, p.value_column),
        )
        data = response.to_bytes()
        jdir = ctx.inputs["request"].parent.parent
        state = jdir / STATE_DIR
        state.mkdir(mode=0o700, exist_ok=True)
        doc = {
            "dataset": ctx.contract.code,
            "join_sm3": sm3_hex(data),
            "key": sk.to_dict(),
        }
        fd = os.open(state / STATE_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
        return Output(
            data,
            MEDIA_PSI_SUM,
            summary={"phase": "join", "client_items": n_items, "key_bits": p.key_bits},
        )

    @classmethod
    def _reveal(cls, ctx: RunContext) -> Output:
        from privacy._blind import PsiError, pisum_unmask
        from privacy._paillier import HeError, PrivateKey

        p: PsiSumParams = ctx.params
        assert p.join_job is not None
        root = ctx.inputs["request"].parent.parent.parent
        path = root / p.join_job / STATE_DIR / STATE_FILE
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunError(
                f"join job {p.join_job}: no PSI-sum key (not a psi_sum join, or already "
                "revealed: one reveal per join, 每次求交仅可解密一次)"
            ) from exc
        if doc.get("dataset") != ctx.contract.code:
            raise RunError(f"join job {p.join_job} ran on another dataset")
        try:
            sk = PrivateKey.from_dict(doc["key"])
            data = pisum_unmask(ctx.inputs["request"].read_bytes(), sk, doc["join_sm3"])
        except (PsiError, HeError, KeyError) as exc:
            raise RunError(f"PSI-sum reveal refused: {exc}") from exc
        path.unlink()  # one decryption per join: the key is gone
        return Output(data, MEDIA_PSI_SUM, summary={"phase": "reveal", "join_job": p.join_job})


def _canonical(arr: pa.Array, element: str) -> pa.Array:
    """Per-row canonical identifiers (the normalization of privacy.normalize_identifiers,
    without de-duplication); invalid or empty rows become null."""
    import numpy as np

    from privacy._psi import _STRIP_RE, _check_element

    arr = pc.cast(arr, pa.string())
    stripped = pc.replace_substring_regex(
        pc.utf8_normalize(arr, form="NFKC"), pattern=_STRIP_RE, replacement=""
    )
    norm = pc.utf8_normalize(pc.utf8_upper(stripped), form="NFKC")
    lengths = pc.fill_null(pc.utf8_length(norm), 0).to_numpy(zero_copy_only=False)
    present = lengths > 0
    ok = present.copy()
    if element != "identifier" and present.any():
        ok, _ = _check_element(norm, lengths, present, element)
    return pc.if_else(pa.array(np.asarray(ok)), norm, pa.scalar(None, pa.string()))


def _per_identifier_sums(
    ctx: RunContext, column: str, value_column: str, element: str
) -> tuple[list[str], list[int]]:
    """Distinct canonical identifiers and the exact sum of their rows' values (fixed point)."""
    col = ctx.table[column]
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    vals = ctx.table[value_column]
    vals = vals.combine_chunks() if isinstance(vals, pa.ChunkedArray) else vals
    ids = _canonical(col, element)
    keep = pc.and_(pc.is_valid(ids), pc.is_valid(vals))
    t = pa.table({"id": ids, "v": _exact(vals)}).filter(keep)
    g = t.group_by("id").aggregate([("v", "sum")])
    scale = _scale(ctx.contract, value_column)
    return g["id"].to_pylist(), [int(x) for x in fixed_point_ints(_unexact(g["v_sum"]), scale)]


def _exact(vals: pa.Array) -> pa.Array:
    """Widen to decimal128(38, s) so group sums cannot overflow int64."""
    if pa.types.is_integer(vals.type):
        return pc.cast(vals, pa.decimal128(38, 0))
    if pa.types.is_decimal(vals.type):
        return pc.cast(vals, pa.decimal128(38, vals.type.scale))
    raise RunError(f"value column of type {vals.type} is not numeric (数值列类型错误)")


def _unexact(arr: pa.ChunkedArray | pa.Array) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


# --- he_sum ---------------------------------------------------------------------------------------
class HeSumParams(BaseModel):
    """Params of ``he_sum``.

    Attributes:
        value_column: the numeric column summed (in ``sandbox.sum_columns``).
        group_by: 0–2 non-identifying columns.
        public_key: the requester's Paillier public key, JSON (``govdx client keygen``).
        partitions: partial vectors the rows are split into (one per department worker or
            partition); each is encrypted on its own and the aggregator adds the ciphertexts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    value_column: str = Field(min_length=1)
    group_by: list[str] = Field(default_factory=list, max_length=2)
    public_key: str = Field(min_length=1, max_length=20_000)
    partitions: int = Field(default=1, ge=1, le=64)


@register_computation
class HeSum(Computation):
    """Grouped encrypted totals (分组密文求和) under the requester's Paillier key (docs/he.md)."""

    name = "he_sum"
    kind = "aggregate"
    Params = HeSumParams

    @classmethod
    def check(cls, params: HeSumParams, contract: Contract, policy: Any) -> list[str]:
        from privacy._paillier import HeKeyError, PublicKey
        from sandbox._policy import IDENTIFIER_ELEMENTS

        reasons: list[str] = []
        try:
            PublicKey.from_json(params.public_key, what="computation.params.public_key")
        except HeKeyError as exc:
            reasons.append(str(exc))
        for i, col in enumerate(params.group_by):
            key = f"computation.params.group_by.{i}"
            f, r = _field_or_reason(contract, col, key)
            reasons += r
            if f is not None and (
                f.element in IDENTIFIER_ELEMENTS or contract.primary_key == [col] or f.protected
            ):
                reasons.append(
                    f"{key}: may not group by {col!r} (identifier, key or protected field; "
                    "groups would be single rows)"
                )
        reasons += _value_checks(
            contract, policy, params.value_column, "computation.params.value_column"
        )
        return reasons

    @classmethod
    def columns(cls, params: HeSumParams, contract: Contract) -> list[str]:
        return [*params.group_by, params.value_column]

    @classmethod
    def run(cls, ctx: RunContext) -> Output:
        from privacy._paillier import EncryptedVector, HeError, PublicKey

        p: HeSumParams = ctx.params
        k = ctx.policy.min_group_size_k
        pk = PublicKey.from_json(p.public_key)
        table = ctx.table.filter(pc.is_valid(ctx.table[p.value_column]))
        if table.num_rows < k:
            raise RunError(
                f"cohort of {table.num_rows} rows is under sandbox.min_group_size_k = {k} "
                "(群体规模低于 k); nothing was encrypted"
            )
        scale = _scale(ctx.contract, p.value_column)
        exact = table.set_column(
            table.schema.get_field_index(p.value_column),
            p.value_column,
            _exact(_unexact(table[p.value_column])),
        )
        counts = _group(exact, p.group_by, None)
        released = counts.filter(pc.greater_equal(counts["n"], k))
        suppressed = counts.num_rows - released.num_rows
        released = (
            released.sort_by([(c, "ascending") for c in p.group_by]) if p.group_by else released
        )
        released = released.slice(0, ctx.policy.max_output_rows)
        keys = [tuple(r[c] for c in p.group_by) for r in released.select(p.group_by).to_pylist()]
        index = {key: i for i, key in enumerate(keys)}
        # partial vectors: one per partition (as separate department workers would produce)
        rows = exact.num_rows
        step = -(-rows // p.partitions)
        total: EncryptedVector | None = None
        try:
            for start in range(0, rows, step):
                part = _group(exact.slice(start, step), p.group_by, p.value_column)
                vec = [0] * len(keys)
                sums = fixed_point_ints(_unexact(part["s"]), scale)
                for r, s in zip(part.select(p.group_by).to_pylist(), sums, strict=True):
                    i = index.get(tuple(r[c] for c in p.group_by))
                    if i is not None and s is not None:
                        vec[i] = s
                enc = EncryptedVector.encrypt(vec, pk, processes=2)
                total = enc if total is None else total + enc  # the aggregator's addition
        except HeError as exc:
            raise RunError(f"he_sum: {exc}") from exc
        assert total is not None
        doc = {
            "format": "govdx-he-sum",
            "group_by": p.group_by,
            "groups": [list(key) for key in keys],
            "n": released["n"].to_pylist(),
            "k": k,
            "suppressed_groups": suppressed,
            "value_column": p.value_column,
            "scale": scale,
            "unit": _unit(ctx.contract, p.value_column),
            "sums": total.to_dict(),
        }
        data = json.dumps(doc, ensure_ascii=False, sort_keys=True).encode("utf-8")
        return Output(
            data,
            MEDIA_HE_SUM,
            table=released.select([*p.group_by, "n"]),
            summary={
                "groups": len(keys),
                "suppressed_groups": suppressed,
                "partitions": total.terms,
                "ciphertexts": len(total.ciphertexts),
                "key_fingerprint": pk.fingerprint,
            },
        )


def _group(table: pa.Table, by: list[str], value: str | None) -> pa.Table:
    aggs: list[tuple[Any, ...]] = [([], "count_all")]
    if value is not None:
        aggs.append((value, "sum"))
    if table.num_rows == 0:
        cols = {c: pa.array([], table[c].type) for c in by}
        cols["n"] = pa.array([], pa.int64())
        if value is not None:
            cols["s"] = pa.array([], table[value].type)
        return pa.table(cols)
    out = table.group_by(by, use_threads=False).aggregate(aggs)
    names = {"count_all": "n", f"{value}_sum": "s"}
    return out.rename_columns([names.get(c, c) for c in out.column_names])


def decrypt_he_sum(doc: dict[str, Any] | bytes, sk: Any) -> dict[str, Any]:
    """The requester's decryption of an ``he_sum`` result (``govdx client decrypt``).

    Args:
        doc: the released JSON (bytes or parsed).
        sk: the requester's :class:`privacy._paillier.PrivateKey`.

    Returns:
        ``{"columns": [*group_by, "n", "sum"], "rows": [...], "scale", "unit",
        "suppressed_groups"}`` with exact integer sums in units of ``10^-scale``.

    Raises:
        privacy.HeError: another key, tampered ciphertexts (out-of-range plaintexts).
        ValueError: not an he_sum result.
    """
    from privacy._paillier import EncryptedVector

    if isinstance(doc, (bytes, bytearray)):
        doc = json.loads(doc)
    if not isinstance(doc, dict) or doc.get("format") != "govdx-he-sum":
        raise ValueError("not a govdx he_sum result")
    vec = EncryptedVector.from_dict(doc["sums"])
    sums = vec.decrypt(sk)
    if len(sums) != len(doc["groups"]):
        raise ValueError("he_sum result: group count does not match the sums")
    rows = [[*g, n, s] for g, n, s in zip(doc["groups"], doc["n"], sums, strict=True)]
    return {
        "columns": [*doc["group_by"], "n", "sum"],
        "rows": rows,
        "scale": doc["scale"],
        "unit": doc["unit"],
        "suppressed_groups": doc["suppressed_groups"],
    }
