"""Zero test of a rational function with root generators, in python-flint's multivariate polynomials.

The proofs (:mod:`derive.proof`) bring every difference to a rational function ``N/D`` of symbols and
positive generators, some of which stand for roots (``R = u**(1/q)``).  The difference is zero when the
numerator ``N``, reduced modulo ``D_u·R**q − N_u`` for each root generator (``u = N_u/D_u``), is the
zero polynomial.  SymPy's ``together``/``expand``/``rem`` on expression trees did this in ~12 ms per
batch-norm entry; the same algebra on FLINT's ``fmpq_mpoly`` (C) takes well under 1 ms.

Soundness of each step (only "zero ⇒ identity" is needed):

* the conversion keeps ``N/D`` equal to the expression (fractions are added over a common denominator,
  divided by the gcd of the denominators, never by anything that could vanish elsewhere);
* a non-polynomial atom left in the expression (``log(1 + E)``, …) becomes an independent indeterminate:
  a polynomial that is zero for every value of it is zero for its value;
* replacing ``R**(q·j + r)`` by ``R**r · (N_u/D_u)**j`` and multiplying by ``D_u**J`` (J the largest j,
  ``D_u ≠ 0`` where ``u`` is defined) gives a polynomial equal to ``D_u**J · N`` wherever ``R**q = u``.
"""
from __future__ import annotations

from functools import lru_cache

import sympy as sp

__all__ = ["numerator_reduces_to_zero", "available"]


@lru_cache(maxsize=None)
def available() -> bool:
    """True when this python-flint has multivariate polynomials over Q with cached contexts (≥ 0.7)."""
    try:
        import flint
    except ImportError:       # pragma: no cover - a dependency of the project
        return False
    return hasattr(flint, "fmpq_mpoly_ctx") and hasattr(flint.fmpq_mpoly_ctx, "get")


class _Fractions:
    """Sympy expressions (sums, products, integer powers of symbols and rationals) as ``(numerator,
    denominator)`` pairs of ``fmpq_mpoly`` in the generators ``symbols`` (shared subtrees converted once)."""

    def __init__(self, symbols: list):
        import flint

        self.ctx = flint.fmpq_mpoly_ctx.get(tuple(f"g{i}" for i in range(len(symbols))), "lex")
        self.index = {s: i for i, s in enumerate(symbols)}
        self.gens = self.ctx.gens()
        self.one = self.ctx.constant(1)
        self._fmpq = flint.fmpq
        self._done: dict = {}

    def of(self, expr: sp.Expr) -> tuple:
        done = self._done.get(expr)
        if done is None:
            done = self._done[expr] = self._convert(expr)
        return done

    def _convert(self, expr):
        if expr.is_Symbol:
            return self.gens[self.index[expr]], self.one
        if expr.is_Rational:
            return self.ctx.constant(self._fmpq(int(expr.p), int(expr.q))), self.one
        if expr.is_Mul:
            num, den = self.one, self.one
            for arg in expr.args:
                n, d = self.of(arg)
                num, den = num * n, den * d
            return num, den
        if expr.is_Add:
            num, den = self.of(expr.args[0])
            for arg in expr.args[1:]:
                n, d = self.of(arg)
                if d == den:
                    num = num + n
                    continue
                g = den.gcd(d)                       # a common factor of the denominators, not of anything else
                den_g, d_g = (den, d) if g.is_one() else (den / g, d / g)
                num, den = num * d_g + n * den_g, den_g * d
            return num, den
        if expr.is_Pow and expr.exp.is_Integer:
            n, d = self.of(expr.base)
            k = int(expr.exp)
            return (n ** k, d ** k) if k >= 0 else (d ** -k, n ** -k)
        raise TypeError(f"not a rational function: {expr}")    # atoms are replaced before (_opaque)


def _opaque(expr: sp.Expr, table: dict) -> sp.Expr:
    """``expr`` with every maximal non-rational subexpression replaced by a placeholder symbol."""
    if expr.is_Symbol or expr.is_Rational:
        return expr
    if expr.is_Add or expr.is_Mul:
        return expr.func(*[_opaque(a, table) for a in expr.args])
    if expr.is_Pow and expr.exp.is_Integer:
        return _opaque(expr.base, table) ** expr.exp
    if expr not in table:
        table[expr] = sp.Dummy("atom")
    return table[expr]


def _reduce_root(f, i: int, q: int, num, den, ctx):
    """``f`` with each ``g_i**(q·j + r)`` replaced by ``g_i**r · num**j · den**(J − j)`` (J = largest j)."""
    by_j: dict = {}
    for exps, c in f.to_dict().items():
        j, r = divmod(exps[i], q)
        if j:
            exps = (*exps[:i], r, *exps[i + 1:])
        by_j.setdefault(j, {})[exps] = c
    if set(by_j) <= {0}:
        return f
    top = max(by_j)
    out = ctx.constant(0)
    for j, terms in by_j.items():
        out += ctx.from_dict(terms) * num ** j * den ** (top - j)
    return out


def numerator_reduces_to_zero(rational: sp.Expr, roots: dict) -> bool:
    """True when the numerator of ``rational`` (a rational function of symbols and generators; other
    atoms count as independent indeterminates) reduces to zero modulo ``R**q = base`` for every
    ``R: (base, q)`` of ``roots`` — which proves ``rational`` identically zero where it is defined."""
    table: dict = {}
    rational = _opaque(rational, table)
    bases = {r: _opaque(base, table) for r, (base, _) in roots.items()}
    symbols = set(rational.free_symbols).union(*(b.free_symbols for b in bases.values()), roots)
    if not symbols:
        return rational == 0
    order = list(roots) + sorted(symbols - set(roots), key=str)
    fractions = _Fractions(order)
    f, _ = fractions.of(rational)
    for i, r in enumerate(roots):
        num, den = fractions.of(bases[r])
        f = _reduce_root(f, i, roots[r][1], num, den, fractions.ctx)
    return f.is_zero()
