"""``evaluate``: run an op's formulation, lambdified by ``derive``, in a chosen floating-point dtype."""
from __future__ import annotations

from functools import lru_cache

from derive import Kernel, get_op

from .arguments import check_arguments
from .dtypes import resolve_dtype

__all__ = ["evaluate", "kernel", "formulation_of", "as_tuple"]


def as_tuple(outputs) -> tuple:
    """An op's result as a tuple of outputs (ops with one output return it bare)."""
    return outputs if isinstance(outputs, tuple) else (outputs,)


def formulation_of(op, formulation):
    """The named formulation of ``op`` (its reference formulation when ``formulation`` is None)."""
    if formulation is None:
        return op.reference
    if formulation not in op.formulations:
        raise ValueError(f"formulation must be one of {', '.join(op.formulations)} for {op.name}; "
                         f"got {formulation!r}")
    return op.formulations[formulation]


@lru_cache(maxsize=None)
def kernel(op_name: str, formulation: str | None, backend: str = "numpy") -> Kernel:
    """The compiled kernel of one formulation (compiled once per process)."""
    op = get_op(op_name)
    return Kernel(formulation_of(op, formulation), backend)


def evaluate(op: str, *args, dtype="float32", formulation: str | None = None, **params):
    """Evaluate ``op`` on ``args`` (shapes as in ``gradaudit list``) with every step in ``dtype``.

    ``dtype``: "float16", "bfloat16", "float32" or "float64".  Inputs are rounded to ``dtype`` first.
    ``params``: the op's conventions (``reduction="mean"``, ``labels="index"``, ``correction=1``…).
    Returns an array of ``dtype`` (a tuple of arrays for ops with several outputs; a 0-d array for a loss).
    """
    the_op = get_op(op, **params)
    dt = resolve_dtype(dtype)
    formulation_of(the_op, formulation)
    arrays = check_arguments(the_op, args, dt)
    return kernel(the_op.name, formulation)(*arrays)
