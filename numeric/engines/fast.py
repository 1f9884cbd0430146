"""Fast certified path: an op evaluated in vectorised ball arithmetic, arb for what it leaves open.

Every value of the op's stable formulation is carried as a ball of float64 arrays with a rigorous
radius, walked step by step by :func:`ball_evaluate` under one of two :class:`Arithmetic` rule sets:

* ``"float64"``: (mid, rad) with |exact − mid| ≤ rad.  Each operation adds its own rounding error to the
  radius: u·|mid| for a correctly rounded operation (+ − × ÷ √, u = 2^-53), ``LIBM_ULPS`` ulps for
  ``exp``/``log`` (numpy's float64 libm; ``tests/test_speed_paths.py`` measures the real error against
  mpmath), γ_n·Σ|a| for a sum of n terms (Higham, *Accuracy and Stability of Numerical Algorithms*,
  eq. 3.4), plus the smallest subnormal wherever a product or quotient may underflow.  Radii are
  computed in round-to-nearest and then inflated by (1 + 2^-40), far more than the few roundings of
  each radius formula can lose.  Used for float16/bfloat16/float32 targets.
* ``"double-double"``: (hi, lo, rad) with |exact − (hi + lo)| ≤ rad, about 2^-100 relative
  (:mod:`.double_double`: the arithmetic and its error bounds).  Used for float64 targets, which a
  53-bit ball can never decide.

An element is *decided* for a target dtype when every point of its ball rounds to the same value of
that dtype (rounding is monotone, so the exact value does too).  Undecided elements — a ball that
straddles a rounding boundary, an overflow, an output in float64's subnormal range (double-double),
a formulation using a function the arithmetic has no rule for — are recomputed from arb balls
(:func:`arb_rounded`), on the independent slices (rows of z, columns of x) that hold them only.
:class:`RoundedReference` says how many elements took that slow path.

:func:`certified_values` answers the other question a caller may ask — the exact value to a number of
bits (e.g. 30 beyond the target's precision) — as double-double pairs, by the same two tiers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import mpmath
import numpy as np
from mpmath.libmp import from_man_exp

from derive.codegen import full_layout
import sympy as sp

from derive import get_op
from derive.program import Delta, Elementwise, Formulation, Reduce, Relabel

from ..arguments import check_arguments
from . import double_double as dd
from ..dtypes import finfo, resolve_dtype

__all__ = ["RoundedReference", "rounded_reference", "ball_evaluate", "round_float64", "decide_float64",
           "decide_relative", "certified_values", "CertifiedValues", "arb_rounded", "LIBM_ULPS",
           "BALL_FUNCTIONS", "ARITHMETICS"]

_make_mpf = mpmath.mp.make_mpf
U = 2.0 ** -53
ETA = 2.0 ** -1074                 # smallest subnormal: absolute error bound of an underflowing result
INFLATE = 1 + 2.0 ** -40
LIBM_ULPS = 8                      # assumed bound on numpy's float64 exp/log error, in ulps (measured ≤ 1)
BALL_FUNCTIONS = ("exp", "log", "Abs")


class Unsupported(Exception):
    """A formulation step this engine has no ball rule for (the op then goes to arb entirely)."""


def _grow(r):
    """A computed radius made an upper bound: the few roundings of its formula (relative ≤ 8u ≪ 2^-40)
    and, in the subnormal range, up to 8 absolute errors of η, plus η for an underflowing result."""
    return r * INFLATE + 8 * ETA


def _add(a, b):
    (ma, ra), (mb, rb) = a, b
    m = ma + mb
    return m, _grow(ra + rb + U * np.abs(m))


def _mul(a, b):
    (ma, ra), (mb, rb) = a, b
    m = ma * mb
    return m, _grow(np.abs(ma) * rb + np.abs(mb) * ra + ra * rb + U * np.abs(m))


def _div(a, b):
    (ma, ra), (mb, rb) = a, b
    m = ma / mb
    gap = np.abs(mb) - rb                            # > 0 unless the divisor's ball reaches 0
    with np.errstate(all="ignore"):
        r = np.where(gap > 0, (np.abs(ma) * rb + np.abs(mb) * ra) / (np.abs(mb) * np.where(gap > 0, gap, 1)), np.inf)
    return m, _grow(r * INFLATE + U * np.abs(m))


def _exp(a):
    ma, ra = a
    m = np.exp(ma)
    return m, _grow(np.abs(m) * (1 + 2 * LIBM_ULPS * U) * np.expm1(ra) * INFLATE
                    + 2 * LIBM_ULPS * (U * np.abs(m) + ETA))


def _log(a):
    ma, ra = a
    low = ma - ra
    m = np.log(ma)
    with np.errstate(all="ignore"):
        r = np.where(low > 0, ra / np.where(low > 0, low, 1), np.inf)
    return m, _grow(r * INFLATE + 2 * LIBM_ULPS * U * np.abs(m))


def _sqrt(a):
    ma, ra = a
    m = np.sqrt(ma)
    low = np.sqrt(np.maximum(ma - ra, 0))
    with np.errstate(all="ignore"):
        r = np.where(ma - ra > 0, ra / (m + low), np.sqrt(ma + ra) * (1 + 4 * U))
    return m, _grow(r * INFLATE + U * np.abs(m))


def _abs(a):
    return np.abs(a[0]), a[1]


def _constant(value):
    """A SymPy number as a ball (exact when float64 holds it)."""
    m = float(value)
    if not math.isfinite(m):
        raise Unsupported(f"constant {value} outside float64")
    exact = sp.Rational(value) == sp.Rational(m) if value.is_Rational else False
    return np.float64(m), np.float64(0.0 if exact else _grow(U * abs(m)))


def _f64_sum(ball, axis, count):
    m, r = ball
    m = np.broadcast_to(m, np.broadcast_shapes(np.shape(m), np.shape(r)))
    total = np.sum(m, axis=axis, keepdims=True)
    gamma = (count - 1) * U / (1 - count * U)
    rad = _grow(np.sum(np.broadcast_to(r, m.shape), axis=axis, keepdims=True)
                + gamma * np.sum(np.abs(m), axis=axis, keepdims=True) * INFLATE)
    return total, rad


def _f64_max(ball, axis):                   # max of balls: |max exact − max mid| ≤ max rad
    m, r = np.broadcast_arrays(*ball)
    return np.max(m, axis=axis, keepdims=True), np.max(r, axis=axis, keepdims=True)


def _dd_constant(value):
    """A SymPy number as a double-double ball: rationals at 300 bits (exact when dyadic), closed forms
    (π, √2…) from SymPy's evalf to 100 digits."""
    import mpmath
    if value.is_Rational:
        p, q = int(value.p), int(value.q)
        with mpmath.workprec(300):
            v = mpmath.mpf(p) / q
        exact = q & (q - 1) == 0 and abs(p).bit_length() <= 250
    else:
        with mpmath.workprec(400):              # mpf() of a SymPy Float rounds to the context's precision
            v, exact = mpmath.mpf(sp.N(value, 120)), False
    try:
        return dd.constant(v, exact=exact)
    except OverflowError as exc:
        raise Unsupported(str(exc)) from None


@dataclass(frozen=True)
class Arithmetic:
    """The ball rules one engine evaluates a formulation with (a ball is a tuple of arrays)."""
    name: str
    exact: object                # float64 array -> ball of radius 0
    constant: object             # SymPy number -> ball
    add: object
    mul: object
    div: object
    functions: dict              # SymPy function name -> unary rule
    sqrt: object
    absolute: object
    sum: object                  # (ball, axis tuple, count) -> ball, axes kept
    max: object                  # (ball, axis tuple) -> ball, axes kept

    def one(self):
        return self.exact(np.float64(1.0))

    def power(self, ball, n: int):
        if n < 0:
            return self.div(self.one(), self.power(ball, -n))
        base = self.absolute(ball) if n % 2 == 0 else ball
        result = self.one()
        for _ in range(n):
            result = self.mul(result, base)
        return result


FLOAT64 = Arithmetic("float64 balls", lambda a: (np.asarray(a, dtype=np.float64), np.float64(0.0)), _constant,
                     _add, _mul, _div, {"exp": _exp, "log": _log, "Abs": _abs}, _sqrt, _abs, _f64_sum, _f64_max)


def _dd_sum(ball, axis, count):
    return dd.tree_sum(ball, axis)


DOUBLE_DOUBLE = Arithmetic("double-double balls", lambda a: dd.point(a), _dd_constant, dd.add, dd.mul, dd.div,
                           {"exp": dd.exp, "log": dd.log, "log1p": dd.log1p, "Abs": dd.absolute}, dd.sqrt,
                           dd.absolute, _dd_sum, dd.maximum)
ARITHMETICS = {"float64": FLOAT64, "double-double": DOUBLE_DOUBLE}


def _compile(expr: sp.Expr, arith: Arithmetic):
    """A function env -> ball for a SymPy expression (built once per step and arithmetic)."""
    if expr.is_Symbol:
        name = expr.name
        return lambda env: env[name]
    if expr.is_Number:
        ball = arith.constant(expr)
        return lambda env: ball
    if expr.is_Add or expr.is_Mul:
        parts = [_compile(a, arith) for a in expr.args]
        combine = arith.add if expr.is_Add else arith.mul

        def fold(env):
            result = parts[0](env)
            for p in parts[1:]:
                result = combine(result, p(env))
            return result
        return fold
    if expr.is_Pow:
        base, exp = _compile(expr.base, arith), expr.exp
        if exp.is_Integer:
            n = int(exp)
            return lambda env: arith.power(base(env), n)
        if exp == sp.S.Half:
            return lambda env: arith.sqrt(base(env))
        if exp == -sp.S.Half:
            return lambda env: arith.div(arith.one(), arith.sqrt(base(env)))
        raise Unsupported(f"power {expr.exp}")
    if expr.is_number and not expr.free_symbols:     # a closed constant such as √(2/π)
        ball = arith.constant(expr) if arith is DOUBLE_DOUBLE else _constant(sp.Float(sp.N(expr, 30)))
        return lambda env: ball
    name = type(expr).__name__
    if name in arith.functions and len(expr.args) == 1:
        rule, arg = arith.functions[name], _compile(expr.args[0], arith)
        return lambda env: rule(arg(env))
    raise Unsupported(f"function {name} ({arith.name})")


_PROGRAMS: dict = {}


def _program(form: Formulation, arith: Arithmetic):
    key = (id(form), arith.name)
    cached = _PROGRAMS.get(key)
    if cached is None or cached[0] is not form:
        steps = [(step, _compile(step.expr, arith) if isinstance(step, Elementwise) else None) for step in form.steps]
        cached = _PROGRAMS[key] = (form, steps)
    return cached[1]


def ball_evaluate(form: Formulation, *arrays, arithmetic: str = "float64") -> list[tuple]:
    """Balls of each output of ``form`` at exact float64 inputs (compact shapes): ``(mid, rad)`` float64
    arrays for ``arithmetic="float64"``, ``(hi, lo, rad)`` for ``"double-double"``; the exact value
    lies within ``rad`` of ``mid`` (of ``hi + lo``).  Raises :class:`Unsupported` for a step the
    arithmetic has no rule for.

    Values are held in full-rank layout over ``form.axis_order`` as in ``derive.Kernel``."""
    arith = ARITHMETICS[arithmetic]
    order = {a: i for i, a in enumerate(form.axis_order)}

    def full(array, labels):
        return full_layout(array, labels, order)

    env, lengths = {}, {}
    for inp, arr in zip(form.inputs, arrays):
        arr = np.asarray(arr, dtype=np.float64)
        lengths.update(zip(inp.axes, arr.shape))
        env[inp.name] = arith.exact(full(arr, inp.axes))
    for size, axis in form.sizes.items():
        env[size] = arith.exact(np.float64(math.prod(lengths[a] for a in form.size_axes(size))))
    axes = form.axes()
    with np.errstate(all="ignore"):
        for step, fn in _program(form, arith):
            if isinstance(step, Elementwise):
                env[step.name] = fn(env)
            elif isinstance(step, Reduce):
                axis = tuple(order[a] for a in step.over)
                count = math.prod(lengths[a] for a in step.over)
                if step.op == "max":
                    env[step.name] = arith.max(env[step.arg], axis)
                    continue
                total = arith.sum(env[step.arg], axis, count)
                env[step.name] = arith.div(total, arith.exact(np.float64(count))) if step.op == "mean" else total
            elif isinstance(step, Relabel):
                parts = np.broadcast_arrays(*env[step.arg])
                for old, new in step.mapping:
                    parts = [np.swapaxes(v, order[old], order[new]) for v in parts]
                    lengths[new] = lengths[old]
                env[step.name] = tuple(parts)
            elif isinstance(step, Delta):
                i, j = step.axes
                env[step.name] = arith.exact(full(np.eye(lengths[i]), (i, j)))
            else:
                raise Unsupported(f"step {type(step).__name__} ({arith.name})")
    outs = []
    for name in form.outputs:
        shape = tuple(lengths[a] for a in axes[name])
        full_shape = [1] * len(order)
        for a, n in zip(axes[name], shape):
            full_shape[order[a]] = n
        outs.append(tuple(np.reshape(np.broadcast_to(v, full_shape), shape).astype(np.float64) for v in env[name]))
    return outs


@dataclass
class RoundedReference:
    """The exact value of every output element rounded to ``dtype`` (round to nearest even), and how
    many elements the fast balls could not decide (``slow``: recomputed with arb balls, which decide
    the rounding by both ends of each ball; ``unresolved`` of them were still open at
    :data:`ARB_MAX_BITS` and got the rounded midpoint of an 83-bit certified ball instead)."""
    values: tuple            # arrays of ``dtype``, one per output
    total: int
    slow: int
    engine_note: str = ""
    unresolved: int = 0

    @property
    def fast_fraction(self) -> float:
        return 1 - self.slow / self.total if self.total else 1.0


def round_float64(x, dt) -> np.ndarray:
    """float64 values correctly rounded (to nearest, ties to even) to ``dt``.  numpy's casts to float16
    and float32 are; ml_dtypes' cast to bfloat16 rounds through float32 (double rounding:
    1 + 2^-8 + 2^-30 becomes 1), so bfloat16 is rounded here on the float64 bits."""
    x = np.asarray(x, dtype=np.float64)
    if dt != resolve_dtype("bfloat16"):
        with np.errstate(all="ignore"):
            return x.astype(dt)
    shift = 52 - 7                                  # bfloat16 keeps 7 of float64's 52 fraction bits
    bits = np.ascontiguousarray(x).view(np.uint64)
    odd = (bits >> np.uint64(shift)) & np.uint64(1)
    kept = ((bits + np.uint64((1 << (shift - 1)) - 1) + odd) >> np.uint64(shift)) << np.uint64(shift)
    y = kept.view(np.float64)
    tiny = np.abs(x) < 2.0 ** -126                  # bfloat16 subnormals: multiples of 2^-133
    y = np.where(tiny, np.rint(x * 2.0 ** 133) * 2.0 ** -133, y)
    y = np.where(np.isnan(x), np.nan, y)
    with np.errstate(all="ignore"):
        return y.astype(np.float32).astype(dt)      # exact: ≤ 8 significant bits, or ≥ 2^128 → inf


def _decide(mid, rad, dt):
    """(value in dt, decided mask) from one output's balls."""
    with np.errstate(all="ignore"):
        lo = np.nextafter(mid - rad, -np.inf)
        hi = np.nextafter(mid + rad, np.inf)
    a, b = round_float64(lo, dt), round_float64(hi, dt)
    decided = np.isfinite(rad) & np.isfinite(mid) & (a == b) & ~np.isnan(a.astype(np.float64))
    return unsigned_zero(a, b), decided


def unsigned_zero(a, b):
    """``a`` (the rounded lower end of balls whose upper ends round to ``b``), except that where both ends
    round to zeros of opposite sign — the ball holds 0, or values of both signs, all rounding to zero —
    the value is +0, as the correctly rounded exact 0 is; a certified 0 whose sign the ball leaves open."""
    return np.where((a == 0) & (np.signbit(a) != np.signbit(b)), np.zeros_like(a), a)


_MAX = float(np.finfo(np.float64).max)
_TOP_SPACING = 2.0 ** 971                        # spacing of float64 at its largest binade


def _below(a, b, limit):
    """a + b < limit, exactly (a 2Sum: fl(a + b) < limit, or equal with a negative remainder)."""
    s, e = dd.two_sum(a, b)
    return (s < limit) | ((s == limit) & (e < 0))


def decide_float64(hi, lo, rad):
    """(value, decided mask) of double-double balls for a float64 target.

    With (h, l) = 2Sum(hi, lo) (exact, h = RN(hi + lo)), every point of the ball rounds to h when
    l + rad < half the spacing above h and rad − l < half the spacing below, both compared exactly (a
    ball that touches a midpoint is left open).  Half a spacing of 2^-1074 is not a float64 (it becomes
    0), so values in the subnormal range are never decided here — an exact zero (h = l = rad = 0) is."""
    h, l = dd.two_sum(np.asarray(hi, dtype=np.float64), np.asarray(lo, dtype=np.float64))
    rad = np.asarray(rad, dtype=np.float64)
    with np.errstate(all="ignore"):
        up = np.nextafter(h, np.inf) - h
        down = h - np.nextafter(h, -np.inf)
        up = np.where(h == _MAX, _TOP_SPACING, up)          # above MAX + half a spacing: inf
        down = np.where(h == -_MAX, _TOP_SPACING, down)
        decided = _below(l, rad, up / 2) & _below(rad, -l, down / 2)
    decided &= np.isfinite(h) & np.isfinite(l) & np.isfinite(rad)
    decided |= (h == 0) & (l == 0) & (rad == 0)
    return h, decided


def decide_relative(hi, lo, rad, bits: int):
    """((hi, lo), decided mask): decided where rad ≤ 2^-bits·|exact value| is certain, i.e. hi + lo is
    ``bits`` bits accurate (an exact zero is decided too)."""
    h, l = dd.two_sum(np.asarray(hi, dtype=np.float64), np.asarray(lo, dtype=np.float64))
    rad = np.asarray(rad, dtype=np.float64)
    with np.errstate(all="ignore"):
        lower = (np.abs(h) - np.abs(l) - rad) * (1 - 2.0 ** -40)
        decided = rad * (1 + 2.0 ** -40) <= np.ldexp(lower, -bits)
    decided &= np.isfinite(h) & np.isfinite(rad) & (lower > 0)
    decided |= (h == 0) & (l == 0) & (rad == 0)
    return (h, l), decided


def rounded_reference(op, *args, dtype, **params) -> RoundedReference:
    """The op's exact outputs at ``args`` (float64 values are exact inputs) correctly rounded to ``dtype``;
    ``op``: a name or an op, ``params``: its conventions (as for :func:`numeric.reference.reference`).

    float64 balls decide most elements at float16/bfloat16/float32, double-double balls at float64;
    the rest come from arb balls on the independent slices that hold them (:func:`arb_rounded`: the
    precision doubles until both ends of each ball round alike).  ``slow`` counts the elements that
    took arb.  A zero's sign is certified where the ball excludes 0; a ball that holds 0 (an exact zero, or
    a value too small for its radius) and rounds to zero at both ends gives +0."""
    the_op = get_op(op, **params)
    dt = resolve_dtype(dtype)
    arrays = check_arguments(the_op, args, np.dtype(np.float64))
    for a, inp in zip(arrays, the_op.inputs):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"argument {inp.name!r} must be finite for a reference; it holds inf or nan")
    outputs = the_op.outputs
    note = ""
    try:
        if dt == np.float64:
            balls = ball_evaluate(the_op.stable_formulation, *arrays, arithmetic="double-double")
            decided = [decide_float64(h, l, r) for h, l, r in balls]
        else:
            balls = ball_evaluate(the_op.stable_formulation, *arrays)
            decided = [_decide(m, r, dt) for m, r in balls]
    except Unsupported as exc:
        note = str(exc)
        decided = None
    if decided is None:
        values, unresolved = arb_rounded(the_op, arrays, dt)
        total = sum(v.size for v in values)
        return RoundedReference(tuple(values), total, total, note, unresolved)
    values = [np.asarray(v).astype(dt) if dt == np.float64 else v for v, _ in decided]
    masks = [d for _, d in decided]
    slow = sum(int((~d).sum()) for d in masks)
    unresolved = _fill_from_arb(the_op, arrays, outputs, values, masks) if slow else 0
    return RoundedReference(tuple(values), sum(v.size for v in values), slow, note, unresolved)


@dataclass
class CertifiedValues:
    """Every output element as a double-double ``hi + lo`` within 2^-``bits`` of the exact value,
    relative (or exactly 0 where |exact| ≤ 2^-1080, as :func:`numeric.reference.reference` does), and
    how many elements the fast balls could not certify (``slow``: taken from arb balls)."""
    hi: tuple                # float64 arrays, one per output
    lo: tuple
    bits: int
    total: int
    slow: int
    engine_note: str = ""


MAX_CERTIFIED_BITS = 100      # a double-double holds about 106 bits; arb's ends add ≤ 2^-105 relative


def certified_values(op, *args, bits: int, **params) -> CertifiedValues:
    """The op's exact outputs at ``args`` to ``bits`` bits relative — e.g. a target's precision + 30
    (float64: 83, float32: 54, bfloat16: 38) — as double-double pairs.

    Double-double balls certify an element when radius ≤ 2^-bits·min |value| over the ball; the rest
    (and every element when a step has no double-double rule) come from arb balls at 128, 256, …
    bits until each is ``bits`` + 2 bits accurate or within 2^-1080 of 0, converted to
    hi = RN(mid), lo = RN(mid − hi).  ``op``: a name or an op, ``params``: its conventions."""
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= MAX_CERTIFIED_BITS:
        raise ValueError(f"bits must be an integer from 1 to {MAX_CERTIFIED_BITS}; got {bits!r}")
    the_op = get_op(op, **params)
    arrays = check_arguments(the_op, args, np.dtype(np.float64))
    for a, inp in zip(arrays, the_op.inputs):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"argument {inp.name!r} must be finite for a reference; it holds inf or nan")
    note = ""
    try:
        balls = ball_evaluate(the_op.stable_formulation, *arrays, arithmetic="double-double")
        decided = [decide_relative(h, l, r, bits) for h, l, r in balls]
    except Unsupported as exc:
        note = str(exc)
        decided = [((np.zeros(o.shape), np.zeros(o.shape)), np.zeros(o.shape, dtype=bool))
                   for o in _output_templates(the_op, arrays)]
    his = [np.array(h, dtype=np.float64) for (h, _), _ in decided]
    los = [np.array(l, dtype=np.float64) for (_, l), _ in decided]
    masks = [m for _, m in decided]
    slow = sum(int((~m).sum()) for m in masks)
    if slow:
        exact = _arb_double_double(the_op, arrays, bits + 2)
        for h, l, m, (eh, el) in zip(his, los, masks, exact):
            h[~m], l[~m] = eh[~m], el[~m]
    return CertifiedValues(tuple(his), tuple(los), bits, sum(h.size for h in his), slow, note)


def _output_templates(op, arrays):
    """Zero arrays of each output's shape (axis lengths read from the inputs)."""
    lengths = {}
    for a, inp in zip(arrays, op.inputs):
        lengths.update(zip(inp.axes, np.shape(a)))
    return [np.zeros(tuple(lengths[a] for a in spec.axes)) for spec in op.outputs]


def _arb_double_double(op, arrays, bits: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(hi, lo) of every output from arb balls certified to ``bits`` bits (or within 2^-1080 of 0)."""
    import flint

    from .arb_arrays import array_kernel, certify
    kernel = array_kernel(op.reference)
    inputs = [np.asarray(np.frompyfunc(flint.arb, 1, 1)(np.asarray(a, dtype=np.float64)), dtype=object)
              if np.ndim(a) else flint.arb(float(a)) for a in arrays]
    precision = ARB_START_BITS
    while precision <= ARB_MAX_BITS:
        with flint.ctx.workprec(precision):
            out = [np.asarray(o, dtype=object) for o in kernel.run(*inputs)]
            states = [certify(o, bits, 1080) for o in out]
            if all(s is not None for s in states):
                result = []
                for o, st in zip(out, states):
                    hi = np.asarray(_MID_FLOAT(o), dtype=np.float64).reshape(o.shape)
                    lo = np.asarray(_REST_FLOAT(o, hi), dtype=np.float64).reshape(o.shape)
                    zero = st == 2
                    result.append((np.where(zero, 0.0, hi), np.where(zero, 0.0, lo)))
                return result
        precision *= 2
    from ..reference import ReferenceNotCertified
    raise ReferenceNotCertified(f"{op.name}: arb radii at {ARB_MAX_BITS} bits still exceed 2^-{bits} relative")


_MID_FLOAT = np.frompyfunc(lambda b: float(b.mid()), 1, 1)
_REST_FLOAT = np.frompyfunc(lambda b, h: float(b.mid() - h), 2, 1)     # exact at the working precision


def _on_midpoint(floats, dt) -> np.ndarray:
    """Where float64 values lie exactly halfway between two neighbours of ``dt`` (or on its overflow
    threshold, max + half a spacing)."""
    info = finfo(dt)
    p, emin = int(info.nmant) + 1, int(info.minexp)
    with np.errstate(all="ignore"):
        _, e = np.frexp(floats)
        half = np.ldexp(1.0, np.maximum(e - 1, emin) - p)            # half a spacing of dt at the value
        q = floats / half
        return (q == np.round(q)) & (np.mod(q, 2) == 1)


def _round_mpf(exact, dt) -> np.ndarray:
    """Certified ``mpf`` values rounded once, directly, to ``dt``.

    float(v) rounds correctly to float64 in float64's normal range, and rounding that float64 again to a
    narrower dtype equals rounding v itself unless the float64 lands exactly on a midpoint of the
    narrower grid; midpoints and float64 subnormals (where mpmath's float() rounds twice) are rounded
    exactly from v."""
    info = finfo(dt)
    p, emin = int(info.nmant) + 1, int(info.minexp)
    exact = np.asarray(exact, dtype=object)
    floats = np.asarray(np.frompyfunc(float, 1, 1)(exact), dtype=np.float64).reshape(exact.shape)
    redo = _on_midpoint(floats, dt) | (np.abs(floats) < 2.0 ** -1022) | ~np.isfinite(floats)

    def one(v):
        if v == 0:
            return 0.0
        _, e = mpmath.frexp(v)                       # v = m 2^e, 1/2 ≤ |m| < 1
        q = max(int(e) - 1, emin) - (p - 1)          # exponent of the last kept bit
        n = int(mpmath.nint(mpmath.ldexp(v, -q)))    # nearest integer, ties to even
        try:
            return math.ldexp(n, q)
        except OverflowError:
            return math.copysign(math.inf, n)

    if redo.any():
        floats[redo] = [one(v) for v in exact[redo]]
    with np.errstate(all="ignore"):
        return round_float64(floats, dt)            # exact, or ±inf beyond the dtype's range


ARB_START_BITS = 128
ARB_MAX_BITS = 1 << 14


def _ends(ball):
    """(lower, upper) ``mpf`` bounds of an arb ball (its ends rounded outward at the context precision),
    or None for a non-finite ball."""
    if not ball.is_finite():
        return None
    return tuple(_make_mpf(from_man_exp(int(m), int(e))) for m, e in (ball.lower().man_exp(), ball.upper().man_exp()))


def _end_float(upper: bool):
    def end(ball):
        if not ball.is_finite():
            return math.nan
        return float(ball.upper() if upper else ball.lower())
    return np.frompyfunc(end, 1, 1)


_LOWER, _UPPER = _end_float(False), _end_float(True)


def arb_rounded(op, arrays, dt) -> tuple[list[np.ndarray], int]:
    """(values, unresolved): every output of ``op``'s reference formulation at exact ``arrays``, correctly
    rounded to ``dt`` from arb balls — decided when both ends of an element's ball round to the same
    value (for float64 by arb's own conversion of each end, which rounds to nearest even, subnormals
    included), precision doubling from 128 bits for the rest.  An element still open at
    :data:`ARB_MAX_BITS` (an exact midpoint that arb cannot pin down) gets its ball's midpoint rounded,
    the rule of :func:`numeric.reference.reference` (83 certified bits); ``unresolved`` counts them."""
    import flint

    from .arb_arrays import array_kernel
    kernel = array_kernel(op.reference)
    inputs = [np.asarray(np.frompyfunc(flint.arb, 1, 1)(np.asarray(a, dtype=np.float64)), dtype=object)
              if np.ndim(a) else flint.arb(float(a)) for a in arrays]
    values, open_ = None, None
    bits = ARB_START_BITS
    while True:
        with flint.ctx.workprec(bits):
            out = [np.asarray(o, dtype=object) for o in kernel.run(*inputs)]
        if values is None:
            values = [np.zeros(o.shape, dtype=dt) for o in out]
            open_ = [np.ones(o.shape, dtype=bool) for o in out]
        for v, o, todo in zip(values, out, open_):
            idx = np.flatnonzero(todo)
            with flint.ctx.workprec(bits + 64):     # float() of an exact arb end rounds to nearest even
                a, b = (np.asarray(f(o.ravel()[idx]), dtype=np.float64) for f in (_LOWER, _UPPER))
            finite = ~np.isnan(a) & ~np.isnan(b)
            if dt == np.float64:
                ra, rb, tie = a, b, np.zeros(a.shape, dtype=bool)
            else:            # rounding the float64 again equals rounding the end itself unless it is a midpoint
                ra, rb = round_float64(a, dt), round_float64(b, dt)
                tie = _on_midpoint(a, dt) | _on_midpoint(b, dt)
            same = finite & ~tie & (ra.astype(np.float64) == rb.astype(np.float64))
            v.reshape(-1)[idx[same]] = unsigned_zero(ra, rb)[same]
            todo.reshape(-1)[idx[same]] = False
            idx = idx[finite & tie]
            if not idx.size:
                continue
            with flint.ctx.workprec(bits + 64):     # ends on a midpoint of dt: rounded exactly from mpf
                ends = [_ends(b) for b in o.ravel()[idx]]
            finite = np.array([e is not None for e in ends], dtype=bool)
            if not finite.any():
                continue
            lows = np.empty(int(finite.sum()), dtype=object)
            highs = np.empty(int(finite.sum()), dtype=object)
            lows[:], highs[:] = [e[0] for e in ends if e], [e[1] for e in ends if e]
            a, b = _round_mpf(lows, dt), _round_mpf(highs, dt)
            same = a.astype(np.float64) == b.astype(np.float64)
            done = idx[finite][same]
            v.reshape(-1)[done] = unsigned_zero(a, b)[same]
            todo.reshape(-1)[done] = False
        if not any(t.any() for t in open_):
            return values, 0
        bits *= 2
        if bits > ARB_MAX_BITS:
            break
    unresolved = 0
    for v, o, todo in zip(values, out, open_):
        idx = np.flatnonzero(todo)
        if not all(b.is_finite() for b in o.ravel()[idx]):
            from ..reference import ReferenceNotCertified
            raise ReferenceNotCertified(f"{op.name}: arb balls still infinite at {ARB_MAX_BITS} bits")
        mids = np.empty(len(idx), dtype=object)
        mids[:] = [_make_mpf(from_man_exp(int(m), int(e))) for m, e in (b.mid().man_exp() for b in o.ravel()[idx])]
        v.reshape(-1)[idx] = _round_mpf(mids, dt)
        unresolved += len(idx)
    return values, unresolved


def _fill_from_arb(op, arrays, outputs, values, masks):
    """Recompute undecided elements with arb on the independent slices holding them; returns how many
    of them arb itself could not decide (see :func:`arb_rounded`)."""
    axis = op.independent_axis
    sliceable = all(axis in o.axes for o in outputs)
    if sliceable:
        wanted = set()
        for spec, mask in zip(outputs, masks):
            p = spec.axes.index(axis)
            wanted |= set(np.nonzero(np.moveaxis(~mask, p, 0).reshape(mask.shape[p], -1).any(axis=1))[0].tolist())
        idx = np.array(sorted(wanted))
        sub = [np.take(a, idx, axis=inp.axes.index(axis)) if axis in inp.axes else a
               for a, inp in zip(arrays, op.inputs)]
    else:
        sub = arrays
    exact, unresolved = arb_rounded(op, sub, values[0].dtype)
    for k, (spec, e, mask) in enumerate(zip(outputs, exact, masks)):
        if sliceable:               # the slices' elements that the balls left open, and only those
            p = spec.axes.index(axis)
            target = np.moveaxis(values[k], p, 0)          # views: writes land in values[k]
            open_ = ~np.moveaxis(mask, p, 0)[idx]
            block = target[idx]
            block[open_] = np.moveaxis(e, p, 0)[open_]
            target[idx] = block
        else:
            values[k][~mask] = e[~mask]
    return unresolved
