"""``compare``: one formulation in one dtype against the certified reference, with κ beside the error."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from derive import get_op

from .arguments import check_arguments
from .condition import condition_numbers
from .dtypes import finfo, resolve_dtype
from .evaluate import as_tuple, evaluate, formulation_of
from .metrics import ErrorMetrics, error_metrics
from .reference import reference

__all__ = ["Comparison", "compare", "compare_rounded"]


@dataclass
class Comparison:
    """Errors of ``formulation`` of ``op`` in ``dtype`` at one input, per output name."""
    op: str
    formulation: str
    dtype: str
    metrics: dict[str, ErrorMetrics]
    kappa: dict[str, np.ndarray]
    got: dict[str, np.ndarray] = field(repr=False)
    reference: dict[str, np.ndarray] = field(repr=False)

    def summary(self) -> dict:
        """All outputs pooled: median/max ULPs, max bits, max relative error, inf/nan/flush counts,
        % non-finite, the range of finite κ, and max relative error ÷ (max(κ, 1)·u) over elements whose
        reference is a normal number of the dtype — about 1 for a stable algorithm, far above 1 for an
        unstable or wrong one.  Elements whose exact value is 0 are only in ``exact_zeros`` and
        ``max_abs_at_zero`` (absolute error ÷ the dtype's smallest normal)."""
        ulps = np.concatenate([m.finite_ulps.ravel() for m in self.metrics.values()])
        rel = np.concatenate([m.rel[np.isfinite(m.rel)].ravel() for m in self.metrics.values()])
        size = sum(m.size for m in self.metrics.values())
        kap = np.concatenate([k[np.isfinite(k)].ravel() for k in self.kappa.values()])
        counts = {c: int(sum(getattr(m, c).sum() for m in self.metrics.values())) for c in ("inf", "nan", "flush")}
        at_zero = np.concatenate([m.abs_at_zero[np.isfinite(m.abs_at_zero)].ravel() for m in self.metrics.values()])
        u = float(finfo(self.dtype).eps) / 2
        normal = float(finfo(self.dtype).smallest_normal)
        judged = []
        with np.errstate(all="ignore"):
            for name, m in self.metrics.items():
                ref = np.abs(m.reference64)
                ok = np.isfinite(m.rel) & (ref >= normal)     # subnormal results: only absolute accuracy
                judged.append((m.rel / (np.maximum(self.kappa[name], 1.0) * u))[ok].ravel())
        judged = np.concatenate(judged)
        return {
            "median_ulps": float(np.median(ulps)) if ulps.size else math.nan,
            "max_ulps": float(ulps.max()) if ulps.size else math.nan,
            "max_bits": float(np.log2(1 + ulps.max())) if ulps.size else math.nan,
            "max_rel": float(rel.max()) if rel.size else math.nan,
            **counts,
            "pct_nonfinite": 100.0 * (counts["inf"] + counts["nan"]) / max(size, 1),
            "pct_flush": 100.0 * counts["flush"] / max(size, 1),
            "max_rel_over_kappa_u": float(judged.max()) if judged.size else math.nan,
            "kappa_min": float(kap.min()) if kap.size else math.nan,
            "kappa_max": float(kap.max()) if kap.size else math.nan,
            "exact_zeros": int(at_zero.size),
            "max_abs_at_zero": float(at_zero.max()) if at_zero.size else math.nan,
            "input_overflow": False,
        }


def compare(op: str, *args, dtype="float32", formulation: str | None = None, **params) -> Comparison:
    """Evaluate ``formulation`` of ``op`` in ``dtype`` and measure it against :func:`reference`.

    The inputs are first rounded to ``dtype``; the reference is computed exactly on those same values.
    ``params``: the op's conventions (``reduction="mean"``…).
    """
    the_op = get_op(op, **params)
    op = the_op.name
    dt = resolve_dtype(dtype)
    form = formulation_of(the_op, formulation)
    rounded = check_arguments(the_op, args, dt)
    return compare_rounded(op, rounded, dt, form.name, as_tuple(reference(op, *rounded)),
                           as_tuple(condition_numbers(op, *rounded)))


def compare_rounded(op, rounded, dt, formulation, ref, kappa, images=None) -> Comparison:
    """:func:`compare` for inputs already in ``dt`` with their reference and κ computed (sweeps share them,
    and ``images``, the references' :func:`numeric.metrics.reference_image`)."""
    the_op = get_op(op)
    with np.errstate(all="ignore"):
        got = as_tuple(evaluate(op, *rounded, dtype=dt, formulation=formulation))
    names = [o.name for o in the_op.outputs]
    form = formulation_of(the_op, formulation)
    return Comparison(
        op, form.name, dt.name,
        metrics={n: error_metrics(g, r, dt, image=i)
                 for n, g, r, i in zip(names, got, ref, images or (None,) * len(names))},
        kappa=dict(zip(names, kappa)),
        got=dict(zip(names, got)), reference=dict(zip(names, ref)))
