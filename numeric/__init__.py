"""gradaudit.numeric — evaluation in float16/bfloat16/float32/float64, certified references, metrics,
checking of hand-written gradients, reports and the CLI.

Public names are in ``__all__``; everything else is internal.
"""
from .dtypes import DTYPES
from .evaluate import evaluate

__all__ = ["evaluate", "DTYPES"]
