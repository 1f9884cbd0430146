"""Where formulations break, found by bisection on the dtype's own grid, beside the analytic value.

Bisection runs over the *integer codes* of positive floats (their bit patterns order like the values),
so the answer is an adjacent pair of representable numbers: the last input that behaves and the first
that does not.  Predicates are evaluated with ``numeric.evaluate`` — the lambdified kernels themselves.
A coarse log-spaced scan first finds the earliest failure, so non-monotone predicates report their
first transition on the scan's grid, not an arbitrary one; for 16-bit dtypes, where a predicate can be
asked for many values at once, every representable value is scanned and the first transition is exact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from derive.program import Reduce

from .dtypes import DTYPES, finfo, resolve_dtype
from .evaluate import as_tuple, evaluate

__all__ = ["Threshold", "grid_bisect", "grid_search", "find_thresholds", "precision_bits", "op_thresholds",
           "probe_inputs", "stacked_probes"]


def precision_bits(dtype) -> int:
    """Significand bits p (implicit bit included): float16 11, bfloat16 8, float32 24, float64 53."""
    return int(finfo(dtype).nmant) + 1


def _codes(dtype):
    dt = resolve_dtype(dtype)
    return dt, np.dtype(f"uint{8 * dt.itemsize}")


def _from_code(code: int, dtype) -> float:
    dt, ut = _codes(dtype)
    return float(np.array(code, dtype=ut).view(dt))


def _to_code(value: float, dtype) -> int:
    dt, ut = _codes(dtype)
    return int(np.array(value, dtype=dt).view(ut))


def _values_of_codes(first: int, last: int, dtype) -> np.ndarray:
    """The values of ``dtype`` with bit patterns ``first`` … ``last`` (inclusive), as float64 (exact)."""
    dt, ut = _codes(dtype)
    return np.arange(first, last + 1).astype(ut).view(dt).astype(np.float64)


def grid_bisect(predicate: Callable[[float], bool], lo: float, hi: float, dtype) -> tuple[float, float]:
    """Adjacent floats (a, b) of ``dtype`` with ``predicate(a)`` false and ``predicate(b)`` true.

    ``0 ≤ lo < hi`` must be representable with predicate(lo) false and predicate(hi) true.
    """
    a, b = _to_code(lo, dtype), _to_code(hi, dtype)
    if predicate(_from_code(a, dtype)) or not predicate(_from_code(b, dtype)):
        raise ValueError(f"grid_bisect needs predicate(lo) false and predicate(hi) true; lo={lo!r}, hi={hi!r}")
    while b - a > 1:
        mid = (a + b) // 2
        if predicate(_from_code(mid, dtype)):
            b = mid
        else:
            a = mid
    return _from_code(a, dtype), _from_code(b, dtype)


def grid_search(scan: Callable[[np.ndarray], np.ndarray], lo: float, hi: float, dtype,
                width: int = 64) -> tuple[float, float]:
    """Like :func:`grid_bisect`, for a predicate answered many values at a time: ``scan(values)`` (float64
    array) → bool array.  Each round asks ``width`` codes spread over the bracket and keeps the pair around
    the first true one, so a bracket of 2^52 codes takes 9 rounds instead of 52 bisection steps (and, where
    the predicate is not monotone, the earliest transition among the codes asked).  ``scan(lo)`` must be
    false and ``scan(hi)`` true (not checked: the caller brackets)."""
    a, b = _to_code(lo, dtype), _to_code(hi, dtype)
    while b - a > 1:
        n = min(width, b - a - 1)
        codes = sorted({a + (b - a) * k // (n + 1) for k in range(1, n + 1)})     # exact: Python integers
        hits = np.flatnonzero(scan(np.array([_from_code(c, dtype) for c in codes])))
        if hits.size == 0:
            a = codes[-1]
        else:
            j = int(hits[0])
            a, b = (codes[j - 1] if j else a), codes[j]
    return _from_code(a, dtype), _from_code(b, dtype)


def first_failure(predicate, lo: float, hi: float, dtype, points: int = 400, *,
                  scan=None, chunk=None) -> tuple[float, float] | None:
    """Earliest transition of ``predicate`` on ``[lo, hi]``: a log-spaced scan, then :func:`grid_bisect`.

    ``scan(values)``, when given, answers the predicate for many values at once (a bool array).  For a
    16-bit dtype it is then asked every representable value of [lo, hi], so the transition is the first
    one even where the predicate is not monotone; otherwise the grid is scanned, and the bracket around
    its first true value is searched with :func:`grid_search` (an isolated earlier failure between two
    grid values can be missed).  The pair found is confirmed with ``predicate``; where the two disagree
    the grid is scanned with ``predicate`` after all.  Without ``scan``, a group test ``chunk`` (see
    :func:`_first_true`) spares asking ``predicate`` at grid values it clears."""
    dt = resolve_dtype(dtype)
    if scan is not None and dt.itemsize <= 2:
        return _first_of_every_code(predicate, scan, lo, hi, dt)
    grid = np.unique(np.geomspace(lo, hi, points).astype(dt).astype(np.float64))
    if scan is not None:
        hits = np.flatnonzero(scan(grid))
        if hits.size == 0:
            return None
        i = int(hits[0])
        if i == 0:
            return None
        if predicate(float(grid[i])) and not predicate(float(grid[i - 1])):
            a, b = grid_search(scan, float(grid[i - 1]), float(grid[i]), dt)
            if predicate(b) and not predicate(a):          # the stacked and the one-row evaluations agree
                return a, b
            return grid_bisect(predicate, float(grid[i - 1]), float(grid[i]), dt)
    values = [float(v) for v in grid]
    i = _first_true(predicate, values, chunk if scan is None else None)
    if i is None or i == 0:
        return None
    return grid_bisect(predicate, values[i - 1], values[i], dt)


def _first_true(predicate, values: list, chunk=None, size: int = 256) -> int | None:
    """Index of the first of ``values`` (floats, in order) where ``predicate`` is true, or None.

    ``chunk(values)``, when given, is a group test: (per-value flags, whole-group flag) from one stacked
    evaluation, where a value whose one-row evaluation fails is always flagged, or the group is (see
    :func:`_chunk_flags`).  Values neither flagged nor in a flagged group are cleared without asking; a
    flagged group is halved and each half tested again (a sum over many large probes can overflow where no
    single probe does), down to ``_ASK_ALL`` values, which are all asked.  Flagged values are asked of the
    one-row ``predicate`` in order, ``size`` values per group: the answer is the one-at-a-time scan's."""
    for start in range(0, len(values), size):
        k = _first_in_group(predicate, values[start:start + size], chunk)
        if k is not None:
            return start + k
    return None


_ASK_ALL = 8        # a flagged group this small is asked value by value


def _first_in_group(predicate, part: list, chunk) -> int | None:
    if chunk is None:
        ask = np.ones(len(part), dtype=bool)
    else:
        flags, group = chunk(np.array(part))
        if group and len(part) > _ASK_ALL:
            half = len(part) // 2
            k = _first_in_group(predicate, part[:half], chunk)
            if k is not None:
                return k
            k = _first_in_group(predicate, part[half:], chunk)
            return None if k is None else half + k
        ask = np.ones(len(part), dtype=bool) if group else flags
    for k, (value, asked) in enumerate(zip(part, ask)):
        if asked and predicate(value):
            return k
    return None


def _first_of_every_code(predicate, scan, lo: float, hi: float, dt, chunk: int = 8192):
    """:func:`first_failure` for a 16-bit dtype: every representable value of [lo, hi] is scanned, so the
    transition returned is the first one — exact even where the predicate is not monotone.  The pair is
    confirmed with the one-row ``predicate``; where the stacked scan disagrees, every code is scanned again
    with ``predicate`` alone."""
    first, last = _to_code(lo, dt), _to_code(hi, dt)
    if _from_code(last, dt) > hi:
        last -= 1                                          # hi rounded up: stay within [lo, hi]
    for start in range(first, last + 1, chunk):
        hits = np.flatnonzero(scan(_values_of_codes(start, min(start + chunk - 1, last), dt)))
        if hits.size:
            i = start - first + int(hits[0])
            if i == 0:
                return None
            a, b = _from_code(first + i - 1, dt), _from_code(first + i, dt)
            if predicate(b) and not predicate(a):
                return a, b
            break
    else:
        return None
    # the stacked scan disagreed: one row at a time
    values = _values_of_codes(first, last, dt).tolist()
    i = _first_true(predicate, values)
    return None if i is None or i == 0 else (values[i - 1], values[i])


def _first_below(predicate, lo: float, found: tuple[float, float], dt, chunk=None,
                 size: int = 256) -> tuple[float, float]:
    """The first transition of ``predicate`` among every value of a 16-bit ``dt`` from ``lo`` up to
    ``found[1]`` (a failure found by a grid scan): for ops whose probes cannot be stacked (an output sums
    over the rows) the scan of every value stops at the failure found, so a failure reported is the first
    one (an isolated failure between grid values with none on the grid at all would still be missed).
    ``chunk``: the group test of :func:`_first_true`."""
    values = _values_of_codes(_to_code(lo, dt), _to_code(found[1], dt), dt).tolist()
    i = _first_true(predicate, values, chunk, size)
    if i is None or i == 0:
        return found
    return values[i - 1], values[i]


def _reduced_over_rows(op, form: str) -> bool:
    """Every output of formulation ``form`` without the op's independent axis is a sum, mean or max over
    that axis: then a one-row probe's non-finite contribution stays non-finite in a stack of probes (inf
    and nan survive the reduction), which :func:`_chunk_flags` relies on."""
    steps = {s.name: s for s in op.formulations[form].steps}
    axis = op.independent_axis
    return all(o.name in steps and isinstance(steps[o.name], Reduce) and axis in steps[o.name].over
               for o in op.outputs if axis not in o.axes)


def _chunk_flags(op, form: str, sign: float, values, dt) -> tuple[np.ndarray, bool]:
    """One evaluation of the probes of ``values`` stacked along the independent axis (slices along it never
    interact, by the op's definition): per value, whether an output that keeps the axis is non-finite in
    its slice, and whether an output reduced over the axis is non-finite (it may hide which slice; a sum
    of finite slices can also overflow — the one-row predicate decides)."""
    axis = op.independent_axis
    flags, group = np.zeros(len(values), dtype=bool), False
    for o, out in zip(op.outputs, as_tuple(evaluate(op.name, *stacked_probes(op, values, sign), dtype=dt,
                                                    formulation=form))):
        out = np.asarray(out, dtype=np.float64)
        if axis in o.axes:
            flags |= ~np.isfinite(np.moveaxis(out, o.axes.index(axis), 0).reshape(len(values), -1)).all(axis=1)
        else:
            group = group or not np.isfinite(out).all()
    return flags, group


@dataclass(frozen=True)
class Threshold:
    """One breaking point: ``found`` = (last good, first bad) on the dtype grid, ``analytic`` its formula value."""
    name: str
    dtype: str
    found: tuple[float, float] | None
    analytic: float
    formula: str
    unit: str
    slack_ulps: int = 1          # grid steps of disagreement allowed (rounding inside the predicate)
    factor: float = 1.0          # analytic value is an onset: the transition may lie up to factor × it

    @property
    def agrees(self) -> bool:
        """The found transition lies in [analytic − slack, analytic·factor + slack] (slack in grid steps)."""
        if self.found is None:
            return False
        a, b = self.found
        slack = self.slack_ulps * (b - a)
        return self.analytic - slack <= b and a <= self.analytic * self.factor + slack


def _nonfinite(out) -> bool:
    return not all(np.all(np.isfinite(np.asarray(o, dtype=np.float64))) for o in as_tuple(out))


def _softmax_overflow(dtype):
    return lambda v: _nonfinite(evaluate("softmax", np.array([[v, 0.0]]), dtype=dtype, formulation="naive"))


def _ce_overflow(dtype):
    return lambda v: _nonfinite(evaluate("cross_entropy", np.array([[v, 0.0]]), np.array([[0.0, 1.0]]),
                                         dtype=dtype, formulation="naive"))


def _one_pass_breaks(dtype):
    """x = [m − 1, m + 1] (std 1, mean m), eps = 0: the one-pass variance reaches ≤ 0 → inf/nan."""
    def predicate(m):
        return bool(_one_pass_breaks_at(dtype)(np.array([m]))[0])
    return predicate


def _one_pass_breaks_at(dtype):
    """:func:`_one_pass_breaks` for many m at once: one feature (column) per m, features never interact."""
    def scan(values):
        values = np.asarray(values, dtype=np.float64)
        x = np.stack([values - 1.0, values + 1.0])
        k = values.size
        y = evaluate("batchnorm", x, np.ones(k), np.zeros(k), 0.0, dtype=dtype, formulation="one_pass")
        return ~np.isfinite(np.asarray(y, dtype=np.float64)).all(axis=0)
    return scan


def _eps_ignored(dtype, eps):
    dt = resolve_dtype(dtype)
    e = np.array(eps, dtype=dt)
    return lambda v: bool(np.array(v, dtype=dt) + e == np.array(v, dtype=dt))


def _eps_no_longer_dominates(dtype, eps):
    """Batch x = ±√v has variance v; x̂ = ±√(v/(v+ε)) reaches 1/√2 exactly when v ≥ ε."""
    def predicate(v):
        root = math.sqrt(v)
        y = evaluate("batchnorm", np.array([[-root], [root]]), np.ones(1), np.zeros(1), eps, dtype=dtype,
                     formulation="two_pass")
        return abs(float(np.asarray(y, dtype=np.float64)[1, 0])) >= 1 / math.sqrt(2)
    return predicate


def _staged_overflows(dtype, eps):
    """Zero-variance column (x constant), dy = ±1: the staged chain's (σ² + ε)^(−3/2) = rstd³ overflows
    once var + ε < max^(−2/3).  Predicate on the variance v of x = ±√v."""
    def predicate(v):
        root = math.sqrt(v)
        x = np.array([[-root], [root], [-root], [root]])
        out = evaluate("batchnorm_backward", x, np.ones(1), np.array([[1.0], [-1.0], [0.5], [0.25]]), eps,
                       dtype=dtype, formulation="staged")
        return not _nonfinite(out)
    return predicate


def find_thresholds(dtypes=tuple(DTYPES), eps_values=(1e-5, 1e-3)) -> list[Threshold]:
    """Every threshold of the report, for each dtype in ``dtypes``."""
    with np.errstate(all="ignore"):
        return [t for name in dtypes for t in _thresholds_for(name, eps_values)]


def _thresholds_for(name, eps_values) -> list[Threshold]:
    """The thresholds of one dtype (see :func:`find_thresholds`)."""
    out = []
    dt = resolve_dtype(name)
    info = finfo(dt)
    big = float(info.max)
    p = precision_bits(dt)
    ln_max = math.log(big)
    out.append(Threshold("naive softmax: first logit gap z₀ − z₁ with inf/nan output", dt.name,
                         first_failure(_softmax_overflow(dt), 1.0, min(big, 1e6), dt), ln_max,
                         "ln(max)", "logit"))
    out.append(Threshold("naive cross-entropy: first logit gap with inf/nan loss", dt.name,
                         first_failure(_ce_overflow(dt), 1.0, min(big, 1e6), dt), ln_max, "ln(max)", "logit"))
    out.append(Threshold("one-pass variance (x = m ± 1, ε = 0): first mean/std ratio with inf/nan", dt.name,
                         first_failure(_one_pass_breaks(dt), 1.0, min(math.sqrt(big) / 2, 1e12), dt,
                                       scan=_one_pass_breaks_at(dt)),
                         2.0 ** ((p - 1) / 2) - 1, "onset 2^((p−1)/2) − 1, where (m + 1)² reaches 2^(p−1), "
                         "so its ulp is 1 and the roundings of m ± 1 and of their squares can cancel the "
                         "true variance 1; certain by 2^((p+1)/2)", "mean/std", factor=2.0))
    for eps in eps_values:
        e = float(np.array(eps, dtype=dt))
        ignored_from = 2.0 ** (math.floor(math.log2(e)) + p + 1)
        out.append(Threshold(f"ε = {eps:g}: variance above which var + ε == var", dt.name,
                             first_failure(_eps_ignored(dt, eps), e, min(big, 1e30), dt), ignored_from,
                             "2^(⌊log2 ε⌋ + p + 1): ε below half an ulp of var", "variance"))
        out.append(Threshold(f"ε = {eps:g}: variance below which ε dominates (|x̂| < 1/√2)", dt.name,
                             first_failure(_eps_no_longer_dominates(dt, eps),
                                           max(e / 100, float(info.smallest_subnormal)), e * 100, dt),
                             e, "v = ε (measured through x = ±√v, so a few ulps of rounding)", "variance",
                             slack_ulps=8))
        onset = big ** (-2.0 / 3.0) - e
        if onset > float(info.smallest_normal):
            out.append(Threshold(f"ε = {eps:g}: staged backward, variance below which rstd³ overflows", dt.name,
                                 first_failure(_staged_overflows(dt, eps), max(onset / 1e4, float(info.smallest_subnormal)),
                                               onset * 1e4, dt),
                                 onset, "max^(−2/3) − ε: (σ² + ε)^(−3/2) exceeds the largest float", "variance",
                                 slack_ulps=16))
    return out



# ---------------------------------------------------------------- any op: where a formulation overflows

#: Analytic values an op may name in ``op.domain["thresholds"]`` ({formulation: key}), as magnitudes m of
#: the probe input.  A fixed table: a hint is looked up, never evaluated.
ANALYTIC = {
    "ln(max)": lambda info, p: math.log(float(info.max)),
    "sqrt(max)": lambda info, p: math.sqrt(float(info.max)),
    "2^((p-1)/2)": lambda info, p: 2.0 ** ((p - 1) / 2),
}


def probe_inputs(op, m: float, sign: float = 1.0) -> tuple:
    """One-row inputs of ``op`` (float64) where only the first array input depends on the magnitude ``m``.

    The independent axis has length 1, every other axis length 2.  First array input by role: logits
    ``[[sign·m, 0]]`` (first element sign·m, the rest 0); activations ``m − 1, m + 1`` alternating (mean m,
    std 1, mean/std ratio m); any other role ``[[sign·m, 0]]`` as for logits.  Other inputs: label rows
    one-hot on the last class, class ids 0, ε = 0, temperature 1, momentum 0.1, positive values and
    weights and upstream gradients 1.
    """
    return stacked_probes(op, np.array([float(m)]), sign)


def stacked_probes(op, values, sign: float = 1.0) -> tuple:
    """The :func:`probe_inputs` of every magnitude in ``values`` (1-d float64), stacked along the op's
    independent axis in that order (an input without that axis: the one shared value)."""
    from derive import get_op

    op = get_op(op)
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    axis = op.independent_axis
    sizes = {a: 1 if a == axis else 2 for a in op.reference.axis_order}
    first = next((i for i in op.inputs if i.axes and not i.integer), None)
    args = []
    for inp in op.inputs:
        shape = tuple(sizes.get(a, 2) for a in inp.axes)
        role = inp.role or "logits"
        if inp is first:
            size = math.prod(shape)
            if role == "activations":
                rows = values[:, None] + np.where(np.arange(size) % 2 == 0, -1.0, 1.0)     # m − 1, m + 1, …
            else:
                rows = np.zeros((n, size))
                rows[:, 0] = sign * values
            args.append(_stack(rows.reshape((n, *shape)), inp, axis))
            continue
        if role in ("labels", "onehot"):
            a = np.zeros(shape)
            a[..., -1] = 1.0
        elif role == "index":
            a = np.zeros(shape, dtype=np.int64)
        elif role == "eps":
            args.append(0.0)
            continue
        elif role == "fraction":
            args.append(0.1)
            continue
        else:
            a = np.ones(shape) if shape else 1.0
        args.append(np.repeat(a, n, axis=inp.axes.index(axis)) if axis in inp.axes else a)
    return tuple(args)


def _stack(per_probe: np.ndarray, inp, axis: str) -> np.ndarray:
    """(n, *shape) probes of one input → one array, probes along ``axis`` (length 1 in each probe)."""
    if axis not in inp.axes:
        return per_probe[0]
    return np.concatenate(per_probe, axis=inp.axes.index(axis))


def _reference_finite(op, args, dtype) -> bool:
    """The certified value at ``args`` (rounded to ``dtype`` first) is finite once rounded to ``dtype``."""
    from .engines.fast import rounded_reference
    from .reference import ReferenceNotCertified

    dt = resolve_dtype(dtype)
    rounded = tuple(np.asarray(a, dtype=dt).astype(np.float64) if np.asarray(a).dtype.kind == "f" else a
                    for a in args)
    with np.errstate(all="ignore"):
        try:               # rounded to dt directly: via float64 a value just below MAX + ½ulp could tie to inf
            out = rounded_reference(op, *rounded, dtype=dt).values
        except (ReferenceNotCertified, ZeroDivisionError):        # undefined there (e.g. 0/0): no threshold
            return False
        return all(np.all(np.isfinite(np.asarray(o).astype(np.float64))) for o in out)


def _rows_apart(op) -> bool:
    """Probes at many magnitudes can share one evaluation: stacked along the op's independent axis (rows
    never interact), every output keeps that axis, and the magnitude's input has it."""
    axis = op.independent_axis
    first = next((i for i in op.inputs if i.axes and not i.integer), None)
    return first is not None and axis in first.axes and all(axis in o.axes for o in op.outputs)


def _nonfinite_rows(op, form: str, sign: float, values, dt) -> np.ndarray:
    """For each magnitude in ``values``: does ``form`` return inf/nan on :func:`probe_inputs` there?  One
    evaluation with the probes stacked along the independent axis (see :func:`_rows_apart`: every output
    keeps that axis, so :func:`_chunk_flags` has no whole-group flag to add here)."""
    flags, group = _chunk_flags(op, form, sign, values, dt)
    return flags | group


def op_thresholds(op, dtypes=tuple(DTYPES)) -> list[Threshold]:
    """For each formulation of ``op`` and dtype: the first magnitude m of :func:`probe_inputs` (on the dtype's
    grid, positive and negative sign for non-activation inputs) where the formulation returns inf/nan while the
    certified reference is finite.  Formulations that never break on the scanned range give no threshold.
    The analytic value is the one ``op.domain["thresholds"]`` names (keys of :data:`ANALYTIC`; a formulation
    name with a trailing "-" names the threshold of the negative side), else NaN."""
    from derive import get_op

    op = get_op(op)
    first = next((i for i in op.inputs if i.axes and not i.integer), None)
    if first is None:
        return []
    activations = first.role == "activations"
    hints = dict(op.domain.get("thresholds", {}) or {})
    out = []
    with np.errstate(all="ignore"):
        for name in dtypes:
            dt = resolve_dtype(name)
            info, p = finfo(dt), precision_bits(dt)
            big = float(info.max)
            hi = min(big / 4, 1e12) if activations else min(big, 1e6)         # m + 1 stays finite
            for form in op.formulations:
                for sign in ((1.0,) if activations else (1.0, -1.0)):
                    def predicate(m, form=form, sign=sign):
                        return _nonfinite(evaluate(op.name, *probe_inputs(op, m, sign), dtype=dt, formulation=form))

                    def scan(values, form=form, sign=sign):
                        return _nonfinite_rows(op, form, sign, values, dt)
                    stacked = _rows_apart(op)
                    chunk = (lambda values, form=form, sign=sign: _chunk_flags(op, form, sign, values, dt)) \
                        if not stacked and _reduced_over_rows(op, form) else None
                    found = first_failure(predicate, 1.0, hi, dt, scan=scan if stacked else None, chunk=chunk)
                    if found is None or not _reference_finite(op.name, probe_inputs(op, found[1], sign), dt):
                        continue
                    if not stacked and dt.itemsize <= 2:        # every value below the failure found
                        earliest = _first_below(predicate, 1.0, found, dt, chunk)
                        if _reference_finite(op.name, probe_inputs(op, earliest[1], sign), dt):
                            found = earliest
                    key = hints.get(form + "-") if sign < 0 else hints.get(form)    # "naive-": the −m side
                    analytic = ANALYTIC[key](info, p) if key in ANALYTIC else math.nan
                    probe = (f"{first.name} = m ∓ 1" if activations else
                             f"{first.name} = [[{'−' if sign < 0 else ''}m, 0]]")
                    out.append(Threshold(f"{op.name} `{form}`: first m with inf/nan output at {probe} "
                                         "(certified value finite)", dt.name, found, analytic,
                                         key if key in ANALYTIC else "—", "magnitude"))
    return out
