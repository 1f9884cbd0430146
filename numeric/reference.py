"""``reference``: an op evaluated in high precision with digits certified by agreement across precisions.

The op's reference formulation (the forward definition, or the closed form proved equal to the
derivative of it) is lambdified by ``derive`` for a multiple-precision engine and evaluated on the
*exact* values of the given float inputs.  Working precision climbs the ladder 128, 192, 320, 576…
bits (each step adds twice the previous gain) until two successive precisions agree to
``CERTIFIED_BITS`` = 53 + 30 bits relative, element by element (Herbie-style).  An element
known to lie within ±2^-1080 of 0 — below half of float64's smallest subnormal 2^-1074, so it rounds to
0 in every supported dtype — is returned as 0 (x − μ of a constant column, dz for a constant dy; these
need about 1100 bits of working precision to settle).

Engines:

* ``"arb"`` (default; python-flint): ball arithmetic.  Each result carries a rigorous error radius, so
  one evaluation certifies an element when radius ≤ 2^-83·|midpoint|; precision doubles while some
  element is not yet certified (e.g. cancellation), and a ball within ±2^-1080 of 0 is an exact zero.
  Every step runs on whole arrays and the ``mpf`` of an element is extracted from its ball's midpoint
  only when the element is first read (``numeric.engines.arb_arrays``).
* ``"gmpy2"`` (MPFR) and ``"mpmath"``: plain multiple precision, certified by agreement as above.

Precision is always a scoped context (``flint.ctx.workprec`` / ``gmpy2.context`` / ``mpmath.workprec``),
never a global setting.  Results are numpy object arrays of ``mpmath.mpf``; the exponent range is
unbounded, so the naive definition is exact truth.
"""
from __future__ import annotations

from contextlib import contextmanager

import mpmath
import numpy as np
from mpmath.libmp import from_man_exp

from derive import get_op

from .arguments import check_arguments
from .engines.arb_arrays import array_kernel, certify, lazy_mpf
from .evaluate import kernel

__all__ = ["reference", "reference_of", "reference_float64", "CERTIFIED_BITS", "ReferenceNotCertified"]

CERTIFIED_BITS = 53 + 30
START_BITS = 128
MAX_BITS = 1 << 14

import flint
import gmpy2

ENGINES = ("arb", "gmpy2", "mpmath")
DEFAULT_ENGINE = "arb"
ZERO_BITS = 1080               # |v| ≤ 2^-1080 rounds to 0 in float64 and in every narrower dtype


_make_mpf = mpmath.mp.make_mpf


class ReferenceNotCertified(ArithmeticError):
    """Two successive precisions never agreed before ``MAX_BITS``."""


def _map(fn, arr) -> np.ndarray:
    """``fn`` applied to every element, as an object ndarray (also for 0-d input)."""
    return np.asarray(np.frompyfunc(fn, 1, 1)(arr), dtype=object)


@contextmanager
def _precision(engine: str, bits: int):
    if engine == "arb":
        with flint.ctx.workprec(bits):
            yield
    elif engine == "gmpy2":
        with gmpy2.context(gmpy2.get_context(), precision=bits):
            yield
    else:
        with mpmath.workprec(bits):
            yield


_CONVERT = {"arb": np.frompyfunc(flint.arb, 1, 1), "gmpy2": np.frompyfunc(gmpy2.mpfr, 1, 1),
            "mpmath": np.frompyfunc(mpmath.mpf, 1, 1)}


def _to_engine(engine: str, arr: np.ndarray) -> np.ndarray:
    """Exact conversion of a float64 array (every supported dtype embeds exactly) to engine numbers."""
    return np.asarray(_CONVERT[engine](np.asarray(arr, dtype=np.float64)), dtype=object)


def _exact_mpf(v) -> mpmath.mpf:
    """A gmpy2 ``mpfr`` as an ``mpmath.mpf`` with every bit kept (no rounding to mpmath's precision)."""
    man, exp = v.as_mantissa_exp()
    return _make_mpf(from_man_exp(man, int(exp)))


def _arb_mid_mpf(ball) -> mpmath.mpf:
    man, exp = ball.mid().man_exp()
    return _make_mpf(from_man_exp(int(man), int(exp)))


def _to_mpf(engine: str, arr: np.ndarray) -> np.ndarray:
    if engine == "mpmath":
        return arr
    return _map(_arb_mid_mpf if engine == "arb" else _exact_mpf, arr)


def _run(engine, op_name, inputs, bits):
    with _precision(engine, bits):
        return kernel(op_name, None, engine).run(*inputs)


def _power_of_two(engine: str, k: int):
    """2**k exactly, as an engine number (a Python float would underflow for k < -1074)."""
    return gmpy2.mul_2exp(gmpy2.mpfr(1), k) if engine == "gmpy2" else mpmath.ldexp(1, k)


def _agreement(engine, lo: np.ndarray, hi: np.ndarray, lo_bits: int, hi_bits: int):
    """(settled mask, zero mask) for one output evaluated at ``lo_bits`` and ``hi_bits``.

    Settled: |lo − hi| ≤ 2^-83 |hi|, or both |lo| and |hi| ≤ 2^-1080 (a zero for every dtype).
    """
    lo = np.asarray(lo, dtype=object)
    hi = np.asarray(hi, dtype=object)
    mag_hi = np.asarray(np.abs(hi), dtype=object)
    close = np.asarray(np.abs(lo - hi) <= mag_hi * _power_of_two(engine, -CERTIFIED_BITS), dtype=bool)
    tiny = _power_of_two(engine, -ZERO_BITS)
    zero = np.asarray(np.abs(lo) <= tiny, dtype=bool) & np.asarray(mag_hi <= tiny, dtype=bool)
    return close | zero, zero & ~close


def reference(op: str, *args, engine: str | None = None, **params):
    """Certified high-precision value of ``op`` at ``args`` (same signature as the op).

    Returns an object array of ``mpmath.mpf`` (a tuple of them for ``batchnorm_backward``), each
    element correct to at least ``CERTIFIED_BITS`` bits relative, or an exact zero.
    ``engine``: "arb" (default), "gmpy2" or "mpmath"; ``params``: the op's conventions.
    """
    engine = engine or DEFAULT_ENGINE
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    the_op = get_op(op, **params)
    outs = reference_of(the_op, check_arguments(the_op, args, np.dtype(np.float64)), engine)
    return outs[0] if len(outs) == 1 else outs


def reference_of(the_op, arrays, engine: str = DEFAULT_ENGINE) -> tuple:
    """:func:`reference` of arguments already validated as float64 arrays (``check_arguments``), as a
    tuple of one object array per output (what the checker calls once per example)."""
    op = the_op.name
    for a, inp in zip(arrays, the_op.inputs):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"argument {inp.name!r} must be finite for a reference; it holds inf or nan")
    if engine == "arb":                 # arb(float) is exact at any precision
        inputs = [_to_engine(engine, a) for a in arrays]
    else:
        with _precision(engine, START_BITS):      # conversion of floats is exact at any precision ≥ 53
            inputs = [_to_engine(engine, a) for a in arrays]
    outs = _by_balls(op, inputs) if engine == "arb" else _by_agreement(engine, op, inputs)
    return tuple(outs)


def _by_balls(op, inputs) -> list:
    """Balls at 128, 256, 512… bits until every element is certified or known to be a zero; each step
    of the reference formulation runs on whole arrays (``engines.arb_arrays``) and the results are
    ``mpmath.mpf`` elements converted from the balls' midpoints when first read."""
    kernel = array_kernel(get_op(op).reference)
    bits = START_BITS
    while bits <= MAX_BITS:
        with flint.ctx.workprec(bits):
            out = kernel.run(*inputs)
        states = []
        for o in out:
            st = certify(o, CERTIFIED_BITS, ZERO_BITS)
            if st is None:
                break
            states.append(st)
        else:
            return [lazy_mpf(o, st) for o, st in zip(out, states)]
        bits *= 2
    raise ReferenceNotCertified(f"{op}: radii at {MAX_BITS} bits still exceed 2^-{CERTIFIED_BITS} relative")


def _by_balls_per_element(op, inputs) -> list:
    """The former arb path (one Python call per element and step, eager ``mpf`` conversion): kept for the
    benchmark and as an independent check of :func:`_by_balls`."""
    limit = flint.arb(2) ** (-ZERO_BITS)

    def state(b):
        if b.rel_accuracy_bits() >= CERTIFIED_BITS + 1:
            return 1
        return 2 if abs(b.mid()) + b.rad() <= limit else 0

    bits = START_BITS
    while bits <= MAX_BITS:
        out = [np.asarray(o, dtype=object) for o in _run("arb", op, inputs, bits)]
        states = [np.asarray(_map(state, o), dtype=np.int8) for o in out]
        if all((st > 0).all() for st in states):
            results = []
            for o, st in zip(out, states):
                value = np.array(_to_mpf("arb", o), dtype=object)
                value[st == 2] = mpmath.mpf(0)
                results.append(value)
            return results
        bits *= 2
    raise ReferenceNotCertified(f"{op}: radii at {MAX_BITS} bits still exceed 2^-{CERTIFIED_BITS} relative")


def _by_agreement(engine, op, inputs) -> list:
    bits = START_BITS
    lo, step = _run(engine, op, inputs, bits), 64
    while bits < MAX_BITS:
        hi = _run(engine, op, inputs, bits + step)
        checks = [_agreement(engine, l, h, bits, bits + step) for l, h in zip(lo, hi)]
        if all(ok.all() for ok, _ in checks):
            outs = []
            for h, (_, zero) in zip(hi, checks):
                value = np.array(_to_mpf(engine, np.asarray(h, dtype=object)), dtype=object)
                value[zero] = mpmath.mpf(0)
                outs.append(value)
            return outs
        lo, bits, step = hi, bits + step, 2 * step
    raise ReferenceNotCertified(f"{op}: precisions up to {MAX_BITS} bits did not agree to {CERTIFIED_BITS} bits")


def reference_float64(op: str, *args, **params):
    """The op's exact outputs correctly rounded to float64 (inf beyond float64's range), from
    :func:`numeric.engines.fast.rounded_reference` — not the 83-bit midpoint of :func:`reference` rounded
    again, which can be one ulp off next to a rounding midpoint."""
    from .engines.fast import rounded_reference

    values = rounded_reference(op, *args, dtype="float64", **params).values
    return values if len(values) > 1 else values[0]
