"""The tutorial's worked examples (``shared/reference/tutorial-batchnorm-softmax.md``), checked.

Each claim is a number the tutorial prints, transcribed with its line, beside the certified value
(``numeric.reference`` for op outputs; exact rational arithmetic for batch means and variances).  A claim
agrees when it is within one unit of its last printed digit — the tutorial rounds intermediate results,
so half a unit would be too strict — and is wrong otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import mpmath
import numpy as np

from .reference import reference

__all__ = ["Claim", "CLAIMS", "audit"]


@dataclass(frozen=True)
class Claim:
    family: str                 # report it belongs to
    line: int                   # line of the tutorial where the numbers are printed
    what: str
    claimed: tuple
    decimals: int
    exact: Callable[[], list]   # certified values, same length as ``claimed``


def _softmax_row(z):
    return list(reference("softmax", np.array([z]))[0])


def _loss(z, k):
    y = np.zeros((1, len(z)))
    y[0, k] = 1.0
    return [reference("cross_entropy", np.array([z]), y)[()]]


def _gradient(z, k):
    y = np.zeros((1, len(z)))
    y[0, k] = 1.0
    return list(reference("cross_entropy_backward", np.array([z]), y)[0])


def _mean(values):
    return [Fraction(sum(Fraction(v) for v in values), len(values))]


def _variance(values):
    xs = [Fraction(v) for v in values]
    mu = sum(xs) / len(xs)
    return [sum((x - mu) ** 2 for x in xs) / len(xs)]


def _normalized(values, eps=1e-5):
    x = np.array(values, dtype=np.float64).reshape(-1, 1)
    return list(reference("batchnorm", x, np.ones(1), np.zeros(1), eps)[:, 0])


_Z = ([2.3, 0.5, 1.2, 0.8], [1.1, 3.8, 1.5, 0.9], [0.8, 1.2, 4.5, 1.0])     # logits, lines 2507-2509
_NEURONS = ((0.56, 2.31, 1.78, -0.45), (-0.23, 0.87, 2.45, 0.12), (1.45, -1.12, 0.34, 0.89))

CLAIMS: tuple[Claim, ...] = (
    Claim("softmax", 2149, "softmax([2.0, 1.0, 0.1])", (0.659, 0.242), 3, lambda: _softmax_row([2.0, 1.0, 0.1])[:2]),
    Claim("softmax", 2520, "sample 1: softmax([2.3, 0.5, 1.2, 0.8])", (0.581, 0.096, 0.193, 0.130), 3,
          lambda: _softmax_row(_Z[0])),
    Claim("softmax", 2530, "sample 2: softmax([1.1, 3.8, 1.5, 0.9])", (0.055, 0.818, 0.082, 0.045), 3,
          lambda: _softmax_row(_Z[1])),
    Claim("softmax", 2540, "sample 3: softmax([0.8, 1.2, 4.5, 1.0])", (0.023, 0.034, 0.916, 0.028), 3,
          lambda: _softmax_row(_Z[2])),
    Claim("softmax", 2805, "stable softmax([1000, 1001, 1002])", (0.090, 0.245, 0.665), 3,
          lambda: _softmax_row([1000.0, 1001.0, 1002.0])),
    Claim("softmax", 2663, "temperature T = 1: softmax([3, 2, 1])", (0.665, 0.245, 0.090), 3,
          lambda: _softmax_row([3.0, 2.0, 1.0])),
    Claim("softmax", 2673, "temperature T = 0.5: softmax([6, 4, 2])", (0.867, 0.117, 0.016), 3,
          lambda: _softmax_row([6.0, 4.0, 2.0])),
    Claim("softmax", 2685, "temperature T = 2: softmax([1.5, 1, 0.5])", (0.506, 0.307, 0.186), 3,
          lambda: _softmax_row([1.5, 1.0, 0.5])),
    Claim("softmax", 2697, "temperature T = 10: softmax([0.3, 0.2, 0.1])", (0.367, 0.332, 0.301), 3,
          lambda: _softmax_row([0.3, 0.2, 0.1])),
    Claim("softmax", 3680, "softmax([3, 1, 2])", (0.665, 0.090, 0.245), 3, lambda: _softmax_row([3.0, 1.0, 2.0])),
    Claim("softmax", 3694, "softmax([1, 1, 1])", (0.333, 0.333, 0.333), 3, lambda: _softmax_row([1.0, 1.0, 1.0])),
    Claim("softmax", 3698, "softmax([1, 1, 5]) (“dominated by outlier”)", (0.037, 0.037, 0.927), 3,
          lambda: _softmax_row([1.0, 1.0, 5.0])),
    Claim("softmax", 3712, "softmax([0, 0, 10])", (0.00005, 0.00005, 0.99990), 5, lambda: _softmax_row([0.0, 0.0, 10.0])),
    Claim("softmax", 3097, "softmax([2.0, 1.0, 0.5])", (0.628, 0.231, 0.140), 3, lambda: _softmax_row([2.0, 1.0, 0.5])),
    Claim("cross_entropy", 2380, "−log(0.828)", (0.189,), 3, lambda: [-mpmath.log(mpmath.mpf("0.828"))]),
    Claim("cross_entropy", 2393, "−log(0.871)", (0.138,), 3, lambda: [-mpmath.log(mpmath.mpf("0.871"))]),
    Claim("cross_entropy", 2406, "−log(0.696)", (0.362,), 3, lambda: [-mpmath.log(mpmath.mpf("0.696"))]),
    Claim("cross_entropy", 2574, "sample losses of the 3-sample batch (labels cat, dog, bird)", (0.543, 0.201, 0.088), 3,
          lambda: [_loss(_Z[0], 0)[0], _loss(_Z[1], 1)[0], _loss(_Z[2], 2)[0]]),
    Claim("cross_entropy", 2578, "mean loss of the 3-sample batch", (0.277,), 3,
          lambda: [(_loss(_Z[0], 0)[0] + _loss(_Z[1], 1)[0] + _loss(_Z[2], 2)[0]) / 3]),
    Claim("cross_entropy", 2601, "∂L/∂z, sample 1", (-0.419, 0.096, 0.193, 0.130), 3, lambda: _gradient(_Z[0], 0)),
    Claim("cross_entropy", 2609, "∂L/∂z, sample 2", (0.055, -0.182, 0.082, 0.045), 3, lambda: _gradient(_Z[1], 1)),
    Claim("cross_entropy", 2617, "∂L/∂z, sample 3", (0.023, 0.034, -0.084, 0.028), 3, lambda: _gradient(_Z[2], 2)),
    Claim("cross_entropy", 3107, "∂L/∂z for z = [2.0, 1.0, 0.5], class 0", (-0.372, 0.231, 0.140), 3,
          lambda: _gradient([2.0, 1.0, 0.5], 0)),
    Claim("batchnorm", 473, "neuron 1: batch variance", (1.1527,), 4, lambda: _variance(_NEURONS[0])),
    Claim("batchnorm", 499, "neuron 1: x̂ (ε = 1e-5)", (-0.456, 1.174, 0.680, -1.397), 3, lambda: _normalized(_NEURONS[0])),
    Claim("batchnorm", 532, "table, neuron 2: batch mean", (0.80,), 2, lambda: _mean(_NEURONS[1])),
    Claim("batchnorm", 532, "table, neuron 2: batch variance", (1.292,), 3, lambda: _variance(_NEURONS[1])),
    Claim("batchnorm", 532, "table, neuron 2: x̂", (-0.908, 0.061, 1.451, -0.604), 3, lambda: _normalized(_NEURONS[1])),
    Claim("batchnorm", 533, "table, neuron 3: batch mean", (0.39,), 2, lambda: _mean(_NEURONS[2])),
    Claim("batchnorm", 533, "table, neuron 3: batch variance", (0.954,), 3, lambda: _variance(_NEURONS[2])),
    Claim("batchnorm", 533, "table, neuron 3: x̂", (1.084, -1.545, -0.051, 0.512), 3, lambda: _normalized(_NEURONS[2])),
)


def audit(family: str | None = None) -> list[dict]:
    """Every claim (of ``family``, or all) with its certified values and verdict."""
    rows = []
    for claim in CLAIMS:
        if family is not None and claim.family != family:
            continue
        exact = [float(v) for v in claim.exact()]
        unit = 10.0 ** -claim.decimals
        agrees = [abs(c - e) <= unit * (1 + 1e-9) for c, e in zip(claim.claimed, exact)]
        rows.append({"claim": claim, "exact": exact, "agrees": agrees})
    return rows
