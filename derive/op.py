"""The :class:`Op` record: an op's contract, its formulations, its derivation and what is proved of it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import sympy as sp

from .program import Formulation, Input

__all__ = ["Op", "Invariant", "DerivationStep", "GenericClaim", "Mistake", "Param"]


@dataclass(frozen=True)
class DerivationStep:
    """One named step of a derivation, e.g. ("quotient rule", r"\\frac{\\partial s_i}{\\partial z_j} = …")."""
    title: str
    latex: str


@dataclass(frozen=True)
class GenericClaim:
    """An identity for *symbolic* size (K or N a symbol): ``lhs - rhs`` must reduce to zero.

    ``setting`` says how the generic case was reduced to finitely many symbols (e.g. the sum over the
    other K − 2 classes is one symbol that does not depend on z_i, z_j).
    """
    statement: str        # LaTeX
    lhs: sp.Expr
    rhs: sp.Expr
    setting: str
    method: str = "normal_form"     # or "simplify", for small expressions with Sum / IndexedBase

@dataclass(frozen=True)
class Invariant:
    """A property of an op's outputs, written as a residual program that must evaluate to zero.

    ``residual`` takes the op's inputs followed by its outputs (same names as the reference formulation)
    and returns one value whose every element is 0 in exact arithmetic.  ``normalize`` optionally
    replaces inputs before proving (e.g. labels that sum to 1).
    """
    name: str
    latex: str
    residual: Formulation
    floor: str = ""     # bound on one term's absolute rounding error: "1", an input's name (max |·| of it),
                        # or "term_scale", a second output of ``residual`` (max of it)
    normalize: Callable | None = None


@dataclass(frozen=True)
class Mistake:
    """A known wrong way to compute an op, kept to name a user's bug.

    ``formulation`` computes the op's outputs the wrong way (same inputs); the proofs check that it
    *differs* from the truth.  ``message`` is what the checker tells a user whose output matches it.
    """
    name: str
    message: str
    formulation: Formulation


@dataclass(frozen=True)
class Param:
    """A convention of a parametric op: its name, default, allowed values (``choices``) or type."""
    name: str
    default: object
    choices: tuple = ()
    kind: type = str
    doc: str = ""

    def parse(self, value):
        """``value`` (possibly the text of ``--param name=value``) as this parameter's type, validated."""
        if isinstance(value, str) and self.kind is not str:
            try:
                value = self.kind(value)
            except ValueError:
                raise ValueError(f"parameter {self.name!r} must be a {self.kind.__name__}; got {value!r}") from None
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.kind) or isinstance(value, bool):
            raise ValueError(f"parameter {self.name!r} must be a {self.kind.__name__}; got {value!r}")
        if self.choices and value not in self.choices:
            raise ValueError(f"parameter {self.name!r} must be one of {', '.join(map(repr, self.choices))}; "
                             f"got {value!r}")
        return value


@dataclass(frozen=True)
class Op:
    """An op: fixed signature, a forward definition, and formulations proved equal to it.

    ``formulations`` maps names to programs; the first is the *reference*: the forward definition
    itself, or the closed form proved equal to the brute-force derivative of it.
    ``definition(lengths, inputs)`` returns the brute-force outputs (SymPy ``diff`` of the forward
    definition) as ``{output name: {index: expr}}`` for concrete axis lengths.

    Ops made by :func:`derive.define_op` also carry ``params`` (the conventions this instance was built
    with, e.g. ``{"reduction": "mean"}``), ``base`` (the op's name without them), ``grad_of`` (for a
    backward op: the forward op it differentiates), ``mistakes`` and ``domain`` (hints for the numeric
    side: axis-length ranges and magnitudes to draw inputs from).
    """
    name: str
    family: str
    summary: str
    inputs: tuple[Input, ...]
    outputs: tuple[Input, ...]
    formulations: dict[str, Formulation]
    definition: Callable
    proof_lengths: tuple[dict, ...]
    derivation: tuple[DerivationStep, ...] = ()
    generic: tuple[GenericClaim, ...] = ()
    invariants: tuple[Invariant, ...] = ()
    scalars: dict = field(default_factory=dict)    # scalar inputs and their defaults, e.g. {"eps": 1e-5}
    stable: str = ""                # formulation safe in float64 over the whole domain ("" = reference);
                                    # its rounding model sets what a correct implementation may err by
    accurate: str = ""              # formulation whose float64 derivatives (κ) are accurate ("" = stable)
    independent_axis: str = "b"     # slices along this axis never interact (rows of z, columns of x)
    mistakes: tuple[Mistake, ...] = ()
    params: dict = field(default_factory=dict)
    param_specs: tuple[Param, ...] = ()
    base: str = ""
    grad_of: str = ""               # the forward op whose vector–Jacobian product this op is
    backward: str = ""              # the backward op of this (forward) op
    domain: dict = field(default_factory=dict)

    def __hash__(self):
        return hash(self.name)

    def __eq__(self, other):
        return isinstance(other, Op) and other.name == self.name

    @property
    def stable_formulation(self) -> Formulation:
        return self.formulations[self.stable] if self.stable else self.reference

    @property
    def accurate_formulation(self) -> Formulation:
        return self.formulations[self.accurate] if self.accurate else self.stable_formulation

    @property
    def reference(self) -> Formulation:
        return next(iter(self.formulations.values()))

    @property
    def base_name(self) -> str:
        return self.base or self.name

    def signature(self) -> str:
        def shape(i):
            if i.integer:
                return "(" + ",".join(a.upper() for a in i.axes) + f") int in [0, {i.classes.upper()})"
            return "(" + ",".join(a.upper() if a not in ("i", "j") else "K" for a in i.axes) + ")" if i.axes else "scalar"
        ins = ", ".join(f"{i.name} {shape(i)}" for i in self.inputs)
        outs = ", ".join(f"{o.name} {shape(o)}" for o in self.outputs)
        return f"{self.name}({ins}) -> {outs}"
