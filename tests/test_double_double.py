"""Double-double balls (numeric.engines.double_double) and the float64 fast path built on them.

Truth comes from mpmath at 600 bits, exact fractions, and the certified arb reference; every assertion
is about an enclosure (|exact − (hi + lo)| ≤ rad) or a decided rounding that must equal the exact one.
"""
import itertools
import zlib
from fractions import Fraction

import mpmath
import numpy as np
import pytest

import derive
from numeric.engines import double_double as dd
from numeric.engines import fast
from tests.test_speed_paths import adversarial_args, random_args

PREC = 600


def exact_value(h, l):
    return mpmath.mpf(float(h)) + mpmath.mpf(float(l))


def balls(rng, n, magnitudes):
    """n random double-double balls: hi at the given magnitudes, lo below half an ulp of hi, radius
    zero for the first half and up to 2^-100 |hi| for the rest."""
    hi = rng.choice([-1.0, 1.0], n) * np.exp(rng.uniform(*magnitudes, n))
    lo = np.spacing(hi) * rng.uniform(-0.5, 0.5, n)
    rad = np.where(np.arange(n) < n // 2, 0.0, np.abs(hi) * 2.0 ** -100 * rng.uniform(0, 1, n))
    return hi, lo, rad


def points(ball, i):
    """The ball's midpoint and both ends, as mpf."""
    m = exact_value(ball[0][i], ball[1][i])
    r = mpmath.mpf(float(ball[2][i]))
    return [m, m - r, m + r]


def check_enclosure(result, args, truth, i):
    """|truth(point) − mid| ≤ rad for the midpoints and ends of the argument balls (coordinate by
    coordinate: every combination of the ends)."""
    rad = float(result[2][i])
    if not np.isfinite(rad) or not np.isfinite(result[0][i]):
        return False
    mid = exact_value(result[0][i], result[1][i])
    for combo in itertools.product(*(points(a, i) for a in args)):
        want = truth(*combo)
        assert abs(want - mid) <= rad, (i, [float(c) for c in combo], float(mid), float(want), rad)
    return True


BINARY = {"add": (dd.add, lambda a, b: a + b), "sub": (dd.sub, lambda a, b: a - b),
          "mul": (dd.mul, lambda a, b: a * b), "div": (dd.div, lambda a, b: a / b)}


@pytest.mark.parametrize("name", list(BINARY))
def test_binary_operations_enclose_the_exact_result(name):
    rule, truth = BINARY[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    n = 240
    x = balls(rng, n, (-40, 40))
    y = balls(rng, n, (-40, 40))
    # adversarial rows: cancellation (y ≈ −x), huge and subnormal-range products, exact zeros
    y[0][:20] = -x[0][:20] * (1 + rng.integers(-3, 4, 20) * 2.0 ** -52)
    x[0][20:30], y[0][20:30] = 2.0 ** 600, 2.0 ** 400          # product overflows: must not be decided
    x[0][30:40], y[0][30:40] = 3e-160, -7e-161                  # product in the subnormal range
    x[0][40:45] = 0.0
    x[1][40:45] = 0.0
    decided = 0
    with mpmath.workprec(PREC):
        result = rule(x, y)
        for i in range(n):
            decided += check_enclosure(result, (x, y), truth, i)
    assert decided >= n - 20


def test_division_by_a_broadcast_divisor_encloses_the_exact_quotient():
    # e / Σe: the divisor (one per row) is inverted once and multiplied, a different rule from x / y
    rng = np.random.default_rng(12)
    x = balls(rng, 64, (-30, 30))
    x = tuple(v.reshape(8, 8) for v in x)
    y = balls(rng, 8, (-5, 5))
    y = tuple(v.reshape(8, 1) for v in y)
    with mpmath.workprec(PREC):
        result = dd.div(x, y)
        assert result[0].shape == (8, 8)
        for i in range(8):
            for j in range(8):
                mid = exact_value(result[0][i, j], result[1][i, j])
                for a in points(tuple(v[i] for v in x), j):
                    for b in points(tuple(v[:, 0] for v in y), i):
                        assert abs(a / b - mid) <= float(result[2][i, j])


UNARY = {"sqrt": (dd.sqrt, mpmath.sqrt, (-700, 700)), "exp": (dd.exp, mpmath.exp, None),
         "log": (dd.log, mpmath.log, (-700, 700)), "log1p": (dd.log1p, mpmath.log1p, None),
         "abs": (dd.absolute, abs, (-50, 50))}


@pytest.mark.parametrize("name", list(UNARY))
def test_unary_operations_enclose_the_exact_result(name):
    rule, truth, magnitudes = UNARY[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    n = 200
    if name == "exp":     # the whole float64 range of e^x, both underflow and overflow sides
        x = balls(rng, n, (-5, 5))
        x = (np.concatenate([rng.uniform(-760, 715, n - 8), [0, -745.2, -744.9, 709.7, 1e-300, -1e-300, 88.0, -0.0]]),
             np.zeros(n), x[2])
    elif name == "log1p":
        x = balls(rng, n, (-60, 3))
        x = (np.where(x[0] < -0.9, -x[0] * 0.5, x[0]), x[1], x[2])
        x[0][:4] = [2.0 ** -10, -2.0 ** -10, 2.0 ** -10 * (1 + 2.0 ** -52), 1e-300]
    else:
        x = balls(rng, n, magnitudes)
        if name != "abs":
            x = (np.abs(x[0]), np.abs(x[1]), x[2])
    decided = 0
    with mpmath.workprec(PREC):
        result = rule(x)
        for i in range(n):
            decided += check_enclosure(result, (x,), truth, i)
    assert decided >= n * 0.9


@pytest.mark.parametrize("name", ["add", "mul", "div", "sqrt", "exp", "log", "log1p"])
def test_radii_are_small_enough_to_decide_float64(name):
    # a rigorous but useless bound would send everything to arb: on exact random inputs the relative
    # radius stays below 2^-90 (JMP's bounds: 3u² for +, 7u² for ×, 15u² for ÷ at u = 2^-53, u² = 2^-106)
    rng = np.random.default_rng(7)
    x = dd.point(np.exp(rng.uniform(-5, 5, 500)))
    y = dd.point(rng.standard_normal(500))
    out = {"add": lambda: dd.add(x, y), "mul": lambda: dd.mul(x, y), "div": lambda: dd.div(y, x),
           "sqrt": lambda: dd.sqrt(x), "exp": lambda: dd.exp(y), "log": lambda: dd.log(x),
           "log1p": lambda: dd.log1p(x)}[name]()
    relative = out[2] / np.abs(out[0])
    assert np.all(relative <= 2.0 ** -90), relative.max()


def test_float64_decision_claims_only_true_roundings():
    rng = np.random.default_rng(3)
    n = 4000
    h = np.exp(rng.uniform(-700, 700, n)) * rng.choice([-1, 1], n)
    h[:50] = 2.0 ** rng.integers(-1000, 1000, 50)                 # powers of two: spacings differ below/above
    h[50:60] = np.finfo(np.float64).max
    with np.errstate(over="ignore"):
        half = np.where(np.abs(h) == np.finfo(np.float64).max, 2.0 ** 970, np.spacing(h) / 2)
    # lo at, just inside and just outside a midpoint; radius 0 or a few units of 2^-110 |h|
    lo = half * rng.choice([1.0, -1.0, 1 - 2.0 ** -40, -(1 - 2.0 ** -40), 0.25, 0.5 - 2.0 ** -45], n)
    lo[:50] = -np.abs(lo[:50])
    rad = np.where(rng.uniform(size=n) < 0.5, 0.0, np.abs(h) * 2.0 ** -110 * rng.uniform(0, 8, n))
    value, decided = fast.decide_float64(h, lo, rad)
    assert 0 < decided.sum() < n
    for i in np.flatnonzero(decided):
        centre = Fraction(float(h[i])) + Fraction(float(lo[i]))
        for end in (centre - Fraction(float(rad[i])), centre + Fraction(float(rad[i]))):
            try:
                want = float(end)
            except OverflowError:
                want = np.inf * np.sign(float(end))
            assert want == value[i], (h[i], lo[i], rad[i])
    ties = (np.abs(lo) == half) & (rad == 0) & (np.arange(n) >= 50)    # (not at powers of two: lo < 0 there
    # is a whole spacing below)
    assert ties.any() and not decided[ties].any()                 # an exact midpoint is left to arb
    _, zero = fast.decide_float64(np.zeros(2), np.zeros(2), np.array([0.0, dd.ETA]))
    assert zero.tolist() == [True, False]


# --- the fast path for float64 targets against arb ---------------------------------------------------

def exact_rounding(name, args, exact) -> list[np.ndarray]:
    """The float64 rounding of each output's exact value.  ``exact``: the reference's 83-bit values;
    where one lies within 2^-75 of a float64 midpoint its rounding is not settled by 83 bits, and the
    element is recomputed by the arb reference formulation at 4096 bits; nan where even that ball
    holds the midpoint (e.g. a float64 midpoint minus e^-20000: not compared)."""
    import flint

    from numeric.engines.arb_arrays import array_kernel
    rounded, redo = [], []
    for e in exact:
        e = np.asarray(e, dtype=object)
        r = fast._round_mpf(e, np.dtype(np.float64))
        with mpmath.workprec(PREC), np.errstate(over="ignore"):
            half = np.spacing(np.abs(r)) / 2
            near = np.array([v != 0 and abs(abs(mpmath.mpf(v) - mpmath.mpf(float(q))) - mpmath.mpf(float(h)))
                             <= abs(v) * mpmath.mpf(2) ** -75 for v, q, h in zip(e.ravel(), r.ravel(), half.ravel())],
                            dtype=bool).reshape(e.shape)
        rounded.append(r)
        redo.append(near)
    if any(n.any() for n in redo):
        inputs = [np.asarray(np.frompyfunc(flint.arb, 1, 1)(np.asarray(a, dtype=np.float64)), dtype=object)
                  if np.ndim(a) else flint.arb(float(a)) for a in args]
        with flint.ctx.workprec(4096):
            out = array_kernel(derive.get_op(name).reference).run(*inputs)
            for r, o, near in zip(rounded, out, redo):
                for idx in zip(*np.nonzero(near)):
                    ball = o[idx]
                    if not ball.is_finite():        # the reference formulation needs more than 4096 bits here
                        r[idx] = np.nan
                        continue
                    man, exp = ball.mid().man_exp()
                    v = mpmath.mp.make_mpf(mpmath.libmp.from_man_exp(int(man), int(exp)))
                    q = fast._round_mpf(np.array([v], dtype=object), np.dtype(np.float64))[0]
                    with mpmath.workprec(8192):
                        gap = abs(abs(v - mpmath.mpf(float(q))) - mpmath.mpf(float(np.spacing(abs(q)) / 2)))
                        rm, re = ball.rad().man_exp()
                        settled = gap > 2 * mpmath.ldexp(int(rm), int(re)) or rm == 0   # (an exact tie: to even)
                    r[idx] = q if settled else np.nan
    return rounded


LOGITS = {
    "huge logits ±700": lambda rng: rng.choice([-700.0, 700.0], (3, 5)) + rng.standard_normal((3, 5)),
    "logit gaps into the subnormal range": lambda rng: np.array([[0.0, -720.0, -740.0, -744.5, -3.0]]),
    "tiny logits": lambda rng: 1e-300 * rng.standard_normal((2, 4)),
}
COLUMNS = {
    "cancelling variance c + tiny": lambda rng: 1e8 + 2.0 ** -20 * rng.integers(-4, 5, (6, 2)).astype(float),
    "constant column": lambda rng: np.full((4, 2), 0.3),
    "mean 1e200": lambda rng: 1e200 * (1 + 2.0 ** -30 * rng.standard_normal((5, 2))),
}


def float64_cases(name, rng):
    op = derive.get_op(name)
    yield from adversarial_args(name, rng)
    yield "random", random_args(op, {"b": 4, "k": 7, "n": 9, "d": 3}, rng, 3.0)
    columns = any(len(i.axes) == 2 and i.axes[1] == op.independent_axis for i in op.inputs)
    for label, make in (COLUMNS if columns else LOGITS).items():
        first = make(rng)
        if not columns and op.independent_axis != op.inputs[0].axes[0]:
            continue
        lengths = dict(zip(op.inputs[0].axes, first.shape))
        args = [first]
        for inp in op.inputs[1:]:
            args.append(0.5 if not inp.axes else rng.uniform(0.1, 1.0, [lengths.get(a, 3) for a in inp.axes]))
        yield label, tuple(args)


@pytest.mark.parametrize("name", list(derive.OPS))
def test_float64_fast_path_gives_the_arb_reference_correctly_rounded(name):
    from numeric.reference import ReferenceNotCertified, reference
    rng = np.random.default_rng(zlib.crc32(f"dd {name}".encode()))
    fast_total = slow_total = 0
    for label, args in float64_cases(name, rng):
        try:
            exact = reference(name, *args)
        except (ReferenceNotCertified, ValueError):
            continue
        got = fast.rounded_reference(name, *args, dtype="float64")
        exact = exact if isinstance(exact, tuple) else (exact,)
        for g, want in zip(got.values, exact_rounding(name, args, exact)):
            assert g.dtype == np.float64
            settled = ~np.isnan(want)
            np.testing.assert_array_equal(g[settled], want[settled], err_msg=label)
        assert 0 <= got.slow <= got.total == sum(np.size(e) for e in exact)
        slow_total += got.slow
        fast_total += got.total - got.slow
    assert fast_total > slow_total            # the fast path decides most elements of these cases


def test_values_next_to_float64_rounding_boundaries():
    # batchnorm_eval with running_var + eps = 1 and gamma = 1: y = x − running_mean + beta, summed exactly
    # by double-double; 1 + 2^-53 is the midpoint between 1 and its successor (a tie: rounds to even, 1)
    n = 7
    offsets = [0.0, 2.0 ** -100, -2.0 ** -100, 2.0 ** -160, -2.0 ** -160, 2.0 ** -54, -2.0 ** -54]
    x = np.ones((n, 1))
    mean, var, gamma, eps = np.array([-2.0 ** -53]), np.array([0.75]), np.ones(1), 0.25
    got = []
    for b in offsets:
        r = fast.rounded_reference("batchnorm_eval", x[:1], mean, var, gamma, np.array([b]), eps, dtype="float64")
        got.append((r.values[0][0, 0], r.slow))
    for (value, slow), b in zip(got, offsets):
        want = float(1 + Fraction(2) ** -53 + Fraction(b))              # CPython rounds fractions to nearest even
        assert value == want, (b, value, want)
    assert got[0][1] == 1                       # the exact tie took arb
    assert got[5][1] == 0 and got[6][1] == 0    # a quarter ulp from the midpoint: decided by double-double


def test_subnormal_outputs_go_to_arb_and_come_back_exact():
    # gamma = 2^-1070: y = 2^-1070·(x − μ)/σ lands in the subnormal range, where a float64 ball cannot decide
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    got = fast.rounded_reference("batchnorm", x, np.array([2.0 ** -1070]), np.zeros(1), 0.0, dtype="float64")
    # the exact rounding, written out: the nearest multiple of 2^-1074 (mpmath's float() rounds twice here)
    with mpmath.workprec(PREC):
        mu, var = mpmath.mpf(1.5), mpmath.mpf(5) / 4
        want = [mpmath.nint(mpmath.ldexp((v - mu) / mpmath.sqrt(var), 4)) for v in (0.0, 1.0, 2.0, 3.0)]
    assert [float(v) for v in got.values[0][:, 0]] == [float(w) * 2.0 ** -1074 for w in want]
    assert got.slow == 4


def test_float64_targets_of_random_softmax_need_no_arb():
    rng = np.random.default_rng(0)
    got = fast.rounded_reference("softmax", 5 * rng.standard_normal((64, 10)), dtype="float64")
    assert got.slow == 0 and got.total == 640


def test_a_function_without_a_double_double_rule_goes_to_arb_and_says_so(monkeypatch):
    monkeypatch.delitem(fast.DOUBLE_DOUBLE.functions, "exp")
    monkeypatch.setattr(fast, "_PROGRAMS", {})
    z = np.array([[0.0, 1.0, 2.0], [5.0, -1.0, 0.5]])
    got = fast.rounded_reference("softmax", z, dtype="float64")
    assert got.slow == got.total == 6 and "exp" in got.engine_note
    with mpmath.workprec(200):
        for row, values in zip(z, got.values[0]):
            e = [mpmath.exp(mpmath.mpf(v)) for v in row]
            assert values.tolist() == [float(v / sum(e)) for v in e]


def test_a_user_op_with_closed_constants_runs_in_double_double(monkeypatch):
    # examples/custom_op.py: GELU with the closed constant √(2/π) (SymPy's sqrt(2)/sqrt(pi)), registered in
    # a throw-away registry
    from pathlib import Path

    from derive import load_ops, registry
    monkeypatch.setattr(registry, "OPS", dict(registry.OPS))
    monkeypatch.setattr(registry, "_INSTANCES", dict(registry._INSTANCES))
    assert load_ops(Path(__file__).resolve().parent.parent / "examples" / "custom_op.py") == ["gelu", "gelu_backward"]
    from numeric.reference import reference
    x = np.array([[-30.0, -3.0, -0.5], [1e-8, 0.7, 12.0]])
    dy = np.array([[1.0, -2.0, 0.25], [3.0, 0.5, -1.0]])
    for name, args in (("gelu", (x,)), ("gelu_backward", (x, dy))):
        got = fast.rounded_reference(name, *args, dtype="float64")
        exact = reference(name, *args)
        want = exact_rounding(name, args, (exact,))[0]
        np.testing.assert_array_equal(got.values[0], want)
        assert got.slow < got.total


# --- "30 bits beyond": double-double values certified to a number of bits ----------------------------

def arb_truth(name, args, bits=2048):
    """Each output's exact value as mpf, from arb balls at ``bits`` (checked to be 1000 bits accurate or
    a tiny zero)."""
    import flint

    from numeric.engines.arb_arrays import array_kernel
    inputs = [np.asarray(np.frompyfunc(flint.arb, 1, 1)(np.asarray(a, dtype=np.float64)), dtype=object)
              if np.ndim(a) else flint.arb(float(a)) for a in args]
    with flint.ctx.workprec(bits):
        out = array_kernel(derive.get_op(name).reference).run(*inputs)
        result = []
        for o in out:
            values = np.empty(np.shape(o), dtype=object)
            for idx in np.ndindex(np.shape(o)):
                b = o[idx]
                assert b.is_finite() and (b.rel_accuracy_bits() > 1000 or abs(b) < flint.arb(2) ** -1080)
                man, exp = b.mid().man_exp()
                values[idx] = mpmath.mp.make_mpf(mpmath.libmp.from_man_exp(int(man), int(exp)))
            result.append(values)
    return result


@pytest.mark.parametrize("bits", [38, 54, 83, 100])
@pytest.mark.parametrize("name", ["softmax", "cross_entropy_backward", "log_softmax", "batchnorm_backward",
                                  "bce_with_logits", "layer_norm"])
def test_certified_values_are_within_the_asked_bits(name, bits):
    rng = np.random.default_rng(zlib.crc32(f"bits {name} {bits}".encode()))
    fast_count = 0
    for label, args in float64_cases(name, rng):
        try:
            truth = arb_truth(name, args)
        except AssertionError:
            continue                                  # outside what 2048-bit arb settles: not compared
        got = fast.certified_values(name, *args, bits=bits)
        assert got.total == sum(t.size for t in truth) and 0 <= got.slow <= got.total
        fast_count += got.total - got.slow
        with mpmath.workprec(PREC):
            for hi, lo, t in zip(got.hi, got.lo, truth):
                for h, l, v in zip(hi.ravel(), lo.ravel(), t.ravel()):
                    err = abs(mpmath.mpf(float(h)) + mpmath.mpf(float(l)) - v)
                    if abs(v) <= mpmath.mpf(2) ** -1080:
                        assert h == 0 and l == 0 or err <= mpmath.mpf(2) ** -1075, label
                    else:
                        assert err <= abs(v) * mpmath.mpf(2) ** -bits + mpmath.mpf(2) ** -1075, (label, h, l, v)
    assert fast_count > 0


def test_certified_values_reject_bits_beyond_double_double():
    with pytest.raises(ValueError, match="bits"):
        fast.certified_values("softmax", np.zeros((1, 2)), bits=120)


def test_conventions_reach_the_fast_path():
    # cross_entropy with reduction="mean": the batch mean, not the sum (1/3 is not dyadic: a real division)
    from numeric.reference import reference
    rng = np.random.default_rng(4)
    z, y = 3 * rng.standard_normal((3, 5)), rng.uniform(size=(3, 5))
    got = fast.rounded_reference("cross_entropy", z, y, dtype="float64", reduction="mean")
    summed = fast.rounded_reference("cross_entropy", z, y, dtype="float64")
    exact = reference("cross_entropy", z, y, reduction="mean")
    np.testing.assert_array_equal(got.values[0], exact_rounding("cross_entropy[reduction=mean]", (z, y), (exact,))[0])
    assert abs(float(got.values[0]) * 3 - float(summed.values[0])) <= 1e-14 * abs(float(summed.values[0]))
    bits = fast.certified_values("cross_entropy", z, y, bits=83, reduction="mean")
    assert float(bits.hi[0]) == float(got.values[0])
