"""Error of a float result against a certified reference, measured the way numerical analysts do.

* ULPs of the dtype *at the reference value*: ulp(r) = 2^(max(⌊log2|r|⌋, emin) − p + 1) for a dtype
  with p significand bits (``ml_dtypes.finfo``: float16 p = 11, bfloat16 p = 8, float32 p = 24,
  float64 p = 53); subnormal spacing below the normal range.
* bits of error = log2(1 + ulps); relative error |got − r| / |r|.
* inf, nan and flush-to-zero (got = 0 where the reference rounds to a non-zero float of the dtype) are
  counted separately and excluded from the ULP statistics.
* where the exact value is 0, ULPs, bits and relative error are undefined (any non-zero result would be
  "infinitely many" ULPs of a zero-width scale): those elements are kept out of them and their absolute
  error is reported instead, in units of the dtype's smallest normal number (``abs_at_zero``).

Differences are formed against a double-double image of the reference (float64 hi + lo, 106 bits), so
float64 errors far below one ULP are still measured to 2^-52 relative; elements outside float64's range
take mpmath with the reference's full precision.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import mpmath
import numpy as np
from mpmath.libmp import from_float, fzero, mpf_abs, mpf_cmp, mpf_div, mpf_shift, mpf_sub, to_float

from .dtypes import finfo, resolve_dtype

__all__ = ["ErrorMetrics", "ReferenceImage", "error_metrics", "reference_image", "ulp_at", "ulps_at"]


def _ulp_exponent(ref, dtype) -> int:
    """k with ulp(ref) = 2^k on ``dtype``'s grid (subnormal spacing below the normal range), for any real."""
    info = finfo(dtype)
    emin = int(info.minexp)
    if ref == 0:
        exponent = emin
    else:
        _, e = mpmath.frexp(ref)          # ref = m 2^e with 1/2 ≤ |m| < 1
        exponent = max(int(e) - 1, emin)
    return exponent - int(info.nmant)


def ulp_at(ref: mpmath.mpf, dtype) -> float:
    """Spacing of ``dtype``'s grid at the real number ``ref`` (a Python float, possibly subnormal)."""
    return math.ldexp(1.0, _ulp_exponent(ref, dtype))


def ulps_at(ref, dtype, near=None) -> np.ndarray:
    """:func:`ulp_at` of every element of ``ref`` (an array of ``mpmath.mpf`` or of floats), float64, in
    one numpy pass: the exponent comes from ``np.frexp`` of ``near`` — ``ref`` rounded to float64 (computed
    when not given) —, which is the exact exponent except where rounding carried ``ref`` up to a power of
    two; those elements, and any outside float64's range, are decided by :func:`ulp_at` on the exact value."""
    info = finfo(dtype)
    emin, nmant = int(info.minexp), int(info.nmant)
    ref = np.asarray(ref)
    with np.errstate(all="ignore"):
        near = (np.asarray(np.frompyfunc(float, 1, 1)(ref), dtype=np.float64) if near is None
                else np.asarray(near, dtype=np.float64))
        mantissa, exponent = np.frexp(near)              # near = m 2^e, 1/2 ≤ |m| < 1 (m = e = 0 for 0)
    exponent = np.where(near == 0, emin, np.maximum(exponent.astype(np.int64) - 1, emin))
    out = np.ldexp(1.0, exponent - nmant)
    exact = (np.abs(mantissa) == 0.5) & (exponent > emin) | ~np.isfinite(near)
    out = np.array(out, dtype=np.float64)
    for idx in zip(*np.nonzero(exact)) if out.ndim else [()] if exact else []:
        out[idx] = ulp_at(ref[idx], dtype)
    return out if out.ndim else out[()]


@dataclass
class ErrorMetrics:
    """Per-element errors of one output in one dtype (arrays have the output's shape)."""
    dtype: str
    ulps: np.ndarray         # float64; nan where the result is inf/nan or flushed to zero, or ref = 0
    rel: np.ndarray          # float64 relative error; nan where non-finite or ref = 0
    inf: np.ndarray          # bool
    nan: np.ndarray          # bool
    flush: np.ndarray        # bool: got == 0 although the reference rounds to a non-zero float
    abs_at_zero: np.ndarray  # float64 |got| ÷ smallest normal of the dtype where ref = 0 (finite got); else nan
    reference64: np.ndarray  # float64: the reference rounded to float64 (±inf beyond its range)

    @property
    def size(self) -> int:
        return int(self.ulps.size)

    @property
    def bits(self) -> np.ndarray:
        return np.log2(1 + self.ulps)

    @property
    def finite_ulps(self) -> np.ndarray:
        return self.ulps[np.isfinite(self.ulps)]

    def summary(self) -> dict:
        """median/max ULPs, max bits, max relative error, counts of inf/nan/flush and % non-finite, the
        number of exact zeros and the largest absolute error there (÷ smallest normal; nan if none)."""
        u = self.finite_ulps
        rel = self.rel[np.isfinite(self.rel)]
        at_zero = self.abs_at_zero[np.isfinite(self.abs_at_zero)]
        return {
            "median_ulps": float(np.median(u)) if u.size else math.nan,
            "max_ulps": float(u.max()) if u.size else math.nan,
            "max_bits": float(np.log2(1 + u.max())) if u.size else math.nan,
            "max_rel": float(rel.max()) if rel.size else math.nan,
            "inf": int(self.inf.sum()), "nan": int(self.nan.sum()), "flush": int(self.flush.sum()),
            "pct_nonfinite": 100.0 * float((self.inf | self.nan).sum()) / max(self.size, 1),
            "exact_zeros": int(at_zero.size),
            "max_abs_at_zero": float(at_zero.max()) if at_zero.size else math.nan,
        }


class ReferenceImage(NamedTuple):
    """A reference as float64 arrays: ``hi`` = ref rounded to float64, ``lo`` = (ref − hi) rounded,
    ``zero`` = ref is exactly 0 (see :func:`reference_image`)."""
    hi: np.ndarray
    lo: np.ndarray
    zero: np.ndarray


def reference_image(ref) -> ReferenceImage:
    """The double-double image of ``ref`` (object array of ``mpmath.mpf``) that :func:`error_metrics`
    measures against; compute it once when several results are compared with the same reference."""
    ref = np.asarray(ref, dtype=object)
    with np.errstate(over="ignore"):                       # |ref| beyond float64: hi = ±inf (exact path)
        hi, lo, zero = (np.asarray(a, dtype=t).reshape(ref.shape)
                        for a, t in zip(_double_double(ref), (np.float64, np.float64, bool)))
    return ReferenceImage(hi, lo, zero)


def error_metrics(got, ref, dtype, *, image: ReferenceImage | None = None) -> ErrorMetrics:
    """Compare ``got`` (array of ``dtype``) with ``ref`` (object array of ``mpmath.mpf``, same shape);
    ``image``: :func:`reference_image` of ``ref`` when already computed.

    Vectorised over the double-double image of the reference: |got − ref| = |(got − hi) − lo| is formed
    with one rounding (got − hi is exact by Sterbenz' lemma whenever the error is below |ref|/2), within
    2^-52 of its exact value, relatively; got = 0 is a flush when |ref| > half the dtype's smallest
    subnormal, decided exactly from hi and the sign of lo.  Elements the float64 image cannot stand for —
    ref beyond float64's range or below its smallest normal — take the exact path, :func:`_exact_element`."""
    dt = resolve_dtype(dtype)
    got = np.asarray(got)
    ref = np.asarray(ref, dtype=object)
    if got.shape != ref.shape:
        raise ValueError(f"got has shape {got.shape} but the reference has shape {ref.shape}")
    g64 = got.astype(np.float64)
    hi, lo, zero = image if image is not None else reference_image(ref)
    ulps = np.full(got.shape, np.nan)
    rel = np.full(got.shape, np.nan)
    at_zero = np.full(got.shape, np.nan)
    finite = np.isfinite(g64)
    at_zero[finite & zero] = np.abs(g64[finite & zero]) / float(finfo(dt).smallest_normal)
    with np.errstate(invalid="ignore"):
        normal = finite & ~zero & np.isfinite(hi) & (np.abs(hi) >= np.finfo(np.float64).smallest_normal)
    half = float(finfo(dt).smallest_subnormal) / 2        # a float64 number except for float64 (then 0)
    above = (np.abs(hi) > half) | ((np.abs(hi) == half) & (lo * np.sign(hi) > 0))       # |ref| > half, exactly
    flush = normal & (g64 == 0) & above
    regular = normal & ~flush
    with np.errstate(all="ignore"):
        diff = np.abs((g64[regular] - hi[regular]) - lo[regular])
        ulps[regular] = diff / ulps_at(ref[regular], dt, near=hi[regular])
        rel[regular] = diff / np.abs(hi[regular])
    rest = finite & ~zero & ~normal
    if rest.any():
        info = finfo(dt)
        half_smallest = mpf_shift(from_float(float(info.smallest_subnormal)), -1)   # (in floats it would be 0)
        emin, nmant = int(info.minexp), int(info.nmant)
        for idx in zip(*np.nonzero(rest)):
            ulps[idx], rel[idx], flush[idx] = _exact_element(float(g64[idx]), ref[idx], emin, nmant, half_smallest)
    return ErrorMetrics(dt.name, ulps, rel, np.isinf(g64), np.isnan(g64), flush, at_zero, hi)


def _split(r) -> tuple:
    # (sign, mantissa, exponent, bits) of the exact value: mpmath.mpf(r) would round an mpf (or a lazily
    # converted one, numeric.engines.arb_arrays.LazyMpf) to the context's 53 bits
    t = r._mpf_ if isinstance(r, mpmath.mpf) else from_float(float(r))
    hi = to_float(t, rnd="n")
    lo = to_float(mpf_sub(t, from_float(hi), 53, "n"), rnd="n") if math.isfinite(hi) else 0.0
    return hi, lo, t == fzero


_double_double = np.frompyfunc(_split, 1, 3)      # ref → (hi, lo, ref == 0) object arrays


_EXACT_BITS = 256


def _exact_element(g: float, r, emin: int, nmant: int, half_smallest: tuple) -> tuple[float, float, bool]:
    """(ULPs, relative error, flushed) of one finite ``g`` against a non-zero ``r`` (an ``mpf``) on the grid of
    a dtype with ``emin``/``nmant`` (``finfo``), the definition the vectorised path follows: |g − r| rounded
    to 256 bits, divided by ulp(r) = 2^k (exact) and by |r| (rounded to 256 bits), each rounded to a float.
    ``half_smallest``: half the dtype's smallest subnormal, an mpf tuple.  On mpmath's raw number tuples
    (``mpmath.libmp``): the same operations as ``mpf`` arithmetic at 256 bits, without its objects."""
    t = r._mpf_ if isinstance(r, mpmath.mpf) else from_float(float(r))
    magnitude = mpf_abs(t)
    if g == 0 and mpf_cmp(magnitude, half_smallest) > 0:
        return math.nan, math.nan, True
    exponent = max(t[2] + t[3] - 1, emin) - nmant          # r = man·2^exp, 2^(exp+bc−1) ≤ |r| < 2^(exp+bc)
    diff = mpf_abs(mpf_sub(from_float(g), t, _EXACT_BITS, "n"))
    return (to_float(mpf_shift(diff, -exponent), rnd="n"),
            to_float(mpf_div(diff, magnitude, _EXACT_BITS, "n"), rnd="n"), False)
