"""gradaudit.numeric — evaluation in float16/bfloat16/float32/float64, certified references, metrics,
checking of hand-written gradients, reports and the CLI.

Public names are in ``__all__``; everything else is internal.
"""
from .adapters import check_autograd_function, check_layer
from .check import CheckResult, assert_gradient, check_gradient
from .compare import Comparison, compare
from .condition import condition_numbers
from .dtypes import DTYPES
from .evaluate import evaluate
from .invariants import check_invariants
from .metrics import error_metrics
from .reference import reference
from .thresholds import find_thresholds

__all__ = ["evaluate", "reference", "compare", "Comparison", "condition_numbers", "error_metrics",
           "find_thresholds", "check_gradient", "assert_gradient", "CheckResult", "check_invariants", "DTYPES",
           "check_autograd_function", "check_layer"]
