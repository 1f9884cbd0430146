"""Certified values for claims: an op of the registry on printed inputs, or exact rational statistics.

:func:`op_slice` evaluates an op on ONE slice along its ``independent_axis`` (a row of logits, a column
of batch-norm features), built from 1-D vectors by the op's own metadata (``Input.axes``,
``independent_axis``, ``scalars``), so it works for any registered op without naming one.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from derive import get_op

from ..reference import reference

__all__ = ["op_slice", "op_call", "mean", "variance", "std_candidates", "softmax_row"]


def _as_input(inp, value, axis: str):
    """A 1-D vector (or scalar) as the op's input ``inp``: one slice along ``axis``."""
    arr = np.asarray(value, dtype=np.float64)
    if not inp.axes:
        return np.float64(arr)
    if arr.ndim == len(inp.axes):
        return arr
    if len(inp.axes) == 1:                   # per-feature parameter (gamma, beta): one feature
        return np.reshape(arr, (1,)) if arr.size == 1 else arr
    if arr.ndim == 1 and len(inp.axes) == 2 and axis in inp.axes:
        return arr.reshape(1, -1) if inp.axes.index(axis) == 0 else arr.reshape(-1, 1)
    raise ValueError(f"cannot shape a value of shape {arr.shape} as input {inp.name!r} {inp.axes}")


def op_call(op_name: str, args: dict, output=0):
    """``reference(op, ...)`` with arguments by input name (missing scalars from the op's defaults);
    ``output`` selects one output by index or name.  Returns an object array of mpmath numbers."""
    op = get_op(op_name)
    unknown = set(args) - {i.name for i in op.inputs}
    if unknown:
        raise ValueError(f"{op_name} has no input {sorted(unknown)[0]!r} (inputs: {', '.join(i.name for i in op.inputs)})")
    values = []
    for inp in op.inputs:
        if inp.name in args:
            values.append(np.asarray(args[inp.name], dtype=np.float64))
        elif inp.name in op.scalars:
            values.append(np.float64(op.scalars[inp.name]))
        else:
            raise ValueError(f"{op_name} needs argument {inp.name!r} (inputs: {', '.join(i.name for i in op.inputs)})")
    out = reference(op_name, *values)
    outs = out if isinstance(out, tuple) else (out,)
    names = [o.name for o in op.outputs]
    if isinstance(output, str):
        if output not in names:
            raise ValueError(f"{op_name} has no output {output!r} (outputs: {', '.join(names)})")
        output = names.index(output)
    if not (isinstance(output, int) and 0 <= output < len(outs)):
        raise ValueError(f"output must be 0..{len(outs) - 1} or one of {', '.join(names)}; got {output!r}")
    return outs[output]


def op_slice(op_name: str, **vectors) -> list:
    """The op's first output on one slice: each 1-D vector becomes that input's slice along the op's
    independent axis (a per-feature input such as gamma takes one value); the result is flattened to a
    list of mpmath numbers."""
    op = get_op(op_name)
    args = {}
    for inp in op.inputs:
        if inp.name in vectors:
            args[inp.name] = _as_input(inp, vectors[inp.name], op.independent_axis)
    return list(np.asarray(op_call(op_name, args)).reshape(-1))


def softmax_row(z) -> list:
    return op_slice("softmax", z=list(z))


def mean(values) -> Fraction:
    xs = [Fraction(v) for v in values]
    return sum(xs) / len(xs)


def variance(values, ddof: int) -> Fraction:
    """Exact variance: ddof 0 population (biased, the batch-norm convention), 1 sample (unbiased)."""
    xs = [Fraction(v) for v in values]
    mu = sum(xs) / len(xs)
    return sum((x - mu) ** 2 for x in xs) / (len(xs) - ddof)


def std_candidates(values):
    """{"population": σ, "sample": s} as mpmath numbers (square roots of the exact variances)."""
    import mpmath
    out = {}
    for name, ddof in (("population", 0), ("sample", 1)):
        if len(values) > ddof:
            v = variance(values, ddof)
            with mpmath.workdps(50):
                out[name] = mpmath.sqrt(mpmath.mpf(v.numerator) / v.denominator)
    return out
