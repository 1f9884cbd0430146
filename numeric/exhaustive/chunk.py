"""One chunk of an exhaustive run: points ``[start, stop)`` of the grid, every formulation, judged against the
certified reference.  A module-level function of plain data (:func:`run_chunk`), so any executor can run it.

**Batching.**  When every output of the op keeps the op's independent axis (rows of softmax, columns of
batch norm) and every varied input has that axis, the slices holding a varied element (the *unit*) are
copied once per point along that axis, so one kernel call and one reference call cover thousands of
points; slices without a varied element are left out (their outputs do not depend on it).  Otherwise
(an output reduced over that axis, such as a loss summed over the batch, or a varied scalar) each point is
one call on the whole inputs.

**Judging.**  Errors are in ULPs of the dtype at the exact value r, ulp(r) = 2^(max(⌊log2|r|⌋, emin) − p + 1),
measured from a float64 value within 2^-30 |r| of r, so a float16 / bfloat16 / float32 ULP count is off by
less than 2^-29 ULPs.  That value is the midpoint of a float64 ball of the op's stable formulation
(``numeric.engines.fast.ball_evaluate``: every operation adds its rigorous rounding bound to the radius)
when the radius is ≤ 2^-30 of it for every element of the point; the other points (overflow in float64,
cancellation) take the certified arb reference (≥ 83 bits), and the chunk counts them (``arb_points``).  Non-finite outputs and flushes to zero (0 where
the reference rounds to a non-zero float of the dtype) are counted apart, as in ``numeric.metrics``.

A chunk's result (JSON-ready): for each formulation a histogram of element errors (bins ``EDGES``), the
``WORST`` largest errors, the runs of points with a non-finite output (global point numbers, half-open),
counts, and for one varied element the largest error at each point.
"""
from __future__ import annotations

import math

import numpy as np

from derive import get_op

from ..dtypes import finfo, resolve_dtype
from ..evaluate import as_tuple, kernel
from ..reference import ReferenceNotCertified, reference
from .grid import value_grid

__all__ = ["run_chunk", "EDGES", "WORST", "batchable", "point_values", "ulps_against"]

#: Upper edges of the ULP histogram bins after the "exact" bin: (0, ½], (½, 1], (1, 2], … (2^23, 2^24], then > 2^24.
EDGES = tuple([0.5] + [float(2 ** k) for k in range(0, 25)])
#: ULP counts below this are "exact": the comparison value is only certified to 2^-30 relative.
RESOLUTION = 2.0 ** -29
#: Worst elements kept per formulation.
WORST = 10


def batchable(op, varied_positions) -> bool:
    """Points can be stacked along ``op.independent_axis``: every output and every varied input has it."""
    axis = op.independent_axis
    return (all(axis in out.axes for out in op.outputs)
            and all(axis in op.inputs[p].axes for p in varied_positions))


def point_values(plan: dict, start: int, stop: int) -> np.ndarray:
    """Values of the varied elements at points ``[start, stop)``: shape (stop − start, number varied).
    Point numbers run over the grid (one element) or the grid × grid in row-major order (two)."""
    grid = value_grid(plan["dtype"], samples=plan["samples"]).values
    points = np.arange(start, stop, dtype=np.int64)
    if len(plan["varied"]) == 1:
        return grid[points][:, None]
    n = grid.size
    return np.stack([grid[points // n], grid[points % n]], axis=1)


def ulps_against(got: np.ndarray, ref: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(ULPs, flushed) of float64 ``got`` against float64 ``ref``: ULPs nan where got is non-finite, flushed
    or ref is beyond float64; flushed where got = 0 although ref rounds to a non-zero float of ``dtype``."""
    info = finfo(dtype)
    emin, nmant = int(info.minexp), int(info.nmant)
    with np.errstate(all="ignore"):
        _, e = np.frexp(ref)
        exponent = np.where(ref == 0, emin, np.maximum(e - 1, emin))
        ulp = np.ldexp(1.0, (exponent - nmant).astype(np.int64))
        flushed = (got == 0) & (np.abs(ref) > float(info.smallest_subnormal) / 2)
        ulps = np.abs(got - ref) / ulp
    ulps[~np.isfinite(got) | ~np.isfinite(ref) | flushed] = np.nan
    return ulps, flushed


def _unit(op, base: list, varied: list, batch: bool):
    """(unit inputs, varied (input position, index in the unit), slices) — see the module doc."""
    if not batch:
        return base, [(p, tuple(i)) for p, i in varied], None
    axis = op.independent_axis
    slices = sorted({idx[op.inputs[p].axes.index(axis)] for p, idx in varied})
    unit = []
    for inp, arr in zip(op.inputs, base):
        unit.append(np.take(arr, slices, axis=inp.axes.index(axis)) if axis in inp.axes else arr)
    moved = []
    for p, idx in varied:
        q = op.inputs[p].axes.index(axis)
        idx = list(idx)
        idx[q] = slices.index(idx[q])
        moved.append((p, tuple(idx)))
    return unit, moved, slices


def _stack(op, unit, varied, values: np.ndarray) -> list[np.ndarray]:
    """``len(values)`` copies of the unit along the independent axis, the varied elements set per copy."""
    n = values.shape[0]
    axis = op.independent_axis
    stacked = []
    for inp, arr in zip(op.inputs, unit):
        if axis in inp.axes:
            reps = [1] * arr.ndim
            reps[inp.axes.index(axis)] = n
            arr = np.tile(arr, reps)
        stacked.append(arr)
    for column, (p, idx) in enumerate(varied):
        q = op.inputs[p].axes.index(axis)
        m = unit[p].shape[q]
        where = [np.full(n, i) for i in idx]
        where[q] = np.arange(n) * m + idx[q]
        stacked[p] = stacked[p] if stacked[p].flags.writeable else stacked[p].copy()
        stacked[p][tuple(where)] = values[:, column]
    return stacked


def _per_point(outputs, axes_of, axis, n: int) -> np.ndarray:
    """Outputs of n stacked points as one (n, elements) float64 array (independent axis moved first)."""
    parts = []
    for out, axes in zip(outputs, axes_of):
        arr = np.asarray(out, dtype=np.float64)
        arr = np.moveaxis(arr, axes.index(axis), 0)
        parts.append(arr.reshape(n, -1))
    return np.concatenate(parts, axis=1)


def _reference_float64(op_name, args) -> tuple:
    return tuple(np.asarray(r, dtype=object).astype(np.float64) for r in as_tuple(reference(op_name, *args)))


#: A float64 ball decides an element when its radius is at most this fraction of |midpoint| (or of the
#: dtype's smallest subnormal): the ULP count from the midpoint is then off by < 2^-30 ULPs.
BALL_RELATIVE = 2.0 ** -30


def _ball_reference(op, exact: list, axis: str, n: int, dtype):
    """(midpoints (n, E), decided (n,) points) from ``numeric.engines.fast.ball_evaluate`` of the op's
    stable formulation — float64 balls with a rigorous radius — or None when it cannot run the op."""
    from ..engines.fast import Unsupported, ball_evaluate

    form = op.stable_formulation
    try:
        balls = ball_evaluate(form, *exact)
    except Unsupported:
        return None
    axes = form.axes()
    of = [axes[o] for o in form.outputs]
    mid = _per_point([m for m, _ in balls], of, axis, n)
    rad = _per_point([r for _, r in balls], of, axis, n)
    floor = float(finfo(dtype).smallest_subnormal) * BALL_RELATIVE
    with np.errstate(all="ignore"):
        ok = np.isfinite(mid) & np.isfinite(rad) & ((rad <= BALL_RELATIVE * np.abs(mid)) | (rad <= floor))
    return mid, ok.all(axis=1)


def _evaluate(plan, op, unit, varied, values, batch):
    """(got per formulation {name: (n, E)}, ref (n, E), judged (n,) mask, points that took the arb path)."""
    dt = resolve_dtype(plan["dtype"])
    n = values.shape[0]
    forms = plan["formulations"]
    ref_kernel = kernel(op.name, None)
    if batch:
        axis = op.independent_axis
        rounded = [np.asarray(a, dtype=dt) for a in _stack(op, unit, varied, values)]
        got = {}
        with np.errstate(all="ignore"):
            for f in forms:
                k = kernel(op.name, f)
                got[f] = _per_point(k.run(*rounded), [k.axes[o] for o in k.form.outputs], axis, n)
        exact = [np.asarray(a, dtype=np.float64) for a in rounded]
        fast = _ball_reference(op, exact, axis, n, dt)
        if fast is None:
            ref, decided = np.full(next(iter(got.values())).shape, np.nan), np.zeros(n, bool)
        else:
            ref, decided = fast
        judged = np.ones(n, bool)
        slow = np.flatnonzero(~decided)
        if slow.size:
            ref_axes = [ref_kernel.axes[o] for o in ref_kernel.form.outputs]
            sub = [np.asarray(np.asarray(a, dtype=dt), dtype=np.float64)
                   for a in _stack(op, unit, varied, values[slow])]
            try:
                ref[slow] = _per_point(_reference_float64(op.name, sub), ref_axes, axis, slow.size)
            except (ReferenceNotCertified, ValueError):
                for i in slow:           # one by one; points not certified or outside the op's domain are dropped
                    one = [np.asarray(np.asarray(a, dtype=dt), dtype=np.float64)
                           for a in _stack(op, unit, varied, values[i:i + 1])]
                    try:
                        ref[i] = _per_point(_reference_float64(op.name, one), ref_axes, axis, 1)[0]
                    except (ReferenceNotCertified, ValueError):
                        judged[i] = False
        return got, ref, judged, int(slow.size)
    got = {f: [] for f in forms}
    refs, certified = [], np.ones(n, bool)
    for i in range(n):
        args = [a.copy() for a in unit]
        for column, (p, idx) in enumerate(varied):
            args[p][idx] = values[i, column]
        rounded = [np.asarray(a, dtype=dt) for a in args]
        with np.errstate(all="ignore"):
            for f in forms:
                got[f].append(np.concatenate([np.asarray(o, dtype=np.float64).ravel()
                                              for o in kernel(op.name, f).run(*rounded)]))
        try:
            refs.append(np.concatenate([o.ravel() for o in _reference_float64(
                op.name, [a.astype(np.float64) for a in rounded])]))
        except (ReferenceNotCertified, ValueError):      # not certified, or outside the op's domain
            certified[i] = False
            refs.append(np.full(got[forms[0]][-1].shape, np.nan))
    return {f: np.stack(v) for f, v in got.items()}, np.stack(refs), certified, n


def _runs(mask: np.ndarray, offset: int) -> list[list[int]]:
    """Half-open [a, b) runs of True in ``mask``, shifted by ``offset``."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [[int(a) + offset, int(b) + offset] for a, b in zip(edges[::2], edges[1::2])]


def run_chunk(task: dict) -> dict:
    """Judge grid points ``task["start"]``…``task["stop"] − 1`` of ``task["plan"]`` (see the module doc)."""
    plan, start, stop = task["plan"], task["start"], task["stop"]
    op = get_op(plan["op"])
    base = [np.array(a, dtype=np.float64) for a in plan["inputs"]]
    varied = [(p, tuple(i)) for p, i in plan["varied"]]
    batch = batchable(op, [p for p, _ in varied])
    unit, moved, _ = _unit(op, base, varied, batch)
    values = point_values(plan, start, stop)
    got, ref, certified, slow = _evaluate(plan, op, unit, moved, values, batch)
    result = {"points": stop - start, "uncertified": int((~certified).sum()), "arb_points": slow, "forms": {}}
    for f, g in got.items():
        g, r = g[certified], ref[certified]
        numbers = np.arange(start, stop)[certified]
        ulps, flushed = ulps_against(g, r, plan["dtype"])
        nonfinite = ~np.isfinite(g)
        finite = ulps[np.isfinite(ulps)]
        exact = int((finite < RESOLUTION).sum())
        counts = np.bincount(np.searchsorted(EDGES, finite[finite >= RESOLUTION], side="left"),
                             minlength=len(EDGES) + 1)
        flat = np.where(np.isfinite(ulps), ulps, -1.0).ravel()
        point_of, element_of = np.divmod(np.arange(flat.size), g.shape[1])
        order = np.lexsort((element_of, point_of, -flat))[:WORST]
        worst = [[float(flat[j]), int(numbers[point_of[j]]), int(element_of[j]), float(g.ravel()[j]),
                  float(r.ravel()[j])] for j in order if flat[j] >= 0]
        bad_points = np.zeros(stop - start, bool)
        bad_points[certified] = nonfinite.any(axis=1)
        entry = {"exact": exact, "hist": [int(c) for c in counts], "worst": worst,
                 "nonfinite_runs": _runs(bad_points, start), "nonfinite_elements": int(nonfinite.sum()),
                 "flush": int(flushed.sum()), "elements": int(g.size),
                 "beyond_float64": int((~np.isfinite(r) & np.isfinite(g)).sum())}
        if len(varied) == 1:
            per_point = np.full(stop - start, math.nan)
            with np.errstate(all="ignore"):
                per_point[certified] = np.where(np.isfinite(ulps), ulps, -1.0).max(axis=1)
            per_point[per_point < 0] = math.nan
            entry["point_max"] = [float(x) for x in per_point]
        result["forms"][f] = entry
    return result
