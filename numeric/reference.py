"""``reference``: an op evaluated in high precision with digits certified by agreement across precisions.

The op's reference formulation (the forward definition, or the closed form proved equal to the
derivative of it) is lambdified by ``derive`` for a multiple-precision engine and evaluated on the
*exact* values of the given float inputs.  Working precision starts at 128 bits and doubles until two
successive precisions agree to ``CERTIFIED_BITS`` = 53 + 30 bits relative, element by element
(Herbie-style).  An element whose value keeps shrinking with precision (|v| ≤ 2^-(p-8)·max|v| at
precision p and at 2p) is an exact zero of the mathematics (e.g. x − μ of a constant column) and is
returned as 0.

Engines: gmpy2's MPFR when installed (C arithmetic, the default), else mpmath.  Precision is always a
scoped context (``gmpy2.context`` / ``mpmath.workprec``), never a global setting.  Results are numpy
object arrays of ``mpmath.mpf``; the exponent range is unbounded, so the naive definition is exact truth.
"""
from __future__ import annotations

from contextlib import contextmanager

import mpmath
import numpy as np

from derive import get_op

from .arguments import check_arguments
from .evaluate import kernel

__all__ = ["reference", "reference_float64", "CERTIFIED_BITS", "ReferenceNotCertified"]

CERTIFIED_BITS = 53 + 30
START_BITS = 128
MAX_BITS = 1 << 14

try:
    import gmpy2
    DEFAULT_ENGINE = "gmpy2"
except ImportError:         # pragma: no cover - gmpy2 is a dependency; this keeps the module importable
    gmpy2 = None
    DEFAULT_ENGINE = "mpmath"


class ReferenceNotCertified(ArithmeticError):
    """Two successive precisions never agreed before ``MAX_BITS``."""


def _map(fn, arr) -> np.ndarray:
    """``fn`` applied to every element, as an object ndarray (also for 0-d input)."""
    return np.asarray(np.frompyfunc(fn, 1, 1)(arr), dtype=object)


@contextmanager
def _precision(engine: str, bits: int):
    if engine == "gmpy2":
        with gmpy2.context(gmpy2.get_context(), precision=bits):
            yield
    else:
        with mpmath.workprec(bits):
            yield


def _to_engine(engine: str, arr: np.ndarray) -> np.ndarray:
    """Exact conversion of a float64 array (every supported dtype embeds exactly) to engine numbers."""
    convert = gmpy2.mpfr if engine == "gmpy2" else mpmath.mpf
    return _map(convert, arr.astype(np.float64))


def _to_mpf(engine: str, arr: np.ndarray) -> np.ndarray:
    if engine == "mpmath":
        return arr
    def one(v):
        man, exp = v.as_mantissa_exp()
        return mpmath.mpf((int(man), int(exp)))
    return _map(one, arr)


def _run(engine, op_name, arrays, bits):
    with _precision(engine, bits):
        inputs = [_to_engine(engine, a) for a in arrays]
        out = kernel(op_name, None, engine)(*inputs)
    return out if isinstance(out, tuple) else (out,)


def _power_of_two(engine: str, k: int):
    """2**k exactly, as an engine number (a Python float would underflow for k < -1074)."""
    return gmpy2.mul_2exp(gmpy2.mpfr(1), k) if engine == "gmpy2" else mpmath.ldexp(1, k)


def _agreement(engine, lo: np.ndarray, hi: np.ndarray, lo_bits: int):
    """(certified mask, exact-zero mask) for one output evaluated at ``lo_bits`` and ``2*lo_bits``."""
    lo = np.asarray(lo, dtype=object)
    hi = np.asarray(hi, dtype=object)
    mag_hi = np.asarray(np.abs(hi), dtype=object)
    scale = max(mag_hi.flat, default=0)
    if scale == 0:
        return np.ones(hi.shape, bool), np.zeros(hi.shape, bool)
    close = np.asarray(np.abs(lo - hi) <= mag_hi * _power_of_two(engine, -CERTIFIED_BITS), dtype=bool)
    vanishing = (np.asarray(np.abs(lo) <= scale * _power_of_two(engine, 8 - lo_bits), dtype=bool)
                 & np.asarray(mag_hi <= scale * _power_of_two(engine, 8 - 2 * lo_bits), dtype=bool))
    return close | vanishing, vanishing & ~close


def reference(op: str, *args, engine: str | None = None):
    """Certified high-precision value of ``op`` at ``args`` (same signature as the op).

    Returns an object array of ``mpmath.mpf`` (a tuple of them for ``batchnorm_backward``), each
    element correct to at least ``CERTIFIED_BITS`` bits relative, or an exact zero.
    ``engine``: "gmpy2" (default when available) or "mpmath".
    """
    engine = engine or DEFAULT_ENGINE
    if engine not in ("gmpy2", "mpmath") or (engine == "gmpy2" and gmpy2 is None):
        raise ValueError(f"engine must be 'gmpy2' or 'mpmath'; got {engine!r}")
    the_op = get_op(op)
    arrays = check_arguments(the_op, args, np.dtype(np.float64))
    for a, inp in zip(arrays, the_op.inputs):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"argument {inp.name!r} must be finite for a reference; it holds inf or nan")
    bits = START_BITS
    lo = _run(engine, op, arrays, bits)
    while bits < MAX_BITS:
        hi = _run(engine, op, arrays, 2 * bits)
        checks = [_agreement(engine, l, h, bits) for l, h in zip(lo, hi)]
        if all(ok.all() for ok, _ in checks):
            with mpmath.workprec(2 * bits):
                outs = []
                for h, (_, zero) in zip(hi, checks):
                    value = np.array(_to_mpf(engine, np.asarray(h, dtype=object)), dtype=object)
                    value[zero] = mpmath.mpf(0)
                    outs.append(value)
            return outs[0] if len(outs) == 1 else tuple(outs)
        lo, bits = hi, 2 * bits
    raise ReferenceNotCertified(f"{op}: precisions up to {MAX_BITS} bits did not agree to {CERTIFIED_BITS} bits")


def reference_float64(op: str, *args):
    """:func:`reference` rounded to float64 (inf beyond float64's range)."""
    out = reference(op, *args)
    if isinstance(out, tuple):
        return tuple(_map(float, o).astype(np.float64) for o in out)
    return _map(float, out).astype(np.float64)
