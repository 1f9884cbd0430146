"""Cross-entropy of softmax probabilities against label rows, summed over the batch, and its gradient."""
from __future__ import annotations

import sympy as sp

from ..op import DerivationStep, GenericClaim, Invariant, Op
from ..program import Elementwise, Formulation, Input, Reduce, value_symbol as v
from ..symbolic import run_symbolic
from .softmax import SOFTMAX_STEPS, Z, sum_residual

Y = Input("y", ("b", "k"), "label rows: one-hot, smoothed or soft (need not sum to 1)")
L_OUT = Input("L", (), "loss, summed over the batch")
DZ_OUT = Input("dz", ("b", "k"), "∂L/∂z")

_LSE_STEPS = SOFTMAX_STEPS["logsumexp"][:-1]      # m, e, S, lse


def _loss_form(variant):
    if variant == "naive":
        steps = SOFTMAX_STEPS["naive"] + (Elementwise("t", -v("y") * sp.log(v("s")), "−y log s"),)
        summary = "L = −Σ y log(exp(z) / Σ exp(z))"
    else:
        steps = _LSE_STEPS + (Elementwise("t", v("y") * (v("lse") - v("z")), "y (lse − z): no log of 0"),)
        summary = "L = Σ y (logsumexp(z) − z)"
    steps += (Reduce("L", "sum", "t", ("b", "k"), "sum over classes and batch"),)
    return Formulation(variant, summary, (Z, Y), steps, ("L",), ("b", "k"))


def _gradient_form(variant):
    if variant == "naive":
        steps = SOFTMAX_STEPS["naive"]
        p = v("s")
        summary = "dz = softmax(z) Σ_k y − y, softmax = exp(z) / Σ exp(z)"
    else:
        steps = _LSE_STEPS
        p = sp.exp(v("z") - v("lse"))
        summary = "dz = exp(z − logsumexp(z)) Σ_k y − y"
    steps += (Reduce("Y", "sum", "y", ("k",), "label mass (1 for normalized labels)"),
              Elementwise("dz", p * v("Y") - v("y"), "ŷ Σy − y"))
    return Formulation(variant, summary, (Z, Y), steps, ("dz",), ("b", "k"))


def _loss_definition(lengths, inputs):
    return {"L": run_symbolic(_loss_form("naive"), lengths, inputs)["L"]}


def _gradient_definition(lengths, inputs):
    vals = run_symbolic(_loss_form("naive"), lengths, inputs)
    L, z = vals["L"][()], vals["z"]
    return {"dz": {idx: sp.diff(L, zk) for idx, zk in z.items()}}


def _normalized_labels(inputs):
    """Replace the last label of each row by 1 − Σ(others), so every row sums to 1 exactly."""
    y = dict(inputs["y"])
    rows = {b for b, _ in y}
    for b in rows:
        ks = sorted(k for bb, k in y if bb == b)
        y[(b, ks[-1])] = 1 - sum(y[(b, k)] for k in ks[:-1])
    return {**inputs, "y": y}


_zj, _R, _yj, _Yr, _P = (sp.Symbol("z_j", real=True), sp.Symbol("R", positive=True),
                         sp.Symbol("y_j", real=True), sp.Symbol("Y_r", real=True), sp.Symbol("P", real=True))
_L_generic = -(_yj * _zj + _P) + (_yj + _Yr) * sp.log(sp.exp(_zj) + _R)

DERIVATION = (
    DerivationStep("forward definition",
                   r"L = -\sum_b \sum_k y_{bk} \log s_{bk}, \qquad s_{bk} = \frac{e^{z_{bk}}}{\sum_l e^{z_{bl}}}"),
    DerivationStep("log of a softmax",
                   r"\log s_k = z_k - \log \sum_l e^{z_l} \;\Rightarrow\; L = \sum_k y_k\Big(\log \sum_l e^{z_l} - z_k\Big)"),
    DerivationStep("differentiate",
                   r"\frac{\partial L}{\partial z_j} = \Big(\sum_k y_k\Big) \frac{e^{z_j}}{\sum_l e^{z_l}} - y_j = s_j \sum_k y_k - y_j"),
    DerivationStep("normalized labels", r"\sum_k y_k = 1 \;\Rightarrow\; \frac{\partial L}{\partial z} = \hat y - y"),
)
_m, _jj, _kk = (sp.Symbol("m", integer=True, nonnegative=True), sp.Symbol("j", integer=True, nonnegative=True),
                sp.Symbol("k", integer=True, nonnegative=True))
_zI, _yI = sp.IndexedBase("z", real=True), sp.IndexedBase("y", real=True)
_S_indexed = sp.Sum(sp.exp(_zI[_kk]), (_kk, 0, _jj + _m))
_L_indexed = sp.Sum(_yI[_kk] * (sp.log(_S_indexed) - _zI[_kk]), (_kk, 0, _jj + _m))

GENERIC = (GenericClaim(
    r"\frac{\partial L}{\partial z_j} = s_j \sum_k y_k - y_j \quad \text{(indexed, symbolic } K)",
    sp.diff(_L_indexed, _zI[_jj]).doit(),
    sp.exp(_zI[_jj]) / _S_indexed * sp.Sum(_yI[_kk], (_kk, 0, _jj + _m)) - _yI[_jj],
    "indexed symbols: z, y IndexedBase, L = Sum(y[k] (log S − z[k]), (k, 0, K − 1)) with symbolic K > j",
    method="simplify"), GenericClaim(
    r"\frac{\partial L}{\partial z_j} = s_j \sum_k y_k - y_j",
    sp.diff(_L_generic, _zj), sp.exp(_zj) / (sp.exp(_zj) + _R) * (_yj + _Yr) - _yj,
    "any K ≥ 1: Σ_{k≠j} e^{z_k} = R > 0, Σ_{k≠j} y_k = Y_r and Σ_{k≠j} y_k z_k = P are free of z_j"),)

CROSS_ENTROPY = Op(
    name="cross_entropy", family="cross_entropy", summary="L = −Σ_b Σ_k y log softmax(z), summed over the batch",
    inputs=(Z, Y), outputs=(L_OUT,),
    formulations={n: _loss_form(n) for n in ("naive", "logsumexp")},
    definition=_loss_definition,
    stable="logsumexp",
    proof_lengths=tuple({"b": B, "k": K} for B in (1, 2) for K in range(2, 5)),
    derivation=DERIVATION[:2],
)

CROSS_ENTROPY_BACKWARD = Op(
    name="cross_entropy_backward", family="cross_entropy", summary="∂L/∂z = softmax(z) Σ_k y − y (= ŷ − y)",
    inputs=(Z, Y), outputs=(DZ_OUT,),
    formulations={n: _gradient_form(n) for n in ("naive", "logsumexp")},
    definition=_gradient_definition,
    stable="logsumexp",
    proof_lengths=tuple({"b": 1, "k": K} for K in range(2, 6)),
    derivation=DERIVATION,
    generic=GENERIC,
    invariants=(Invariant("gradient rows sum to 0 for normalized labels", r"\sum_k y_k = 1 \Rightarrow \sum_k \frac{\partial L}{\partial z_k} = 0",
                          Formulation("gradient_sum", "Σ_k dz", (Z, Y, DZ_OUT), sum_residual("dz", ("k",)),
                                      ("r",), ("b", "k")),
                          floor="y", normalize=_normalized_labels),),
)
