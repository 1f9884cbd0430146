"""What a check found: findings (error or warning), each with its own shrunk counterexample."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from derive import get_op

__all__ = ["WorstCase", "Finding", "CheckResult", "KINDS"]

#: Kinds of finding, most informative first (the order the report lists them in).
KINDS = ("value", "nonfinite", "raised", "output", "shape", "dtype")


@dataclass
class WorstCase:
    """The most-out-of-tolerance element of one failing input: its (shrunk) inputs, where, by how much."""
    inputs: tuple
    output: str
    index: tuple
    got: float
    expected: float
    ulps: float
    rel: float
    kappa: float
    tolerance: float
    excess: float            # |got − expected| / tolerance (inf for inf/nan)
    bound: str = ""          # which bound judged it: "componentwise" or "normwise"
    got_output: np.ndarray = field(default=None, repr=False)        # the whole output, float64
    expected_output: np.ndarray = field(default=None, repr=False)   # the reference rounded to float64
    got_all: tuple = field(default=None, repr=False)                # every output, float64
    tolerances: tuple = field(default=None, repr=False)             # every output's tolerance array


@dataclass
class Finding:
    """One distinct fault: ``kind`` (see :data:`KINDS`), ``severity`` "error" or "warning", what
    happened, the diagnosis, and the counterexample (``worst``; ``inputs`` when no element was judged)."""
    kind: str
    severity: str
    message: str
    inputs: tuple = ()
    worst: WorstCase | None = None
    diagnosis: str = ""
    inf: int = 0                # non-finite elements in the counterexample's outputs
    nan: int = 0

    @property
    def counterexample(self) -> tuple:
        return self.worst.inputs if self.worst is not None else self.inputs


@dataclass
class CheckResult:
    """Outcome of :func:`numeric.check_gradient`: every distinct fault found, errors and warnings apart."""
    op: str
    dtype: str
    examples: int                         # inputs judged (random ones in every search, plus edge cases)
    findings: list = field(default_factory=list)
    output: str = ""                      # what the checked code printed (captured, never mixed in the report)
    note: str = ""                        # how the code was run (adapter, isolation)

    @property
    def errors(self) -> list:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed; ``strict`` checks look at :attr:`warnings` too)."""
        return not self.errors

    @property
    def failures(self) -> int:
        return len(self.errors)

    def _primary(self) -> Finding | None:
        ranked = sorted(self.errors or self.warnings, key=lambda f: KINDS.index(f.kind))
        return ranked[0] if ranked else None

    @property
    def worst(self) -> WorstCase | None:
        judged = [f for f in sorted(self.errors, key=lambda f: KINDS.index(f.kind)) if f.worst is not None]
        return judged[0].worst if judged else None

    @property
    def diagnosis(self) -> str:
        first = self._primary()
        return first.diagnosis if first else ""

    @property
    def error(self) -> str:
        """Messages of the findings that are not about values (raised, bad return, shape, dtype)."""
        return "; ".join(f.message for f in self.findings if f.kind not in ("value", "nonfinite"))

    @property
    def inf(self) -> int:
        return sum(f.inf for f in self.findings)

    @property
    def nan(self) -> int:
        return sum(f.nan for f in self.findings)

    def to_markdown(self) -> str:
        status = "**passed**" if self.ok and not self.warnings else "**passed with warnings**" if self.ok else "**FAILED**"
        lines = [f"### `{self.op}` in {self.dtype}: {status}", "",
                 f"{self.examples} examples judged; {len(self.errors)} error(s), {len(self.warnings)} warning(s).", ""]
        if self.note:
            lines += [self.note, ""]
        names = [i.name for i in get_op(self.op).inputs]
        for n, f in enumerate(sorted(self.findings, key=lambda f: (f.severity != "error", KINDS.index(f.kind))), 1):
            lines += [f"#### {n}. {f.severity}: {_TITLES[f.kind]}", "", f.message, ""]
            if f.diagnosis:
                lines += [f"Diagnosis: {f.diagnosis}", ""]
            w = f.worst
            if w is not None:
                lines += ["| output | index | got | expected | ULPs | relative | κ | tolerance | bound |",
                          "|---|---|---|---|---|---|---|---|---|",
                          f"| `{w.output}` | {w.index} | {w.got:.9g} | {w.expected:.9g} | {_g(w.ulps)} | "
                          f"{_g(w.rel)} | {_g(w.kappa)} | {w.tolerance:.3g} | {w.bound} |", ""]
            if f.counterexample:
                lines += ["Counterexample (inputs, after shrinking):", "", "```python"]
                for name, value in zip(names, f.counterexample):
                    arr = np.asarray(value)
                    text = np.array2string(arr if arr.dtype.kind in "iu" else arr.astype(np.float64), precision=17,
                                           separator=", ", threshold=200)
                    lines.append(f"{name} = {text}")
                lines += ["```", ""]
        if self.output:
            lines += [f"The checked code printed {len(self.output.splitlines())} line(s) "
                      f"({len(self.output)} characters); they are kept apart from this report.", ""]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


_TITLES = {"value": "wrong values", "nonfinite": "inf or nan where the exact value is finite",
           "raised": "the function raised or exited", "output": "unusable return value",
           "shape": "output shape", "dtype": "output dtype"}


def _g(x: float) -> str:
    return "∞" if math.isinf(x) else f"{x:.3g}"
