"""Term magnitudes of a formulation's outputs: how large the things are that each output cancels.

For an output defined by a sum (``dγ = Σ dy x̂``) the magnitude is the sum of absolute values
(``Σ |dy x̂|``); for an output defined by an expression, it is the sum of the absolute values of the
expression's additive terms, with every sum-reduced value inside replaced by its own magnitude:

    dz = s (dy − c),  c = Σ dy s     →     |s dy| + |s| Σ |dy s|

Rounding errors of a correct algorithm are a few units of roundoff of these magnitudes (plus what the
inputs' conditioning amplifies), so they scale tolerances and invariant checks.  All other steps are
kept exactly as they are.
"""
from __future__ import annotations

import sympy as sp

from .program import Elementwise, Formulation, Reduce, value_symbol

__all__ = ["magnitude_formulation", "magnitude_name"]


def magnitude_name(name: str) -> str:
    return f"mag_{name}"


def magnitude_formulation(form: Formulation) -> Formulation:
    """``form`` plus one step ``mag_<o>`` per output ``o``; outputs are the magnitudes, in order."""
    defined = {step.name: step for step in form.steps}
    extra = []
    abs_sums = {}          # name of a sum/mean-reduced value -> symbol of its absolute-value sum

    def abs_sum(name: str) -> sp.Symbol:
        if name not in abs_sums:
            step = defined[name]
            extra.append(Elementwise(f"abs_{step.arg}_{name}", sp.Abs(value_symbol(step.arg))))
            extra.append(Reduce(f"abssum_{name}", step.op, f"abs_{step.arg}_{name}", step.over))
            abs_sums[name] = value_symbol(f"abssum_{name}")
        return abs_sums[name]

    def summed(symbol: sp.Symbol) -> bool:
        step = defined.get(symbol.name)
        return isinstance(step, Reduce) and step.op in ("sum", "mean")

    for out in form.outputs:
        step = defined.get(out)
        if isinstance(step, Reduce) and step.op in ("sum", "mean"):
            extra.append(Elementwise(magnitude_name(out), abs_sum(out)))
        elif isinstance(step, Elementwise):
            terms = []
            for term in sp.Add.make_args(sp.expand(step.expr, power_exp=False, power_base=False, log=False)):
                swap = {s: abs_sum(s.name) for s in term.free_symbols if summed(s)}
                terms.append(sp.Abs(term.xreplace(swap)))
            extra.append(Elementwise(magnitude_name(out), sp.Add(*terms)))
        else:
            extra.append(Elementwise(magnitude_name(out), sp.Abs(value_symbol(out))))
    return Formulation(f"magnitude_{form.name}", f"term magnitudes of {form.summary}", form.inputs,
                       form.steps + tuple(extra), tuple(magnitude_name(o) for o in form.outputs),
                       form.axis_order, form.sizes)
