"""Batch normalization in training mode (biased variance) and its backward pass; columns are features."""
from __future__ import annotations

import sympy as sp

from ..op import DerivationStep, GenericClaim, Invariant, Op
from ..program import Elementwise, Formulation, Input, Reduce, value_symbol as v
from ..symbolic import run_symbolic
from .softmax import sum_residual

X = Input("x", ("n", "d"), "activations, one row per sample, one column per feature")
GAMMA = Input("gamma", ("d",), "scale per feature")
BETA = Input("beta", ("d",), "shift per feature")
DY = Input("dy", ("n", "d"), "upstream gradient ∂L/∂y")
EPS = Input("eps", (), "added to the variance before the square root")
Y_OUT = Input("y", ("n", "d"), "normalized, scaled and shifted activations")
DX_OUT, DGAMMA_OUT, DBETA_OUT = Input("dx", ("n", "d")), Input("dgamma", ("d",)), Input("dbeta", ("d",))
AXES = ("n", "d")
SIZES = {"N": "n"}
N = sp.Symbol("N", integer=True, positive=True)

#: Batch statistics: mean, centred values and biased variance, two ways.
STATISTICS = {
    "two_pass": (
        Reduce("mu", "mean", "x", ("n",), "batch mean"),
        Elementwise("xc", v("x") - v("mu"), "centre first"),
        Elementwise("sq", v("xc") ** 2),
        Reduce("var", "mean", "sq", ("n",), "biased variance, two passes"),
    ),
    "one_pass": (
        Reduce("mu", "mean", "x", ("n",), "batch mean"),
        Elementwise("x2", v("x") ** 2),
        Reduce("ex2", "mean", "x2", ("n",), "E[x²]"),
        Elementwise("var", v("ex2") - v("mu") ** 2, "E[x²] − E[x]²: cancels catastrophically when |mean| ≫ std"),
        Elementwise("xc", v("x") - v("mu")),
    ),
}
NORMALIZE = (
    Elementwise("rstd", 1 / sp.sqrt(v("var") + v("eps")), "1/√(var + ε)"),
    Elementwise("xhat", v("xc") * v("rstd")),
)


def _forward_form(stats):
    steps = STATISTICS[stats] + NORMALIZE + (Elementwise("y", v("gamma") * v("xhat") + v("beta")),)
    summary = {"two_pass": "y = γ (x − μ)/√(var + ε) + β, var = mean((x − μ)²)",
               "one_pass": "y = γ (x − μ)/√(var + ε) + β, var = mean(x²) − μ²"}[stats]
    return Formulation(stats, summary, (X, GAMMA, BETA, EPS), steps, ("y",), AXES, SIZES)


_GRADS_OF_AFFINE = (
    Reduce("dbeta", "sum", "dy", ("n",), "∂L/∂β = Σ dy"),
    Elementwise("dyxh", v("dy") * v("xhat")),
    Reduce("dgamma", "sum", "dyxh", ("n",), "∂L/∂γ = Σ dy x̂"),
)
_COMPACT_DX = Elementwise("dx", v("gamma") * v("rstd") / v("N") * (v("N") * v("dy") - v("dbeta") - v("xhat") * v("dgamma")),
                          "γ/(N σ) (N dy − Σ dy − x̂ Σ dy x̂)")


def _backward_form(variant):
    if variant in ("compact", "one_pass"):
        stats = "two_pass" if variant == "compact" else "one_pass"
        steps = STATISTICS[stats] + NORMALIZE + _GRADS_OF_AFFINE + (_COMPACT_DX,)
        summary = {"compact": "dx = γ/(N σ) (N dy − Σ dy − x̂ Σ dy x̂), two-pass variance",
                   "one_pass": "compact dx with var = mean(x²) − μ²"}[variant]
    else:
        steps = STATISTICS["two_pass"] + NORMALIZE + _GRADS_OF_AFFINE + (
            Elementwise("dxhat", v("dy") * v("gamma"), "∂L/∂x̂"),
            Elementwise("t_var", v("dxhat") * v("xc")),
            Reduce("s_var", "sum", "t_var", ("n",)),
            Elementwise("dvar", -v("s_var") / 2 * v("rstd") ** 3,
                        "∂L/∂σ² = −½ Σ dx̂ (x − μ) (σ² + ε)^{−3/2}, the power taken as rstd³"),
            Elementwise("t_mu", -v("dxhat") * v("rstd")),
            Reduce("s_mu", "sum", "t_mu", ("n",)),
            Elementwise("t_c", -2 * v("xc")),
            Reduce("m_c", "mean", "t_c", ("n",), "mean(−2 (x − μ)), zero in exact arithmetic"),
            Elementwise("dmu", v("s_mu") + v("dvar") * v("m_c"), "∂L/∂μ"),
            Elementwise("dx", v("dxhat") * v("rstd") + v("dvar") * 2 * v("xc") / v("N") + v("dmu") / v("N"),
                        "∂L/∂x = dx̂/σ + ∂L/∂σ² · 2(x − μ)/N + ∂L/∂μ / N"),
        )
        summary = "the original paper's chain: dx̂ → dvar → dμ → dx"
    return Formulation(variant, summary, (X, GAMMA, DY, EPS), steps, ("dx", "dgamma", "dbeta"), AXES, SIZES)


def _forward_definition(lengths, inputs):
    return {"y": run_symbolic(_forward_form("two_pass"), lengths, inputs)["y"]}


def _backward_definition(lengths, inputs):
    beta = {(d,): sp.Symbol(f"beta_{d}", real=True) for d in range(lengths["d"])}
    y = run_symbolic(_forward_form("two_pass"), lengths, {**inputs, "beta": beta})["y"]
    L = sum(inputs["dy"][idx] * y[idx] for idx in y)          # ⟨dy, y⟩: its gradient is the VJP
    return {"dx": {idx: sp.diff(L, x) for idx, x in inputs["x"].items()},
            "dgamma": {idx: sp.diff(L, g) for idx, g in inputs["gamma"].items()},
            "dbeta": {idx: sp.diff(L, b) for idx, b in beta.items()}}


# Generic N: the loss seen from sample i.  With R = Σ_{k≠i} x_k, Q = Σ_{k≠i} x_k², P = Σ_{k≠i} dy_k x_k,
# D = Σ_{k≠i} dy_k (all free of x_i),  L = Σ_k dy_k y_k = γ/σ (dy_i x_i + P − μ (dy_i + D)) + β (dy_i + D).
_xi, _dyi, _g, _b, _R, _Q, _P, _D = sp.symbols("x_i dy_i gamma beta R Q P D", real=True)
_eps = sp.Symbol("epsilon", positive=True)
_mu = (_xi + _R) / N
_var = (_xi ** 2 + _Q) / N - _mu ** 2
_sigma = sp.sqrt(_var + _eps)
_L = _g / _sigma * (_dyi * _xi + _P - _mu * (_dyi + _D)) + _b * (_dyi + _D)
_dbeta = _dyi + _D
_dgamma = (_dyi * _xi + _P - _mu * (_dyi + _D)) / _sigma
_xhat = (_xi - _mu) / _sigma
_SETTING = ("any N ≥ 1: R = Σ_{k≠i} x_k, Q = Σ_{k≠i} x_k², P = Σ_{k≠i} dy_k x_k, D = Σ_{k≠i} dy_k "
            "are free of x_i; σ² = (x_i² + Q)/N − μ², μ = (x_i + R)/N")
GENERIC = (
    GenericClaim(r"\frac{\partial L}{\partial x_i} = \frac{\gamma}{N\sigma}\Big(N\,dy_i - \sum_k dy_k - \hat x_i \sum_k dy_k \hat x_k\Big)",
                 sp.diff(_L, _xi), _g / (N * _sigma) * (N * _dyi - _dbeta - _xhat * _dgamma), _SETTING),
    GenericClaim(r"\frac{\partial L}{\partial \gamma} = \sum_k dy_k \hat x_k", sp.diff(_L, _g), _dgamma, _SETTING),
    GenericClaim(r"\frac{\partial L}{\partial \beta} = \sum_k dy_k", sp.diff(_L, _b), _dbeta, _SETTING),
)

DERIVATION = (
    DerivationStep("forward definition",
                   r"\mu = \frac1N \sum_k x_k,\quad \sigma^2 = \frac1N \sum_k (x_k-\mu)^2,\quad \hat x_k = \frac{x_k-\mu}{\sqrt{\sigma^2+\epsilon}},\quad y_k = \gamma \hat x_k + \beta"),
    DerivationStep("affine parameters",
                   r"\frac{\partial L}{\partial \beta} = \sum_k dy_k, \qquad \frac{\partial L}{\partial \gamma} = \sum_k dy_k \hat x_k, \qquad \frac{\partial L}{\partial \hat x_k} = \gamma\, dy_k"),
    DerivationStep("variance",
                   r"\frac{\partial L}{\partial \sigma^2} = -\frac12 \sum_k \frac{\partial L}{\partial \hat x_k} (x_k-\mu) (\sigma^2+\epsilon)^{-3/2}"),
    DerivationStep("mean",
                   r"\frac{\partial L}{\partial \mu} = -\sum_k \frac{\partial L}{\partial \hat x_k} \frac{1}{\sqrt{\sigma^2+\epsilon}} + \frac{\partial L}{\partial \sigma^2} \frac{1}{N}\sum_k -2(x_k-\mu)"),
    DerivationStep("chain to the input",
                   r"\frac{\partial L}{\partial x_i} = \frac{\partial L}{\partial \hat x_i}\frac{1}{\sqrt{\sigma^2+\epsilon}} + \frac{\partial L}{\partial \sigma^2}\frac{2(x_i-\mu)}{N} + \frac{\partial L}{\partial \mu}\frac1N"),
    DerivationStep("compact form (Σ(x − μ) = 0 removes the last term of ∂L/∂μ)",
                   r"\frac{\partial L}{\partial x_i} = \frac{\gamma}{N\sqrt{\sigma^2+\epsilon}}\Big(N\,dy_i - \sum_k dy_k - \hat x_i \sum_k dy_k \hat x_k\Big)"),
)

_INVARIANT_INPUTS = (X, GAMMA, DY, EPS, DX_OUT, DGAMMA_OUT, DBETA_OUT)
# Rounding error of one term is about u·|γ|/σ·(|dy_i| + |x̂_i| + 1)·(1 + |x_i|/σ): dx's own terms, times
# the amplification of x̂'s rounding error (x − μ loses digits when |x| ≫ σ).  Its scale, per element.
_TERM_SCALE = (Elementwise("term_scale", sp.Abs(v("gamma")) * v("rstd") * (sp.Abs(v("dy")) + sp.Abs(v("xhat")) + 1)
                           * (1 + sp.Abs(v("x")) * v("rstd"))),)

BATCHNORM = Op(
    name="batchnorm", family="batchnorm", summary="training-mode batch norm with biased variance",
    inputs=(X, GAMMA, BETA, EPS), outputs=(Y_OUT,),
    formulations={n: _forward_form(n) for n in ("two_pass", "one_pass")},
    definition=_forward_definition,
    proof_lengths=tuple({"n": n, "d": 1} for n in range(2, 5)) + ({"n": 2, "d": 2},),
    derivation=DERIVATION[:1],
    scalars={"eps": 1e-5},
    independent_axis="d",
)

BATCHNORM_BACKWARD = Op(
    name="batchnorm_backward", family="batchnorm",
    summary="(dx, dγ, dβ) of training-mode batch norm, given the upstream gradient dy",
    inputs=(X, GAMMA, DY, EPS), outputs=(DX_OUT, DGAMMA_OUT, DBETA_OUT),
    formulations={n: _backward_form(n) for n in ("compact", "staged", "one_pass")},
    definition=_backward_definition,
    proof_lengths=tuple({"n": n, "d": 1} for n in range(2, 5)) + ({"n": 2, "d": 2},),
    derivation=DERIVATION,
    generic=GENERIC,
    invariants=(
        Invariant("Σ_i dx_i = 0 per feature", r"\sum_i \frac{\partial L}{\partial x_i} = 0",
                  Formulation("dx_sum", "Σ_n dx", _INVARIANT_INPUTS,
                              sum_residual("dx", ("n",)) + STATISTICS["two_pass"] + NORMALIZE + _TERM_SCALE,
                              ("r", "term_scale"), AXES, SIZES),
                  floor="term_scale"),
        # Σ dx·x̂ = 0 holds only for ε = 0: Σ x̂² = N σ²/(σ² + ε), so the exact identity keeps an ε term.
        Invariant("Σ_i dx_i x̂_i = γ ε (σ² + ε)^(−3/2) Σ_i dy_i x̂_i per feature (= 0 at ε = 0)",
                  r"\sum_i \frac{\partial L}{\partial x_i}\,\hat x_i = \frac{\gamma\,\epsilon}{(\sigma^2+\epsilon)^{3/2}} \sum_i dy_i\,\hat x_i",
                  Formulation("dx_xhat", "Σ_n dx x̂ − γ ε (σ² + ε)^(−3/2) Σ_n dy x̂", _INVARIANT_INPUTS,
                              STATISTICS["two_pass"] + NORMALIZE + (
                                  Elementwise("dx_xhat", v("dx") * v("xhat")),
                                  Reduce("lhs", "sum", "dx_xhat", ("n",)),
                                  Elementwise("dy_xhat", v("dy") * v("xhat")),
                                  Reduce("sum_dy_xhat", "sum", "dy_xhat", ("n",)),
                                  Elementwise("r", v("lhs") - v("gamma") * v("eps") * v("rstd") ** 3 * v("sum_dy_xhat")),
                              ) + _TERM_SCALE, ("r", "term_scale"), AXES, SIZES),
                  floor="term_scale"),
    ),
    scalars={"eps": 1e-5},
    independent_axis="d",
)
