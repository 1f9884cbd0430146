"""RMS normalization (Zhang & Sennrich 2019, as in LLaMA-style transformers): each row of x (N, D) divided
by its root mean square, then scaled per feature, ``y = γ x / √(mean_d x² + ε)``; and its backward pass
``(dx, dγ)`` given the upstream gradient dy.  Rows never interact (independent axis ``n``).

Forward formulations: ``naive`` divides by √(ms + ε), ``rsqrt`` multiplies by the reciprocal square
root as fused kernels do.  Both square x, which overflows float16 once |x| > √65504 ≈ 255.9 (bfloat16
keeps float32's range).  A formulation scaled by max_d |x| avoids that, but equals the definition only
for a positive scale (√(a² Q) = |a| √Q), which the proofs, treating a maximum as an arbitrary real
shift, cannot use — so it is not offered.
"""
from __future__ import annotations

import sympy as sp

from ..define import define_backward, define_op
from ..op import DerivationStep, GenericClaim, Invariant
from ..program import Elementwise, Formulation, Input, Reduce, value_symbol as v

X = Input("x", ("n", "d"), "activations, one row per sample (token), one column per feature", role="activations")
GAMMA = Input("gamma", ("d",), "scale per feature", role="weight")
EPS = Input("eps", (), "added to the mean square before the square root", role="eps")
DY = Input("dy", ("n", "d"), "upstream gradient ∂L/∂y", role="upstream")
Y_OUT = Input("y", ("n", "d"), "normalized and scaled activations")
DX_OUT, DGAMMA_OUT = Input("dx", ("n", "d")), Input("dgamma", ("d",))
AXES = ("n", "d")
SIZES = {"D": "d"}
DOMAIN = {"sizes": {"n": (1, 8), "d": (1, 16)}, "max_mean": 1e3, "max_var": 1e4}
PROOF_LENGTHS = ({"n": 1, "d": 2}, {"n": 1, "d": 3}, {"n": 2, "d": 2}, {"n": 2, "d": 1})

MEAN_SQUARE = (Elementwise("x2", v("x") ** 2), Reduce("ms", "mean", "x2", ("d",), "mean_d x²"))
RSTD = (Elementwise("rstd", 1 / sp.sqrt(v("ms") + v("eps")), "1/√(mean x² + ε)"),
        Elementwise("xhat", v("x") * v("rstd")))

FORMULATIONS = {
    "naive": ("y = γ x / √(mean_d x² + ε)", MEAN_SQUARE + (
        Elementwise("y", v("gamma") * v("x") / sp.sqrt(v("ms") + v("eps"))),)),
    "rsqrt": ("y = γ (x · rsqrt(mean_d x² + ε))", MEAN_SQUARE + RSTD + (Elementwise("y", v("gamma") * v("xhat")),)),
}

DERIVATION = (
    DerivationStep("forward definition (per row)",
                   r"r = \frac{1}{\sqrt{\frac1D \sum_d x_d^2 + \epsilon}}, \qquad \hat x_d = x_d\, r, \qquad y_d = \gamma_d \hat x_d"),
)
BACKWARD_DERIVATION = DERIVATION + (
    DerivationStep("scale parameter (summed over rows)",
                   r"\frac{\partial L}{\partial \gamma_d} = \sum_n dy_{nd} \hat x_{nd}, \qquad g_d = \frac{\partial L}{\partial \hat x_d} = \gamma_d\, dy_d"),
    DerivationStep("derivative of the scale",
                   r"\frac{\partial r}{\partial x_k} = -\frac12 \Big(\frac1D \sum_d x_d^2 + \epsilon\Big)^{-3/2} \frac{2 x_k}{D} = -\frac{r^3 x_k}{D}"),
    DerivationStep("chain to the input",
                   r"\frac{\partial L}{\partial x_k} = g_k r - \frac{r^3 x_k}{D} \sum_d g_d x_d = r\Big(g_k - \hat x_k \frac1D \sum_d g_d \hat x_d\Big)"),
)

RMS_NORM = define_op(
    "rms_norm", family="rms_norm", inputs=(X, GAMMA, EPS), outputs=(Y_OUT,), axis_order=AXES, sizes=SIZES,
    formulations=FORMULATIONS, summary="RMS norm: each row divided by its root mean square, y = γ x / √(mean x² + ε)",
    independent_axis="n", derivation=DERIVATION, domain=DOMAIN, proof_lengths=PROOF_LENGTHS,
)

_DGAMMA = (Elementwise("dyxh", v("dy") * v("xhat")), Reduce("dgamma", "sum", "dyxh", ("n",), "∂L/∂γ = Σ_n dy x̂"))
_G = (Elementwise("g", v("dy") * v("gamma"), "∂L/∂x̂ = γ dy"),
      Elementwise("gx", v("g") * v("xhat")),
      Reduce("gx_mean", "mean", "gx", ("d",), "mean_d g x̂"))
_COMPACT = MEAN_SQUARE + RSTD + _DGAMMA + _G + (
    Elementwise("dx", v("rstd") * (v("g") - v("xhat") * v("gx_mean")), "r (g − x̂ mean_d(g x̂))"),)
_STAGED = MEAN_SQUARE + RSTD + _DGAMMA + (
    Elementwise("g", v("dy") * v("gamma"), "∂L/∂x̂ = γ dy"),
    Elementwise("gxr", v("g") * v("x")),
    Reduce("s", "sum", "gxr", ("d",), "Σ_d g x"),
    Elementwise("dms", -v("s") / 2 * v("rstd") ** 3, "∂L/∂ms = −½ Σ g x (ms + ε)^{−3/2}"),
    Elementwise("dx", v("g") * v("rstd") + v("dms") * 2 * v("x") / v("D"), "g r + ∂L/∂ms · 2x/D"),
)

_INVARIANT_INPUTS = (X, GAMMA, DY, EPS, DX_OUT, DGAMMA_OUT)
_TERM_SCALE = (Elementwise("term_scale", v("rstd") * sp.Abs(v("gamma") * v("dy")) * (1 + v("xhat") ** 2)
                           * (1 + sp.Abs(v("x")))),)

# Generic D: one row seen from feature i, with g_k = γ_k dy_k; Q = Σ_{k≠i} x_k² and P = Σ_{k≠i} g_k x_k
# are free of x_i, and L = Σ_k g_k x_k r = (g_i x_i + P) r, r = ((x_i² + Q)/D + ε)^{−1/2}.
_D = sp.Symbol("D", integer=True, positive=True)
_xi, _gi, _Q, _P = sp.symbols("x_i g_i Q P", real=True)
_eps = sp.Symbol("epsilon", positive=True)
_r = 1 / sp.sqrt((_xi ** 2 + _Q) / _D + _eps)
GENERIC = (GenericClaim(
    r"\frac{\partial L}{\partial x_i} = r\Big(g_i - \hat x_i \frac1D \sum_k g_k \hat x_k\Big)",
    sp.diff((_gi * _xi + _P) * _r, _xi), _r * (_gi - _xi * _r * (_gi * _xi + _P) * _r / _D),
    "any D ≥ 1: g_k = γ_k dy_k; Q = Σ_{k≠i} x_k² and P = Σ_{k≠i} g_k x_k are free of x_i"),)

RMS_NORM_BACKWARD = define_backward(
    RMS_NORM, "rms_norm_backward",
    formulations={"compact": ("dx = r (g − x̂ mean_d(g x̂)), g = γ dy, r = 1/√(mean x² + ε); dγ = Σ_n dy x̂", _COMPACT),
                  "staged": ("dx = g r + ∂L/∂ms · 2x/D, ∂L/∂ms = −½ r³ Σ_d g x", _STAGED)},
    stable="compact", accurate="compact", derivation=BACKWARD_DERIVATION, generic=GENERIC,
    summary="(dx, dγ) of RMS norm over the features of each row, given the upstream gradient dy",
    invariants=(Invariant(
        "Σ_d dx_d x_d = ε r² Σ_d γ_d dy_d x̂_d per row (= 0 at ε = 0)",
        r"\sum_d \frac{\partial L}{\partial x_d}\, x_d = \frac{\epsilon}{\frac1D\sum_d x_d^2 + \epsilon} \sum_d \gamma_d\, dy_d\, \hat x_d",
        Formulation("dx_x", "Σ_d dx x − ε r² Σ_d g x̂", _INVARIANT_INPUTS, MEAN_SQUARE + RSTD + _G + (
            Elementwise("dxx", v("dx") * v("x")),
            Reduce("lhs", "sum", "dxx", ("d",)),
            Elementwise("r", v("lhs") - v("eps") * v("rstd") ** 2 * v("gx_mean") * v("D")),
        ) + _TERM_SCALE, ("r", "term_scale"), AXES, SIZES), floor="term_scale"),),
    mistakes=(
        ("rms_treated_as_constant", "the root mean square is treated as a constant: the term −x̂ · mean_d(γ dy x̂) "
         "of dx is missing (dx = γ dy / √(mean x² + ε))", MEAN_SQUARE + RSTD + _DGAMMA + _G + (
             Elementwise("dx", v("rstd") * v("g")),)),
        ("dgamma_not_normalized", "dγ uses x instead of the normalized x̂: Σ_n dy x",
         MEAN_SQUARE + RSTD + _G + (_COMPACT[-1], Elementwise("dyx", v("dy") * v("x")),
                                    Reduce("dgamma", "sum", "dyx", ("n",)))),
    ),
)
