"""The per-signature plan of ``reference`` and the shape-specialised kernels it runs.

A plan caches what dtypes and shapes decide; these tests check that it never changes a value (bit for bit
against the full path and against the independent per-element path) and never skips a check that
depends on values (the same errors on a plan hit as on a first call).
"""
import importlib

import flint
import mpmath
import numpy as np
import pytest

from derive import Kernel, get_op
from derive.registry import OPS
from numeric.arguments import check_arguments
from numeric.engines.arb_arrays import array_kernel

ref = importlib.import_module("numeric.reference")
reference = ref.reference


def _args(op, rng, b=3, k=4):
    out = []
    for inp in op.inputs:
        if inp.integer:
            out.append(rng.integers(0, k, size=b))
        elif not inp.axes:
            out.append(1e-5 if inp.name == "eps" else 0.5)
        else:
            x = rng.standard_normal(tuple(b if a in ("b", "n") else k for a in inp.axes))
            if "var" in inp.name:
                x = np.abs(x) + 0.5
            out.append(x)
    return out


def _mpf(values) -> list:
    """Every element's exact (sign, mantissa, exponent, bits) — mpmath.mpf(v) would round to 53 bits."""
    return [v._mpf_ for v in np.ravel(np.asarray(values, dtype=object))]


def _as_tuple(r):
    return r if isinstance(r, tuple) else (r,)


@pytest.mark.parametrize("name", list(OPS))
def test_plan_hits_give_the_full_paths_values_bit_for_bit(name):
    op = get_op(name)
    rng = np.random.default_rng(11)
    for _ in range(2):
        args = _args(op, rng)
        first = _as_tuple(reference(name, *args))       # builds the plan (or reuses one)
        again = _as_tuple(reference(name, *args))       # a plan hit
        full = ref.reference_of(op, check_arguments(op, args, np.dtype(np.float64)))
        balls = [np.asarray(np.frompyfunc(flint.arb, 1, 1)(np.asarray(a, dtype=np.float64)), dtype=object)
                 for a in check_arguments(op, args, np.dtype(np.float64))]
        independent = ref._by_balls_per_element(op.name, balls)
        for a, b, c, d in zip(first, again, full, independent):
            assert _mpf(a) == _mpf(b) == _mpf(c) == _mpf(d)


def test_class_id_inputs_take_the_plan_and_keep_their_range_check():
    op = get_op("cross_entropy", labels="index")
    z = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])
    with mpmath.workdps(40):
        want = sum(mpmath.log(sum(mpmath.exp(v) for v in row)) - row[c] for row, c in zip(z.tolist(), (2, 0)))
        for _ in range(2):
            got = reference(op, z, np.array([2, 0]))
            assert abs(got[()] - want) <= abs(want) * mpmath.mpf(2) ** -80
    with pytest.raises(ValueError, match=r"'y' holds class ids in \[0, 3\)"):
        reference(op, z, np.array([3, 0]))
    with pytest.raises(ValueError, match=r"'y' holds class ids in \[0, 3\)"):
        reference(op, z, np.array([-1, 0]))


@pytest.mark.parametrize("bad, words", [
    (np.inf, ["'z'", "finite"]), (-np.inf, ["'z'", "finite"]), (np.nan, ["'z'", "finite"]),
])
def test_a_plan_hit_still_rejects_non_finite_values(bad, words):
    z = np.array([[0.25, 1.5, -3.0]])
    reference("softmax", z)
    reference("softmax", z)                    # the plan for float64 (1, 3) exists now
    z2 = z.copy()
    z2[0, 1] = bad
    with pytest.raises(ValueError) as info:
        reference("softmax", z2)
    assert all(w in str(info.value) for w in words)


def test_a_plan_hit_still_rejects_non_finite_values_in_large_arrays():
    z = np.linspace(-3, 3, 200).reshape(2, 100)
    reference("softmax", z)
    z[1, 99] = np.nan
    with pytest.raises(ValueError, match="'z' must be finite"):
        reference("softmax", z)


@pytest.mark.parametrize("eps", [-1e-5, np.inf, np.nan])
def test_a_plan_hit_still_checks_the_scalar(eps):
    rng = np.random.default_rng(2)
    x, gamma, dy = rng.standard_normal((4, 2)), rng.standard_normal(2), rng.standard_normal((4, 2))
    reference("batchnorm_backward", x, gamma, dy, 1e-5)
    reference("batchnorm_backward", x, gamma, dy, 1e-5)
    with pytest.raises(ValueError, match="'eps' must be finite and ≥ 0"):
        reference("batchnorm_backward", x, gamma, dy, eps)


def test_other_dtypes_and_python_scalars_give_the_float64_values():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 2)).astype(np.float32)
    gamma, dy = rng.standard_normal(2).astype(np.float32), rng.standard_normal((3, 2))
    want = [_mpf(o) for o in reference("batchnorm_backward", x.astype(np.float64), gamma.astype(np.float64), dy,
                                       np.float64(1e-3))]
    for _ in range(2):
        got = reference("batchnorm_backward", x, gamma, dy.tolist(), 1e-3)
        assert [_mpf(o) for o in got] == want


def test_shape_and_kind_errors_are_unchanged_after_plans_exist():
    reference("softmax", np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"'z' must have shape \(B, K\)"):
        reference("softmax", np.ones(2))
    with pytest.raises(TypeError, match="'z' must hold floating-point values"):
        reference("softmax", np.ones((1, 2), dtype=np.int64))
    with pytest.raises(TypeError, match="softmax takes 1 arguments"):
        reference("softmax", np.ones((1, 2)), np.ones((1, 2)))


def test_a_stale_plan_is_rebuilt_not_used():
    z = np.array([[1.0, 2.0]])
    reference("softmax", z)
    key, _ = ref._signature(get_op("softmax"), "arb", (z,))
    plan = ref._PLANS[key]
    ref._PLANS[key] = ref._Plan(object(), "arb", plan.kinds, plan.shapes)   # as if the op had been replaced
    ref._LAST.clear()           # (a replaced op is a new object, so its id never finds the old op's last plan)
    got = reference("softmax", z)
    with mpmath.workdps(40):
        e = [mpmath.exp(1), mpmath.exp(2)]
        assert all(abs(g - w / sum(e)) <= w / sum(e) * mpmath.mpf(2) ** -83 for g, w in zip(got[0], e))
    assert ref._PLANS[key].op is get_op("softmax")


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("backend", ["numpy", "arb"])
def test_specialised_kernels_equal_run_bit_for_bit(name, backend):
    op = get_op(name)
    rng = np.random.default_rng(3)
    for form in op.formulations.values():
        for b, k in ((1, 1), (3, 4), (1, 4)):
            args = _args(op, rng, b, k)
            kernel = Kernel(form, "numpy") if backend == "numpy" else array_kernel(form)
            if backend == "arb":
                args = [np.asarray(np.frompyfunc(flint.arb, 1, 1)(np.asarray(a, dtype=np.float64)), dtype=object)
                        for a in args]
            else:
                args = [np.asarray(a, dtype=np.float64) if not op.inputs[i].integer else a
                        for i, a in enumerate(args)]
            with np.errstate(all="ignore"), flint.ctx.workprec(128):
                want = kernel.run(*args)
                got = kernel.specialise([np.shape(a) for a in args])(*args)
            assert len(got) == len(want)
            for g, w in zip(got, want):
                assert np.shape(g) == np.shape(w)
                if backend == "numpy":
                    assert np.asarray(g).dtype == np.asarray(w).dtype
                    np.testing.assert_array_equal(g, w)
                else:
                    for u, v in zip(np.ravel(g), np.ravel(w)):
                        assert u.mid().man_exp() == v.mid().man_exp() and u.rad() == v.rad() \
                            if u.is_finite() else not v.is_finite()


def test_specialised_numpy_kernel_still_refuses_a_dtype_change():
    kernel = Kernel(get_op("softmax").reference, "numpy")
    fn = kernel.specialise([(1, 3)])
    assert fn(np.zeros((1, 3), dtype=np.float32))[0].dtype == np.float32
    upcast = Kernel(get_op("softmax").reference, "numpy")
    upcast.functions["e"] = lambda z: np.exp(z.astype(np.float64))
    with pytest.raises(TypeError, match="step 'e' of formulation .* changed the working dtype float32 to float64"):
        upcast.specialise([(1, 3)])(np.zeros((1, 3), dtype=np.float32))


def test_specialised_kernels_share_one_code_object_and_keep_their_own_shapes():
    kernel = Kernel(get_op("softmax").reference, "numpy")
    small, large = kernel.specialise([(2, 5)]), kernel.specialise([(3, 7)])
    assert small.__code__ is large.__code__ and kernel.specialise([(2, 5)]) is small
    for fn, shape in ((small, (2, 5)), (large, (3, 7)), (small, (2, 5))):
        z = np.arange(float(np.prod(shape))).reshape(shape) / 7
        np.testing.assert_array_equal(fn(z)[0], kernel.run(z)[0])
