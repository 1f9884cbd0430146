"""JAX's kernels for ``reports/frameworks.md``, run where only numpy and JAX are imported.

``gradaudit report`` measures JAX in a spawned child process (JAX starts threads when imported).  The
child only runs the kernels: this module imports numpy and, when a kernel first runs, JAX — not SymPy,
not the rest of ``numeric`` — so the child starts in about the time JAX takes to import.  Exact values,
κ and error metrics are computed by the parent (:mod:`numeric.frameworks_report`), which already built
the reference kernels for torch's rows.

A task is ``(forward, diff, args, dtype, seed)``: ``forward`` a module-level function of JAX arrays
(so it pickles by name), ``diff`` the indices of the differentiated inputs, ``args`` the rounded inputs
(numpy arrays of the dtype, integer arrays, Python floats).  :func:`run` evaluates the forward once under
``jax.vjp``, draws the upstream gradient with :func:`upstream_for` and runs the pullback.
"""
from __future__ import annotations

import numpy as np

__all__ = ["softmax", "log_softmax", "upstream_for", "vjp_wrt", "run", "run_all", "child_main"]


def softmax(z):
    """``jax.nn.softmax(z, axis=1)``."""
    import jax
    return jax.nn.softmax(z, axis=1)


def log_softmax(z):
    """``jax.nn.log_softmax(z, axis=1)``."""
    import jax
    return jax.nn.log_softmax(z, axis=1)


def upstream_for(outputs, dt, seed: int) -> list:
    """Upstream gradient per output: N(0, 1) of the output's shape in dtype ``dt`` from
    ``default_rng(seed + 1)``, or None (a gradient of 1) for a scalar output."""
    rng = np.random.default_rng(seed + 1)
    return [None if np.ndim(o) == 0 else rng.standard_normal(np.shape(o)).astype(dt) for o in outputs]


def vjp_wrt(fn, args, wrt):
    """``jax.vjp`` of ``fn(*args)`` as a function of the arguments at positions ``wrt`` only (the others
    held at their values): (outputs, pullback).  Shared with :mod:`numeric.adapters.jax_arrays` (this
    module imports nothing of ``numeric``, so the JAX child can use it too)."""
    import jax

    def of_wrt(*values):
        full = list(args)
        for k, v in zip(wrt, values):
            full[k] = v
        return fn(*full)
    return jax.vjp(of_wrt, *(args[k] for k in wrt))


def run(forward, diff, args, dt, seed: int) -> tuple[list, list, list]:
    """(outputs, gradients of the inputs ``diff``, upstream gradients) of one kernel, as numpy arrays of
    the dtypes JAX produced.  float64 inputs need ``jax_enable_x64`` (else JAX would round them)."""
    import jax
    import jax.numpy as jnp
    if not jax.config.jax_enable_x64 and any(isinstance(a, np.ndarray) and a.dtype == np.float64 for a in args):
        raise TypeError("float64 inputs need jax.config.update('jax_enable_x64', True)")
    arrays = [jax.device_put(np.asarray(a)) if isinstance(a, np.ndarray) else a for a in args]
    out, pullback = vjp_wrt(forward, arrays, diff)
    several = isinstance(out, (tuple, list))
    outs = list(out) if several else [out]
    outs_np = [np.asarray(o).copy() for o in outs]
    upstream = upstream_for(outs_np, dt, seed)
    ups = [jax.device_put(u) if u is not None else jnp.ones_like(o) for u, o in zip(upstream, outs)]
    grads = pullback(tuple(ups) if several else ups[0])
    return outs_np, [np.asarray(g).copy() for g in grads], upstream


def run_all(tasks, compile_cache: str | None = None) -> tuple[list, dict]:
    """([result per task], environment).  A result is ``("ok", outputs, gradients, upstream)``,
    ``("error", "Type: message")``, or None for a float64 task when JAX's 64-bit mode is off (skipped).

    ``compile_cache``: a directory for JAX's persistent compilation cache (every compiled kernel kept,
    however fast it compiled: eager JAX compiles each primitive per dtype and shape, ~30 ms each, which
    is most of this function's time on a first run); it sets JAX's global configuration, so it is for
    the child process only.  A kernel loaded from it is the one compiled before: same results."""
    import jax
    if compile_cache:
        jax.config.update("jax_compilation_cache_dir", compile_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    x64 = bool(jax.config.jax_enable_x64)
    results = []
    for forward, diff, args, dt, seed in tasks:
        if np.dtype(dt) == np.float64 and not x64:
            results.append(None)
            continue
        try:
            results.append(("ok", *run(forward, diff, args, dt, seed)))
        except Exception as exc:
            results.append(("error", f"{type(exc).__name__}: {exc}"))
    environment = {"jax": jax.__version__, "jax device": str(jax.devices()[0].platform),
                   "jax x64": "enabled" if x64 else "disabled (float64 rows skipped)"}
    return results, environment


def child_main(send, tasks, compile_cache: str | None) -> None:
    """The JAX child's body: :func:`run_all` of ``tasks``, sent through the pipe end ``send`` as
    ``("ok", (results, environment))`` or ``("error", "Type: message")``."""
    try:
        outcome = ("ok", run_all(tasks, compile_cache))
    except Exception as exc:
        outcome = ("error", f"{type(exc).__name__}: {exc}")
    send.send(outcome)
    send.close()
