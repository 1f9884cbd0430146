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
