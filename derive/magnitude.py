"""The magnitude program of an invariant's residual: the same steps with every sum taken over absolute
values and the final residual replaced by the sum of its terms' absolute values.

It bounds the size of the terms a residual cancels, so a floating-point check can ask for
``|r| ≤ tol · magnitude`` — a residual of 1e-7 means nothing on its own, but a lot next to terms of 1e-6.
"""
from __future__ import annotations

import sympy as sp

from .program import Elementwise, Formulation, Reduce, value_symbol

__all__ = ["magnitude_formulation"]


def magnitude_formulation(form: Formulation, result: str = "r") -> Formulation:
    """``form`` with Σ v → Σ |v| for every reduction and ``result`` = Σ |terms| of its expression."""
    steps = []
    for step in form.steps:
        if isinstance(step, Reduce) and step.op in ("sum", "mean"):
            steps.append(Elementwise(f"abs_{step.arg}_{step.name}", sp.Abs(value_symbol(step.arg))))
            steps.append(Reduce(step.name, step.op, f"abs_{step.arg}_{step.name}", step.over))
        elif isinstance(step, Elementwise) and step.name == result:
            terms = sp.Add.make_args(sp.expand(step.expr))
            steps.append(Elementwise(result, sp.Add(*(sp.Abs(t) for t in terms))))
        else:
            steps.append(step)
    return Formulation(f"magnitude_{form.name}", f"magnitude of {form.summary}", form.inputs, tuple(steps),
                       form.outputs, form.axis_order, form.sizes)
