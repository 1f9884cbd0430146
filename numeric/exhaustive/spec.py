"""What an exhaustive run varies and holds fixed: parsing ``--vary``/``--fix`` text and building the inputs.

Grammar (no ``eval``, no ``ast``; a regular expression for numbers and a small recursive parser for lists):

* element: ``NAME`` (a scalar input) or ``NAME[i]``, ``NAME[i,j]``… (non-negative integer indices);
* fix: ``NAME=VALUE`` with VALUE a finite number or a nested list of them (``z=[[0,1,2]]``), or
  ``NAME[i,j]=NUMBER`` for one element.

Every error is a ``ValueError`` whose message names the argument and shows the expected form.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from derive import Op

__all__ = ["Element", "parse_element", "parse_fix", "parse_number", "parse_size", "build_inputs"]

_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_NUMBER_RE = re.compile(rf"\s*({_NUMBER})\s*$")
_ELEMENT_RE = re.compile(r"\s*([A-Za-z_]\w*)\s*(?:\[\s*(\d+(?:\s*,\s*\d+)*)\s*\])?\s*$")
_TOKEN_RE = re.compile(rf"\s*(\[|\]|,|{_NUMBER})")


@dataclass(frozen=True)
class Element:
    """One element of one input: ``name`` and its index (``()`` for a scalar input)."""
    name: str
    index: tuple[int, ...]

    def __str__(self) -> str:
        return self.name + (f"[{','.join(map(str, self.index))}]" if self.index else "")


def parse_number(text: str, *, argument: str) -> float:
    """A finite decimal number such as ``-1.5e3``."""
    m = _NUMBER_RE.match(text)
    if not m:
        raise ValueError(f"{argument}: expected a finite number such as -1.5e3; got {text!r}")
    return float(m.group(1))


def parse_element(text: str, *, argument: str = "--vary") -> Element:
    """``"z[0, 1]"`` → ``Element("z", (0, 1))``."""
    m = _ELEMENT_RE.match(text)
    if not m:
        raise ValueError(f"{argument}: expected NAME or NAME[i,j] such as z[0,0]; got {text!r}")
    index = tuple(int(i) for i in m.group(2).split(",")) if m.group(2) else ()
    return Element(m.group(1), index)


def _parse_list(text: str, *, argument: str):
    """A number or a nested list of numbers, as nested Python lists of floats."""
    tokens, pos = [], 0
    stripped = text.rstrip()
    while pos < len(stripped):
        m = _TOKEN_RE.match(stripped, pos)
        if not m:
            raise ValueError(f"{argument}: cannot read {stripped[pos:pos + 12]!r} in {text!r}; expected numbers, "
                             "commas and brackets such as [[0, 1, 2]]")
        tokens.append(m.group(1))
        pos = m.end()
    if not tokens:
        raise ValueError(f"{argument}: empty value in {text!r}")

    def value(i):
        if tokens[i] == "[":
            items, i = [], i + 1
            while True:
                if i >= len(tokens):
                    raise ValueError(f"{argument}: unclosed [ in {text!r}")
                if tokens[i] == "]" and not items:
                    return items, i + 1
                item, i = value(i)
                items.append(item)
                if i >= len(tokens):
                    raise ValueError(f"{argument}: unclosed [ in {text!r}")
                if tokens[i] == ",":
                    i += 1
                elif tokens[i] == "]":
                    return items, i + 1
                else:
                    raise ValueError(f"{argument}: expected , or ] in {text!r}")
        if tokens[i] in ("]", ","):
            raise ValueError(f"{argument}: unexpected {tokens[i]!r} in {text!r}")
        return float(tokens[i]), i + 1

    result, end = value(0)
    if end != len(tokens):
        raise ValueError(f"{argument}: unexpected text after the value in {text!r}")
    return result


def parse_fix(text: str, *, argument: str = "--fix") -> tuple[Element, np.ndarray]:
    """``"z=[[0,1,2]]"`` → (Element("z", ()), array) for a whole input; ``"z[0,1]=2.5"`` → one element."""
    target, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"{argument}: expected NAME=VALUE or NAME[i,j]=NUMBER such as z=[[0,1,2]]; got {text!r}")
    element = parse_element(target, argument=argument)
    parsed = _parse_list(value, argument=argument)
    if element.index and not isinstance(parsed, float):
        raise ValueError(f"{argument}: one element takes one number; got {value.strip()!r}")
    try:
        array = np.array(parsed, dtype=np.float64)
    except ValueError:
        raise ValueError(f"{argument}: rows of {value.strip()!r} have different lengths") from None
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{argument}: values must be finite; got {value.strip()!r}")
    return element, array


def parse_size(text: str, *, argument: str = "--size") -> tuple[str, int]:
    """``"k=16"`` → ("k", 16): the length of one axis for inputs drawn from the seed."""
    m = re.match(r"\s*([A-Za-z_]\w*)\s*=\s*(\d+)\s*$", text)
    if not m or int(m.group(2)) < 1:
        raise ValueError(f"{argument}: expected AXIS=LENGTH with LENGTH ≥ 1, such as k=16; got {text!r}")
    return m.group(1), int(m.group(2))


def _check_index(op: Op, element: Element, shapes: dict, argument: str) -> None:
    inp = next((i for i in op.inputs if i.name == element.name), None)
    if inp is None:
        raise ValueError(f"{argument}: {op.name} has no input {element.name!r}; its inputs are "
                         f"{', '.join(i.name for i in op.inputs)}")
    shape = shapes[inp.name]
    if len(element.index) != len(shape):
        raise ValueError(f"{argument}: {element.name} has {len(shape)} dimensions (shape {shape}); got index "
                         f"{element.index or '()'} in {element}")
    for axis, (i, n) in enumerate(zip(element.index, shape)):
        if i >= n:
            raise ValueError(f"{argument}: index {i} of {element} is out of range for axis {axis} of length {n}")


def build_inputs(op: Op, *, fixed: list[tuple[Element, np.ndarray]], sizes: dict, seed: int,
                 default_length: int = 8) -> list[np.ndarray]:
    """The op's inputs as float64 arrays: whole inputs from ``fixed``, the rest drawn from ``seed``.

    Axis lengths come from fixed whole inputs, then ``sizes`` ({axis: length}), then ``default_length``
    (the op's independent axis defaults to 1).  Drawn values follow each input's role (:func:`_draw`);
    scalars with a default in ``op.scalars`` take it; integer inputs get uniform class ids.  Single fixed
    elements (``z[0,1]=2.5``) are written last.
    """
    lengths: dict[str, int] = {}
    whole = {}
    for element, array in fixed:
        inp = next((i for i in op.inputs if i.name == element.name), None)
        if inp is None:
            raise ValueError(f"--fix: {op.name} has no input {element.name!r}; its inputs are "
                             f"{', '.join(i.name for i in op.inputs)}")
        if element.index:
            continue
        if array.ndim != len(inp.axes):
            raise ValueError(f"--fix: {inp.name} must have {len(inp.axes)} dimensions (axes "
                             f"{', '.join(inp.axes) or 'none'}); got shape {array.shape}")
        for axis, n in zip(inp.axes, array.shape):
            if lengths.setdefault(axis, n) != n:
                raise ValueError(f"--fix: axis {axis} of {inp.name} has length {n} but another input has "
                                 f"{lengths[axis]}")
        whole[inp.name] = array
    for axis, n in sizes.items():
        if axis in lengths and lengths[axis] != n:
            raise ValueError(f"--size: axis {axis} is {lengths[axis]} in a fixed input; got {axis}={n}")
        lengths.setdefault(axis, n)
    known_axes = {a for i in op.inputs for a in i.axes}
    for axis in sizes:
        if axis not in known_axes:
            raise ValueError(f"--size: {op.name} has no axis {axis!r}; its axes are {', '.join(sorted(known_axes))}")
    rng = np.random.default_rng(seed)
    args = []
    for inp in op.inputs:
        shape = tuple(lengths.setdefault(a, 1 if a == op.independent_axis else default_length) for a in inp.axes)
        if inp.name in whole:
            args.append(whole[inp.name])
        elif getattr(inp, "integer", False):
            classes = lengths.setdefault(inp.classes, default_length)
            args.append(rng.integers(0, classes, size=shape).astype(np.float64))
        elif not inp.axes and inp.name in op.scalars:
            args.append(np.array(float(op.scalars[inp.name])))
        else:
            args.append(np.asarray(_draw(getattr(inp, "role", ""), rng, shape), dtype=np.float64))
    shapes = {inp.name: a.shape for inp, a in zip(op.inputs, args)}
    for element, array in fixed:
        if element.index:
            _check_index(op, element, shapes, "--fix")
            position = [i.name for i in op.inputs].index(element.name)
            args[position] = args[position].copy()
            args[position][element.index] = float(array)
    return args


def _draw(role: str, rng, shape: tuple) -> np.ndarray:
    """Values for an input of ``role`` (``derive.program.ROLES``): labels and one-hot rows along the last
    axis, dy in [−1, 1], γ/β in [−2, 2], positive values in [½, 2], ε 1e-5, temperatures in [½, 2],
    fractions in [0, 1]; anything else N(0, 1)."""
    if role in ("labels", "onehot"):
        if role == "onehot":
            rows = np.zeros(shape)
            hot = rng.integers(0, shape[-1], size=shape[:-1])
            np.put_along_axis(rows, hot[..., None], 1.0, axis=-1)
            return rows
        rows = rng.random(shape)
        return rows / rows.sum(axis=-1, keepdims=True)
    uniform = {"upstream": (-1.0, 1.0), "weight": (-2.0, 2.0), "positive": (0.5, 2.0), "temperature": (0.5, 2.0),
               "fraction": (0.0, 1.0)}
    if role in uniform:
        return rng.uniform(*uniform[role], size=shape)
    if role == "eps":
        return np.full(shape, 1e-5)
    return rng.standard_normal(shape)


def check_varied(op: Op, varied: list[Element], args: list[np.ndarray]) -> None:
    """One or two distinct elements of floating-point inputs, inside their inputs' shapes."""
    if not 1 <= len(varied) <= 2:
        raise ValueError(f"--vary: give one or two elements; got {len(varied)}")
    if len(set(varied)) != len(varied):
        raise ValueError(f"--vary: the two elements are the same ({varied[0]})")
    shapes = {inp.name: a.shape for inp, a in zip(op.inputs, args)}
    for element in varied:
        _check_index(op, element, shapes, "--vary")
        inp = next(i for i in op.inputs if i.name == element.name)
        if getattr(inp, "integer", False):
            raise ValueError(f"--vary: {element.name} holds integer class ids, not floating-point values")
