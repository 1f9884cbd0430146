"""Fixed inputs every implementation must survive, built from each input's role (float64; rounded to
the dtype on use), kept inside the op's domain (a float16 check leaves out the variance-1e8 batch)."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["edge_cases"]

_LOGIT_ROWS = [np.zeros((1, 1)), np.zeros((1, 3)), np.array([[1000.0, 0.0, -1000.0]]),
               np.array([[1e4, 1e4 - 1.0, 1e4 - 2.0]]), np.array([[90.0, 0.0]]), np.array([[-1e4, 0.0, 1e4]]),
               np.linspace(-20, 20, 32).reshape(2, 16)]


def _activation_batches(domain) -> list[np.ndarray]:
    """(rows combined by the statistics, independent slices) batches: one row, constant columns, mean
    1e4 with std 1e-3, variance 1e8, tiny variance, a plain N(0, 1) batch."""
    rng = np.random.default_rng(0)
    u = rng.standard_normal((8, 2))
    xs = [np.zeros((1, 2)) + 3.0, np.array([[0.1, 5.0]] * 4), 1e4 + 1e-3 * u, 1e4 * u, 1.0 + 1e-6 * u,
          rng.standard_normal((64, 3))]
    bound = domain["max_mean"] + 3 * math.sqrt(domain["max_var"])
    return [x for x in xs if np.abs(x).max() <= bound]


def _fits(shape_by_axis: dict, domain) -> bool:
    return all(lo <= n <= hi for a, n in shape_by_axis.items() for lo, hi in [domain["sizes"].get(a, (1, 1 << 30))])


def edge_cases(op, domain) -> list[tuple]:
    """Edge-case argument tuples for ``op`` (2-D logits or activations ops; none for other layouts)."""
    first = next((i for i in op.inputs if i.axes and not i.integer), None)
    if first is None or len(first.axes) != 2:
        return []
    indep = op.independent_axis
    if first.role == "activations":
        bases = _activation_batches(domain)
        bases = [x if first.axes[1] == indep else x.T for x in bases]     # statistics run over the other axis
    else:
        bases = [z if first.axes[0] == indep else z.T for z in _LOGIT_ROWS]
        limit = domain.get("max_abs", 1e4) + domain.get("max_spread", 100.0)
        bases = [z for z in bases if np.abs(z).max() <= max(limit, 1e4)]
    cases = []
    for base in bases:
        lengths = dict(zip(first.axes, base.shape))
        if not _fits(lengths, domain):
            continue
        args, ok = [], True
        for inp in op.inputs:
            shape = tuple(lengths.get(a, 0) for a in inp.axes)
            if any(n == 0 for n in shape):
                ok = False
                break
            if inp is first:
                args.append(base)
            elif inp.role in ("labels", "onehot"):
                k = shape[-1]
                rows = int(np.prod(shape[:-1]))
                hot = np.eye(k)[np.arange(rows) % k].reshape(shape)
                args.append(hot)
            elif inp.role == "index":
                args.append(np.arange(int(np.prod(shape))).reshape(shape) % lengths[inp.classes])
            elif inp.role == "upstream":
                args.append(np.linspace(-1, 1, int(np.prod(shape))).reshape(shape))
            elif inp.role == "weight":
                args.append(np.linspace(0.5, 1.5, int(np.prod(shape))).reshape(shape) if shape else 1.0)
            elif inp.role == "positive":
                args.append(np.linspace(0.5, 2.0, int(np.prod(shape))).reshape(shape) if shape else 1.0)
            elif inp.role == "eps":
                args.append(1e-5)
            elif inp.role == "temperature":
                args.append(1.0)
            elif inp.role == "fraction":
                args.append(0.1)
            else:
                args.append(np.linspace(-3, 3, int(np.prod(shape))).reshape(shape) if shape else 1.0)
        if ok:
            cases.append(tuple(args))
            if any(i.role == "labels" for i in op.inputs):     # smoothed rows too
                cases.append(tuple(0.9 * a + 0.1 / a.shape[-1] if i.role == "labels" else a
                                   for i, a in zip(op.inputs, args)))
    return cases
