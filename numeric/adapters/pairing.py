"""Forward ↔ backward op pairing and the vector–Jacobian-product plan, read from op metadata only.

A backward op takes some of its forward op's inputs (the primals) plus, for a forward op with array
outputs, one upstream gradient per forward output (the cotangents, e.g. ``dy``), and returns one
gradient per differentiated forward input (``dz``, ``dx``, ``dgamma``, ``dbeta``).  A scalar forward
output with no cotangent input (a loss) gets the upstream gradient 1.

Pairing: the forward op's ``backward`` attribute (name or Op) or the backward op's ``grad_of``
attribute when present, else the naming convention ``<forward>_backward``.
"""
from __future__ import annotations

from dataclasses import dataclass

import derive
from derive import Op, get_op

__all__ = ["as_op", "backward_of", "forward_of", "VjpPlan", "vjp_plan"]


def as_op(op, *, argument: str = "op") -> Op:
    """``op`` as an :class:`derive.Op` (a name is looked up with ``derive.get_op``)."""
    if isinstance(op, Op):
        return op
    if isinstance(op, str):
        return get_op(op)
    raise TypeError(f"{argument} must be an op name or a derive.Op; got {type(op).__name__}")


def _named(value) -> Op | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, Op) else get_op(value)


def backward_of(op) -> Op | None:
    """The backward op paired with forward op ``op``, or None when it has none."""
    fwd = as_op(op)
    explicit = _named(getattr(fwd, "backward", None))
    if explicit is not None:
        return explicit
    for other in derive.OPS.values():
        if _grad_of_name(other) == fwd.name:
            return other
    base, params = getattr(fwd, "base", "") or fwd.name, getattr(fwd, "params", {}) or {}
    if params:              # a parametric op: the backward op with the same conventions
        from derive.registry import op_name
        try:
            candidate = get_op(op_name(base + "_backward", params))
        except ValueError:
            candidate = None
        if candidate is not None and _grad_of_name(candidate) in ("", None, fwd.name):
            return candidate
    return derive.OPS.get(f"{fwd.name}_backward")


def _grad_of_name(op: Op) -> str | None:
    target = getattr(op, "grad_of", None)
    if target is None or target == "":
        return None
    return target.name if isinstance(target, Op) else str(target)


def forward_of(op) -> Op | None:
    """The forward op whose vector–Jacobian product ``op`` is, or None when ``op`` is not a backward op."""
    bwd = as_op(op)
    target = _grad_of_name(bwd)
    if target is not None:
        return get_op(target)
    for other in derive.OPS.values():
        explicit = getattr(other, "backward", None)
        if explicit is not None and explicit != "" and \
                (explicit.name if isinstance(explicit, Op) else explicit) == bwd.name:
            return other
    if bwd.name.endswith("_backward"):
        return derive.OPS.get(bwd.name[: -len("_backward")])
    return None


@dataclass(frozen=True)
class VjpPlan:
    """How to call a forward implementation and its backward pass with a backward op's arguments.

    ``primal_from[k]``: index in the backward op's inputs of forward input k, or None (the backward
    op does not take it: its value cannot change the gradient, so zeros of its shape are used).
    ``cotangents``: indices in the backward op's inputs of the upstream gradients, one per forward
    output; empty means upstream 1 for every (scalar) output.  ``grad_of[m]``: forward input index
    whose gradient is backward output m.
    """
    forward: Op
    backward: Op
    primal_from: tuple
    cotangents: tuple
    grad_of: tuple

    @property
    def differentiated(self) -> tuple:
        """Forward input indices that need a gradient, in forward order."""
        return tuple(sorted(set(self.grad_of)))

    def primals(self, bargs, zeros):
        """Forward arguments from backward arguments ``bargs``; ``zeros(k, shape)`` makes a missing one."""
        lengths = {}
        for inp, a in zip(self.backward.inputs, bargs):
            for axis, n in zip(inp.axes, getattr(a, "shape", ())):
                lengths.setdefault(axis, n)
        out = []
        for k, (inp, src) in enumerate(zip(self.forward.inputs, self.primal_from)):
            if src is not None:
                out.append(bargs[src])
            elif not inp.axes:
                out.append(float(self.forward.scalars.get(inp.name, 0.0)))
            else:
                out.append(zeros(k, tuple(lengths[a] for a in inp.axes)))
        return out


def vjp_plan(forward, backward=None) -> VjpPlan:
    """The :class:`VjpPlan` of ``forward`` and its backward op (found by :func:`backward_of` unless given)."""
    fwd = as_op(forward, argument="forward")
    bwd = as_op(backward, argument="backward") if backward is not None else backward_of(fwd)
    if bwd is None:
        raise ValueError(f"op {fwd.name!r} has no backward op (no 'backward' attribute, no op with "
                         f"grad_of={fwd.name!r}, no op named {fwd.name + '_backward'!r})")
    fnames = [i.name for i in fwd.inputs]
    bnames = [i.name for i in bwd.inputs]
    primal_from = tuple(bnames.index(n) if n in bnames else None for n in fnames)
    cotangents = tuple(k for k, n in enumerate(bnames) if n not in fnames)
    if cotangents and len(cotangents) != len(fwd.outputs):
        raise ValueError(f"{bwd.name} takes {len(cotangents)} upstream gradient(s) "
                         f"({', '.join(bnames[k] for k in cotangents)}) but {fwd.name} has "
                         f"{len(fwd.outputs)} output(s)")
    array_inputs = [k for k, i in enumerate(fwd.inputs) if i.axes]
    grad_of = []
    for m, out in enumerate(bwd.outputs):
        stem = out.name[1:] if out.name.startswith("d") else None
        if stem in fnames:
            grad_of.append(fnames.index(stem))
        elif m < len(array_inputs):
            grad_of.append(array_inputs[m])
        else:
            raise ValueError(f"cannot tell which input of {fwd.name} the output {out.name!r} of {bwd.name} "
                             "is the gradient of (name it d<input>)")
    return VjpPlan(fwd, bwd, primal_from, cotangents, tuple(grad_of))
