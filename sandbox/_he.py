"""Homomorphic sums in the sandbox (同态求和): ``psi_sum`` and ``he_sum``. Protocols: docs/he.md.

* ``psi_sum`` — private intersection-sum-with-cardinality (Ion et al., EuroS&P 2020), department
  side. Two jobs: ``phase: join`` (input ``request`` = the requester's blinded set; result = the
  re-blinded set, the department's blinded ids with their values encrypted under a fresh
  department Paillier key) and ``phase: reveal`` (input ``request`` = the requester's masked
  encrypted sum; result = its decryption ``S + ρ + η mod n``, where η is discrete Laplace noise
  drawn by OpenDP, so the requester learns ``S + η``: ε-differentially private per privacy
  unit, ε charged to the (requester, dataset) DP ledger at the reveal). Before encryption the
  join sums each taxpayer's rows into one value and clamps it to ``sandbox.dp.bounds`` (差分
  隐私: 每纳税人贡献有界). The department key comes from a single-use pack of the key stock
  (``sandbox._he_stock``, 密钥储备: key + obfuscators made ahead, one modular multiplication per
  value) when one is there, else it is generated in the job (CRT obfuscators on 2 processes);
  the summary says which (``key_source``). It lives in ``<job>/state/psi_sum.json`` (0600) of
  the join job and is deleted after the one reveal it allows.
* ``he_sum`` — grouped encrypted totals: per-group partial sums of a numeric column, groups under
  ``min_group_size_k`` suppressed, each partition's partial vector packed and encrypted under the
  requester's Paillier public key (a job param), the partials added as ciphertexts; the
  requester decrypts with ``govdx client decrypt``.
* ``he_cohort`` — ``he_sum`` over the rows of the private intersection with the requester's
  blinded set (two jobs: ``phase: offer`` releases the dataset's ``H(y)^b``; the requester
  re-blinds them (:func:`cohort_reply`); ``phase: sum`` marks the matched rows, refuses a cohort
  under k and encrypts the grouped totals). The sandbox learns which rows matched, so it needs
  ``sandbox.psi_keep_cohort_allowed`` (docs/he.md "Cohorts: why and how"). On a contract with
  ``sandbox.dp`` the sum phase takes ``epsilon`` (required there, refused elsewhere): each
  taxpayer's rows are summed per group and clamped to ``sandbox.dp.bounds``
  (:func:`bounded_totals`), and OpenDP discrete Laplace noise (ε/2 on the totals, ε/2 on the
  unit counts; :class:`CohortDp`) is added before encryption, ε charged to the (requester,
  dataset) ledger as psi_sum's reveal; without ``sandbox.dp`` the totals stay exact.

Values are exact integers in fixed-point units: a ``decimal(p, s)`` column is read as integers of
``10^-s`` of its unit (``tax_paid`` decimal(18,2) 元 → fen); ``integer`` columns as is. Bad input
(a short or malformed key, a non-numeric or not-allowed value column, a group-by on an identifier
or protected field, a set or cohort under k) is refused before any encryption starts.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from govdx._contract import Contract
from govdx._errors import GovdxError
from privacy._blind import KIND_UNMASK_REQUEST, ClientState
from sandbox._computations import (
    Computation,
    Output,
    RunContext,
    _field_or_reason,
    psi_quota_reasons,
    psi_set_reasons,
    register_computation,
)
from sandbox._errors import PolicyRefused, RunError
from sandbox._ledger import Charge, LedgerHooks

__all__ = [
    "BoundedTotals",
    "CohortClient",
    "CohortDp",
    "HeCohort",
    "HeCohortParams",
    "HeSum",
    "HeSumParams",
    "PsiSum",
    "PsiSumParams",
    "bounded_totals",
    "clamp_ints",
    "cohort_reply",
    "decrypt_he_sum",
    "fixed_point_ints",
    "he_cohort_noise",
    "psi_sum_noise",
    "sum_sensitivity",
]

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


def _epsilon_text(v: Any) -> str | None:
    """An ε param as exact text (``"1/2"``), or None; ValueError (pydantic) when not > 0."""
    from privacy._dp import DpError, fraction_text, parse_budget

    if v is None:
        return None
    try:
        return fraction_text(parse_budget(v, key="epsilon"))
    except DpError as exc:
        raise ValueError(str(exc).removeprefix("epsilon: ")) from None


def _job_ref(v: str | None) -> str | None:
    """A param naming another sandbox job (``join_job``, ``offer_job``); ValueError if malformed."""
    if v is not None and not _JOB_ID.match(v):
        raise ValueError("must be a sandbox job id")
    return v


#: an ε param as exact text (``"1/2"``) or None (:func:`privacy._dp.parse_budget`)
EpsilonText = Annotated[str | None, BeforeValidator(_epsilon_text)]
#: a param naming another sandbox job, or None
JobRef = Annotated[str | None, AfterValidator(_job_ref)]


# --- psi_sum --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Link:
    """How the second job of a two-job protocol names its first (psi_sum's reveal → join,
    he_cohort's sum → offer).

    Attributes:
        param: the param naming the first job (``join_job``, ``offer_job``).
        first, second: the two phases. same: params that must equal the first job's.
        verb_zh: the one-use rule in Chinese, for the refusal (``每次求交仅可解密一次``).
        consumed_on_start: the first job's state is deleted as soon as a second job runs,
            whatever its outcome (he_cohort), not only on success (psi_sum).
    """

    param: str
    first: str
    second: str
    same: tuple[str, ...]
    verb_zh: str
    consumed_on_start: bool
    #: the second phase's request: its message kind, the header field naming the first job's
    #: output (SM3), and the first job's state file holding the same SM3
    request_kind: int = 0
    sm3_field: str = ""
    state_file: str = ""


#: second-phase jobs in these states never used (and never will use) their first job
_UNUSED_STATES = frozenset({"rejected", "cancelled", "expired"})


@contextmanager
def _first_job_lock(state_file: Path, link: _Link, first_job: str) -> Iterator[None]:
    """Hold the first job's state exclusively while one second-phase job reads and deletes it.

    The submit check (:func:`_link_reasons`) reads the job table, so two second-phase jobs
    submitted at the same moment can both pass it; this ``flock`` (advisory, dropped by the
    kernel if the worker dies) makes the worker's read-use-delete of the state one step, so of
    two concurrent reveals (sums) of one join (offer) only one ever sees the key.

    Args:
        state_file: the first job's state file (``<job>/state/psi_sum.json`` or
            ``he_cohort.json``); the lock is ``<state_file>.lock`` beside it.
        link: the protocol's link (names the phases in the refusal).
        first_job: the first job's id, for the refusal.

    Raises:
        RunError: another second-phase job of ``first_job`` holds the lock (正在使用).
    """
    try:
        fd = os.open(state_file.with_name(state_file.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except FileNotFoundError:  # no state folder: the read that follows names the reason
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RunError(
                f"{link.param} {first_job}: another {link.second} job of this {link.first} is "
                f"running (正在使用); {link.verb_zh}"
            ) from exc
        yield
    finally:
        os.close(fd)


def _link_reasons(
    s: Any, link: _Link, *, computation: str, job_id: str, requester: str, code: str, params: Any
) -> list[str]:
    """Why the first job a second-phase job names cannot be used (pure DB reads; docs/he.md).

    The named job must exist, be submitted by the same requester, be a ``computation`` job of
    phase ``link.first`` on dataset ``code`` in state succeeded or released, agree on
    ``link.same``, and have no other second-phase job naming it that is not rejected, cancelled
    or expired (for ``consumed_on_start``: nor one that ever started). The worker checks the
    state file again.

    Returns:
        list of reasons (empty: usable), each naming the job id and the param.
    """
    from sqlalchemy import select

    from sandbox._models import Job
    from sandbox._states import STATE_ZH

    linked = getattr(params, link.param)
    if linked is None:  # check() already refused
        return []
    key = f"computation.params.{link.param}"
    what = f"{computation} {link.first}"
    job = s.get(Job, linked)
    if job is None:
        return [f"{key}: there is no job {linked} (作业不存在)"]
    if job.requester != requester:
        return [
            f"{key}: job {linked} was submitted by another requester; only its own requester "
            f"may {link.second} it (只能使用本人提交的作业)"
        ]
    first = json.loads(job.spec_json)["computation"]["params"]
    if job.computation != computation or first.get("phase", link.first) != link.first:
        phase = f" of phase {first['phase']!r}" if first.get("phase") else ""
        return [
            f"{key}: job {linked} is a {job.computation} job{phase}, not a {what} (作业类型不符)"
        ]
    reasons = []
    if job.dataset_code != code:
        reasons.append(f"{key}: {what} job {linked} ran on dataset {job.dataset_code}, not {code}")
    if job.state not in ("succeeded", "released"):
        reasons.append(
            f"{key}: {what} job {linked} is {job.state} ({STATE_ZH.get(job.state, '')}); the "
            f"{link.second} phase needs it succeeded or released (已完成)"
        )
    for k in link.same:
        if first.get(k) != getattr(params, k):
            reasons.append(
                f"computation.params.{k}: {getattr(params, k)!r} is not the {what} job "
                f"{linked}'s {first.get(k)!r}"
            )
    rows = s.execute(
        select(Job.id, Job.state, Job.attempts, Job.spec_json).where(
            Job.computation == computation,
            Job.id != job_id,
            Job.spec_json.contains(linked, autoescape=True),
        )
    ).all()
    for other, state, attempts, spec in rows:
        p = json.loads(spec)["computation"]["params"]
        if p.get("phase") != link.second or p.get(link.param) != linked:
            continue
        if state in _UNUSED_STATES and not (link.consumed_on_start and attempts):
            continue
        if state == "failed" and not link.consumed_on_start:
            hint = "; cancel it first if it failed"
        elif link.consumed_on_start and attempts:
            hint = f"; it started, which consumes the {link.first} whatever its outcome"
        else:
            hint = ""
        reasons.append(
            f"{key}: {what} job {linked} already has {link.second} job {other} ({state}); one "
            f"{link.second} per {link.first} ({link.verb_zh}){hint}"
        )
    return reasons


class _EpsilonHooks(LedgerHooks):
    """Ledger hooks of a computation one of whose phases spends ε (psi_sum's reveal, an
    he_cohort sum under ``sandbox.dp``), called by the service in its transactions: reserve at
    submit, draw at run start, spend at release, return or forfeit on abandon
    (:class:`sandbox._ledger.LedgerHooks`, the same life cycle as ``dp_query``, docs/dp.md). At
    submit the second phase's first job is checked first (:func:`_link_reasons`, for every
    second-phase job, ε or not). Subclasses set :attr:`STATISTIC`, :attr:`LINK` and
    :meth:`spends_epsilon`.
    """

    STATISTIC: ClassVar[str]
    LINK: ClassVar[_Link]
    name: ClassVar[str]

    @classmethod
    def check_linked_inputs(cls, box: Any, params: Any, inputs: dict[str, bytes]) -> list[str]:
        """At submit: the second phase's request answers the first job it names — the SM3 in
        its header (``join_sm3`` / ``offer_sm3``) equals the one kept in that job's state. A
        request made for another join or offer is refused before approval, so it cannot burn
        the one-use first job or its ε in the worker (which checks again).

        Args:
            box: the :class:`sandbox.Sandbox` (``job_dir``). params: the job's params.
            inputs: input name → bytes.

        Returns:
            list of reasons (empty: it matches, or the first job's state is gone — the link
            check names that).
        """
        link = cls.LINK
        linked = getattr(params, link.param, None)
        if getattr(params, "phase", None) != link.second or not linked or not link.sm3_field:
            return []
        from privacy._blind import pisum_unpack
        from privacy._psi import PsiError

        try:
            header, _ = pisum_unpack(inputs["request"], link.request_kind, "request")
            doc = json.loads(
                (box.job_dir(linked) / STATE_DIR / link.state_file).read_text(encoding="utf-8")
            )
        except (PsiError, KeyError, OSError, ValueError):
            return []  # a malformed request is check_inputs' refusal; a missing state, the link's
        if header.get(link.sm3_field) != doc.get(link.sm3_field):
            return [
                f"inputs.request: this {link.second} request answers another {link.first} than "
                f"job {linked} (its {link.sm3_field} differs); make it from job {linked}'s "
                "result with the state of the same request (请求与作业不匹配)"
            ]
        return []

    @classmethod
    def spends_epsilon(cls, params: Any, contract: Contract) -> bool:
        """Whether this job spends ``params.epsilon``; raises PolicyRefused on bad DP terms."""
        raise NotImplementedError

    @classmethod
    def charge(cls, params: Any, contract: Contract) -> Charge | None:
        """``params.epsilon`` (δ = 0, discrete Laplace) when :meth:`spends_epsilon`, else None.

        Raises:
            PolicyRefused: the DP terms are refused.
        """
        if not cls.spends_epsilon(params, contract):
            return None
        from sandbox._dp import MECHANISM_LAPLACE, dp_policy

        dp = dp_policy(contract)
        assert dp is not None and params.epsilon is not None
        return Charge(
            Fraction(params.epsilon),
            Fraction(0),
            dp.epsilon_cap_q,
            dp.delta_cap_q,
            MECHANISM_LAPLACE,
            cls.STATISTIC,
        )

    @classmethod
    def on_submit(
        cls,
        s: Any,
        *,
        job_id: str,
        requester: str,
        contract: Contract,
        params: Any,
        now: Any = None,
    ) -> Any:
        """Check the first job a second-phase job names, then reserve ε (δ = 0) on the
        (requester, dataset) DP ledger; None when nothing is spent.

        Raises:
            PolicyRefused: the named first job is missing, another requester's, of another
                dataset or computation, not succeeded, or already used (:func:`_link_reasons`);
                the DP terms. BudgetExceeded: with the remaining budget.
        """
        if params.phase == cls.LINK.second:
            reasons = _link_reasons(
                s,
                cls.LINK,
                computation=cls.name,
                job_id=job_id,
                requester=requester,
                code=contract.code,
                params=params,
            )
            if reasons:
                raise PolicyRefused(reasons)
        return super().on_submit(
            s, job_id=job_id, requester=requester, contract=contract, params=params, now=now
        )


class PsiSumParams(BaseModel):
    """Params of ``psi_sum``.

    Attributes:
        phase: ``join`` (first job) or ``reveal`` (second job, names ``join_job``).
        column: the dataset's identifier column (as for ``psi``).
        value_column: the numeric column summed (in ``sandbox.sum_columns``).
        max_items: the requester's set size bound (items).
        key_bits: the department's fresh Paillier modulus, 2048 or 3072 bits.
        join_job: reveal phase: id of the join job whose key decrypts.
        epsilon: reveal phase: ε spent on the noisy sum, exact text (``"1/2"``), ≤
            ``sandbox.dp.per_query_epsilon_max``; charged to the (requester, dataset) ledger.
        confidence: reveal phase: level of the released noise interval (0.5–0.999).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    phase: Literal["join", "reveal"] = "join"
    column: str = Field(min_length=1)
    value_column: str = Field(min_length=1)
    max_items: int = Field(gt=0)
    key_bits: Literal[2048, 3072] = 2048
    join_job: JobRef = None
    epsilon: EpsilonText = None
    confidence: float = Field(default=0.95, ge=0.5, le=0.999)


@register_computation
class PsiSum(_EpsilonHooks, Computation):
    """Private intersection-sum-with-cardinality (隐私求交求和), department side (docs/he.md)."""

    name = "psi_sum"
    kind = "psi"
    Params = PsiSumParams
    required_inputs = frozenset({"request"})

    @classmethod
    def check(cls, params: PsiSumParams, contract: Contract, policy: Any) -> list[str]:
        reasons = psi_set_reasons(params.column, params.max_items, contract, policy)
        reasons += _value_checks(
            contract, policy, params.value_column, "computation.params.value_column"
        )
        if params.phase == "reveal" and params.join_job is None:
            reasons.append("computation.params.join_job: the reveal phase names its join job")
        if params.phase == "join" and params.join_job is not None:
            reasons.append("computation.params.join_job: only the reveal phase names a join job")
        reasons += _dp_reasons(params, contract)
        return reasons

    @classmethod
    def check_quota(cls, params: PsiSumParams, policy: Any, usage: Any) -> list[str]:
        if params.phase != "join":
            return []
        return psi_quota_reasons(params.max_items, policy, usage)

    @classmethod
    def columns(cls, params: PsiSumParams, contract: Contract) -> list[str]:
        return [params.column, params.value_column] if params.phase == "join" else []

    @classmethod
    def check_inputs(cls, params: PsiSumParams, inputs: dict[str, bytes]) -> list[str]:
        from privacy._blind import KIND_UNMASK_REQUEST

        return _check_two_phase_request(
            inputs["request"],
            blinded_set=params.phase == "join",
            second_kind=KIND_UNMASK_REQUEST,
            label=f"PSI-sum {params.phase}",
            max_items=params.max_items,
        )

    @classmethod
    def input_items(cls, inputs: dict[str, bytes]) -> int | None:
        """Distinct points of a join request (shown to approvers as ``request_items``; the
        service checks them against ``sandbox.psi_min_items``); None for a reveal."""
        return _distinct_items(inputs)

    @classmethod
    def check_input_items(cls, items: int | None, params: Any, policy: Any) -> list[str]:
        """A join request under ``sandbox.min_group_size_k`` distinct items is refused at
        submit (the worker refuses it again): :func:`_k_reasons`."""
        return _k_reasons(items, policy, "a sum over so few could be one taxpayer's value")

    @classmethod
    def run(cls, ctx: RunContext) -> Output:
        p: PsiSumParams = ctx.params
        if p.phase == "reveal":
            return cls._reveal(ctx)
        return cls._join(ctx)

    @classmethod
    def _join(cls, ctx: RunContext) -> Output:
        from privacy._blind import JoinRequest
        from privacy._digest import sm3_hex
        from privacy._psi import PSI_ELEMENTS

        p: PsiSumParams = ctx.params
        request = JoinRequest.from_bytes(ctx.inputs["request"].read_bytes())
        cap = min(p.max_items, ctx.policy.psi_max_items)
        n_items = len(request.points)
        if n_items > cap:
            raise RunError(f"PSI-sum request holds {n_items} items, over the cap of {cap}")
        k = ctx.policy.min_group_size_k
        n_distinct = len(set(request.points))  # a repeated point is one item
        if n_distinct < k:
            raise RunError(
                f"PSI-sum request holds {n_distinct} items, under sandbox.min_group_size_k = {k}: "
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
        lo, hi = _fen_bounds(ctx.contract, p.value_column)
        values = clamp_ints(values, lo, hi)  # one bounded value per privacy unit
        jdir = ctx.inputs["request"].parent.parent
        state = jdir / STATE_DIR
        state.mkdir(mode=0o700, exist_ok=True)
        claimed = _claim_pack(ctx.contract.code, p.key_bits, len(ids), jdir, ctx.audit)
        try:
            response, sk, source = _department_round(
                request,
                ids,
                values,
                key_bits=p.key_bits,
                claimed=claimed,
                processes=2,
                scale=_scale(ctx.contract, p.value_column),
                unit=_unit(ctx.contract, p.value_column),
            )
        except GovdxError as exc:
            if claimed is not None:
                raise RunError(f"{exc} (stock pack {claimed.info.pack_id} destroyed)") from exc
            raise
        finally:
            if claimed is not None:
                claimed.burn()  # single use: its obfuscators are spent, its key is below
        data = response.to_bytes()
        doc = {
            "dataset": ctx.contract.code,
            "join_sm3": sm3_hex(data),
            "key": sk.to_dict(),
            "value_column": p.value_column,
            "bounds": [lo, hi],
            "scale": _scale(ctx.contract, p.value_column),
        }
        fd = os.open(state / STATE_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
        return Output(
            data,
            MEDIA_PSI_SUM,
            summary={
                "phase": "join",
                "client_items": n_items,
                "key_bits": p.key_bits,
                "clamp_bounds": [lo, hi],
                "encrypted_values": len(ids),
                **source,
            },
        )

    @classmethod
    def _reveal(cls, ctx: RunContext) -> Output:
        p: PsiSumParams = ctx.params
        assert p.join_job is not None and p.epsilon is not None
        root = ctx.inputs["request"].parent.parent.parent
        path = root / p.join_job / STATE_DIR / STATE_FILE
        with _first_job_lock(path, cls.LINK, p.join_job):
            return cls._reveal_locked(ctx, path)

    @classmethod
    def _reveal_locked(cls, ctx: RunContext, path: Path) -> Output:
        """The reveal under the join's state lock: read the key, unmask, add noise, delete it."""
        from privacy._blind import PsiError, pisum_unmask
        from privacy._dp import DpError, fraction_text, laplace_accuracy
        from privacy._paillier import HeError, PrivateKey

        p: PsiSumParams = ctx.params
        assert p.join_job is not None and p.epsilon is not None
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunError(
                f"join job {p.join_job}: no PSI-sum key (not a psi_sum join, or already "
                "revealed: one reveal per join, 每次求交仅可解密一次)"
            ) from exc
        if doc.get("dataset") != ctx.contract.code:
            raise RunError(f"join job {p.join_job} ran on another dataset")
        if "bounds" not in doc:
            raise RunError(
                f"join job {p.join_job} did not clamp its values (no bounds): join again"
            )
        lo, hi = (int(x) for x in doc["bounds"])
        sensitivity = sum_sensitivity(lo, hi)
        eps = Fraction(p.epsilon)
        try:
            sk = PrivateKey.from_dict(doc["key"])
            data = pisum_unmask(ctx.inputs["request"].read_bytes(), sk, doc["join_sm3"])
            noise, scale = _laplace_noise(sensitivity, eps)
            halfwidth = laplace_accuracy(scale, p.confidence)
        except (PsiError, HeError, KeyError, DpError) as exc:
            raise RunError(f"PSI-sum reveal refused: {exc}") from exc
        dp_doc = {
            "mechanism": "discrete_laplace",
            "epsilon": fraction_text(eps),
            "delta": "0",
            "privacy_unit": ctx.contract.privacy_unit,
            "sensitivity": sensitivity,
            "scale": scale,
            "bounds": [lo, hi],
            "value_scale": int(doc.get("scale", 0)),
            "confidence": p.confidence,
            "ci_halfwidth": halfwidth,
            "ci_note": (
                "the revealed sum ± ci_halfwidth covers the clamped intersection sum with the "
                "stated confidence (OpenDP discrete_laplacian_scale_to_accuracy); units of "
                "10^-value_scale of the value column"
            ),
        }
        data = _add_noise(data, sk.public.n, noise, dp_doc)
        path.unlink()  # one decryption per join: the key is gone
        return Output(
            data,
            MEDIA_PSI_SUM,
            summary={
                "phase": "reveal",
                "join_job": p.join_job,
                "epsilon": dp_doc["epsilon"],
                "delta": "0",
                "mechanism": dp_doc["mechanism"],
                "sensitivity": sensitivity,
                "scale": scale,
                "ci_halfwidth": halfwidth,
                "confidence": p.confidence,
            },
        )

    # --- ledger hooks (_EpsilonHooks): the reveal phase spends ε ------------------------------
    STATISTIC: ClassVar[str] = "psi_sum"
    LINK: ClassVar[_Link] = _Link(
        "join_job",
        "join",
        "reveal",
        ("column", "value_column"),
        "每次求交仅可解密一次",
        False,
        request_kind=KIND_UNMASK_REQUEST,
        sm3_field="join_sm3",
        state_file=STATE_FILE,
    )

    @classmethod
    def spends_epsilon(cls, params: PsiSumParams, contract: Contract) -> bool:
        """The reveal phase spends ε; the join spends nothing (it releases ciphertexts only).

        Raises:
            PolicyRefused: no privacy unit, dp block, bounds or ε (:func:`_dp_reasons`).
        """
        if params.phase != "reveal":
            return False
        reasons = _dp_reasons(params, contract)
        if reasons:
            raise PolicyRefused(reasons)
        return True


def _dp_reasons(params: PsiSumParams, contract: Contract) -> list[str]:
    """Why psi_sum is refused for want of the DP contract terms (pure; reads no data)."""
    from govdx._errors import ContractError
    from privacy._dp import fraction_text
    from sandbox._dp import dp_policy

    code = contract.code
    reasons: list[str] = []
    if contract.privacy_unit is None:
        reasons.append(
            f"dataset {code} declares no privacy_unit (未声明隐私单位): psi_sum bounds each "
            "taxpayer's contribution to the sum; refused"
        )
    elif params.column != contract.privacy_unit:
        reasons.append(
            f"computation.params.column: psi_sum joins on the privacy unit "
            f"{contract.privacy_unit!r} of {code} (one bounded value per unit), not "
            f"{params.column!r}"
        )
    try:
        dp = dp_policy(contract)
    except ContractError as exc:
        return [*reasons, str(exc)]
    if dp is None:
        return [
            *reasons,
            f"dataset {code} has no sandbox.dp block (未配置差分隐私): psi_sum needs clamp "
            "bounds and a privacy budget; refused",
        ]
    if params.value_column not in dp.bounds:
        reasons.append(
            f"computation.params.value_column: {params.value_column!r} has no clamp bounds "
            f"(sandbox.dp.bounds) on {code}; psi_sum refused (求和列未设截断界)"
        )
    if params.phase == "join":
        if params.epsilon is not None:
            reasons.append(
                "computation.params.epsilon: only the reveal phase spends ε (the join releases "
                "ciphertexts only)"
            )
        return reasons
    if params.epsilon is None:
        reasons.append(
            'computation.params.epsilon: the reveal phase spends ε (差分隐私预算), e.g. "1/2"'
        )
        return reasons
    eps = Fraction(params.epsilon)
    if eps > dp.per_query_max_q:
        reasons.append(
            f"computation.params.epsilon: ε = {params.epsilon} is above the per-query maximum "
            f"{fraction_text(dp.per_query_max_q)} of {code} (sandbox.dp.per_query_epsilon_max, "
            "单次查询预算上限)"
        )
    if eps > dp.epsilon_cap_q:
        reasons.append(
            f"computation.params.epsilon: ε = {params.epsilon} is above the total cap "
            f"{fraction_text(dp.epsilon_cap_q)} (sandbox.dp.epsilon_cap)"
        )
    return reasons


def _claim_pack(code: str, bits: int, need: int, jdir: Any, audit: Any = None) -> Any:
    """A key pack claimed from the stock (sandbox._he_stock) for this join, or None.

    The claim is an audit entry (``he_stock.claim``) when ``audit`` is given (the worker's).

    The stock is ``<sandbox root>/stock``; the job folder is ``<sandbox root>/<job id>``. A pack
    left in the job's state by an earlier failed attempt is deleted first (never reused)."""
    from sandbox._he_stock import CLAIM_FILE, HeStock

    state = jdir / STATE_DIR
    (state / CLAIM_FILE).unlink(missing_ok=True)
    if need < 1:
        return None
    return HeStock(jdir.parent, audit=audit).claim(code, bits=bits, need=need, dest_dir=state)


def _department_round(
    request: Any,
    ids: list[str],
    values: list[int],
    *,
    key_bits: int,
    claimed: Any,
    processes: int,
    scale: int,
    unit: str | None,
) -> tuple[Any, Any, dict[str, Any]]:
    """The department's round (:func:`privacy._blind.pisum_join`) with the key of a claimed
    stock pack when there is one.

    Stock path: the pack's key and ``(1 + m·n)·o mod n²`` with its obfuscators — one modular
    multiplication per value; values beyond the pack's size get fresh CRT obfuscators. Fresh
    path: a new key and CRT obfuscators on ``processes`` processes.

    Returns:
        ``(JoinResponse, private key, facts)``; facts = ``{"key_source": "stock" | "fresh",
        "stock_pack", "stock_obfuscators", "fresh_obfuscators"}`` for the job summary.
    """
    from privacy._blind import pisum_join

    sk, pool = (
        (claimed.pack.private_key, claimed.pack.pool) if claimed is not None else (None, None)
    )
    covered = min(len(pool), len(values)) if pool is not None else 0
    response, sk = pisum_join(
        request,
        ids,
        values,
        key_bits=key_bits,
        processes=processes,
        scale=scale,
        unit=unit,
        private_key=sk,
        pool=pool,
    )
    facts: dict[str, Any] = {
        "key_source": "stock" if claimed is not None else "fresh",
        "stock_pack": claimed.info.pack_id if claimed is not None else None,
        "stock_obfuscators": covered,
        "fresh_obfuscators": len(values) - covered,
    }
    return response, sk, facts


def _fen_bounds(contract: Contract, column: str) -> tuple[int, int]:
    """``sandbox.dp.bounds[column]`` (whole units) in fixed-point units of ``10^-scale``."""
    from sandbox._dp import dp_policy

    dp = dp_policy(contract)
    if dp is None or column not in dp.bounds:
        raise RunError(f"{contract.code}: no sandbox.dp.bounds for {column!r}; psi_sum refused")
    lo, hi = dp.bounds[column]
    m = 10 ** _scale(contract, column)
    return int(lo) * m, int(hi) * m


def clamp_ints(values: list[int], lo: int, hi: int) -> list[int]:
    """Clamp exact integers to ``[lo, hi]`` (list[n] of int → list[n] of int)."""
    return [lo if v < lo else hi if v > hi else v for v in values]


def sum_sensitivity(lo: int, hi: int) -> int:
    """L1 sensitivity of the intersection sum when each identifier's value is clamped to
    ``[lo, hi]``: ``max(|lo|, |hi|, hi − lo)`` (≥ 1).

    Removing one privacy unit removes one clamped value (≤ max(|lo|, |hi|)); if two raw
    identifiers of the unit column normalize to the same canonical id their rows are merged
    before clamping, and removing one changes the clamped value by ≤ hi − lo.
    """
    return max(1, abs(lo), abs(hi), hi - lo)


def _laplace_noise(sensitivity: int, epsilon: Any) -> tuple[int, float]:
    """One draw of OpenDP's exact discrete Laplace noise calibrated to ``(Δ, ε)``: the
    mechanism applied to 0 (its output is 0 + η). Returns ``(η, scale)``."""
    from privacy._dp import make_vector_laplace, release_vector

    meas, scale = make_vector_laplace(sensitivity, epsilon)
    (noise,) = release_vector(meas, [0])
    return int(noise), float(scale)


def _add_noise(data: bytes, n: int, noise: int, dp_doc: dict[str, Any]) -> bytes:
    """The unmask response with ``masked := masked + noise mod n`` and the ``dp`` header."""
    import base64

    from privacy._blind import KIND_UNMASK_RESPONSE, pisum_pack, pisum_unpack

    header, body = pisum_unpack(data, KIND_UNMASK_RESPONSE, "PSI-sum unmask response")
    raw = base64.b64decode(header["masked"], validate=True)
    masked = (int.from_bytes(raw, "big") + noise) % n
    header = {
        **header,
        "masked": base64.b64encode(masked.to_bytes(len(raw), "big")).decode("ascii"),
        "dp": dp_doc,
    }
    return pisum_pack(KIND_UNMASK_RESPONSE, header, body)


def psi_sum_noise(data: bytes) -> dict[str, Any]:
    """The DP terms of a released psi_sum reveal (the requester reads them beside its sum).

    Args:
        data: the reveal job's result (``application/x-govdx-psi-sum`` unmask response).

    Returns:
        ``{"mechanism": "discrete_laplace", "epsilon", "delta", "privacy_unit",
        "sensitivity", "scale", "bounds", "value_scale", "confidence", "ci_halfwidth",
        "ci_note"}``; sensitivity, scale, bounds and ci_halfwidth in units of
        ``10^-value_scale`` of the value column (fen for ``tax_paid``).

    Raises:
        privacy.PsiError: not a PSI-sum unmask response. ValueError: one without DP terms.
    """
    from privacy._blind import KIND_UNMASK_RESPONSE, pisum_unpack

    header, _ = pisum_unpack(data, KIND_UNMASK_RESPONSE, "PSI-sum unmask response")
    if not isinstance(header.get("dp"), dict):
        raise ValueError("PSI-sum unmask response carries no DP terms (无差分隐私说明)")
    return dict(header["dp"])


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
        cols = [*params.group_by, params.value_column]
        unit = contract.privacy_unit  # k counts distinct units (read, never released)
        return [*cols, unit] if unit and unit not in cols else cols

    @classmethod
    def run(cls, ctx: RunContext) -> Output:
        return _encrypted_totals(ctx, ctx.table, ctx.params)


def _encrypted_totals(
    ctx: RunContext, table: pa.Table, p: HeSumParams, extra: dict[str, Any] | None = None
) -> Output:
    """The he_sum core over ``table`` (the whole version, or a cohort's rows)."""
    from privacy._paillier import EncryptedVector, HeError, PublicKey

    k = ctx.policy.min_group_size_k
    pk = PublicKey.from_json(p.public_key)
    table = table.filter(pc.is_valid(table[p.value_column]))
    # k counts privacy units (people, enterprises) where the contract names one: a group of
    # ten rows of one taxpayer is one taxpayer's exact total, not an aggregate
    unit = _unit_column(ctx.contract, table)
    size = pc.count_distinct(table[unit]).as_py() if unit else table.num_rows
    what = f"distinct {unit}" if unit else "rows"
    if size < k:
        raise RunError(
            f"cohort of {size} {what} is under sandbox.min_group_size_k = {k} "
            "(群体规模低于 k); nothing was encrypted"
        )
    scale = _scale(ctx.contract, p.value_column)
    exact = table.set_column(
        table.schema.get_field_index(p.value_column),
        p.value_column,
        _exact(_unexact(table[p.value_column])),
    )
    counts = _group(exact, p.group_by, None, unit)
    released = counts.filter(pc.greater_equal(counts["units" if unit else "n"], k))
    suppressed = counts.num_rows - released.num_rows
    released = released.sort_by([(c, "ascending") for c in p.group_by]) if p.group_by else released
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
        "k_counts": f"distinct {unit}" if unit else "rows",
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
            **(extra or {}),
        },
    )


def _group(table: pa.Table, by: list[str], value: str | None, unit: str | None = None) -> pa.Table:
    """Rows ``n`` (and ``s`` = sum of ``value``, ``units`` = distinct ``unit`` values) per group
    of ``by``: pyarrow.Table[groups × (by..., n[, s][, units])]."""
    aggs: list[tuple[Any, ...]] = [([], "count_all")]
    if value is not None:
        aggs.append((value, "sum"))
    if unit is not None:
        aggs.append((unit, "count_distinct"))
    if table.num_rows == 0:
        cols = {c: pa.array([], table[c].type) for c in by}
        cols["n"] = pa.array([], pa.int64())
        if value is not None:
            cols["s"] = pa.array([], table[value].type)
        if unit is not None:
            cols["units"] = pa.array([], pa.int64())
        return pa.table(cols)
    out = table.group_by(by, use_threads=False).aggregate(aggs)
    names = {"count_all": "n", f"{value}_sum": "s", f"{unit}_count_distinct": "units"}
    return out.rename_columns([names.get(c, c) for c in out.column_names])


def _unit_column(contract: Contract, table: pa.Table) -> str | None:
    """The contract's privacy unit when the table holds it (k then counts units, not rows)."""
    unit = contract.privacy_unit
    return unit if unit is not None and unit in table.column_names else None


def _he_sum_doc(doc: dict[str, Any] | bytes) -> dict[str, Any]:
    """An he_sum result as a dict (parsed from its JSON bytes). Raises ValueError: not one."""
    if isinstance(doc, (bytes, bytearray)):
        try:
            doc = json.loads(doc)
        except ValueError:  # UnicodeDecodeError is a ValueError too
            doc = None
    if not isinstance(doc, dict) or doc.get("format") != "govdx-he-sum":
        raise ValueError(
            "not a govdx he_sum result (JSON with format govdx-he-sum; a psi_sum reveal "
            "answer is read by `govdx client psi-sum reveal`) (不是同态求和结果)"
        )
    return doc


def decrypt_he_sum(doc: dict[str, Any] | bytes, sk: Any) -> dict[str, Any]:
    """The requester's decryption of an ``he_sum`` result (``govdx client decrypt``).

    Args:
        doc: the released JSON (bytes or parsed).
        sk: the requester's :class:`privacy._paillier.PrivateKey`.

    Returns:
        ``{"columns": [*group_by, "n", "sum"], "rows": [...], "scale", "unit",
        "suppressed_groups", "dp"}`` with integer sums in units of ``10^-scale``: exact, or —
        for an he_cohort sum under ``sandbox.dp`` — noisy sums and noisy unit counts ``n``,
        whose terms ``dp`` carries (:func:`he_cohort_noise`; None for exact results).

    Raises:
        privacy.HeError: another key, tampered ciphertexts (out-of-range plaintexts).
        ValueError: not an he_sum result.
    """
    from privacy._paillier import EncryptedVector

    doc = _he_sum_doc(doc)
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
        "dp": he_cohort_noise(doc),
    }


# --- he_cohort: he_sum over the rows a requester's blinded set matches ---------------------------
COHORT_STATE_FILE = "he_cohort.json"
#: message kinds of the cohort exchange (the PSI-sum envelope, docs/he.md "Cohorts")
KIND_COHORT_OFFER = ord("C")
KIND_COHORT_REPLY = ord("D")
MEDIA_HE_COHORT = "application/x-govdx-he-cohort"


class HeCohortParams(BaseModel):
    """Params of ``he_cohort`` (docs/he.md "Cohorts: why and how").

    Attributes:
        phase: ``offer`` (job 1: input ``request`` = the requester's blinded set ``H(x)^a``)
            or ``sum`` (job 2: input ``request`` = the requester's re-blinded offer).
        column: the dataset's identifier column matched (as for ``psi``).
        max_items: the requester's set size bound (items).
        offer_job: sum phase: id of the offer job.
        value_column, group_by, public_key, partitions: sum phase: as for ``he_sum``.
        epsilon: sum phase: ε spent on the noisy group totals and counts, exact text
            (``"1/2"``, natural-log units); required when the contract declares ``sandbox.dp``
            (refused without it), refused when it does not; ≤
            ``sandbox.dp.per_query_epsilon_max``; charged to the (requester, dataset) ledger.
        confidence: sum phase: level of the released per-cell noise intervals (0.5–0.999).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    phase: Literal["offer", "sum"] = "offer"
    column: str = Field(min_length=1)
    max_items: int = Field(gt=0)
    offer_job: JobRef = None
    value_column: str | None = None
    group_by: list[str] = Field(default_factory=list, max_length=2)
    public_key: str | None = Field(default=None, min_length=1, max_length=20_000)
    partitions: int = Field(default=1, ge=1, le=64)
    epsilon: EpsilonText = None
    confidence: float = Field(default=0.95, ge=0.5, le=0.999)

    def he_sum(self) -> HeSumParams:
        """The ``he_sum`` params of the sum phase. Raises ValueError (pydantic) if incomplete."""
        return HeSumParams(
            value_column=self.value_column or "",
            group_by=self.group_by,
            public_key=self.public_key or "",
            partitions=self.partitions,
        )


def cohort_reply(offer: bytes, key: bytes, *, processes: int = 1) -> bytes:
    """The requester's step between the two ``he_cohort`` jobs (on its own machine).

    Args:
        offer: the offer job's result (kind ``C``: the department's ``H(y)^b``, sorted).
        key: the requester's 32-byte blinding key ``a`` (the one its request was blinded with).
        processes: worker processes for the re-blinding.

    Returns:
        The reply (kind ``D``): ``H(y)^(ba)`` in the offer's order, the sum job's ``request``.

    Raises:
        privacy.PsiError: a malformed offer, library failure.
    """
    from privacy._blind import POINT_BYTES, PsiError, pisum_pack, pisum_unpack, reblind

    header, body = pisum_unpack(offer, KIND_COHORT_OFFER, "he_cohort offer")
    n = header.get("items")
    if not isinstance(n, int) or len(body) != n * POINT_BYTES:
        raise PsiError("he_cohort offer: body size does not match 'items'")
    pts = [body[i : i + POINT_BYTES] for i in range(0, len(body), POINT_BYTES)]
    out = reblind(pts, key, processes=processes)
    head = {"items": n, "offer_sm3": header.get("offer_sm3")}
    return pisum_pack(KIND_COHORT_REPLY, head, b"".join(out))


COHORT_SESSION = "govdx-he-cohort-client-session"


class CohortClient(ClientState):
    """The requester's side of ``he_cohort`` (on its own machine; mirrors
    ``privacy._blind.PiSumClient``): :meth:`create` blinds its identifiers into the offer job's
    request ``J``; :meth:`reply` turns the offer ``C`` into the sum job's request ``D``
    (:func:`cohort_reply`). The state (blinding key ``a``) is saved with :meth:`save` (0600).
    """

    FORMAT = COHORT_SESSION
    WHAT = "he_cohort"

    @classmethod
    def create(
        cls, items: list[str | None], *, element: str = "uscc", processes: int = 1
    ) -> tuple[CohortClient, bytes, list[tuple[int, str]]]:
        """Normalize, blind (``H(x)^a``) and sort the requester's identifiers.

        Args:
            items: list[n] of raw identifiers (``privacy.normalize_identifiers``).
            element: ``privacy.PSI_ELEMENTS`` member.
            processes: worker processes for the blinding.

        Returns:
            ``(client, request J bytes, rejected (input index, reason))``.

        Raises:
            privacy.PsiError: unknown element, non-string item, library failure.
        """
        import base64

        from privacy._blind import JoinRequest, blind, new_blinding_key
        from privacy._digest import sm3_hex
        from privacy._psi import normalize_identifiers

        ns = normalize_identifiers(items, element=element)
        a = new_blinding_key()
        request = JoinRequest(element, sorted(blind(ns.items, a, processes=processes))).to_bytes()
        state = {
            "format": COHORT_SESSION,
            "version": 1,
            "element": element,
            "items": len(ns.items),
            "key_b64": base64.b64encode(a).decode("ascii"),
            "request_sm3": sm3_hex(request),
        }
        return cls(state), request, list(ns.rejected)

    def reply(self, offer: bytes, *, processes: int = 1) -> bytes:
        """The sum job's request ``D`` for the offer job's result ``C`` (see :func:`cohort_reply`).

        Raises:
            privacy.PsiError: a malformed offer, an offer made for another request (its header's
                ``request_sm3`` is not this state's; an offer without one, from an older
                department, is not checked), library failure.
        """
        import base64

        from privacy._blind import PsiError, pisum_unpack

        offered, _ = pisum_unpack(offer, KIND_COHORT_OFFER, "he_cohort offer")
        if offered.get("request_sm3", self._s["request_sm3"]) != self._s["request_sm3"]:
            raise PsiError(
                "he_cohort offer answers another request (响应与请求不匹配): it was made for "
                f"request SM3 {str(offered['request_sm3'])[:16]}…, this state holds request "
                f"{self._s['request_sm3'][:16]}…; use the state file of that request"
            )
        data = cohort_reply(offer, base64.b64decode(self._s["key_b64"]), processes=processes)
        header, _ = pisum_unpack(data, KIND_COHORT_REPLY, "he_cohort reply")
        self._s.update(offer_sm3=header.get("offer_sm3"), offered=header.get("items"))
        return data


@register_computation
class HeCohort(_EpsilonHooks, Computation):
    """Encrypted totals over a private cohort (隐私群体密文求和), two jobs (docs/he.md).

    Job 1 (``offer``) re-blinds the requester's set ``H(x)^a`` to ``Z = {H(x)^(ab)}`` (kept in
    the job's state, never released) and releases the dataset's ``H(y)^b``, sorted. The
    requester re-blinds those with ``a`` and sends them back in order (:func:`cohort_reply`);
    job 2 (``sum``) marks the rows whose ``H(y)^(ba)`` is in ``Z`` — the cohort ``X ∩ Y`` —
    refuses a cohort under k, and runs ``he_sum`` over its rows — or, on a contract with
    ``sandbox.dp``, bounds each unit per group and adds OpenDP noise to the totals and unit
    counts before encryption, charging ``epsilon`` through the ledger hooks below. Needs
    ``sandbox.psi_keep_cohort_allowed``: the sandbox learns which rows matched.
    """

    name = "he_cohort"
    kind = "psi"
    Params = HeCohortParams
    required_inputs = frozenset({"request"})

    @classmethod
    def check(cls, params: HeCohortParams, contract: Contract, policy: Any) -> list[str]:
        from pydantic import ValidationError

        reasons: list[str] = []
        if not policy.psi_keep_cohort_allowed:
            reasons.append(
                f"computation.name: he_cohort lets the sandbox learn which rows of "
                f"{contract.code} the requester holds; not allowed "
                "(sandbox.psi_keep_cohort_allowed = false, 未批准保留交集群体)"
            )
        reasons += psi_set_reasons(params.column, params.max_items, contract, policy)
        if params.phase == "offer":
            if (
                params.offer_job is not None
                or params.value_column
                or params.public_key
                or params.epsilon is not None
            ):
                reasons.append(
                    "computation.params: the offer phase takes column and max_items only "
                    "(offer_job, value_column, public_key, epsilon belong to the sum phase)"
                )
            return reasons
        if params.offer_job is None:
            reasons.append("computation.params.offer_job: the sum phase names its offer job")
        try:
            he = params.he_sum()
        except ValidationError:
            return [
                *reasons,
                "computation.params: the sum phase needs value_column and public_key",
            ]
        return (
            reasons
            + HeSum.check(he, contract, policy)
            + _cohort_dp_reasons(params, contract, policy)
        )

    @classmethod
    def check_quota(cls, params: HeCohortParams, policy: Any, usage: Any) -> list[str]:
        if params.phase != "offer":
            return []
        return psi_quota_reasons(params.max_items, policy, usage)

    @classmethod
    def columns(cls, params: HeCohortParams, contract: Contract) -> list[str]:
        if params.phase == "offer":
            return [params.column]
        return list(dict.fromkeys([params.column, *params.group_by, params.value_column or ""]))

    @classmethod
    def check_inputs(cls, params: HeCohortParams, inputs: dict[str, bytes]) -> list[str]:
        return _check_two_phase_request(
            inputs["request"],
            blinded_set=params.phase == "offer",
            second_kind=KIND_COHORT_REPLY,
            label=f"he_cohort {params.phase}",
            max_items=params.max_items,
        )

    @classmethod
    def input_items(cls, inputs: dict[str, bytes]) -> int | None:
        """Distinct points of an offer request (``request_items``, checked against
        ``sandbox.psi_min_items`` by the service); None for a sum."""
        return _distinct_items(inputs)

    @classmethod
    def check_input_items(cls, items: int | None, params: Any, policy: Any) -> list[str]:
        """An offer request under ``sandbox.min_group_size_k`` distinct items is refused at
        submit (the worker refuses it again): :func:`_k_reasons`."""
        return _k_reasons(items, policy, "its cohort would be under k")

    @classmethod
    def run(cls, ctx: RunContext) -> Output:
        if ctx.params.phase == "sum":
            return cls._sum(ctx)
        return cls._offer(ctx)

    @classmethod
    def _element(cls, ctx: RunContext) -> str:
        from privacy._psi import PSI_ELEMENTS

        element = ctx.contract.field(ctx.params.column).element
        return element if element in PSI_ELEMENTS else "identifier"

    @classmethod
    def _blinded_ids(cls, ctx: RunContext, b: bytes) -> tuple[list[str], list[bytes]]:
        """Distinct canonical ids of the column and their ``H(y)^b``, sorted by point."""
        from privacy._blind import blind

        col = _unexact(ctx.table[ctx.params.column])
        ids = pc.unique(pc.drop_null(_canonical(col, cls._element(ctx)))).to_pylist()
        pts = blind(ids, b, processes=2)
        order = sorted(range(len(ids)), key=pts.__getitem__)
        return [ids[i] for i in order], [pts[i] for i in order]

    @classmethod
    def _offer(cls, ctx: RunContext) -> Output:
        import base64

        from privacy._blind import JoinRequest, new_blinding_key, pisum_pack, reblind
        from privacy._digest import sm3_hex

        p: HeCohortParams = ctx.params
        raw = ctx.inputs["request"].read_bytes()
        request = JoinRequest.from_bytes(raw)
        n_items = len(request.points)
        cap = min(p.max_items, ctx.policy.psi_max_items)
        if n_items > cap:
            raise RunError(f"he_cohort request holds {n_items} items, over the cap of {cap}")
        k = ctx.policy.min_group_size_k
        n_distinct = len(set(request.points))
        if n_distinct < k:
            raise RunError(
                f"he_cohort request holds {n_distinct} items, under sandbox.min_group_size_k = "
                f"{k} (集合规模低于 k)"
            )
        if request.element != cls._element(ctx):
            raise RunError(
                f"he_cohort request was normalized as {request.element!r}, column "
                f"{p.column!r} is {cls._element(ctx)!r}"
            )
        b = new_blinding_key()
        z = sorted(set(reblind(request.points, b, processes=2)))
        _, w = cls._blinded_ids(ctx, b)
        body = b"".join(w)
        offer_sm3 = sm3_hex(body)
        data = pisum_pack(
            KIND_COHORT_OFFER,
            {
                "curve": "P-256",
                "items": len(w),
                "offer_sm3": offer_sm3,
                "request_sm3": sm3_hex(raw),  # binds C to its J (the client checks it)
            },
            body,
        )
        state = ctx.inputs["request"].parent.parent / STATE_DIR
        state.mkdir(mode=0o700, exist_ok=True)
        doc = {
            "dataset": ctx.contract.code,
            "column": p.column,
            "key_b64": base64.b64encode(b).decode("ascii"),
            "offer_sm3": offer_sm3,
            "z_b64": base64.b64encode(b"".join(z)).decode("ascii"),
        }
        fd = os.open(state / COHORT_STATE_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
        return Output(
            data,
            MEDIA_HE_COHORT,
            summary={"phase": "offer", "client_items": n_items, "offered": len(w)},
        )

    @classmethod
    def _sum(cls, ctx: RunContext) -> Output:

        p: HeCohortParams = ctx.params
        assert p.offer_job is not None
        path = ctx.inputs["request"].parent.parent.parent / p.offer_job / STATE_DIR
        path = path / COHORT_STATE_FILE
        with _first_job_lock(path, cls.LINK, p.offer_job):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise RunError(
                    f"offer job {p.offer_job}: no he_cohort state (not an offer, or already "
                    "used: one sum per offer, 每次求交仅可求和一次)"
                ) from exc
            path.unlink()  # one sum per offer, whatever its outcome
        return cls._sum_of_offer(ctx, doc)

    @classmethod
    def _sum_of_offer(cls, ctx: RunContext, doc: dict[str, Any]) -> Output:
        """The sum phase once the offer's state ``doc`` is taken (and deleted)."""
        import base64

        from privacy._blind import POINT_BYTES, PsiError, pisum_unpack
        from privacy._digest import sm3_hex

        p: HeCohortParams = ctx.params
        assert p.offer_job is not None
        if doc.get("dataset") != ctx.contract.code or doc.get("column") != p.column:
            raise RunError(f"offer job {p.offer_job} ran on another dataset or column")
        try:
            header, body = pisum_unpack(
                ctx.inputs["request"].read_bytes(), KIND_COHORT_REPLY, "he_cohort reply"
            )
        except PsiError as exc:
            raise RunError(str(exc)) from exc
        if header.get("offer_sm3") != doc["offer_sm3"]:
            raise RunError("he_cohort reply answers another offer (响应与请求不匹配)")
        b = base64.b64decode(doc["key_b64"])
        ids, w = cls._blinded_ids(ctx, b)
        if sm3_hex(b"".join(w)) != doc["offer_sm3"]:
            raise RunError(
                f"the dataset's {p.column!r} changed since offer job {p.offer_job}; offer again"
            )
        if len(body) != len(w) * POINT_BYTES:
            raise RunError(f"he_cohort reply: {len(body)} bytes, {len(w)} × {POINT_BYTES} expected")
        reply = [body[i : i + POINT_BYTES] for i in range(0, len(body), POINT_BYTES)]
        if len(set(reply)) != len(reply):
            raise RunError("he_cohort reply repeats a point: not a re-blinding of the offer")
        zb = base64.b64decode(doc["z_b64"])
        z = {zb[i : i + POINT_BYTES] for i in range(0, len(zb), POINT_BYTES)}
        cohort = [ids[i] for i, q in enumerate(reply) if q in z]
        k = ctx.policy.min_group_size_k
        if len(cohort) < k:
            raise RunError(
                f"cohort of {len(cohort)} identifiers is under sandbox.min_group_size_k = {k} "
                "(群体规模低于 k); nothing was encrypted"
            )
        canon = _canonical(_unexact(ctx.table[p.column]), cls._element(ctx))
        mask = pc.fill_null(pc.is_in(canon, value_set=pa.array(cohort, pa.string())), False)
        extra = {"phase": "sum", "cohort": len(cohort)}
        from sandbox._dp import dp_policy

        if dp_policy(ctx.contract) is None and p.epsilon is None:  # exact totals (docs/he.md)
            return _encrypted_totals(ctx, ctx.table.filter(mask), p.he_sum(), extra=extra)
        try:
            CohortDp.build(p, ctx.contract, ctx.policy)
        except PolicyRefused as exc:
            raise RunError(f"he_cohort sum refused: {exc}") from exc
        return _noisy_cohort_totals(ctx, ctx.table.filter(mask), canon.filter(mask), p, extra)

    # --- ledger hooks (_EpsilonHooks): a sum phase under sandbox.dp spends ε -------------------
    STATISTIC: ClassVar[str] = "he_cohort"
    LINK: ClassVar[_Link] = _Link(
        "offer_job",
        "offer",
        "sum",
        ("column",),
        "每次求交仅可求和一次",
        True,
        request_kind=KIND_COHORT_REPLY,
        sm3_field="offer_sm3",
        state_file=COHORT_STATE_FILE,
    )

    @classmethod
    def spends_epsilon(cls, params: HeCohortParams, contract: Contract) -> bool:
        """A sum phase on a contract with ``sandbox.dp`` spends ε; the offer phase and a sum
        without ``sandbox.dp`` (exact totals, docs/he.md) spend nothing. Checked at submit and
        again at run start, so a ``sandbox.dp`` block added after submit refuses an exact sum.

        Raises:
            PolicyRefused: ε missing, above the per-query maximum, no bounds or privacy unit,
                ε without a ``sandbox.dp`` block (:func:`_cohort_dp_reasons`).
        """
        if params.phase != "sum":
            return False
        reasons = _cohort_dp_reasons(params, contract)
        if reasons:
            raise PolicyRefused(reasons)
        return params.epsilon is not None


# --- he_cohort under sandbox.dp: bounded, noisy group totals (docs/he.md "Cohorts ... DP") -----
def _cohort_dp_reasons(params: HeCohortParams, contract: Contract, policy: Any = None) -> list[str]:
    """Why an he_cohort sum is refused for its DP terms (pure; reads no data).

    With a ``sandbox.dp`` block the sum must carry ``epsilon`` (≤ the per-query maximum and the
    cap), join on the ``privacy_unit`` and sum a column with ``sandbox.dp.bounds``; without one
    it must not carry ``epsilon`` (exact totals, nothing to charge). ``policy`` (optional) adds
    the ``max_output_rows`` check of a public group domain.
    """
    from govdx._errors import ContractError
    from privacy._dp import fraction_text
    from sandbox._dp import domain_keys, dp_policy

    if params.phase != "sum":
        return []
    code = contract.code
    try:
        dp = dp_policy(contract)
    except ContractError as exc:
        return [str(exc)]
    if dp is None:
        if params.epsilon is None:
            return []
        return [
            f"computation.params.epsilon: dataset {code} has no sandbox.dp block (未配置差分隐私): "
            "its he_cohort sum releases exact totals and there is no budget to charge ε to; "
            "leave epsilon out"
        ]
    reasons: list[str] = []
    if params.epsilon is None:
        reasons.append(
            f"computation.params.epsilon: {code} declares sandbox.dp, so the he_cohort sum "
            "releases noisy totals and counts and spends ε (差分隐私预算) of your budget on "
            'this dataset; give epsilon, e.g. "1/2"'
        )
    if contract.privacy_unit is None:
        reasons.append(
            f"dataset {code} declares no privacy_unit (未声明隐私单位): the he_cohort sum bounds "
            "each unit's contribution; refused"
        )
    elif params.column != contract.privacy_unit:
        reasons.append(
            f"computation.params.column: under sandbox.dp the he_cohort joins on the privacy "
            f"unit {contract.privacy_unit!r} of {code} (its rows are bounded per unit), not "
            f"{params.column!r}"
        )
    if params.value_column and params.value_column not in dp.bounds:
        reasons.append(
            f"computation.params.value_column: {params.value_column!r} has no clamp bounds "
            f"(sandbox.dp.bounds) on {code}; he_cohort sum refused (求和列未设截断界)"
        )
    if params.epsilon is not None:
        eps = Fraction(params.epsilon)
        if eps > dp.per_query_max_q:
            reasons.append(
                f"computation.params.epsilon: ε = {params.epsilon} is above the per-query "
                f"maximum {fraction_text(dp.per_query_max_q)} of {code} "
                "(sandbox.dp.per_query_epsilon_max, 单次查询预算上限)"
            )
        if eps > dp.epsilon_cap_q:
            reasons.append(
                f"computation.params.epsilon: ε = {params.epsilon} is above the total cap "
                f"{fraction_text(dp.epsilon_cap_q)} (sandbox.dp.epsilon_cap)"
            )
    if (
        policy is not None
        and params.group_by
        and all(c in dp.public_domains for c in params.group_by)
    ):
        cells = 1
        for c in params.group_by:
            cells *= len(domain_keys(dp.public_domains[c]))
        if cells > policy.max_output_rows:
            reasons.append(
                f"computation.params.group_by: the public domain has {cells} cells, more than "
                f"sandbox.max_output_rows = {policy.max_output_rows}"
            )
    return reasons


@dataclass(frozen=True)
class CohortDp:
    """The differential-privacy terms of one he_cohort sum (a pure value: no data is read).

    Neighbouring datasets differ in all rows of one privacy unit (one canonical taxpayer id).
    Each unit's rows are summed per group — a (unit, group) *cell* — and each cell clamped to
    ``bounds``; a unit keeps its first ``max_groups`` cells (by its first row in storage order).
    Removing a unit therefore changes at most ``max_groups`` group totals, each by at most
    ``sum_sensitivity(lo, hi)`` — L1 sensitivity ``max_groups · sum_sensitivity(lo, hi)`` of
    the total vector — and at most ``max_groups`` unit counts by 1 each (L1 = ``max_groups``).
    ε is split exactly: ε/2 for the totals, ε/2 for the counts (basic composition).

    Attributes:
        epsilon, epsilon_sum, epsilon_count: ε charged, and its two halves (exact).
        bounds: ``(lo, hi)`` clamp range of a cell, fixed point (units of ``10^-value_scale``).
        value_scale: decimal scale of the value column (2 for fen).
        max_groups: cells kept per unit, m: 1 without a group-by, ``min(max_contributions,
            cells)`` over a public domain, else ``sandbox.dp.max_contributions``.
        sum_sensitivity, count_sensitivity: L1 sensitivities (fixed point / units).
        domain: the public domain's keys per group-by column, or None (groups from the data).
        confidence: level of the released per-cell intervals.
        privacy_unit: the contract's privacy unit column.
        group_by: the group-by columns.
    """

    epsilon: Fraction
    epsilon_sum: Fraction
    epsilon_count: Fraction
    bounds: tuple[int, int]
    value_scale: int
    max_groups: int
    sum_sensitivity: int
    count_sensitivity: int
    domain: tuple[tuple[str, ...], ...] | None
    confidence: float
    privacy_unit: str
    group_by: tuple[str, ...] = ()

    @classmethod
    def build(cls, params: HeCohortParams, contract: Contract, policy: Any = None) -> CohortDp:
        """The terms of a sum phase on a contract with ``sandbox.dp``.

        Raises:
            PolicyRefused: every reason of the DP checks (no ε, no bounds, ...), or no
                ``sandbox.dp`` block (an exact sum has no DP terms).
        """
        from sandbox._dp import domain_keys, dp_policy

        reasons = _cohort_dp_reasons(params, contract, policy)
        dp = dp_policy(contract) if not reasons else None
        if dp is None or params.epsilon is None or params.value_column is None:
            raise PolicyRefused(reasons or [f"{contract.code} has no sandbox.dp block"])
        domain = None
        if params.group_by and all(c in dp.public_domains for c in params.group_by):
            domain = tuple(tuple(domain_keys(dp.public_domains[c])) for c in params.group_by)
        if not params.group_by:
            m = 1
        elif domain is not None:
            m = min(dp.max_contributions, math.prod(len(k) for k in domain))
        else:
            m = dp.max_contributions
        lo, hi = _fen_bounds(contract, params.value_column)
        eps = Fraction(params.epsilon)
        return cls(
            epsilon=eps,
            epsilon_sum=eps / 2,
            epsilon_count=eps / 2,
            bounds=(lo, hi),
            value_scale=_scale(contract, params.value_column),
            max_groups=m,
            sum_sensitivity=m * sum_sensitivity(lo, hi),
            count_sensitivity=m,
            domain=domain,
            confidence=params.confidence,
            privacy_unit=contract.privacy_unit or "",
            group_by=tuple(params.group_by),
        )

    @property
    def groups_from(self) -> str:
        """``public_domain`` (declared keys), ``data`` (keys present, k-suppressed) or ``none``
        (no group-by: one total)."""
        if self.domain is not None:
            return "public_domain"
        return "data" if self.group_by else "none"

    def release(self, sums: np.ndarray, counts: np.ndarray) -> tuple[Any, Any, dict[str, Any]]:
        """OpenDP discrete Laplace noise on the exact group totals and unit counts.

        Args:
            sums: int64[groups] exact clamped totals (fixed point).
            counts: int64[groups] exact unit counts.

        Returns:
            ``(noisy sums int64[groups], noisy counts int64[groups], dp terms)``; the terms as
            in :func:`he_cohort_noise`.

        Raises:
            RunError: OpenDP failed (overflow).
        """
        from privacy._dp import (
            DpError,
            fraction_text,
            laplace_accuracy,
            make_vector_laplace,
            release_vectors,
        )
        from sandbox._dp import MECHANISM_LAPLACE

        try:
            m_sum, scale_sum = make_vector_laplace(self.sum_sensitivity, self.epsilon_sum)
            m_count, scale_count = make_vector_laplace(self.count_sensitivity, self.epsilon_count)
            if len(sums):
                noisy_sums, noisy_counts = release_vectors([(m_sum, sums), (m_count, counts)])
            else:
                noisy_sums, noisy_counts = sums.copy(), counts.copy()
            half_sum = laplace_accuracy(scale_sum, self.confidence)
            half_count = laplace_accuracy(scale_count, self.confidence)
        except DpError as exc:
            raise RunError(f"he_cohort: {exc}") from exc
        terms = {
            "mechanism": MECHANISM_LAPLACE,
            "epsilon": fraction_text(self.epsilon),
            "delta": "0",
            "privacy_unit": self.privacy_unit,
            "bounds": list(self.bounds),
            "value_scale": self.value_scale,
            "max_groups_per_unit": self.max_groups,
            "groups_from": self.groups_from,
            "confidence": self.confidence,
            "sensitivity": self.sum_sensitivity,
            "scale": scale_sum,
            "ci_halfwidth": half_sum,
            "sum": {
                "epsilon": fraction_text(self.epsilon_sum),
                "sensitivity": self.sum_sensitivity,
                "scale": scale_sum,
                "ci_halfwidth": half_sum,
            },
            "count": {
                "epsilon": fraction_text(self.epsilon_count),
                "sensitivity": self.count_sensitivity,
                "scale": scale_count,
                "ci_halfwidth": half_count,
            },
            "ci_note": (
                "each released sum ± sum.ci_halfwidth covers its group's clamped total, each n "
                "± count.ci_halfwidth its number of privacy units, per cell with the stated "
                "confidence (OpenDP discrete_laplacian_scale_to_accuracy); sums in units of "
                "10^-value_scale of the value column"
            ),
        }
        return noisy_sums, noisy_counts, terms


@dataclass(frozen=True)
class BoundedTotals:
    """Exact (pre-noise) group totals of bounded (unit, group) cells; :func:`bounded_totals`.

    Attributes:
        keys: list[groups] of group-key lists, in release order.
        counts: int64[groups] privacy units per group (cells).
        sums: int64[groups] sum of the clamped cell values (fixed point).
        cell_group: int64[cells] group index of each kept cell.
        cell_value: int64[cells] clamped value of each kept cell.
        suppressed: groups dropped for fewer than ``min_units`` units.
        dropped_cells: cells beyond a unit's ``max_groups`` (not counted anywhere).
    """

    keys: list[list[Any]]
    counts: np.ndarray
    sums: np.ndarray
    cell_group: np.ndarray
    cell_value: np.ndarray
    suppressed: int
    dropped_cells: int


def bounded_totals(
    table: pa.Table,
    units: pa.Array,
    *,
    group_by: list[str],
    value_column: str,
    value_scale: int,
    bounds: tuple[int, int],
    max_groups: int,
    domain: tuple[tuple[str, ...], ...] | None = None,
    min_units: int = 0,
    limit: int | None = None,
) -> BoundedTotals:
    """Contribution bounding of he_cohort under ``sandbox.dp`` (the exact values before noise).

    Each unit's rows are summed exactly per group (a cell, ``decimal128(38, s)``), the cell read
    as fixed point (:func:`fixed_point_ints`) and clamped to ``bounds`` (:func:`clamp_ints`); a
    unit keeps its first ``max_groups`` cells ordered by their first row in storage order. Rows
    with a null unit or value are dropped. With ``domain`` the groups are the public domain's
    cells (keys compared as strings, rows outside dropped, every cell kept); without, the groups
    present among the kept cells, sorted by key, those with fewer than ``min_units`` units
    suppressed, the first ``limit`` kept.

    Args:
        table: pyarrow.Table[rows × (group_by…, value_column)], storage order.
        units: string array[rows]: the canonical privacy unit of each row (null: not counted).
        group_by: 0–2 group columns. value_column: integer or decimal column.
        value_scale: its decimal scale. bounds: ``(lo, hi)`` fixed point.
        max_groups: cells kept per unit (≥ 1). domain: public keys per group-by column.
        min_units: k of the data-chosen groups. limit: most groups released.

    Returns:
        :class:`BoundedTotals`.

    Raises:
        RunError: a non-numeric value column, or totals that could overflow int64.
    """
    lo, hi = bounds
    n = table.num_rows
    vals = _unexact(table[value_column])
    keep = pc.and_(pc.is_valid(vals), pc.is_valid(units))
    cols: dict[str, Any] = {"u": units, "v": _exact(vals), "i": pa.array(np.arange(n))}
    dims: list[pa.Array] = []
    cell = np.zeros(n, dtype=np.int64)
    ok = np.asarray(keep.to_numpy(zero_copy_only=False), dtype=bool)
    for i, c in enumerate(group_by):
        col = _unexact(table[c])
        if domain is not None:
            col = col if col.type == pa.string() else pc.cast(col, pa.string())
            dim = pa.array(domain[i], pa.string())
        else:
            dim = pc.unique(col)
            dim = dim.take(pc.array_sort_indices(dim, null_placement="at_end"))
        idx = pc.index_in(col, value_set=dim, skip_nulls=False)  # data: null is a key
        idx = np.asarray(pc.fill_null(idx, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
        ok &= idx >= 0
        cell = cell * max(len(dim), 1) + idx
        dims.append(dim)
    cols["g"] = pa.array(cell)
    t = pa.table(cols).filter(pa.array(ok))
    agg = t.group_by(["u", "g"], use_threads=False).aggregate([("v", "sum"), ("i", "min")])
    agg = agg.sort_by([("u", "ascending"), ("i_min", "ascending")])
    c = agg.num_rows
    if c:
        u = agg["u"]
        first = np.ones(c, dtype=bool)
        first[1:] = np.asarray(
            pc.not_equal(u.slice(1), u.slice(0, c - 1)).to_numpy(zero_copy_only=False), bool
        )
        starts = np.flatnonzero(first)
        rank = np.arange(c) - np.repeat(starts, np.diff(np.append(starts, c)))
        kept = rank < max_groups
    else:
        kept = np.zeros(0, dtype=bool)
    agg = agg.filter(pa.array(kept))
    if agg.num_rows * max(abs(lo), abs(hi)) >= 2**62:
        raise RunError(f"he_cohort: {agg.num_rows} cells within {bounds} could overflow int64")
    values = clamp_ints(fixed_point_ints(_unexact(agg["v_sum"]), value_scale), lo, hi)
    cell_value = np.asarray(values, dtype=np.int64)
    cell_code = np.asarray(_unexact(agg["g"]).to_numpy(), dtype=np.int64)
    shape = [len(d) for d in dims]
    if domain is not None or not group_by:
        codes = np.arange(math.prod(shape) if group_by else 1, dtype=np.int64)
        suppressed = 0
    else:
        codes, units_per = np.unique(cell_code, return_counts=True)
        big = units_per >= min_units
        suppressed = int((~big).sum())
        codes = codes[big][: limit if limit is not None else len(codes)]
    pos = np.searchsorted(codes, cell_code)
    inside = (pos < len(codes)) & (codes[np.minimum(pos, len(codes) - 1)] == cell_code)
    if not len(codes):
        inside[:] = False
    cell_group, cell_value = pos[inside], cell_value[inside]
    counts = np.bincount(cell_group, minlength=len(codes)).astype(np.int64)
    sums = np.zeros(len(codes), dtype=np.int64)
    np.add.at(sums, cell_group, cell_value)
    if group_by:
        parts = np.unravel_index(codes, shape) if len(codes) else [codes] * len(shape)
        key_cols = [dims[i].take(pa.array(parts[i])).to_pylist() for i in range(len(dims))]
        keys = [list(k) for k in zip(*key_cols, strict=True)]
    else:
        keys = [[]]
    return BoundedTotals(keys, counts, sums, cell_group, cell_value, suppressed, int((~kept).sum()))


def _noisy_cohort_totals(
    ctx: RunContext, table: pa.Table, units: pa.Array, p: HeCohortParams, extra: dict[str, Any]
) -> Output:
    """The sum phase under ``sandbox.dp``: bounded cells, OpenDP noise on the group totals and
    unit counts, the noisy totals encrypted under the requester's key (docs/he.md)."""
    from privacy._paillier import EncryptedVector, HeError, PublicKey

    terms = CohortDp.build(p, ctx.contract, ctx.policy)
    he = p.he_sum()
    k = ctx.policy.min_group_size_k
    bt = bounded_totals(
        table,
        units,
        group_by=he.group_by,
        value_column=he.value_column,
        value_scale=terms.value_scale,
        bounds=terms.bounds,
        max_groups=terms.max_groups,
        domain=terms.domain,
        min_units=k,
        limit=ctx.policy.max_output_rows,
    )
    noisy_sums, noisy_counts, dp_doc = terms.release(bt.sums, bt.counts)
    pk = PublicKey.from_json(he.public_key)
    g = len(bt.keys)
    # partial vectors over the cells (one per department worker or partition); the noise is
    # added to the first before encryption, so the ciphertexts add up to the noisy totals
    cells = len(bt.cell_group)
    step = max(1, -(-cells // he.partitions))
    total: EncryptedVector | None = None
    try:
        for j, start in enumerate(range(0, max(cells, 1), step)):
            vec = np.zeros(g, dtype=np.int64)
            np.add.at(vec, bt.cell_group[start : start + step], bt.cell_value[start : start + step])
            if j == 0:
                vec += np.asarray(noisy_sums, dtype=np.int64) - bt.sums
            enc = EncryptedVector.encrypt([int(x) for x in vec], pk, processes=2)
            total = enc if total is None else total + enc  # the aggregator's addition
    except HeError as exc:
        raise RunError(f"he_cohort: {exc}") from exc
    assert total is not None
    n = [int(x) for x in noisy_counts]
    doc = {
        "format": "govdx-he-sum",
        "group_by": he.group_by,
        "groups": bt.keys,
        "n": n,
        "n_is": "privacy units (noisy)",
        "k": k,
        "suppressed_groups": bt.suppressed,
        "value_column": he.value_column,
        "scale": terms.value_scale,
        "unit": _unit(ctx.contract, he.value_column),
        "sums": total.to_dict(),
        "dp": dp_doc,
    }
    data = json.dumps(doc, ensure_ascii=False, sort_keys=True).encode("utf-8")
    out_table = pa.table(
        {
            **{c: pa.array([key[i] for key in bt.keys]) for i, c in enumerate(he.group_by)},
            "n": pa.array(n, pa.int64()),
        }
    )
    return Output(
        data,
        MEDIA_HE_SUM,
        table=out_table,
        summary={
            "groups": g,
            "suppressed_groups": bt.suppressed,
            "partitions": total.terms,
            "ciphertexts": len(total.ciphertexts),
            "key_fingerprint": pk.fingerprint,
            "epsilon": dp_doc["epsilon"],
            "delta": "0",
            "mechanism": dp_doc["mechanism"],
            "sensitivity": dp_doc["sensitivity"],
            "scale": dp_doc["scale"],
            "ci_halfwidth": dp_doc["ci_halfwidth"],
            "count_sensitivity": dp_doc["count"]["sensitivity"],
            "count_scale": dp_doc["count"]["scale"],
            "count_ci_halfwidth": dp_doc["count"]["ci_halfwidth"],
            "confidence": dp_doc["confidence"],
            "groups_from": dp_doc["groups_from"],
            **extra,
        },
    )


def he_cohort_noise(doc: dict[str, Any] | bytes) -> dict[str, Any] | None:
    """The DP terms of a released he_cohort sum (None for an exact one, or an he_sum result).

    Args:
        doc: the sum job's result (``govdx-he-sum`` JSON, bytes or parsed).

    Returns:
        ``{"mechanism": "discrete_laplace", "epsilon", "delta", "privacy_unit", "bounds",
        "value_scale", "max_groups_per_unit", "groups_from", "confidence", "sensitivity",
        "scale", "ci_halfwidth", "sum": {epsilon, sensitivity, scale, ci_halfwidth}, "count":
        {…}, "ci_note"}``; top-level sensitivity, scale, ci_halfwidth are the sums' (units of
        ``10^-value_scale``), the count's are in privacy units.

    Raises:
        ValueError: not an he_sum result.
    """
    doc = _he_sum_doc(doc)
    dp = doc.get("dp")
    return dict(dp) if isinstance(dp, dict) else None


def _check_two_phase_request(
    data: bytes, *, blinded_set: bool, second_kind: str, label: str, max_items: int
) -> list[str]:
    """Reasons to refuse the request of a two-job protocol (psi_sum, he_cohort): the first job
    carries a blinded set (at most ``max_items`` points), the second a ``second_kind`` message."""
    from privacy._blind import JoinRequest, PsiError, pisum_unpack

    try:
        if not blinded_set:
            pisum_unpack(data, second_kind, f"{label} message")
            return []
        request = JoinRequest.from_bytes(data)
    except PsiError as exc:
        return [f"inputs.request: not a well-formed {label} message ({exc})"]
    if len(request.points) > max_items:
        return [
            f"inputs.request: the request holds {len(request.points)} items, more than "
            f"computation.params.max_items = {max_items}"
        ]
    return []


def _distinct_items(inputs: dict[str, bytes]) -> int | None:
    """Distinct points of a blinded-set request ``J`` (None: the input is not one)."""
    from privacy._blind import JoinRequest, PsiError

    try:
        return len(set(JoinRequest.from_bytes(inputs["request"]).points))
    except (PsiError, KeyError):
        return None


def _k_reasons(items: int | None, policy: Any, why: str) -> list[str]:
    """The submit-time k check of a blinded set (the worker's own check, done before approval).

    Below ``sandbox.psi_min_items`` the service already refuses (its own reason), so this adds a
    reason only for ``psi_min_items ≤ items < min_group_size_k``.
    """
    k = policy.min_group_size_k
    if items is None or items < policy.psi_min_items or items >= k:
        return []
    return [
        f"inputs.request: the request holds {items} distinct item(s), under "
        f"sandbox.min_group_size_k = {k}: {why} (集合规模低于 k)"
    ]
