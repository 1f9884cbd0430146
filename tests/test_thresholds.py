import math

import numpy as np
import pytest

import numeric
from numeric.thresholds import find_thresholds, grid_bisect, grid_search

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


@pytest.mark.parametrize("dtype, at", [("float32", 1.0), ("float64", 1e300), ("float16", 3.0), ("float64", 1.0)])
def test_grid_search_returns_the_adjacent_pair_bisection_finds(dtype, at):
    dt = np.dtype(dtype)
    lo, hi = (0.5, 2.0) if at == 1.0 else (at / 10, float(np.finfo(dt).max))
    scan = lambda values: np.asarray(values) >= at       # noqa: E731
    assert grid_search(scan, lo, hi, dtype) == grid_bisect(lambda v: v >= at, lo, hi, dtype)
    a, b = grid_search(scan, lo, hi, dtype)
    assert b == at and a == float(np.nextafter(dt.type(at), dt.type(0)))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_first_failure_on_a_16_bit_grid_is_the_first_even_off_a_monotone_predicate(dtype):
    """Failures that come and go (one isolated bad value before the steady ones, as the one-pass variance
    gives): every representable value is asked, so the isolated one is found, not the steady onset."""
    from numeric.dtypes import resolve_dtype
    from numeric.thresholds import first_failure

    dt = resolve_dtype(dtype)
    grid = np.unique(np.geomspace(1.0, 1000.0, 400).astype(dt).astype(np.float64))
    between = np.unique(np.linspace(2.0, 4.0, 4097).astype(dt).astype(np.float64))    # every value in [2, 4]
    isolated = float(next(v for v in between[1:] if v not in grid))     # off the 400-point log grid
    below = float(between[np.flatnonzero(between == isolated)[0] - 1])
    bad = lambda v: v == isolated or v >= 100.0                            # noqa: E731
    found = first_failure(bad, 1.0, 1000.0, dtype, scan=lambda values: np.array([bad(v) for v in values]))
    assert found == (below, isolated)               # a grid scan alone would have reported the onset at 100


@pytest.mark.parametrize("op", ["softmax", "layer_norm", "cross_entropy", "batchnorm", "log_softmax_backward"])
def test_stacked_probes_are_the_one_row_probes_side_by_side(op):
    from derive import get_op
    from numeric.thresholds import probe_inputs, stacked_probes

    the_op = get_op(op)
    values = np.array([1.0, 2.5, 1e4])
    for sign in (1.0, -1.0):
        stacked = stacked_probes(op, values, sign)
        one = [probe_inputs(op, float(m), sign) for m in values]
        for k, inp in enumerate(the_op.inputs):
            if the_op.independent_axis in inp.axes:
                expected = np.concatenate([p[k] for p in one], axis=inp.axes.index(the_op.independent_axis))
            else:
                expected = one[0][k]
            np.testing.assert_array_equal(stacked[k], expected)
    activations = next(i for i in the_op.inputs if i.axes and not i.integer).role == "activations"
    first = probe_inputs(op, 7.0)[0]
    assert (sorted(set(first.ravel())) == [6.0, 8.0]) if activations else (first.ravel()[0] == 7.0 and not first.ravel()[1:].any())


def test_the_one_pass_variance_threshold_in_float16_is_the_first_failure():
    """Every float16 m in [1, a] keeps the one-pass batch norm finite on x = m ± 1 (each m evaluated alone,
    one feature), and m = b does not: the pair is the first failure, below the 400-point grid's 35.6875."""
    (a, b), = [t.found for t in THRESHOLDS if t.dtype == "float16" and t.name.startswith("one-pass")]

    def breaks(m):
        x = np.array([[m - 1.0], [m + 1.0]])
        with np.errstate(all="ignore"):
            y = numeric.evaluate("batchnorm", x, np.ones(1), np.zeros(1), 0.0, dtype="float16", formulation="one_pass")
        return not np.isfinite(np.asarray(y, dtype=np.float64)).all()
    codes = np.arange(np.float16(1).view(np.uint16), np.float16(a).view(np.uint16) + 1, dtype=np.uint16)
    assert not any(breaks(float(m)) for m in codes.view(np.float16).astype(np.float64))
    assert breaks(b) and float(np.nextafter(np.float16(a), np.float16(np.inf))) == b


@pytest.mark.parametrize("group_flag", [False, True])
def test_first_below_finds_an_isolated_failure_before_the_one_a_grid_found(group_flag):
    """Where probes cannot be stacked, every value up to the grid's failure is asked: flagged values (or a
    whole flagged group, as when a sum over rows hides which probe failed) one row at a time."""
    from numeric.thresholds import _first_below

    dt = np.dtype(np.float16)
    isolated, onset = 3.3203125, 100.0                       # float16 values
    bad = lambda v: v == isolated or v >= onset              # noqa: E731
    chunk = lambda values: ((np.zeros(len(values), bool), bool(np.isin(isolated, values)))  # noqa: E731
                            if group_flag else (np.array([bad(v) for v in values]), False))
    below = float(np.nextafter(np.float16(isolated), np.float16(0)))
    assert _first_below(bad, 1.0, (99.9375, onset), dt, chunk) == (below, isolated)
    assert _first_below(bad, 1.0, (99.9375, onset), dt) == (below, isolated)
    assert _first_below(lambda v: v >= onset, 1.0, (99.9375, onset), dt, chunk) == (99.9375, onset)


def test_a_group_flagged_by_a_sum_overflow_is_halved_not_asked_value_by_value():
    """A stacked sum over many large probes overflows where no single probe does (a false whole-group flag):
    the flagged group is halved until the halves clear, so the one-row predicate is asked a few times, not
    at every grid value, and the answer is the one-at-a-time scan's."""
    from numeric.thresholds import first_failure

    dt = np.dtype(np.float32)
    onset = 5000.0
    asked = []

    def predicate(v):
        asked.append(v)
        return v >= onset

    def chunk(values):          # per-value flags of the true failures; the group flag once the sum is large
        return values >= onset, bool(values.sum() > 20000.0)

    scan_all = first_failure(lambda v: v >= onset, 1.0, 1e6, dt)
    found = first_failure(predicate, 1.0, 1e6, dt, chunk=chunk)
    assert found == scan_all and found[0] < onset <= found[1]
    assert len(asked) < 80, len(asked)        # grid bisection ~23 calls + the small flagged groups


def test_layer_norm_backward_one_pass_threshold_matches_the_one_row_predicate():
    """layer_norm_backward sums dγ over the rows (no stacked scan), yet its float16 one-pass threshold is a
    real transition of the one-row predicate and no sampled value below it fails."""
    from numeric.thresholds import op_thresholds, probe_inputs

    (t,) = [t for t in op_thresholds("layer_norm_backward", ("float16",)) if "`one_pass`" in t.name]
    a, b = t.found

    def fails(m):
        with np.errstate(all="ignore"):
            out = numeric.evaluate("layer_norm_backward", *probe_inputs("layer_norm_backward", m), dtype="float16",
                                   formulation="one_pass")
        return not all(np.isfinite(np.asarray(o, dtype=np.float64)).all() for o in out)
    assert fails(b) and not fails(a)
    codes = np.arange(np.float16(1).view(np.uint16), np.float16(a).view(np.uint16), dtype=np.uint16)
    sample = np.random.default_rng(0).choice(codes, 200, replace=False).view(np.float16).astype(np.float64)
    assert not any(fails(float(m)) for m in sample)


def test_every_code_scan_falls_back_to_one_row_at_a_time_where_the_stacked_scan_disagrees():
    """A stacked scan that flags the wrong value (as a stacked evaluation could) is not believed: every
    code is asked of the one-row predicate, and the first transition is its."""
    from numeric.thresholds import _first_of_every_code

    dt = np.dtype(np.float16)
    onset = 40.0
    wrong = lambda values: values >= 20.0                      # noqa: E731 — flags 20, where nothing fails
    below = float(np.nextafter(np.float16(onset), np.float16(0)))
    assert _first_of_every_code(lambda v: v >= onset, wrong, 1.0, 100.0, dt) == (below, onset)
    assert _first_of_every_code(lambda v: v >= 0.5, wrong, 1.0, 100.0, dt) is None     # fails from the start
    assert _first_of_every_code(lambda v: False, lambda values: values >= 20.0, 1.0, 100.0, dt) is None
