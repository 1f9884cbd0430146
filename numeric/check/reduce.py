"""Smaller counterexamples: a finding's input cut down after Hypothesis has shrunk it.

Hypothesis shrinks the choices a strategy made, and an array's shape is among the first of them: a
counterexample often keeps rows and features that take no part in the fault (a batch-norm input of
20 × 3 whose fault sits in one column).  :func:`reductions` tries smaller inputs made from the
counterexample itself and keeps each one on which the function still shows the same fault:

1. only the slice of the op's independent axis that holds the worst element (a row of a softmax, a
   feature of a batch norm: the exact values of a slice depend on that slice alone);
2. along each axis, fewer indices (``ddmin``: drop halves, then quarters, … of what is left), down to the
   axis's smallest length in the op's domain;
3. upstream gradients and weights (γ) as ones.

A candidate is judged like any example (same certified reference, same tolerances, nothing recorded for
the diagnosis).  "The same fault" is a finding of the same kind — for wrong values, at least
``1/SHRINK_FACTOR`` of the counterexample's excess over the tolerance, as while Hypothesis shrinks — so
the reduced input shows what the full one showed, only smaller.  Axes along which values are tied to each
other are left alone: the class axis of label rows (each row sums to 1) and of class ids.
"""
from __future__ import annotations

import numpy as np

from .judge import judge_example
from .result import Finding

__all__ = ["reductions", "take_along", "axis_lengths", "MAX_TRIALS"]

#: Judged candidates per finding, at most (each costs one example: milliseconds at these sizes).
MAX_TRIALS = 60


def reductions(finding: Finding, fn, op, dtype, domain: dict, truths, shrink_factor: float) -> list[Finding]:
    """``[finding, …]``: ``finding``, then the same fault as judged on each smaller input kept in turn
    (the last is the smallest found; just ``[finding]`` when none is).  ``domain``: the op's domain
    (:func:`numeric.strategies.domain_of`), whose ``sizes`` bound each axis from below."""
    if not finding.counterexample:
        return [finding]
    search = _Search(finding, fn, op, dtype, truths, shrink_factor)
    lengths = axis_lengths(op, search.args)
    fixed = _tied_axes(op)
    independent = op.independent_axis
    if independent in lengths and independent not in fixed and lengths[independent] > 1:
        where = _worst_slice(finding, op)
        if where is not None:
            search.attempt(take_along(op, search.args, independent, [where]))
    for axis in [independent] + [a for a in lengths if a != independent]:
        if axis in lengths and axis not in fixed:
            _ddmin(search, op, axis, domain["sizes"].get(axis, (1, None))[0])
    for k, inp in enumerate(op.inputs):
        if inp.role in ("upstream", "weight") and isinstance(search.args[k], np.ndarray):
            ones = list(search.args)
            ones[k] = np.ones_like(search.args[k])
            search.attempt(ones)
    return search.kept


class _Search:
    """The findings kept so far (``kept``, smaller inputs later) and the last one's input (``args``)."""

    def __init__(self, finding, fn, op, dtype, truths, shrink_factor):
        self.kept, self.args = [finding], list(finding.counterexample)
        self.fn, self.op, self.dtype, self.truths = fn, op, dtype, truths
        value = finding.kind == "value" and finding.worst is not None
        self.floor = finding.worst.excess / shrink_factor if value else None
        self.trials = 0

    def attempt(self, candidate) -> bool:
        """Judge ``candidate``; keep it when it shows the same fault."""
        if self.trials >= MAX_TRIALS:
            return False
        self.trials += 1
        try:
            findings, _ = judge_example(self.fn, self.op, self.dtype, candidate, self.truths)
        except (ValueError, TypeError):              # not a valid input of the op (e.g. a class id out of range)
            return False
        last = self.kept[-1]
        same = [f for f in findings if f.kind == last.kind and f.severity == last.severity
                and (self.floor is None or f.worst is not None and f.worst.excess >= self.floor)]
        if not same:
            return False
        self.kept.append(same[0])
        self.args = list(same[0].counterexample)
        return True


def axis_lengths(op, args) -> dict:
    """{axis: length} read from ``args``, the arrays given for the inputs of ``op``."""
    lengths = {}
    for inp, a in zip(op.inputs, args):
        for axis, n in zip(inp.axes, np.shape(a)):
            lengths.setdefault(axis, int(n))
    return lengths


def _tied_axes(op) -> set:
    """Axes that must keep their length: the last axis of label rows (a row sums to 1) and the axis whose
    length bounds class ids."""
    tied = {inp.axes[-1] for inp in op.inputs if inp.role in ("labels", "onehot") and inp.axes}
    return tied | {inp.classes for inp in op.inputs if getattr(inp, "classes", None)}


def _worst_slice(finding, op) -> int | None:
    """The index on the independent axis of the finding's worst element (None when its output lacks it)."""
    worst = finding.worst
    if worst is None:
        return None
    output = next((o for o in op.outputs if o.name == worst.output), None)
    if output is None or op.independent_axis not in output.axes:
        return None
    return worst.index[list(output.axes).index(op.independent_axis)]


def take_along(op, args, axis: str, keep) -> list:
    """``args`` (one per input of ``op``) with only the indices ``keep`` along ``axis``, in every input that
    has the axis."""
    out = []
    for inp, a in zip(op.inputs, args):
        if axis in inp.axes and isinstance(a, np.ndarray):
            a = np.take(a, keep, axis=tuple(inp.axes).index(axis))
        out.append(a)
    return out


def _ddmin(search: _Search, op, axis, smallest: int) -> None:
    """Drop chunks of indices along ``axis`` while the fault stays (chunks of half, then a quarter, … of
    what is left), keeping at least ``smallest`` of them."""
    n = axis_lengths(op, search.args).get(axis, 0)
    keep = list(range(n))
    chunk = n // 2
    while chunk >= 1 and len(keep) > max(smallest, 1):
        for start in range(0, len(keep), chunk):
            rest = keep[:start] + keep[start + chunk:]
            if len(rest) >= max(smallest, 1) and search.attempt(take_along(op, search.args, axis, rest)):
                keep = list(range(len(rest)))           # the kept input is re-indexed from 0
                break
        else:
            chunk //= 2
        chunk = min(chunk, len(keep) // 2) if len(keep) > 1 else 0
