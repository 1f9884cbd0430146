"""Sweeps: every formulation × dtype of an op over inputs of growing magnitude, against the reference.

Inputs (fixed seed, so reports are reproducible byte for byte):

* softmax and cross-entropy ops: z = M·u with u ~ N(0, 1) of shape (4, 8) — M is the logit magnitude;
  dy ~ N(0, 1); soft labels y normalized per row;
* batch-norm ops: x = M + u with u ~ N(0, 1) of shape (16, 4) — M is the mean/std ratio; γ, β, dy ~ N(0, 1).

The reference and κ are computed once per (magnitude, dtype) and shared by all formulations.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from derive import get_op

from .arguments import check_arguments
from .compare import compare_rounded
from .condition import condition_numbers
from .dtypes import DTYPES, resolve_dtype
from .evaluate import as_tuple
from .metrics import reference_image
from .reference import reference

__all__ = ["SweepPoint", "sample_inputs", "sweep", "sweep_point", "DEFAULT_MAGNITUDES", "SUMMARY_KEYS"]

DEFAULT_MAGNITUDES = tuple(float(m) for m in np.geomspace(1, 1e4, 9))


@dataclass(frozen=True)
class SweepPoint:
    op: str
    formulation: str
    dtype: str
    magnitude: float
    summary: dict


def sample_inputs(op: str, magnitude: float, seed: int = 0, *, eps: float = 1e-5, variance: float = 1.0):
    """Input tuple of ``op`` at ``magnitude``, float64, reproducible from ``seed``, drawn by each input's
    role: logits M·N(0, 1), activations M + √variance·N(0, 1) (M is then the mean/std ratio), label rows
    normalized, class ids uniform, upstream gradients and weights N(0, 1), ε = ``eps``.  Shapes: the
    op's ``domain["sweep_sizes"]``, else 4 along the independent axis and 8 (16 for activations) along
    each other axis."""
    the_op = get_op(op)
    rng = np.random.default_rng(seed)
    first = next((i for i in the_op.inputs if i.axes and not i.integer), None)
    other = 16 if first is not None and first.role == "activations" else 8
    sizes = dict(the_op.domain.get("sweep_sizes", {}))
    for axis in the_op.reference.axis_order:
        sizes.setdefault(axis, 4 if axis == the_op.independent_axis else other)
    args = []
    for inp in the_op.inputs:
        shape = tuple(sizes[a] for a in inp.axes)
        role = inp.role or "logits"
        if role == "logits":
            args.append(magnitude * rng.standard_normal(shape))
        elif role == "activations":
            args.append(magnitude + np.sqrt(variance) * rng.standard_normal(shape))
        elif role == "labels":
            y = rng.random(shape)
            args.append(y / y.sum(axis=-1, keepdims=True))
        elif role == "onehot":
            args.append(np.eye(shape[-1])[rng.integers(0, shape[-1], size=shape[:-1])])
        elif role == "index":
            args.append(rng.integers(0, sizes[inp.classes], size=shape))
        elif role == "positive":
            args.append(0.5 + rng.random(shape) if shape else 1.0)
        elif role == "eps":
            args.append(eps)
        elif role == "temperature":
            args.append(1.0)
        elif role == "fraction":
            args.append(0.1)
        else:                               # upstream gradients, weights
            args.append(rng.standard_normal(shape) if shape else 1.0)
    return tuple(args)


UNREPRESENTABLE = {"median_ulps": math.nan, "max_ulps": math.nan, "max_bits": math.nan, "max_rel": math.nan,
                   "inf": 0, "nan": 0, "flush": 0, "pct_nonfinite": math.nan, "pct_flush": math.nan,
                   "max_rel_over_kappa_u": math.nan, "kappa_min": math.nan, "kappa_max": math.nan,
                   "exact_zeros": 0, "max_abs_at_zero": math.nan, "input_overflow": True}
#: Keys of every point summary (:meth:`numeric.compare.Comparison.summary` or ``UNREPRESENTABLE``).
SUMMARY_KEYS = frozenset(UNREPRESENTABLE)


def sweep_point(op, args, dtype) -> list:
    """Comparisons of all formulations of ``op`` at one input in one dtype (inputs rounded to the dtype
    first); a list of dicts {formulation, summary}.  Inputs that overflow the dtype give the
    ``UNREPRESENTABLE`` summary: ``input_overflow`` true and no error measured (nan), so the inputs'
    overflow is never counted as the formulation's inf/nan."""
    the_op = get_op(op)
    dt = resolve_dtype(dtype)
    with np.errstate(over="ignore"):
        rounded = check_arguments(the_op, args, dt)
    if not all(np.all(np.isfinite(a.astype(np.float64))) for a in rounded):
        return [{"formulation": f, "summary": dict(UNREPRESENTABLE)} for f in the_op.formulations]
    ref = as_tuple(reference(op, *rounded))
    kappa = as_tuple(condition_numbers(op, *rounded))
    images = tuple(reference_image(r) for r in ref)         # once for every formulation
    return [{"formulation": f, "summary": compare_rounded(op, rounded, dt, f, ref, kappa, images).summary()}
            for f in the_op.formulations]


def sweep(op: str, *, dtypes=tuple(DTYPES), magnitudes=DEFAULT_MAGNITUDES, seed: int = 0, **sample) -> list[SweepPoint]:
    """Summaries of every formulation × dtype × magnitude; ``sample`` goes to :func:`sample_inputs`."""
    points = []
    for magnitude in magnitudes:
        args = sample_inputs(op, magnitude, seed, **sample)
        for dtype in dtypes:
            for row in sweep_point(op, args, dtype):
                points.append(SweepPoint(op, row["formulation"], resolve_dtype(dtype).name, magnitude, row["summary"]))
    return points
