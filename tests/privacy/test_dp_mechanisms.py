"""privacy._dp: exact budgets, calibrated OpenDP mechanisms (map(d_in) ≤ ε), and one
statistical test that released noise follows the declared discrete Laplace scale."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from privacy._dp import (
    DpError,
    laplace_accuracy,
    make_quantile,
    make_vector_laplace,
    parse_budget,
    release_vector,
    release_vectors,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("1/11", Fraction(1, 11), id="fraction-text"),
        pytest.param("0.1", Fraction(1, 10), id="decimal-text"),
        pytest.param(0.1, Fraction(1, 10), id="float-shortest-repr"),
        pytest.param(2, Fraction(2), id="int"),
    ],
)
def test_parse_budget_is_exact(value, expected):
    assert parse_budget(value) == expected


def test_eleven_elevenths_make_exactly_one():
    assert sum([parse_budget("1/11")] * 11, Fraction(0)) == 1


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(float("nan"), id="nan"),
        pytest.param("NaN", id="nan-text"),
        pytest.param(float("inf"), id="inf"),
        pytest.param(0, id="zero"),
        pytest.param("-1/2", id="negative"),
        pytest.param("abc", id="text"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="none"),
    ],
)
def test_parse_budget_refuses(bad):
    with pytest.raises(DpError, match="epsilon"):
        parse_budget(bad)


def test_delta_zero_allowed_only_when_asked():
    assert parse_budget(0, key="delta", allow_zero=True) == 0
    with pytest.raises(DpError, match="delta: must be > 0"):
        parse_budget(0, key="delta")


def test_vector_laplace_map_is_exact():
    meas, scale = make_vector_laplace(2, Fraction(1, 2))
    assert scale == 4.0
    assert meas.map(2) == 0.5
    assert meas.map(1) == 0.25


@pytest.mark.parametrize("sens", [1, 3, 40_000])
@pytest.mark.parametrize("eps", ["1/11", "0.3", "1/3"])
def test_vector_laplace_never_exceeds_epsilon(sens, eps):
    e = Fraction(eps)
    meas, scale = make_vector_laplace(sens, e)
    assert Fraction(meas.map(sens)) <= e
    # the scale is the smallest float that satisfies it (one ulp less would overspend or tie)
    assert scale == pytest.approx(float(sens / e), rel=1e-12)


def test_vector_laplace_refuses_bad_sensitivity():
    with pytest.raises(DpError, match="sensitivity"):
        make_vector_laplace(0, Fraction(1))


def test_quantile_map_is_linear_and_within_epsilon():
    eps = Fraction(1, 2)
    meas, _ = make_quantile(list(range(0, 101, 10)), 0.5, 3, eps)
    assert Fraction(meas.map(3)) <= eps
    for k in (1, 2, 3):
        assert Fraction(meas.map(k)) <= k * eps / 3
    assert meas.map(3) == pytest.approx(0.5, rel=1e-5)  # not over-noised
    assert meas(list(range(101))) in range(0, 101, 10)


def test_quantile_refuses_bad_candidates():
    with pytest.raises(DpError, match="strictly increasing"):
        make_quantile([5, 5, 6], 0.5, 1, Fraction(1))


def test_laplace_accuracy_matches_the_closed_form():
    # P(|X| ≥ k) = 2 q^k / (1 + q) for discrete Laplace(t), q = e^{-1/t}
    t, conf = 4.0, 0.95
    a = laplace_accuracy(t, conf)
    q = math.exp(-1 / t)
    k = math.ceil(a)
    assert 2 * q**k / (1 + q) <= 1 - conf + 1e-12
    assert 2 * q ** (k - 1) / (1 + q) > 1 - conf  # the bound is tight to one unit
    with pytest.raises(DpError, match="confidence"):
        laplace_accuracy(t, 1.0)


def _one_call(meas, truth):
    return np.asarray(release_vector(meas, truth.tolist()))


def _two_threads(meas, truth):
    """The same vector released as two halves drawn concurrently (numpy in, numpy out)."""
    half = len(truth) // 2
    out = release_vectors([(meas, truth[:half]), (meas, truth[half:])], threads=2)
    assert all(a.dtype == np.int64 for a in out)
    return np.concatenate(out)


@pytest.mark.parametrize("draw", [_one_call, _two_threads], ids=["release_vector", "threads"])
def test_released_noise_matches_the_declared_scale(draw):
    """OpenDP samples from the OS CSPRNG and cannot be seeded; instead n = 200,000 draws and
    six-standard-error tolerances make a false failure ≈ 2·10⁻⁹ while a 5 % error in the scale
    (E|X| moves by ≈ 0.2 ≫ 0.06) fails every time."""
    meas, scale = make_vector_laplace(2, Fraction(1, 2))  # declared scale 4
    n = 200_000
    truth = np.arange(n, dtype=np.int64) % 7
    noise = draw(meas, truth) - truth
    q = math.exp(-1 / scale)
    p0 = (1 - q) / (1 + q)
    mean_abs = 2 * q / (1 - q * q)
    second = 2 * q / (1 - q) ** 2
    sd_abs = math.sqrt(second - mean_abs**2)
    assert abs(noise.mean()) < 6 * math.sqrt(second / n)
    assert abs(np.abs(noise).mean() - mean_abs) < 6 * sd_abs / math.sqrt(n)
    assert abs((noise == 0).mean() - p0) < 6 * math.sqrt(p0 * (1 - p0) / n)
    assert abs((noise**2).mean() - second) < 0.04 * second  # ≈ 7 standard errors


def test_release_vectors_keeps_the_order_and_the_scales_of_its_draws():
    """A count vector (scale 4) and a sum vector (scale 80,000) drawn together: each output
    belongs to its own measurement (the sum's noise is ≈ 20,000× wider)."""
    count, _ = make_vector_laplace(2, Fraction(1, 2))
    total, _ = make_vector_laplace(40_000, Fraction(1, 2))
    truth = np.full(5_000, 1_000_000, dtype=np.int64)
    c, s = release_vectors([(count, truth), (total, truth)], threads=2)
    assert c.shape == s.shape == (5_000,)
    assert np.abs(c - truth).mean() < 10 < 10_000 < np.abs(s - truth).mean()


def test_release_vectors_refuses_non_integers():
    meas, _ = make_vector_laplace(1, Fraction(1))
    with pytest.raises(DpError, match="integers"):
        release_vectors([(meas, np.array([0.5, 1.0]))])


@pytest.mark.parametrize(
    "text",
    ["1e999999999", "1e-100000", "1" * 31, "1/" + "9" * 31, "١", "٠.٥", "0x1", "1_000", "1e+100"],
)
def test_budget_text_outside_the_accepted_form_is_refused_at_once(text):
    """A huge exponent would make Fraction build a 10^999999999 integer (a hung API worker);
    non-ASCII digits (str.isdigit accepts them) and Python literal forms are not budgets.
    Refused by the pattern, before any big-integer arithmetic (the old code never returned)."""
    with pytest.raises(DpError, match="not a number in the accepted form"):
        parse_budget(text)


def test_budget_bounds_on_ints_and_decimals():
    from decimal import Decimal

    with pytest.raises(DpError, match="out of range"):
        parse_budget(10**40)
    with pytest.raises(DpError, match="out of range"):
        parse_budget(Decimal("1e-999999"))
    assert parse_budget("1e-3") == Fraction(1, 1000)
    assert parse_budget(".5") == Fraction(1, 2)
    assert parse_budget("+3/4") == Fraction(3, 4)
