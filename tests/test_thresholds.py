import math

import numpy as np
import pytest

import numeric
from numeric.thresholds import find_thresholds, grid_bisect

THRESHOLDS = find_thresholds()


@pytest.mark.parametrize("t", THRESHOLDS, ids=lambda t: f"{t.dtype}-{t.name[:40]}")
def test_threshold_matches_its_analytic_value(t):
    assert t.found is not None
    assert t.agrees, (t.found, t.analytic)


@pytest.mark.parametrize("dtype, ln_max", [
    ("float32", math.log(float(np.finfo(np.float32).max))),    # 88.7228…
    ("float16", math.log(65504.0)),                            # 11.0898…
    ("float64", math.log(float(np.finfo(np.float64).max))),    # 709.78…
])
def test_naive_softmax_turns_non_finite_exactly_past_ln_max(dtype, ln_max):
    (good, bad), = [t.found for t in THRESHOLDS if t.dtype == dtype and t.name.startswith("naive softmax")]
    assert good < bad and good <= ln_max + (bad - good) and bad >= ln_max - (bad - good)
    with np.errstate(all="ignore"):
        assert np.isfinite(numeric.evaluate("softmax", np.array([[good, 0.0]]), dtype=dtype, formulation="naive")).all()
        assert not np.isfinite(numeric.evaluate("softmax", np.array([[bad, 0.0]]), dtype=dtype, formulation="naive")).all()
        # the stable formulations stay finite far beyond it
        for f in ("shifted", "logsumexp"):
            assert np.isfinite(numeric.evaluate("softmax", np.array([[bad * 100, 0.0]]), dtype=dtype, formulation=f)).all()


def test_grid_bisect_returns_adjacent_floats():
    a, b = grid_bisect(lambda v: v >= 1.0, 0.5, 2.0, "float32")
    assert b == 1.0 and a == float(np.nextafter(np.float32(1), np.float32(0)))


def test_grid_bisect_rejects_a_bracket_without_a_transition():
    with pytest.raises(ValueError, match="predicate"):
        grid_bisect(lambda v: True, 0.5, 2.0, "float32")
