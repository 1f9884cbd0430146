"""Fast certified path: an op evaluated in vectorised float64 ball arithmetic, arb for what it leaves open.

Every value of the op's stable formulation is carried as a pair of float64 arrays (mid, rad) with the
invariant |exact − mid| ≤ rad.  Each operation adds its own rounding error to the radius: u·|mid| for a
correctly rounded operation (+ − × ÷ √, u = 2^-53), ``LIBM_ULPS`` ulps for ``exp``/``log`` (numpy's
float64 libm; ``tests/test_speed_paths.py`` measures the real error against mpmath), γ_n·Σ|a| for a sum
of n terms (Higham, *Accuracy and Stability of Numerical Algorithms*, eq. 3.4), plus the smallest
subnormal wherever a product or quotient may underflow.  Radii are computed in round-to-nearest and then
inflated by (1 + 2^-40), far more than the few roundings of each radius formula can lose.

An element is *decided* for a target dtype when both ends of its ball round to the same value of that
dtype (so the exact value does too: rounding is monotone).  Undecided elements — a ball that straddles
a rounding boundary, an overflow, a formulation using a function outside :data:`BALL_FUNCTIONS`, any
float64 target (53-bit balls cannot decide float64 rounding) — are recomputed with the certified arb
reference, on the independent slices (rows of z, columns of x) that hold them only.
:class:`RoundedReference` says how many elements took that slow path.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import mpmath
import numpy as np

from derive.codegen import full_layout
import sympy as sp

from derive import get_op
from derive.program import Delta, Elementwise, Formulation, Reduce, Relabel

from ..arguments import check_arguments
from ..dtypes import finfo, resolve_dtype

__all__ = ["RoundedReference", "rounded_reference", "ball_evaluate", "round_float64", "LIBM_ULPS", "BALL_FUNCTIONS"]

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


def _power(a, n: int):
    if n < 0:
        return _div((np.float64(1.0), np.float64(0.0)), _power(a, -n))
    base = _abs(a) if n % 2 == 0 else a
    result = (np.float64(1.0), np.float64(0.0))
    for _ in range(n):
        result = _mul(result, base)
    return result


def _constant(value):
    """A SymPy number as a ball (exact when float64 holds it)."""
    m = float(value)
    if not math.isfinite(m):
        raise Unsupported(f"constant {value} outside float64")
    exact = sp.Rational(value) == sp.Rational(m) if value.is_Rational else False
    return np.float64(m), np.float64(0.0 if exact else _grow(U * abs(m)))


def _compile(expr: sp.Expr):
    """A function env -> ball for a SymPy expression (built once per step)."""
    if expr.is_Symbol:
        name = expr.name
        return lambda env: env[name]
    if expr.is_Number:
        ball = _constant(expr)
        return lambda env: ball
    if expr.is_Add or expr.is_Mul:
        parts = [_compile(a) for a in expr.args]
        combine = _add if expr.is_Add else _mul

        def fold(env):
            result = parts[0](env)
            for p in parts[1:]:
                result = combine(result, p(env))
            return result
        return fold
    if expr.is_Pow:
        base, exp = _compile(expr.base), expr.exp
        if exp.is_Integer:
            n = int(exp)
            return lambda env: _power(base(env), n)
        if exp == sp.S.Half:
            return lambda env: _sqrt(base(env))
        if exp == -sp.S.Half:
            return lambda env: _div((np.float64(1.0), np.float64(0.0)), _sqrt(base(env)))
        raise Unsupported(f"power {expr.exp}")
    rules = {"exp": _exp, "log": _log, "Abs": _abs}
    name = type(expr).__name__
    if name in rules and len(expr.args) == 1:
        rule, arg = rules[name], _compile(expr.args[0])
        return lambda env: rule(arg(env))
    raise Unsupported(f"function {name}")


_PROGRAMS: dict = {}


def _program(form: Formulation):
    cached = _PROGRAMS.get(id(form))
    if cached is None or cached[0] is not form:
        steps = [(step, _compile(step.expr) if isinstance(step, Elementwise) else None) for step in form.steps]
        cached = _PROGRAMS[id(form)] = (form, steps)
    return cached[1]


def ball_evaluate(form: Formulation, *arrays) -> list[tuple[np.ndarray, np.ndarray]]:
    """(mid, rad) float64 arrays of each output of ``form`` at exact float64 inputs (compact shapes).

    Values are held in full-rank layout over ``form.axis_order`` as in ``derive.Kernel``."""
    order = {a: i for i, a in enumerate(form.axis_order)}
    rank = len(order)

    def full(array, labels):
        return full_layout(array, labels, order)

    env, lengths = {}, {}
    for inp, arr in zip(form.inputs, arrays):
        arr = np.asarray(arr, dtype=np.float64)
        lengths.update(zip(inp.axes, arr.shape))
        env[inp.name] = (full(arr, inp.axes), np.zeros((1,) * rank))
    for size, axis in form.sizes.items():
        env[size] = (np.float64(lengths[axis]), np.float64(0.0))
    axes = form.axes()
    with np.errstate(all="ignore"):
        for step, fn in _program(form):
            if isinstance(step, Elementwise):
                env[step.name] = fn(env)
            elif isinstance(step, Reduce):
                m, r = env[step.arg]
                axis = tuple(order[a] for a in step.over)
                count = math.prod(lengths[a] for a in step.over)
                m, r = np.broadcast_to(m, np.broadcast_shapes(np.shape(m), np.shape(r))), r
                if step.op == "max":                  # max of balls: |max exact − max mid| ≤ max rad
                    env[step.name] = (np.max(m, axis=axis, keepdims=True),
                                      np.max(np.broadcast_to(r, m.shape), axis=axis, keepdims=True))
                    continue
                total = np.sum(m, axis=axis, keepdims=True)
                gamma = (count - 1) * U / (1 - count * U)
                rad = _grow(np.sum(np.broadcast_to(r, m.shape), axis=axis, keepdims=True)
                            + gamma * np.sum(np.abs(m), axis=axis, keepdims=True) * INFLATE)
                if step.op == "mean":
                    env[step.name] = _div((total, rad), (np.float64(count), np.float64(0.0)))
                else:
                    env[step.name] = (total, rad)
            elif isinstance(step, Relabel):
                m, r = env[step.arg]
                m, r = np.broadcast_arrays(m, r)
                for old, new in step.mapping:
                    m, r = np.swapaxes(m, order[old], order[new]), np.swapaxes(r, order[old], order[new])
                    lengths[new] = lengths[old]
                env[step.name] = (m, r)
            elif isinstance(step, Delta):
                i, j = step.axes
                env[step.name] = (full(np.eye(lengths[i]), (i, j)), np.zeros((1,) * rank))
    outs = []
    for name in form.outputs:
        shape = tuple(lengths[a] for a in axes[name])
        full_shape = [1] * rank
        for a, n in zip(axes[name], shape):
            full_shape[order[a]] = n
        m, r = env[name]
        outs.append(tuple(np.reshape(np.broadcast_to(v, full_shape), shape).astype(np.float64) for v in (m, r)))
    return outs


@dataclass
class RoundedReference:
    """The exact value of every output element rounded to ``dtype`` (round to nearest even), and how
    many elements the float64 balls could not decide (recomputed by the arb reference)."""
    values: tuple            # arrays of ``dtype``, one per output
    total: int
    slow: int
    engine_note: str = ""

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
    return a, decided


def rounded_reference(op: str, *args, dtype) -> RoundedReference:
    """The op's exact outputs at ``args`` (float64 values are exact inputs) correctly rounded to ``dtype``.

    float64 balls decide most elements at float16/bfloat16/float32; the rest, and every element for a
    float64 target, come from :func:`numeric.reference.reference` (83 certified bits) rounded to
    ``dtype`` — the same guarantee as rounding today's reference."""
    from ..reference import reference          # imported here: reference imports this package
    the_op = get_op(op)
    dt = resolve_dtype(dtype)
    arrays = check_arguments(the_op, args, np.dtype(np.float64))
    for a, inp in zip(arrays, the_op.inputs):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"argument {inp.name!r} must be finite for a reference; it holds inf or nan")
    outputs = the_op.outputs
    note = ""
    try:
        if dt == np.float64:
            raise Unsupported("float64 target: 53-bit balls cannot decide float64 rounding")
        balls = ball_evaluate(the_op.stable_formulation, *arrays)
        decided = [_decide(m, r, dt) for m, r in balls]
    except Unsupported as exc:
        note = str(exc)
        decided = None
    if decided is None:
        exact = reference(op, *arrays)
        exact = exact if isinstance(exact, tuple) else (exact,)
        values = tuple(_round_mpf(e, dt) for e in exact)
        return RoundedReference(values, sum(v.size for v in values), sum(v.size for v in values), note)
    values = [v for v, _ in decided]
    masks = [d for _, d in decided]
    slow = sum(int((~d).sum()) for d in masks)
    if slow:
        _fill_from_arb(the_op, arrays, outputs, values, masks)
    return RoundedReference(tuple(values), sum(v.size for v in values), slow, note)


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
    with np.errstate(all="ignore"):
        _, e = np.frexp(floats)
        half = np.ldexp(1.0, np.maximum(e - 1, emin) - p)            # half a spacing of dt at the value
        q = floats / half
        midpoint = (q == np.round(q)) & (np.mod(q, 2) == 1)
    redo = midpoint | (np.abs(floats) < 2.0 ** -1022) | ~np.isfinite(floats)

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


def _fill_from_arb(op, arrays, outputs, values, masks):
    """Recompute undecided elements with arb on the independent slices holding them."""
    from ..reference import reference
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
    exact = reference(op.name, *sub)
    exact = exact if isinstance(exact, tuple) else (exact,)
    for k, (spec, e, mask) in enumerate(zip(outputs, exact, masks)):
        if sliceable:               # the slices' elements that the balls left open, and only those
            p = spec.axes.index(axis)
            target = np.moveaxis(values[k], p, 0)          # views: writes land in values[k]
            open_ = ~np.moveaxis(mask, p, 0)[idx]
            block = target[idx]
            block[open_] = _round_mpf(np.moveaxis(np.asarray(e, dtype=object), p, 0)[open_], block.dtype)
            target[idx] = block
        else:
            values[k][~mask] = _round_mpf(np.asarray(e, dtype=object)[~mask], values[k].dtype)
