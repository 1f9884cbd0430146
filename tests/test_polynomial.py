"""The zero test on FLINT polynomials (derive/polynomial.py) decides the same identities as the SymPy
normal form it replaced, on identities and non-identities whose truth is known by hand."""
import pytest
import sympy as sp

from derive import polynomial, proof

a, b, x, y = sp.symbols("a b x y", real=True)
u, n = sp.symbols("u n", positive=True)
eps = sp.Symbol("epsilon", positive=True)

CASES = [
    # identities
    ((a + b) ** 3 - a ** 3 - 3 * a ** 2 * b - 3 * a * b ** 2 - b ** 3, True),
    (1 / (a + 1) + 1 / (a - 1) - 2 * a / (a ** 2 - 1), True),                      # common factor of denominators
    (sp.sqrt(u) ** 2 - u, True),
    (1 / sp.sqrt(u + eps) - sp.sqrt(u + eps) / (u + eps), True),
    (sp.sqrt(x ** 2 / n + eps) ** 3 - (x ** 2 / n + eps) * sp.sqrt(x ** 2 / n + eps), True),   # base with a denominator
    (sp.exp(a) / (sp.exp(a) + sp.exp(b)) + sp.exp(b) / (sp.exp(a) + sp.exp(b)) - 1, True),
    (sp.log(1 + sp.exp(a)) * (1 - y) + y * sp.log(1 + sp.exp(a)) - sp.log(1 + sp.exp(a)), True),  # opaque atom
    ((1 + u ** sp.Rational(1, 3)) ** 3 - 1 - 3 * u ** sp.Rational(1, 3) - 3 * u ** sp.Rational(2, 3) - u, True),
    # non-identities
    (sp.exp(a) - a - 1, False),
    (sp.sqrt(u + 1) - sp.sqrt(u) - 1, False),
    (sp.sqrt(u) - u, False),
    (1 / (a + 1) - 1 / a, False),
    (sp.log(1 + sp.exp(a)) - a, False),
    (sp.sqrt(x ** 2 / n + eps) - x / sp.sqrt(n) - sp.sqrt(eps), False),
]


@pytest.mark.parametrize("flint", [True, False], ids=["flint", "sympy"])
@pytest.mark.parametrize("expr, expected", CASES)
def test_both_zero_tests_decide_known_identities(expr, expected, flint, monkeypatch):
    if flint and not polynomial.available():
        pytest.skip("python-flint without fmpq_mpoly")
    monkeypatch.setattr(polynomial, "available", lambda: flint)
    assert proof._is_zero_case(proof._prepare(expr)) is expected


def test_batchnorm_backward_of_two_samples_equals_its_closed_form():
    """dx of y = γ·(x − μ)/√(σ² + ε) + β for N = 2 by brute-force differentiation, against the textbook
    closed form (Ioffe & Szegedy 2015) — decided by the FLINT path."""
    if not polynomial.available():
        pytest.skip("python-flint without fmpq_mpoly")
    g = sp.Symbol("gamma", real=True)
    xs, dys = sp.symbols("x0 x1", real=True), sp.symbols("dy0 dy1", real=True)
    mu = (xs[0] + xs[1]) / 2
    var = ((xs[0] - mu) ** 2 + (xs[1] - mu) ** 2) / 2
    ys = [g * (xi - mu) / sp.sqrt(var + eps) for xi in xs]
    brute = sum(dy * sp.diff(yi, xs[0]) for dy, yi in zip(dys, ys))
    rstd = 1 / sp.sqrt(var + eps)
    xhat = [(xi - mu) * rstd for xi in xs]
    closed = g * rstd * (dys[0] - (dys[0] + dys[1]) / 2 - xhat[0] * (dys[0] * xhat[0] + dys[1] * xhat[1]) / 2)
    assert proof.is_zero(brute - closed)
    assert not proof.is_zero(brute - closed * 2)
