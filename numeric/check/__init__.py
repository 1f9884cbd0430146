"""Checking hand-written gradients: :func:`check_gradient`, :func:`assert_gradient`, :class:`CheckResult`."""
from .result import CheckResult, Finding, WorstCase
from .run import assert_gradient, check_gradient

__all__ = ["check_gradient", "assert_gradient", "CheckResult", "Finding", "WorstCase"]
