"""Batch normalization in training mode and its backward pass, with the conventions real code uses as
parameters: ``correction`` (0: the biased variance the normalisation uses in PyTorch and the paper;
1: Bessel-corrected, N − 1, as in makemore-style code) and ``layout`` ("nd": x (N, D), features are
columns; "nchw": x (N, C, H, W) with statistics over N, H, W per channel).  Also the running statistics
(momentum update) and the eval-mode forward from them.
"""
from __future__ import annotations

import sympy as sp

from ..define import define_backward, define_op
from ..op import DerivationStep, GenericClaim, Invariant, Op, Param
from ..program import Elementwise, Formulation, Input, Reduce, value_symbol as v
from .softmax import sum_residual

PARAMS = (
    Param("correction", 0, (0, 1), kind=int, doc="variance divides by N − correction (0 biased, 1 Bessel)"),
    Param("layout", "nd", ("nd", "nchw"), doc="x (N, D) with features as columns, or x (N, C, H, W) per channel"),
)

X = Input("x", ("n", "d"), "activations, one row per sample, one column per feature", role="activations")
GAMMA = Input("gamma", ("d",), "scale per feature", role="weight")
BETA = Input("beta", ("d",), "shift per feature", role="weight")
DY = Input("dy", ("n", "d"), "upstream gradient ∂L/∂y", role="upstream")
EPS = Input("eps", (), "added to the variance before the square root", role="eps")
Y_OUT = Input("y", ("n", "d"), "normalized, scaled and shifted activations", role="output")
N = sp.Symbol("N", integer=True, positive=True)


class Layout:
    """Axes of one layout: x's axes, the per-feature axis, the axes statistics run over."""

    def __init__(self, layout: str):
        if layout == "nd":
            self.x, self.feature, self.over = ("n", "d"), "d", ("n",)
        else:
            self.x, self.feature, self.over = ("n", "c", "h", "w"), "c", ("n", "h", "w")
        self.order = self.x
        self.sizes = {"N": self.over[0] if len(self.over) == 1 else self.over}

    def inputs(self, *names):
        made = {"x": Input("x", self.x, X.doc, role="activations"),
                "gamma": Input("gamma", (self.feature,), GAMMA.doc, role="weight"),
                "beta": Input("beta", (self.feature,), BETA.doc, role="weight"),
                "dy": Input("dy", self.x, DY.doc, role="upstream"), "eps": EPS}
        return tuple(made[n] for n in names)


def statistics(variant: str, over=("n",), correction: int = 0) -> tuple:
    """Batch mean, centred values and variance (divided by N − correction) over the axes ``over``."""
    unbiased = (lambda total: total / (v("N") - correction)) if correction else None
    if variant == "two_pass":
        var = (Reduce("var", "mean", "sq", over, "biased variance, two passes"),) if not correction else (
            Reduce("ssq", "sum", "sq", over), Elementwise("var", unbiased(v("ssq")), "Σ(x − μ)² / (N − 1)"))
        return (Reduce("mu", "mean", "x", over, "batch mean"),
                Elementwise("xc", v("x") - v("mu"), "centre first"),
                Elementwise("sq", v("xc") ** 2)) + var
    scale = 1 if not correction else v("N") / (v("N") - correction)
    return (Reduce("mu", "mean", "x", over, "batch mean"),
            Elementwise("x2", v("x") ** 2),
            Reduce("ex2", "mean", "x2", over, "E[x²]"),
            Elementwise("var", (v("ex2") - v("mu") ** 2) * scale, "E[x²] − E[x]²: cancels catastrophically when |mean| ≫ std"),
            Elementwise("xc", v("x") - v("mu")))


#: Batch statistics of the (N, D) layout with the biased variance, two ways (kept for other families).
STATISTICS = {k: statistics(k) for k in ("two_pass", "one_pass")}
NORMALIZE = (
    Elementwise("rstd", 1 / sp.sqrt(v("var") + v("eps")), "1/√(var + ε)"),
    Elementwise("xhat", v("xc") * v("rstd")),
)
_FORWARD_SUMMARY = {"two_pass": "y = γ (x − μ)/√(var + ε) + β, var = mean((x − μ)²)",
                    "one_pass": "y = γ (x − μ)/√(var + ε) + β, var = mean(x²) − μ²"}


def _forward_steps(stats, lay: Layout, correction):
    return statistics(stats, lay.over, correction) + NORMALIZE + (Elementwise("y", v("gamma") * v("xhat") + v("beta")),)


def _affine_grads(lay):
    return (Reduce("dbeta", "sum", "dy", lay.over, "∂L/∂β = Σ dy"),
            Elementwise("dyxh", v("dy") * v("xhat")),
            Reduce("dgamma", "sum", "dyxh", lay.over, "∂L/∂γ = Σ dy x̂"))


def _compact_dx(correction, *, variance_term=True, name="dx"):
    """γ/(N σ) (N dy − Σ dy − x̂ Σ dy x̂ · N/(N − c))."""
    factor = 1 if not correction else v("N") / (v("N") - correction)
    term = v("xhat") * v("dgamma") * factor if variance_term else 0
    return Elementwise(name, v("gamma") * v("rstd") / v("N") * (v("N") * v("dy") - v("dbeta") - term),
                       "γ/(N σ) (N dy − Σ dy − x̂ Σ dy x̂" + (")" if not correction else " · N/(N − 1))"))


def _backward_steps(variant, lay: Layout, correction):
    if variant in ("compact", "one_pass"):
        stats = "two_pass" if variant == "compact" else "one_pass"
        return statistics(stats, lay.over, correction) + NORMALIZE + _affine_grads(lay) + (_compact_dx(correction),)
    denominator = v("N") - correction
    return statistics("two_pass", lay.over, correction) + NORMALIZE + _affine_grads(lay) + (
        Elementwise("dxhat", v("dy") * v("gamma"), "∂L/∂x̂"),
        Elementwise("t_var", v("dxhat") * v("xc")),
        Reduce("s_var", "sum", "t_var", lay.over),
        Elementwise("dvar", -v("s_var") / 2 * v("rstd") ** 3,
                    "∂L/∂σ² = −½ Σ dx̂ (x − μ) (σ² + ε)^{−3/2}, the power taken as rstd³"),
        Elementwise("t_mu", -v("dxhat") * v("rstd")),
        Reduce("s_mu", "sum", "t_mu", lay.over),
        Elementwise("t_c", -2 * v("xc")),
        Reduce("m_c", "sum", "t_c", lay.over, "Σ −2 (x − μ), zero in exact arithmetic"),
        Elementwise("dmu", v("s_mu") + v("dvar") * v("m_c") / denominator, "∂L/∂μ"),
        Elementwise("dx", v("dxhat") * v("rstd") + v("dvar") * 2 * v("xc") / denominator + v("dmu") / v("N"),
                    "∂L/∂x = dx̂/σ + ∂L/∂σ² · 2(x − μ)/(N − c) + ∂L/∂μ / N"),
    )


_BACKWARD_SUMMARY = {"compact": "dx = γ/(N σ) (N dy − Σ dy − x̂ Σ dy x̂), two-pass variance",
                     "staged": "the original paper's chain: dx̂ → dvar → dμ → dx",
                     "one_pass": "compact dx with var = mean(x²) − μ²"}


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


CORRECTED_STEP = DerivationStep(
    "Bessel-corrected variance σ² = Σ(x − μ)²/(N − 1): ∂σ²/∂x_i = 2(x_i − μ)/(N − 1), so the x̂ term gains N/(N − 1)",
    r"\frac{\partial L}{\partial x_i} = \frac{\gamma}{N\sqrt{\sigma^2+\epsilon}}\Big(N\,dy_i - \sum_k dy_k - \frac{N}{N-1}\hat x_i \sum_k dy_k \hat x_k\Big)")

_DOMAIN = {"sizes": {"n": (1, 64), "d": (1, 4)}, "max_mean": 1e4, "max_var": 1e8}
_DOMAIN_NCHW = {"sizes": {"n": (1, 8), "c": (1, 3), "h": (1, 3), "w": (1, 3)}, "max_mean": 1e4, "max_var": 1e8}
_LENGTHS_NCHW = ({"n": 2, "c": 1, "h": 1, "w": 1}, {"n": 1, "c": 1, "h": 2, "w": 2}, {"n": 3, "c": 1, "h": 1, "w": 1},
                 {"n": 2, "c": 2, "h": 1, "w": 1})


def _domain(layout: str, correction: int) -> dict:
    """Where inputs are drawn; N − 1 needs two rows."""
    domain = {**(_DOMAIN if layout == "nd" else _DOMAIN_NCHW)}
    if correction:
        domain["sizes"] = {**domain["sizes"], "n": (2, domain["sizes"]["n"][1])}
    return domain


def _lengths(lay: Layout, correction: int):
    if lay.feature == "c":
        return _LENGTHS_NCHW
    return tuple({"n": n, "d": 1} for n in range(2, 5)) + ({"n": 2, "d": 2},)


def batchnorm(correction=0, layout="nd") -> Op:
    """Training-mode batch norm with the given conventions."""
    lay = Layout(layout)
    forms = {k: (_FORWARD_SUMMARY[k] + (", ÷ (N − 1)" if correction else ""), _forward_steps(k, lay, correction))
             for k in ("two_pass", "one_pass")}
    return define_op("batchnorm", family="batchnorm", inputs=lay.inputs("x", "gamma", "beta", "eps"),
                     outputs=(Input("y", lay.x, Y_OUT.doc, role="output"),), axis_order=lay.order, sizes=lay.sizes,
                     formulations=forms, summary="training-mode batch norm with " +
                     ("biased variance" if not correction else "Bessel-corrected variance (N − 1)") +
                     ("" if layout == "nd" else ", x (N, C, H, W), statistics over N, H, W"),
                     derivation=DERIVATION[:1], independent_axis=lay.feature, proof_lengths=_lengths(lay, correction),
                     domain={**_domain(layout, correction), "shift_invariant": True},
                     params={"correction": correction, "layout": layout}, param_specs=PARAMS)


def _invariants(lay: Layout, correction: int, inputs) -> tuple:
    outs = (Input("dx", lay.x), Input("dgamma", (lay.feature,)), Input("dbeta", (lay.feature,)))
    # Rounding error of one term is about u·|γ|/σ·(|dy_i| + |x̂_i| + 1)·(1 + |x_i|/σ): dx's own terms, times
    # the amplification of x̂'s rounding error (x − μ loses digits when |x| ≫ σ).  Its scale, per element.
    term_scale = (Elementwise("term_scale", sp.Abs(v("gamma")) * v("rstd") * (sp.Abs(v("dy")) + sp.Abs(v("xhat")) + 1)
                              * (1 + sp.Abs(v("x")) * v("rstd"))),)
    stats = statistics("two_pass", lay.over, correction) + NORMALIZE
    out = [Invariant("Σ_i dx_i = 0 per feature", r"\sum_i \frac{\partial L}{\partial x_i} = 0",
                     Formulation("dx_sum", "Σ_n dx", inputs + outs,
                                 sum_residual("dx", lay.over) + stats + term_scale,
                                 ("r", "term_scale"), lay.order, lay.sizes),
                     floor="term_scale")]
    if not correction:
        # Σ dx·x̂ = 0 holds only for ε = 0: Σ x̂² = N σ²/(σ² + ε), so the exact identity keeps an ε term.
        out.append(Invariant(
            "Σ_i dx_i x̂_i = γ ε (σ² + ε)^(−3/2) Σ_i dy_i x̂_i per feature (= 0 at ε = 0)",
            r"\sum_i \frac{\partial L}{\partial x_i}\,\hat x_i = \frac{\gamma\,\epsilon}{(\sigma^2+\epsilon)^{3/2}} \sum_i dy_i\,\hat x_i",
            Formulation("dx_xhat", "Σ_n dx x̂ − γ ε (σ² + ε)^(−3/2) Σ_n dy x̂", inputs + outs,
                        stats + (Elementwise("dx_xhat", v("dx") * v("xhat")),
                                 Reduce("lhs", "sum", "dx_xhat", lay.over),
                                 Elementwise("dy_xhat", v("dy") * v("xhat")),
                                 Reduce("sum_dy_xhat", "sum", "dy_xhat", lay.over),
                                 Elementwise("r", v("lhs") - v("gamma") * v("eps") * v("rstd") ** 3 * v("sum_dy_xhat")),
                                 ) + term_scale, ("r", "term_scale"), lay.order, lay.sizes),
            floor="term_scale"))
    return tuple(out)


def _mistakes(lay: Layout, correction: int) -> tuple:
    """Known wrong batch-norm backward passes, each proved to differ from the truth."""
    good = statistics("two_pass", lay.over, correction)
    affine = _affine_grads(lay)
    other = 1 - correction
    out = [
        ("variance_as_constant", "your dx equals the batch-norm backward with the variance treated as a constant: "
         "the term x̂·Σ(dy·x̂)/N (the gradient through σ²) is missing",
         good + NORMALIZE + affine + (_compact_dx(correction, variance_term=False),)),
        ("other_variance_correction",
         "your dx equals the batch-norm backward with the " + ("unbiased (N − 1)" if other else "biased (N)") +
         " variance, but this op normalises with the " + ("biased (N)" if other else "unbiased (N − 1)") +
         f" one (pass correction={other} if that is the convention you meant)",
         statistics("two_pass", lay.over, other) + NORMALIZE + affine + (_compact_dx(other),)),
        ("variance_correction_mixed",
         "your dx takes the " + ("unbiased (N − 1)" if other else "biased (N)") + " variance for σ and x̂ but the "
         "backward formula of the " + ("biased (N)" if other else "unbiased (N − 1)") + " one (torch.var and "
         "np.var(ddof=1) divide by N − 1): the forward statistics and the backward formula must use the same "
         f"correction, here correction={correction}",
         statistics("two_pass", lay.over, other) + NORMALIZE + affine + (_compact_dx(correction),)),
        ("eps_outside_sqrt", "your dx equals the batch-norm backward with ε outside the square root: "
         "1/(√var + ε) instead of 1/√(var + ε)",
         good + (Elementwise("rstd", 1 / (sp.sqrt(v("var")) + v("eps"))), Elementwise("xhat", v("xc") * v("rstd")))
         + affine + (_compact_dx(correction),)),
        ("eps_missing_in_one_term", "your dx equals the batch-norm backward with ε missing in one term: x̂ is "
         "computed as (x − μ)/√var while the scale uses 1/√(var + ε)",
         good + NORMALIZE + (Elementwise("xhat0", v("xc") / sp.sqrt(v("var"))),) + affine +
         (Elementwise("dx", v("gamma") * v("rstd") / v("N") * (v("N") * v("dy") - v("dbeta") - v("xhat0") * v("dgamma")
                                                               * (1 if not correction else v("N") / (v("N") - correction)))),)),
        ("eps_missing_in_xhat", "your dx equals the batch-norm backward with ε missing in one term: x̂ = (x − μ)/√var "
         "(in dx and dγ) while the scale uses 1/√(var + ε)",
         good + NORMALIZE[:1] + (Elementwise("xhat", v("xc") / sp.sqrt(v("var"))),) + affine + (_compact_dx(correction),)),
        ("swapped_dgamma_dbeta", "your dγ and dβ are swapped: dγ = Σ dy·x̂ and dβ = Σ dy",
         good + NORMALIZE + (Reduce("sum_dy", "sum", "dy", lay.over), Elementwise("dyxh", v("dy") * v("xhat")),
                             Reduce("sum_dyxh", "sum", "dyxh", lay.over),
                             Elementwise("dx", _compact_dx(correction).expr.xreplace(
                                 {v("dbeta"): v("sum_dy"), v("dgamma"): v("sum_dyxh")})),
                             Elementwise("dgamma", v("sum_dy")), Elementwise("dbeta", v("sum_dyxh")))),
        ("sign_flip", "the sign of dx is flipped", good + NORMALIZE + affine + (_compact_dx(correction, name="dx_right"),
                                                                                  Elementwise("dx", -v("dx_right")))),
        ("dx_times_n", "your dx is N times too large: the 1/N of the mean is missing",
         good + NORMALIZE + affine + (_compact_dx(correction, name="dx_right"), Elementwise("dx", v("N") * v("dx_right")))),
    ]
    return tuple(out)


def batchnorm_backward(correction=0, layout="nd") -> Op:
    """(dx, dγ, dβ) of :func:`batchnorm` with the same conventions: derived by reverse mode, and the
    compact, staged (the paper's chain) and one-pass hand formulations."""
    lay = Layout(layout)
    forward = batchnorm(correction, layout)
    forms = {k: (_BACKWARD_SUMMARY[k] + (", ÷ (N − 1)" if correction else ""), _backward_steps(k, lay, correction))
             for k in ("compact", "staged", "one_pass")}
    inputs = lay.inputs("x", "gamma", "dy", "eps")
    return define_backward(forward, "batchnorm_backward", wrt=("x", "gamma", "beta"), formulations=forms,
                           stable="compact", summary="(dx, dγ, dβ) of " + forward.summary + ", given the upstream gradient dy",
                           derivation=DERIVATION + ((CORRECTED_STEP,) if correction else ()),
                           generic=GENERIC if not correction and layout == "nd" else (),
                           invariants=_invariants(lay, correction, inputs), mistakes=_mistakes(lay, correction),
                           params=forward.params, param_specs=PARAMS)



# ---------------------------------------------------------------- running statistics and eval mode

RUNNING_PARAMS = (
    Param("correction", 1, (0, 1), kind=int,
          doc="the running variance is updated with the batch variance divided by N − correction "
              "(PyTorch: 1, although it normalises with the biased one)"),
    Param("layout", "nd", ("nd", "nchw"), doc=PARAMS[1].doc),
)
_m = sp.Symbol("m", positive=True)
_var_b = sp.Symbol("sigma_b^2", positive=True)
_rv = sp.Symbol("r", positive=True)
RUNNING_CLAIM = GenericClaim(
    r"\hat r_{\text{unbiased}} - \hat r_{\text{biased}} = \frac{m\,\sigma_B^2}{N-1}",
    ((1 - _m) * _rv + _m * _var_b * N / (N - 1)) - ((1 - _m) * _rv + _m * _var_b),
    _m * _var_b / (N - 1),
    "any batch of N ≥ 2 rows: σ_B² the biased batch variance, r the running variance, m the momentum")


def batchnorm_running_stats(correction=1, layout="nd") -> Op:
    """One momentum update of the running mean and variance from a batch (PyTorch's convention by default:
    r ← (1 − m) r + m · Σ(x − μ)²/(N − 1))."""
    lay = Layout(layout)
    feature = (lay.feature,)
    inputs = (lay.inputs("x")[0], Input("running_mean", feature, "running mean before the update", role="weight"),
              Input("running_var", feature, "running variance before the update", role="positive"),
              Input("momentum", (), "weight of the new batch, m", role="fraction"))
    outputs = (Input("new_mean", feature, "(1 − m) running_mean + m μ"), Input("new_var", feature, "(1 − m) running_var + m σ²"))

    def steps(stats):
        return statistics(stats, lay.over, correction) + (
            Elementwise("new_mean", (1 - v("momentum")) * v("running_mean") + v("momentum") * v("mu")),
            Elementwise("new_var", (1 - v("momentum")) * v("running_var") + v("momentum") * v("var")))
    which = "Σ(x − μ)²/(N − 1)" if correction else "Σ(x − μ)²/N"
    return define_op("batchnorm_running_stats", family="batchnorm", inputs=inputs, outputs=outputs,
                     axis_order=lay.order, sizes=lay.sizes,
                     formulations={k: (f"r ← (1 − m) r + m σ², σ² = {which}" + (", one pass" if k == "one_pass" else ""),
                                       steps(k)) for k in ("two_pass", "one_pass")},
                     summary=f"momentum update of the running statistics, variance {which}",
                     derivation=(DerivationStep("update", r"\hat\mu \leftarrow (1-m)\hat\mu + m\mu_B, \qquad "
                                                r"\hat r \leftarrow (1-m)\hat r + m\,\frac{1}{N-c}\sum_i (x_i-\mu_B)^2"),),
                     generic=(RUNNING_CLAIM,), independent_axis=lay.feature,
                     proof_lengths=tuple({"n": n, "d": 1} for n in (2, 3, 4)) if layout == "nd" else _LENGTHS_NCHW[:3],
                     domain=_domain(layout, correction),
                     params={"correction": correction, "layout": layout}, param_specs=RUNNING_PARAMS)


def batchnorm_eval(layout="nd") -> Op:
    """Eval-mode batch norm: y = γ (x − running_mean)/√(running_var + ε) + β (no batch statistics)."""
    lay = Layout(layout)
    feature = (lay.feature,)
    x, gamma, beta, eps = lay.inputs("x", "gamma", "beta", "eps")
    inputs = (x, Input("running_mean", feature, "running mean", role="weight"),
              Input("running_var", feature, "running variance", role="positive"), gamma, beta, eps)
    steps = (Elementwise("rstd", 1 / sp.sqrt(v("running_var") + v("eps"))),
             Elementwise("y", v("gamma") * (v("x") - v("running_mean")) * v("rstd") + v("beta")))
    folded = (Elementwise("scale", v("gamma") / sp.sqrt(v("running_var") + v("eps")), "folded scale γ/√(r + ε)"),
              Elementwise("shift", v("beta") - v("running_mean") * v("scale"), "folded shift β − μ̂ γ/√(r + ε)"),
              Elementwise("y", v("x") * v("scale") + v("shift")))
    return define_op("batchnorm_eval", family="batchnorm", inputs=inputs,
                     outputs=(Input("y", lay.x, "normalized with the running statistics", role="output"),),
                     axis_order=lay.order, sizes={},
                     formulations={"direct": ("y = γ (x − μ̂)/√(r + ε) + β", steps),
                                   "folded": ("y = x · γ/√(r + ε) + (β − μ̂ γ/√(r + ε)), the form fused into a conv", folded)},
                     summary="eval-mode batch norm from the running statistics", independent_axis=lay.feature,
                     proof_lengths=({"n": 2, "d": 1}, {"n": 3, "d": 1}, {"n": 2, "d": 2}) if layout == "nd"
                     else _LENGTHS_NCHW[:3],
                     domain=_DOMAIN if layout == "nd" else _DOMAIN_NCHW,
                     params={"layout": layout}, param_specs=(PARAMS[1],))
