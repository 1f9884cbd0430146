"""The public way to define an op — used by the built-in families and by users' ``--ops`` files alike.

A forward op is a forward definition (its first formulation) plus more formulations, invariants, known
mistakes and domain hints; :func:`define_backward` derives its vector–Jacobian product by reverse mode
(:mod:`derive.vjp`) and takes hand formulations that the proofs compare with it::

    import sympy as sp
    from derive import Input, Elementwise, Reduce, define_op, define_backward, register, value_symbol as v

    X = Input("x", ("n", "d"), "pre-activations", role="logits")
    SOFTPLUS = define_op(
        "softplus", family="softplus", inputs=(X,), outputs=(Input("y", ("n", "d")),), axis_order=("n", "d"),
        independent_axis="n",
        formulations={"naive": ("y = log(1 + e^x)", [Elementwise("y", sp.log(1 + sp.exp(v("x"))))])})
    SOFTPLUS_BACKWARD = define_backward(SOFTPLUS, "softplus_backward", formulations={
        "sigmoid": ("dx = dy / (1 + e^-x)", [Elementwise("dx", v("dy") / (1 + sp.exp(-v("x"))))])})
    register(SOFTPLUS, SOFTPLUS_BACKWARD)
"""
from __future__ import annotations

from typing import Callable, Iterable

import sympy as sp

from .op import Invariant, Mistake, Op, Param
from .program import Formulation, Input
from .symbolic import input_symbols, run_symbolic, swap_renaming, value_axes, xreplace_once
from .vjp import vjp_formulation

__all__ = ["define_op", "define_backward", "invariant", "mistake", "instance_name", "DIFFERENTIABLE_ROLES"]

#: Roles of the inputs a backward op differentiates by default (labels, ids and ε are data, not parameters).
DIFFERENTIABLE_ROLES = ("", "logits", "activations", "weight")


def instance_name(base: str, params: dict, specs: Iterable[Param]) -> str:
    """``base`` with the conventions that differ from their defaults: ``cross_entropy[reduction=mean]``."""
    defaults = {p.name: p.default for p in specs}
    shown = {k: val for k, val in params.items() if k in defaults and val != defaults[k]}
    return base if not shown else base + "[" + ",".join(f"{k}={shown[k]}" for k in sorted(shown)) + "]"


def _inferred_sizes(steps, inputs, axis_order, sizes) -> dict:
    """``sizes`` plus a size for every symbol the steps read but never define whose name is an axis
    label in capitals (``K`` → length of axis ``k``): the lengths code writes as ``z.shape[1]``."""
    defined = {i.name for i in inputs} | {st.name for st in steps} | set(sizes)
    out = dict(sizes)
    for st in steps:
        expr = getattr(st, "expr", None)
        for sym in (expr.free_symbols if expr is not None else ()):
            if sym.name not in defined and sym.name.lower() in axis_order and sym.name.isupper():
                out[sym.name] = sym.name.lower()
    return out


def _formulation(name, given, inputs, outputs, axis_order, sizes) -> Formulation:
    if isinstance(given, Formulation):
        return given
    try:
        summary, steps = given
    except (TypeError, ValueError):
        raise TypeError(f"formulation {name!r} must be a Formulation or a (summary, steps) pair") from None
    steps = tuple(steps)
    return Formulation(name, summary, tuple(inputs), steps, tuple(o.name for o in outputs),
                       tuple(axis_order), _inferred_sizes(steps, inputs, axis_order, dict(sizes or {})))


def _default_lengths(inputs, axis_order, independent: str) -> tuple[dict, ...]:
    """Proof sizes: one independent slice with every other axis of length 2, 3, 4 (at most 16 elements
    per slice), and two slices of length-2 axes (slices must not interact)."""
    others = [a for a in axis_order if a != independent]
    out = []
    for n in (2, 3, 4):
        if n ** max(len(others), 1) <= 16:
            out.append({**{a: n for a in others}, **({independent: 1} if independent in axis_order else {})})
    if independent in axis_order:
        out.append({**{a: 2 for a in others}, independent: 2})
    return tuple(out)


def invariant(name: str, latex: str, *, inputs, steps, axis_order, sizes=None, outputs=("r",), floor: str = "",
              normalize: Callable | None = None) -> Invariant:
    """An invariant as a residual program over ``inputs`` (the op's inputs followed by its outputs) that
    computes ``r`` = 0 in exact arithmetic; ``floor`` as in :class:`~derive.op.Invariant`."""
    form = Formulation(name.replace(" ", "_"), name, tuple(inputs), tuple(steps), tuple(outputs), tuple(axis_order),
                       dict(sizes or {}))
    return Invariant(name, latex, form, floor=floor, normalize=normalize)


def mistake(name: str, message: str, steps, *, op: Op, summary: str = "") -> Mistake:
    """A known mistake of ``op``: ``steps`` compute its outputs the wrong way from its inputs."""
    form = _formulation(name, (summary or message, steps), op.inputs, op.outputs, op.reference.axis_order,
                        op.reference.sizes)
    return Mistake(name, message, form)


def define_op(name: str, *, inputs, outputs, formulations: dict, axis_order, sizes: dict | None = None,
              family: str | None = None, summary: str = "", definition: Callable | None = None,
              derivation=(), generic=(), invariants=(), mistakes=(), scalars: dict | None = None,
              stable: str = "", accurate: str = "", independent_axis: str | None = None,
              proof_lengths=None, domain: dict | None = None, params: dict | None = None,
              param_specs=(), grad_of: str = "") -> Op:
    """An :class:`Op` from its parts.

    ``formulations``: name → :class:`Formulation` or ``(summary, steps)``; the first is the forward
    definition (``definition`` defaults to running it symbolically).  ``inputs``/``outputs`` are
    :class:`Input` records (give each input a ``role``); ``independent_axis`` is the axis whose slices
    never interact (default: the first axis of ``axis_order``); ``mistakes`` are :class:`Mistake`
    records or ``(name, message, steps)`` triples; ``params``/``param_specs`` the conventions this
    instance was built with (parametric ops, see :func:`derive.registry.register_parametric`).
    """
    if not formulations:
        raise ValueError(f"op {name!r} needs at least one formulation (its forward definition)")
    inputs, outputs = tuple(inputs), tuple(outputs)
    bad = [i for i in (*inputs, *outputs) if not isinstance(i, Input)]
    if bad:
        raise TypeError(f"op {name!r}: inputs and outputs must be derive.Input records; got {bad[0]!r}")
    forms = {k: _formulation(k, f, inputs, outputs, axis_order, sizes) for k, f in formulations.items()}
    reference = next(iter(forms.values()))
    if definition is None:
        def definition(lengths, given, _form=reference, _outs=tuple(o.name for o in outputs)):
            values = run_symbolic(_form, lengths, given)
            return {o: values[o] for o in _outs}
    independent = independent_axis or axis_order[0]
    params = dict(params or {})
    full_name = instance_name(name, params, param_specs)
    op = Op(name=full_name, family=family or name, summary=summary or reference.summary, inputs=inputs,
            outputs=outputs, formulations=forms, definition=definition,
            proof_lengths=tuple(proof_lengths) if proof_lengths else _default_lengths(inputs, axis_order, independent),
            derivation=tuple(derivation), generic=tuple(generic), invariants=tuple(invariants),
            scalars=dict(scalars or {i.name: 1e-5 for i in inputs if i.role == "eps"}),
            stable=stable, accurate=accurate, independent_axis=independent, params=params,
            param_specs=tuple(param_specs), base=name, grad_of=grad_of, domain=dict(domain or {}))
    built = []
    for m in mistakes:
        if isinstance(m, Mistake):
            built.append(m)
        else:
            m_name, message, steps = m
            built.append(mistake(m_name, message, steps, op=op))
    if built:
        object.__setattr__(op, "mistakes", tuple(built))
    return op


def _brute_force_vjp(forward: Op, wrt, upstream: str | None, names: dict):
    """``definition`` of a backward op: SymPy ``diff`` of ⟨dy, forward outputs⟩ (or of the loss)."""
    def definition(lengths, given):
        axes = value_axes(forward.reference)
        inputs = dict(given)
        for inp in forward.inputs:
            if inp.name not in inputs:     # an input the gradient does not read (β): fresh symbols
                inputs[inp.name] = input_symbols(inp.name, axes[inp.name], lengths, integer=inp.integer)
        values = forward.definition(lengths, {i.name: inputs[i.name] for i in forward.inputs})
        total = sp.Add(*[(inputs[upstream][idx] if upstream else 1) * expr
                         for out in forward.outputs for idx, expr in values[out.name].items()])
        axes_of = {i.name: axes[i.name] for i in forward.inputs}
        if upstream:
            axes_of[upstream] = axes[forward.outputs[0].name]
        symmetry = _Symmetry(total, {n: inputs[n] for n in axes_of}, axes_of)
        out = {}
        for w in wrt:
            grads = out[names[w]] = {}
            for idx, sym in inputs[w].items():
                base = tuple(0 for _ in idx)
                rename, done = symmetry.of(axes_of[w], idx) if base in grads else ({}, None)
                grads[idx] = xreplace_once(grads[base], rename, done) if rename else sp.diff(total, sym)
        return out
    return definition


class _Symmetry:
    """Renamings of the input symbols that leave ``total`` unchanged, for reusing one derivative.

    :meth:`of` gives, for the entry at ``idx`` of an input with axes ``axes``, the renaming σ that swaps
    index 0 with ``idx[k]`` on each axis ``axes[k]`` for every input symbol carrying that axis — only when
    σ is a bijection of symbols and ``total.xreplace(σ) == total`` (structurally: the same expression),
    else ``{}``.  σ is an involution, so ``total ∘ σ = total`` gives ``∂total/∂x_idx = (∂total/∂x_0) ∘ σ``
    exactly: SymPy's derivative at index 0, renamed.  Nothing is assumed about the op: a definition that
    is not symmetric under σ (different expression after renaming) is differentiated entry by entry."""

    def __init__(self, total: sp.Expr, symbols: dict, axes: dict):
        self.total = total
        self.members: dict = {}              # (name, axes, idx) -> symbol, as derive.symbolic.swap_renaming takes
        for name, entries in symbols.items():
            for j, sym in entries.items():
                if isinstance(sym, sp.Symbol):
                    self.members[(name, tuple(axes[name]), j)] = sym
        self._made: dict = {}

    def of(self, axes, idx) -> tuple[dict, dict]:
        """σ for the entry ``idx`` of an input with ``axes`` ({} when none), and the subexpressions renamed
        by σ so far (for :func:`~derive.symbolic.xreplace_once`)."""
        swap = tuple((a, i) for a, i in zip(axes, idx) if i)
        if not swap:
            return {}, {}
        if swap not in self._made:
            done: dict = {}
            rename = swap_renaming(self.members, swap)
            symmetric = rename and xreplace_once(self.total, rename, done) == self.total
            self._made[swap] = (rename if symmetric else {}), done
        return self._made[swap]


def define_backward(forward: Op, name: str, *, wrt: tuple[str, ...] | None = None, upstream: str | None = "dy",
                    gradient_names: dict | None = None, formulations: dict | None = None, summary: str = "",
                    stable: str = "", accurate: str = "", derivation=(), generic=(), invariants=(), mistakes=(),
                    proof_lengths=None, domain: dict | None = None, params: dict | None = None,
                    param_specs=(), family: str | None = None, reference: str = "derived") -> Op:
    """The backward op of ``forward``: the reverse-mode derivative of ``forward``'s definition (formulation
    ``"derived"``) and the hand ``formulations``, each proved equal to SymPy ``diff`` of ``forward``'s
    definition (the op's ``definition``).

    ``reference``: the formulation that is the op's reference — the one certified references evaluate
    (default ``"derived"``).  A hand formulation that is better conditioned (BCE's σ(z) − y against the
    derived (1 − y)/(1 − σ) − y/σ form, which cancels) needs far fewer bits of ball arithmetic; it is
    proved equal to the same ``diff``, so the certified values are the same numbers.

    ``wrt``: inputs to differentiate (default: array inputs of :data:`DIFFERENTIABLE_ROLES`); ``upstream``: name of the
    upstream-gradient input (``None`` for a scalar loss: the cotangent is 1); ``gradient_names``:
    input → output name (default ``d<input>``).  Inputs of the backward op: the forward inputs the
    gradient reads, in order, with the upstream gradient before the first scalar input.
    """
    if wrt is None:
        wrt = tuple(i.name for i in forward.inputs if i.axes and i.role in DIFFERENTIABLE_ROLES)
    names = {w: (gradient_names or {}).get(w, f"d{w}") for w in wrt}
    scalar_loss = len(forward.outputs) == 1 and not forward.outputs[0].axes
    if upstream and scalar_loss:
        upstream = None
    if upstream and len(forward.outputs) != 1:
        raise ValueError(f"{name}: an upstream gradient per output is not supported yet (op {forward.name!r} "
                         f"has {len(forward.outputs)} outputs)")
    cot = {forward.outputs[0].name: 1} if not upstream else {
        forward.outputs[0].name: Input(upstream, forward.outputs[0].axes, "upstream gradient ∂L/∂" +
                                       forward.outputs[0].name, role="upstream")}
    derived = vjp_formulation(forward.reference, wrt, cotangents=cot, gradient_names=names, name="derived",
                              summary=f"reverse mode (SymPy) of {forward.reference.name}: {forward.reference.summary}")
    present = {i.name: i for i in derived.inputs}
    ordered = [i for i in forward.inputs if i.name in present]
    if upstream:
        first_scalar = next((k for k, i in enumerate(ordered) if not i.axes), len(ordered))
        ordered.insert(first_scalar, present[upstream])
    inputs = tuple(ordered)
    outputs = tuple(Input(names[w], next(i.axes for i in forward.inputs if i.name == w), f"∂L/∂{w}")
                    for w in wrt)
    derived = Formulation(derived.name, derived.summary, inputs, derived.steps, derived.outputs,
                          derived.axis_order, derived.sizes)
    forms = {"derived": derived}
    sizes = {**forward.reference.sizes, **derived.sizes}
    for k, given in (formulations or {}).items():
        forms[k] = _formulation(k, given, inputs, outputs, forward.reference.axis_order, sizes)
    if reference not in forms:
        raise ValueError(f"{name}: reference must be one of its formulations ({', '.join(forms)}); got {reference!r}")
    forms = {reference: forms[reference], **forms}          # the first formulation is the op's reference
    return define_op(name, inputs=inputs, outputs=outputs, formulations=forms,
                     axis_order=forward.reference.axis_order, sizes=sizes, family=family or forward.family,
                     summary=summary or f"vector–Jacobian product of {forward.name}",
                     definition=_brute_force_vjp(forward, wrt, upstream, names), derivation=derivation,
                     generic=generic, invariants=invariants, mistakes=mistakes, stable=stable, accurate=accurate,
                     independent_axis=forward.independent_axis,
                     proof_lengths=proof_lengths or forward.proof_lengths,
                     domain=domain if domain is not None else forward.domain, params=params, param_specs=param_specs,
                     grad_of=forward.name)
