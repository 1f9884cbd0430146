"""Where a formulation overflows, predicted from exact arithmetic, for one varied element.

A step of a formulation returns ±inf in a dtype with p significand bits and largest exponent emax once the
value it rounds reaches Ω = (2 − 2^-p)·2^emax, the midpoint between the largest float and 2^(emax+1)
(round-to-nearest-even sends it up).  The *analytic* overflow set is the set of grid values v at which the
exact value of some step (every elementwise and reduction step, on the dtype-rounded inputs with exact
operations) has |·| ≥ Ω.  It is found without the dtype's kernels:

1. every step in float64 ball arithmetic (rigorous radius, ``numeric.engines.fast``) at every grid value,
   batched; values whose balls do not decide (float64 overflow, a ball across Ω) in arb balls (128 bits,
   unbounded exponent),
2. each place where that predicate changes between neighbours re-decided at the nearby grid values in
   256-bit mpmath, and the crossing point v* (|step(v*)| = Ω) bisected in the reals, e.g. the naive
   softmax's e = exp(z) reaches Ω at z = ln Ω,
3. the first grid value past v* computed from the dtype's own rounding (independent of the grid array).

It is compared, exactly, with the measured set of values at which some step of the dtype's own kernel is
inf or nan (they differ where rounding of earlier steps, or an underflow such as log 0, decides), and the
report also shows where the *outputs* are inf or nan (a step's overflow can also end in a finite, wrong
output, e.g. 1/inf = 0).
"""
from __future__ import annotations

import dataclasses

import mpmath
import numpy as np

from derive import Kernel, get_op
from derive.program import Elementwise, Reduce

from ..dtypes import finfo, resolve_dtype
from .chunk import _stack, _unit, batchable

__all__ = ["overflow_bound", "analytic_overflow", "first_grid_value_above", "runs_of"]

_BITS = 256
_BISECTIONS = 90
_BLOCK = 8192


def overflow_bound(dtype) -> float:
    """Ω = (2 − 2^-p)·2^emax: the smallest magnitude that rounds to inf in ``dtype``."""
    info = finfo(dtype)
    p = int(info.nmant) + 1
    return (2.0 - 2.0 ** -p) * 2.0 ** int(info.maxexp - 1)


def first_grid_value_above(x, dtype) -> float:
    """The smallest float of ``dtype`` ≥ ``x`` (an mpmath number or float), from the dtype's own rounding:
    round to nearest, then one code up if that fell below ``x``."""
    dt = resolve_dtype(dtype)
    ut = np.dtype(f"uint{8 * dt.itemsize}")
    nearest = float(np.array(float(x), dtype=dt)) + 0.0
    if mpmath.mpf(nearest) >= x:
        return nearest
    code = int(np.array(nearest, dtype=dt).view(ut))
    code = code + 1 if nearest >= 0 else code - 1
    return float(np.array(code, dtype=ut).view(dt)) + 0.0


def runs_of(mask: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], np.asarray(mask, bool), [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def _watched(form):
    """The formulation with every elementwise and reduction step as an output, and for each mean the sum
    it divides by N (the kernels hold that sum in the dtype: ``numpy.sum(…) / N``)."""
    steps = []
    for st in form.steps:
        steps.append(st)
        if isinstance(st, Reduce) and st.op == "mean":
            steps.append(Reduce(f"{st.name}·N", "sum", st.arg, st.over, "the sum a mean divides by N"))
    names = tuple(st.name for st in steps if isinstance(st, (Elementwise, Reduce)))
    return dataclasses.replace(form, steps=tuple(steps), outputs=names)


class _Setting:
    def __init__(self, plan, formulation):
        self.op = get_op(plan["op"])
        self.dtype = resolve_dtype(plan["dtype"])
        base = [np.asarray(np.array(a, dtype=np.float64), dtype=self.dtype).astype(np.float64) for a in plan["inputs"]]
        varied = [(p, tuple(i)) for p, i in plan["varied"]]
        self.batch = batchable(self.op, [varied[0][0]])
        self.unit, self.varied, _ = _unit(self.op, base, varied, self.batch)
        self.form = _watched(self.op.formulations[formulation])
        self.omega = overflow_bound(self.dtype)

    def _blocks(self, values: np.ndarray, backend: str, convert, decide):
        """Per grid value: ``decide`` over the values of every watched step, run by ``backend``."""
        k = Kernel(self.form, backend)
        axis = self.op.independent_axis
        out = np.zeros(values.size, bool)
        p, idx = self.varied[0]
        with np.errstate(all="ignore"):
            if self.batch:
                for s in range(0, values.size, _BLOCK):
                    chunk = values[s:s + _BLOCK]
                    n = chunk.size
                    steps = k.run(*[convert(a) for a in _stack(self.op, self.unit, self.varied, chunk[:, None])])
                    for name, value in zip(self.form.outputs, steps):
                        axes = k.axes[name]
                        hit = decide(np.asarray(value))
                        if axis in axes:
                            out[s:s + n] |= np.moveaxis(hit, axes.index(axis), 0).reshape(n, -1).any(axis=1)
                        else:
                            out[s:s + n] |= bool(hit.any())
            else:
                for i, v in enumerate(values):
                    args = [a.copy() for a in self.unit]
                    args[p][idx] = v
                    out[i] = any(bool(decide(np.asarray(x)).any()) for x in k.run(*[convert(a) for a in args]))
        return out

    def exact_mask(self, values: np.ndarray) -> np.ndarray:
        """Per grid value: some step's exact value has |·| ≥ Ω.  Float64 balls of every step
        (``numeric.engines.fast.ball_evaluate``, rigorous radius) decide where the whole ball lies on one
        side of Ω; the other values (float64 overflow, a ball across Ω) are decided by arb balls at 128 bits
        (unbounded exponent) by their midpoint."""
        import flint

        undecided = np.ones(values.size, bool)
        exceeds = np.zeros(values.size, bool)
        if self.batch:
            exceeds, undecided = self._ball_mask(values)
        rest = np.flatnonzero(undecided)
        if rest.size:
            omega = flint.arb(self.omega)
            to_arb = np.frompyfunc(flint.arb, 1, 1)
            big = np.frompyfunc(lambda x: isinstance(x, flint.arb) and abs(x.mid()) >= omega, 1, 1)
            with flint.ctx.workprec(128):
                exceeds[rest] = self._blocks(values[rest], "arb", lambda a: np.asarray(to_arb(a), dtype=object),
                                             lambda x: np.asarray(big(x), dtype=bool))
        return exceeds

    def _ball_mask(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(certainly some step ≥ Ω, not decided) per value, from float64 balls of every step."""
        from ..engines.fast import Unsupported, ball_evaluate

        axis = self.op.independent_axis
        exceeds = np.zeros(values.size, bool)
        open_ = np.zeros(values.size, bool)
        axes = self.form.axes()
        with np.errstate(all="ignore"):
            for s in range(0, values.size, _BLOCK):
                chunk = values[s:s + _BLOCK]
                n = chunk.size
                try:
                    balls = ball_evaluate(self.form, *_stack(self.op, self.unit, self.varied, chunk[:, None]))
                except Unsupported:
                    open_[s:s + n] = True
                    continue
                for name, (mid, rad) in zip(self.form.outputs, balls):
                    above = np.isfinite(mid) & np.isfinite(rad) & (np.abs(mid) - rad >= self.omega)
                    below = np.isfinite(mid) & np.isfinite(rad) & (np.abs(mid) + rad < self.omega)
                    for mask, into in ((above, exceeds), (~(above | below), open_)):
                        if axis in axes[name]:
                            into[s:s + n] |= np.moveaxis(mask, axes[name].index(axis), 0).reshape(n, -1).any(axis=1)
                        else:
                            into[s:s + n] |= bool(mask.any())
        return exceeds, open_ & ~exceeds

    def dtype_mask(self, values: np.ndarray) -> np.ndarray:
        """Per grid value: some step of the dtype's own kernel is inf or nan."""
        return self._blocks(values, "numpy", lambda a: np.asarray(a, dtype=self.dtype),
                            lambda x: ~np.isfinite(x.astype(np.float64)))

    def exact_predicate(self, v) -> tuple[bool, str]:
        """(some step's exact value has |·| ≥ Ω at the real number v, the first such step)."""
        p, idx = self.varied[0]
        with mpmath.workprec(_BITS):
            args = [np.asarray(np.frompyfunc(mpmath.mpf, 1, 1)(a), dtype=object) for a in self.unit]
            args[p] = args[p].copy()
            args[p][idx] = mpmath.mpf(v)
            omega = mpmath.mpf(self.omega)
            for name, value in zip(self.form.outputs, Kernel(self.form, "mpmath").run(*args)):
                for x in np.asarray(value, dtype=object).ravel():
                    if isinstance(x, mpmath.mpc):
                        continue
                    if abs(x) >= omega:
                        return True, name
        return False, ""


def analytic_overflow(plan: dict, formulation: str, grid: np.ndarray) -> dict:
    """{"mask": analytic overflow set on ``grid`` (bool array), "steps": where some step of the dtype's
    kernel is inf/nan (bool array), "crossings": [{after, first, exact, step, rising, independent_first}]}
    for one varied element (see the module doc)."""
    setting = _Setting(plan, formulation)
    mask = setting.exact_mask(grid)
    steps = setting.dtype_mask(grid)
    crossings = []
    for i in np.flatnonzero(mask[:-1] != mask[1:]):
        lo, hi = max(int(i) - 2, 0), min(int(i) + 3, grid.size - 1)
        exact = {j: setting.exact_predicate(grid[j]) for j in range(lo, hi + 1)}
        for j in range(lo, hi + 1):
            mask[j] = exact[j][0]
        for j in range(lo, hi):
            if exact[j][0] == exact[j + 1][0]:
                continue
            rising = exact[j + 1][0]
            a, b = mpmath.mpf(grid[j]), mpmath.mpf(grid[j + 1])
            with mpmath.workprec(_BITS):
                for _ in range(_BISECTIONS):
                    mid = (a + b) / 2
                    if setting.exact_predicate(mid)[0] == rising:
                        b = mid
                    else:
                        a = mid
                crossing = (a + b) / 2
            step = setting.exact_predicate(b if rising else a)[1]     # the step that crosses at v*
            crossings.append({"after": float(grid[j]), "first": float(grid[j + 1]), "exact": crossing,
                              "step": step, "rising": rising,
                              "independent_first": first_grid_value_above(crossing, setting.dtype)})
    unique = {}
    for c in crossings:
        unique.setdefault(c["after"], c)
    return {"mask": mask, "steps": steps, "crossings": [unique[k] for k in sorted(unique)]}
