"""The plan's one-function path of ``reference`` (issue 11: a one-row reference within 1.5× of a plain
python-flint loop): the same values bit for bit as the independent per-element arb path, on adversarial
inputs and on every way of reaching a plan, and the same value checks on every call.
"""
import importlib

import flint
import mpmath
import numpy as np
import pytest
import sympy as sp

from derive import get_op
from derive.codegen import _inline
from derive.registry import OPS
from numeric.arguments import check_arguments
from numeric.engines.arb_arrays import LazyMpf, NotCertified, lazy_if_certified

ref = importlib.import_module("numeric.reference")
reference = ref.reference


def _adversarial(op, rng, style: int, b: int = 2, k: int = 3):
    """Arguments for ``op`` by input role: huge logits, cancelling variances, constant columns (exact
    zeros), a zero eps, constant upstream gradients."""
    out = []
    for inp in op.inputs:
        shape = tuple(b if a in ("b", "n") else k for a in inp.axes)
        if inp.integer:
            out.append(rng.integers(0, k, size=shape))
        elif not inp.axes:
            out.append([1e-5, 0.0, 0.5][style % 3] if inp.role != "temperature" else [0.5, 3.0, 1e-3][style % 3])
        elif inp.role == "logits":
            out.append(rng.standard_normal(shape) * [1, 30, 1][style % 3] + [0, 0, 700][style % 3])
        elif inp.role == "activations":
            x = rng.standard_normal(shape)
            out.append([x, 1e4 + 1e-3 * x, np.broadcast_to(x[:1], shape).copy()][style % 3])
        elif inp.role == "upstream":
            out.append(np.full(shape, 0.25) if style % 3 == 2 else rng.uniform(-1, 1, shape))
        else:
            out.append(np.abs(rng.standard_normal(shape)) + 0.5)
    return out


def _independent(op, args) -> list:
    """The former per-element arb path (per-element kernel, eager mpf conversion) at the checked arguments."""
    checked = check_arguments(op, args, np.dtype(np.float64))
    balls = [np.asarray(np.frompyfunc(flint.arb, 1, 1)(np.asarray(a, dtype=np.float64)), dtype=object)
             for a in checked]
    return [[v._mpf_ for v in np.ravel(o)] for o in ref._by_balls_per_element(op.name, balls)]


def _bits(result) -> list:
    outs = result if isinstance(result, tuple) else (result,)
    for o in outs:
        assert isinstance(o, np.ndarray) and o.dtype == object
    return [[v._mpf_ for v in np.ravel(o)] for o in outs]


@pytest.mark.parametrize("name", list(OPS))
def test_every_way_to_a_plan_gives_the_independent_values_bit_for_bit(name):
    op = get_op(name)
    rng = np.random.default_rng(7)
    for style, b, k in [(0, 2, 3), (1, 2, 3), (2, 2, 3), (0, 1, 4), (2, 1, 4)]:
        args = _adversarial(op, rng, style, b, k)         # (one row: sums are Python loops)
        try:
            want = _independent(op, args)
        except ref.ReferenceNotCertified:                 # undefined (a variance over one row, N − 1 = 0)
            for _ in range(3):
                with pytest.raises(ref.ReferenceNotCertified):
                    reference(name, *args)
            continue
        for _ in range(3):        # the full path, a plan found by its key, the op's last plan
            assert _bits(reference(name, *args)) == want


def test_elements_stay_lazy_mpf_and_constant_columns_give_zeros():
    x = np.array([[0.1, 2.0], [0.1, -1.0], [0.1, 0.75]])          # a constant first column
    for _ in range(3):
        y = reference("batchnorm", x, np.ones(2), np.zeros(2), 1e-5)
        assert all(isinstance(v, mpmath.mpf) and v == 0 for v in y[:, 0])
        assert all(type(v) is LazyMpf and v != 0 for v in y[:, 1])


def test_a_sum_of_finite_values_that_overflows_is_not_taken_for_a_non_finite_value():
    z = np.array([[1e308, 1e308, -1.0]])          # sum(z) is inf in float64; every value is finite
    for _ in range(3):
        s = reference("softmax", z)
        assert all(abs(v - mpmath.mpf(0.5)) <= mpmath.mpf(2) ** -84 for v in s[0, :2])
        assert 0 < s[0, 2] < mpmath.mpf(2) ** -(10 ** 300)
    bad = z.copy()
    bad[0, 2] = np.nan
    with pytest.raises(ValueError, match="'z' must be finite"):
        reference("softmax", bad)


def test_a_scalar_as_python_float_numpy_scalar_or_0d_array_gives_the_same_values():
    op = get_op("batchnorm_backward")
    rng = np.random.default_rng(3)
    x, gamma, dy = rng.standard_normal((3, 2)), rng.standard_normal(2), rng.standard_normal((3, 2))
    want = _independent(op, [x, gamma, dy, 1e-5])
    for eps in (1e-5, np.float64(1e-5), np.asarray(1e-5), 1e-5, np.asarray(1e-5), 1e-5):
        assert _bits(reference("batchnorm_backward", x, gamma, dy, eps)) == want
    single = _independent(op, [x, gamma, dy, np.float32(1e-5)])      # float(np.float32(1e-5)) ≠ 1e-5
    for _ in range(3):
        assert _bits(reference("batchnorm_backward", x, gamma, dy, np.float32(1e-5))) == single


def test_alternating_shapes_dtypes_and_conventions_each_take_their_own_plan():
    rng = np.random.default_rng(5)
    calls = [("softmax", {}, (rng.standard_normal((1, 3)),)),
             ("softmax", {}, (rng.standard_normal((2, 3)),)),
             ("softmax", {}, (rng.standard_normal((1, 3)).astype(np.float32),)),
             ("softmax", {}, (rng.standard_normal((1, 3)).tolist(),)),
             ("cross_entropy", {"labels": "index"}, (rng.standard_normal((2, 3)), np.array([2, 0]))),
             ("cross_entropy", {"labels": "index"}, (rng.standard_normal((2, 3)), np.array([1, 1], dtype=np.int32))),
             ("cross_entropy", {}, (rng.standard_normal((2, 3)), np.full((2, 3), 1 / 3)))]
    wants = [_independent(get_op(name, **params), list(args)) for name, params, args in calls]
    for _ in range(3):
        for (name, params, args), want in zip(calls, wants):
            assert _bits(reference(name, *args, **params)) == want


def test_value_checks_run_on_every_path_to_a_plan():
    op = get_op("cross_entropy", labels="index")
    z, y = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]]), np.array([2, 0])
    for _ in range(3):
        reference(op, z, y)
    for bad_y in (np.array([3, 0]), np.array([0, -1])):
        with pytest.raises(ValueError, match=r"'y' holds class ids in \[0, 3\)"):
            reference(op, z, bad_y)
    for bad in (np.inf, -np.inf, np.nan):
        z2 = z.copy()
        z2[1, 2] = bad
        with pytest.raises(ValueError, match="'z' must be finite"):
            reference(op, z2, y)
    x, gamma, dy = np.ones((3, 2)) * [[1.0], [2.0], [4.0]], np.ones(2), np.ones((3, 2))
    for _ in range(3):
        reference("batchnorm_backward", x, gamma, dy, 1e-5)
    for eps in (-1e-5, np.inf, np.nan, np.float64(-1.0), np.asarray(-2.0)):
        with pytest.raises(ValueError, match="'eps' must be finite and ≥ 0"):
            reference("batchnorm_backward", x, gamma, dy, eps)


@pytest.mark.parametrize("engine", ["gmpy2", "mpmath"])
def test_the_other_engines_plans_check_values_and_repeat_their_values(engine):
    z = np.array([[0.5, -1.0, 2.0]])
    first = _bits(reference("softmax", z, engine=engine))
    for _ in range(2):
        assert _bits(reference("softmax", z, engine=engine)) == first
    z[0, 0] = np.nan
    with pytest.raises(ValueError, match="'z' must be finite"):
        reference("softmax", z, engine=engine)


def test_precision_is_restored_on_plan_hits_fallbacks_and_errors():
    before = flint.ctx.prec
    x = np.array([[1e15], [1e15 + 0.125], [1e15 + 0.25]])     # needs more than 128 bits to certify
    args = [x, np.ones(1), np.array([[1.0], [-2.0], [0.5]]), 0.0]
    want = _independent(get_op("batchnorm_backward"), args)
    for _ in range(3):
        assert _bits(reference("batchnorm_backward", *args)) == want
        assert flint.ctx.prec == before
    with pytest.raises(ValueError):
        reference("batchnorm_backward", x, np.ones(1), args[2], -1.0)
    assert flint.ctx.prec == before


@pytest.mark.parametrize("name", ["batchnorm_backward", "layer_norm_backward"])
def test_a_later_output_needing_more_precision_than_an_earlier_one(name):
    # Σ dy·x̂ is exactly 0 (x̂ odd, dy even about the middle row): at 128 bits dgamma is a ball around 0 that
    # only ~1100 bits settle as a zero, while dx is certified at once.
    op = get_op(name)
    if name == "batchnorm_backward":              # statistics down each column
        x = np.array([[-1.0, -2.0], [0.0, 0.0], [1.0, 2.0]])
        dy = np.array([[1.0, 0.5], [5.0, -3.0], [1.0, 0.5]])
    else:                                         # along each row: x̂ rows opposite, dy rows equal
        x = np.array([[-1.0, 0.0, 1.0], [1.0, 0.0, -1.0]])
        dy = np.array([[1.0, 5.0, 0.5], [1.0, 5.0, 0.5]])
    args = [x, np.linspace(1.0, -0.5, x.shape[1]), dy, 1e-5]
    want = _independent(op, args)
    for _ in range(3):
        got = _bits(reference(name, *args))
        assert got == want
        assert got[1] == [(0, 0, 0, 0)] * len(got[1])     # dgamma: exact zeros


def test_lazy_if_certified_wraps_certified_balls_and_stops_at_the_first_other():
    wrap = lazy_if_certified(83)
    exact = np.array([flint.arb(1.5), flint.arb(-3)], dtype=object)
    out = wrap(exact)
    assert [type(v) for v in out] == [LazyMpf, LazyMpf]
    assert list(out) == [mpmath.mpf(1.5), mpmath.mpf(-3)]
    radius = flint.arb(1) * 2 ** -80                           # |radius/mid| = 2^-80 > 2^-83
    with pytest.raises(NotCertified):
        wrap(np.array([flint.arb(1.5), flint.arb(1, radius)], dtype=object))
    assert isinstance(wrap(np.array(flint.arb(2), dtype=object)), LazyMpf)   # 0-d: a bare element


def test_inline_writes_a_lambdified_body_that_computes_what_the_call_does():
    x, y = sp.symbols("x y")
    expr = sp.exp(x + y) * (x + y) ** 3 + sp.sin(x + y) / y
    fn = sp.lambdify([x, y], expr, modules="numpy", cse=True)
    bound = {}

    def bind(name, value):
        bound[f"G_{name}"] = value
        return f"G_{name}"
    lines, temporaries = _inline(fn, "t_", ["u", "w * 2"], bind)
    assert len(lines) > 2 and len(temporaries) == len(lines) - 1     # cse temporaries, the argument expression
    u, w = np.array([0.25, -1.5]), np.array([0.75, 3.0])
    namespace = dict(bound, u=u, w=w)
    exec("\n".join(lines[:-1]) + f"\nresult = {lines[-1]}", namespace)
    np.testing.assert_array_equal(namespace["result"], fn(u, w * 2))
    assert _inline(lambda a, b: a + b, "t_", ["u", "w"], bind) is None     # not lambdified: called
