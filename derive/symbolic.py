"""Run a formulation symbolically for concrete axis lengths, one SymPy expression per element.

A value becomes a dict mapping index tuples (aligned with the value's axes) to SymPy expressions.
``max`` reductions become fresh real symbols: every formulation here uses the maximum only as a shift,
so proving it for an *arbitrary* shift is both easier and stronger than proving it for the maximum.
"""
from __future__ import annotations

import itertools

import sympy as sp

import math

from .program import Delta, Elementwise, Formulation, OneHot, Reduce, Relabel, value_symbol

__all__ = ["input_symbols", "run_symbolic"]

Values = dict[str, dict[tuple[int, ...], sp.Expr]]


def input_symbols(name: str, axes: tuple[str, ...], lengths: dict[str, int], *, integer: bool = False) -> dict:
    """Real symbols ``name_i_j`` for every element of an input with the given axes (integer ones for
    class ids: proofs enumerate their values, see :func:`derive.proof`)."""
    out = {}
    for idx in itertools.product(*(range(lengths[a]) for a in axes)):
        label = "_".join([name, *map(str, idx)]) if idx else name
        out[idx] = sp.Symbol(label, integer=True) if integer else sp.Symbol(label, real=True)
    return out


def run_symbolic(form: Formulation, lengths: dict[str, int], inputs: Values | None = None) -> Values:
    """Every value of ``form`` for axis lengths ``lengths`` (e.g. ``{"b": 1, "k": 4}``).

    ``inputs`` defaults to fresh symbols from :func:`input_symbols`.
    """
    axes = form.axes()
    values: Values = dict(inputs) if inputs else {}
    for inp in form.inputs:
        if inp.name not in values:
            values[inp.name] = input_symbols(inp.name, axes[inp.name], lengths)
    sizes = {form.size_symbol(s): math.prod(lengths[a] for a in form.size_axes(s)) for s in form.sizes}

    def grid(labels):
        return itertools.product(*(range(lengths[a]) for a in labels))

    for step in form.steps:
        out_axes = axes[step.name]
        if isinstance(step, Elementwise):
            names = form.free_names(step)
            expr = step.expr.subs(sizes)
            result = {}
            for idx in grid(out_axes):
                at = dict(zip(out_axes, idx))
                subs = {value_symbol(n): values[n][tuple(at[a] for a in axes[n])] for n in names}
                result[idx] = expr.xreplace(subs)
            values[step.name] = result
        elif isinstance(step, Reduce):
            arg_axes = axes[step.arg]
            count = 1
            for a in step.over:
                count *= lengths[a]
            result = {}
            for idx in grid(out_axes):
                at = dict(zip(out_axes, idx))
                terms = [values[step.arg][full] for full in grid(arg_axes)
                         if all(full[arg_axes.index(a)] == at[a] for a in out_axes)]
                if step.op == "sum":
                    result[idx] = sp.Add(*terms)
                elif step.op == "mean":
                    result[idx] = sp.Add(*terms) / count
                else:
                    result[idx] = sp.Symbol("_".join([step.name, *map(str, idx)]), real=True)
            values[step.name] = result
        elif isinstance(step, Relabel):
            rename = dict(step.mapping)
            for old, new in step.mapping:
                lengths = {**lengths, new: lengths[old]}
            arg_axes = axes[step.arg]
            result = {}
            for idx in grid(out_axes):
                at = dict(zip(out_axes, idx))
                result[idx] = values[step.arg][tuple(at[rename.get(a, a)] for a in arg_axes)]
            values[step.name] = result
        elif isinstance(step, Delta):
            values[step.name] = {idx: sp.Integer(int(idx[0] == idx[1])) for idx in grid(out_axes)}
        elif isinstance(step, OneHot):
            arg_axes = axes[step.arg]
            result = {}
            for idx in grid(out_axes):
                at = dict(zip(out_axes, idx))
                label = values[step.arg][tuple(at[a] for a in arg_axes)]
                result[idx] = (sp.Integer(int(label == at[step.axis])) if isinstance(label, (int, sp.Integer))
                               else sp.KroneckerDelta(label, at[step.axis]))
            values[step.name] = result
    return values
