"""Double-double ball arithmetic on numpy arrays: values ``(hi, lo, rad)`` with |exact − (hi + lo)| ≤ rad.

``hi + lo`` is an unevaluated sum of two float64 arrays (about 106 bits) and ``rad`` a float64 bound on the
distance to the exact real value.  Every operation returns a ball that encloses the exact result for
every pair of points of its argument balls; its radius is the propagated input radius plus a
*per-element, a posteriori* bound on the operation's own rounding error.

Building blocks and their algorithms follow Joldes, Muller and Popescu, "Tight and rigorous error bounds
for basic building blocks of double-word arithmetic", ACM TOMS 44(2), 2017 (JMP):

* addition is AccurateDWPlusDW (JMP Alg. 6) with its two Fast2Sum steps replaced by 2Sum (exact for any
  operand order), so the only roundings are the two plain additions ``c = s_l + t_h`` and
  ``w = t_l + v_l``; the error is at most u|c| + u|w| (u = 2^-53; RN error ≤ half an ulp of the
  result ≤ u·|result|; a sum that underflows is exact), and the radius adds 2u(|c| + |w|), which also
  covers the rounding of 2u|c| itself.  JMP prove the algorithm's error is ≤ 3u²/(1 − 4u)·|x + y|;
  the per-element terms need neither their theorem nor its precondition (normalised operands).
* multiplication is DWTimesDW1 (JMP Alg. 10): 2Prod(x_h, y_h) (Dekker's product with Veltkamp's split;
  exact unless Veltkamp's split overflows (|x_h| or |y_h| ≥ 2^996: a non-finite error term) or a
  product of nonzero factors falls below 2^-960; there the plain product with error ≤ u|p| + η) plus
  the cross terms x_h y_l + x_l y_h; the neglected x_l y_l and the four roundings (2u|result| each,
  + 8η where a product may underflow) are added term by term (JMP's bound for the same algorithm,
  normalised operands: 7u²·|xy|).
* division and square root take a double-double guess (one correction step, as JMP's DWDivDW) and then
  bound its error *a posteriori* from the residual computed in ball arithmetic:
  |x/y − q| = |x − q·y| / |y| and |√x − q| = |x − q²| / (√x + q) ≤ |x − q²| / q, so the rigour rests on
  addition and multiplication only.
* ``exp``: x = k ln2 + j/512 + r with |r| ≤ 1/1024 + ε, exp(x) = 2^k · T_j · P(r); T_j = e^(j/512) are
  double-double balls from mpmath, ln 2 is split Cody–Waite style so that k ln 2 is nearly exact, P is
  the degree-9 Taylor polynomial by Horner in ball arithmetic (the terms from r⁵/5! on, below 2^-56,
  in float64 balls; the rest in double-double), plus the Lagrange remainder ρ^10/10!·e^ρ (ρ ≥ |r|):
  about 2^-102 relative.
* ``log``: y₀ = numpy's log(x_h) is only a guess; t = x·e^(−y₀) − 1 in ball arithmetic,
  log x = y₀ + log(1 + t), and |log(1 + t) − t| ≤ t²/(2(1 − |t|)).  ``log1p``: the same rule on the
  double-double 1 + x, and for |x| < 2^-10 the alternating Taylor series x − x²/2 + … − x¹²/12 with
  remainder |x|^13/(13(1 − |x|)).
* addition and multiplication keep an exact zero (or an exact float64 product) at radius 0, so an
  output that is exactly 0 can be decided.

The radius formulas are evaluated in round-to-nearest and then inflated by (1 + 2^-40), far above the
relative loss of their few roundings; η = 2^-1074 (smallest subnormal) is added wherever a product may
underflow.  Non-finite values (overflow, a split beyond 2^995, a divisor ball holding 0) give an
infinite or nan radius, which no caller treats as decided.
"""
from __future__ import annotations

import math
from functools import lru_cache

import mpmath
import numpy as np

__all__ = ["two_sum", "two_prod", "point", "constant", "add", "add_float", "neg", "sub", "mul", "div", "sqrt", "exp", "log",
           "log1p", "absolute", "power", "tree_sum", "maximum", "normalise", "U", "ETA"]

U = 2.0 ** -53
ETA = 2.0 ** -1074
INFLATE = 1 + 2.0 ** -40
_SPLIT = 2.0 ** 27 + 1
_SPLIT_MAX = 2.0 ** 995          # Veltkamp's C·a stays finite below this
_PROD_MIN = 2.0 ** -960          # Dekker's error term is a float64 above this (no underflow)


def two_sum(a, b):
    """(s, e) with s = fl(a + b) and s + e = a + b exactly (Knuth; any order, no overflow)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _split(a):
    t = _SPLIT * a
    hi = t - (t - a)
    return hi, a - hi


def two_prod(a, b):
    """(p, e, err): p = fl(ab); p + e = ab exactly where Dekker's product is exact (err = 0), else e = 0
    and err = u|p| + η bounds |ab − p| (a split beyond 2^995 gives a non-finite e; a product below
    2^-960 may leave e outside float64)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    ap = np.abs(p)
    doubtful = ~np.isfinite(e) | (ap < _PROD_MIN)
    if not doubtful.any():                  # the usual case: every product exact, nothing to mask
        return p, e, np.zeros_like(ap)
    unsafe = doubtful & (~np.isfinite(e) | ((a != 0) & (b != 0)))
    return p, np.where(unsafe, 0.0, e), np.where(unsafe, U * ap + ETA, 0.0)


def point(hi, lo=0.0):
    """An exact double-double value as a ball of radius 0."""
    hi = np.asarray(hi, dtype=np.float64)
    return hi, np.zeros_like(hi) if np.ndim(lo) == 0 and lo == 0 else np.asarray(lo, dtype=np.float64), \
        np.zeros_like(hi)


def constant(value, *, exact: bool = False) -> tuple:
    """A real number as a double-double ball.  ``value``: anything ``mpmath.mpf`` reads, taken at 300 bits
    (a closed form such as log 2 must be passed as computed at ≥ 300 bits; its radius then allows
    2^-290 relative).  ``exact=True``: the value is a dyadic rational held exactly at 300 bits (1, ½, ¼),
    so the radius is only what hi + lo misses."""
    with mpmath.workprec(300):
        v = mpmath.mpf(value)
        hi = float(v)
        if not math.isfinite(hi):
            raise OverflowError(f"constant {value} outside float64")
        lo = float(v - hi)
        rest = abs(v - hi - lo)
        rad = 2 * rest + (0 if exact else abs(v) * mpmath.mpf(2) ** -290)
        bound = float(rad)
        if bound < rad:                       # float() rounds to nearest: step up to an upper bound
            bound = math.nextafter(bound, math.inf)
        rad = ETA if 0 < bound < ETA else bound
    return np.float64(hi), np.float64(lo), np.float64(rad)


ONE = (np.float64(1.0), np.float64(0.0), np.float64(0.0))


def neg(x):
    return -x[0], -x[1], x[2]


def add(x, y):
    """x + y (AccurateDWPlusDW with 2Sum; see the module docstring).  An exact zero stays a zero of
    radius 0 (then c = w = 0)."""
    (xh, xl, xr), (yh, yl, yr) = x, y
    sh, sl = two_sum(xh, yh)
    th, tl = two_sum(xl, yl)
    c = sl + th
    vh, vl = two_sum(sh, c)
    w = tl + vl
    zh, zl = two_sum(vh, w)
    return zh, zl, (xr + yr + 2 * U * (np.abs(c) + np.abs(w))) * INFLATE


def add_float(x, f, f_err=0.0):
    """x + f for a float64 array f known to within ``f_err`` (DWPlusFP, JMP Alg. 4, with 2Sum: the only
    rounding is v = x_l + s_l, at most 2u|v|)."""
    xh, xl, xr = x
    sh, sl = two_sum(xh, f)
    v = xl + sl
    zh, zl = two_sum(sh, v)
    return zh, zl, (xr + f_err + 2 * U * np.abs(v)) * INFLATE


def sub(x, y):
    return add(x, neg(y))


def mul(x, y):
    """x · y (DWTimesDW1 plus the neglected x_l y_l as an error term; see the module docstring).  Exact
    float64 operands (x_l = y_l = 0, radius 0) whose 2Prod is exact give radius 0."""
    (xh, xl, xr), (yh, yl, yr) = x, y
    ph, pl, perr = two_prod(xh, yh)
    t1 = xh * yl
    t2 = xl * yh
    t = t1 + t2
    c = pl + t
    zh, zl = two_sum(ph, c)
    axl, ayl = np.abs(xl), np.abs(yl)
    # roundings of t1, t2, t (each ≤ 2u|result|, + η if a product underflows) and of c (exact when t = 0)
    cross = axl + ayl
    err = perr + axl * ayl + 2 * U * (np.abs(t1) + np.abs(t2) + np.abs(t) + np.abs(c) * (t != 0))
    if np.any(xr) or np.any(yr):
        ax, ay = np.abs(xh) + axl, np.abs(yh) + ayl
        raw = ax * yr + ay * xr + xr * yr + err
        return zh, zl, raw * INFLATE + (8 * ETA) * ((xr + yr + cross + perr) > 0)
    return zh, zl, err * INFLATE + (8 * ETA) * ((cross + perr) > 0)        # two points: no propagated radius


def _lower_magnitude(x):
    """A lower bound of |v| over the ball (≤ 0 when the ball may hold 0)."""
    xh, xl, xr = x
    return (np.abs(xh) - np.abs(xl) - xr) - 4 * U * np.abs(xh)


def _upper_magnitude(x):
    """An upper bound of |v| over the ball."""
    xh, xl, xr = x
    return (np.abs(xh) + np.abs(xl) + xr) * INFLATE


def _point(x):
    return x[0], x[1], np.zeros_like(x[2])


def _residual_bound(r):
    """An upper bound of |v| over the residual ball ``r``."""
    return (np.abs(r[0]) + np.abs(r[1]) + r[2]) * INFLATE


def div(x, y):
    """x / y: q from one correction step, radius |x − q·y| / min |y| from the residual ball.  A divisor
    broadcast over many numerators (e / Σe) is inverted once and multiplied: x · (1/y) encloses x / y."""
    if 4 * np.size(y[0]) <= np.size(x[0]) and np.size(y[0]) == max(np.size(v) for v in y):
        return mul(x, div(ONE, y))
    xh, yh = x[0], y[0]
    with np.errstate(all="ignore"):
        q1 = xh / yh
        r = sub(_point(x), mul(point(q1), _point(y)))
        q2 = r[0] / yh
        qh, ql = two_sum(q1, q2)
        q = point(qh, ql)
        residual = sub(x, mul(q, y))
        gap = _lower_magnitude(y)
        num = _residual_bound(residual)
        rad = np.where(gap > 0, num / np.where(gap > 0, gap, 1.0) * INFLATE, np.inf)
        rad = np.where(num > 0, rad + ETA, rad)
    return qh, ql, rad


def sqrt(x):
    """√x: q from one correction step, radius |x − q²| / q from the residual ball (needs x > 0 on the
    whole ball; an exact 0 gives 0)."""
    xh = x[0]
    low = _lower_magnitude(x)
    positive = (low > 0) & (xh > 0)
    with np.errstate(all="ignore"):
        q1 = np.sqrt(np.where(positive, xh, 1.0))
        r = sub(_point(x), mul(point(q1), point(q1)))
        q2 = r[0] / (2 * q1)
        qh, ql = two_sum(q1, q2)
        q = point(qh, ql)
        residual = sub(x, mul(q, q))
        qlow = _lower_magnitude(q)
        num = _residual_bound(residual)
        rad = np.where(positive & (qlow > 0), num / np.where(qlow > 0, qlow, 1.0) * INFLATE, np.inf)
        rad = np.where(num > 0, rad + ETA, rad)
    zero = (x[0] == 0) & (x[1] == 0) & (x[2] == 0)
    return (np.where(zero, 0.0, qh), np.where(zero, 0.0, ql), np.where(zero, 0.0, rad))


def absolute(x):
    """|x| (the sign of a normalised double-double is the sign of its high part)."""
    h, l = two_sum(x[0], x[1])
    s = np.where(h < 0, -1.0, 1.0)
    return h * s, l * s, x[2]


def power(x, n: int):
    """x**n for an integer n by repeated products (|x| for even n); negative n by division."""
    if n < 0:
        return div(ONE, power(x, -n))
    base = absolute(x) if n % 2 == 0 else x
    result = ONE
    for _ in range(n):
        result = mul(result, base)
    return result


# --- exp -------------------------------------------------------------------------------------------

_STEP = 512                  # x = k ln2 + j/512 + r: |r| ≤ 1/1024 + ε
_J = 178                     # |k ln2 − x| ≤ ln2/2 + ε < 178/512
_DD_TERMS = 5                # 1/i! for i < 5 in double-double Horner steps
_DEGREE = 9                  # ρ^10/10!·e^ρ < 2^-121 for ρ ≤ 2^-9.9


@lru_cache(maxsize=None)
def _exp_tables():
    with mpmath.workprec(300):
        # Cody–Waite: ln 2 = c1 + c2 + c3 with c1, c2 of 42 significant bits, so k·c1 and k·c2 are exact
        # float64 products for |k| < 2^11 and only k·c3 (~2^-84 ln 2) rounds
        exact = mpmath.log(2)
        c1 = mpmath.floor(exact * 2 ** 42) / 2 ** 42
        c2 = mpmath.nint((exact - c1) * 2 ** 84) / 2 ** 84
        ln2 = (float(c1), float(c2), constant(exact - c1 - c2))
        coeffs = [constant(1 / mpmath.factorial(i), exact=i < 3) for i in range(_DD_TERMS)]
        tail = [1 / mpmath.factorial(i) for i in range(_DD_TERMS, _DEGREE + 1)]
        tail = [(float(c), float(abs(c - float(c)) * 2)) for c in tail]     # float64 value, error bound
        table = [constant(mpmath.exp(mpmath.mpf(j) / _STEP)) for j in range(-_J, _J + 1)]
        table = tuple(np.array([t[i] for t in table]) for i in range(3))
    return ln2, coeffs, tail, table


def _tail(r, tail):
    """Σ_{i ≥ 5} r^(i−5)/i! as a double-double ball whose low part is 0: Horner in float64 balls (each
    product and sum adds u|result| + η, coefficients carry their own rounding).  Multiplied by r⁵
    (|r| ≤ 2^-9.9) its terms are below 2^-56, so float64's few-u error costs about 2^-107 absolute."""
    rh = r[0]
    delta = np.abs(r[1]) + r[2]
    m, rad = np.float64(tail[-1][0]), np.float64(tail[-1][1])
    for c, c_err in tail[-2::-1]:
        prod = m * rh
        rad = np.abs(m) * delta + (np.abs(rh) + delta) * rad + U * np.abs(prod) + ETA
        m = prod + c
        rad = (rad + c_err + U * np.abs(m)) * INFLATE
    return m, np.zeros_like(m), rad


def _scale(x, k):
    """x · 2^k for integer arrays k: exact unless a part leaves the normal range, where each part that
    rounded (checked by scaling back) adds η to the radius."""
    h, l, r = (np.ldexp(v, k) for v in x)
    lost = sum((np.ldexp(s, -k) != v).astype(np.float64) for s, v in zip((h, l, r), x))
    return h, l, r + lost * ETA


def exp(x):
    """e^x for every point of the ball; an enclosure [0, η] where e^x < 2^-1076 on the whole ball."""
    xh, xl, xr = x
    ln2, coeffs, tail, table = _exp_tables()
    top = xh + np.abs(xl) + xr
    under = top < -746.0                       # e^x < 2^-1076 < η on the whole ball
    over = ~(xh - np.abs(xl) - xr <= 709.0)    # may overflow (or nan): left to arb
    with np.errstate(all="ignore"):
        xs = (np.where(under | over, 0.0, xh), np.where(under | over, 0.0, xl), np.where(under | over, 0.0, xr))
        k = np.rint(xs[0] / math.log(2))
        # k·c1, k·c2 exact; k·c3 (below 2^-74) rounded once: error ≤ u|k c3_h| + |k|(|c3_l| + rad c3)
        kc3 = k * ln2[2][0]
        kc3_err = 2 * U * np.abs(kc3) + np.abs(k) * (abs(ln2[2][1]) + ln2[2][2])
        r0 = add_float(add_float(add_float(xs, -k * ln2[0]), -k * ln2[1]), -kc3, kc3_err)
        j = np.clip(np.rint(r0[0] * _STEP), -_J, _J)
        r = add_float(r0, -j / _STEP)
        rho = _upper_magnitude(r)
        p = _tail(r, tail)
        for i in range(_DD_TERMS - 1, -1, -1):
            c = coeffs[i]
            p = add_float(mul(p, r), c[0]) if c[1] == 0 and c[2] == 0 else add(mul(p, r), c)
        remainder = rho ** (_DEGREE + 1) / math.factorial(_DEGREE + 1) * np.exp(np.minimum(rho, 1.0)) * 2
        remainder = np.where(rho < 2.0 ** -9, remainder, np.inf)
        p = (p[0], p[1], p[2] + remainder)
        idx = (j + _J).astype(np.intp)
        e = mul((table[0][idx], table[1][idx], table[2][idx]), p)
        h, l, rad = _scale(e, k.astype(np.int64))
    return (np.where(under, 0.0, np.where(over, np.inf, h)), np.where(under | over, 0.0, l),
            np.where(under, ETA, np.where(over, np.inf, rad)))


# --- log, log1p ------------------------------------------------------------------------------------

def _log_from_guess(one_plus_t_factor, y0):
    """log v = y₀ + log(1 + t) with t = v·e^(−y₀) − 1 given as the ball ``one_plus_t_factor`` − 1."""
    t = sub(one_plus_t_factor, ONE)
    tau = _upper_magnitude(t)
    with np.errstate(all="ignore"):
        tail = np.where(tau < 0.5, tau * tau / (2 * (1 - tau)) * INFLATE * INFLATE, np.inf)
    y = add(point(y0), _point(t))
    return y[0], y[1], (y[2] + t[2] + tail) * INFLATE


def log(x):
    """log x on a ball inside (0, ∞) (else an infinite radius)."""
    inside = (_lower_magnitude(x) > 0) & (x[0] > 0)
    with np.errstate(all="ignore"):
        y0 = np.log(np.where(inside, x[0], 1.0))
        h, l, r = _log_from_guess(mul(x, exp(point(-y0))), y0)
    return h, l, np.where(inside, r, np.inf)


_LOG1P_SMALL = 2.0 ** -10
_LOG1P_TERMS = 12            # |x| < 2^-9: |x|^13/(13(1 − |x|)) < 2^-110 |x|


@lru_cache(maxsize=None)
def _log1p_coeffs():
    with mpmath.workprec(300):
        return [constant(mpmath.mpf((-1) ** (i + 1)) / i, exact=i in (1, 2, 4, 8)) for i in range(1, _LOG1P_TERMS + 1)]


def log1p(x):
    """log(1 + x) on a ball inside (−1, ∞): the Taylor series where |x| < 2^-10, else the log rule on
    1 + x (the double-double 1 + x keeps every bit of a tiny x)."""
    xh = x[0]
    small = np.abs(xh) < _LOG1P_SMALL
    one_plus = add(ONE, x)
    inside = (_lower_magnitude(one_plus) > 0) & (one_plus[0] > 0)
    with np.errstate(all="ignore"):
        y0 = np.log1p(np.where(inside & ~small, xh, 0.0))
        big = _log_from_guess(mul(one_plus, exp(point(-y0))), y0)
        coeffs = _log1p_coeffs()
        p = coeffs[-1]
        for c in coeffs[-2::-1]:
            p = add(mul(p, x), c)
        p = mul(p, x)
        rho = _upper_magnitude(x)
        tail = np.where(rho < 0.5, rho ** (_LOG1P_TERMS + 1) / ((_LOG1P_TERMS + 1) * (1 - rho)) * 2, np.inf)
        p = (p[0], p[1], (p[2] + tail) * INFLATE)
    h = np.where(small, p[0], big[0])
    l = np.where(small, p[1], big[1])
    r = np.where(small, np.where(rho < _LOG1P_SMALL * 2, p[2], np.inf), np.where(inside, big[2], np.inf))
    return h, l, r


# --- reductions ------------------------------------------------------------------------------------

def tree_sum(x, axis: tuple):
    """Σ over ``axis`` (tuple of dimensions, kept with length 1) by pairwise double-double additions."""
    parts = [np.asarray(v, dtype=np.float64) for v in np.broadcast_arrays(*x)]
    for a in axis:
        parts = [np.moveaxis(v, a, 0) for v in parts]
        while parts[0].shape[0] > 1:
            n = parts[0].shape[0]
            half = n // 2
            even = [v[:2 * half] for v in parts]
            summed = add(tuple(v[0::2] for v in even), tuple(v[1::2] for v in even))
            if n % 2:
                summed = tuple(np.concatenate([s, v[2 * half:]]) for s, v in zip(summed, parts))
            parts = list(summed)
        parts = [np.moveaxis(v, 0, a) for v in parts]
    return tuple(parts)


def normalise(x):
    """The same ball with hi = fl(hi + lo) (an exact 2Sum)."""
    h, l = two_sum(x[0], x[1])
    return h, l, x[2]


def maximum(x, axis: tuple):
    """max over ``axis`` of balls: the largest midpoint (exact lexicographic comparison of normalised
    pairs, since RN is monotone) and the largest radius (|max exact − max mid| ≤ max rad)."""
    h, l, r = (np.asarray(v, dtype=np.float64) for v in np.broadcast_arrays(*normalise(x)))
    top = np.max(h, axis=axis, keepdims=True)
    low = np.max(np.where(h == top, l, -np.inf), axis=axis, keepdims=True)
    return top, low, np.max(r, axis=axis, keepdims=True)
