"""gradaudit.numeric — evaluation in float16/bfloat16/float32/float64, certified references, metrics,
checking of hand-written gradients, reports and the CLI.

Public names are in ``__all__``; everything else is internal.  They are imported on first use (PEP 562),
so the command line starts without SymPy, Hypothesis or the frameworks.
"""
import importlib
import sys
import types

from derive.lazy import lazy_names

#: Public name → the submodule that defines it.
_HOMES = {
    "check_autograd_function": "adapters", "check_layer": "adapters",
    "CheckResult": "check", "assert_gradient": "check", "check_gradient": "check",
    "Comparison": "compare", "compare": "compare",
    "condition_numbers": "condition",
    "DTYPES": "dtypes",
    "evaluate": "evaluate",
    "check_invariants": "invariants",
    "error_metrics": "metrics",
    "reference": "reference",
    "find_thresholds": "thresholds",
}

__all__ = ["evaluate", "reference", "compare", "Comparison", "condition_numbers", "error_metrics",
           "find_thresholds", "check_gradient", "assert_gradient", "CheckResult", "check_invariants", "DTYPES",
           "check_autograd_function", "check_layer"]


__getattr__, __dir__ = lazy_names(__name__, _HOMES, __all__)


class _Package(types.ModuleType):
    """``numeric.evaluate``, ``numeric.reference`` and ``numeric.compare`` name both a submodule and the
    public function it defines.  Importing the submodule sets the package attribute to the module; these
    properties keep the attribute the function (as an eager ``from .reference import reference`` did)."""


def _function_named_like_its_module(name):
    def get(module):
        return getattr(importlib.import_module(f"{__name__}.{name}"), name)

    def ignore_submodule(module, value):      # the import system binding the submodule: keep the function
        if not isinstance(value, types.ModuleType):
            raise AttributeError(f"numeric.{name} cannot be replaced")

    return property(get, ignore_submodule)


for _name in [n for n, home in _HOMES.items() if n == home]:
    setattr(_Package, _name, _function_named_like_its_module(_name))
sys.modules[__name__].__class__ = _Package
