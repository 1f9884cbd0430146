"""Run a formulation symbolically for concrete axis lengths, one SymPy expression per element.

A value becomes a dict mapping index tuples (aligned with the value's axes) to SymPy expressions.
``max`` reductions become fresh real symbols: every formulation here uses the maximum only as a shift,
so proving it for an *arbitrary* shift is both easier and stronger than proving it for the maximum.
"""
from __future__ import annotations

import itertools
import math
from functools import lru_cache

import sympy as sp

from .program import Delta, Elementwise, Formulation, OneHot, Reduce, Relabel, value_symbol

__all__ = ["input_symbols", "run_symbolic", "value_axes", "xreplace_once", "swap_renaming"]

Values = dict[str, dict[tuple[int, ...], sp.Expr]]


def input_symbols(name: str, axes: tuple[str, ...], lengths: dict[str, int], *, integer: bool = False) -> dict:
    """Real symbols ``name_i_j`` for every element of an input with the given axes (integer ones for
    class ids: proofs enumerate their values, see :func:`derive.proof`)."""
    out = {}
    for idx in itertools.product(*(range(lengths[a]) for a in axes)):
        label = "_".join([name, *map(str, idx)]) if idx else name
        out[idx] = sp.Symbol(label, integer=True) if integer else sp.Symbol(label, real=True)
    return out


def run_symbolic(form: Formulation, lengths: dict[str, int], inputs: Values | None = None,
                 only: tuple[str, ...] | None = None) -> Values:
    """Every value of ``form`` for axis lengths ``lengths`` (e.g. ``{"b": 1, "k": 4}``).

    ``inputs`` defaults to fresh symbols from :func:`input_symbols`; ``only``: names of the values wanted,
    when the steps they do not depend on should be skipped (an invariant's residual without its error
    scale).
    """
    axes, reads = _layout(form)
    skip = set() if only is None else {st.name for st in form.steps} - _needed(form, only)
    values: Values = dict(inputs) if inputs else {}
    for inp in form.inputs:
        if inp.name not in values:
            values[inp.name] = input_symbols(inp.name, axes[inp.name], lengths)
    sizes = {form.size_symbol(s): math.prod(lengths[a] for a in form.size_axes(s)) for s in form.sizes}

    def grid(labels):
        return itertools.product(*(range(lengths[a]) for a in labels))

    size_items = tuple(sorted(sizes.items(), key=str))
    for step in form.steps:
        out_axes = axes[step.name]
        if step.name in skip:
            if isinstance(step, Relabel):       # its axes' lengths, for a Delta that uses them
                for old, new in step.mapping:
                    lengths = {**lengths, new: lengths[old]}
            continue
        if isinstance(step, Elementwise):
            values[step.name] = dict(_elementwise(step.expr, size_items, out_axes, _lengths(lengths, out_axes),
                                                  _reads(reads[step.name], axes, lengths, values)))
        elif isinstance(step, Reduce):
            # a max is a fresh symbol named after the step; a sum or mean does not depend on the name
            values[step.name] = dict(_reduce(step.op, math.prod(_lengths(lengths, step.over)),
                                             step.name if step.op == "max" else "", out_axes,
                                             _lengths(lengths, out_axes),
                                             _reads((step.arg,), axes, lengths, values)[0]))
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


def value_axes(form: Formulation) -> dict[str, tuple[str, ...]]:
    """``form.axes()``, worked out once per formulation object (see :func:`_layout`); do not modify it."""
    return _layout(form)[0]


def _layout(form: Formulation) -> tuple[dict, dict]:
    """``form.axes()`` and, per elementwise step, the names it reads (``form.free_names``): worked out once
    per formulation object and kept on it (formulations are frozen; proofs ask for them for every size,
    formulation and entry relabelling)."""
    got = form.__dict__.get("_layout")
    if got is None:
        reads = {st.name: form.free_names(st) for st in form.steps if isinstance(st, Elementwise)}
        got = form.__dict__["_layout"] = (form.axes(), reads)
    return got


def _needed(form: Formulation, names) -> set:
    """Names of the values ``names`` depend on (themselves included)."""
    wanted = set(names)
    for step in reversed(form.steps):
        if step.name in wanted:
            if isinstance(step, Elementwise):
                wanted.update(_layout(form)[1][step.name])
            elif not isinstance(step, Delta):
                wanted.add(step.arg)
    return wanted


def _lengths(lengths: dict, axes: tuple) -> tuple:
    return tuple(lengths[a] for a in axes)


def _reads(names, axes: dict, lengths: dict, values: Values) -> tuple:
    """What a step reads, as a key: per value its name, axes, their lengths and its entries (SymPy
    expressions compare structurally, so two keys are equal only when the entries are the same
    expressions)."""
    return tuple((n, axes[n], _lengths(lengths, axes[n]), tuple(values[n].items())) for n in names)


# The entries of one elementwise or reduction step are a function of what the step does and what it reads
# (the arguments below): the formulations, known mistakes, invariants and definition of one op share most
# of their steps (batch mean, variance, x̂ …), so each is built once per process.  Callers copy the dict.

@lru_cache(maxsize=2048)
def _elementwise(expr: sp.Expr, size_items: tuple, out_axes: tuple, out_lengths: tuple, reads: tuple) -> dict:
    expr = expr.subs(dict(size_items))
    entries = {name: dict(items) for name, _, _, items in reads}
    result = {}
    for idx in itertools.product(*map(range, out_lengths)):
        at = dict(zip(out_axes, idx))
        subs = {value_symbol(n): entries[n][tuple(at[a] for a in axes)] for n, axes, _, _ in reads}
        result[idx] = expr.xreplace(subs)
    return result


@lru_cache(maxsize=2048)
def _reduce(op: str, count: int, name: str, out_axes: tuple, out_lengths: tuple, read: tuple) -> dict:
    _, arg_axes, arg_lengths, items = read
    entries = dict(items)
    result = {}
    for idx in itertools.product(*map(range, out_lengths)):
        at = dict(zip(out_axes, idx))
        terms = [entries[full] for full in itertools.product(*map(range, arg_lengths))
                 if all(full[arg_axes.index(a)] == at[a] for a in out_axes)]
        if op == "sum":
            result[idx] = sp.Add(*terms)
        elif op == "mean":
            result[idx] = sp.Add(*terms) / count
        else:
            result[idx] = sp.Symbol("_".join([name, *map(str, idx)]), real=True)
    return result


def swap_renaming(members: dict, swap: tuple) -> dict:
    """The simultaneous renaming of symbols that swaps index 0 with index ``i`` on each axis ``a`` of
    ``swap`` (``((a, i), …)``), for every symbol of ``members`` (``{(name, axes, idx): symbol}``) carrying
    that axis; ``{}`` when that map is not a permutation of the symbols of ``members`` (an index maps to
    an element with no symbol)."""
    to = dict(swap)

    def moved(a, j):
        t = to.get(a)
        return j if t is None else t if j == 0 else 0 if j == t else j
    rename = {}
    for (name, axes, j), sym in members.items():
        k = tuple(moved(a, x) for a, x in zip(axes, j))
        if k != j:
            rename[sym] = members.get((name, axes, k))
    values = list(rename.values())
    permutation = None not in values and len(set(values)) == len(values) and set(values) == set(rename)
    return rename if permutation else {}


def xreplace_once(expr: sp.Expr, rule: dict, done: dict) -> sp.Expr:
    """``expr.xreplace(rule)`` rebuilding each distinct subexpression once (``done`` remembers them: pass
    the same dict for several expressions and the same ``rule`` only)."""
    return _xreplace_tracked(expr, rule, done)[0]


def _xreplace_tracked(expr, rule, done):
    hit = done.get(expr)
    if hit is None:
        if expr in rule:
            hit = rule[expr], True
        else:
            args, changed = [], False
            for a in expr.args:
                if isinstance(a, sp.Basic):
                    a, moved = _xreplace_tracked(a, rule, done)
                    changed |= moved
                args.append(a)
            hit = (expr.func(*args), True) if changed else (expr, False)
        done[expr] = hit
    return hit
