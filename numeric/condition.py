"""Componentwise condition numbers κ of an op at a point, from its symbolically derived JVP program.

κ_i = Σ_j |∂f_i/∂x_j| |x_j| / |f_i|: the relative change of output i per relative change of the
inputs.  A backward-stable algorithm's relative error is about κ·u; an error far beyond κ·u means a
wrong or unstable computation.  Jacobian columns come from ``derive.jvp`` (exact derivatives, float64
arithmetic on the op's most accurate formulation); directions along the op's independent axis (rows of z,
columns of x) are batched into one JVP, since those slices never interact.
"""
from __future__ import annotations

import itertools
from functools import lru_cache

import flint
import numpy as np

from derive import Kernel, get_op
from derive.jvp import jvp_formulation
from derive.rounding_model import rounding_model_formulation

from .arguments import check_arguments
from .dtypes import finfo
from .evaluate import kernel

__all__ = ["condition_numbers", "sensitivities", "rounding_bounds"]


@lru_cache(maxsize=None)
def _jvp_kernel(op_name: str) -> Kernel:
    op = get_op(op_name)
    wrt = tuple(i.name for i in op.inputs if i.axes)
    return Kernel(jvp_formulation(op.accurate_formulation, wrt), "numpy")


@lru_cache(maxsize=None)
def _rounding_kernel(op_name: str) -> Kernel:
    return Kernel(rounding_model_formulation(get_op(op_name).stable_formulation), "arb")


def rounding_bounds(op: str, *args, dtype):
    """Per output element, how far a stable implementation in ``dtype`` may land from the truth: the
    radius of the op's stable formulation evaluated in ball arithmetic with every step rounding by
    u = roundoff of ``dtype`` (and by the smallest subnormal where results underflow) and every array
    input widened by u|x| (``derive.rounding_model``).
    float64 arrays (inf where the bound blows up, e.g. a variance interval reaching 0 with ε = 0);
    a tuple for several outputs."""
    the_op = get_op(op)
    u = float(finfo(dtype).eps) / 2
    arrays = check_arguments(the_op, args, np.dtype(np.float64))
    with flint.ctx.workprec(64):
        balls = []
        for a, inp in zip(arrays, the_op.inputs):
            if inp.axes:
                balls.append(np.asarray(np.frompyfunc(lambda v: flint.arb(v, abs(v) * u), 1, 1)(a), dtype=object))
            else:
                balls.append(flint.arb(float(a)))
        eta = float(finfo(dtype).smallest_subnormal)
        out = _rounding_kernel(op).run(*balls, flint.arb(0, u), flint.arb(0, eta))
        radius = np.frompyfunc(lambda b: float(b.rad()) if b.is_finite() else np.inf, 1, 1)
        bounds = tuple(np.asarray(radius(np.asarray(o, dtype=object)), dtype=np.float64) for o in out)
    return bounds[0] if len(bounds) == 1 else bounds


def _directions(shape, axes, independent):
    """Boolean masks, one per JVP: all positions sharing the non-independent indices together."""
    batch = axes.index(independent) if independent in axes else None
    free = [range(n) if k != batch else [slice(None)] for k, n in enumerate(shape)]
    for idx in itertools.product(*free):
        mask = np.zeros(shape, bool)
        mask[idx] = True
        yield mask


def condition_numbers(op: str, *args):
    """κ per output element (float64 array per output; a tuple for ``batchnorm_backward``).

    Elements whose exact value is 0 get κ = inf (any absolute error is infinitely large relative to
    0) unless the output does not move at all (κ = 0).
    """
    values, totals = _values_and_sensitivities(op, args)
    kappas = []
    with np.errstate(all="ignore"):
        for total, v in zip(totals, values):
            mag = np.abs(np.asarray(v, dtype=np.float64))
            kappas.append(np.where(mag > 0, total / np.where(mag > 0, mag, 1), np.where(total > 0, np.inf, 0.0)))
    return kappas[0] if len(kappas) == 1 else tuple(kappas)


def sensitivities(op: str, *args):
    """Σ_j |∂f_i/∂x_j| |x_j| per output element (= κ_i |f_i|, finite even where f_i = 0): the absolute
    error a backward-stable algorithm may make, in units of the roundoff u.  Tuple for several outputs."""
    _, totals = _values_and_sensitivities(op, args)
    return totals[0] if len(totals) == 1 else tuple(totals)


def _values_and_sensitivities(op, args):
    the_op = get_op(op)
    arrays = check_arguments(the_op, args, np.dtype(np.float64))
    with np.errstate(all="ignore"):
        values = kernel(op, the_op.accurate_formulation.name).run(*arrays)
        jvp = _jvp_kernel(op)
        wrt = [(k, inp) for k, inp in enumerate(the_op.inputs) if inp.axes]
        batched = all(the_op.independent_axis in o.axes for o in the_op.outputs)
        totals = [np.zeros(np.shape(v)) for v in values]
        independent = the_op.independent_axis if batched else None
        for slot, (k, inp) in enumerate(wrt):
            x = arrays[k]
            for mask in _directions(x.shape, inp.axes, independent):
                tangents = [np.zeros_like(arrays[j]) for j, _ in wrt]
                tangents[slot][mask] = x[mask]
                for total, t in zip(totals, jvp.run(*arrays, *tangents)):
                    total += np.abs(t)
    return values, totals
