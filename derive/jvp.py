"""Forward-mode derivative of a formulation, derived symbolically: the Jacobian–vector product program.

For every step ``v = f(a, b, …)`` the tangent step is ``t_v = Σ ∂f/∂a · t_a`` (SymPy ``diff``); sums
and means reduce tangents the same way; relabels relabel them.  A ``max`` used as a shift gets tangent
0: the formulations are exact for *every* shift (that is what the proofs show), so the shift's
derivative cancels and 0 is as good as any.
"""
from __future__ import annotations

import sympy as sp

from .program import Delta, Elementwise, Formulation, Input, Reduce, Relabel, value_symbol

__all__ = ["jvp_formulation", "tangent"]


def tangent(name: str) -> str:
    """Name of the tangent of value ``name``."""
    return f"t_{name}"


def jvp_formulation(form: Formulation, wrt: tuple[str, ...]) -> Formulation:
    """Program computing ``form``'s outputs' tangents from its inputs and the tangents of ``wrt``.

    Inputs: ``form.inputs`` followed by ``t_<name>`` for each name in ``wrt``; outputs: ``t_<output>``.
    """
    axes = form.axes()
    has_tangent = set(wrt)
    steps = []
    for step in form.steps:
        steps.append(step)
        if isinstance(step, Elementwise):
            terms = [sp.diff(step.expr, value_symbol(a)) * value_symbol(tangent(a))
                     for a in form.free_names(step) if a in has_tangent]
            if terms:
                steps.append(Elementwise(tangent(step.name), sp.Add(*terms)))
                has_tangent.add(step.name)
        elif isinstance(step, Reduce) and step.arg in has_tangent and step.op != "max":
            steps.append(Reduce(tangent(step.name), step.op, tangent(step.arg), step.over))
            has_tangent.add(step.name)
        elif isinstance(step, Relabel) and step.arg in has_tangent:
            steps.append(Relabel(tangent(step.name), tangent(step.arg), step.mapping))
            has_tangent.add(step.name)
        elif isinstance(step, Delta):
            pass
    missing = [o for o in form.outputs if o not in has_tangent]
    if missing:
        raise ValueError(f"{form.name}: output {missing[0]!r} does not depend on {wrt}")
    inputs = form.inputs + tuple(Input(tangent(n), axes[n]) for n in wrt)
    return Formulation(f"jvp_{form.name}", f"tangent of {form.summary}", inputs, tuple(steps),
                       tuple(tangent(o) for o in form.outputs), form.axis_order, form.sizes)
