"""The invariants ``derive`` proved, as numeric property checks on any outputs (yours or ours).

Each invariant's residual program (e.g. ``Σ_k s_k − 1``) and its magnitude program (``Σ_k |s_k| + 1``)
are lambdified and run in float64 on the outputs; the check is ``|r| ≤ rtol · (magnitude + n · floor)``
where n is the number of terms summed and ``floor`` the invariant's bound on one term's rounding
error (1 for probabilities, max |dy| for a vector–Jacobian product): a Jacobian entry s_i(1 − s_i)
near s_i = 1 is tiny, but its rounding error is u·s_i, not u·|J_ii|.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from derive import Kernel, get_op
from derive.magnitude import magnitude_formulation

from .arguments import check_arguments
from .dtypes import finfo, resolve_dtype
from .evaluate import as_tuple

__all__ = ["invariant_residuals", "check_invariants"]


@lru_cache(maxsize=None)
def _kernels(op_name: str):
    op = get_op(op_name)
    return [(inv, Kernel(inv.residual, "numpy"), Kernel(magnitude_formulation(inv.residual), "numpy"))
            for inv in op.invariants]


def _normalized_labels(op, arrays):
    names = [i.name for i in op.inputs]
    return "y" not in names or np.allclose(arrays[names.index("y")].sum(axis=-1), 1, rtol=1e-6)


def _floor(op, inv, arrays) -> float:
    if not inv.floor:
        return 0.0
    if inv.floor == "1":
        return 1.0
    names = [i.name for i in op.inputs]
    return float(np.max(np.abs(arrays[names.index(inv.floor)])))


def invariant_residuals(op: str, args, outputs):
    """[(invariant, residual, magnitude + n·floor)] in float64 for ``outputs`` of ``op`` at ``args``.
    Invariants that assume normalized labels are skipped when the labels do not sum to 1."""
    the_op = get_op(op)
    arrays = check_arguments(the_op, tuple(args), np.dtype(np.float64))
    outs = [np.asarray(o, dtype=np.float64) for o in as_tuple(outputs)]
    result = []
    with np.errstate(all="ignore"):
        for inv, residual, magnitude in _kernels(op):
            if inv.normalize is not None and not _normalized_labels(the_op, arrays):
                continue
            r, *extra = residual.run(*arrays, *outs)
            if inv.floor == "term_scale":
                floor = float(np.max(np.abs(extra[0])))
            else:
                floor = _floor(the_op, inv, arrays)
            terms = max(outs[0].size // max(np.size(r), 1), 1)
            mag = magnitude.run(*arrays, *outs)[0]
            result.append((inv, r, mag + terms * floor))
    return result


def check_invariants(op: str, args, outputs, *, dtype="float64", rtol=None):
    """Raise ``AssertionError`` naming the invariant, the worst index and both numbers when some
    ``|r| > rtol · magnitude``; ``rtol`` defaults to 64 units of roundoff of ``dtype``."""
    u = float(finfo(resolve_dtype(dtype)).eps) / 2
    rtol = 64 * u if rtol is None else rtol
    for inv, r, mag in invariant_residuals(op, args, outputs):
        excess = np.abs(r) - rtol * mag
        if not np.all(excess <= 0):
            idx = np.unravel_index(np.nanargmax(np.where(np.isnan(excess), np.inf, excess)), excess.shape)
            raise AssertionError(f"{op}: invariant '{inv.name}' violated at index {tuple(map(int, idx))}: "
                                 f"residual {r[idx]:.3e} > {rtol:.1e} × magnitude {mag[idx]:.3e}")
