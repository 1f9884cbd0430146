"""Validation of an op's arguments against its contract: names the bad argument, says what was expected."""
from __future__ import annotations

import math

import numpy as np

from derive import Op

__all__ = ["check_arguments"]


def _shape_text(inp):
    return "(" + ", ".join(a.upper() for a in inp.axes) + ")"


def check_arguments(op: Op, args: tuple, dtype: np.dtype) -> list:
    """The op's arguments as arrays of ``dtype`` (scalars as 0-d arrays), after checking count, kind,
    rank, consistent axis lengths and non-empty axes.  Values are rounded to ``dtype`` once, here."""
    if len(args) != len(op.inputs):
        names = ", ".join(i.name for i in op.inputs)
        raise TypeError(f"{op.name} takes {len(op.inputs)} arguments ({names}); got {len(args)}")
    lengths: dict[str, tuple[int, str]] = {}
    out = []
    for inp, arg in zip(op.inputs, args):
        arr = np.asarray(arg)
        if inp.integer:
            out.append(_class_ids(inp, arr))
            continue
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or arr.dtype.kind == "V"
                                       or str(arr.dtype) == "bfloat16"):
            if arr.dtype.kind in "iub":
                raise TypeError(f"argument {inp.name!r} must hold floating-point values; got an array of "
                                f"{arr.dtype} (convert with .astype(float))")
            raise TypeError(f"argument {inp.name!r} must be a floating-point array; got {type(arg).__name__} "
                            f"of {arr.dtype}")
        if not inp.axes:
            if arr.ndim != 0:
                raise ValueError(f"argument {inp.name!r} must be a scalar; got shape {arr.shape}")
            value = float(arr)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"argument {inp.name!r} must be finite and ≥ 0; got {value!r}")
        elif arr.ndim != len(inp.axes):
            raise ValueError(f"argument {inp.name!r} must have shape {_shape_text(inp)} ({len(inp.axes)} "
                             f"dimensions); got shape {arr.shape}")
        for axis, n in zip(inp.axes, arr.shape):
            if n == 0:
                raise ValueError(f"argument {inp.name!r} has an empty axis {axis.upper()} (shape {arr.shape})")
            if axis in lengths and lengths[axis][0] != n:
                seen, where = lengths[axis]
                raise ValueError(f"argument {inp.name!r} has {axis.upper()} = {n} but {where!r} has "
                                 f"{axis.upper()} = {seen}")
            lengths.setdefault(axis, (n, inp.name))
        out.append(arr.astype(dtype, copy=False))
    for inp, arr in zip(op.inputs, out):
        if inp.integer:
            for axis, n in zip(inp.axes, arr.shape):
                if axis in lengths and lengths[axis][0] != n:
                    raise ValueError(f"argument {inp.name!r} has {axis.upper()} = {n} but {lengths[axis][1]!r} has "
                                     f"{axis.upper()} = {lengths[axis][0]}")
            classes = lengths.get(inp.classes, (None,))[0]
            if classes is not None and arr.size and (arr.min() < 0 or arr.max() >= classes):
                raise ValueError(f"argument {inp.name!r} holds class ids in [0, {classes}); got values from "
                                 f"{arr.min()} to {arr.max()}")
    return out


def _class_ids(inp, arr: np.ndarray) -> np.ndarray:
    """Integer class ids of shape ``inp.axes`` (floats that are whole numbers are accepted)."""
    if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"argument {inp.name!r} must hold integer class ids; got an array of {arr.dtype}")
    if arr.ndim != len(inp.axes):
        raise ValueError(f"argument {inp.name!r} must have shape {_shape_text(inp)} ({len(inp.axes)} dimensions); "
                         f"got shape {arr.shape}")
    return arr.astype(np.int64, copy=False)
