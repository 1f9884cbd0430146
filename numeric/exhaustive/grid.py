"""The values one varied element runs through: every finite float of a 16-bit dtype, or a sample of a wider one.

Floats are enumerated through their bit patterns: a ``uint`` view of the dtype (``ml_dtypes.bfloat16`` has
one like float16).  Each finite value gets an *ordinal* — its code for x ≥ 0, minus the code of |x| for
x < 0 — so ordinals run over ``[-M, M]`` (M the code of the largest finite value) in the order of the values,
with +0 and −0 both at 0 (one value).  A full grid is every ordinal; a sampled grid is evenly spaced
ordinals, which spreads the points evenly over binades (log-uniform in |x|), plus ±max and 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..dtypes import finfo, resolve_dtype

__all__ = ["Grid", "value_grid", "FULL_GRID_LIMIT", "DEFAULT_SAMPLES"]

#: Dtypes with at most this many finite values are enumerated in full by default.
FULL_GRID_LIMIT = 1 << 17
#: Points of the sampled grid of wider dtypes (float32, float64) unless told otherwise.
DEFAULT_SAMPLES = 1 << 16


@dataclass(frozen=True)
class Grid:
    """Sorted distinct finite values (float64 array, exact) and how they were chosen."""
    dtype: str
    values: np.ndarray
    complete: bool          # every finite value of the dtype
    finite_values: int      # distinct finite values the dtype has (±0 counted once)

    def describe(self) -> str:
        if self.complete:
            return (f"every finite {self.dtype} value: {self.values.size} distinct values "
                    f"(±0 once), enumerated through their bit patterns")
        return (f"a sample of {self.values.size} of the {self.finite_values} distinct finite {self.dtype} values, "
                "evenly spaced in bit-pattern order (so evenly over binades); the dtype has too many values to "
                "run them all")


def _unsigned(dt: np.dtype) -> np.dtype:
    return np.dtype(f"uint{8 * dt.itemsize}")


def _from_ordinals(ordinals: np.ndarray, dt: np.dtype) -> np.ndarray:
    ut = _unsigned(dt)
    sign = np.array(1, dtype=ut) << (8 * dt.itemsize - 1)
    magnitude = np.abs(ordinals).astype(ut)
    codes = np.where(ordinals < 0, magnitude | sign, magnitude).astype(ut)
    return codes.view(dt).astype(np.float64) + 0.0      # + 0.0 turns −0 into +0


def value_grid(dtype, *, samples: int | None = None) -> Grid:
    """The grid of ``dtype``: complete when it has ≤ ``FULL_GRID_LIMIT`` values (or ``samples`` covers
    them all), else ``samples`` (default ``DEFAULT_SAMPLES``) evenly spaced ordinals."""
    dt = resolve_dtype(dtype)
    if samples is not None and (not isinstance(samples, int) or samples < 3):
        raise ValueError(f"samples must be an integer ≥ 3; got {samples!r}")
    top = int(np.array(finfo(dt).max, dtype=dt).view(_unsigned(dt)))
    count = 2 * top + 1
    if samples is None:
        samples = count if count <= FULL_GRID_LIMIT else DEFAULT_SAMPLES
    if samples >= count:
        ordinals = np.arange(-top, top + 1, dtype=np.int64)
    else:
        ordinals = np.unique(np.round(np.linspace(-top, top, samples)).astype(np.int64))
        ordinals = np.union1d(ordinals, [0])
    values = _from_ordinals(ordinals, dt)
    return Grid(dt.name, values, complete=values.size == count, finite_values=count)
