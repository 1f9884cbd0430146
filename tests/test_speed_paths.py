"""The fast paths compute what the slow definitions compute.

* sensitivities: the batched JVP (all directions in one pass) against the former definition, one numpy JVP
  per direction, for every op in ``derive.OPS`` on random shapes and values.
"""
import importlib
import zlib

import numpy as np
import pytest

import derive
from numeric import condition

LENGTHS = [{"b": 1, "k": 1, "n": 1, "d": 1}, {"b": 3, "k": 5, "n": 7, "d": 2}, {"b": 2, "k": 9, "n": 33, "d": 3}]


def random_args(op, lengths, rng, scale):
    """Arguments of ``op`` with every array axis at its length in ``lengths`` (scalars: ½, a valid ε or
    temperature)."""
    args = []
    for inp in op.inputs:
        if not inp.axes:
            args.append(0.5)
        else:
            args.append(scale * rng.standard_normal([lengths[a] for a in inp.axes]))
    return tuple(args)


@pytest.mark.parametrize("name", list(derive.OPS))
@pytest.mark.parametrize("lengths", LENGTHS, ids=lambda l: "x".join(map(str, l.values())))
@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_batched_sensitivities_equal_the_per_direction_definition(name, lengths, scale, monkeypatch):
    monkeypatch.setattr(condition, "STRUCTURED_FROM", 0)        # the structured path even for small inputs
    # (at logit spreads of hundreds both computations lose the tiny sensitivities of outputs ~1e-90 to
    # float64 cancellation, each differently: no reference to compare with there)
    rng = np.random.default_rng(zlib.crc32(f"{name} {scale} {lengths}".encode()))
    args = random_args(derive.get_op(name), lengths, rng, scale)
    values_new, new = condition._values_and_sensitivities(name, args)
    values_old, old = condition._values_and_sensitivities_per_direction(name, args)
    assert len(new) == len(old)
    # the same Jacobian entries, rounded in another order: an entry that cancels to 0 (x − μ with N = 1)
    # leaves a residue of a few u times its terms, far below 1e-12 of the op's largest sensitivity
    scale = max(np.max(np.abs(o[np.isfinite(o)]), initial=0.0) for o in old)
    for n, o in zip(new, old):
        assert n.shape == o.shape
        np.testing.assert_allclose(n, o, rtol=1e-12, atol=1e-12 * scale)


def test_batched_sensitivities_of_softmax_match_the_closed_form():
    # Σ_j |s_i (δ_ij − s_j)| |z_j| = s_i (1 − s_i)|z_i| + s_i Σ_{j≠i} s_j |z_j|, written out independently
    z = np.array([[0.5, -2.0, 3.0, 0.0], [100.0, 99.0, -50.0, 1e-3]])
    s = np.exp(z - z.max(axis=1, keepdims=True))
    s /= s.sum(axis=1, keepdims=True)
    want = s * (1 - s) * np.abs(z) + s * ((s * np.abs(z)).sum(axis=1, keepdims=True) - s * np.abs(z))
    np.testing.assert_allclose(condition.sensitivities("softmax", z), want, rtol=1e-12)


def test_sensitivities_of_softmax_backward_match_the_closed_form():
    # dz_i = s_i (dy_i − c), c = Σ s_k dy_k:  ∂dz_i/∂z_j = s_i (δ_ij − s_j)(dy_i − c) − s_i s_j (dy_j − c),
    # ∂dz_i/∂dy_j = s_i (δ_ij − s_j); summed with |z_j|, |dy_j| — written out here with explicit loops
    rng = np.random.default_rng(5)
    z, dy = 3 * rng.standard_normal((3, 6)), rng.standard_normal((3, 6))
    want = np.zeros_like(z)
    for b in range(3):
        e = np.exp(z[b] - z[b].max())
        s = e / e.sum()
        c = (s * dy[b]).sum()
        for i in range(6):
            for j in range(6):
                d = 1.0 if i == j else 0.0
                want[b, i] += abs(s[i] * (d - s[j]) * (dy[b, i] - c) - s[i] * s[j] * (dy[b, j] - c)) * abs(z[b, j])
                want[b, i] += abs(s[i] * (d - s[j])) * abs(dy[b, j])
    np.testing.assert_allclose(condition.sensitivities("softmax_backward", z, dy), want, rtol=1e-12)


def test_directions_are_chunked_without_changing_the_result(monkeypatch):
    rng = np.random.default_rng(3)
    args = (rng.standard_normal((40, 3)), rng.standard_normal(3), rng.standard_normal((40, 3)), 1e-5)
    whole = condition.sensitivities("batchnorm_backward", *args)
    monkeypatch.setattr(condition, "CHUNK_ELEMENTS", 1)         # one direction per run
    monkeypatch.setattr(importlib.import_module("numeric.jacobian_structure"), "CHUNK_ELEMENTS", 1)
    for a, b in zip(whole, condition.sensitivities("batchnorm_backward", *args)):
        np.testing.assert_allclose(a, b, rtol=1e-14)


# --- certified reference: whole-array arb against the former per-element arb path -------------------

ADVERSARIAL = {
    "huge logits": lambda rng: 1e4 * rng.standard_normal((3, 6)),
    "logits one apart at 1e4": lambda rng: 1e4 + np.arange(6.0)[None, :] - rng.integers(0, 3, (3, 1)),
    "tiny logits": lambda rng: 1e-300 * rng.standard_normal((2, 5)),
}
BATCHES = {
    "mean 1e15, spread 1e-3": lambda rng: 1e15 + 0.125 * rng.integers(-8, 8, (6, 2)).astype(float),
    "constant column": lambda rng: np.concatenate([np.full((5, 1), 0.1), rng.standard_normal((5, 1))], axis=1),
    "variance 1e8": lambda rng: 1e4 * rng.standard_normal((7, 3)),
}


def adversarial_args(name, rng):
    """(label, args) pairs of ``name``'s inputs built from the cases above, by the op's input axes."""
    op = derive.get_op(name)
    cases = BATCHES if any(len(i.axes) == 2 and i.axes[1] == op.independent_axis for i in op.inputs) else ADVERSARIAL
    for label, make in cases.items():
        first = make(rng)
        lengths = dict(zip(op.inputs[0].axes, first.shape))
        args = [first]
        for inp in op.inputs[1:]:
            if not inp.axes:
                args.append(0.0 if "1e15" in label else 1e-5)
            else:
                args.append(rng.standard_normal([lengths.get(a, 3) for a in inp.axes]))
        yield label, tuple(args)


def _agree(a, b, bits=83):
    import mpmath
    for x, y in zip(np.ravel(a), np.ravel(b)):
        if y == 0:
            assert x == 0
        else:
            assert abs(x - y) <= abs(y) * mpmath.mpf(2) ** (1 - bits), (x, y)


@pytest.mark.parametrize("name", list(derive.OPS))
def test_array_reference_agrees_with_the_per_element_path_on_adversarial_inputs(name):
    ref_module = importlib.import_module("numeric.reference")    # the package re-exports the function
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    op = derive.get_op(name)
    for label, args in adversarial_args(name, rng):
        arrays = ref_module.check_arguments(op, args, np.dtype(np.float64))
        inputs = [ref_module._to_engine("arb", a) for a in arrays]
        try:
            old = ref_module._by_balls_per_element(name, inputs)
        except ref_module.ReferenceNotCertified:             # outside the op's domain (e.g. a negative variance)
            with pytest.raises(ref_module.ReferenceNotCertified):
                ref_module._by_balls(name, inputs)
            continue
        new = ref_module._by_balls(name, inputs)
        for n, o in zip(new, old):
            assert n.shape == o.shape, label
            _agree(n, o)


def test_lazy_elements_behave_as_mpf():
    import copy
    import pickle

    import mpmath
    from numeric.reference import reference
    got = reference("softmax", np.array([[0.0, np.log(3.0)]]))
    assert all(isinstance(v, mpmath.mpf) for v in got.ravel())
    with mpmath.workdps(40):
        total = got[0, 0] + got[0, 1]
        assert abs(total - 1) < mpmath.mpf(2) ** -80
    assert float(got[0, 0]) == pytest.approx(0.25, rel=1e-15)
    back = pickle.loads(pickle.dumps(got))
    assert back[0, 1] == got[0, 1] and type(back[0, 1]) is type(mpmath.mpf(1))
    assert copy.deepcopy(got[0, 0]) == got[0, 0] and hash(got[0, 0]) == hash(mpmath.mp.make_mpf(got[0, 0]._mpf_))


# --- fast certified path: float64 balls against arb --------------------------------------------------

import mpmath  # noqa: E402

from numeric.engines import fast  # noqa: E402


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("name", list(derive.OPS))
def test_fast_path_gives_the_arb_reference_correctly_rounded(name, dtype):
    from numeric.reference import ReferenceNotCertified, reference
    rng = np.random.default_rng(zlib.crc32(f"{name} {dtype}".encode()))
    cases = list(adversarial_args(name, rng))
    op = derive.get_op(name)
    cases += [("random", random_args(op, {"b": 4, "k": 7, "n": 9, "d": 3}, rng, 3.0))]
    for label, args in cases:
        try:
            exact = reference(name, *args)
        except ReferenceNotCertified:       # arb cannot settle this input (domain, or > MAX_BITS): nothing to compare
            continue
        got = fast.rounded_reference(name, *args, dtype=dtype)
        exact = exact if isinstance(exact, tuple) else (exact,)
        for g, e in zip(got.values, exact):
            want = fast._round_mpf(e, g.dtype)
            assert g.dtype == np.dtype(want.dtype)
            np.testing.assert_array_equal(g.astype(np.float64), want.astype(np.float64), err_msg=label)
        assert 0 <= got.slow <= got.total


def test_fast_path_sends_exact_ties_to_arb_and_rounds_them_to_even():
    # γ = 0: y = β exactly; β = 1 + 2^-24 and 1 + 3·2^-24 are float32 ties (→ 1 and 1 + 2^-22, even),
    # 1 + 2^-8 + 2^-30 lies just above a bfloat16 tie (→ 1 + 2^-7; a cast through float32 gives 1)
    x = np.array([[0.0, 1.0, 2.0], [1.0, -1.0, 5.0], [3.0, 0.5, 0.0]])
    beta = np.array([1 + 2.0 ** -24, 1 + 3 * 2.0 ** -24, 1 + 2.0 ** -8 + 2.0 ** -30])
    got = fast.rounded_reference("batchnorm", x, np.zeros(3), beta, 1e-5, dtype="float32")
    assert got.slow >= 6                                          # the two tie columns
    np.testing.assert_array_equal(got.values[0][:, 0], np.float32(1.0))
    np.testing.assert_array_equal(got.values[0][:, 1], np.float32(1 + 2.0 ** -22))
    bf = fast.rounded_reference("batchnorm", x, np.zeros(3), beta, 1e-5, dtype="bfloat16")
    assert np.all(bf.values[0][:, 2].astype(np.float64) == 1 + 2.0 ** -7)


def test_fast_path_for_float64_targets_is_double_double():
    # float64 balls cannot decide float64 rounding; double-double balls decide these three
    z = np.array([[0.0, 1.0, 2.0]])
    got = fast.rounded_reference("softmax", z, dtype="float64")
    assert got.slow == 0 and got.total == 3
    with mpmath.workprec(200):
        e = [mpmath.exp(mpmath.mpf(v)) for v in z[0]]
        want = [float(v / sum(e)) for v in e]
    assert got.values[0][0].tolist() == want


def test_numpy_exp_and_log_stay_within_the_assumed_ulps():
    # the fast path's radius assumes LIBM_ULPS; measure numpy's float64 exp/log against 40-digit mpmath
    import mpmath
    rng = np.random.default_rng(11)
    xs = np.concatenate([rng.uniform(-745, 709, 3000), rng.uniform(-1, 1, 1000), 1 + 1e-9 * rng.standard_normal(500)])
    worst = 0.0
    with mpmath.workdps(40):
        for fn, ref, args in ((np.exp, mpmath.exp, xs), (np.log, mpmath.log, np.abs(xs) + 1e-300)):
            got = fn(args)
            for g, a in zip(got, args):
                exact = ref(mpmath.mpf(float(a)))
                if g == 0 or not np.isfinite(g):
                    continue
                worst = max(worst, float(abs(mpmath.mpf(float(g)) - exact) / (np.spacing(abs(g)))))
    assert worst <= fast.LIBM_ULPS / 4, worst


@pytest.mark.parametrize("name", list(derive.OPS))
def test_rounding_bounds_on_arrays_equal_the_per_element_arb_kernel(name):
    import flint

    from derive import Kernel
    from derive.rounding_model import rounding_model_formulation
    from numeric.dtypes import finfo
    op = derive.get_op(name)
    rng = np.random.default_rng(zlib.crc32(("bounds " + name).encode()))
    args = [np.abs(a) if np.ndim(a) else a for a in random_args(op, {"b": 2, "k": 4, "n": 5, "d": 2}, rng, 30.0)]
    per_element = Kernel(rounding_model_formulation(op.stable_formulation), "arb")
    for dtype in ("bfloat16", "float32"):
        u = float(finfo(dtype).eps) / 2
        with flint.ctx.workprec(64):
            balls = [np.asarray(np.frompyfunc(lambda v: flint.arb(v, abs(v) * u), 1, 1)(np.asarray(a, dtype=float)),
                                dtype=object) if inp.axes else flint.arb(float(a)) for a, inp in zip(args, op.inputs)]
            out = per_element.run(*balls, flint.arb(0, u), flint.arb(0, float(finfo(dtype).smallest_subnormal)))
            want = [np.array([float(b.rad()) if b.is_finite() else np.inf for b in np.ravel(o)]).reshape(np.shape(o))
                    for o in out]
        got = condition.rounding_bounds(name, *args, dtype=dtype)
        got = got if isinstance(got, tuple) else (got,)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("name", list(derive.OPS))
def test_the_batched_jvp_fallback_equals_the_per_direction_definition(name, monkeypatch):
    def unsupported(*args, **kwargs):
        raise condition.Unsupported("forced")
    monkeypatch.setattr(condition, "structured_sensitivities", unsupported)
    rng = np.random.default_rng(zlib.crc32(("fallback " + name).encode()))
    args = random_args(derive.get_op(name), {"b": 3, "k": 5, "n": 7, "d": 2}, rng, 3.0)
    _, new = condition._values_and_sensitivities(name, args)
    _, old = condition._values_and_sensitivities_per_direction(name, args)
    scale = max(np.max(np.abs(o[np.isfinite(o)]), initial=0.0) for o in old)
    for n, o in zip(new, old):
        np.testing.assert_allclose(n, o, rtol=1e-12, atol=1e-12 * scale)


def test_lazy_float_equals_mpmath_float_of_the_midpoint_including_subnormals_and_ties():
    import random

    import flint
    import mpmath
    from numeric.engines.arb_arrays import lazy_mpf
    rnd = random.Random(3)
    with flint.ctx.workprec(200):
        balls = []
        for _ in range(3000):
            m, e = rnd.getrandbits(53) | (1 << 52), rnd.randint(-1150, 1100)
            for off in (1, -1, 0):                       # just above, below and on a float64 tie
                balls.append(((flint.arb(m) * 2 + 1) * flint.arb(2) ** e + off * flint.arb(2) ** (e - 120))
                             * rnd.choice([1, -1]))
    balls = np.array(balls, dtype=object)
    lazy = lazy_mpf(balls, np.ones(len(balls), dtype=np.int8))
    want = [float(mpmath.mp.make_mpf(b.mid()._mpf_)) for b in balls]
    assert [float(v) for v in lazy] == want


@pytest.mark.parametrize("name", list(derive.OPS))
@pytest.mark.parametrize("structured", [False, True], ids=["jvp", "structured"])
def test_outputs_taken_apart_by_slice_equal_the_per_direction_definition(name, structured, monkeypatch):
    # layer norm's dγ = Σ_n dy·x̂ has no row axis: above SLICED_FROM its sensitivities are summed over the
    # rows of dy·x̂'s own (row-grouped) sensitivities instead of one direction per input element
    monkeypatch.setattr(condition, "SLICED_FROM", 0)
    monkeypatch.setattr(condition, "STRUCTURED_FROM", 0 if structured else 1 << 62)
    rng = np.random.default_rng(zlib.crc32(("sliced " + name).encode()))
    op = derive.get_op(name)
    args = random_args(op, {"b": 3, "k": 5, "n": 7, "d": 4}, rng, 3.0)
    arrays = condition.check_arguments(op, args, np.dtype(np.float64))
    new = condition.sensitivities_of(op, arrays)
    _, old = condition._values_and_sensitivities_per_direction(name, args)
    scale = max(np.max(np.abs(o[np.isfinite(o)]), initial=0.0) for o in old)
    for n, o in zip(new, old):
        assert n.shape == o.shape
        np.testing.assert_allclose(n, o, rtol=1e-12, atol=1e-12 * scale)


def test_layer_norm_is_taken_apart_by_rows_and_dgamma_is_the_row_sum():
    form, summed = condition._sliced_formulation("layer_norm_backward")
    assert summed == (False, True, True) and form.outputs[0] == "dx"
    assert condition._sliced_formulation("batchnorm_backward") is not None      # every output has the axis
    # dβ = Σ_n dy: Σ_j |∂dβ_d/∂dy_j| |dy_j| = Σ_n |dy_nd|, and ∂dβ/∂x = 0 (written out independently)
    rng = np.random.default_rng(5)
    x, gamma, dy = rng.standard_normal((6, 300)), rng.standard_normal(300), rng.standard_normal((6, 300))
    sens = condition.sensitivities("layer_norm_backward", x, gamma, dy, 1e-5)
    assert (6 * 300 + 300 + 6 * 300) * 6 * 300 >= condition.SLICED_FROM      # the sliced path is taken
    np.testing.assert_allclose(sens[2], np.abs(dy).sum(axis=0), rtol=1e-14)


# textbook (p, emin) of each dtype: ulp(x) = 2^(max(⌊log2|x|⌋, emin) − p + 1)
_FORMATS = {"float16": (11, -14), "bfloat16": (8, -126), "float32": (24, -126), "float64": (53, -1022)}


def _textbook_ulp(value, dtype):
    from fractions import Fraction
    p, emin = _FORMATS[dtype]
    v = abs(Fraction(value))
    if v == 0:
        e = emin
    else:
        e = v.numerator.bit_length() - v.denominator.bit_length()
        if Fraction(2) ** e > v:
            e -= 1
        e = max(e, emin)
    return float(Fraction(2) ** (e - p + 1))


@pytest.mark.parametrize("dtype", list(_FORMATS))
def test_ulps_at_in_one_pass_equals_the_textbook_ulp_next_to_powers_of_two(dtype):
    import mpmath
    from numeric.metrics import ulps_at
    two = mpmath.mpf(2)
    rng = np.random.default_rng(11)
    values = [mpmath.mpf(0), mpmath.mpf(1), -mpmath.mpf(0.5), 1 - two ** -80, -(two ** -3 - two ** -200),
              two ** -1100, two ** -1074, two ** -1022 - two ** -1300, two ** 1023 * (2 - two ** -60),
              two ** -14 - two ** -90, two ** -126 * (1 - two ** -70), 3 * two ** -1075]
    values += [two ** int(k) * (1 - two ** -int(b)) for k, b in zip(rng.integers(-1070, 1020, 200), rng.integers(54, 200, 200))]
    values += [mpmath.mpf(float(v)) for v in rng.standard_normal(200) * 10.0 ** rng.integers(-300, 300, 200)]
    ref = np.empty(len(values), dtype=object)
    ref[:] = values
    want = [_textbook_ulp(_exact(v), dtype) for v in values]
    assert ulps_at(ref, dtype).tolist() == want
    assert ulps_at(ref.reshape(-1, 2), dtype).ravel().tolist() == want          # any shape, 0-d too
    assert float(ulps_at(np.array(values[3], dtype=object), dtype)) == want[3]


def _exact(v):
    from fractions import Fraction
    man, exp = v.man_exp
    return Fraction(int(man)) * Fraction(2) ** int(exp) if man else Fraction(0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_rounded_reference_zeros_are_never_negative_for_non_negative_values(dtype):
    """softmax is positive: where it underflows the correctly rounded value is +0; an exact zero
    (softmax_backward at dy = 1: s ⊙ (1 − Σ s) = 0) is +0 too.  A ball across 0 used to give −0."""
    from numeric.engines.fast import rounded_reference

    soft = rounded_reference("softmax", np.array([[0.0, 1e5, -3.0]]), dtype=dtype).values[0]
    assert np.array_equal(soft.astype(np.float64), [[0.0, 1.0, 0.0]]) and not np.signbit(soft).any()
    zero = rounded_reference("softmax_backward", np.zeros((2, 3)), np.ones((2, 3)), dtype=dtype).values[0]
    assert not zero.astype(np.float64).any() and not np.signbit(zero).any()
