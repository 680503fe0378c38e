"""Differential-privacy mechanisms (差分隐私机制) as pure values, over OpenDP.

Every mechanism here is an OpenDP ``Measurement`` built with ``make_*``: it answers
``map(d_in)`` (the privacy loss ε for inputs at distance ``d_in``) without touching data, so the
policy and the budget ledger can check ε before anything runs (STYLE.md §5). Noise is drawn
only by OpenDP's exact samplers (discrete Laplace via Canonne–Kamath–Steinke 2020, the
exponential mechanism for quantiles); no noise is ever drawn here from floating-point
randomness, which leaks through the low bits of the result (Mironov, "On Significance of the
Least Significant Bits for Differential Privacy", CCS 2012).

All released values are integers (counts, sums of values rounded to whole units, quantile
candidates), so only OpenDP's ``contrib`` feature is enabled — not ``floating-point``, which
would allow float-valued Laplace whose privacy proof rests on an idealised float model.

Budgets are exact rationals (:class:`fractions.Fraction`): a requested ε is parsed from its
decimal or ``p/q`` text, never summed as floats, and every mechanism is calibrated so that
OpenDP's own (conservatively rounded) ``map(d_in)`` is ≤ that rational.

Source: OpenDP 0.16 Python API (``opendp.measurements.make_laplace``,
``make_private_quantile``, ``opendp.accuracy.discrete_laplacian_scale_to_accuracy``),
https://docs.opendp.org/en/v0.16.0/.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

import numpy as np

from privacy._errors import PrivacyError

_ENABLED = False


class DpError(PrivacyError, ValueError):
    """A differential-privacy parameter is invalid or a mechanism cannot be built (差分隐私参数错误)."""


def enable_opendp() -> Any:
    """Enable OpenDP's ``contrib`` feature (once per process) and return ``opendp.prelude``.

    ``contrib`` is required by every constructor used here (``make_laplace``,
    ``make_private_quantile``); ``floating-point`` is deliberately not enabled (see the module
    docstring).
    """
    global _ENABLED
    import opendp.prelude as dp

    if not _ENABLED:
        dp.enable_features("contrib")
        _ENABLED = True
    return dp


#: Exponent bound of a privacy parameter written as text or Decimal: Fraction("1e999999999")
#: would build a 10^999999999 integer (minutes of CPU, a denial of service of the API).
_MAX_EXPONENT = 30
#: ε/δ text: ASCII only (``str.isdigit`` also accepts other scripts' digits), bounded length.
_BUDGET_TEXT = re.compile(
    r"[+-]?(?:[0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})(?:[eE][+-]?[0-9]{1,2})?"
    r"|[+-]?[0-9]{1,30}/[0-9]{1,30}",
    re.ASCII,
)


def parse_budget(value: Any, *, key: str = "epsilon", allow_zero: bool = False) -> Fraction:
    """Parse a privacy parameter (ε or δ) to an exact rational.

    Args:
        value: an int, a decimal string (``"0.1"``), a fraction string (``"1/11"``), a
            :class:`~decimal.Decimal`, a :class:`~fractions.Fraction`, or a float (read by its
            shortest decimal form, so ``0.1`` means exactly 1/10).
        key: the name used in error messages (``computation.params.epsilon``).
        allow_zero: accept 0 (for δ).

    Returns:
        The value as a :class:`~fractions.Fraction`.

    Raises:
        DpError: not a number, NaN, infinite, negative, or zero when ``allow_zero`` is false.

    Examples:
        >>> parse_budget("1/11") * 11 == 1
        True
        >>> parse_budget(0.1)
        Fraction(1, 10)
    """
    if isinstance(value, bool) or value is None:
        raise DpError(f"{key}: {value!r} is not a number")
    try:
        if isinstance(value, Fraction):
            out = value
        elif isinstance(value, int):
            if abs(value) >= 10**_MAX_EXPONENT:
                raise DpError(f"{key}: {value} is out of range (at most 10^{_MAX_EXPONENT})")
            out = Fraction(value)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise DpError(f"{key}: {value!r} is not a finite number (NaN/inf refused)")
            out = Fraction(Decimal(repr(value)))
        elif isinstance(value, Decimal):
            if not value.is_finite():
                raise DpError(f"{key}: {value!r} is not a finite number (NaN/inf refused)")
            if abs(value.adjusted()) > _MAX_EXPONENT or len(value.as_tuple().digits) > 30:
                raise DpError(f"{key}: {value!r} is out of range (exponent within ±30)")
            out = Fraction(value)
        elif isinstance(value, str):
            text = value.strip()
            if text.lower() in {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity"}:
                raise DpError(f"{key}: {value!r} is not a finite number (NaN/inf refused)")
            if not _BUDGET_TEXT.fullmatch(text):
                shown = value if len(value) <= 40 else value[:40] + "…"
                raise DpError(
                    f"{key}: {shown!r} is not a number in the accepted form: ASCII digits as a "
                    "decimal (0.5, 1e-3; at most 30 digits, a 1–2 digit exponent) or a fraction "
                    "(1/11) (隐私预算格式错误)"
                )
            out = Fraction(text)
        else:
            raise DpError(f"{key}: {value!r} is not a number")
    except (ValueError, ZeroDivisionError, InvalidOperation) as exc:
        if isinstance(exc, DpError):
            raise
        raise DpError(f"{key}: {value!r} is not a number (use 0.5 or 1/11)") from exc
    if out < 0 or (out == 0 and not allow_zero):
        raise DpError(f"{key}: must be {'≥' if allow_zero else '>'} 0, got {fraction_text(out)}")
    return out


def fraction_text(x: Fraction) -> str:
    """``"p/q"`` (or ``"p"`` when q = 1): the exact text form stored in the ledger."""
    return str(x)


def _as_fraction(x: Any) -> Fraction:
    """The exact rational value of OpenDP's (float) map output: no rounding."""
    return Fraction(x)


def calibrate_scale(
    make: Callable[[float], Any], *, d_in: Any, epsilon: Fraction, guess: float
) -> tuple[Any, float]:
    """Smallest float scale (searched upward from ``guess``) whose measurement's ``map(d_in)``,
    read as an exact rational, is ≤ ``epsilon``.

    Args:
        make: builds the measurement for a scale.
        d_in: the input distance the loss is charged at (e.g. the L1 sensitivity).
        epsilon: the ε the requester pays (exact).
        guess: a first scale (e.g. ``d_in / ε``).

    Returns:
        ``(measurement, scale)``.

    Raises:
        DpError: OpenDP refuses the construction, or no scale is found.
    """
    from opendp.mod import OpenDPException

    scale = float(guess)
    if not math.isfinite(scale) or scale <= 0:
        raise DpError(f"cannot calibrate noise: scale {guess!r} is not a positive number")
    try:
        for _ in range(4096):
            meas = make(scale)
            if _as_fraction(meas.map(d_in)) <= epsilon:
                return meas, scale
            scale = math.nextafter(scale, math.inf) if _ < 64 else scale * (1 + 2**-40)
    except OpenDPException as exc:
        raise DpError(f"OpenDP refused the mechanism: {exc.message or exc}") from exc
    raise DpError(f"no noise scale meets ε = {fraction_text(epsilon)} at d_in = {d_in}")


def make_vector_laplace(sensitivity: int, epsilon: Fraction) -> tuple[Any, float]:
    """The discrete Laplace mechanism over a vector of integers (counts or sums), calibrated so
    that ``map(sensitivity) ≤ ε``.

    OpenDP: ``make_laplace(vector_domain(atom_domain(T=i64)), l1_distance(T=i64), scale)``;
    privacy map ``ε = d_in / scale`` (pure ε-DP, MaxDivergence); noise from the exact discrete
    Laplace sampler.

    Args:
        sensitivity: L1 sensitivity of the vector (integer units, ≥ 1).
        epsilon: ε charged (exact, > 0).

    Returns:
        ``(measurement, scale)``: a measurement ``list[int] → list[int]`` of any length, and the
        noise scale (standard deviation = scale · √2 for the continuous analogue).

    Raises:
        DpError: sensitivity < 1 or ε ≤ 0.

    Examples:
        >>> m, scale = make_vector_laplace(2, Fraction(1, 2))
        >>> scale, m.map(2) <= 0.5
        (4.0, True)
    """
    if int(sensitivity) < 1:
        raise DpError(f"sensitivity must be ≥ 1, got {sensitivity}")
    if epsilon <= 0:
        raise DpError("epsilon must be > 0")
    dp = enable_opendp()
    space = dp.vector_domain(dp.atom_domain(T=dp.i64)), dp.l1_distance(T=dp.i64)
    return calibrate_scale(
        lambda s: dp.m.make_laplace(*space, scale=s),
        d_in=int(sensitivity),
        epsilon=epsilon,
        guess=float(Fraction(int(sensitivity)) / epsilon),
    )


def make_quantile(
    candidates: Sequence[int], alpha: float, contributions: int, epsilon: Fraction
) -> tuple[Any, float]:
    """The exponential-mechanism quantile over integer candidates, calibrated so that
    ``map(k) ≤ k · ε / contributions`` for every k ≤ ``contributions`` (hence ``map(m) ≤ ε``).

    OpenDP: ``make_private_quantile(vector_domain(atom_domain(T=i64)), symmetric_distance(),
    max_divergence(), candidates, alpha, scale)`` (Smith 2011; permute-and-flip, McKenna &
    Sheldon 2020). Its map is linear in ``d_in``; the per-k check makes the sum over disjoint
    groups of ``map(m_g)`` with ``Σ m_g ≤ m`` at most ε (used for grouped quantiles).

    Args:
        candidates: strictly increasing integer candidates (public).
        alpha: the quantile in [0, 1] (0.5 = median).
        contributions: rows per privacy unit (the symmetric distance of neighbours), ≥ 1.
        epsilon: ε charged.

    Returns:
        ``(measurement, scale)``: ``list[int] → int`` (one of the candidates).

    Raises:
        DpError: bad candidates or alpha, or OpenDP refuses.
    """
    if len(candidates) < 2 or any(b <= a for a, b in itertools.pairwise(candidates)):
        raise DpError("quantile candidates must be ≥ 2 strictly increasing integers")
    if not 0.0 <= alpha <= 1.0 or not math.isfinite(alpha):
        raise DpError(f"alpha must be in [0, 1], got {alpha!r}")
    m = int(contributions)
    dp = enable_opendp()
    domain = dp.vector_domain(dp.atom_domain(T=dp.i64))

    def make(s: float) -> Any:
        return dp.m.make_private_quantile(
            domain,
            dp.symmetric_distance(),
            dp.max_divergence(),
            candidates=[int(c) for c in candidates],
            alpha=float(alpha),
            scale=s,
        )

    try:  # the map is ∝ 1/scale: read it at scale 1 for the first guess
        at_one = _as_fraction(make(1.0).map(m))
    except Exception as exc:  # OpenDPException: bad candidates/alpha for OpenDP
        raise DpError(f"OpenDP refused the quantile: {exc}") from exc
    meas, scale = calibrate_scale(make, d_in=m, epsilon=epsilon, guess=float(at_one / epsilon))
    per_unit = epsilon / m
    while not all(_as_fraction(meas.map(k)) <= k * per_unit for k in range(1, m + 1)):
        meas, scale = calibrate_scale(
            make, d_in=m, epsilon=epsilon, guess=math.nextafter(scale * 1.000001, math.inf)
        )
    return meas, scale


def laplace_accuracy(scale: float, confidence: float) -> float:
    """Half-width ``a`` with P(|noise| ≥ a) ≤ 1 − confidence for discrete Laplace(``scale``).

    OpenDP ``discrete_laplacian_scale_to_accuracy(scale, alpha=1 − confidence)``.

    Raises:
        DpError: confidence outside (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise DpError(f"confidence must be in (0, 1), got {confidence!r}")
    dp = enable_opendp()
    return float(dp.discrete_laplacian_scale_to_accuracy(float(scale), 1.0 - float(confidence)))


def release_vector(measurement: Any, values: Sequence[int] | np.ndarray) -> list[int]:
    """Run a vector measurement on integers: noise is drawn by OpenDP only.

    Args:
        measurement: an OpenDP measurement ``Vec<i64> → Vec<i64>`` (:func:`make_vector_laplace`).
        values: the exact integers, a sequence or a numpy ``int64[n]`` array (passed to OpenDP
            as one buffer, no per-element Python conversion).

    Returns:
        ``list[int]`` of length n: the noisy values.

    Raises:
        DpError: OpenDP failed (overflow, bad input type).
    """
    return [int(v) for v in _invoke(measurement, _as_i64(values))]


def release_vectors(
    draws: Sequence[tuple[Any, Sequence[int] | np.ndarray]], *, threads: int = 2
) -> list[np.ndarray]:
    """Run several vector measurements, each on its own exact vector, concurrently.

    Each call is OpenDP's measurement on the exact values (``measurement(values)``), exactly as
    :func:`release_vector`; nothing is drawn ahead of the data. OpenDP's Python binding calls
    its Rust library through ``ctypes.CDLL``, which releases the GIL for the call, so two draws
    run on two cores (measured: two 2,846-cell discrete-Laplace vectors 32 ms one after the
    other, 19 ms on two threads).

    Args:
        draws: ``(measurement, values)`` pairs; values a numpy ``int64[n]`` array or a sequence.
        threads: worker threads (1 = one after the other in the calling thread).

    Returns:
        One numpy ``int64[n]`` array of noisy values per draw, in the order given.

    Raises:
        DpError: OpenDP failed on one of the draws.
    """
    jobs = [(m, _as_i64(v)) for m, v in draws]
    # a thread costs ≈ 0.1–1 ms to start: below ≈ 1,000 cells (≈ 5 ms of sampling) one thread
    if threads <= 1 or len(jobs) <= 1 or sum(len(v) for _, v in jobs) < _PARALLEL_CELLS:
        return [np.asarray(_invoke(m, v), dtype=np.int64) for m, v in jobs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(threads, len(jobs)) - 1) as pool:
        futures = [pool.submit(_invoke, m, v) for m, v in jobs[1:]]
        first = np.asarray(_invoke(*jobs[0]), dtype=np.int64)  # the calling thread draws too
        return [first, *(np.asarray(f.result(), dtype=np.int64) for f in futures)]


#: Cells (over all draws) from which :func:`release_vectors` uses threads.
_PARALLEL_CELLS = 1_000


def _as_i64(values: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype != np.int64:
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise DpError(f"a DP vector must hold integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
    return np.ascontiguousarray(arr)


def _invoke(measurement: Any, values: np.ndarray) -> Any:
    from opendp.mod import OpenDPException

    try:
        return measurement(values)
    except OpenDPException as exc:
        raise DpError(f"OpenDP could not release the vector: {exc.message or exc}") from exc
