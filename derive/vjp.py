"""Reverse-mode derivative of a formulation, derived symbolically: the vector–Jacobian product program.

For a program computing outputs ``o`` from inputs, and cotangents ``g_o`` (one per output, the upstream
gradient), the VJP program computes ``∂⟨g, o⟩/∂x`` for every input ``x`` in ``wrt``.  It is the forward
program followed by its adjoint, step by step in reverse:

* ``v = f(a, b, …)`` (elementwise): ``ā += Σ_{axes of v not in a} v̄ · ∂f/∂a`` (SymPy ``diff``; the sum
  undoes the broadcasting of ``a`` by label);
* ``v = sum(a over A)``: ``ā += v̄`` (broadcast back along A); ``mean``: ``ā += v̄ / |A|``;
* ``v = relabel(a)``: ``ā += relabel⁻¹(v̄)``;
* a ``max`` is a shift: every formulation is exact for *any* shift (what the proofs show), so its adjoint
  is 0, as in :mod:`derive.jvp`; Kronecker deltas and one-hot class ids are constants.

Only steps that depend on a ``wrt`` input get adjoints, and forward steps that no gradient reads are
dropped, so the result is a plain :class:`~derive.program.Formulation` that runs, compiles and proves
like a hand-written one.
"""
from __future__ import annotations

import sympy as sp

from .program import Delta, Elementwise, Formulation, Input, OneHot, Reduce, Relabel, value_symbol as v

__all__ = ["vjp_formulation", "prune", "adjoint"]


def adjoint(name: str) -> str:
    """Name of the adjoint (∂⟨g, outputs⟩/∂value) of value ``name``."""
    return f"adj_{name}"


def _reads(step) -> list[str]:
    if isinstance(step, Elementwise):
        return sorted(s.name for s in step.expr.free_symbols)
    if isinstance(step, (Reduce, Relabel, OneHot)):
        return [step.arg]
    return []


def prune(form: Formulation) -> Formulation:
    """``form`` without the steps that none of its outputs needs."""
    needed = set(form.outputs)
    kept = []
    for step in reversed(form.steps):
        if step.name in needed:
            kept.append(step)
            needed.update(r for r in _reads(step) if r not in form.sizes)
    return Formulation(form.name, form.summary, form.inputs, tuple(reversed(kept)), form.outputs,
                       form.axis_order, form.sizes)


def vjp_formulation(form: Formulation, wrt: tuple[str, ...], *, cotangents: dict | None = None,
                    gradient_names: dict | None = None, name: str = "derived", summary: str = "") -> Formulation:
    """The program of ``∂⟨g, outputs⟩/∂x`` for each ``x`` in ``wrt``.

    ``cotangents`` maps each output to the :class:`Input` holding its upstream gradient, or to a number
    (``1`` for a loss that is the end of the graph); default: an input ``g_<output>`` of the output's axes.
    ``gradient_names`` maps each ``wrt`` input to its output's name (default ``d<name>``).
    Inputs of the result: the ``form`` inputs the gradients read, then the cotangent inputs.
    """
    axes = form.axes()
    defined = {step.name: step for step in form.steps}
    input_names = {i.name for i in form.inputs}
    unknown = [w for w in wrt if w not in input_names]
    if unknown:
        raise ValueError(f"{form.name}: cannot differentiate with respect to {unknown[0]!r}: not an input")
    integer = [i.name for i in form.inputs if i.integer and i.name in wrt]
    if integer:
        raise ValueError(f"{form.name}: input {integer[0]!r} holds integer class ids and has no gradient")
    cotangents = dict(cotangents or {})
    gradient_names = {w: (gradient_names or {}).get(w, f"d{w}") for w in wrt}

    # values that depend on a wrt input: only these carry adjoints
    active = set(wrt)
    for step in form.steps:
        if isinstance(step, Reduce) and step.op == "max":
            continue
        if any(r in active for r in _reads(step)):
            active.add(step.name)

    sizes = dict(form.sizes)

    def count_symbol(over: tuple[str, ...]) -> sp.Symbol:
        existing = next((s for s in sizes if set(form.size_axes(s)) == set(over) and len(over) == len(form.size_axes(s))), None)
        if existing is None:
            existing = "len_" + "_".join(over)
            sizes[existing] = over if len(over) > 1 else over[0]
        return v(existing)

    steps: list = list(form.steps)
    contributions: dict[str, list[str]] = {}
    extra_inputs = []
    fresh = iter(range(1 << 30))

    order = {a: i for i, a in enumerate(form.axis_order)}
    known = dict(axes)          # axes of every value, adjoints included

    def axes_of(expr: sp.Expr) -> tuple[str, ...]:
        labels = {a for s in expr.free_symbols if s.name not in sizes for a in known[s.name]}
        return tuple(sorted(labels, key=order.__getitem__))

    def contribute(target: str, expr: sp.Expr, implied: tuple[str, ...]):
        """Add ``expr`` — a term living on axes ``implied`` (broadcast) — to the adjoint of ``target``,
        summed over the axes ``target`` does not have."""
        actual = axes_of(expr)
        missing = tuple(a for a in implied if a not in actual and a not in known[target])
        if missing:                       # constant along an axis it is summed over: times its length
            expr = expr * count_symbol(missing)
        if not actual:                    # a constant (or a size): inlined where it is used
            contributions.setdefault(target, []).append(expr)
            return
        name = f"{adjoint(target)}__{next(fresh)}"
        steps.append(Elementwise(name, expr))
        known[name] = actual
        surplus = tuple(a for a in actual if a not in known[target])
        if surplus:
            summed = f"{name}_sum"
            steps.append(Reduce(summed, "sum", name, surplus))
            known[summed] = tuple(a for a in actual if a not in surplus)
            name = summed
        contributions.setdefault(target, []).append(v(name))

    for out in form.outputs:
        if out not in active:
            raise ValueError(f"{form.name}: output {out!r} does not depend on {', '.join(wrt)}")
        given = cotangents.get(out)
        if given is None:
            given = Input(f"g_{out}", axes[out], f"upstream gradient of {out}", role="upstream")
        if isinstance(given, Input):
            extra_inputs.append(given)
            known[given.name] = tuple(sorted(given.axes, key=order.__getitem__))
            contributions.setdefault(out, []).append(v(given.name))
        else:
            contributions.setdefault(out, []).append(sp.sympify(given))

    adjoint_of: dict[str, sp.Expr] = {}

    def total(name: str, *, as_value: bool = False) -> sp.Expr:
        """The adjoint of ``name``: one term as it is, several summed into a value ``adj_<name>``
        (also a single constant term when ``as_value``: a relabel or an output needs a value)."""
        if name not in adjoint_of or (as_value and not adjoint_of[name].is_Symbol):
            terms = contributions[name]
            if len(terms) == 1 and (terms[0].is_Symbol or not as_value):
                adjoint_of[name] = terms[0]
            else:
                expr = sp.Add(*terms)
                steps.append(Elementwise(adjoint(name), expr))
                known[adjoint(name)] = axes_of(expr)
                adjoint_of[name] = v(adjoint(name))
        return adjoint_of[name]

    for step in reversed(form.steps):
        if step.name not in active or step.name not in contributions or isinstance(step, (Delta, OneHot)):
            continue
        bar = total(step.name)
        if isinstance(step, Elementwise):
            for arg in sorted(s.name for s in step.expr.free_symbols):
                if arg in active:
                    partial = sp.diff(step.expr, v(arg))
                    if partial != 0:
                        contribute(arg, bar * partial, axes[step.name])
        elif isinstance(step, Reduce) and step.op in ("sum", "mean") and step.arg in active:
            scale = 1 if step.op == "sum" else 1 / count_symbol(step.over)
            contribute(step.arg, bar * scale, axes[step.name])
        elif isinstance(step, Relabel) and step.arg in active:
            name = f"{adjoint(step.arg)}__{next(fresh)}"
            source = total(step.name, as_value=True).name
            back = dict((new, old) for old, new in step.mapping)
            steps.append(Relabel(name, source, tuple((new, old) for old, new in step.mapping)))
            known[name] = tuple(sorted((back.get(a, a) for a in known[source]), key=order.__getitem__))
            contributions.setdefault(step.arg, []).append(name)

    outputs = []
    for w in wrt:
        if w not in contributions:
            raise ValueError(f"{form.name}: no output depends on input {w!r}")
        steps.append(Elementwise(gradient_names[w], total(w), f"∂⟨g, outputs⟩/∂{w}"))
        outputs.append(gradient_names[w])
    full = Formulation(name, summary or f"reverse mode of {form.summary}", form.inputs + tuple(extra_inputs),
                       tuple(steps), tuple(outputs), form.axis_order, sizes)
    pruned = prune(full)
    read = {r for step in pruned.steps for r in _reads(step)}
    inputs = tuple(i for i in full.inputs if i.name in read or i.name in outputs)
    return Formulation(name, pruned.summary, inputs, pruned.steps, pruned.outputs, form.axis_order,
                       {s: a for s, a in sizes.items() if v(s) in _symbols_used(pruned)})


def _symbols_used(form: Formulation) -> set:
    used = set()
    for step in form.steps:
        if isinstance(step, Elementwise):
            used |= step.expr.free_symbols
    return used
