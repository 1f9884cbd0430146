"""``check_gradient`` / ``assert_gradient``: judge a hand-written op against the certified reference.

Every output element is judged with a condition-aware tolerance

    |got − ref| ≤ c · (u · Σ_j |∂f/∂x_j| |x_j|  +  R  +  ulp(ref)),      c = 4 + n

where u is the dtype's unit roundoff, the sum is the element's first-order sensitivity to its inputs
(κ·|ref|, from the symbolically derived JVP), R the radius of the op's stable formulation run in ball
arithmetic with every step rounding by u and every input widened by u|x| (``numeric.condition.
rounding_bounds``: what a correct algorithm in this dtype can cost, including non-linear effects such as
x − μ of a constant column far from 0 turning into noise that the variance then squares) and n the
length of the reduced axis (K or N), for summation order and for subnormal results (each of about n
operations may be off by one spacing there).  A backward-stable
implementation stays inside it in any dtype; an overflow, a catastrophic cancellation or a wrong
formula lands far outside.  Inputs come from ``numeric.strategies`` (Hypothesis, so a failure is shrunk
to a small counterexample) plus a fixed set of edge cases.
"""
from __future__ import annotations

import math
import traceback
from dataclasses import dataclass, field

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from derive import get_op

from .arguments import check_arguments
from .condition import rounding_bounds, sensitivities
from .dtypes import finfo, resolve_dtype
from .evaluate import as_tuple
from .metrics import ulp_at
from .reference import reference
from . import strategies

__all__ = ["CheckResult", "check_gradient", "assert_gradient", "DEFAULT_DOMAIN"]

#: What real networks and the tutorial produce: logits up to |z| = 1e4, batches of 1..64, features with
#: variance from 0 to 1e8 and means up to 1e4.
DEFAULT_DOMAIN = {
    "softmax": {"max_abs": 1e4, "max_spread": 100.0, "batch": (1, 8), "classes": (1, 16)},
    "cross_entropy": {"max_abs": 1e4, "max_spread": 100.0, "batch": (1, 8), "classes": (1, 16)},
    "batchnorm": {"rows": (1, 64), "features": (1, 4), "max_mean": 1e4, "max_var": 1e8},
}


@dataclass
class WorstCase:
    """The most-out-of-tolerance element seen: its (shrunk) inputs, where it is, and by how much."""
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
    got_output: np.ndarray = field(default=None, repr=False)        # the whole output, float64
    expected_output: np.ndarray = field(default=None, repr=False)   # the reference rounded to float64


@dataclass
class CheckResult:
    """Outcome of :func:`check_gradient`."""
    op: str
    dtype: str
    examples: int                         # inputs judged: random ones up to the first failure, plus edge cases
    failures: int = 0                     # failing inputs (the random search stops at its first, then shrinks it)
    inf: int = 0
    nan: int = 0
    error: str = ""                       # fn raised / wrong shape / wrong dtype
    worst: WorstCase | None = None
    diagnosis: str = ""

    @property
    def ok(self) -> bool:
        return self.failures == 0 and not self.error

    def to_markdown(self) -> str:
        status = "**passed**" if self.ok else "**FAILED**"
        lines = [f"### `{self.op}` in {self.dtype}: {status}", "",
                 f"{self.examples} examples, {self.failures} out of tolerance; inf outputs: {self.inf}, "
                 f"nan outputs: {self.nan}.", ""]
        if self.error:
            lines += [f"Error: `{self.error}`", ""]
        if self.diagnosis:
            lines += [f"Diagnosis: {self.diagnosis}", ""]
        w = self.worst
        if w is not None:
            lines += ["| output | index | got | expected | ULPs | relative | κ | tolerance |",
                      "|---|---|---|---|---|---|---|---|",
                      f"| `{w.output}` | {w.index} | {w.got:.9g} | {w.expected:.9g} | {w.ulps:.3g} | "
                      f"{w.rel:.3g} | {w.kappa:.3g} | {w.tolerance:.3g} |", "",
                      "Counterexample (inputs, after shrinking):", "", "```python"]
            names = [i.name for i in get_op(self.op).inputs]
            for name, value in zip(names, w.inputs):
                lines.append(f"{name} = {np.array2string(np.asarray(value, dtype=np.float64), precision=17, separator=', ')}")
            lines += ["```", ""]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


class _Failed(AssertionError):
    pass


def _family_limits(op, dtype) -> dict:
    """:data:`DEFAULT_DOMAIN`, narrowed for float16 so that x² of a batch stays finite (|x| ≤ √max / 8):
    no float16 implementation could compute a variance there, right or wrong."""
    limits = dict(DEFAULT_DOMAIN[op.family])
    if op.family == "batchnorm":
        root = math.sqrt(float(finfo(dtype).max))
        limits["max_mean"] = min(limits["max_mean"], root / 8)
        limits["max_var"] = min(limits["max_var"], (root / 8) ** 2)
    return limits


def _edge_cases(op, limits) -> list[tuple]:
    """Small inputs every implementation must survive (in float64; rounded to the dtype on use), kept
    inside the domain ``limits`` (a float16 check leaves out the batch with variance 1e8)."""
    names = [i.name for i in op.inputs]
    if op.family == "batchnorm":
        rng = np.random.default_rng(0)
        u = rng.standard_normal((8, 2))
        xs = [np.zeros((1, 2)) + 3.0,                              # a single row
              np.array([[0.1, 5.0]] * 4),                          # constant columns
              1e4 + 1e-3 * u,                                      # mean 1e4, std 1e-3
              1e4 * u,                                             # variance 1e8
              1.0 + 1e-6 * u,                                      # tiny variance (ε matters)
              rng.standard_normal((64, 3))]
        cases = []
        bound = limits["max_mean"] + 3 * math.sqrt(limits["max_var"])
        for x in xs:
            if np.abs(x).max() > bound:
                continue
            d = x.shape[1]
            second = np.linspace(-1, 1, x.size).reshape(x.shape) if names[2] == "dy" else np.linspace(-1, 1, d)
            cases.append((x, np.linspace(0.5, 1.5, d), second, 1e-5))
        return cases
    zs = [np.zeros((1, 1)), np.zeros((1, 3)), np.array([[1000.0, 0.0, -1000.0]]),
          np.array([[1e4, 1e4 - 1.0, 1e4 - 2.0]]), np.array([[90.0, 0.0]]), np.array([[-1e4, 0.0, 1e4]]),
          np.linspace(-20, 20, 32).reshape(2, 16)]
    cases = []
    for z in zs:
        if names == ["z"]:
            cases.append((z,))
        elif names == ["z", "dy"]:
            cases.append((z, np.linspace(-1, 1, z.size).reshape(z.shape)))
        else:
            k = z.shape[1]
            hot = np.eye(k)[np.arange(z.shape[0]) % k]
            cases.append((z, hot))
            cases.append((z, 0.9 * hot + 0.1 / k))
    return cases


def _as_outputs(op, value, dtype) -> list[np.ndarray]:
    """The user's return value as arrays of the op's output shapes, or ``_Failed`` saying why not."""
    outs = value if isinstance(value, (tuple, list)) else (value,)
    if len(outs) != len(op.outputs):
        raise _Failed(f"returned {len(outs)} value(s); {op.name} returns {len(op.outputs)} "
                      f"({', '.join(o.name for o in op.outputs)})")
    arrays = []
    for spec, out in zip(op.outputs, outs):
        if not spec.axes and isinstance(out, float):      # a loss returned as a Python float: take its value
            out = np.asarray(out, dtype=dtype)
        arr = np.asarray(out)
        if arr.dtype != dtype:
            raise _Failed(f"output {spec.name!r} has dtype {arr.dtype}, expected {dtype} "
                          "(a silent upcast or downcast)")
        arrays.append(arr)
    return arrays


def _reduced_length(op, args) -> int:
    """n in the tolerance: the length of the axis the op reduces over (K, or N for batch norm)."""
    shape = np.shape(args[0])
    return shape[0] if op.family == "batchnorm" else shape[-1]


class _Judge:
    """Runs ``fn`` on one input and measures every element against the reference."""

    def __init__(self, fn, op, dtype, result: CheckResult):
        self.fn, self.op, self.dtype, self.result = fn, op, dtype, result
        self.u = float(finfo(dtype).eps) / 2
        self.failing: list[tuple[float, tuple]] = []      # (scale measure, inputs) of failures
        self.passing: list[float] = []
        self.last_failure: WorstCase | None = None
        self.shrinking = False                             # True while Hypothesis shrinks a failure

    def __call__(self, args) -> None:
        op, dt = self.op, self.dtype
        rounded = check_arguments(op, args, dt)
        user_args = [a.copy() if a.ndim else float(a) for a in rounded]     # fn may not mutate our copies
        try:
            with np.errstate(all="ignore"):
                value = self.fn(*user_args)
        except Exception as exc:          # the user's code failing is a finding, not a crash
            last = traceback.extract_tb(exc.__traceback__)[-1]
            raise _Failed(f"fn raised {type(exc).__name__}: {exc} (at {last.filename}:{last.lineno})") from None
        outs = _as_outputs(op, value, dt)
        refs = as_tuple(reference(op.name, *rounded))
        sens = as_tuple(sensitivities(op.name, *rounded))
        radii = as_tuple(rounding_bounds(op.name, *rounded, dtype=dt))
        scales = tuple(self.u * np.asarray(a, dtype=np.float64) + b for a, b in zip(sens, radii))
        for spec, got, ref in zip(op.outputs, outs, refs):
            if got.shape != ref.shape:
                raise _Failed(f"output {spec.name!r} has shape {got.shape}, expected {ref.shape}")
        n = _reduced_length(op, rounded)
        c = 4 + n
        worst = None
        for spec, got, ref, sen, scale in zip(op.outputs, outs, refs, sens, scales):
            g = got.astype(np.float64)
            r = np.frompyfunc(float, 1, 1)(ref).astype(np.float64) if ref.ndim else np.float64(float(ref))
            r = np.asarray(r, dtype=np.float64)
            ulp = np.vectorize(lambda v: ulp_at(v, dt), otypes=[np.float64])(ref) if ref.ndim else \
                np.float64(ulp_at(ref[()], dt))
            tol = c * (scale + ulp)           # c ulps: each of ~n operations may round a subnormal by one
            with np.errstate(all="ignore"):
                err = np.abs(g - r)
                excess = np.where(np.isfinite(g), err / tol, np.inf)
            if not self.shrinking:
                self.result.inf += int(np.isinf(g).sum())
                self.result.nan += int(np.isnan(g).sum())
            idx = np.unravel_index(int(np.argmax(excess)), excess.shape) if excess.ndim else ()
            if worst is None or excess[idx] > worst[0]:
                worst = (float(excess[idx]), spec.name, tuple(int(i) for i in idx), g, r, ref[idx],
                         float(tol[idx]), float(np.asarray(sen)[idx]))
        self._record(rounded, worst)

    def _record(self, rounded, worst):
        excess, name, idx, g, r, ref_mp, tol, sen = worst
        got, expected = float(g[idx]), float(r[idx])
        measure = _scale_measure(self.op, rounded)
        if excess <= 1:
            self.passing.append(measure)
            return
        self.failing.append((measure, rounded))
        ulp = ulp_at(ref_mp, self.dtype)
        rel = abs(got - expected) / abs(expected) if expected else math.inf
        kappa = sen / abs(expected) if expected else math.inf
        self.last_failure = WorstCase(tuple(rounded), name, idx, got, expected,
                                      abs(got - expected) / ulp if math.isfinite(got) else math.inf,
                                      rel, kappa, tol, excess, g, r)
        raise _Failed(f"output {name!r}[{idx}] = {got!r}, expected {expected!r}")


def _scale_measure(op, args) -> float:
    """max |z| for softmax / cross-entropy inputs; max |mean|/std over features for batch norm."""
    x = np.asarray(args[0], dtype=np.float64)
    if op.family != "batchnorm":
        return float(np.max(np.abs(x)))
    std = x.std(axis=0)
    mean = np.abs(x.mean(axis=0))
    with np.errstate(all="ignore"):
        ratio = np.where(std > 0, mean / np.where(std > 0, std, 1), np.where(mean > 0, np.inf, 0.0))
    return float(ratio.max())


def _diagnose(op, judge: _Judge, result: CheckResult) -> str:
    if result.error:
        return ""
    w = result.worst
    if w is None:
        return ""
    if not math.isfinite(w.got):
        counts = f"inf {result.inf}, nan {result.nan} elements"
        if op.family == "batchnorm" and np.shape(w.inputs[0])[0] == 1:
            return (f"non-finite output ({counts}) on a batch of one row (variance 0): a division by N − 1, "
                    "or by √var without ε?")
        first = min(m for m, _ in judge.failing) if judge.failing else math.nan
        if op.family == "batchnorm" and _passes_once_centred(judge, w.inputs):
            return (f"non-finite output ({counts}) once max |mean|/std ≥ {first:.4g}, but none once every feature "
                    "is shifted to start at 0: the variance came out ≤ 0 — catastrophic cancellation "
                    "(e.g. var = E[x²] − E[x]²)")
        what = "max |z|" if op.family != "batchnorm" else "max |mean|/std"
        return (f"non-finite output ({counts}) once {what} ≥ {first:.4g}: an overflow or 0/0 in an "
                "unshifted exp, a log of 0, or a variance that came out negative")
    factor = _constant_factor(op, w)
    if factor:
        return factor
    if op.family == "batchnorm" and _passes_once_centred(judge, w.inputs):
        return (f"fails on this batch (max |mean|/std = {_scale_measure(op, w.inputs):.3g}) but passes once every "
                "feature is shifted by its first value, which leaves the exact gradients unchanged: the error "
                "grows with the mean, i.e. catastrophic cancellation (e.g. var = E[x²] − E[x]²)")
    return (f"wrong value: |got − expected| = {abs(w.got - w.expected):.3g} is {w.excess:.3g}× the tolerance "
            f"{w.tolerance:.3g} that rounding in {result.dtype} can explain at this input (κ = {w.kappa:.3g})")


def _passes_once_centred(judge: _Judge, inputs) -> bool:
    """Batch norm is invariant under x → x − c per feature: run the same check on x − x[0]."""
    x = np.asarray(inputs[0], dtype=np.float64)
    shifted = (x - x[:1]).astype(judge.dtype)
    if np.array_equal(shifted.astype(np.float64), x):
        return False
    trial = _Judge(judge.fn, judge.op, judge.dtype, CheckResult(judge.op.name, judge.dtype.name, 0))
    try:
        trial((shifted, *inputs[1:]))
    except _Failed:
        return False
    return True


def _constant_factor(op, w: WorstCase) -> str:
    """'off by a constant factor c' when got/expected is the same c ≠ 1 on every element of the
    counterexample's worst output, with c named when it is 1/B (1/N), B (N), K, 1/K, 2, ½ or −1."""
    got, ref = w.got_output, w.expected_output
    if got is None or not np.all(np.isfinite(got)) or not ref.size:
        return ""
    mask = np.abs(ref) > 1e-6 * np.max(np.abs(ref))
    if not np.any(mask):
        return ""
    ratios = got[mask] / ref[mask]
    c = float(np.median(ratios))
    if abs(c - 1) < 1e-3 or not np.allclose(ratios, c, rtol=1e-3, atol=0):
        return ""
    shape = np.shape(w.inputs[0])
    batch = "N" if op.family == "batchnorm" else "B"
    named = {f"1/{batch}": 1 / shape[0], batch: shape[0], "K": shape[-1], "1/K": 1 / shape[-1],
             "2": 2.0, "1/2": 0.5, "−1": -1.0}
    if op.family == "batchnorm":
        del named["K"], named["1/K"]
    label = next((k for k, v in named.items() if abs(c - v) <= 1e-3 * abs(v)), None)
    return f"off by a constant factor {label + ' ' if label else ''}(got/expected = {c:.6g} on every element)"


def check_gradient(fn, op: str, *, dtype="float64", examples: int = 200, seed: int = 0,
                   edge_cases: bool = True, **domain) -> CheckResult:
    """Judge ``fn`` — same signature as ``op`` (see DESIGN.md's table) — against the certified reference.

    ``dtype``: inputs are given to ``fn`` in this dtype and its outputs must be of it.  ``examples``:
    Hypothesis examples (a failure is shrunk); plus the fixed edge cases unless ``edge_cases=False``.
    ``domain`` overrides :data:`DEFAULT_DOMAIN` limits (e.g. ``max_abs=50.0``).
    """
    the_op = get_op(op)
    dt = resolve_dtype(dtype)
    if not callable(fn):
        raise TypeError(f"fn must be callable with the signature of {the_op.signature()}; got {type(fn).__name__}")
    if not isinstance(examples, int) or isinstance(examples, bool) or examples < 1:
        raise ValueError(f"examples must be a positive int; got {examples!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int; got {seed!r}")
    limits = {**_family_limits(the_op, dt), **domain}
    result = CheckResult(the_op.name, dt.name, 0)
    judge = _Judge(fn, the_op, dt, result)
    strategy = strategies.op_inputs(the_op.name, dtype=dt, **limits)

    @hypothesis_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=False, report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink])
    @given(strategy)
    def run(args):
        if not judge.shrinking:
            result.examples += 1
        try:
            judge(args)
        except _Failed:
            judge.shrinking = True
            raise

    try:
        run()
    except _Failed as exc:          # Hypothesis re-raises the failure of the shrunk (minimal) example
        result.failures += 1
        if judge.last_failure is None:
            result.error = str(exc)
        result.worst = judge.last_failure
    judge.shrinking = False
    if edge_cases:
        for args in _edge_cases(the_op, limits):
            result.examples += 1
            judge.last_failure = None
            try:
                judge(args)
            except _Failed as exc:
                result.failures += 1
                if judge.last_failure is None:
                    result.error = result.error or str(exc)
                elif result.worst is None or judge.last_failure.excess > result.worst.excess:
                    result.worst = judge.last_failure
    result.diagnosis = _diagnose(the_op, judge, result)
    return result


def assert_gradient(fn, op: str, **kw) -> CheckResult:
    """:func:`check_gradient`, raising ``AssertionError`` (worst element, index, both values, ULPs)
    when the check fails — for users' pytest suites."""
    result = check_gradient(fn, op, **kw)
    if result.ok:
        return result
    w = result.worst
    lines = [f"{op} gradient check failed in {result.dtype}: {result.failures} failing example(s)"]
    if result.error:
        lines.append(f"  {result.error}")
    if w is not None:
        lines += [f"  worst element: {w.output}{list(w.index)}",
                  f"  got:      {w.got!r}",
                  f"  expected: {w.expected!r}",
                  f"  error: {w.ulps:.4g} ULPs, {w.rel:.3g} relative (κ = {w.kappa:.3g}, tolerance {w.tolerance:.3g})"]
    if result.diagnosis:
        lines.append(f"  diagnosis: {result.diagnosis}")
    raise AssertionError("\n".join(lines))
