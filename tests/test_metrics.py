import math

import mpmath
import numpy as np
import pytest

from numeric.dtypes import DTYPES
from numeric.metrics import error_metrics, ulp_at


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "bfloat16"])
def test_ulp_matches_numpy_spacing(dtype):
    dt = DTYPES[dtype]
    values = np.array([1.0, 1.5, 3.0, 1e-3, 7.0, 0.3, 100.0]).astype(dt)
    for v in values:
        assert ulp_at(mpmath.mpf(float(v)), dt) == float(np.spacing(np.abs(np.array(v, dtype=dt))))


def test_subnormal_and_zero_spacing_is_the_smallest_subnormal():
    assert ulp_at(mpmath.mpf(0), "float16") == 2.0 ** -24
    assert ulp_at(mpmath.mpf(2.0 ** -140), "float32") == 2.0 ** -149
    assert ulp_at(mpmath.mpf(2.0 ** -30), "float32") == 2.0 ** -53


def test_one_ulp_off_is_one_ulp_and_one_bit():
    ref = np.array([mpmath.mpf(1) / 3], dtype=object)
    got = np.nextafter(np.float32(1 / 3), np.float32(1), dtype=np.float32)
    m = error_metrics(np.array([got]), ref, "float32")
    exact = abs(mpmath.mpf(float(got)) - mpmath.mpf(1) / 3) / 2.0 ** -25
    assert m.ulps[0] == pytest.approx(float(exact), rel=1e-12)
    assert 1 < m.ulps[0] < 2 and 1 < m.bits[0] < math.log2(3)


def test_inf_nan_and_flush_are_counted_apart():
    ref = np.array([mpmath.mpf(1), mpmath.mpf(2), mpmath.mpf("1e-6"), mpmath.mpf(0)], dtype=object)
    got = np.array([np.inf, np.nan, 0.0, 0.0], dtype=np.float32)
    m = error_metrics(got, ref, "float32")
    s = m.summary()
    assert (s["inf"], s["nan"], s["flush"]) == (1, 1, 1)
    assert np.isnan(m.ulps).all() and m.abs_at_zero[3] == 0      # exact 0: no ULPs, absolute error 0
    assert s["pct_nonfinite"] == 50.0


def _oracle(g: float, r, dtype):
    """(ULPs, relative error, flushed, |g| ÷ smallest normal at r = 0) of one element, in 300-bit mpmath
    straight from the definitions in numeric/metrics.py's docstring (ulp from the dtype's p and emin)."""
    info = ml_finfo(dtype)
    p, emin = int(info.nmant) + 1, int(info.minexp)
    if not math.isfinite(g):
        return math.nan, math.nan, False, math.nan
    with mpmath.workprec(300):
        if r == 0:
            return math.nan, math.nan, False, abs(g) / float(info.smallest_normal)
        if g == 0 and abs(r) > mpmath.mpf(float(info.smallest_subnormal)) / 2:
            return math.nan, math.nan, True, math.nan
        e = max(int(mpmath.floor(mpmath.log(abs(r), 2))), emin)
        ulp = mpmath.ldexp(1, e - p + 1)
        diff = abs(mpmath.mpf(g) - r)
        return float(diff / ulp), float(diff / abs(r)), False, math.nan


def ml_finfo(dtype):
    from numeric.dtypes import finfo
    return finfo(dtype)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_vectorised_metrics_equal_the_definition_on_adversarial_elements(dtype):
    """References at 90 bits: random, next to powers of two, in the dtype's and float64's subnormal range,
    beyond float64's range, exact zeros and exact grid points / midpoints; results correctly rounded,
    a few ULPs off, 0 (flushed or not), inf and nan."""
    dt = DTYPES[dtype]
    info = ml_finfo(dtype)
    rng = np.random.default_rng(7)
    refs = []
    with mpmath.workprec(90):
        for _ in range(200):
            refs.append(mpmath.mpf(rng.normal()) * mpmath.exp(mpmath.mpf(rng.uniform(-8, 8))) / 3)
        for k in (-3, 0, 1, 5):
            two = mpmath.ldexp(1, k)
            refs += [two, two * (1 - mpmath.ldexp(1, -70)), two * (1 + mpmath.ldexp(1, -70))]
        tiny = mpmath.mpf(float(info.smallest_subnormal))
        refs += [tiny * 3, tiny / 2, tiny / 3, tiny * mpmath.mpf("0.75"), -tiny * 5,
                 mpmath.ldexp(1, -1076), mpmath.ldexp(3, -1077), mpmath.ldexp(1, -1030) / 3,
                 mpmath.ldexp(1, 1030) * 3, -mpmath.ldexp(1, 2000), mpmath.mpf(0)]
        grid = np.array([1.0, 1.5, 0.1]).astype(dt).astype(np.float64)
        refs += [mpmath.mpf(float(v)) for v in grid]
        refs += [(mpmath.mpf(float(v)) + mpmath.mpf(float(np.nextafter(np.array(v, dt), np.array(2, dt)))))/2
                 for v in grid]
    ref = np.array(refs, dtype=object)
    near = np.array([float(r) for r in refs]).astype(dt)
    shifts = rng.integers(-3, 4, size=near.size)
    got = near.copy()
    for i, k in enumerate(shifts):
        for _ in range(abs(int(k))):
            got[i] = np.nextafter(got[i], np.array(np.inf if k > 0 else -np.inf, dtype=dt))
    got[::17] = 0
    got[5], got[6] = np.array(np.inf, dt), np.array(np.nan, dt)
    m = error_metrics(got, ref, dtype)
    for i, (g, r) in enumerate(zip(got.astype(np.float64), refs)):
        ulps, rel, flush, at_zero = _oracle(float(g), r, dtype)
        assert m.flush[i] == flush, (i, g, r)
        for name, value, want in (("ulps", m.ulps[i], ulps), ("rel", m.rel[i], rel),
                                  ("abs_at_zero", m.abs_at_zero[i], at_zero)):
            assert (math.isnan(value) and math.isnan(want)) or value == pytest.approx(want, rel=2 ** -50, abs=0), \
                (name, i, g, r, value, want)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_metrics_of_the_lazily_converted_reference_keep_its_digits(dtype):
    """numeric.reference returns lazily converted mpf elements; their ULP errors must come from all 83+
    bits (fractional in float64), equal to the definition against softmax computed here in mpmath."""
    from numeric import reference

    z = np.random.default_rng(1).normal(size=(3, 5))
    got = (np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)).astype(DTYPES[dtype])
    m = error_metrics(got, reference("softmax", z), dtype)
    with mpmath.workprec(300):
        for i, j in np.ndindex(z.shape):
            exact = mpmath.exp(z[i, j]) / mpmath.fsum(mpmath.exp(v) for v in z[i])
            assert m.ulps[i, j] == pytest.approx(_oracle(float(got[i, j]), exact, dtype)[0], rel=2 ** -40)
    assert (m.ulps != np.round(m.ulps)).any()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_zero_results_next_to_half_the_smallest_subnormal_are_flushes_exactly_when_above_it(dtype):
    """got = 0 against references at, just above and just below half the dtype's smallest subnormal
    (the rounding boundary to 0), 90-bit values whose float64 images tie there."""
    with mpmath.workprec(90):
        half = mpmath.mpf(float(ml_finfo(dtype).smallest_subnormal)) / 2
        refs = [half, half * (1 + mpmath.ldexp(1, -70)), half * (1 - mpmath.ldexp(1, -70)), 3 * half,
                -half * (1 + mpmath.ldexp(1, -70)), -half, mpmath.mpf(1) / 3]
    got = np.zeros(len(refs), dtype=DTYPES[dtype])
    m = error_metrics(got, np.array(refs, dtype=object), dtype)
    for i, r in enumerate(refs):
        ulps, rel, flush, _ = _oracle(0.0, r, dtype)
        assert m.flush[i] == flush, (i, r)
        assert (math.isnan(m.ulps[i]) and math.isnan(ulps)) or m.ulps[i] == pytest.approx(ulps, rel=2 ** -50)
