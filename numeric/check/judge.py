"""Judging one input: run the user's function and measure every output element against the truth.

Every element is accepted by either of two bounds (numerical analysis' two ways of being right):

* **componentwise** |got − ref| ≤ c · (u · Σ_j |∂f/∂x_j| |x_j|  +  R  +  ulp(ref)), c = 4 + n — the
  first-order sensitivity (κ·|f|, from the symbolically derived JVP), R the radius of the op's stable
  formulation run in ball arithmetic with every step rounding in the dtype, n the length of the
  reduced axes (summation order; subnormal results);
* **normwise** max over the element's slice |got − ref| ≤ c · u · max over the slice of the term
  magnitudes the stable formulation combines (``derive.magnitude``): what a backward-stable algorithm
  guarantees, e.g. a value that is 0 in exact arithmetic but computed as a difference of O(1) terms.

Overflow, cancellation and wrong formulas land far outside both.

Cost: the reference and the normwise bound are computed for every input; most inputs of a correct
function are accepted there (or by the componentwise bound without R), and only the others pay for R
(an arb run of the rounding model and runs of the stable formulation in the dtype) — see
:func:`_all_accepted`, which never accepts an element the full test would flag.
"""
from __future__ import annotations

import math
import traceback
from functools import cached_property, lru_cache

import numpy as np

from derive import Kernel, get_op
from derive.magnitude import magnitude_formulation

from ..arguments import check_arguments
from ..condition import rounding_bounds_of, sensitivities_of
from ..dtypes import finfo
from ..evaluate import as_tuple, kernel
from ..metrics import ulp_at, ulps_at
from ..reference import reference_of
from .result import Finding, WorstCase

__all__ = ["judge_example", "reduced_length", "scale_measure", "Truth", "TruthCache", "ACHIEVED_FACTOR"]

#: The ball-arithmetic rounding radius R is capped at this multiple of the error gradaudit's own stable
#: formulation makes at the same input in the same dtype (interval arithmetic's dependency problem can
#: make R larger than the values themselves in bfloat16, which would let wrong code pass).
ACHIEVED_FACTOR = 32.0
#: ... in the low-precision dtypes only (unit roundoff ≥ 2^-12: float16, bfloat16), where the radius's
#: higher-order terms in u are large; in float32/float64 the radius is tight and covers algorithms (the
#: paper's staged chain) whose rounding of x − μ gradaudit's stable formulation happens not to make.
LOW_PRECISION_U = 2.0 ** -12


class Truth:
    """The reference of one input and the tolerance of every output element (float64 arrays).

    The reference and the normwise bound are computed at once; the componentwise bound's parts only when
    an element needs them (:func:`judge_example` accepts most elements by the normwise bound alone):
    ``sens`` and ``ulps`` (the sensitivities u·Σ|∂f/∂x||x| are one batched JVP run), then
    ``componentwise`` (adds the ball-arithmetic radius and the stable formulation's achieved error, an arb
    run and one or two runs in the dtype).  Each part, once computed, is the same array every later
    reader gets (the truth is cached per rounded input)."""

    def __init__(self, op, rounded, dtype):
        arrays = float64_inputs(op, rounded)       # validated once, by judge_example's check_arguments
        self._op, self._rounded, self._arrays, self._dtype = op, rounded, arrays, dtype
        self.refs = reference_of(op, arrays)
        self.ref64 = tuple(np.asarray(np.frompyfunc(float, 1, 1)(r), dtype=np.float64) if np.ndim(r)
                           else np.float64(float(r[()] if isinstance(r, np.ndarray) else r)) for r in self.refs)
        self.u = float(finfo(dtype).eps) / 2
        self.c = 4 + reduced_length(op, rounded)
        mags = _magnitude_kernel(op.name).run(*arrays)
        self.normwise = tuple(self.c * self.u * _slice_max(np.abs(np.asarray(m, dtype=np.float64)), o.axes,
                                                           op.independent_axis)
                              for m, o in zip(mags, op.outputs))

    @cached_property
    def sens(self) -> tuple:
        """Σ_j |∂f_i/∂x_j| |x_j| per output element (float64, ``numeric.condition``)."""
        return sensitivities_of(self._op, self._arrays)

    @cached_property
    def ulps(self) -> tuple:
        """The dtype's ulp at each reference value (float64)."""
        return tuple(ulps_at(ref, self._dtype, near) for ref, near in zip(self.refs, self.ref64))

    @cached_property
    def lower_componentwise(self) -> tuple:
        """c · (u · sensitivity + ulp) per output element: the componentwise bound without its radius term,
        so never above :attr:`componentwise` (which adds R ≥ 0 — or is nan, which accepts everything)."""
        return tuple(self.c * (self.u * np.asarray(s, dtype=np.float64) + ulp) for s, ulp in zip(self.sens, self.ulps))

    @cached_property
    def componentwise(self) -> list:
        """c · (u · sensitivity + R + ulp) per output element (float64), R the capped ball radius."""
        op, rounded, dtype, u, c = self._op, self._rounded, self._dtype, self.u, self.c
        radii = rounding_bounds_of(op, self._arrays, dtype)
        achieved = self._achieved(op, rounded) if u >= LOW_PRECISION_U else (np.inf,) * len(self.refs)
        out = []
        for s, r, e, ulp in zip(self.sens, radii, achieved, self.ulps):
            r = np.minimum(r, ACHIEVED_FACTOR * e)   # interval radii overestimate; a stable run bounds them
            out.append(c * (u * np.asarray(s, dtype=np.float64) + r + ulp))
        return out

    def _achieved(self, op, rounded) -> tuple:
        """Per element, the larger error gradaudit's stable formulation makes in this dtype at this input and
        at the input with every data element moved by one unit in the last place (inf where it overflows):
        what a backward-stable algorithm can be off by here.  The one-ulp move keeps a lucky exact rounding
        (x − μ of a constant column computed exactly) from setting the bar below what another correct
        algorithm makes of the same input."""
        run = kernel(op.name, op.stable_formulation.name).run
        moved = [_one_ulp_apart(a) if i.role in ("logits", "activations", "upstream", "weight", "") and a.ndim else a
                 for i, a in zip(op.inputs, rounded)]
        errors = [np.zeros(np.shape(r)) for r in self.ref64]
        for args in (rounded, moved):
            for k, (got, ref) in enumerate(zip(as_tuple(run(*args)), self.ref64)):
                g = np.asarray(got).astype(np.float64)
                errors[k] = np.maximum(errors[k], np.where(np.isfinite(g), np.abs(g - ref), np.inf))
        return tuple(errors)


def float64_inputs(op, args) -> list:
    """``args`` of ``op`` in float64 (integer class ids kept as they are)."""
    return [np.asarray(a) if inp.integer else np.asarray(a, dtype=np.float64) for inp, a in zip(op.inputs, args)]


def _one_ulp_apart(a: np.ndarray) -> np.ndarray:
    """``a`` with each finite non-zero element moved to a neighbouring float of its dtype, alternately up
    and down in magnitude (by its bit pattern: works for bfloat16 too)."""
    bits = {2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize]
    raw = np.ascontiguousarray(a).view(bits).copy()
    step = np.where(np.arange(raw.size).reshape(raw.shape) % 2 == 0, 1, -1).astype(np.int64)
    ok = np.isfinite(a.astype(np.float64)) & (a.astype(np.float64) != 0)
    moved = (raw.astype(np.int64) + np.where(ok, step, 0)).astype(bits)
    out = moved.view(a.dtype)
    return np.where(np.isfinite(out.astype(np.float64)), out, a)


@lru_cache(maxsize=None)
def _magnitude_kernel(op_name: str) -> Kernel:
    return Kernel(magnitude_formulation(get_op(op_name).stable_formulation), "numpy")


def _slice_max(mag: np.ndarray, axes, independent) -> np.ndarray:
    """Max of ``mag`` over each slice along ``independent`` (the whole array when it has no such axis)."""
    if mag.ndim == 0:
        return mag
    if independent in axes:
        keep = axes.index(independent)
        other = tuple(k for k in range(mag.ndim) if k != keep)
        return np.broadcast_to(np.max(mag, axis=other, keepdims=True), mag.shape) if other else mag
    return np.broadcast_to(np.max(mag), mag.shape)


def reduced_length(op, args) -> int:
    """n in the tolerance: the number of elements of the first array input that one output combines
    (every axis but the independent one: K for softmax rows, N for batch norm, N·H·W per channel)."""
    first = next((i for i, a in zip(op.inputs, args) if i.axes and not i.integer), None)
    if first is None:
        return 1
    shape = np.shape(args[op.inputs.index(first)])
    return int(np.prod([n for a, n in zip(first.axes, shape) if a != op.independent_axis] or [1]))


def scale_measure(op, args) -> tuple[str, float]:
    """(what, value): max |z| of logits-like inputs, or max |mean|/std of activations per slice."""
    first = next((k for k, i in enumerate(op.inputs) if i.axes and not i.integer), 0)
    inp = op.inputs[first]
    x = np.asarray(args[first], dtype=np.float64)
    if inp.role != "activations":
        return "max |" + inp.name + "|", float(np.max(np.abs(x))) if x.size else 0.0
    over = tuple(k for k, a in enumerate(inp.axes) if a != op.independent_axis)
    std, mean = x.std(axis=over), np.abs(x.mean(axis=over))
    with np.errstate(all="ignore"):
        ratio = np.where(std > 0, mean / np.where(std > 0, std, 1), np.where(mean > 0, np.inf, 0.0))
    return "max |mean|/std", float(ratio.max())


def _call(fn, args):
    """Run the user's function; anything it raises or how it exits is a finding."""
    try:
        with np.errstate(all="ignore"):
            return fn(*args), None
    except KeyboardInterrupt:
        raise
    except SystemExit as exc:
        return None, Finding("raised", "error", f"the function called sys.exit({exc.code!r}): a checked function "
                             "must return its outputs", tuple(args))
    except BaseException as exc:              # noqa: BLE001 — the user's code failing is a finding
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" (at {tb[-1].filename}:{tb[-1].lineno})" if tb else ""
        return None, Finding("raised", "error", f"fn raised {type(exc).__name__}: {exc}{where}", tuple(args))


def _outputs(op, value, dtype, rounded) -> tuple[list, list]:
    """The return value as float64 arrays per output, and findings about its form (kind, shape, dtype)."""
    findings = []
    outs = value if isinstance(value, (tuple, list)) else (value,)
    if len(op.outputs) == 1 and isinstance(value, (tuple, list)) and len(value) != 1:
        outs = (value,)                      # a list of numbers for a single array output
    if len(outs) != len(op.outputs):
        return [], [Finding("output", "error", f"returned {len(outs)} value(s); {op.name} returns "
                            f"{len(op.outputs)} ({', '.join(o.name for o in op.outputs)})", tuple(rounded))]
    arrays = []
    for spec, out in zip(op.outputs, outs):
        if out is None or isinstance(out, (str, bytes, dict)):
            return [], [Finding("output", "error", f"output {spec.name!r} is {type(out).__name__}, expected an array "
                                f"of {dtype} with axes {spec.axes or 'none (a scalar)'}", tuple(rounded))]
        if isinstance(out, (float, int)) and not spec.axes:
            out = np.asarray(out, dtype=dtype if isinstance(out, float) else np.asarray(out).dtype)
        arr = np.asarray(out)
        if arr.dtype == object or arr.dtype.kind not in "fiuV" and str(arr.dtype) != "bfloat16":
            return [], [Finding("output", "error", f"output {spec.name!r} is an array of {arr.dtype}, expected {dtype}",
                                tuple(rounded))]
        if isinstance(out, (list, tuple)):
            findings.append(Finding("dtype", "warning", f"output {spec.name!r} is a Python {type(out).__name__}, not "
                                    f"an array of {dtype}; its values are judged as given", tuple(rounded)))
        elif arr.dtype != dtype:
            wider = arr.dtype.kind == "f" and arr.dtype.itemsize > dtype.itemsize
            findings.append(Finding(
                "dtype", "warning" if wider else "error",
                f"output {spec.name!r} has dtype {arr.dtype}, expected {dtype}" + (
                    " (wider: the values are still judged at the tolerance of " + str(dtype) + ")" if wider else
                    " (precision or type lost)"), tuple(rounded)))
        arrays.append(arr.astype(np.float64))
    return arrays, findings


def _shapes(op, arrays, truth_: Truth, rounded) -> tuple[list, list]:
    fixed, findings = [], []
    for spec, got, ref in zip(op.outputs, arrays, truth_.ref64):
        want = np.shape(ref)
        if got.shape == want:
            fixed.append(got)
        elif got.size == int(np.prod(want)) and [n for n in got.shape if n != 1] == [n for n in want if n != 1]:
            findings.append(Finding("shape", "warning", f"output {spec.name!r} has shape {got.shape}, expected {want} "
                                    "(same elements, length-1 axes dropped or added, e.g. by np.squeeze); its values "
                                    "are judged as if reshaped", tuple(rounded)))
            fixed.append(got.reshape(want))
        else:
            findings.append(Finding("shape", "error", f"output {spec.name!r} has shape {got.shape}, expected {want}",
                                    tuple(rounded)))
            return [], findings
    return fixed, findings


class TruthCache:
    """Truths of the inputs one check has met, by the bytes of the rounded inputs: a search meets the same
    input again (after rounding to the dtype, or through Hypothesis's mutations and shrinking) for 5–40 % of
    its examples, and a :class:`Truth` depends on nothing else.  Holds truths of at most ``max_elements``
    input elements in all (the oldest are dropped first; a larger input is never kept)."""

    def __init__(self, max_elements: int = 1 << 18):
        self.max_elements = max_elements
        self._truths: dict = {}          # key -> (Truth, input elements), in insertion order
        self._elements = 0

    @staticmethod
    def key(rounded) -> tuple:
        return tuple((a.dtype.str, a.shape, a.tobytes()) for a in rounded)

    def get(self, op, rounded, dtype) -> Truth:
        size = sum(a.size for a in rounded)
        if size > self.max_elements // 16:
            return Truth(op, rounded, dtype)
        key = self.key(rounded)
        hit = self._truths.get(key)
        if hit is not None:
            return hit[0]
        truth_ = Truth(op, rounded, dtype)
        self._truths[key] = (truth_, size)
        self._elements += size
        while self._elements > self.max_elements:
            oldest = next(iter(self._truths))
            self._elements -= self._truths.pop(oldest)[1]
        return truth_


def judge_example(fn, op, dtype, args, truths: TruthCache | None = None) -> tuple[list, Truth | None]:
    """All findings on one input (empty when it is right), and the truth computed for it (taken from
    ``truths`` when that cache has met the same rounded input before)."""
    rounded = check_arguments(op, args, dtype)
    user_args = [a.copy() if a.ndim else (a.item() if a.dtype.kind in "iu" else float(a)) for a in rounded]
    value, failure = _call(fn, user_args)
    if failure is not None:
        return [failure], None
    arrays, findings = _outputs(op, value, dtype, rounded)
    if not arrays:
        return findings, None
    truth_ = truths.get(op, rounded, dtype) if truths is not None else Truth(op, rounded, dtype)
    arrays, shape_findings = _shapes(op, arrays, truth_, rounded)
    findings += shape_findings
    if not arrays or _all_accepted(op, arrays, truth_):
        return findings, truth_
    value_worst, nonfinite_worst, counts = None, None, [0, 0]
    for spec, got, ref, ref_mp, tol, ntol, sen in zip(op.outputs, arrays, truth_.ref64, truth_.refs,
                                                      truth_.componentwise, truth_.normwise, truth_.sens):
        with np.errstate(all="ignore"):
            err = np.abs(got - ref)
            finite = np.isfinite(got)
            slice_err = _slice_max(np.where(finite, err, np.inf), spec.axes, op.independent_axis)
            comp = np.where(finite, err / tol, np.inf)
            norm = np.where(finite, slice_err / np.where(ntol > 0, ntol, np.nan), np.inf)
            norm = np.where(np.isnan(norm), np.where(slice_err == 0, 0.0, np.inf), norm)
            excess = np.minimum(comp, norm)
        bad_nonfinite = ~finite & np.isfinite(ref)
        counts[0] += int(np.isinf(got).sum())
        counts[1] += int(np.isnan(got).sum())
        for mask, which in ((bad_nonfinite, "nonfinite"), (finite & (excess > 1), "value")):
            if not np.any(mask):
                continue
            score = np.where(mask, np.where(np.isfinite(excess), excess, np.inf), -1.0)
            idx = np.unravel_index(int(np.argmax(score)), score.shape) if score.ndim else ()
            case = _worst(rounded, spec.name, idx, got, ref, ref_mp, tol, ntol, sen, comp, norm, dtype)
            if which == "nonfinite":
                nonfinite_worst = nonfinite_worst or case
            elif value_worst is None or case.excess > value_worst.excess:
                value_worst = case
    for case in (value_worst, nonfinite_worst):
        if case is not None:
            case.got_all, case.tolerances = tuple(arrays), tuple(truth_.componentwise)
    if nonfinite_worst is not None:
        findings.append(Finding("nonfinite", "error", f"output {nonfinite_worst.output!r}{list(nonfinite_worst.index)} "
                                f"= {nonfinite_worst.got!r} where the exact value is {nonfinite_worst.expected!r}",
                                worst=nonfinite_worst, inf=counts[0], nan=counts[1]))
    if value_worst is not None:
        findings.append(Finding("value", "error", f"output {value_worst.output!r}{list(value_worst.index)} = "
                                f"{value_worst.got!r}, expected {value_worst.expected!r} ({value_worst.excess:.3g}× "
                                "the tolerance of both the componentwise and the normwise bound)", worst=value_worst))
    return findings, truth_


def _all_accepted(op, arrays, truth_: Truth) -> bool:
    """True when no output element can be a finding: every result finite, and every element accepted by
    the normwise bound or, failing that, by the componentwise bound without its radius term
    (:attr:`Truth.lower_componentwise`).  Either implies the full test below accepts it
    (``min(err / componentwise, normwise excess) ≤ 1``), so the verdict is the same; the componentwise
    bound's radius — an arb run and runs in the dtype — is computed only for an input where this says
    False, and the sensitivities only where the normwise bound does not accept every element."""
    undecided = []
    for k, (spec, got, ref, ntol) in enumerate(zip(op.outputs, arrays, truth_.ref64, truth_.normwise)):
        with np.errstate(all="ignore"):
            if not np.isfinite(got).all():
                return False                           # inf/nan results: the full test decides
            err = np.asarray(np.abs(got - ref))
            # the normwise bound is one number per slice, so a slice passes iff each of its elements is
            # within it (finite: an infinite error fails even an infinite bound)
            if ((err <= ntol) & (err < np.inf)).all():
                continue
            slice_err = _slice_max(err, spec.axes, op.independent_axis)
            norm = slice_err / np.where(ntol > 0, ntol, np.nan)        # as in judge_example
            norm = np.where(np.isnan(norm), np.where(slice_err == 0, 0.0, np.inf), norm)
            undecided.append((k, err, ~(norm <= 1)))
    for k, err, left in undecided:
        with np.errstate(all="ignore"):
            if not (err[left] <= np.asarray(truth_.lower_componentwise[k])[left]).all():
                return False
    return True


def _worst(rounded, name, idx, got, ref, ref_mp, tol, ntol, sen, comp, norm, dtype) -> WorstCase:
    g, e = float(got[idx]), float(ref[idx])
    ulp = ulp_at(ref_mp[idx] if np.ndim(ref_mp) else (ref_mp[()] if isinstance(ref_mp, np.ndarray) else ref_mp), dtype)
    finite = math.isfinite(g)
    rel = abs(g - e) / abs(e) if e and finite else (math.inf if finite and g != e else 0.0 if finite else math.inf)
    kappa = float(np.asarray(sen)[idx]) / abs(e) if e else math.inf
    use_norm = float(norm[idx]) < float(comp[idx])
    tolerance = float(np.asarray(ntol)[idx] if use_norm else tol[idx])
    return WorstCase(tuple(rounded), name, tuple(int(i) for i in idx), g, e,
                     abs(g - e) / ulp if finite and ulp > 0 else math.inf, rel, kappa, tolerance,
                     float(min(comp[idx], norm[idx])), "normwise" if use_norm else "componentwise",
                     np.asarray(got), np.asarray(ref))
