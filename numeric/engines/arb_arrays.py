"""A formulation evaluated in python-flint ``arb`` ball arithmetic one whole array per step.

``derive.Kernel(form, "arb")`` maps a lambdified Python function over every element (one Python frame per
element and step).  Here each elementwise step is lambdified once over *arrays*: ``+ − × ÷`` on numpy
object arrays call ``arb``'s C methods element by element, and ``exp``/``log``/``sqrt``/… are
``numpy.frompyfunc`` wrappers of the ``arb`` methods, so no Python frame runs per element.  Steps that use
a function outside :data:`FUNCTIONS` keep the kernel's per-element function.

:func:`certify` decides every ball in one vectorised pass (radius ≤ 2^-83 |mid| by arb's relative accuracy,
or the whole ball within ±2^-1080 of 0), and :func:`lazy_mpf` wraps the balls as ``mpmath.mpf`` elements
whose digits (the ball's exact midpoint) are extracted only when first read; :func:`lazy_if_certified` does
both in one pass for the common case (every ball certified), stopping at the first ball that is not.
"""
from __future__ import annotations

import math
from functools import lru_cache

import flint
import mpmath
import numpy as np
import sympy as sp
from mpmath.libmp import from_man_exp

from derive import Kernel
from derive.codegen import _PRINTER_SETTINGS, _BallPrinter, _ipow
from derive.program import Elementwise, Formulation

__all__ = ["array_kernel", "certify", "certified_mpf", "lazy_mpf", "lazy_if_certified", "LazyMpf",
           "NotCertified", "FUNCTIONS"]

arb = flint.arb

#: SymPy function name → arb method, applied elementwise to object arrays.
FUNCTIONS = {"exp": arb.exp, "log": arb.log, "sqrt": arb.sqrt, "erf": arb.erf, "erfc": arb.erfc,
             "tanh": arb.tanh, "log1p": arb.log1p, "expm1": arb.expm1, "sin": arb.sin, "cos": arb.cos}


@lru_cache(maxsize=None)
def _namespace() -> dict:
    ns = {name: np.frompyfunc(f, 1, 1) for name, f in FUNCTIONS.items()}
    ns.update({"mpf": arb, "fabs": np.abs, "_ipow": _ipow})
    return ns


@lru_cache(maxsize=None)
def _on_arrays(args: tuple, expr: sp.Expr):
    """``expr`` lambdified over object arrays of balls (once per process for each arguments and expression:
    formulations and convention instances share steps)."""
    return sp.lambdify(args, expr, modules=[_namespace()], cse=True, printer=_BallPrinter(_PRINTER_SETTINGS))


def _vectorisable(expr: sp.Expr) -> bool:
    names = {type(f).__name__ for f in expr.atoms(sp.Function)}
    return names <= {*FUNCTIONS, "Abs"}


_KERNELS: dict = {}       # id(formulation) -> (formulation, kernel); the formulation is kept alive


def array_kernel(form: Formulation) -> Kernel:
    """``Kernel(form, "arb")`` whose elementwise steps run on whole object arrays of ``arb`` (compiled
    once per formulation object)."""
    cached = _KERNELS.get(id(form))
    if cached is not None and cached[0] is form:
        return cached[1]
    kernel = Kernel(form, "arb")
    for step in form.steps:
        if isinstance(step, Elementwise):
            expr, args = kernel.lifted[step.name]     # closed constants (π, √2) are arguments, made per precision
            if _vectorisable(expr):
                kernel.functions[step.name] = _on_arrays(tuple(args), expr)
    _KERNELS[id(form)] = (form, kernel)
    return kernel


_rel_accuracy_bits = arb.rel_accuracy_bits
_accuracy = np.frompyfunc(_rel_accuracy_bits, 1, 1)
_ZERO_LIMIT: dict = {}


def _within(limit_bits: int):
    if limit_bits not in _ZERO_LIMIT:
        _ZERO_LIMIT[limit_bits] = arb(2) ** (-limit_bits)
    return _ZERO_LIMIT[limit_bits]


def certify(balls: np.ndarray, bits: int, zero_bits: int) -> np.ndarray | None:
    """int8 states of an object array of balls: 1 certified (≥ ``bits`` + 1 bits of relative accuracy, so
    radius ≤ 2^-bits |mid| whatever arb's rounding of that count), 2 within ±2^-``zero_bits`` of 0;
    ``None`` as soon as one ball is neither (more precision needed)."""
    balls = np.asarray(balls, dtype=object)
    if balls.size and min(map(_rel_accuracy_bits, balls.flat)) >= bits + 1:
        return np.ones(balls.shape, dtype=np.int8)        # all certified: the common case, one C loop
    certified = np.asarray(_accuracy(balls) >= bits + 1, dtype=bool)
    states = certified.astype(np.int8)
    if certified.all():
        return states
    limit = _within(zero_bits)
    for flat in np.flatnonzero(~certified):
        idx = np.unravel_index(flat, balls.shape)
        b = balls[idx]
        if not (b.is_finite() and abs(b.mid()) + b.rad() <= limit):
            return None
        states[idx] = 2
    return states


def certified_mpf(outputs, bits: int, zero_bits: int) -> list | None:
    """:func:`lazy_mpf` of every array of balls in ``outputs`` when :func:`certify` accepts them all, else
    ``None`` (more precision needed)."""
    results = []
    for balls in outputs:
        states = certify(balls, bits, zero_bits)
        if states is None:
            return None
        results.append(lazy_mpf(balls, states))
    return results


_NORMAL = 2.0 ** -1022
_INF = math.inf
_arb_float = arb.__float__
_mpf_float = mpmath.mpf.__float__
_SLOT = mpmath.mpf._mpf_          # the slot descriptor that holds an mpf's (sign, man, exp, bc) tuple
_make_mpf = mpmath.mp.make_mpf


def _plain_mpf(value):
    """An ordinary ``mpmath.mpf`` from an mpf tuple (what a :class:`LazyMpf` pickles and copies as)."""
    return _make_mpf(value)


class LazyMpf(mpmath.mpf):
    """An ``mpmath.mpf`` equal to the exact midpoint of an ``arb`` ball, extracted on first use.

    Behaves as an ``mpf`` everywhere (arithmetic, ``float``, comparisons, ``mpmath`` functions,
    ``isinstance``); pickles and copies as a plain ``mpf``."""
    __slots__ = ("_ball",)

    @property
    def _mpf_(self):
        ball = self._ball
        if ball is None:
            return _SLOT.__get__(self)
        man, exp = ball.mid().man_exp()
        value = from_man_exp(int(man), int(exp))
        _SLOT.__set__(self, value)
        self._ball = None
        return value

    @_mpf_.setter
    def _mpf_(self, value):
        _SLOT.__set__(self, value)
        self._ball = None

    def __reduce__(self):
        return (_plain_mpf, (self._mpf_,))

    def __float__(self):
        """The midpoint rounded to nearest by arb (no digit extraction) where that is float64's normal
        range — there it equals mpmath's ``float`` bit for bit; elsewhere mpmath's own conversion."""
        ball = self._ball
        if ball is not None:
            f = _arb_float(ball)          # arf_get_d of the midpoint, round to nearest
            if _NORMAL <= abs(f) < _INF:
                return f
        return _mpf_float(self)


_new = object.__new__


def _lazy(ball):
    element = _new(LazyMpf)
    element._ball = ball
    return element


_lazy_map = np.frompyfunc(_lazy, 1, 1)
ZERO = mpmath.mpf(0)


class NotCertified(ArithmeticError):
    """Raised by a :func:`lazy_if_certified` map at the first ball short of its accuracy."""


_CERTIFIED_MAPS: dict = {}


def lazy_if_certified(bits: int):
    """A ufunc: object array of balls → object array of :class:`LazyMpf` (a bare element for 0-d input),
    raising :class:`NotCertified` at the first ball with fewer than ``bits`` + 1 bits of relative accuracy
    (radius > 2^-bits |mid|: :func:`certify`'s first test, decided per element while wrapping, so the common
    case — every ball certified — costs no separate pass).  One ufunc per ``bits``."""
    fn = _CERTIFIED_MAPS.get(bits)
    if fn is None:
        limit = bits + 1

        def lazy_certified(ball):
            if _rel_accuracy_bits(ball) < limit:
                raise NotCertified
            element = _new(LazyMpf)
            element._ball = ball
            return element
        fn = _CERTIFIED_MAPS[bits] = np.frompyfunc(lazy_certified, 1, 1)
    return fn


def lazy_mpf(balls: np.ndarray, states: np.ndarray) -> np.ndarray:
    """Object array of :class:`LazyMpf` for the balls (exact ``mpf`` 0 where ``states`` is 2)."""
    out = _lazy_map(balls)
    if not isinstance(out, np.ndarray):         # a 0-d input gives a bare element
        out = np.asarray(out, dtype=object)
    states = np.asarray(states)
    if states.max(initial=0) == 2:
        out[states == 2] = ZERO
    return out
