"""Binary cross-entropy with logits, summed over every element (PyTorch's
``binary_cross_entropy_with_logits(z, y, reduction="sum")``), and its gradient ``σ(z) − y``.

Forward formulations: ``naive`` −y log σ(z) − (1 − y) log(1 − σ(z)) with σ = 1/(1 + e^{−z}), and
``softplus``, the form frameworks use, (z + |z|)/2 + log1p(e^{−|z|}) − y z (never an exponent > 0, never
log of 0).  Where the naive one breaks, per dtype with largest finite value Ω and p significand bits:

* e^{−z} overflows for z < −ln Ω (−11.09 float16, −88.72 bfloat16/float32, −709.78 float64): σ = 0,
  log σ = −inf, the loss is inf (nan where y = 0);
* 1 + e^{−z} rounds to 1 once e^{−z} ≤ 2^{−p}, i.e. z ≥ p ln 2 (7.62 float16, 5.55 bfloat16,
  16.64 float32, 36.74 float64): 1 − σ = 0 and log(1 − σ) = −inf, the loss is inf for y < 1 (nan at y = 1),
  where the true value is about (1 − y) z.

Gradient formulations: ``naive`` 1/(1 + e^{−z}) − y (e^{−z} overflows for z < −ln Ω; the result is then
0, the right limit) and ``stable`` e^{min(z,0)} / (e^{min(z,0)} + e^{−max(z,0)}) − y with
min(z, 0) = (z − |z|)/2, max(z, 0) = (z + |z|)/2: both exponents ≤ 0.
"""
from __future__ import annotations

import sympy as sp
from sympy.codegen.cfunctions import log1p

from ..define import define_backward, define_op
from ..op import DerivationStep, GenericClaim
from ..program import Elementwise, Input, Reduce, value_symbol as v

Z = Input("z", ("b", "k"), "logits, one per binary decision", role="logits")
Y = Input("y", ("b", "k"), "targets in [0, 1] (each entry its own probability)", role="labels")
L_OUT = Input("L", (), "loss, summed over every element")
DZ_OUT = Input("dz", ("b", "k"), "∂L/∂z")
AXES = ("b", "k")
DOMAIN = {"sizes": {"b": (1, 8), "k": (1, 16)}, "max_abs": 1e4, "max_spread": 100.0,
          "thresholds": {"naive-": "ln(max)"}}      # e^(−z) overflows once −z > ln(max)
# The softplus form splits on the sign of each z: 2^(B·K) cases per proof, so the sizes stay small.
PROOF_LENGTHS = ({"b": 1, "k": 1}, {"b": 1, "k": 2}, {"b": 1, "k": 3}, {"b": 2, "k": 2})

# σ(z) in two steps: 1/den with den a value (a reciprocal of a sum written inline is misprinted by the
# numpy printer of derive.codegen: "1/1 + exp(-z)").
_SIGMOID_STEPS = (
    Elementwise("den", 1 + sp.exp(-v("z")), "1 + e^{−z}: e^{−z} overflows for z < −ln Ω"),
    Elementwise("sig", 1 / v("den"), "σ(z)"),
)
_SUM = (Reduce("L", "sum", "t", ("b", "k"), "sum over every element"),)

FORMULATIONS = {
    "naive": ("L = Σ −y log σ(z) − (1 − y) log(1 − σ(z)), σ(z) = 1/(1 + e^{−z})", _SIGMOID_STEPS + (
        Elementwise("t", -v("y") * sp.log(v("sig")) - (1 - v("y")) * sp.log(1 - v("sig")),
                    "log(1 − σ) is log 0 once 1 + e^{−z} rounds to 1"),
    ) + _SUM),
    "softplus": ("L = Σ (z + |z|)/2 + log1p(e^{−|z|}) − y z", (
        Elementwise("a", sp.Abs(v("z"))),
        Elementwise("t", (v("z") + v("a")) / 2 + log1p(sp.exp(-v("a"))) - v("y") * v("z"),
                    "softplus(z) − y z, every exponent ≤ 0"),
    ) + _SUM),
}

DERIVATION = (
    DerivationStep("forward definition",
                   r"L = \sum_{b,k} -y \log \sigma(z) - (1 - y) \log(1 - \sigma(z)), \qquad \sigma(z) = \frac{1}{1 + e^{-z}}"),
    DerivationStep("logs of the sigmoid",
                   r"\log \sigma(z) = -\log(1 + e^{-z}), \qquad \log(1 - \sigma(z)) = -z - \log(1 + e^{-z})"),
    DerivationStep("softplus form",
                   r"\ell = z - y z + \log(1 + e^{-z}) = \max(z, 0) + \operatorname{log1p}(e^{-|z|}) - y z"),
)
BACKWARD_DERIVATION = DERIVATION + (
    DerivationStep("differentiate",
                   r"\frac{\partial \ell}{\partial z} = 1 - y - \frac{e^{-z}}{1 + e^{-z}} = \sigma(z) - y"),
    DerivationStep("stable sigmoid",
                   r"\sigma(z) = \frac{e^{\min(z,0)}}{e^{\min(z,0)} + e^{-\max(z,0)}}, \qquad \min(z,0) = \tfrac{z - |z|}{2},\ \max(z,0) = \tfrac{z + |z|}{2}"),
)

BCE_WITH_LOGITS = define_op(
    "bce_with_logits", family="bce_with_logits", inputs=(Z, Y), outputs=(L_OUT,), axis_order=AXES,
    formulations=FORMULATIONS, summary="L = Σ −y log σ(z) − (1 − y) log(1 − σ(z)), summed over every element",
    stable="softplus", independent_axis="b", derivation=DERIVATION, domain=DOMAIN, proof_lengths=PROOF_LENGTHS,
    mistakes=(("mean_instead_of_sum", "your loss is divided by B·K: it is the mean over every element (PyTorch's "
               "default reduction), not the sum", FORMULATIONS["softplus"][1][:-1] + (
                   Reduce("Ls", "sum", "t", ("b", "k")), Elementwise("L", v("Ls") / (v("B") * v("K"))))),),
)

_NAIVE_GRAD = _SIGMOID_STEPS + (Elementwise("dz", v("sig") - v("y"), "σ(z) − y, σ = 1/(1 + e^{−z})"),)
_STABLE_SIGMOID = (
    Elementwise("a", sp.Abs(v("z"))),
    Elementwise("lo", sp.exp((v("z") - v("a")) / 2), "e^{min(z, 0)} ≤ 1"),
    Elementwise("hi", sp.exp(-(v("z") + v("a")) / 2), "e^{−max(z, 0)} ≤ 1"),
    Elementwise("sig", v("lo") / (v("lo") + v("hi")), "σ(z), no overflow for any z"),
)
_STABLE_GRAD = _STABLE_SIGMOID + (Elementwise("dz", v("sig") - v("y")),)

# Generic size: L is a sum of terms each reading one (z, y), so one term decides every entry.
_z, _y = sp.symbols("z y", real=True)
_ell = -_y * sp.log(1 / (1 + sp.exp(-_z))) - (1 - _y) * sp.log(1 - 1 / (1 + sp.exp(-_z)))
GENERIC = (GenericClaim(r"\frac{\partial L}{\partial z_{bk}} = \sigma(z_{bk}) - y_{bk}",
                        sp.diff(_ell, _z), 1 / (1 + sp.exp(-_z)) - _y,
                        "any B, K: L = Σ_{b,k} ℓ(z_bk, y_bk) and each term reads one z"),)

BCE_WITH_LOGITS_BACKWARD = define_backward(
    BCE_WITH_LOGITS, "bce_with_logits_backward",
    formulations={"naive": ("dz = 1/(1 + e^{−z}) − y", _NAIVE_GRAD),
                  "stable": ("dz = e^{min(z,0)} / (e^{min(z,0)} + e^{−max(z,0)}) − y", _STABLE_GRAD)},
    stable="stable", accurate="stable", reference="stable", derivation=BACKWARD_DERIVATION, generic=GENERIC,
    summary="∂L/∂z = σ(z) − y",
    mistakes=(
        ("sign_flip", "the sign is flipped: you computed y − σ(z) instead of σ(z) − y",
         _STABLE_SIGMOID + (Elementwise("dz", v("y") - v("sig")),)),
        ("mean_instead_of_sum", "your gradient is divided by B·K: it is the gradient of the mean over every element "
         "(PyTorch's default reduction=\"mean\"), not of the sum", _STABLE_SIGMOID + (
             Elementwise("dz", (v("sig") - v("y")) / (v("B") * v("K"))),)),
        ("sigmoid_derivative", "your gradient is multiplied by σ'(z) = σ(1 − σ), the sigmoid's derivative "
         "applied a second time: with logits the gradient is σ(z) − y itself",
         _STABLE_SIGMOID + (Elementwise("dz", (v("sig") - v("y")) * v("sig") * (1 - v("sig"))),)),
    ),
)
