"""Σ_j |∂f_i/∂x_j| |x_j| from the structure of a formulation's Jacobian: a diagonal part plus a few
terms that pass through reductions.

Forward-mode derivative of a formulation, carried symbolically in the *direction* m (one direction per
combination of the input's indices other than the independent axis, as ``numeric.condition`` uses):

    t_v[m, p] = Σ_keys  c_key[p] · basis_key(m, p)

* the *direct* basis [p's direction coordinates = m] (the input itself has c = x; elementwise steps
  carry it with their SymPy derivatives; a relabel moves it to the new axis);
* one *reduced* basis T_R[m, q] per reduction R over the direction axes: an explicit
  (directions × R's shape) array — small, because R has no direction axis.

Elementwise steps multiply coefficients by their derivatives (``sympy.diff``, lambdified for numpy);
a sum over the direction axes turns the direct part into a new reduced basis and sums the coefficients
of the others.  The output's Jacobian rows are then one batched matrix product (coefficients × reduced
bases, BLAS) plus the diagonal, and Σ_m |·| is one pass: O(directions × size × #reductions) with a tiny
constant instead of a JVP program per direction.  Programs outside this shape (a reduction over only
some of the direction axes, a basis that varies along a reduced axis) raise :class:`Unsupported`;
``numeric.condition`` then uses the batched JVP.
"""
from __future__ import annotations

import math

import numpy as np

from derive.codegen import full_layout
import sympy as sp

from derive.program import Delta, Elementwise, Formulation, Reduce, Relabel, value_symbol

__all__ = ["Unsupported", "structured_sensitivities"]

CHUNK_ELEMENTS = 1 << 18          # directions × output size per matrix product (2 MB of float64)


class Unsupported(Exception):
    """The formulation does not have the diagonal-plus-reductions shape this module handles."""


_COMPILED: dict = {}


def _compiled(form: Formulation):
    """{step name: (primal function, {argument: derivative function})}, numpy float64 (once per form)."""
    cached = _COMPILED.get(id(form))
    if cached is not None and cached[0] is form:
        return cached[1]
    out = {}
    for step in form.steps:
        if isinstance(step, Elementwise):
            names = form.free_names(step)
            args = [value_symbol(n) for n in names] + [form.size_symbol(s) for s in form.sizes]
            primal = sp.lambdify(args, step.expr, modules="numpy", cse=True)
            derivatives = {}
            for n in names:
                d = sp.diff(step.expr, value_symbol(n))
                if d != 0:
                    derivatives[n] = sp.lambdify(args, d, modules="numpy", cse=True)
            out[step.name] = (names, primal, derivatives)
    out[None] = form.axes()                 # axis labels of every value (validating the program costs SymPy work)
    _COMPILED[id(form)] = (form, out)
    return out


def structured_sensitivities(form: Formulation, arrays, wrt: str, independent: str | None):
    """(primal outputs, [Σ_m |t_o[m]| per output, or None where the output does not depend on ``wrt``])
    for the directions of input ``wrt`` (compact output shapes, float64)."""
    order = {a: i for i, a in enumerate(form.axis_order)}
    rank = len(order)
    compiled = _compiled(form)

    def full(array, labels):
        return full_layout(array, labels, order)

    env, lengths = {}, {}
    x_axes = None
    for inp, arr in zip(form.inputs, arrays):
        arr = np.asarray(arr, dtype=np.float64)
        lengths.update(zip(inp.axes, arr.shape))
        env[inp.name] = full(arr, inp.axes)
        if inp.name == wrt:
            x_axes = inp.axes
    sizes = [np.float64(lengths[a]) for a in form.sizes.values()]
    D = tuple(a for a in x_axes if a != independent)            # direction axes, C order of directions
    M = math.prod(lengths[a] for a in D)
    dense: list[np.ndarray] = []                                 # reduced bases, each (M, *full shape)
    tangents = {wrt: {("direct", D): env[wrt]}}

    def add(table, key, value):
        table[key] = table[key] + value if key in table else value

    def sum_over(c, labels):
        for lab in labels:
            ax = order[lab]
            c = c * lengths[lab] if np.shape(c)[ax] == 1 else np.sum(c, axis=ax, keepdims=True)
        return c

    for step in form.steps:
        if isinstance(step, Elementwise):
            names, primal, derivatives = compiled[step.name]
            values = [env[n] for n in names]
            env[step.name] = np.asarray(primal(*values, *sizes), dtype=np.float64)
            new = {}
            for n in names:
                if n in tangents and n in derivatives:
                    d = np.asarray(derivatives[n](*values, *sizes), dtype=np.float64)
                    for key, c in tangents[n].items():
                        add(new, key, d * c)
            if new:
                tangents[step.name] = new
        elif isinstance(step, Reduce):
            x = env[step.arg]
            axes = tuple(order[a] for a in step.over)
            count = math.prod(lengths[a] for a in step.over)
            if step.op == "max":
                env[step.name] = np.max(x, axis=axes, keepdims=True)
                continue                                   # a shift: tangent 0 (derive.jvp)
            total = np.sum(x, axis=axes, keepdims=True)
            env[step.name] = total / count if step.op == "mean" else total
            if step.arg not in tangents:
                continue
            new, reduced = {}, None
            for key, c in tangents[step.arg].items():
                c = np.asarray(c, dtype=np.float64)
                if key[0] == "direct":
                    mapping = key[1]
                    hit = [lab for lab in mapping if lab in step.over]
                    if not hit:
                        add(new, key, sum_over(c, step.over))
                        continue
                    if len(hit) != len(mapping):
                        raise Unsupported(f"{step.name} sums over only some direction axes")
                    shape = list(np.broadcast_shapes(np.shape(c), (1,) * rank))
                    for lab in mapping:
                        shape[order[lab]] = lengths[lab]
                    c = np.broadcast_to(c, shape)
                    c = sum_over(c, [lab for lab in step.over if lab not in mapping])
                    positions = [order[lab] for lab in mapping]
                    t = np.moveaxis(c, positions, list(range(len(positions))))
                    t = t.reshape((M,) + t.shape[len(positions):])
                    t = np.expand_dims(t, [1 + p for p in sorted(positions)])
                    reduced = t if reduced is None else reduced + t
                else:
                    basis = dense[key[1]]
                    if all(basis.shape[1 + order[lab]] == 1 for lab in step.over):
                        add(new, key, sum_over(c, step.over))
                    else:
                        raise Unsupported(f"{step.name} sums a reduced basis along its own axis")
            if reduced is not None:
                dense.append(np.ascontiguousarray(reduced))
                add(new, ("dense", len(dense) - 1), np.ones((1,) * rank))
            if step.op == "mean":
                new = {k: c / count for k, c in new.items()}
            tangents[step.name] = new
        elif isinstance(step, Relabel):
            x = env[step.arg]
            moved = tangents.get(step.arg)
            for old, new_axis in step.mapping:
                x = np.swapaxes(x, order[old], order[new_axis])
                lengths[new_axis] = lengths[old]
                if moved is not None:
                    swapped = {}
                    for key, c in moved.items():
                        c = np.swapaxes(np.asarray(c).reshape(np.broadcast_shapes(np.shape(c), (1,) * rank)),
                                        order[old], order[new_axis])
                        if key[0] == "direct":
                            key = ("direct", tuple(new_axis if a == old else old if a == new_axis else a
                                                   for a in key[1]))
                        else:
                            dense.append(np.swapaxes(dense[key[1]], 1 + order[old], 1 + order[new_axis]))
                            key = ("dense", len(dense) - 1)
                        swapped[key] = c
                    moved = swapped
            env[step.name] = x
            if moved is not None:
                tangents[step.name] = moved
        elif isinstance(step, Delta):
            i, j = step.axes
            env[step.name] = full(np.eye(lengths[i]), (i, j))
    axes_of = compiled[None]
    values, totals = [], []
    for name in form.outputs:
        shape = tuple(lengths[a] for a in axes_of[name])
        full_shape = [1] * rank
        for a, n in zip(axes_of[name], shape):
            full_shape[order[a]] = n
        values.append(np.reshape(np.broadcast_to(env[name], full_shape), shape))
        if name not in tangents:
            totals.append(None)
            continue
        total = _absolute_row_sums(tangents[name], dense, tuple(full_shape), D, M, lengths, order)
        totals.append(np.reshape(total, shape))
    return values, totals


def _absolute_row_sums(coefficients, dense, full_shape, D, M, lengths, order):
    """Σ_m |Σ_keys c_key[p] basis_key(m, p)| for every p of ``full_shape``."""
    rank = len(full_shape)
    dense_keys = [(dense[k[1]], c) for k, c in coefficients.items() if k[0] == "dense"]
    direct_keys = [(k[1], c) for k, c in coefficients.items() if k[0] == "direct"]
    varying = sorted({p for basis, _ in dense_keys for p in range(rank) if basis.shape[1 + p] > 1})
    if any(full_shape[p] == 1 for p in varying):
        raise Unsupported("a reduced basis varies along an axis the output does not have")
    rest = [p for p in range(rank) if p not in varying]
    v_size = math.prod(full_shape[p] for p in varying)
    r_size = math.prod(full_shape[p] for p in rest)
    perm = varying + rest

    def arrange(c):        # full-rank coefficient -> (V, R)
        return np.transpose(np.broadcast_to(c, full_shape), perm).reshape(v_size, r_size)

    if dense_keys:
        C = np.stack([arrange(c) for _, c in dense_keys], axis=-1)                    # (V, R, K)
        basis_shape = [full_shape[p] if p in varying else 1 for p in range(rank)]
        T = np.stack([np.broadcast_to(b, (M, *basis_shape)).reshape(M, v_size).T
                      for b, _ in dense_keys], axis=1)                                 # (V, K, M)
    diagonals = []        # per direct key: (flat (v, r) positions, their direction m, coefficients)
    for mapping, c in direct_keys:
        grids = np.indices(full_shape, sparse=True)
        m_of_p = np.zeros(full_shape, dtype=np.int64)
        for lab in mapping:                        # C order over D, as the directions are numbered
            m_of_p = m_of_p * lengths[lab] + grids[order[lab]]
        diagonals.append((arrange(m_of_p).ravel(), arrange(c).ravel()))
    total = np.zeros((v_size, r_size))
    chunk = max(1, CHUNK_ELEMENTS // max(v_size * r_size, 1))
    flat = np.arange(v_size * r_size)
    for start in range(0, M, chunk):
        stop = min(start + chunk, M)
        G = C @ T[:, :, start:stop] if dense_keys else np.zeros((v_size, r_size, stop - start))
        G = G.reshape(v_size * r_size, stop - start)
        for m_of_p, c in diagonals:            # each p meets its own direction once: a scatter, no indicator
            here = (m_of_p >= start) & (m_of_p < stop)
            G[flat[here], m_of_p[here] - start] += c[here]
        total += np.abs(G).sum(axis=-1).reshape(v_size, r_size)
    inverse = np.argsort(perm)
    return np.transpose(total.reshape([full_shape[p] for p in perm]), inverse)
