"""Exhaustive sweeps: parsing, grids, ULPs, the overflow set against an independent threshold, the CLI."""
from __future__ import annotations

import math

import ml_dtypes
import mpmath
import numpy as np
import pytest

from numeric.cli import main
from numeric.exhaustive import make_plan, parse_element, parse_fix, parse_size, write_exhaustive
from numeric.exhaustive.chunk import ulps_against
from numeric.exhaustive.grid import value_grid
from numeric.exhaustive.overflow import first_grid_value_above, overflow_bound
from numeric.exhaustive.run import run_plan
from numeric.exhaustive.spec import Element
from numeric.metrics import error_metrics


# ---------------------------------------------------------------- parsing


def test_parse_element_and_fix():
    assert parse_element(" z[0, 12] ") == Element("z", (0, 12))
    assert parse_element("eps") == Element("eps", ())
    element, value = parse_fix("z=[[0, 1.5, -2e3], [.5, 3., 1E-2]]")
    assert element == Element("z", ()) and value.tolist() == [[0, 1.5, -2000], [0.5, 3, 0.01]]
    element, value = parse_fix("z[0,1]=-2.5")
    assert element == Element("z", (0, 1)) and float(value) == -2.5
    assert parse_size("k=16") == ("k", 16)


@pytest.mark.parametrize("text", ["z[0,", "z[-1]", "0z", "z[a]", "z[0]]", "__import__('os')", ""])
def test_bad_elements_name_the_argument(text):
    with pytest.raises(ValueError, match="--vary: expected NAME or NAME"):
        parse_element(text, argument="--vary")


@pytest.mark.parametrize("text, message", [
    ("z", "expected NAME=VALUE"),
    ("z=[[1,2],[3]]", "different lengths"),
    ("z=[[1,2,x]]", "cannot read"),
    ("z=[1,2", "unclosed"),
    ("z=[1 2]", "expected , or ]"),
    ("z=[1],[2]", "unexpected text after"),
    ("z[0]=[1,2]", "one element takes one number"),
    ("z=1e999", "must be finite"),
    ("z=__import__('os')", "cannot read"),
])
def test_bad_fix_values_name_the_argument(text, message):
    with pytest.raises(ValueError, match=message):
        parse_fix(text, argument="--fix")


# ---------------------------------------------------------------- grids and ULPs


@pytest.mark.parametrize("dtype, exponent_bits, mantissa_bits", [("bfloat16", 8, 7), ("float16", 5, 10)])
def test_the_grid_is_every_finite_value_once(dtype, exponent_bits, mantissa_bits):
    # 2^16 patterns minus the inf/nan ones (top exponent: 2 signs × 2^mantissa) minus −0 (same value as +0)
    expected = 2 ** 16 - 2 * 2 ** mantissa_bits - 1
    grid = value_grid(dtype)
    assert grid.complete and grid.values.size == expected
    assert np.all(np.diff(grid.values) > 0)
    largest = (2 - 2.0 ** -mantissa_bits) * 2.0 ** (2 ** (exponent_bits - 1) - 1)
    assert grid.values[-1] == largest and grid.values[0] == -largest
    smallest = 2.0 ** (2 - 2 ** (exponent_bits - 1) - mantissa_bits)
    assert grid.values[grid.values > 0][0] == smallest


def test_float32_grid_is_a_sample_and_says_so():
    grid = value_grid("float32", samples=1000)
    assert not grid.complete and 999 <= grid.values.size <= 1001 and 0.0 in grid.values
    assert grid.values[-1] == float(np.finfo(np.float32).max)
    assert "a sample of" in grid.describe()
    assert np.all(grid.values.astype(np.float32).astype(np.float64) == grid.values)


def test_ulps_agree_with_the_mpmath_metric():
    rng = np.random.default_rng(3)
    ref = rng.standard_normal(300) * 10.0 ** rng.integers(-9, 4, 300)
    got = (ref * (1 + rng.standard_normal(300) * 1e-3)).astype(np.float16)
    got[:3] = [0, np.inf, np.nan]
    mine, flushed = ulps_against(got.astype(np.float64), ref, "float16")
    theirs = error_metrics(got, np.array([mpmath.mpf(x) for x in ref], dtype=object), "float16")
    both = np.isfinite(theirs.ulps)
    assert np.array_equal(np.isfinite(mine), both)
    assert np.allclose(mine[both], theirs.ulps[both], rtol=1e-12, atol=0)
    assert np.array_equal(flushed, theirs.flush)


def test_first_grid_value_above_matches_a_scan_of_the_grid():
    grid = value_grid("bfloat16").values
    for x in [mpmath.log(overflow_bound("bfloat16")), mpmath.mpf(-1.3), mpmath.mpf(0), mpmath.mpf("1e-45"),
              mpmath.mpf(grid[40000])]:
        assert first_grid_value_above(x, "bfloat16") == grid[np.searchsorted(grid, float(x), side="left")
                                                             if float(x) not in grid else np.searchsorted(grid, float(x))]


# ---------------------------------------------------------------- the run


@pytest.fixture(scope="module")
def softmax_bf16(tmp_path_factory):
    """naive softmax of (v, 0.5, -1) in bfloat16 for every v: plan, merged result, report text."""
    plan = make_plan("softmax", "bfloat16", [parse_element("z[0,0]")], fixed=[parse_fix("z=[[0, 0.5, -1]]")],
                     formulations=["naive", "shifted"])
    out = tmp_path_factory.mktemp("exhaustive")
    paths = write_exhaustive(plan, out, show_progress=False)
    return plan, run_plan(plan, show_progress=False), paths[0].read_text(), paths


def test_overflow_set_is_exactly_from_the_first_bfloat16_above_ln_omega(softmax_bf16):
    plan, result, text, _ = softmax_bf16
    # independent: exp(v) rounds to inf in bfloat16 once exp(v) ≥ (2 − 2^-8)·2^127; the smallest bfloat16 ≥ that
    # logarithm, found by scanning every bfloat16 bit pattern (the sum 1.6… + exp(v) cannot overflow earlier)
    with mpmath.workprec(200):
        threshold = mpmath.log((2 - mpmath.mpf(2) ** -8) * mpmath.mpf(2) ** 127)
    with np.errstate(invalid="ignore"):
        values = np.arange(2 ** 16, dtype=np.uint16).view(ml_dtypes.bfloat16).astype(np.float64)
    finite = np.unique(values[np.isfinite(values)])
    first = min(v for v in finite if v >= threshold)
    assert first == 89.0
    grid = value_grid("bfloat16").values
    runs = result["forms"]["naive"]["nonfinite_runs"]
    assert len(runs) == 1
    a, b = runs[0]
    assert grid[a] == first and b == grid.size
    assert result["forms"]["shifted"]["nonfinite_runs"] == []
    assert "the first bfloat16 value ≥ v*, from the dtype's own rounding, is 89.0" in text
    assert "v* = 88.7208840768372" in text and mpmath.nstr(threshold, 15) == "88.7208840768372"
    assert text.count("**equals** the analytic set; the outputs are inf/nan exactly there.") == 2


def test_every_point_and_element_is_counted(softmax_bf16):
    plan, result, _, _ = softmax_bf16
    assert result["points"] == 65279 and result["uncertified"] == 0
    for form in result["forms"].values():
        assert form["elements"] == 3 * 65279
        judged = form["exact"] + sum(form["hist"])
        assert judged + form["nonfinite_elements"] + form["flush"] == form["elements"]


def test_worst_case_error_is_recomputed_independently(softmax_bf16):
    plan, result, _, _ = softmax_bf16
    grid = value_grid("bfloat16").values
    for ulps, point, element, got, ref in result["forms"]["shifted"]["worst"][:3]:
        z = [mpmath.mpf(grid[point]), mpmath.mpf(0.5), mpmath.mpf(-1)]
        with mpmath.workprec(300):
            exact = mpmath.exp(z[element]) / mpmath.fsum(mpmath.exp(t) for t in z)
            _, e = mpmath.frexp(exact)
            ulp = mpmath.mpf(2) ** (max(int(e) - 1, -126) - 7)
            assert float(abs(mpmath.mpf(got) - exact) / ulp) == pytest.approx(ulps, rel=1e-9)


def test_the_report_bytes_do_not_depend_on_the_chunking(softmax_bf16, tmp_path):
    plan, _, _, paths = softmax_bf16
    again = write_exhaustive(plan, tmp_path, points_per_chunk=7001, show_progress=False)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]


def test_unbatched_op_with_a_loss_summed_over_the_batch(tmp_path):
    """cross_entropy's loss sums over rows, so each point is its own call; float32 grid sampled."""
    plan = make_plan("cross_entropy", "float32", [parse_element("z[0,1]")],
                     fixed=[parse_fix("z=[[0.0, 1.0]]"), parse_fix("y=[[0.0, 1.0]]")], formulations=["naive"],
                     samples=101)
    result = run_plan(plan, show_progress=False)
    grid = value_grid("float32", samples=101).values
    bad = np.zeros(grid.size, bool)
    for a, b in result["forms"]["naive"]["nonfinite_runs"]:
        bad[a:b] = True
    # independent: L = log(1 + e^v) − v·1 … the naive exp(v) overflows float32 once v ≥ ln((2 − 2^-24)·2^127)
    threshold = math.log((2 - 2.0 ** -24) * 2.0 ** 127)
    assert not bad[(grid > 0) & (grid < threshold)].any()
    assert bad[grid > threshold].all()


# ---------------------------------------------------------------- command line


@pytest.mark.parametrize("argv, message", [
    (["softmax", "--dtype", "bfloat16", "--vary", "z[0,"], "--vary: expected NAME or NAME[i,j]"),
    (["softmax", "--dtype", "bf16", "--vary", "z[0,0]"], "--dtype must be one of"),
    (["softmax", "--dtype", "float64", "--vary", "z[0,0]"], "--dtype must be float16, bfloat16 or float32"),
    (["softmax", "--dtype", "bfloat16", "--vary", "y[0,0]"], "softmax has no input 'y'"),
    (["softmax", "--dtype", "bfloat16", "--vary", "z[0,9]"], "out of range for axis 1 of length 8"),
    (["softmax", "--dtype", "bfloat16", "--vary", "z[0,0]", "--vary", "z[0,0]"], "the two elements are the same"),
    (["softmax", "--dtype", "bfloat16", "--vary", "z[0,0]", "--vary", "z[0,1]", "--vary", "z[0,2]"], "one or two"),
    (["softmax", "--dtype", "bfloat16", "--vary", "z[0,0]", "--fix", "z=[[1,2],[3]]"], "different lengths"),
    (["softmax", "--dtype", "bfloat16", "--vary", "z[0,0]", "--formulation", "fast"], "--formulation must be one of"),
    (["softmax", "--dtype", "bfloat16", "--vary", "z[0,0]", "--scheduler", "nowhere"], "scheduler must be an address"),
    (["softmax", "--dtype", "bfloat16", "--vary", "z[0,0]", "--size", "q=3"], "softmax has no axis 'q'"),
    (["nosuchop", "--dtype", "bfloat16", "--vary", "z[0,0]"], "op must be one of"),
    (["softmax", "--dtype", "bfloat16"], "--vary"),
])
def test_usage_errors_exit_2_with_one_line(argv, message, capsys):
    assert main(["exhaustive", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_writes_the_report(tmp_path, capsys):
    assert main(["exhaustive", "softmax", "--dtype", "float16", "--vary", "z[0,1]", "--fix", "z=[[1.0, 0.0]]",
                 "--formulation", "naive", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.split()
    assert out == [str(tmp_path / "exhaustive-softmax-float16-z_0_1.md"),
                   str(tmp_path / "figures" / "exhaustive-softmax-float16-z_0_1.png")]
    text = (tmp_path / "exhaustive-softmax-float16-z_0_1.md").read_text()
    # float16: exp overflows once v ≥ ln((2 − 2^-11)·2^15) = 11.0900…; the float16 grid spacing there is 2^-7
    assert "outputs inf/nan: [11.09375, 65504.0]" in text
    assert (tmp_path / "figures" / "exhaustive-softmax-float16-z_0_1.png").read_bytes()[:4] == b"\x89PNG"


def test_two_elements_run_over_grid_times_grid():
    """naive softmax of (a, b, 0) in float16 on a 41-value sample of each: inf/nan exactly where exp(a) or exp(b)
    overflows, i.e. max(a, b) ≥ ln((2 − 2^-11)·2^15) (a sum that overflows alone gives e/inf = 0, finite)."""
    plan = make_plan("softmax", "float16", [parse_element("z[0,0]"), parse_element("z[0,1]")],
                     fixed=[parse_fix("z=[[0.0, 0.0, 0.0]]")], formulations=["naive"], samples=41)
    grid = value_grid("float16", samples=41).values
    assert plan["points"] == grid.size ** 2
    result = run_plan(plan, show_progress=False, points_per_chunk=300)
    bad = np.zeros(grid.size ** 2, bool)
    for a, b in result["forms"]["naive"]["nonfinite_runs"]:
        bad[a:b] = True
    threshold = math.log((2 - 2.0 ** -11) * 2.0 ** 15)
    first, second = np.meshgrid(grid, grid, indexing="ij")
    assert np.array_equal(bad, (np.maximum(first, second) > threshold).ravel())
    assert "point_max" not in result["forms"]["naive"]
