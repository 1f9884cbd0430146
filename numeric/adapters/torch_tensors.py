"""PyTorch at the checker's edge: numpy ⇄ ``torch.Tensor`` without any silent conversion.

* numpy → torch keeps the dtype: float16, float32, float64 directly, bfloat16 (``ml_dtypes.bfloat16``)
  through its raw 16 bits (an int16 view), never through float32.
* torch → numpy keeps the dtype the user's code produced (bfloat16 back through its bits), so an
  upcast inside the user's code is still seen by the checker.
* Device: CUDA when ``torch.cuda.is_available()``, else CPU, unless ``device=`` says otherwise.

Scalars (batch norm's ``eps``) are passed as Python floats, as frameworks take them.
"""
from __future__ import annotations

import functools
import importlib.util

import ml_dtypes
import numpy as np

__all__ = ["available", "default_device", "to_torch", "to_numpy", "is_tensor", "is_autograd_function",
           "tensor_function", "autograd_forward", "autograd_backward", "autograd_vjp"]

_BF16 = np.dtype(ml_dtypes.bfloat16)


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """True when torch can be imported (it is imported only when first used)."""
    return importlib.util.find_spec("torch") is not None


def _torch():
    import torch
    return torch


def default_device() -> str:
    torch = _torch()
    return "cuda" if torch.cuda.is_available() else "cpu"


def _torch_dtype(dt: np.dtype):
    torch = _torch()
    return {np.dtype(np.float16): torch.float16, _BF16: torch.bfloat16, np.dtype(np.float32): torch.float32,
            np.dtype(np.float64): torch.float64}[np.dtype(dt)]


def to_torch(a, device: str):
    """A numpy array (any of the four dtypes) as a tensor of the same dtype on ``device``; Python
    floats pass through unchanged."""
    torch = _torch()
    if isinstance(a, (float, int)) or (isinstance(a, np.ndarray) and a.ndim == 0 and a.dtype.kind not in "fV"
                                        and a.dtype != _BF16):
        return a
    arr = np.ascontiguousarray(a)
    if arr.dtype == _BF16:
        t = torch.from_numpy(arr.view(np.int16).copy()).view(torch.bfloat16)
    else:
        t = torch.from_numpy(arr.copy())
    return t.to(device)


def is_tensor(value) -> bool:
    return "torch" in type(value).__module__ and available() and isinstance(value, _torch().Tensor)


def to_numpy(value):
    """A tensor as a numpy array of the same dtype (bfloat16 as ``ml_dtypes.bfloat16``); other values
    unchanged."""
    torch = _torch()
    if not isinstance(value, torch.Tensor):
        return value
    t = value.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().copy().view(_BF16)
    return t.numpy().copy()


def _outputs_to_numpy(value):
    if isinstance(value, (tuple, list)):
        return type(value)(to_numpy(v) for v in value)
    return to_numpy(value)


def is_autograd_function(obj) -> bool:
    """True for a ``torch.autograd.Function`` subclass (the class itself, not an instance)."""
    if not available() or not isinstance(obj, type):
        return False
    return issubclass(obj, _torch().autograd.Function)


def tensor_function(fn, device: str | None = None):
    """``fn`` on tensors as a function on numpy arrays (same dtypes in and out)."""
    dev = device or default_device()

    def on_numpy(*args):
        return _outputs_to_numpy(fn(*(to_torch(a, dev) for a in args)))
    return on_numpy


def autograd_forward(cls, device: str | None = None):
    """``cls.apply`` as a function on numpy arrays (the forward pass of an ``autograd.Function``)."""
    torch = _torch()
    dev = device or default_device()

    def on_numpy(*args):
        with torch.no_grad():
            return _outputs_to_numpy(cls.apply(*(to_torch(a, dev) for a in args)))
    return on_numpy


def _prepare(plan, bargs, dev):
    """Forward tensors (differentiated ones with ``requires_grad``) and upstream tensors."""
    torch = _torch()
    tensors = [to_torch(a, dev) for a in bargs]
    dtype = next(t.dtype for t in tensors if isinstance(t, torch.Tensor))
    primals = plan.primals(tensors, lambda k, shape: torch.zeros(shape, dtype=dtype, device=dev))
    for k in plan.differentiated:
        primals[k] = primals[k].detach().clone().requires_grad_(True)
    upstream = [tensors[k] for k in plan.cotangents]
    return primals, upstream, dtype


def _ones_like_outputs(outs):
    torch = _torch()
    return [torch.ones_like(o) for o in outs]


def autograd_backward(cls, plan, device: str | None = None):
    """The backward pass of ``cls`` as a function with the backward op's signature, on numpy arrays.

    ``cls.backward`` is called directly on the context that ``cls.apply`` built (``out.grad_fn``), so
    its return values reach the checker untouched: autograd's engine would cast an upcast gradient back
    to the input's dtype and hide it."""
    torch = _torch()
    dev = device or default_device()

    def on_numpy(*bargs):
        primals, upstream, _ = _prepare(plan, bargs, dev)
        with torch.enable_grad():
            outs = cls.apply(*primals)
        outs = list(outs) if isinstance(outs, (tuple, list)) else [outs]
        ctx = next((o.grad_fn for o in outs if isinstance(o, torch.Tensor) and o.grad_fn is not None), None)
        if ctx is None:
            raise TypeError(f"{cls.__name__}.apply returned no tensor connected to the graph; "
                            "did forward detach its output?")
        grads = cls.backward(ctx, *(upstream or _ones_like_outputs(outs)))
        grads = tuple(grads) if isinstance(grads, (tuple, list)) else (grads,)
        if len(grads) != len(plan.forward.inputs):
            raise TypeError(f"{cls.__name__}.backward returned {len(grads)} value(s); forward takes "
                            f"{len(plan.forward.inputs)} input(s) ({', '.join(i.name for i in plan.forward.inputs)})")
        return _pick(plan, grads, cls.__name__)
    return on_numpy


def _pick(plan, grads, who):
    picked = []
    for m, k in enumerate(plan.grad_of):
        if grads[k] is None:
            raise TypeError(f"{who} returned no gradient (None) for {plan.forward.inputs[k].name!r}")
        picked.append(to_numpy(grads[k]))
    return picked[0] if len(picked) == 1 else tuple(picked)


def autograd_vjp(fn, plan, device: str | None = None):
    """The autograd backward pass of a tensor function ``fn`` (forward op's signature) as a function with
    the backward op's signature, through ``torch.autograd.grad``; used for torch's own kernels."""
    torch = _torch()
    dev = device or default_device()

    def on_numpy(*bargs):
        primals, upstream, _ = _prepare(plan, bargs, dev)
        with torch.enable_grad():
            outs = fn(*primals)
        outs = list(outs) if isinstance(outs, (tuple, list)) else [outs]
        wrt = [primals[k] for k in plan.differentiated]
        grads = torch.autograd.grad(outs, wrt, grad_outputs=upstream or _ones_like_outputs(outs),
                                    allow_unused=True)
        full = [None] * len(plan.forward.inputs)
        for k, g in zip(plan.differentiated, grads):
            full[k] = g if g is not None else torch.zeros_like(primals[k])
        return _pick(plan, full, getattr(fn, "__name__", "fn"))
    return on_numpy
