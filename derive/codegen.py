"""Turn a formulation into runnable code with ``sympy.lambdify`` — never hand-written numerics.

Each elementwise step is lambdified once (``cse=True``) for a backend:

* ``"numpy"``: numpy ufuncs on arrays of the working dtype.  Constants appear as Python scalars,
  which NumPy >= 2 treats as *weak*, so float16 / bfloat16 stay float16 / bfloat16 through every step.
* ``"mpmath"``: mpmath functions, mapped over object arrays of ``mpf`` with ``numpy.frompyfunc``.

Reductions are numpy calls (``sum``, ``max``) on the named axes with ``keepdims=True``.  Internally every
value is held in *full-rank layout*: one array dimension per label of ``axis_order``, length 1 where the
value does not vary, so label broadcasting is plain numpy broadcasting and no step copies data.
"""
from __future__ import annotations

import inspect
import math

import numpy as np
import sympy as sp

from .program import Delta, Elementwise, Formulation, Reduce, Relabel, value_symbol

__all__ = ["Kernel", "source_code"]


class Kernel:
    """A compiled formulation. ``kernel(*arrays)`` takes the inputs in their own (compact) shapes,
    already in the working dtype, and returns the outputs in their compact shapes."""

    def __init__(self, form: Formulation, backend: str = "numpy"):
        if backend not in ("numpy", "mpmath"):
            raise ValueError(f"backend must be 'numpy' or 'mpmath', got {backend!r}")
        self.form = form
        self.backend = backend
        self.axes = form.axes()
        self.position = {a: i for i, a in enumerate(form.axis_order)}
        self.functions = {}
        for step in form.steps:
            if isinstance(step, Elementwise):
                args = [value_symbol(n) for n in form.free_names(step)]
                args += [form.size_symbol(s) for s in form.sizes]
                f = sp.lambdify(args, step.expr, modules=backend, cse=True)
                if backend == "mpmath":
                    f = np.frompyfunc(f, len(args), 1)
                self.functions[step.name] = f

    def _full(self, array, labels):
        shape = [1] * len(self.form.axis_order)
        for a, n in zip(labels, np.shape(array)):
            shape[self.position[a]] = n
        return np.reshape(array, shape)

    def __call__(self, *arrays):
        form = self.form
        env, lengths = {}, {}
        for inp, arr in zip(form.inputs, arrays):
            for a, n in zip(inp.axes, np.shape(arr)):
                lengths[a] = n
            env[inp.name] = self._full(arr, inp.axes)
        dtype = next((np.asarray(a).dtype for a in arrays if np.ndim(a)), None)
        size_args = [lengths[a] for a in form.sizes.values()]
        for step in form.steps:
            if isinstance(step, Elementwise):
                f = self.functions[step.name]
                env[step.name] = f(*(env[n] for n in form.free_names(step)), *size_args)
            elif isinstance(step, Reduce):
                axis = tuple(self.position[a] for a in step.over)
                x = env[step.arg]
                if step.op == "max":
                    env[step.name] = np.max(x, axis=axis, keepdims=True)
                else:
                    total = np.sum(x, axis=axis, keepdims=True)
                    if step.op == "mean":
                        total = total / math.prod(lengths[a] for a in step.over)
                    env[step.name] = total
            elif isinstance(step, Relabel):
                x = env[step.arg]
                for old, new in step.mapping:
                    x = np.swapaxes(x, self.position[old], self.position[new])
                    lengths[new] = lengths[old]
                env[step.name] = x
            elif isinstance(step, Delta):
                i, j = step.axes
                eye = np.eye(lengths[i], dtype=object if self.backend == "mpmath" else dtype)
                env[step.name] = self._full(eye, (i, j))
        outs = []
        for name in form.outputs:
            shape = tuple(lengths[a] for a in self.axes[name])
            value = np.broadcast_to(env[name], self._full(np.empty(shape), self.axes[name]).shape)
            outs.append(np.reshape(value, shape))
        return outs[0] if len(outs) == 1 else tuple(outs)


def source_code(form: Formulation) -> str:
    """The numpy program a formulation runs, as Python text: one line per reduction and the lambdified
    source of each elementwise step (exactly what :class:`Kernel` executes)."""
    kernel = Kernel(form, "numpy")
    lines = [f"# {form.name}: {form.summary}",
             "# arrays carry one dimension per axis of " + repr(form.axis_order) + " (length 1 where constant)"]
    for step in form.steps:
        if isinstance(step, Elementwise):
            src = inspect.getsource(kernel.functions[step.name]).strip().splitlines()
            body = [l.strip() for l in src[1:]]
            args = ", ".join(form.free_names(step) + list(form.sizes))
            if len(body) == 1:
                lines.append(f"{step.name} = {body[0].removeprefix('return ').strip()}")
            else:
                lines.append(f"def _{step.name}({args}):")
                lines += ["    " + l for l in body]
                lines.append(f"{step.name} = _{step.name}({args})")
        elif isinstance(step, Reduce):
            axis = tuple(kernel.position[a] for a in step.over)
            call = "max" if step.op == "max" else "sum"
            line = f"{step.name} = numpy.{call}({step.arg}, axis={axis}, keepdims=True)"
            if step.op == "mean":
                line += " / " + " * ".join(f"len_{a}" for a in step.over)
            lines.append(line)
        elif isinstance(step, Relabel):
            expr = step.arg
            for old, new in step.mapping:
                expr = f"numpy.swapaxes({expr}, {kernel.position[old]}, {kernel.position[new]})"
            lines.append(f"{step.name} = {expr}  # relabel {dict(step.mapping)}")
        elif isinstance(step, Delta):
            lines.append(f"{step.name} = numpy.eye(len_{step.axes[0]}, dtype=dtype)  # Kronecker delta over {step.axes}")
    lines.append("return " + ", ".join(form.outputs))
    return "\n".join(lines)
