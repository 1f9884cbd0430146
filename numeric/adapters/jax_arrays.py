"""JAX at the checker's edge: numpy ⇄ ``jax.Array`` keeping the dtype.

bfloat16 needs no conversion (``jnp.bfloat16`` is ``ml_dtypes.bfloat16``).  float64 needs
``jax.config.update("jax_enable_x64", True)``; without it JAX would silently round the inputs to float32,
so the adapter refuses instead (``TypeError`` saying how to enable it).  Arrays live on JAX's default
device.  Backward passes go through ``jax.vjp``, which runs a ``jax.custom_vjp``'s own ``bwd`` rule.
"""
from __future__ import annotations

import functools
import importlib.util

import numpy as np

from ..frameworks_jax import vjp_wrt

__all__ = ["available", "to_jax", "to_numpy", "is_jax_array", "is_jax_function", "array_function", "vjp_function"]


@functools.lru_cache(maxsize=None)
def available() -> bool:
    return importlib.util.find_spec("jax") is not None


def _jax():
    import jax
    return jax


def to_jax(a):
    """A numpy array as a ``jax.Array`` of the same dtype; Python floats pass through."""
    if isinstance(a, (float, int)):
        return a
    jax = _jax()
    arr = np.asarray(a)
    if arr.dtype == np.float64 and not jax.config.jax_enable_x64:
        raise TypeError("checking float64 with JAX needs 64-bit mode: call "
                        "jax.config.update('jax_enable_x64', True) first (else JAX rounds inputs to float32)")
    return jax.device_put(arr)


def is_jax_array(value) -> bool:
    return type(value).__module__.startswith(("jax", "jaxlib")) and available() and \
        isinstance(value, _jax().Array)


def to_numpy(value):
    """A ``jax.Array`` as a numpy array of its dtype; other values unchanged."""
    if is_jax_array(value):
        return np.asarray(value).copy()
    return value


def _outputs(value):
    if isinstance(value, (tuple, list)):
        return type(value)(to_numpy(v) for v in value)
    return to_numpy(value)


def is_jax_function(fn) -> bool:
    """True for ``jax.custom_vjp`` / ``jax.custom_jvp`` objects and jitted functions."""
    if not available():
        return False
    module = type(fn).__module__ or ""
    return module.startswith(("jax", "jaxlib")) and callable(fn)


def array_function(fn):
    """``fn`` on ``jax.Array``s as a function on numpy arrays (same dtypes in and out)."""
    def on_numpy(*args):
        return _outputs(fn(*(to_jax(a) for a in args)))
    return on_numpy


def vjp_function(fn, plan):
    """The backward pass of ``fn`` (forward op's signature; a ``jax.custom_vjp`` uses its ``bwd``) as a
    function with the backward op's signature, through ``jax.vjp`` over the differentiated inputs."""
    import jax.numpy as jnp

    def on_numpy(*bargs):
        arrays = [to_jax(a) for a in bargs]
        dtype = next(a.dtype for a in arrays if not isinstance(a, (float, int)))
        primals = plan.primals(arrays, lambda k, shape: jnp.zeros(shape, dtype=dtype))
        wrt = plan.differentiated
        outs, pullback = vjp_wrt(fn, primals, wrt)
        if plan.cotangents:
            cot = tuple(arrays[k] for k in plan.cotangents)
        else:
            cot = tuple(jnp.ones_like(o) for o in (outs if isinstance(outs, (tuple, list)) else (outs,)))
        grads = pullback(cot if isinstance(outs, (tuple, list)) else cot[0])
        by_input = dict(zip(wrt, grads))
        picked = [to_numpy(by_input[k]) for k in plan.grad_of]
        return picked[0] if len(picked) == 1 else tuple(picked)
    return on_numpy
