"""Softmax, its Jacobian and its vector–Jacobian product (rows of z are independent samples)."""
from __future__ import annotations

import sympy as sp

from ..op import DerivationStep, GenericClaim, Invariant, Op
from ..program import Delta, Elementwise, Formulation, Input, Reduce, Relabel, value_symbol as v
from ..symbolic import run_symbolic

Z = Input("z", ("b", "k"), "logits, one row per sample", role="logits")
DY = Input("dy", ("b", "k"), "upstream gradient ∂L/∂s", role="upstream")
S_OUT = Input("s", ("b", "k"), "probabilities")
J_OUT = Input("J", ("b", "i", "j"), "J[b,i,j] = ∂s_i/∂z_j")
DZ_OUT = Input("dz", ("b", "k"), "∂L/∂z")

#: How each softmax variant computes ``s`` from ``z``; shared by every op that needs probabilities.
SOFTMAX_STEPS = {
    "naive": (
        Elementwise("e", sp.exp(v("z")), "exponentiate"),
        Reduce("S", "sum", "e", ("k",), "partition function"),
        Elementwise("s", v("e") / v("S")),
    ),
    "shifted": (
        Reduce("m", "max", "z", ("k",), "row maximum (any shift is exact in real arithmetic)"),
        Elementwise("e", sp.exp(v("z") - v("m")), "every exponent ≤ 0: no overflow"),
        Reduce("S", "sum", "e", ("k",), "1 ≤ S ≤ K"),
        Elementwise("s", v("e") / v("S")),
    ),
    "logsumexp": (
        Reduce("m", "max", "z", ("k",)),
        Elementwise("e", sp.exp(v("z") - v("m"))),
        Reduce("S", "sum", "e", ("k",)),
        Elementwise("lse", v("m") + sp.log(v("S")), "log-sum-exp"),
        Elementwise("s", sp.exp(v("z") - v("lse"))),
    ),
}
SUMMARY = {
    "naive": "s = exp(z) / Σ exp(z)",
    "shifted": "s = exp(z − max z) / Σ exp(z − max z)",
    "logsumexp": "s = exp(z − logsumexp(z))",
}


def _softmax_form(variant):
    return Formulation(variant, SUMMARY[variant], (Z,), SOFTMAX_STEPS[variant], ("s",), ("b", "k"))


def _jacobian_form(variant):
    steps = SOFTMAX_STEPS[variant] + (
        Relabel("s_i", "s", (("k", "i"),)),
        Relabel("s_j", "s", (("k", "j"),)),
        Delta("delta", ("i", "j")),
        Elementwise("J", v("s_i") * (v("delta") - v("s_j")), "closed form s_i (δ_ij − s_j)"),
    )
    return Formulation(variant, f"J = s_i (δ_ij − s_j), {SUMMARY[variant]}", (Z,), steps, ("J",),
                       ("b", "k", "i", "j"))


def _complement_jacobian_form():
    """J_ii = s_i Σ_{k≠i} e_k / S instead of s_i (1 − s_i): no cancellation when s_i ≈ 1."""
    steps = SOFTMAX_STEPS["shifted"] + (
        Relabel("s_i", "s", (("k", "i"),)),
        Relabel("s_j", "s", (("k", "j"),)),
        Relabel("e_j", "e", (("k", "j"),)),
        Delta("delta", ("i", "j")),
        Elementwise("others", v("e_j") * (1 - v("delta")), "e_j for j ≠ i"),
        Reduce("R", "sum", "others", ("j",), "Σ_{k≠i} e_k, summed without subtracting"),
        Elementwise("J", v("s_i") * (v("delta") * v("R") / v("S") - (1 - v("delta")) * v("s_j")),
                    "diagonal s_i Σ_{k≠i} e_k / S, off-diagonal −s_i s_j"),
    )
    return Formulation("complement", "J_ii = s_i Σ_{k≠i} e_k / S, J_ij = −s_i s_j (shifted exponentials)",
                       (Z,), steps, ("J",), ("b", "k", "i", "j"))


def _backward_form(variant):
    steps = SOFTMAX_STEPS[variant] + (
        Elementwise("p", v("dy") * v("s")),
        Reduce("c", "sum", "p", ("k",), "⟨dy, s⟩"),
        Elementwise("dz", v("s") * (v("dy") - v("c")), "vector–Jacobian product s ⊙ (dy − ⟨dy, s⟩)"),
    )
    return Formulation(variant, f"dz = s ⊙ (dy − ⟨dy, s⟩), {SUMMARY[variant]}", (Z, DY), steps, ("dz",),
                       ("b", "k"))


def _probabilities(lengths, inputs):
    return run_symbolic(_softmax_form("naive"), lengths, inputs)


def _softmax_definition(lengths, inputs):
    return {"s": _probabilities(lengths, inputs)["s"]}


def _jacobian_definition(lengths, inputs):
    vals = _probabilities(lengths, inputs)
    s, z = vals["s"], vals["z"]
    K = lengths["k"]
    return {"J": {(b, i, j): sp.diff(s[(b, i)], z[(b, j)])
                  for b in range(lengths["b"]) for i in range(K) for j in range(K)}}


def _backward_definition(lengths, inputs):
    vals = _probabilities(lengths, inputs)
    s, z, dy = vals["s"], vals["z"], vals["dy"]
    K = lengths["k"]
    return {"dz": {(b, j): sum(dy[(b, i)] * sp.diff(s[(b, i)], z[(b, j)]) for i in range(K))
                   for b in range(lengths["b"]) for j in range(K)}}


# Generic K: for i ≠ j, S = e^{z_i} + e^{z_j} + R where R (the other K − 2 terms) is free of z_i, z_j;
# for i = j, S = e^{z_i} + R.  Every entry of the K×K Jacobian is one of these two cases.
_zi, _zj, _R = sp.Symbol("z_i", real=True), sp.Symbol("z_j", real=True), sp.Symbol("R", positive=True)
_S_off = sp.exp(_zi) + sp.exp(_zj) + _R
_S_diag = sp.exp(_zi) + _R
_si_off, _sj_off, _si_diag = sp.exp(_zi) / _S_off, sp.exp(_zj) / _S_off, sp.exp(_zi) / _S_diag
_GENERIC_SETTING = ("any K ≥ 2: S = e^{z_i} + e^{z_j} + R (i ≠ j) or S = e^{z_i} + R (i = j), "
                    "R > 0 the sum over the remaining classes, independent of z_i and z_j")
# The same with indexed symbols: z an IndexedBase, S a SymPy Sum over K = j + 1 + m classes (m ≥ 0, so j is
# a valid index).  sympy.diff differentiates through the Sum (a KroneckerDelta inside), doit() resolves it.
_m = sp.Symbol("m", integer=True, nonnegative=True)
_ii, _jj, _kk = sp.symbols("i j k", integer=True, nonnegative=True)
_zI_ = sp.IndexedBase("z", real=True)
_S_indexed = sp.Sum(sp.exp(_zI_[_kk]), (_kk, 0, _jj + _m))
_s_indexed = sp.exp(_zI_[_ii]) / _S_indexed
INDEXED_SETTING = "indexed symbols: z an IndexedBase, S = Sum(exp(z[k]), (k, 0, K − 1)) with symbolic K > j"

JACOBIAN_GENERIC = (
    GenericClaim(r"\frac{\partial s_i}{\partial z_j} = s_i(\delta_{ij} - s_j) \quad \text{(indexed, symbolic } K)",
                 sp.diff(_s_indexed, _zI_[_jj]).doit(),
                 _s_indexed * (sp.KroneckerDelta(_ii, _jj) - sp.exp(_zI_[_jj]) / _S_indexed),
                 INDEXED_SETTING, method="simplify"),
    GenericClaim(r"\frac{\partial s_i}{\partial z_j} = -s_i s_j \quad (i \ne j)",
                 sp.diff(_si_off, _zj), -_si_off * _sj_off, _GENERIC_SETTING),
    GenericClaim(r"\frac{\partial s_i}{\partial z_i} = s_i (1 - s_i)",
                 sp.diff(_si_diag, _zi), _si_diag * (1 - _si_diag), _GENERIC_SETTING),
)

_i, _j, _k = sp.symbols("i j k", integer=True)
_zI = sp.IndexedBase("z")
_sI = sp.IndexedBase("s")
_Ssym = sp.Symbol("S")
JACOBIAN_DERIVATION = (
    DerivationStep("forward definition",
                   rf"s_i = \frac{{e^{{z_i}}}}{{S}}, \qquad S = {sp.latex(sp.Sum(sp.exp(_zI[_k]), (_k, 1, sp.Symbol('K'))))}"),
    DerivationStep("derivative of the partition function",
                   r"\frac{\partial S}{\partial z_j} = e^{z_j}, \qquad \frac{\partial e^{z_i}}{\partial z_j} = \delta_{ij}\, e^{z_i}"),
    DerivationStep("quotient rule",
                   r"\frac{\partial s_i}{\partial z_j} = \frac{\delta_{ij} e^{z_i} S - e^{z_i} e^{z_j}}{S^2}"),
    DerivationStep("Kronecker delta, closed form",
                   r"\frac{\partial s_i}{\partial z_j} = s_i(\delta_{ij} - s_j), \qquad J = \operatorname{diag}(s) - s s^{\top}"),
)


def sum_residual(value, over, target=0):
    """Steps computing r = Σ_over value − target (an invariant's residual)."""
    return (Reduce("total", "sum", value, over), Elementwise("r", v("total") - target))


SOFTMAX = Op(
    name="softmax", family="softmax", summary="probabilities s = softmax(z) along the last axis",
    inputs=(Z,), outputs=(S_OUT,),
    formulations={n: _softmax_form(n) for n in ("naive", "shifted", "logsumexp")},
    definition=_softmax_definition,
    stable="shifted",
    proof_lengths=tuple({"b": 1, "k": K} for K in range(2, 6)),
    derivation=(DerivationStep("forward definition", JACOBIAN_DERIVATION[0].latex),
                DerivationStep("shift invariance",
                               r"\frac{e^{z_i - m}}{\sum_k e^{z_k - m}} = \frac{e^{-m} e^{z_i}}{e^{-m} \sum_k e^{z_k}} = s_i \quad \text{for every real } m"),
                DerivationStep("log-sum-exp form",
                               r"s_i = e^{z_i - \operatorname{lse}(z)}, \qquad \operatorname{lse}(z) = m + \log \sum_k e^{z_k - m}")),
    invariants=(Invariant("rows sum to 1", r"\sum_k s_k = 1",
                          Formulation("rows_sum_to_one", "Σ_k s − 1", (Z, S_OUT),
                                      sum_residual("s", ("k",), 1), ("r",), ("b", "k")),
                          floor="1"),),
)

SOFTMAX_JACOBIAN = Op(
    name="softmax_jacobian", family="softmax", summary="J[b,i,j] = ∂s_i/∂z_j",
    inputs=(Z,), outputs=(J_OUT,),
    formulations={**{n: _jacobian_form(n) for n in ("naive", "shifted")}, "complement": _complement_jacobian_form()},
    definition=_jacobian_definition,
    stable="shifted",
    accurate="complement",
    proof_lengths=tuple({"b": 1, "k": K, "i": K, "j": K} for K in range(2, 6)),
    derivation=JACOBIAN_DERIVATION,
    generic=JACOBIAN_GENERIC,
    invariants=(
        Invariant("rows sum to 0", r"\sum_j J_{ij} = 0",
                  Formulation("jacobian_rows", "Σ_j J", (Z, J_OUT),
                              sum_residual("J", ("j",), 0), ("r",), ("b", "k", "i", "j")), floor="1"),
        Invariant("columns sum to 0", r"\sum_i J_{ij} = 0",
                  Formulation("jacobian_columns", "Σ_i J", (Z, J_OUT),
                              sum_residual("J", ("i",), 0), ("r",), ("b", "k", "i", "j")), floor="1"),
    ),
)

SOFTMAX_BACKWARD = Op(
    name="softmax_backward", family="softmax", summary="dz = Jᵀ dy, the vector–Jacobian product",
    inputs=(Z, DY), outputs=(DZ_OUT,),
    formulations={n: _backward_form(n) for n in ("naive", "shifted")},
    definition=_backward_definition,
    stable="shifted",
    proof_lengths=tuple({"b": 1, "k": K} for K in range(2, 6)),
    derivation=JACOBIAN_DERIVATION + (
        DerivationStep("vector–Jacobian product",
                       r"dz_j = \sum_i dy_i\, s_i(\delta_{ij} - s_j) = s_j\Big(dy_j - \sum_i dy_i s_i\Big)"),),
    generic=JACOBIAN_GENERIC,
    invariants=(Invariant("gradient sums to 0", r"\sum_k dz_k = 0",
                          Formulation("backward_sum", "Σ_k dz", (Z, DY, DZ_OUT),
                                      sum_residual("dz", ("k",), 0), ("r",), ("b", "k")),
                          floor="dy"),),
)


# ---------------------------------------------------------------- known mistakes (each proved to differ)

def _with_mistakes(op: Op, entries) -> Op:
    from dataclasses import replace

    from ..define import mistake
    return replace(op, mistakes=tuple(mistake(name, message, steps, op=op) for name, message, steps in entries))


_WRONG_AXIS = (
    Reduce("m", "max", "z", ("b",), "maximum over the batch (the wrong axis): not one shift per row"),
    Elementwise("e", sp.exp(v("z") - v("m"))),
    Reduce("S", "sum", "e", ("k",)),
    Elementwise("s", v("e") / v("S")),
)
_WRONG_SUM_AXIS = (
    Reduce("m", "max", "z", ("k",)),
    Elementwise("e", sp.exp(v("z") - v("m"))),
    Reduce("S", "sum", "e", ("b",), "normalised over the batch (the wrong axis)"),
    Elementwise("s", v("e") / v("S")),
)
SOFTMAX = _with_mistakes(SOFTMAX, (
    ("max_over_wrong_axis", "your softmax subtracts a maximum taken over the wrong axis (per column, not per row): "
     "the shift must be one constant per row", _WRONG_AXIS),
    ("sum_over_wrong_axis", "your softmax normalises over the wrong axis: each row must sum to 1", _WRONG_SUM_AXIS),
))
SOFTMAX_JACOBIAN = _with_mistakes(SOFTMAX_JACOBIAN, (
    ("diagonal_only", "your Jacobian keeps only the diagonal s_i(1 − s_i): the off-diagonal entries −s_i s_j are "
     "missing (J = diag(s) − s sᵀ)", SOFTMAX_STEPS["shifted"] + (
        Relabel("s_i", "s", (("k", "i"),)), Relabel("s_j", "s", (("k", "j"),)), Delta("delta", ("i", "j")),
        Elementwise("J", v("delta") * v("s_i") * (1 - v("s_i")) + 0 * v("s_j")))),
    ("missing_delta", "your Jacobian is −s_i s_j everywhere: the Kronecker delta term diag(s) is missing",
     SOFTMAX_STEPS["shifted"] + (Relabel("s_i", "s", (("k", "i"),)), Relabel("s_j", "s", (("k", "j"),)),
                                Elementwise("J", -v("s_i") * v("s_j")))),
))
SOFTMAX_BACKWARD = _with_mistakes(SOFTMAX_BACKWARD, (
    ("missing_projection", "your dz is s ⊙ dy: the term −s·⟨s, dy⟩ (the off-diagonal part of the Jacobian) is missing",
     SOFTMAX_STEPS["shifted"] + (Elementwise("dz", v("s") * v("dy")),)),
    ("diagonal_jacobian", "your dz is dy ⊙ s(1 − s): you used only the diagonal of the softmax Jacobian",
     SOFTMAX_STEPS["shifted"] + (Elementwise("dz", v("dy") * v("s") * (1 - v("s"))),)),
    ("sign_flip", "the sign of dz is flipped", SOFTMAX_STEPS["shifted"] + (
        Elementwise("p", v("dy") * v("s")), Reduce("c", "sum", "p", ("k",)),
        Elementwise("dz", -v("s") * (v("dy") - v("c"))))),
    ("divided_by_classes", "your dz is divided by the number of classes K", SOFTMAX_STEPS["shifted"] + (
        Elementwise("p", v("dy") * v("s")), Reduce("c", "sum", "p", ("k",)),
        Elementwise("dz", v("s") * (v("dy") - v("c")) / v("K")))),
))
