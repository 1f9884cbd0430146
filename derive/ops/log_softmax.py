"""Log-softmax ``y = z − logsumexp(z)`` along the last axis, and its vector–Jacobian product
``dz = dy − softmax(z) Σ_k dy`` (rows of z are independent samples).

Three forward formulations, in order of accuracy: ``naive`` log(softmax(z)) (exp overflows, log of an
underflowed probability is −inf), ``logsumexp`` z − (m + log Σ e^{z−m}), and ``log1p``: the accurate
log-sum-exp of Blanchard, Higham & Higham (2021), lse = m + log1p(Σ_{i≠argmax} e^{z_i−m}), which keeps the
relative accuracy of the tiny sum when one class dominates (SciPy adopted it, scipy#19521).
Where the naive one breaks, per dtype (float16 / bfloat16 / float32 / float64): e^z overflows for
z > ln Ω = 11.09 / 88.72 / 88.72 / 709.78, and log s = −inf once e^{z_i} or s_i underflows (z_i, or
z_i − lse, below ln(smallest subnormal) = −16.64 / −92.19 / −103.28 / −744.44), where the true value is finite.

The arg-max exclusion is written without an index: ``top = floor(e)`` is 1 exactly where z equals the
row maximum (e = e^0 = 1 exactly in floating point) and 0 elsewhere (0 < e < 1); the row sum
Σ (e − top/Σtop) is then Σ_{i≠argmax} e_i, computed without subtracting 1 from a rounded sum.  Dividing
by Σtop keeps the identity exact for *any* mask (ties included), which is what the proofs use: they
treat the row maximum as an arbitrary shift and the mask as arbitrary symbols.
"""
from __future__ import annotations

import sympy as sp
from sympy.codegen.cfunctions import log1p

from ..define import define_backward, define_op
from ..op import DerivationStep, GenericClaim, Invariant
from ..program import Elementwise, Formulation, Input, Reduce, value_symbol as v
from .softmax import SOFTMAX_STEPS, sum_residual

Z = Input("z", ("b", "k"), "logits, one row per sample", role="logits")
Y_OUT = Input("y", ("b", "k"), "log-probabilities log softmax(z)")
DZ_OUT = Input("dz", ("b", "k"), "∂L/∂z")
AXES = ("b", "k")

#: Input magnitudes the numeric side draws from (as cross-entropy's logits).
DOMAIN = {"sizes": {"b": (1, 8), "k": (1, 16)}, "max_abs": 1e4, "max_spread": 100.0,
          "thresholds": {"naive": "ln(max)"}}       # e^z overflows once z > ln(max)

_LSE = SOFTMAX_STEPS["logsumexp"][:-1]          # m, e, S, lse

LOG1P_STEPS = (
    Reduce("m", "max", "z", ("k",), "row maximum"),
    Elementwise("e", sp.exp(v("z") - v("m")), "every exponent ≤ 0; e = 1 exactly at the maximum"),
    Elementwise("top", sp.floor(v("e")), "1 at the row maximum, 0 elsewhere (0 < e < 1)"),
    Reduce("M", "sum", "top", ("k",), "how many entries reach the maximum (1 unless ties)"),
    Elementwise("rest", v("e") - v("top") / v("M"), "e_i off the arg-max, 0 (or e − 1/M on ties) on it"),
    Reduce("R", "sum", "rest", ("k",), "Σ_{i≠argmax} e^{z_i − m}, no 1 added and subtracted"),
    Elementwise("y", v("z") - v("m") - log1p(v("R")), "z − m − log1p(R)"),
)

FORMULATIONS = {
    "naive": ("y = log(exp(z) / Σ exp(z))", SOFTMAX_STEPS["naive"] + (Elementwise("y", sp.log(v("s"))),)),
    "logsumexp": ("y = z − (m + log Σ exp(z − m)), m = max z", _LSE + (Elementwise("y", v("z") - v("lse")),)),
    "log1p": ("y = z − m − log1p(Σ_{i≠argmax} exp(z_i − m)) (Blanchard–Higham–Higham)", LOG1P_STEPS),
}

DERIVATION = (
    DerivationStep("forward definition",
                   r"y_i = \log s_i = \log \frac{e^{z_i}}{\sum_k e^{z_k}} = z_i - \log \sum_k e^{z_k}"),
    DerivationStep("shift by the row maximum",
                   r"\log \sum_k e^{z_k} = m + \log \sum_k e^{z_k - m}, \qquad m = \max_k z_k"),
    DerivationStep("accurate form at the arg-max a",
                   r"\sum_k e^{z_k - m} = 1 + \sum_{k \ne a} e^{z_k - m} \;\Rightarrow\; "
                   r"y_i = z_i - m - \operatorname{log1p}\Big(\sum_{k \ne a} e^{z_k - m}\Big)"),
)
BACKWARD_DERIVATION = DERIVATION[:1] + (
    DerivationStep("Jacobian", r"\frac{\partial y_i}{\partial z_j} = \delta_{ij} - s_j"),
    DerivationStep("vector–Jacobian product",
                   r"dz_j = \sum_i dy_i (\delta_{ij} - s_j) = dy_j - s_j \sum_i dy_i"),
)

LOG_SOFTMAX = define_op(
    "log_softmax", family="log_softmax", inputs=(Z,), outputs=(Y_OUT,), axis_order=AXES,
    formulations=FORMULATIONS, summary="log-probabilities y = log softmax(z) along the last axis",
    stable="logsumexp", accurate="logsumexp", independent_axis="b", derivation=DERIVATION, domain=DOMAIN,
    invariants=(Invariant("probabilities sum to 1", r"\sum_k e^{y_k} = 1",
                          Formulation("exp_sums_to_one", "Σ_k exp(y) − 1", (Z, Y_OUT),
                                      (Elementwise("p", sp.exp(v("y"))),) + sum_residual("p", ("k",), 1),
                                      ("r",), AXES), floor="1"),),
)


def _backward_steps(variant):
    return SOFTMAX_STEPS[variant] + (
        Reduce("c", "sum", "dy", ("k",), "Σ_k dy"),
        Elementwise("dz", v("dy") - v("s") * v("c"), "dy − s Σ dy"),
    )


_GRAD_STEPS = SOFTMAX_STEPS["shifted"] + (Reduce("c", "sum", "dy", ("k",)),)
DY = Input("dy", AXES, "upstream gradient ∂L/∂y", role="upstream")

# Generic K: the loss seen from z_j.  R = Σ_{k≠j} e^{z_k} > 0, Y = Σ_{k≠j} dy_k, P = Σ_{k≠j} dy_k z_k are
# free of z_j, and L = Σ_k dy_k (z_k − log Σ_l e^{z_l}) = dy_j z_j + P − (dy_j + Y) log(e^{z_j} + R).
_zj, _dyj, _Y, _P = sp.symbols("z_j dy_j Y P", real=True)
_R = sp.Symbol("R", positive=True)
GENERIC = (GenericClaim(
    r"\frac{\partial L}{\partial z_j} = dy_j - s_j \sum_k dy_k",
    sp.diff(_dyj * _zj + _P - (_dyj + _Y) * sp.log(sp.exp(_zj) + _R), _zj),
    _dyj - sp.exp(_zj) / (sp.exp(_zj) + _R) * (_dyj + _Y),
    "any K ≥ 1: R = Σ_{k≠j} e^{z_k} > 0, Y = Σ_{k≠j} dy_k and P = Σ_{k≠j} dy_k z_k are free of z_j"),)

LOG_SOFTMAX_BACKWARD = define_backward(
    LOG_SOFTMAX, "log_softmax_backward",
    formulations={"naive": ("dz = dy − softmax(z) Σ_k dy, softmax = exp(z) / Σ exp(z)", _backward_steps("naive")),
                  "shifted": ("dz = dy − softmax(z) Σ_k dy, softmax shifted by max z", _backward_steps("shifted"))},
    stable="shifted", accurate="shifted", derivation=BACKWARD_DERIVATION, generic=GENERIC,
    summary="dz = dy − softmax(z) Σ_k dy, the vector–Jacobian product of log-softmax",
    invariants=(Invariant("gradient rows sum to 0", r"\sum_k dz_k = 0",
                          Formulation("backward_sum", "Σ_k dz", (Z, DY, DZ_OUT), sum_residual("dz", ("k",)),
                                      ("r",), AXES), floor="dy"),),
    mistakes=(
        ("softmax_minus_dy", "you computed softmax(z) − dy (the cross-entropy shortcut ŷ − y): that is the gradient "
         "only for dy = −(one-hot labels), not for a general upstream gradient; use dy − softmax(z) Σ_k dy",
         _GRAD_STEPS + (Elementwise("dz", v("s") - v("dy")),)),
        ("missing_row_sum", "the softmax term is not multiplied by Σ_k dy: you computed dy − softmax(z)",
         _GRAD_STEPS + (Elementwise("dz", v("dy") - v("s")),)),
        ("diagonal_only", "only the diagonal of the Jacobian is used: dy (1 − s) instead of dy − s Σ_k dy",
         _GRAD_STEPS + (Elementwise("dz", v("dy") * (1 - v("s"))),)),
        ("sign_flip", "the sign is flipped: you computed s Σ dy − dy",
         _GRAD_STEPS + (Elementwise("dz", v("s") * v("c") - v("dy")),)),
    ),
)
