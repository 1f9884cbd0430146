"""``check_gradient`` / ``assert_gradient``: judge a hand-written op against the certified reference.

Inputs come from ``numeric.strategies`` (Hypothesis) plus fixed edge cases.  Each *kind* of fault —
wrong values, inf/nan, raising, an unusable return value, wrong shape, wrong dtype — is searched for and
shrunk on its own: after a fault is found, the search runs again with that kind counted as passing, so
a shape quirk at D = 1 cannot hide a formula error at D ≥ 2.  While a value fault is shrunk, only inputs
whose excess over the tolerance stays within a factor 16 of the largest seen count, so the
counterexample is small *and* shows the fault at full size, not an input that fails by a hair.  Each
counterexample is then cut down further (:mod:`.reduce`: one slice of the independent axis, fewer rows,
ones for dy and γ) while it still shows the same fault.
"""
from __future__ import annotations

import os
import re

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from derive import get_op
from derive.registry import parametric_spec

from .. import strategies
from ..dtypes import resolve_dtype
from .diagnose import diagnose
from .edge_cases import edge_cases as make_edge_cases
from .isolate import IsolationFailure, run_isolated
from .judge import TruthCache, judge_example, scale_measure
from .reduce import reductions
from .result import KINDS, CheckResult, Finding

__all__ = ["check_gradient", "assert_gradient", "MAX_EXAMPLES", "DEFAULT_TIMEOUT"]

MAX_EXAMPLES = 100_000
DEFAULT_TIMEOUT = 60.0
SHRINK_FACTOR = 16.0
#: Examples per check when a caller gives none (the pytest plugin sets it from --gradaudit-examples).
DEFAULT_EXAMPLES = int(os.environ.get("GRADAUDIT_EXAMPLES", "200") or 200)


class _Failed(AssertionError):
    pass


class _Judge:
    """Judges inputs of ``op`` for ``fn`` in ``dtype``; remembers scale measures of what passed and failed."""

    def __init__(self, fn, op, dtype):
        self.fn, self.op, self.dtype = fn, op, dtype
        self.measures: dict = {"pass": []}
        self.truths = TruthCache()

    def __call__(self, args) -> list:
        findings, _ = judge_example(self.fn, self.op, self.dtype, args, self.truths)
        kinds = {f.kind for f in findings if f.severity == "error"} or {"pass"}
        value = self.measure(args)[1]
        for kind in kinds:
            self.measures.setdefault(kind, []).append(value)
        return findings

    def measure(self, args):
        return scale_measure(self.op, args)


def _excess(f: Finding) -> float:
    return f.worst.excess if f.worst is not None else np.inf


def _search(judge: _Judge, strategy, examples: int, seed: int, targets: set, result: CheckResult) -> Finding | None:
    """One Hypothesis search for a fault of a kind in ``targets``; the shrunk finding, or None."""
    state = {"kind": None, "best": 0.0, "last": None, "shrinking": False}

    @hypothesis_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=False, report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink])
    @given(strategy)
    def run(args):
        if not state["shrinking"]:
            result.examples += 1
        hits = [f for f in judge(args) if f.kind in targets]
        if state["kind"] is not None:
            hits = [f for f in hits if f.kind == state["kind"]
                    and (f.kind != "value" or _excess(f) >= state["best"] / SHRINK_FACTOR)]
        if not hits:
            return
        hit = min(hits, key=lambda f: KINDS.index(f.kind))
        state["kind"] = hit.kind
        state["best"] = max(state["best"], _excess(hit) if np.isfinite(_excess(hit)) else state["best"])
        state["last"] = hit
        state["shrinking"] = True
        raise _Failed(hit.message)

    try:
        run()
    except _Failed:
        return state["last"]
    except Exception:          # noqa: BLE001 — e.g. Flaky: the excess bar rose after an example was recorded
        if state["last"] is not None:
            return state["last"]
        raise
    return None


def _split_kwargs(base: str, kwargs: dict) -> tuple[dict, dict]:
    names = {p.name for p in parametric_spec(base)}
    return {k: v for k, v in kwargs.items() if k in names}, {k: v for k, v in kwargs.items() if k not in names}


def check_gradient(fn, op, *, dtype="float64", examples: int | None = None, seed: int = 0, edge_cases: bool = True,
                   params: dict | None = None, isolate: bool = False, timeout: float | None = None,
                   framework: str | None = None, _diagnose: bool = True, **limits) -> CheckResult:
    """Judge ``fn`` — the signature of ``op`` (``gradaudit list``) — against the certified reference.

    ``op``: an op name, with conventions in brackets or as keyword arguments (``reduction="mean"``,
    ``labels="index"``) or in ``params``.  ``dtype``: inputs reach ``fn`` in this dtype and its outputs
    are judged at its tolerance.  ``examples``: Hypothesis examples per search (default 200), plus the
    fixed edge cases unless ``edge_cases=False``.  ``fn`` may take numpy arrays, torch tensors or JAX
    arrays, or be a ``torch.autograd.Function`` (``numeric.adapters``; ``framework`` forces one).
    ``isolate=True`` or a ``timeout`` (seconds) runs the check in a child process, so the code cannot
    exit, hang or print its way into a pass.  Other keyword arguments override the op's input domain
    (``max_abs=50.0``, ``sizes={"k": (2, 8)}``…).
    """
    base = op.base_name if hasattr(op, "base_name") else (op.split("[")[0] if isinstance(op, str) else op)
    conventions, limits = _split_kwargs(base, limits) if isinstance(base, str) else ({}, limits)
    the_op = get_op(op, **{**(params or {}), **conventions})
    dt = resolve_dtype(dtype)
    if not callable(fn):
        raise TypeError(f"fn must be callable with the signature of {the_op.signature()}; got {type(fn).__name__}")
    if examples is None:
        examples = DEFAULT_EXAMPLES
    if not isinstance(examples, int) or isinstance(examples, bool) or not 1 <= examples <= MAX_EXAMPLES:
        raise ValueError(f"examples must be an int from 1 to {MAX_EXAMPLES}; got {examples!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int; got {seed!r}")
    if timeout is not None and (not isinstance(timeout, (int, float)) or not timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds; got {timeout!r}")
    strategy = strategies.op_inputs(the_op, dtype=dt, **limits)     # validates the limits up front
    from ..adapters import to_numpy_callable
    adapted, description = to_numpy_callable(fn, the_op, framework=framework)

    def task():
        return _check(adapted, the_op, dt, examples, seed, edge_cases, strategy, limits, _diagnose)

    if not (isolate or timeout):
        result = task()
    else:
        try:
            result, output = run_isolated(task, timeout=timeout or DEFAULT_TIMEOUT)
            result.output = output
        except IsolationFailure as exc:
            result = CheckResult(the_op.name, dt.name, 0, [Finding("raised", "error", exc.reason)], output=exc.output)
    if description and "numpy function" not in description:
        result.note = f"Checked as: {description}."
    return result


def _check(fn, op, dt, examples, seed, edge_cases, strategy, limits, with_diagnosis) -> CheckResult:
    with np.errstate(all="ignore"):       # overflow in gradaudit's own float64 helpers is expected, not news
        return _check_quietly(fn, op, dt, examples, seed, edge_cases, strategy, limits, with_diagnosis)


def _check_quietly(fn, op, dt, examples, seed, edge_cases, strategy, limits, with_diagnosis) -> CheckResult:
    result = CheckResult(op.name, dt.name, 0)
    judge = _Judge(fn, op, dt)
    found: dict[str, Finding] = {}
    for _ in range(len(KINDS)):
        finding = _search(judge, strategy, examples, seed, set(KINDS) - set(found), result)
        if finding is None:
            break
        found[finding.kind] = finding
    domain = strategies.domain_of(op, dt, **limits)
    if edge_cases:
        for args in make_edge_cases(op, domain):
            result.examples += 1
            for f in judge(args):
                if f.kind not in found or (f.kind == "value" and _excess(f) > _excess(found[f.kind])):
                    found[f.kind] = f
    result.findings = [found[k] for k in KINDS if k in found]
    if with_diagnosis:
        result.findings = [_smallest_diagnosed(f, judge, domain) for f in result.findings]
    return result


def _smallest_diagnosed(finding: Finding, judge: _Judge, domain: dict) -> Finding:
    """``finding`` cut down (:func:`.reduce.reductions`) to the smallest input whose diagnosis reads as the
    full counterexample's does (the same words, numbers aside): a 2-row batch whose two gradients are
    opposite would pass for "off by a constant factor" where 20 rows show cancellation.  Diagnoses are
    compared by bisection along the chain of reductions (each shrinks the one before)."""
    op, dt = judge.op, judge.dtype
    finding.diagnosis = diagnose(finding, op, dt, judge, judge.measures)
    chain = reductions(finding, judge.fn, op, dt, domain, judge.truths, SHRINK_FACTOR)
    wording = _wording(finding.diagnosis)

    def reads_alike(candidate: Finding) -> bool:
        candidate.diagnosis = diagnose(candidate, op, dt, judge, judge.measures)
        return _wording(candidate.diagnosis) == wording
    if len(chain) == 1 or reads_alike(chain[-1]):
        return chain[-1]
    best, lo, hi = finding, 1, len(chain) - 2
    while lo <= hi:
        mid = (lo + hi) // 2
        if reads_alike(chain[mid]):
            best, lo = chain[mid], mid + 1
        else:
            hi = mid - 1
    return best


def _wording(diagnosis: str) -> str:
    """A diagnosis without its numbers."""
    return re.sub(r"[-+−]?\d[\d.,]*(e[-+]?\d+)?", "#", diagnosis)


def assert_gradient(fn, op, *, strict: bool = False, **kw) -> CheckResult:
    """:func:`check_gradient`, raising ``AssertionError`` (every finding: worst element, index, both values,
    ULPs, diagnosis, and the Markdown report) when the check finds an error (or a warning with ``strict``)."""
    result = check_gradient(fn, op, **kw)
    if result.ok and not (strict and result.warnings):
        return result
    lines = [f"{result.op} gradient check failed in {result.dtype}: {len(result.errors)} error(s), "
             f"{len(result.warnings)} warning(s)"]
    for f in result.findings:
        lines.append(f"  {f.severity} ({f.kind}): {f.message}")
        w = f.worst
        if w is not None:
            lines += [f"    worst element: {w.output}{list(w.index)}",
                      f"    got:      {w.got!r}",
                      f"    expected: {w.expected!r}",
                      f"    error: {w.ulps:.4g} ULPs, {w.rel:.3g} relative (κ = {w.kappa:.3g}, tolerance {w.tolerance:.3g}, "
                      f"{w.bound})"]
        if f.diagnosis:
            lines.append(f"    diagnosis: {f.diagnosis}")
    error = AssertionError("\n".join(lines))
    error.result = result                  # the pytest plugin shows result.to_markdown() in the report
    raise error
