"""Softmax with a temperature: ``s = softmax(z / T)`` along the last axis, T > 0 a scalar input, and its
vector–Jacobian product with respect to z, ``dz = s ⊙ (dy − ⟨dy, s⟩) / T`` (rows are independent).

``naive`` exponentiates z/T directly (overflows once z/T > ln(max) of the dtype: a small T brings that
point close); ``shifted`` subtracts the row maximum first (max z/T = (max z)/T for T > 0).
"""
from __future__ import annotations

import sympy as sp

from ..define import define_backward, define_op
from ..op import DerivationStep, GenericClaim, Invariant
from ..program import Elementwise, Formulation, Input, Reduce, value_symbol as v
from .softmax import sum_residual

Z = Input("z", ("b", "k"), "logits, one row per sample", role="logits")
T = Input("T", (), "temperature, > 0 (dimensionless)", role="temperature")
DY = Input("dy", ("b", "k"), "upstream gradient ∂L/∂s", role="upstream")
S_OUT = Input("s", ("b", "k"), "probabilities softmax(z / T)")
DZ_OUT = Input("dz", ("b", "k"), "∂L/∂z")
AXES = ("b", "k")
DOMAIN = {"sizes": {"b": (1, 8), "k": (1, 16)}, "max_abs": 1e4, "max_spread": 100.0,
          "thresholds": {"naive": "ln(max)"}}       # e^(z/T) overflows once z/T > ln(max) (probes use T = 1)

#: How each variant computes s from z and T.
STEPS = {
    "naive": (
        Elementwise("e", sp.exp(v("z") / v("T")), "exponentiate z/T"),
        Reduce("S", "sum", "e", ("k",), "partition function"),
        Elementwise("s", v("e") / v("S")),
    ),
    "shifted": (
        Reduce("m", "max", "z", ("k",), "row maximum of z (of z/T too, T > 0)"),
        Elementwise("e", sp.exp((v("z") - v("m")) / v("T")), "every exponent ≤ 0: no overflow"),
        Reduce("S", "sum", "e", ("k",), "1 ≤ S ≤ K"),
        Elementwise("s", v("e") / v("S")),
    ),
}
SUMMARY = {"naive": "s = exp(z/T) / Σ exp(z/T)", "shifted": "s = exp((z − max z)/T) / Σ exp((z − max z)/T)"}

DERIVATION = (
    DerivationStep("forward definition", r"s_i = \frac{e^{z_i/T}}{\sum_k e^{z_k/T}}, \qquad T > 0"),
    DerivationStep("shift invariance",
                   r"\frac{e^{(z_i - m)/T}}{\sum_k e^{(z_k - m)/T}} = s_i \quad \text{for every real } m"),
)
BACKWARD_DERIVATION = DERIVATION[:1] + (
    DerivationStep("chain rule through u = z/T",
                   r"\frac{\partial s_i}{\partial z_j} = \frac{1}{T}\frac{\partial s_i}{\partial u_j} = \frac{1}{T} s_i(\delta_{ij} - s_j)"),
    DerivationStep("vector–Jacobian product",
                   r"dz_j = \frac{1}{T}\sum_i dy_i\, s_i(\delta_{ij} - s_j) = \frac{s_j}{T}\Big(dy_j - \sum_i dy_i s_i\Big)"),
)

SOFTMAX_T = define_op(
    "softmax_t", family="softmax_t", inputs=(Z, T), outputs=(S_OUT,), axis_order=AXES,
    formulations={k: (SUMMARY[k], STEPS[k]) for k in STEPS}, summary="probabilities s = softmax(z / T), T > 0",
    stable="shifted", independent_axis="b", derivation=DERIVATION, domain=DOMAIN, scalars={"T": 1.0},
    invariants=(Invariant("rows sum to 1", r"\sum_k s_k = 1",
                          Formulation("rows_sum_to_one", "Σ_k s − 1", (Z, T, S_OUT),
                                      sum_residual("s", ("k",), 1), ("r",), AXES), floor="1"),),
)


def _backward_steps(variant):
    return STEPS[variant] + (
        Elementwise("p", v("dy") * v("s")),
        Reduce("c", "sum", "p", ("k",), "⟨dy, s⟩"),
        Elementwise("dz", v("s") * (v("dy") - v("c")) / v("T"), "s ⊙ (dy − ⟨dy, s⟩) / T"),
    )


_RIGHT = _backward_steps("shifted")[:-1]
_VJP = v("s") * (v("dy") - v("c"))

# Generic K: from z_j, with R = Σ_{k≠j} e^{z_k/T} > 0 and P = Σ_{k≠j} dy_k e^{z_k/T} free of z_j,
# L = Σ_k dy_k s_k = (dy_j e^{z_j/T} + P) / (e^{z_j/T} + R).
_zj, _dyj, _P = sp.symbols("z_j dy_j P", real=True)
_R, _T = sp.Symbol("R", positive=True), sp.Symbol("T", positive=True)
_ej = sp.exp(_zj / _T)
_sj, _dot = _ej / (_ej + _R), (_dyj * _ej + _P) / (_ej + _R)
GENERIC = (GenericClaim(
    r"\frac{\partial L}{\partial z_j} = \frac{s_j}{T}\Big(dy_j - \sum_k dy_k s_k\Big)",
    sp.diff((_dyj * _ej + _P) / (_ej + _R), _zj), _sj * (_dyj - _dot) / _T,
    "any K ≥ 1, T > 0: R = Σ_{k≠j} e^{z_k/T} > 0 and P = Σ_{k≠j} dy_k e^{z_k/T} are free of z_j"),)

SOFTMAX_T_BACKWARD = define_backward(
    SOFTMAX_T, "softmax_t_backward", wrt=("z",),
    formulations={k: (f"dz = s ⊙ (dy − ⟨dy, s⟩) / T, {SUMMARY[k]}", _backward_steps(k)) for k in STEPS},
    stable="shifted", derivation=BACKWARD_DERIVATION, generic=GENERIC,
    summary="dz = s ⊙ (dy − ⟨dy, s⟩) / T, the vector–Jacobian product of softmax(z / T) with respect to z",
    invariants=(Invariant("gradient rows sum to 0", r"\sum_k dz_k = 0",
                          Formulation("backward_sum", "Σ_k dz", (Z, DY, T, DZ_OUT), sum_residual("dz", ("k",)),
                                      ("r",), AXES), floor="dy"),),
    mistakes=(
        ("missing_temperature", "the 1/T of the chain rule through z/T is missing: you computed the plain softmax "
         "VJP s ⊙ (dy − ⟨dy, s⟩)", _RIGHT + (Elementwise("dz", _VJP),)),
        ("times_temperature", "your gradient is multiplied by T instead of divided by it",
         _RIGHT + (Elementwise("dz", _VJP * v("T")),)),
        ("diagonal_only", "only the diagonal of the Jacobian is used: s (1 − s) dy / T",
         _RIGHT + (Elementwise("dz", v("s") * (1 - v("s")) * v("dy") / v("T")),)),
    ),
)
