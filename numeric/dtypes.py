"""The floating-point formats gradaudit measures, by name."""
from __future__ import annotations

import ml_dtypes
import numpy as np

__all__ = ["DTYPES", "resolve_dtype", "finfo"]

#: Name → numpy dtype, narrowest first.  bfloat16 comes from ml_dtypes.
DTYPES: dict[str, np.dtype] = {
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
}


def resolve_dtype(dtype, *, argument: str = "dtype") -> np.dtype:
    """``dtype`` as a numpy dtype; accepts the names of :data:`DTYPES` or the dtypes themselves."""
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is not None and resolved in DTYPES.values():
        return resolved
    raise ValueError(f"{argument} must be one of {', '.join(DTYPES)}; got {dtype!r}")


def finfo(dtype) -> ml_dtypes.finfo:
    """Machine limits of a supported dtype (``ml_dtypes.finfo`` also knows bfloat16)."""
    return ml_dtypes.finfo(resolve_dtype(dtype))
