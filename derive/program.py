"""Formulations: short straight-line programs of SymPy steps over named, axis-labelled values.

Every value carries a tuple of axis labels (einsum style): ``z`` of softmax has axes ``("b", "k")``,
a per-row sum has ``("b",)``, the loss has ``()``.  A step is one of

* :class:`Elementwise` — a SymPy expression over earlier values; its axes are the union of its
  arguments' axes (broadcasting by label);
* :class:`Reduce` — ``sum`` / ``mean`` / ``max`` of one value over some of its axes;
* :class:`Relabel` — the same numbers seen under other axis labels (``s`` over ``k`` read as ``s_i``
  over ``i``), which is how outer products such as the softmax Jacobian are written;
* :class:`Delta` — the Kronecker delta over two axes of equal length;
* :class:`OneHot` — 0/1 indicators of integer class ids along one axis (labels given as ids).

Nothing is expanded per element, so the same program runs symbolically for K = 3 and numerically for
K = 1000.  Sizes of axes enter expressions as integer symbols (``N`` for the batch of batch-norm; a
size may count several axes, ``{"N": ("n", "h", "w")}``, the number of elements a statistic averages).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import sympy as sp

__all__ = ["Input", "Elementwise", "Reduce", "Relabel", "Delta", "OneHot", "Formulation", "value_symbol", "ROLES"]


def value_symbol(name: str) -> sp.Symbol:
    """The SymPy symbol standing for value ``name`` inside elementwise expressions (real-valued)."""
    return sp.Symbol(name, real=True)


#: What an input holds, which decides how ``numeric`` draws it (strategies, edge cases, sweeps):
ROLES = {
    "logits": "real values with a common offset and a spread (softmax inputs, pre-activations)",
    "labels": "non-negative rows along the last axis summing to 1 (soft, smoothed or one-hot)",
    "onehot": "one-hot rows along the last axis",
    "index": "integer class ids in [0, length of ``classes``)",
    "upstream": "an upstream gradient dy, entries in [−1, 1]",
    "activations": "data whose statistics are taken over every axis but the op's independent axis",
    "weight": "a per-feature scale or shift (γ, β), entries in [−2, 2]",
    "eps": "a small non-negative scalar added to a variance",
    "temperature": "a positive scalar dividing logits",
    "fraction": "a scalar in [0, 1] (momentum, smoothing)",
    "positive": "positive values of the scale of the data (running variances)",
    "output": "an op's output (not drawn)",
}


@dataclass(frozen=True)
class Input:
    """A named input (or output) of an op: ``axes=()`` for a scalar such as batch-norm's ``eps``.

    ``role`` (see :data:`ROLES`) says what it holds; ``classes`` names the axis whose length bounds the
    ids of an integer ``"index"`` input.
    """
    name: str
    axes: tuple[str, ...]
    doc: str = ""
    role: str = ""
    classes: str = ""

    def __post_init__(self):
        if self.role and self.role not in ROLES:
            raise ValueError(f"Input {self.name!r}: role must be one of {', '.join(ROLES)}; got {self.role!r}")
        if (self.role == "index") != bool(self.classes):
            raise ValueError(f"Input {self.name!r}: an 'index' input names its classes axis, and only it")

    @property
    def integer(self) -> bool:
        """True for integer class ids (not differentiable)."""
        return self.role == "index"


@dataclass(frozen=True)
class Elementwise:
    name: str
    expr: sp.Expr
    note: str = ""


@dataclass(frozen=True)
class Reduce:
    name: str
    op: str                      # "sum" | "mean" | "max"
    arg: str
    over: tuple[str, ...]
    note: str = ""

    def __post_init__(self):
        if self.op not in ("sum", "mean", "max"):
            raise ValueError(f"Reduce op must be 'sum', 'mean' or 'max', got {self.op!r}")


@dataclass(frozen=True)
class Relabel:
    name: str
    arg: str
    mapping: tuple[tuple[str, str], ...]   # (old axis, new axis) pairs
    note: str = ""


@dataclass(frozen=True)
class Delta:
    name: str
    axes: tuple[str, str]
    note: str = ""


@dataclass(frozen=True)
class OneHot:
    """``name[…, c] = 1 if arg[…] == c else 0`` — integer class ids as indicator rows along ``axis``."""
    name: str
    arg: str
    axis: str
    note: str = ""


Step = Union[Elementwise, Reduce, Relabel, Delta, OneHot]


@dataclass(frozen=True)
class Formulation:
    """A straight-line program computing an op's outputs from its inputs.

    ``axis_order`` fixes the canonical order of all axes the program uses (outputs are returned with
    their axes in this order); ``sizes`` maps integer size symbols (``"N"``) to the axis they count.
    """
    name: str
    summary: str
    inputs: tuple[Input, ...]
    steps: tuple[Step, ...]
    outputs: tuple[str, ...]
    axis_order: tuple[str, ...]
    sizes: dict = field(default_factory=dict)

    def __post_init__(self):
        self.axes()     # validates names and axes

    def size_symbol(self, name: str) -> sp.Symbol:
        """The symbol an expression uses for the length of axis ``self.sizes[name]``."""
        return value_symbol(name)

    def size_axes(self, name: str) -> tuple[str, ...]:
        """The axes whose lengths multiply to size ``name``."""
        axes = self.sizes[name]
        return (axes,) if isinstance(axes, str) else tuple(axes)

    def axes(self) -> dict[str, tuple[str, ...]]:
        """Axis labels of every value (inputs and steps), in canonical order; validates the program."""
        order = {a: i for i, a in enumerate(self.axis_order)}

        def canon(labels):
            unknown = [a for a in labels if a not in order]
            if unknown:
                raise ValueError(f"{self.name}: axis {unknown[0]!r} not in axis_order {self.axis_order}")
            return tuple(sorted(set(labels), key=order.__getitem__))

        known: dict[str, tuple[str, ...]] = {i.name: canon(i.axes) for i in self.inputs}
        for step in self.steps:
            if step.name in known:
                raise ValueError(f"{self.name}: value {step.name!r} is assigned twice")
            if isinstance(step, Elementwise):
                names = self.free_names(step)
                missing = [n for n in names if n not in known]
                if missing:
                    raise ValueError(f"{self.name}: step {step.name!r} uses undefined {missing[0]!r}")
                known[step.name] = canon([a for n in names for a in known[n]])
            elif isinstance(step, Reduce):
                if step.arg not in known:
                    raise ValueError(f"{self.name}: step {step.name!r} reduces undefined {step.arg!r}")
                known[step.name] = tuple(a for a in known[step.arg] if a not in step.over)
            elif isinstance(step, Relabel):
                rename = dict(step.mapping)
                known[step.name] = canon([rename.get(a, a) for a in known[step.arg]])
            elif isinstance(step, Delta):
                known[step.name] = canon(step.axes)
            elif isinstance(step, OneHot):
                if step.arg not in known:
                    raise ValueError(f"{self.name}: step {step.name!r} reads undefined {step.arg!r}")
                known[step.name] = canon([*known[step.arg], step.axis])
        for out in self.outputs:
            if out not in known:
                raise ValueError(f"{self.name}: output {out!r} is never computed")
        return known

    def free_names(self, step: Elementwise) -> list[str]:
        """Names of the values an elementwise step reads (size symbols excluded), sorted."""
        return sorted(s.name for s in step.expr.free_symbols if s.name not in self.sizes)
