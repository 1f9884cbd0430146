"""Layer code that keeps state between its forward and backward pass, made checkable.

* **Pairs** (cs231n style): ``forward(x, gamma, beta, eps) -> (out, cache)`` and
  ``backward(dout, cache) -> grads`` (a tuple in the forward's input order, e.g. ``dx, dgamma, dbeta``,
  a dict keyed ``dx``/``x``, or one array).  A forward with another calling convention is adapted with
  a lambda, e.g. ``lambda x, g, b, eps: batchnorm_forward(x, g, b, {"mode": "train", "eps": eps})``.
* **Objects** with stateful methods (numpy-ml ``forward``/``backward``, ML-From-Scratch
  ``forward_pass``/``backward_pass``): the op's first input goes to the forward method, the others are
  set on the object before the call (attribute, or entry of a ``parameters``/``params``/
  ``hyperparameters`` dict, under the op's name or a common alias: gamma ~ scaler/weight, beta ~
  intercept/bias, eps ~ epsilon; ``names={"gamma": "BW"}`` adds your own).  Parameter gradients are read
  after ``backward`` from ``d<name>``, ``grad_<name>``, ``<name>_grad``, ``dLd<name>`` attributes, a
  ``gradients``/``grads`` dict, or what the layer hands its ``<name>_opt.update(w, grad)`` optimizer.

Each becomes a function with the forward op's signature and one with its backward op's signature,
both checked by ``check_gradient``.  numpy code only (for tensors use an ``autograd.Function``).
"""
from __future__ import annotations

import numpy as np

from .pairing import as_op, backward_of, forward_of, vjp_plan

__all__ = ["check_layer", "pair_functions", "object_functions", "ALIASES"]

#: Other names layer libraries give an op's parameters (numpy-ml: scaler/intercept/epsilon).
ALIASES = {"gamma": ("scaler", "weight", "scale", "W"), "beta": ("intercept", "bias", "shift", "b"),
           "eps": ("epsilon",)}
_CONTAINERS = ("parameters", "params", "hyperparameters")
_GRAD_CONTAINERS = ("gradients", "grads")


def _ops(op):
    the_op = as_op(op)
    fwd = forward_of(the_op) or the_op
    bwd = backward_of(fwd)
    if bwd is None:
        raise ValueError(f"op {fwd.name!r} has no backward op; check_layer needs a forward/backward pair")
    return fwd, bwd


def _grads_in_forward_order(plan, value, who):
    """The backward's return value mapped to the backward op's outputs."""
    diff = plan.differentiated
    names = [i.name for i in plan.forward.inputs]
    if isinstance(value, dict):
        by_input = {}
        for k in diff:
            key = next((c for c in ("d" + names[k], names[k]) if c in value), None)
            if key is None:
                raise TypeError(f"{who} returned a dict without {'d' + names[k]!r}; keys: {sorted(value)}")
            by_input[k] = value[key]
    else:
        vals = list(value) if isinstance(value, (tuple, list)) else [value]
        if len(vals) != len(diff):
            raise TypeError(f"{who} returned {len(vals)} gradient(s); expected {len(diff)} "
                            f"({', '.join('d' + names[k] for k in diff)}, in the forward's input order)")
        by_input = dict(zip(diff, vals))
    picked = [by_input[k] for k in plan.grad_of]
    return picked[0] if len(picked) == 1 else tuple(picked)


def _upstream(plan, bargs, outs):
    if plan.cotangents:
        return [bargs[k] for k in plan.cotangents]
    return [np.ones_like(np.asarray(o)) if np.ndim(o) else np.ones((), np.asarray(o).dtype)[()]
            for o in outs]


def _zeros(bargs):
    dtype = next(np.asarray(a).dtype for a in bargs if np.ndim(a))
    return lambda k, shape: np.zeros(shape, dtype=dtype)


def pair_functions(forward, backward, op):
    """``(forward op function, backward op function)`` for a cs231n-style pair."""
    fwd, bwd = _ops(op)
    plan = vjp_plan(fwd, bwd)

    def forward_fn(*args):
        value = forward(*args)
        if not isinstance(value, tuple) or len(value) < 2:
            raise TypeError(f"{getattr(forward, '__name__', 'forward')} must return (out, cache); "
                            f"got {type(value).__name__}")
        outs = value[:-1]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def backward_fn(*bargs):
        value = forward(*plan.primals(list(bargs), _zeros(bargs)))
        outs, cache = value[:-1], value[-1]
        grads = backward(*_upstream(plan, bargs, outs), cache)
        return _grads_in_forward_order(plan, grads, getattr(backward, "__name__", "backward"))
    return forward_fn, backward_fn


class _Recorder:
    """Stands in for a layer's optimizer: records the gradient, leaves the weights unchanged."""

    def __init__(self):
        self.grad = None

    def update(self, w, grad, *args, **kwargs):
        self.grad = grad
        return w


def _method(obj, names, what):
    for name in names:
        if callable(getattr(obj, name, None)):
            return getattr(obj, name)
    raise TypeError(f"layer object {type(obj).__name__} has no {what} method (looked for {', '.join(names)})")


def _slots(name, names):
    extra = names.get(name)
    extra = (extra,) if isinstance(extra, str) else tuple(extra or ())
    return (*extra, name, *ALIASES.get(name, ()))


def _set_param(obj, name, value, names) -> bool:
    for slot in _slots(name, names):
        for container in _CONTAINERS:
            d = getattr(obj, container, None)
            if isinstance(d, dict) and slot in d:
                d[slot] = value
                return True
        if slot in vars(obj) or hasattr(type(obj), slot) and not callable(getattr(type(obj), slot)):
            setattr(obj, slot, value)
            return True
    return False


def _get_grad(obj, name, names, recorders):
    for slot in _slots(name, names):
        if slot in recorders and recorders[slot].grad is not None:
            return recorders[slot].grad
        for attr in (f"d{slot}", f"grad_{slot}", f"{slot}_grad", f"dLd{slot}"):
            if getattr(obj, attr, None) is not None and not callable(getattr(obj, attr)):
                return getattr(obj, attr)
        for container in _GRAD_CONTAINERS:
            d = getattr(obj, container, None)
            if isinstance(d, dict) and d.get(slot) is not None:
                return d[slot]
    tried = ", ".join(f"d{s}/grad_{s}/{s}_grad" for s in _slots(name, names))
    raise TypeError(f"no gradient of {name!r} found on {type(obj).__name__} after backward (looked for {tried}, "
                    f"and {'/'.join(_GRAD_CONTAINERS)} dicts); pass names={{{name!r}: '<attribute>'}}")


def object_functions(obj, op, *, names=None):
    """``(forward op function, backward op function)`` for a layer object with stateful methods."""
    names = dict(names or {})
    fwd, bwd = _ops(op)
    plan = vjp_plan(fwd, bwd)
    forward = _method(obj, ("forward", "forward_pass", "__call__"), "forward")
    backward = _method(obj, ("backward", "backward_pass"), "backward")
    params = [i.name for i in fwd.inputs[1:]]

    def run_forward(args):
        missing = [n for n, v in zip(params, args[1:]) if not _set_param(obj, n, v, names)]
        if missing:                      # numpy-ml creates parameters at its first forward call
            forward(args[0])
            missing = [n for n, v in zip(params, args[1:]) if not _set_param(obj, n, v, names)]
        if missing:
            raise TypeError(f"cannot set {', '.join(map(repr, missing))} on {type(obj).__name__}: no attribute or "
                            f"{'/'.join(_CONTAINERS)} entry named {', '.join(_slots(missing[0], names))}; "
                            f"pass names={{{missing[0]!r}: '<attribute>'}}")
        if hasattr(obj, "trainable"):
            obj.trainable = True         # ML-From-Scratch only computes parameter gradients when trainable
        return forward(args[0])

    def forward_fn(*args):
        return run_forward(args)

    def backward_fn(*bargs):
        primals = plan.primals(list(bargs), _zeros(bargs))
        out = run_forward(primals)
        recorders = {}
        for slot in {s for n in params for s in _slots(n, names)}:
            if hasattr(getattr(obj, f"{slot}_opt", None), "update"):
                recorders[slot] = _Recorder()
                setattr(obj, f"{slot}_opt", recorders[slot])
        if callable(getattr(obj, "flush_gradients", None)):
            obj.flush_gradients()        # numpy-ml accumulates gradients across backward calls
        first = backward(*_upstream(plan, bargs, [out]))
        grads = {0: first}
        for k in plan.differentiated:
            if k != 0:
                grads[k] = _get_grad(obj, fwd.inputs[k].name, names, recorders)
        picked = [grads[k] for k in plan.grad_of]
        return picked[0] if len(picked) == 1 else tuple(picked)
    return forward_fn, backward_fn


def check_layer(forward, backward=None, op=None, *, dtype="float64", names=None, **check_kw):
    """Check layer code against ``op`` (its forward op or backward op) and the paired op.

    ``check_layer(forward_fn, backward_fn, "batchnorm")`` for an ``(out, cache)`` / ``(dout, cache)``
    pair; ``check_layer(layer_object, "batchnorm")`` for an object with stateful forward/backward methods.
    ``check_kw`` goes to ``check_gradient``.  Returns ``PairCheck(forward, backward)``.
    """
    from ..check import check_gradient      # late: check.py imports this package
    from . import PairCheck
    if op is None and backward is not None and not callable(backward):
        op, backward = backward, None
    if op is None:
        raise TypeError("op is required: check_layer(forward, backward, op) or check_layer(layer, op)")
    fwd, bwd = _ops(op)
    if backward is None:
        if callable(forward) and not hasattr(forward, "backward") and not hasattr(forward, "backward_pass"):
            raise TypeError("backward is required for a function pair: check_layer(forward, backward, op)")
        f, b = object_functions(forward, fwd, names=names)
    else:
        if not callable(forward) or not callable(backward):
            raise TypeError("forward and backward must be callable")
        f, b = pair_functions(forward, backward, fwd)
    return PairCheck(check_gradient(f, fwd.name, dtype=dtype, **check_kw),
                     check_gradient(b, bwd.name, dtype=dtype, **check_kw))
