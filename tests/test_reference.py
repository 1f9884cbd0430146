import gmpy2
import mpmath
import numpy as np
import pytest

from numeric.reference import CERTIFIED_BITS, reference

DIGITS = 30


def mp_softmax(row):
    e = [mpmath.exp(mpmath.mpf(float(v))) for v in row]
    total = sum(e)
    return [v / total for v in e]


def mp_batchnorm_backward(x, gamma, dy, eps):
    """Column by column at 60 digits, straight from the compact formula."""
    n, d = x.shape
    dx = [[None] * d for _ in range(n)]
    dgamma, dbeta = [], []
    for j in range(d):
        col = [mpmath.mpf(float(v)) for v in x[:, j]]
        g = [mpmath.mpf(float(v)) for v in dy[:, j]]
        mu = sum(col) / n
        var = sum((v - mu) ** 2 for v in col) / n
        rstd = 1 / mpmath.sqrt(var + mpmath.mpf(eps))
        xhat = [(v - mu) * rstd for v in col]
        db = sum(g)
        dg = sum(a * b for a, b in zip(g, xhat))
        for i in range(n):
            dx[i][j] = mpmath.mpf(float(gamma[j])) * rstd / n * (n * g[i] - db - xhat[i] * dg)
        dgamma.append(dg)
        dbeta.append(db)
    return dx, dgamma, dbeta


def assert_digits(got, want, digits=DIGITS):
    with mpmath.workdps(60):
        for g, w in zip(np.ravel(np.asarray(got, dtype=object)), np.ravel(np.asarray(want, dtype=object))):
            if w == 0:
                assert g == 0
            else:
                assert abs(g - w) <= abs(w) * mpmath.mpf(10) ** (-digits), (g, w)


@pytest.mark.parametrize("engine", ["arb", "gmpy2", "mpmath"])
def test_softmax_of_huge_logits_agrees_with_a_60_digit_computation(engine):
    z = np.array([[1000.0, 1001.0, 1002.0], [-3.5, 0.0, 7.25]])
    got = reference("softmax", z, engine=engine)
    with mpmath.workdps(60):
        want = [mp_softmax(row) for row in z]
    assert_digits(got, want)
    assert all(isinstance(v, mpmath.mpf) for v in got.ravel())


def test_cross_entropy_of_huge_logits_agrees_with_a_60_digit_computation():
    z = np.array([[1000.0, 1001.0, 1002.0]])
    y = np.array([[0.25, 0.25, 0.5]])
    with mpmath.workdps(60):
        s = mp_softmax(z[0])
        want = -sum(mpmath.mpf(float(a)) * mpmath.log(b) for a, b in zip(y[0], s))
    assert_digits(reference("cross_entropy", z, y), [want])


@pytest.mark.parametrize("engine", ["arb", "gmpy2", "mpmath"])
def test_batchnorm_backward_with_mean_1e4_std_1e_3_agrees_with_a_60_digit_computation(engine):
    rng = np.random.default_rng(7)
    x = rng.normal(1e4, 1e-3, size=(12, 3))
    gamma, dy = rng.normal(size=3), rng.normal(size=(12, 3))
    got = reference("batchnorm_backward", x, gamma, dy, 1e-5, engine=engine)
    with mpmath.workdps(60):
        want = mp_batchnorm_backward(x, gamma, dy, 1e-5)
    for g, w in zip(got, want):
        assert_digits(g, w)


def test_constant_column_gives_exact_zero_normalized_values():
    x = np.full((3, 2), 0.1)
    y = reference("batchnorm", x, np.ones(2), np.zeros(2), 1e-5)
    assert all(v == 0 for v in y.ravel())


@pytest.mark.parametrize("engine", ["arb", "gmpy2", "mpmath"])
def test_precision_never_leaks_out(engine):
    import flint
    before = mpmath.mp.prec, gmpy2.get_context().precision, flint.ctx.prec
    reference("softmax", np.array([[1.0, 2.0]]), engine=engine)
    assert (mpmath.mp.prec, gmpy2.get_context().precision, flint.ctx.prec) == before


def test_cancellation_needs_more_precision_and_still_certifies():
    # x − μ for a column at 1e15 with spread 1e-3 needs far more than 128 bits only if done badly;
    # the references of all engines agree to 30 digits with each other.
    x = np.array([[1e15], [1e15 + 0.125], [1e15 + 0.25]])
    args = (x, np.ones(1), np.array([[1.0], [-2.0], [0.5]]), 0.0)
    outs = [reference("batchnorm_backward", *args, engine=e)[0] for e in ("arb", "gmpy2", "mpmath")]
    assert_digits(outs[0], outs[1])
    assert_digits(outs[0], outs[2])


def test_certification_target_is_30_bits_beyond_float64():
    assert CERTIFIED_BITS == 53 + 30


@pytest.mark.parametrize("args, exc, words", [
    ((np.array([[np.inf, 0.0]]),), ValueError, ["'z'", "finite"]),
    ((np.array([1.0, 2.0]),), ValueError, ["'z'"]),
])
def test_bad_reference_input_names_the_argument(args, exc, words):
    with pytest.raises(exc) as info:
        reference("softmax", *args)
    assert all(w in str(info.value) for w in words)


def test_every_formulation_s_ball_kernel_contains_the_exact_value():
    """Ball arithmetic is only rigorous if every number entering it is exact or a ball: an axis length in a
    denominator (the staged batch-norm backward's 1/N) once entered as the Python float 1/N, rounded, and
    the balls then missed the exact value by ~1e-17 relative.  Each formulation's 128-bit balls must overlap
    the reference formulation's 512-bit balls (both hold the exact value when the arithmetic is rigorous)."""
    import flint

    from derive import get_op
    from numeric.engines.arb_arrays import array_kernel

    rng = np.random.default_rng(0)
    balls = np.frompyfunc(flint.arb, 1, 1)
    for name, args in [("batchnorm_backward", (rng.standard_normal((5, 2)), rng.standard_normal(2),
                                               rng.standard_normal((5, 2)), 1e-5)),
                       ("layer_norm_backward", (rng.standard_normal((3, 5)), rng.standard_normal(5),
                                                rng.standard_normal((3, 5)), 1e-5))]:
        op = get_op(name)
        inputs = [np.asarray(balls(np.asarray(a, dtype=np.float64)), dtype=object) for a in args]
        with flint.ctx.workprec(512):
            truth = array_kernel(op.reference).run(*inputs)
        for form_name, form in op.formulations.items():
            with flint.ctx.workprec(128):
                got = array_kernel(form).run(*inputs)
            for g, t in zip(got, truth):
                assert all(a.overlaps(b) for a, b in zip(np.asarray(g).flat, np.asarray(t).flat)), (name, form_name)
