"""Componentwise condition numbers κ of an op at a point, from its symbolically derived JVP program.

κ_i = Σ_j |∂f_i/∂x_j| |x_j| / |f_i|: the relative change of output i per relative change of the
inputs.  A backward-stable algorithm's relative error is about κ·u; an error far beyond κ·u means a
wrong or unstable computation.  Jacobian columns come from ``derive.jvp`` (exact derivatives, float64
arithmetic on the op's most accurate formulation); directions along the op's independent axis (rows of z,
columns of x) share one direction, since those slices never interact.

All directions are evaluated at once.  Large inputs use the Jacobian's structure — a diagonal plus a
few terms through reductions, combined by one matrix product (``numeric.jacobian_structure``).  Small
ones, and programs outside that structure, use the batched JVP: the JVP program gets one more axis,
``DIRECTION``, first in its axis order and carried by the tangent inputs only, so the lambdified kernel
runs each step once over a (directions × values) array (chunked to bound memory).  The former loop, one
JVP per direction, stays as ``_values_and_sensitivities_per_direction`` for tests and benchmarks.
"""
from __future__ import annotations

import itertools
from dataclasses import replace
from functools import lru_cache

import flint
import numpy as np

from derive import Kernel, get_op
from derive.jvp import jvp_formulation, tangent
from derive.program import Elementwise, Input, Reduce
from derive.rounding_model import rounding_model_formulation

from .arguments import check_arguments
from .dtypes import finfo
from .engines.arb_arrays import array_kernel
from .jacobian_structure import Unsupported, structured_sensitivities
from .evaluate import kernel

__all__ = ["condition_numbers", "sensitivities", "rounding_bounds"]


@lru_cache(maxsize=None)
def _jvp_kernel(op_name: str) -> Kernel:
    op = get_op(op_name)
    wrt = tuple(i.name for i in op.inputs if i.axes)
    return Kernel(jvp_formulation(op.accurate_formulation, wrt), "numpy")


#: Axis label of the batch of tangent directions (not a label any op uses).
DIRECTION = "__direction"
#: Bound on directions × (largest input or output) per batched JVP run, in elements (256 kB of float64:
#: arrays that stay in cache run faster than one huge batch).
CHUNK_ELEMENTS = 1 << 15
#: From this many directions × elements on, the Jacobian's structure (diagonal + reductions) pays for
#: its Python overhead; below it the batched JVP is faster.
STRUCTURED_FROM = 1 << 14


@lru_cache(maxsize=None)
def _batched_jvp_kernel(op_name: str, sliced: bool = False) -> Kernel:
    """The JVP program of :func:`_jvp_kernel` with a leading ``DIRECTION`` axis on every tangent input:
    tangent ``t_x`` has shape (directions, *x.shape), primal inputs keep their shapes (length 1 along
    ``DIRECTION`` in full-rank layout), and each tangent output comes back as (directions, *output shape).
    ``sliced``: of :func:`_sliced_formulation` instead of the accurate formulation."""
    op = get_op(op_name)
    wrt = tuple(i.name for i in op.inputs if i.axes)
    form = jvp_formulation(_sliced_formulation(op_name)[0] if sliced else op.accurate_formulation, wrt)
    tangents = {tangent(n) for n in wrt}
    inputs = tuple(Input(i.name, (DIRECTION,) + tuple(i.axes), i.doc) if i.name in tangents else i
                   for i in form.inputs)
    return Kernel(replace(form, name=f"batched_{form.name}", inputs=inputs,
                          axis_order=(DIRECTION,) + tuple(form.axis_order)), "numpy")


@lru_cache(maxsize=None)
def _rounding_kernel(op_name: str) -> Kernel:
    """The rounding model of the op's stable formulation, run on whole arrays of arb balls."""
    return array_kernel(rounding_model_formulation(get_op(op_name).stable_formulation))


_widen = np.frompyfunc(flint.arb, 2, 1)                      # arb(mid, rad) per element, in C
_radius = np.frompyfunc(flint.arb.rad, 1, 1)
_finite = np.frompyfunc(flint.arb.is_finite, 1, 1)


def rounding_bounds(op: str, *args, dtype):
    """Per output element, how far a stable implementation in ``dtype`` may land from the truth: the
    radius of the op's stable formulation evaluated in ball arithmetic with every step rounding by
    u = roundoff of ``dtype`` (and by the smallest subnormal where results underflow) and every array
    input widened by u|x| (``derive.rounding_model``).
    float64 arrays (inf where the bound blows up, e.g. a variance interval reaching 0 with ε = 0);
    a tuple for several outputs."""
    the_op = get_op(op)
    bounds = rounding_bounds_of(the_op, check_arguments(the_op, args, np.dtype(np.float64)), dtype)
    return bounds[0] if len(bounds) == 1 else bounds


def rounding_bounds_of(the_op, arrays, dtype) -> tuple:
    """:func:`rounding_bounds` of arguments already validated as float64 arrays (``check_arguments``), as
    a tuple of one array per output."""
    u = float(finfo(dtype).eps) / 2
    with flint.ctx.workprec(64):
        balls = []
        for a, inp in zip(arrays, the_op.inputs):
            if inp.axes:
                balls.append(np.asarray(_widen(a, np.abs(a) * u), dtype=object))
            else:
                balls.append(flint.arb(float(a)))
        eta = float(finfo(dtype).smallest_subnormal)
        out = _rounding_kernel(the_op.name).run(*balls, flint.arb(0, u), flint.arb(0, eta))
        bounds = []
        for o in out:
            o = np.asarray(o, dtype=object)
            radius = np.asarray(_radius(o), dtype=object).astype(np.float64)
            bounds.append(np.where(np.asarray(_finite(o), dtype=bool), radius, np.inf))
    return tuple(bounds)


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
    the_op = get_op(op)
    totals = sensitivities_of(the_op, check_arguments(the_op, args, np.dtype(np.float64)))
    return totals[0] if len(totals) == 1 else totals


def _values_and_sensitivities(op, args):
    """(values, sensitivities) of the op's accurate formulation at ``args``, all directions batched."""
    the_op = get_op(op)
    arrays = check_arguments(the_op, args, np.dtype(np.float64))
    with np.errstate(all="ignore"):
        values = kernel(op, the_op.accurate_formulation.name).run(*arrays)
    _OUTPUT_SHAPES[_shape_key(the_op, arrays)] = tuple(np.shape(v) for v in values)
    return values, sensitivities_of(the_op, arrays)


#: (op name, input shapes) → output shapes, so the sensitivities need not run the op to size their sums.
_OUTPUT_SHAPES: dict = {}


def _shape_key(the_op, arrays) -> tuple:
    return (the_op.name, tuple(np.shape(a) for a in arrays))


def _output_shapes(the_op, arrays) -> tuple:
    key = _shape_key(the_op, arrays)
    shapes = _OUTPUT_SHAPES.get(key)
    if shapes is None:
        if len(_OUTPUT_SHAPES) > 4096:
            _OUTPUT_SHAPES.clear()
        with np.errstate(all="ignore"):
            values = kernel(the_op.name, the_op.accurate_formulation.name).run(*arrays)
        shapes = _OUTPUT_SHAPES[key] = tuple(np.shape(v) for v in values)
    return shapes


def sensitivities_of(the_op, arrays) -> tuple:
    """:func:`sensitivities` of arguments already validated as float64 arrays (``check_arguments``), as a
    tuple of one array per output.

    Large inputs take the structured path (``numeric.jacobian_structure``); the directions of all other
    inputs run together through one batched JVP (several only when they exceed ``CHUNK_ELEMENTS``).  Each
    input's chunk of directions is summed on its own and the parts are added in input order, the same
    sums in the same order as one JVP run per input and chunk.

    When some output lacks the independent axis (layer norm's dγ, dβ: sums over the rows) every input
    element is a direction of its own, (N·D)² work per input; from ``SLICED_FROM`` on, such outputs are
    taken apart instead (:func:`_sliced_formulation`)."""
    shapes = _output_shapes(the_op, arrays)
    wrt = [(k, inp) for k, inp in enumerate(the_op.inputs) if inp.axes]
    independent = the_op.independent_axis
    if all(independent in o.axes for o in the_op.outputs):
        return _totals(the_op.accurate_formulation, _batched_jvp_kernel(the_op.name), arrays, wrt,
                       range(len(wrt)), independent, shapes)
    sliced = _sliced_formulation(the_op.name)
    count = sum(arrays[k].size for k, _ in wrt)
    largest = max([arrays[k].size for k, _ in wrt] + [int(np.prod(s, dtype=np.int64)) for s in shapes])
    if sliced is None or count * largest < SLICED_FROM:
        return _totals(the_op.accurate_formulation, _batched_jvp_kernel(the_op.name), arrays, wrt,
                       range(len(wrt)), None, shapes)
    form, summed = sliced
    lengths = {a: n for (k, inp) in wrt for a, n in zip(inp.axes, arrays[k].shape)}
    axes = form.axes()
    sliced_shapes = tuple(tuple(lengths[a] for a in axes[name]) for name in form.outputs)
    across = [slot for slot, (_, inp) in enumerate(wrt) if independent in inp.axes]
    shared = [slot for slot, (_, inp) in enumerate(wrt) if independent not in inp.axes]
    parts = _totals(form, _batched_jvp_kernel(the_op.name, sliced=True), arrays, wrt,
                    across, independent, sliced_shapes)
    totals = _totals(the_op.accurate_formulation, _batched_jvp_kernel(the_op.name), arrays, wrt,
                     shared, None, shapes)
    for total, part, name, over in zip(totals, parts, form.outputs, summed):
        total += part.sum(axis=axes[name].index(independent)) if over else part
    return totals


#: From this many (input elements × largest array) on, an op with outputs that lack the independent axis
#: takes them apart slice by slice (see :func:`sensitivities_of`); below it, one direction per element.
SLICED_FROM = 1 << 20


@lru_cache(maxsize=None)
def _sliced_formulation(op_name: str):
    """(formulation, summed flags) or None.  The op's accurate formulation with every output that lacks the
    independent axis and is a sum over exactly that axis (dγ = Σ_n dy·x̂) replaced by the summed value, which
    has the axis.  Each slice of that value depends on its own slice of the inputs that have the axis, so
    Σ_j |∂out/∂x_j| |x_j| over those inputs is the sum over slices of the value's own sensitivities, which
    group the directions along the independent axis.  Inputs without the axis (γ) still act on the sum as a
    whole and are differentiated through the unchanged outputs."""
    op = get_op(op_name)
    form, independent = op.accurate_formulation, op.independent_axis
    steps = {step.name: step for step in form.steps}
    axes = form.axes()
    outputs, summed = [], []
    for name in form.outputs:
        if independent in axes[name]:
            outputs.append(name)
            summed.append(False)
            continue
        step = steps.get(name)
        if not (isinstance(step, Reduce) and step.op == "sum" and tuple(step.over) == (independent,)
                and independent in axes[step.arg]):
            return None
        outputs.append(step.arg)
        summed.append(True)
    needed, kept = set(outputs), []
    for step in reversed(form.steps):        # drop the sums no output reads any more (dγ = Σ_n …)
        if step.name in needed:
            kept.append(step)
            needed.update(form.free_names(step) if isinstance(step, Elementwise) else
                          [a for a in [getattr(step, "arg", None)] if a is not None])
    return (replace(form, name=f"{form.name}_sliced", steps=tuple(reversed(kept)), outputs=tuple(outputs)),
            tuple(summed))


def _totals(form, jvp, arrays, wrt, slots, independent, shapes) -> tuple:
    """Σ over the directions of the inputs ``wrt[slot]`` for ``slot`` in ``slots`` of |tangent| per output of
    ``form`` (arrays of ``shapes``): structured where it pays, else batched JVP runs."""
    with np.errstate(all="ignore"):
        largest = max([arrays[k].size for k, _ in wrt] + [int(np.prod(s, dtype=np.int64)) for s in shapes])
        chunk = max(1, CHUNK_ELEMENTS // max(largest, 1))
        parts: list = []                    # per input in order: [structured parts] or [(slot, start, stop)…]
        for slot in slots:
            k, inp = wrt[slot]
            count = _direction_count(arrays[k], inp.axes, independent)
            structured = None
            if count * largest >= STRUCTURED_FROM:
                try:              # diagonal + reductions, one matrix product (numeric.jacobian_structure)
                    _, structured = structured_sensitivities(form, arrays, inp.name, independent)
                except Unsupported:
                    pass
            parts.append(("structured", structured) if structured is not None else
                         ("jvp", [(slot, start, min(start + chunk, count)) for start in range(0, count, chunk)]))
        sums = _batched_sums(jvp, arrays, wrt, independent, chunk, shapes,
                             [seg for kind, segs in parts if kind == "jvp" for seg in segs])
        totals = [np.zeros(shape) for shape in shapes]
        for kind, content in parts:
            for piece in ([content] if kind == "structured" else [sums.pop(0) for _ in content]):
                for total, part in zip(totals, piece):
                    if part is not None:
                        total += part
    return tuple(totals)


def _batched_sums(jvp, arrays, wrt, independent, chunk, shapes, segments) -> list:
    """Per segment (slot, start, stop) — directions ``start:stop`` of the ``slot``-th differentiable input —
    the list over outputs (of ``shapes``) of Σ |tangent| over those directions.  Consecutive segments share
    one run of the batched JVP kernel ``jvp`` while their directions fit in ``chunk``."""
    sums, group, size = [], [], 0
    for seg in segments + [None]:
        n = 0 if seg is None else seg[2] - seg[1]
        if group and (seg is None or size + n > chunk):
            tangents = []
            for s, (j, inp) in enumerate(wrt):
                mine = [(row0, g) for row0, g in _rows(group) if g[0] == s]
                if not mine:
                    tangents.append(np.broadcast_to(np.zeros((), arrays[j].dtype), (size,) + arrays[j].shape))
                    continue
                t = np.zeros((size,) + arrays[j].shape, dtype=arrays[j].dtype)
                for row0, (_, start, stop) in mine:
                    t[row0:row0 + stop - start] = _direction_tangents(arrays[j], inp.axes, independent, start, stop)
                tangents.append(t)
            outs = jvp.run(*arrays, *tangents)
            for row0, (_, start, stop) in _rows(group):
                sums.append([np.abs(np.broadcast_to(t, (size,) + shape)[row0:row0 + stop - start]).sum(axis=0)
                             for t, shape in zip(outs, shapes)])
            group, size = [], 0
        if seg is not None:
            group.append(seg)
            size += n
    return sums


def _rows(group):
    """(first row, segment) of each segment of a batched run, in order."""
    row = 0
    for seg in group:
        yield row, seg
        row += seg[2] - seg[1]


def _direction_count(x: np.ndarray, axes, independent) -> int:
    """How many JVP directions input ``x`` needs: one per combination of its non-independent indices."""
    return int(np.prod([n for a, n in zip(axes, x.shape) if a != independent], dtype=np.int64))


def _direction_tangents(x: np.ndarray, axes, independent, start: int, stop: int) -> np.ndarray:
    """Tangents ``start:stop`` of one input, shape (stop − start, *x.shape): direction m carries the values
    of ``x`` at the m-th combination (C order) of the non-independent indices — all positions along
    ``independent`` together; every element on its own when ``independent`` is not an axis of ``x`` —
    and zeros elsewhere, in the order :func:`_directions` yields them."""
    p = axes.index(independent) if independent in axes else None
    moved = x if p is None else np.moveaxis(x, p, -1)
    flat = moved.reshape(-1, 1) if p is None else moved.reshape(-1, moved.shape[-1])   # (M, independent length)
    count = stop - start
    out = np.zeros((count, flat.shape[0], flat.shape[1]), dtype=x.dtype)
    out[np.arange(count), np.arange(start, stop)] = flat[start:stop]
    out = out.reshape((count,) + moved.shape)
    return out if p is None else np.moveaxis(out, -1, p + 1)


def _values_and_sensitivities_per_direction(op, args):
    """The former definition, one JVP run per direction: kept for the equality test and the benchmark."""
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
