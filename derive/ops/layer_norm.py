"""Layer normalization: each row of x (N, D) normalised over its D features with the biased variance,
then scaled and shifted per feature, ``y = γ (x − μ)/√(var + ε) + β``; and its backward pass
``(dx, dγ, dβ)`` given the upstream gradient dy.  Rows never interact (independent axis ``n``).

Forward formulations: ``two_pass`` (centre, then mean of squares) and ``one_pass`` (E[x²] − E[x]²,
which cancels catastrophically when |mean| ≫ std).  Backward: ``derived`` (reverse mode of the forward
definition), ``compact`` dx = (1/σ)(g − mean g − x̂ mean(g x̂)) with g = γ dy, ``staged`` (the chain
dx̂ → dvar → dμ → dx as in the batch-norm paper, over features instead of samples) and ``one_pass``
(compact with the one-pass variance).
"""
from __future__ import annotations

import sympy as sp

from ..define import define_backward, define_op
from ..op import DerivationStep, GenericClaim, Invariant
from ..program import Elementwise, Formulation, Input, Reduce, value_symbol as v
from .softmax import sum_residual

X = Input("x", ("n", "d"), "activations, one row per sample (token), one column per feature", role="activations")
GAMMA = Input("gamma", ("d",), "scale per feature", role="weight")
BETA = Input("beta", ("d",), "shift per feature", role="weight")
EPS = Input("eps", (), "added to the variance before the square root", role="eps")
DY = Input("dy", ("n", "d"), "upstream gradient ∂L/∂y", role="upstream")
Y_OUT = Input("y", ("n", "d"), "normalized, scaled and shifted activations")
DX_OUT, DGAMMA_OUT, DBETA_OUT = Input("dx", ("n", "d")), Input("dgamma", ("d",)), Input("dbeta", ("d",))
AXES = ("n", "d")
SIZES = {"D": "d"}
DOMAIN = {"sizes": {"n": (1, 8), "d": (1, 16)}, "max_mean": 1e3, "max_var": 1e4}
# Every entry of a row depends on the whole row: proofs at D = 2, 3 (D = 4 triples the time for no new
# structure), two rows (they must not interact), and D = 1, where the variance is 0 and x̂ = 0.
PROOF_LENGTHS = ({"n": 1, "d": 2}, {"n": 1, "d": 3}, {"n": 2, "d": 2}, {"n": 2, "d": 1})

#: Row statistics (over the features d): mean, centred values and biased variance, two ways.
STATISTICS = {
    "two_pass": (
        Reduce("mu", "mean", "x", ("d",), "row mean"),
        Elementwise("xc", v("x") - v("mu"), "centre first"),
        Elementwise("sq", v("xc") ** 2),
        Reduce("var", "mean", "sq", ("d",), "biased variance, two passes"),
    ),
    "one_pass": (
        Reduce("mu", "mean", "x", ("d",), "row mean"),
        Elementwise("x2", v("x") ** 2),
        Reduce("ex2", "mean", "x2", ("d",), "E[x²]"),
        Elementwise("var", v("ex2") - v("mu") ** 2, "E[x²] − E[x]²: cancels catastrophically when |mean| ≫ std"),
        Elementwise("xc", v("x") - v("mu")),
    ),
}
NORMALIZE = (
    Elementwise("rstd", 1 / sp.sqrt(v("var") + v("eps")), "1/√(var + ε)"),
    Elementwise("xhat", v("xc") * v("rstd")),
)
_SUMMARY = {"two_pass": "y = γ (x − μ)/√(var + ε) + β, var = mean_d((x − μ)²)",
            "one_pass": "y = γ (x − μ)/√(var + ε) + β, var = mean_d(x²) − μ²"}

DERIVATION = (
    DerivationStep("forward definition (per row)",
                   r"\mu = \frac1D \sum_d x_d,\quad \sigma^2 = \frac1D \sum_d (x_d-\mu)^2,\quad \hat x_d = \frac{x_d-\mu}{\sqrt{\sigma^2+\epsilon}},\quad y_d = \gamma_d \hat x_d + \beta_d"),
)
BACKWARD_DERIVATION = DERIVATION + (
    DerivationStep("affine parameters (summed over rows)",
                   r"\frac{\partial L}{\partial \beta_d} = \sum_n dy_{nd}, \qquad \frac{\partial L}{\partial \gamma_d} = \sum_n dy_{nd} \hat x_{nd}, \qquad g_d = \frac{\partial L}{\partial \hat x_d} = \gamma_d\, dy_d"),
    DerivationStep("variance and mean",
                   r"\frac{\partial L}{\partial \sigma^2} = -\frac12 \sum_d g_d (x_d-\mu)(\sigma^2+\epsilon)^{-3/2}, \qquad \frac{\partial L}{\partial \mu} = -\sum_d \frac{g_d}{\sqrt{\sigma^2+\epsilon}}"),
    DerivationStep("chain to the input",
                   r"\frac{\partial L}{\partial x_d} = \frac{g_d}{\sqrt{\sigma^2+\epsilon}} + \frac{\partial L}{\partial \sigma^2}\frac{2(x_d-\mu)}{D} + \frac{\partial L}{\partial \mu}\frac1D"),
    DerivationStep("compact form",
                   r"\frac{\partial L}{\partial x_d} = \frac{1}{\sqrt{\sigma^2+\epsilon}}\Big(g_d - \frac1D\sum_k g_k - \hat x_d \frac1D \sum_k g_k \hat x_k\Big)"),
)


def _forward_steps(stats):
    return STATISTICS[stats] + NORMALIZE + (Elementwise("y", v("gamma") * v("xhat") + v("beta")),)


LAYER_NORM = define_op(
    "layer_norm", family="layer_norm", inputs=(X, GAMMA, BETA, EPS), outputs=(Y_OUT,), axis_order=AXES,
    sizes=SIZES, formulations={k: (_SUMMARY[k], _forward_steps(k)) for k in STATISTICS},
    summary="layer norm: each row normalised over its D features (biased variance), y = γ x̂ + β",
    independent_axis="n", derivation=DERIVATION, domain=DOMAIN, proof_lengths=PROOF_LENGTHS,
)

_AFFINE = (
    Reduce("dbeta", "sum", "dy", ("n",), "∂L/∂β = Σ_n dy"),
    Elementwise("dyxh", v("dy") * v("xhat")),
    Reduce("dgamma", "sum", "dyxh", ("n",), "∂L/∂γ = Σ_n dy x̂"),
    Elementwise("g", v("dy") * v("gamma"), "∂L/∂x̂ = γ dy"),
    Reduce("g_mean", "mean", "g", ("d",), "mean_d g"),
    Elementwise("gx", v("g") * v("xhat")),
    Reduce("gx_mean", "mean", "gx", ("d",), "mean_d g x̂"),
)
_COMPACT = v("rstd") * (v("g") - v("g_mean") - v("xhat") * v("gx_mean"))


def _compact_steps(stats="two_pass", normalize=NORMALIZE, dx=_COMPACT):
    return STATISTICS[stats] + normalize + _AFFINE + (Elementwise("dx", dx, "(g − mean g − x̂ mean(g x̂)) / σ"),)


_STAGED = STATISTICS["two_pass"] + NORMALIZE + (
    Reduce("dbeta", "sum", "dy", ("n",), "∂L/∂β = Σ_n dy"),
    Elementwise("dyxh", v("dy") * v("xhat")),
    Reduce("dgamma", "sum", "dyxh", ("n",), "∂L/∂γ = Σ_n dy x̂"),
    Elementwise("dxhat", v("dy") * v("gamma"), "∂L/∂x̂"),
    Elementwise("t_var", v("dxhat") * v("xc")),
    Reduce("s_var", "sum", "t_var", ("d",)),
    Elementwise("dvar", -v("s_var") / 2 * v("rstd") ** 3, "∂L/∂σ² = −½ Σ dx̂ (x − μ) (σ² + ε)^{−3/2}"),
    Elementwise("t_mu", -v("dxhat") * v("rstd")),
    Reduce("s_mu", "sum", "t_mu", ("d",)),
    Elementwise("t_c", -2 * v("xc")),
    Reduce("m_c", "mean", "t_c", ("d",), "mean(−2 (x − μ)), zero in exact arithmetic"),
    Elementwise("dmu", v("s_mu") + v("dvar") * v("m_c"), "∂L/∂μ"),
    Elementwise("dx", v("dxhat") * v("rstd") + v("dvar") * 2 * v("xc") / v("D") + v("dmu") / v("D"),
                "∂L/∂x = dx̂/σ + ∂L/∂σ² · 2(x − μ)/D + ∂L/∂μ / D"),
)

_INVARIANT_INPUTS = (X, GAMMA, DY, EPS, DX_OUT, DGAMMA_OUT, DBETA_OUT)
# Rounding error of one term of Σ_d dx: about u·(|g| + mean|g| + |x̂| mean|g x̂|)/σ, amplified by the
# rounding of x̂ when |x| ≫ σ (x − μ loses digits): its scale per element.
_TERM_SCALE = (Elementwise("g_abs", sp.Abs(v("gamma") * v("dy"))),
               Reduce("g_abs_mean", "mean", "g_abs", ("d",)),
               Elementwise("term_scale", v("rstd") * (v("g_abs") + v("g_abs_mean")) * (1 + sp.Abs(v("xhat")))
                           * (1 + sp.Abs(v("x")) * v("rstd"))),)

_VARIANCE_CONSTANT = v("rstd") * (v("g") - v("g_mean"))
_EPS_OUTSIDE = (Elementwise("std_eps", sp.sqrt(v("var")) + v("eps"), "√var + ε: ε outside the root"),
                Elementwise("rstd", 1 / v("std_eps")),
                Elementwise("xhat", v("xc") * v("rstd")))
_UNBIASED = (Reduce("mu", "mean", "x", ("d",)), Elementwise("xc", v("x") - v("mu")), Elementwise("sq", v("xc") ** 2),
             Reduce("ssq", "sum", "sq", ("d",)), Elementwise("var", v("ssq") / (v("D") - 1), "Σ (x − μ)² / (D − 1)"))


def _renamed(steps, mapping):
    """``steps`` with the values named in ``mapping`` renamed (outputs swapped by a mistake)."""
    out = []
    for st in steps:
        new = mapping.get(st.name, st.name)
        out.append(type(st)(**{**st.__dict__, "name": new}))
    return tuple(out)


# Generic D: one row seen from feature i, with g_k = γ_k dy_k.  R = Σ_{k≠i} x_k, Q = Σ_{k≠i} x_k²,
# P = Σ_{k≠i} g_k x_k, G = Σ_{k≠i} g_k are free of x_i, and up to β terms
# L = Σ_k g_k (x_k − μ)/σ = (g_i x_i + P − μ (g_i + G))/σ.
_D = sp.Symbol("D", integer=True, positive=True)
_xi, _gi, _R, _Q, _P, _G = sp.symbols("x_i g_i R Q P G", real=True)
_eps = sp.Symbol("epsilon", positive=True)
_mu = (_xi + _R) / _D
_sigma = sp.sqrt((_xi ** 2 + _Q) / _D - _mu ** 2 + _eps)
_sum_gxhat = (_gi * _xi + _P - _mu * (_gi + _G)) / _sigma
GENERIC = (GenericClaim(
    r"\frac{\partial L}{\partial x_i} = \frac{1}{\sigma}\Big(g_i - \frac1D \sum_k g_k - \hat x_i \frac1D \sum_k g_k \hat x_k\Big)",
    sp.diff(_sum_gxhat, _xi), (_gi - (_gi + _G) / _D - (_xi - _mu) / _sigma * _sum_gxhat / _D) / _sigma,
    "any D ≥ 1: g_k = γ_k dy_k; R = Σ_{k≠i} x_k, Q = Σ_{k≠i} x_k², P = Σ_{k≠i} g_k x_k, G = Σ_{k≠i} g_k "
    "are free of x_i; σ² = (x_i² + Q)/D − μ² + ε, μ = (x_i + R)/D"),)

LAYER_NORM_BACKWARD = define_backward(
    LAYER_NORM, "layer_norm_backward",
    formulations={
        "compact": ("dx = (g − mean_d g − x̂ mean_d(g x̂))/σ, g = γ dy; dγ = Σ_n dy x̂; dβ = Σ_n dy", _compact_steps()),
        "staged": ("the batch-norm paper's chain over features: dx̂ → dvar → dμ → dx", _STAGED),
        "one_pass": ("compact dx with var = mean_d(x²) − μ²", _compact_steps("one_pass")),
    },
    stable="compact", accurate="compact", derivation=BACKWARD_DERIVATION, generic=GENERIC,
    summary="(dx, dγ, dβ) of layer norm over the features of each row, given the upstream gradient dy",
    invariants=(Invariant("Σ_d dx_d = 0 per row", r"\sum_d \frac{\partial L}{\partial x_d} = 0",
                          Formulation("dx_row_sum", "Σ_d dx", _INVARIANT_INPUTS,
                                      sum_residual("dx", ("d",)) + STATISTICS["two_pass"] + NORMALIZE + _TERM_SCALE,
                                      ("r", "term_scale"), AXES, SIZES), floor="term_scale"),),
    mistakes=(
        ("variance_treated_as_constant", "the variance is treated as a constant: the term −x̂ · mean_d(γ dy x̂) "
         "of dx is missing (dx = (g − mean g)/σ)", _compact_steps(dx=_VARIANCE_CONSTANT)),
        ("eps_outside_sqrt", "ε is added outside the square root: 1/(√var + ε) instead of 1/√(var + ε)",
         STATISTICS["two_pass"] + _EPS_OUTSIDE + _AFFINE + (Elementwise("dx", _COMPACT),)),
        ("unbiased_variance", "the variance divides by D − 1 (Bessel's correction, torch.var's default); layer "
         "norm normalises with the biased variance (÷ D)",
         _UNBIASED + NORMALIZE + _AFFINE + (Elementwise("dx", _COMPACT),)),
        ("swapped_dgamma_dbeta", "dγ and dβ are swapped: dγ = Σ_n dy x̂ and dβ = Σ_n dy",
         _renamed(_compact_steps(), {"dgamma": "tmp_dbeta", "dbeta": "tmp_dgamma"}) + (
             Elementwise("dgamma", v("tmp_dgamma")), Elementwise("dbeta", v("tmp_dbeta")))),
    ),
)
