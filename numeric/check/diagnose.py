"""Naming the bug: what a failing output is, in words a student can act on.

In order: a *convention* of the op that the output matches (``reduction="mean"``…), a *known mistake*
from the op's catalogue (each a formulation proved to differ from the truth) that it matches within the
same tolerance, a constant factor, slices that should not interact but do (each slice of the independent
axis passes on its own), catastrophic cancellation (for shift-invariant ops: the same input shifted
passes), and otherwise the plain size of the error.  Non-finite outputs are told apart: the
dtype's own overflow (gradaudit's stable formulation fails too), a single-row batch, or the function's
overflow / 0/0 with the input magnitude where it starts.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from derive import Kernel, get_op
from derive.registry import parametric_spec

from ..evaluate import as_tuple, kernel
from .judge import float64_inputs
from .reduce import axis_lengths, take_along
from .result import Finding, WorstCase

__all__ = ["diagnose"]


def _matches(got_all, tolerances, candidate) -> bool:
    """Every output of ``candidate`` (float64 arrays) within the tolerance of the user's outputs."""
    for got, tol, want in zip(got_all, tolerances, candidate):
        want = np.asarray(want, dtype=np.float64)
        if np.shape(want) != np.shape(got) or not np.all(np.isfinite(want)):
            return False
        if not np.all(np.abs(got - want) <= np.maximum(tol, 1e-9 * np.abs(want))):
            return False
    return True


def _variants(op):
    """Other conventions of ``op``: every combination of the choices of its parameters, fewest changes first."""
    import itertools

    specs = [p for p in parametric_spec(op.base_name) if p.choices]
    combos = []
    for values in itertools.product(*(p.choices for p in specs)):
        changed = {p.name: v for p, v in zip(specs, values) if v != op.params.get(p.name)}
        if changed:
            combos.append(changed)
    for changed in sorted(combos, key=len):
        try:
            yield changed, get_op(op.base_name, **{**op.params, **changed})
        except ValueError:
            continue


def _convention(op, finding: Finding, passes) -> str:
    """A convention of the same op that the user's function implements: for wrong values, one whose truth
    the output matches on the counterexample (then confirmed by a short check); for a function that raises
    or returns the wrong shape, one it passes (it may take other inputs, e.g. integer class ids)."""
    w = finding.worst
    for changed, other in _variants(op):
        same = ([i.axes for i in other.inputs] == [i.axes for i in op.inputs]
                and [i.role for i in other.inputs] == [i.role for i in op.inputs])
        if finding.kind == "value":
            if not same or w is None:
                continue
            with np.errstate(all="ignore"):
                want = as_tuple(kernel(other.name, other.stable_formulation.name).run(*float64_inputs(other, w.inputs)))
            if not _matches(w.got_all, w.tolerances, want):
                continue
        elif finding.kind not in ("raised", "output", "shape"):
            return ""
        if passes(other):
            flags = " ".join(f"--param {k}={v}" for k, v in changed.items())
            said = ", ".join(f"{k}={v!r}" for k, v in changed.items())
            was = ", ".join(f"{k}={op.params.get(k)!r}" for k in changed)
            return f"your function implements `{other.name}`: it passes with {said} (`{flags}`); `{op.name}` has {was}"
    return ""


@lru_cache(maxsize=None)
def _mistake_kernel(op_name: str, position: int) -> Kernel:
    return Kernel(get_op(op_name).mistakes[position].formulation)


def _mistake(op, w: WorstCase) -> str:
    for position, m in enumerate(op.mistakes):
        with np.errstate(all="ignore"):
            want = _mistake_kernel(op.name, position).run(*float64_inputs(op, w.inputs))
        if _matches(w.got_all, w.tolerances, want):
            return f"{m.message} (known mistake `{m.name}`)"
    return ""


def _constant_factor(op, w: WorstCase) -> str:
    got, ref = w.got_output, w.expected_output
    if got is None or not np.all(np.isfinite(got)) or not np.size(ref):
        return ""
    scale = np.max(np.abs(ref))
    if scale == 0:
        return ""
    mask = np.abs(ref) > 1e-6 * scale
    ratios = got[mask] / ref[mask]
    c = float(np.median(ratios))
    if c == 0:
        return "returns 0 where the exact values are not 0"
    if abs(c - 1) < 1e-3 or not np.allclose(ratios, c, rtol=1e-3, atol=0):
        return ""
    first = next(k for k, i in enumerate(op.inputs) if i.axes and not i.integer)
    shape = dict(zip(op.inputs[first].axes, np.shape(w.inputs[first])))
    named = {"2": 2.0, "1/2": 0.5, "−1": -1.0}
    for axis, n in shape.items():
        named.setdefault(axis.upper(), float(n))
        named.setdefault(f"1/{axis.upper()}", 1.0 / n)
    label = next((k for k, v in named.items() if abs(c - v) <= 1e-3 * abs(v)), None)
    if label is None and 1 / 1.5 < abs(c) < 1.5:
        return ""                  # a small unnamed factor is a symptom (e.g. a wrong variance), not a cause
    return f"off by a constant factor {label + ' ' if label else ''}(got/expected = {c:.6g} on every element)"


#: Slices of the independent axis judged one by one for :func:`_mixes_slices`, at most.
MAX_SLICES = 16


def _mixes_slices(op, inputs, judge) -> str:
    """A diagnosis when every slice of the op's independent axis (a row of a softmax, a feature of a batch
    norm), judged on its own, comes out right while the input as a whole does not: the function lets
    slices that never interact reach each other.  "" otherwise (or for a single slice, or more than
    :data:`MAX_SLICES`)."""
    axis = op.independent_axis
    n = axis_lengths(op, inputs).get(axis, 0)
    if not 2 <= n <= MAX_SLICES:
        return ""
    for i in range(n):
        try:
            found = judge(take_along(op, inputs, axis, [i]))
        except (ValueError, TypeError):
            return ""
        if any(f.kind in ("value", "nonfinite") and f.severity == "error" for f in found):
            return ""
    return (f"right on each slice along `{axis}` on its own, wrong on the {n} together: your function mixes slices "
            f"that never interact — a sum, mean or max taken over `{axis}` as well (a missing axis= or keepdims?)")


def _shifted(op, inputs):
    """The same input with each activation slice shifted by its first value (exact gradients unchanged
    for shift-invariant ops), or None."""
    first = next((k for k, i in enumerate(op.inputs) if i.role == "activations"), None)
    if first is None or not op.domain.get("shift_invariant"):
        return None
    inp = op.inputs[first]
    x = np.asarray(inputs[first], dtype=np.float64)
    over = [k for k, a in enumerate(inp.axes) if a != op.independent_axis]
    origin = x[tuple(slice(0, 1) if k in over else slice(None) for k in range(x.ndim))]
    shifted = (x - origin).astype(np.asarray(inputs[first]).dtype)
    if np.array_equal(shifted.astype(np.float64), x):
        return None
    return (*inputs[:first], shifted, *inputs[first + 1:])


def diagnose(finding: Finding, op, dtype, judge, measures: dict) -> str:
    """The diagnosis of one finding; ``judge(args)`` re-judges an input (list of findings),
    ``measures`` holds scale measures of passing and failing inputs by kind."""
    w = finding.worst
    if finding.kind == "value" and w is not None:
        def passes(other):
            return _passes(judge, other, dtype)
        for name_it in (lambda: _convention(op, finding, passes), lambda: _mistake(op, w),
                        lambda: _constant_factor(op, w)):
            try:
                text = name_it()
            except Exception:          # noqa: BLE001 — a diagnosis that cannot be computed is no diagnosis
                text = ""
            if text:
                return text
        mixed = _mixes_slices(op, w.inputs, judge)
        if mixed:
            return mixed
        shifted = _shifted(op, w.inputs)
        if shifted is not None and not any(f.kind == "value" for f in judge(shifted)):
            what, value = judge.measure(w.inputs)
            return (f"fails on this input ({what} = {value:.3g}) but passes once every slice is shifted by its first "
                    "value, which leaves the exact result unchanged: the error grows with the mean, i.e. catastrophic "
                    "cancellation (e.g. var = E[x²] − E[x]²)")
        bound = "the normwise bound" if w.bound == "normwise" else "the componentwise bound"
        return (f"wrong value: |got − expected| = {abs(w.got - w.expected):.3g} is {w.excess:.3g}× the tolerance "
                f"{w.tolerance:.3g} ({bound}, the closer of the two) that rounding in {dtype.name} can explain at this "
                f"input (κ = {w.kappa:.3g})")
    if finding.kind in ("raised", "output", "shape") and finding.severity == "error":
        named = _convention(op, finding, lambda other: _passes(judge, other, dtype))
        if named or finding.kind != "raised":
            return named
        if dtype.name == "bfloat16" and ("data type" in finding.message or "dtype" in finding.message):
            return ("nothing was measured: a numpy routine in your function does not support bfloat16 (ml_dtypes "
                    "arrays; e.g. np.einsum, np.linalg) — write it with elementwise operations and sums, or check "
                    "it in float32")
        return ""
    if finding.kind == "nonfinite" and w is not None:
        counts = f"{finding.inf} inf and {finding.nan} nan element(s) in this counterexample's outputs"
        stable = _stable_finite(op, w.inputs, dtype)
        if not stable:
            return (f"non-finite output ({counts}), but {dtype.name} itself overflows here: gradaudit's stable "
                    f"formulation `{op.stable_formulation.name}` also returns inf/nan at this input")
        what, value = judge.measure(w.inputs)
        first = next((k for k, i in enumerate(op.inputs) if i.role == "activations"), None)
        if first is not None:
            inp = op.inputs[first]
            combined = int(np.prod([n for a, n in zip(inp.axes, np.shape(w.inputs[first])) if a != op.independent_axis]))
            if combined == 1:
                return (f"non-finite output ({counts}) on a batch of one element per slice (variance 0), where "
                        "gradaudit's stable formulation is finite: a division by N − 1, or by √var without ε?")
            shifted = _shifted(op, w.inputs) if math.isfinite(value) else None     # a constant slice: no cancellation
            if shifted is not None and not any(f.kind == "nonfinite" for f in judge(shifted)):
                return (f"non-finite output ({counts}) at {what} = {value:.3g}, none once every slice is shifted to "
                        "start at 0: the variance came out ≤ 0 — catastrophic cancellation (e.g. var = E[x²] − E[x]²)")
        failing = measures.get("nonfinite", [])
        passing = measures.get("pass", [])
        onset = min(failing) if failing else value
        if onset > 0 and passing and max(passing) < onset:
            where = f"once {what} ≥ {onset:.4g} (every input below passed)"
        else:
            where = f"at {what} = {value:.4g}"
        return (f"non-finite output ({counts}) {where}, where the exact result is finite: an overflow or 0/0 — an "
                "unshifted exp, a log of 0, a division by a variance that came out 0 or negative")
    return ""


def _passes(judge, other, dtype) -> bool:
    """A short check of the same function against another convention of the op."""
    from .run import check_gradient          # late: run imports this module
    return check_gradient(judge.fn, other.name, dtype=dtype.name, examples=20, edge_cases=False, _diagnose=False).ok


def _stable_finite(op, inputs, dtype) -> bool:
    from ..arguments import check_arguments
    with np.errstate(all="ignore"):
        outs = as_tuple(kernel(op.name, op.stable_formulation.name).run(*check_arguments(op, inputs, dtype)))
    return all(np.all(np.isfinite(np.asarray(o, dtype=np.float64))) for o in outs)
