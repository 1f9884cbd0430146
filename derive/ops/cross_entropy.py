"""Cross-entropy of softmax probabilities against labels, and its gradient, with the conventions real
code uses as parameters: ``reduction`` ("sum" over the batch, or "mean" as PyTorch and cs231n), ``labels``
("soft" rows, "onehot" rows, or "index": integer class ids of shape (B,)) and ``label_smoothing`` α
(targets (1 − α) y + α/K).  The gradient is derived by reverse mode from the loss and proved equal to the
hand formulations ŷ Σ_k q − q (÷ B for the mean)."""
from __future__ import annotations

import sympy as sp

from ..define import define_backward, define_op
from ..op import DerivationStep, GenericClaim, Invariant, Op, Param
from ..program import Elementwise, Formulation, Input, OneHot, Reduce, value_symbol as v
from .softmax import SOFTMAX_STEPS, Z, sum_residual

PARAMS = (
    Param("reduction", "sum", ("sum", "mean"), doc="sum over the batch, or mean over it (PyTorch's default)"),
    Param("labels", "soft", ("soft", "onehot", "index"),
          doc="label rows (soft or one-hot, float (B,K)) or integer class ids (B,)"),
    Param("label_smoothing", 0.0, kind=float, doc="α: targets (1 − α) y + α/K"),
)
L_OUT = Input("L", (), "loss", role="output")
DZ_OUT = Input("dz", ("b", "k"), "∂L/∂z")
AXES = ("b", "k")

_LSE_STEPS = SOFTMAX_STEPS["logsumexp"][:-1]      # m, e, S, lse


def _labels(labels: str, alpha) -> tuple[Input, tuple, sp.Expr]:
    """(label input, steps turning it into targets q, the symbol of q)."""
    if labels == "index":
        y = Input("y", ("b",), "integer class ids, one per row", role="index", classes="k")
        steps = (OneHot("y1", "y", "k", "one-hot rows of the class ids"),)
        target = "y1"
    else:
        y = Input("y", AXES, "label rows" + (" (one-hot)" if labels == "onehot" else ": one-hot, smoothed or soft"),
                  role="onehot" if labels == "onehot" else "labels")
        steps, target = (), "y"
    if alpha:
        steps += (Elementwise("q", (1 - alpha) * v(target) + alpha / v("K"), "smoothed targets (1 − α) y + α/K"),)
        target = "q"
    return y, steps, v(target)


def _reduce_loss(reduction: str) -> tuple:
    if reduction == "sum":
        return (Reduce("L", "sum", "t", ("b", "k"), "sum over classes and batch"),)
    return (Reduce("Lb", "sum", "t", ("k",), "loss of each row"),
            Reduce("L", "mean", "Lb", ("b",), "mean over the batch"))


def _loss_steps(variant, targets, q):
    if variant == "naive":
        return targets + SOFTMAX_STEPS["naive"] + (Elementwise("t", -q * sp.log(v("s")), "−q log s"),)
    return targets + _LSE_STEPS + (Elementwise("t", q * (v("lse") - v("z")), "q (lse − z): no log of 0"),)


def _gradient_steps(variant, targets, q, reduction):
    if variant == "naive":
        steps, p = SOFTMAX_STEPS["naive"], v("s")
    else:
        steps, p = _LSE_STEPS, sp.exp(v("z") - v("lse"))
    scale = 1 if reduction == "sum" else 1 / v("B")
    return targets + steps + (
        Reduce("Q", "sum", q.name, ("k",), "label mass (1 for normalized labels)"),
        Elementwise("dz", (p * v("Q") - q) * scale, "(ŷ Σq − q)" + ("" if reduction == "sum" else " / B")))


_SUMMARY = {
    ("loss", "naive"): "L = −Σ q log(exp(z) / Σ exp(z))",
    ("loss", "logsumexp"): "L = Σ q (logsumexp(z) − z)",
    ("grad", "naive"): "dz = softmax(z) Σ_k q − q, softmax = exp(z) / Σ exp(z)",
    ("grad", "logsumexp"): "dz = exp(z − logsumexp(z)) Σ_k q − q",
}


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

_LOSS_DOMAIN = {"sizes": {"b": (1, 8), "k": (1, 16)}, "max_abs": 1e4, "max_spread": 100.0}


def _parse_alpha(label_smoothing) -> sp.Rational:
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"parameter 'label_smoothing' must be in [0, 1); got {label_smoothing!r}")
    return sp.Rational(repr(float(label_smoothing))) if label_smoothing else sp.Integer(0)


def _sizes(alpha, reduction) -> dict:
    return {**({"K": "k"} if alpha else {}), **({"B": "b"} if reduction == "mean" else {})}


def _described(reduction, labels, alpha) -> str:
    parts = ["summed over the batch" if reduction == "sum" else "averaged over the batch"]
    parts.append({"soft": "label rows", "onehot": "one-hot label rows", "index": "integer class ids"}[labels])
    if alpha:
        parts.append(f"label smoothing α = {alpha}")
    return ", ".join(parts)


def cross_entropy(reduction="sum", labels="soft", label_smoothing=0.0) -> Op:
    """The cross-entropy loss with the given conventions (see module doc)."""
    alpha = _parse_alpha(label_smoothing)
    y, targets, q = _labels(labels, alpha)
    sizes = _sizes(alpha, reduction)
    forms = {n: (_SUMMARY[("loss", n)], _loss_steps(n, targets, q) + _reduce_loss(reduction))
             for n in ("naive", "logsumexp")}
    defaults = reduction == "sum" and labels != "index" and not alpha
    return define_op("cross_entropy", family="cross_entropy", inputs=(Z, y), outputs=(L_OUT,), axis_order=AXES,
                     sizes=sizes, formulations=forms, summary="L = −Σ_k q log softmax(z), " + _described(reduction, labels, alpha),
                     stable="logsumexp", independent_axis="b", derivation=DERIVATION[:2] if defaults else (),
                     proof_lengths=tuple({"b": B, "k": K} for B in (1, 2) for K in range(2, 5)),
                     domain=_LOSS_DOMAIN, params={"reduction": reduction, "labels": labels,
                                                  "label_smoothing": float(label_smoothing)}, param_specs=PARAMS)


def cross_entropy_backward(reduction="sum", labels="soft", label_smoothing=0.0) -> Op:
    """∂L/∂z of :func:`cross_entropy` with the same conventions: derived, and two hand formulations."""
    forward = cross_entropy(reduction, labels, label_smoothing)
    alpha = _parse_alpha(label_smoothing)
    _, targets, q = _labels(labels, alpha)
    defaults = reduction == "sum" and labels != "index" and not alpha
    invariants = ()
    if labels != "index":
        y = forward.inputs[1]
        invariants = (Invariant(
            "gradient rows sum to 0 for normalized labels",
            r"\sum_k y_k = 1 \Rightarrow \sum_k \frac{\partial L}{\partial z_k} = 0",
            Formulation("gradient_sum", "Σ_k dz", (Z, y, DZ_OUT), sum_residual("dz", ("k",)), ("r",), AXES),
            floor="y", normalize=_normalized_labels),)
    else:
        invariants = (Invariant(
            "gradient rows sum to 0", r"\sum_k \frac{\partial L}{\partial z_k} = 0",
            Formulation("gradient_sum", "Σ_k dz", (Z, forward.inputs[1], DZ_OUT), sum_residual("dz", ("k",)),
                        ("r",), AXES), floor="1"),)
    forms = {n: (_SUMMARY[("grad", n)] + ("" if reduction == "sum" else ", ÷ B"),
                 _gradient_steps(n, targets, q, reduction)) for n in ("naive", "logsumexp")}
    return define_backward(forward, "cross_entropy_backward", formulations=forms, stable="logsumexp",
                           summary="∂L/∂z = softmax(z) Σ_k q − q (= ŷ − y)" + ("" if reduction == "sum" else " ÷ B")
                                   + ", " + _described(reduction, labels, alpha),
                           derivation=DERIVATION if defaults else (), generic=GENERIC if defaults else (),
                           invariants=invariants, mistakes=_gradient_mistakes(targets, q, reduction, labels),
                           proof_lengths=tuple({"b": B, "k": K} for B in (1, 2) for K in range(2, 5 if B == 1 else 4)),
                           params=forward.params, param_specs=PARAMS)


def _gradient_mistakes(targets, q, reduction, labels) -> tuple:
    """Known wrong gradients (each proved to differ from the truth): scaling, sign, label mass."""
    grad = _gradient_steps("logsumexp", targets, q, reduction)[:-1]
    p = sp.exp(v("z") - v("lse"))
    right = (p * v("Q") - q) * (1 if reduction == "sum" else 1 / v("B"))
    out = [("sign_flip", "the sign is flipped: you computed q − ŷ instead of ŷ − q", grad,
            Elementwise("dz", -right))]
    if reduction == "sum":
        out.append(("mean_instead_of_sum", "your gradient is divided by the batch size B: it is the gradient of "
                    "the mean-reduced loss (pass reduction=\"mean\" if that is the loss you meant)", grad,
                    Elementwise("dz", right / v("B"))))
    else:
        out.append(("sum_instead_of_mean", "your gradient is not divided by the batch size B: it is the gradient "
                    "of the summed loss (reduction=\"sum\"), the mean needs ÷ B", grad, Elementwise("dz", right * v("B"))))
    out.append(("divided_by_classes", "your gradient is divided by the number of classes K (a mean over classes "
                "instead of a sum)", grad, Elementwise("dz", right / v("K"))))
    if labels == "soft":
        out.append(("labels_not_summing_to_one", "you computed ŷ − y, which is right only when every label row sums "
                    "to 1: the gradient is ŷ Σ_k y − y", grad,
                    Elementwise("dz", (p - q) * (1 if reduction == "sum" else 1 / v("B")))))
    return tuple((name, message, steps + (last,)) for name, message, steps, last in out)

