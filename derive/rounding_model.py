"""A formulation rewritten as its own floating-point model: every step rounds.

Each elementwise step ``v = f(…)`` becomes ``v = f(…) + ops(f) · (δ · Σ |additive terms of f| + ζ)`` and
each sum ``S = Σ a`` becomes ``S = Σ a + δ · Σ |a| + ζ``, where ``δ`` (input ``roundoff``) models relative
rounding and ``ζ`` (input ``underflow``) the absolute error of a result in the subnormal range.
Evaluated in ball arithmetic with ``roundoff = [−u, u]``, ``underflow = [−η, η]`` (η the smallest
subnormal) and the inputs widened by u|x|, the radius of each output
bounds what a backward- and forward-stable implementation in a dtype with unit roundoff u can err by —
including the non-linear effects a first-order bound misses (a constant column far from 0 makes
x − μ pure rounding noise, which the variance then squares).  Maxima are exact and stay as they are.
"""
from __future__ import annotations

import sympy as sp

from .program import Elementwise, Formulation, Input, Reduce, value_symbol

__all__ = ["rounding_model_formulation", "ROUNDOFF", "UNDERFLOW"]

ROUNDOFF = "roundoff"
UNDERFLOW = "underflow"


def _local(expr: sp.Expr) -> sp.Expr:
    ops = max(int(sp.count_ops(expr)), 1)
    terms = sp.Add(*(sp.Abs(t) for t in sp.Add.make_args(sp.expand(expr))))
    return ops * (value_symbol(ROUNDOFF) * terms + value_symbol(UNDERFLOW))


def rounding_model_formulation(form: Formulation) -> Formulation:
    """``form`` with a rounding term on every step and two more scalar inputs, ``roundoff`` and
    ``underflow``."""
    delta, zeta = value_symbol(ROUNDOFF), value_symbol(UNDERFLOW)
    steps = []
    for step in form.steps:
        if isinstance(step, Elementwise):
            steps.append(Elementwise(step.name, step.expr + _local(step.expr), step.note))
        elif isinstance(step, Reduce) and step.op in ("sum", "mean"):
            exact, absolute = f"{step.name}__exact", f"{step.name}__abs"
            steps += [Reduce(exact, step.op, step.arg, step.over),
                      Elementwise(f"{step.arg}__abs_for_{step.name}", sp.Abs(value_symbol(step.arg))),
                      Reduce(absolute, step.op, f"{step.arg}__abs_for_{step.name}", step.over),
                      Elementwise(step.name, value_symbol(exact) + delta * value_symbol(absolute) + zeta)]
        else:
            steps.append(step)
    return Formulation(f"rounding_model_{form.name}", f"{form.summary}, every step rounded",
                       form.inputs + (Input(ROUNDOFF, ()), Input(UNDERFLOW, ())), tuple(steps), form.outputs,
                       form.axis_order,
                       form.sizes)
