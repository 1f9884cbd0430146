"""Adapters: what the user's code takes and returns — numpy, torch tensors, ``torch.autograd.Function``,
JAX arrays and ``jax.custom_vjp``, cs231n-style ``(out, cache)`` layer pairs, stateful layer objects.
They sit at the checker's edge; the core stays numpy.

``to_numpy_callable(fn, op)`` is what ``check_gradient`` calls first.  How ``fn`` is recognised
(``framework=None``):

1. a ``torch.autograd.Function`` subclass: checked against a forward op through ``cls.apply``, against
   a backward op (``softmax_backward`` …) through ``cls.backward`` on the context ``apply`` built;
2. a JAX object (``jax.custom_vjp``, ``jax.custom_jvp``, ``jax.jit``): a ``custom_vjp`` checked against a
   backward op goes through ``jax.vjp`` (its own ``bwd`` rule), anything else is called on ``jax.Array``s;
3. a plain function whose code refers to exactly one of the modules torch / jax / numpy: that one;
4. otherwise it is tried on numpy arrays at its first call; if that raises, on torch tensors, then on
   JAX arrays (each only if the process has imported that framework); the first that works is kept for
   every later call (if none works the numpy error is what the checker reports).

``framework="numpy" | "torch" | "jax"`` skips the guessing.  Nothing is converted silently: the user's
code gets arrays of exactly the dtype being checked (bfloat16 natively) and its outputs come back in the
dtype it produced, so an upcast is reported.

Public names are in ``__all__``; everything else is internal.
"""
from __future__ import annotations

import inspect
import sys
import types
from typing import NamedTuple

from . import jax_arrays, torch_tensors
from .layers import check_layer
from .pairing import as_op, backward_of, forward_of, vjp_plan

__all__ = ["to_numpy_callable", "check_autograd_function", "check_layer", "PairCheck", "FRAMEWORKS",
           "backward_of", "forward_of"]

FRAMEWORKS = ("numpy", "torch", "jax")


class PairCheck(NamedTuple):
    """Results of checking a forward pass and its backward pass (unpacks as ``forward, backward``)."""
    forward: object      # numeric.CheckResult
    backward: object

    @property
    def ok(self) -> bool:
        return self.forward.ok and self.backward.ok

    def to_markdown(self) -> str:
        return self.forward.to_markdown() + "\n" + self.backward.to_markdown()


def _mark(fn, description: str):
    fn.__gradaudit_adapted__ = True
    fn.description = description
    return fn


def _name(fn) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__


def _modules_referenced(fn) -> set:
    """Top-level packages of the modules (and module members) that ``fn``'s own code names."""
    target = inspect.unwrap(fn) if callable(fn) else fn
    code = getattr(target, "__code__", None)
    scope = getattr(target, "__globals__", None)
    if code is None or scope is None:
        return set()
    roots = set()
    for name in code.co_names:
        if name not in scope:
            continue
        value = scope[name]
        module = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        if isinstance(module, str):
            roots.add(module.split(".")[0])
    return roots & {"numpy", "torch", "jax", "jaxlib"}


def _guess(fn) -> str | None:
    roots = {"jax" if r == "jaxlib" else r for r in _modules_referenced(fn)}
    return roots.pop() if len(roots) == 1 else None


class _Probe:
    """Tries numpy arrays, then torch tensors, then JAX arrays at the first call; keeps what worked."""

    def __init__(self, fn, device):
        self.fn, self.device, self.chosen = fn, device, None
        self.__gradaudit_adapted__ = True
        self.description = f"{_name(fn)}: framework detected at the first call (numpy, else torch, else JAX)"

    def _runner(self, framework):
        if framework == "torch":
            return torch_tensors.tensor_function(self.fn, self.device)
        if framework == "jax":
            return jax_arrays.array_function(self.fn)
        return _numpy_outputs(self.fn)

    def __call__(self, *args):
        if self.chosen is not None:
            return self.chosen(*args)
        try:
            value = self._runner("numpy")(*args)
            self._choose("numpy")
            return value
        except Exception as first:
            # only a framework the process has imported can be what the user's code runs on (importing JAX
            # here would also start its threads in a process that may fork later)
            for framework, ok in (("torch", "torch" in sys.modules), ("jax", "jax" in sys.modules)):
                if not ok:
                    continue
                try:
                    value = self._runner(framework)(*args)
                except Exception:
                    continue
                self._choose(framework)
                return value
            raise first

    def _choose(self, framework):
        self.chosen = self._runner(framework)
        self.description = f"{_name(self.fn)}: a {framework} function (detected by trying a call)"


def _numpy_outputs(fn):
    """``fn`` as is, with any tensor / JAX array it returns turned into numpy (dtype kept)."""
    def on_numpy(*args):
        value = fn(*args)
        outs = value if isinstance(value, (tuple, list)) else (value,)
        conv = []
        for v in outs:
            if torch_tensors.is_tensor(v):
                v = torch_tensors.to_numpy(v)
            elif jax_arrays.is_jax_array(v):
                v = jax_arrays.to_numpy(v)
            conv.append(v)
        return type(value)(conv) if isinstance(value, (tuple, list)) else conv[0]
    return on_numpy


def to_numpy_callable(fn, op, *, framework: str | None = None, device: str | None = None):
    """``(callable on numpy arrays, description)`` for ``fn`` checked as ``op`` (name or ``derive.Op``).

    numpy functions come back unchanged.  ``framework``: None (detect, see the module doc), "numpy",
    "torch" or "jax".  ``device``: torch device for tensors (default CUDA when available, else CPU).
    The callable takes the op's inputs as numpy arrays of one dtype (scalars as Python floats) and
    returns numpy arrays of whatever dtype the user's code produced.
    """
    the_op = as_op(op)
    if framework is not None and framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {', '.join(FRAMEWORKS)} or None; got {framework!r}")
    if device is not None and not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda'; got {type(device).__name__}")
    if getattr(fn, "__gradaudit_adapted__", False):
        return fn, getattr(fn, "description", _name(fn))
    if not callable(fn):
        raise TypeError(f"fn must be callable with the signature of {the_op.signature()}; got {type(fn).__name__}")
    forward = forward_of(the_op)
    if torch_tensors.is_autograd_function(fn):
        dev = device or torch_tensors.default_device()
        if forward is not None:
            desc = f"{fn.__name__}.backward (torch.autograd.Function on {dev}) as {the_op.name}"
            return _mark(torch_tensors.autograd_backward(fn, vjp_plan(forward, the_op), dev), desc), desc
        desc = f"{fn.__name__}.apply (torch.autograd.Function forward on {dev}) as {the_op.name}"
        return _mark(torch_tensors.autograd_forward(fn, dev), desc), desc
    if framework == "jax" or (framework is None and jax_arrays.is_jax_function(fn)):
        custom_vjp = type(fn).__name__ == "custom_vjp"
        if forward is not None and custom_vjp:
            desc = f"{_name(fn)} (jax.custom_vjp, bwd rule through jax.vjp) as {the_op.name}"
            return _mark(jax_arrays.vjp_function(fn, vjp_plan(forward, the_op)), desc), desc
        desc = f"{_name(fn)} on jax.Array as {the_op.name}"
        return _mark(jax_arrays.array_function(fn), desc), desc
    chosen = framework or _guess(fn)
    if chosen == "numpy":
        return fn, f"{_name(fn)}: a numpy function"
    if chosen == "torch":
        dev = device or torch_tensors.default_device()
        desc = f"{_name(fn)} on torch tensors ({dev}) as {the_op.name}"
        return _mark(torch_tensors.tensor_function(fn, dev), desc), desc
    if chosen == "jax":
        desc = f"{_name(fn)} on jax.Array as {the_op.name}"
        return _mark(jax_arrays.array_function(fn), desc), desc
    probe = _Probe(fn, device)
    return probe, probe.description


def check_autograd_function(fn, op, *, dtype="float64", device: str | None = None, **check_kw) -> PairCheck:
    """Check a ``torch.autograd.Function`` subclass (or a ``jax.custom_vjp`` function): its forward
    against forward op ``op`` and its backward against ``op``'s backward op (the certified vector–Jacobian
    product, for every input that needs a gradient).  ``check_kw`` goes to ``check_gradient`` (examples,
    seed, edge_cases, domain limits).  Returns :class:`PairCheck` ``(forward, backward)``."""
    from ..check import check_gradient      # late: check.py imports this package
    fwd = as_op(op)
    if forward_of(fwd) is not None:
        fwd = forward_of(fwd)
    bwd = backward_of(fwd)
    if bwd is None:
        raise ValueError(f"op {fwd.name!r} has no backward op to check {_name(fn)}.backward against")
    framework = None if torch_tensors.is_autograd_function(fn) else "jax"
    results = []
    for the_op in (fwd, bwd):
        wrapped, _ = to_numpy_callable(fn, the_op, framework=framework, device=device)
        results.append(check_gradient(wrapped, the_op.name, dtype=dtype, **check_kw))
    return PairCheck(*results)
