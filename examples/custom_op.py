"""A user-defined op: GELU with the tanh approximation, defined through gradaudit's public API.

    gelu(x)          = ½ x (1 + tanh(u)),  u = √(2/π) (x + 0.044715 x³)     x (N, D) -> y (N, D)
    gelu_backward    : x (N, D), dy (N, D) -> dx (N, D) = dy · ∂gelu/∂x

Nothing here edits gradaudit: the forward op is a straight-line program of elementwise SymPy steps, the
backward is derived from it by SymPy (reverse mode, formulation "derived") and the hand formulations are
proved equal to it.  Use it with

    gradaudit --ops examples/custom_op.py derive gelu_backward
    gradaudit --ops examples/custom_op.py check examples/custom_op.py:gelu_backward_right --op gelu_backward
    gradaudit --ops examples/custom_op.py check examples/custom_op.py:gelu_backward_wrong --op gelu_backward

Each op has a ``naive`` formulation (tanh written with exponentials, (e^{2u} − 1)/(e^{2u} + 1): e^{2u}
overflows once 2u > ln Ω, i.e. x ≳ 3.9 in float16, ≈ 9.4 in float32, then inf/inf = nan) and a
``stable`` one (½(1 + tanh u) = σ(2u) = 1/(1 + e^{−2u}): an overflow of e^{−2u} gives σ = 0, the right
limit).  The stable backward still multiplies x·u′ ~ x³ by σ(1 − σ); in float16 x³ overflows for
|x| > 40.3, where that product is inf·0 = nan (the op's domain keeps |x| ≤ 9; ``gelu_backward_right``
computes float16/bfloat16 in float32, as frameworks do).  ``gelu_backward_tanh`` is the textbook tanh
formula: right in exact arithmetic, but 1 + tanh u cancels for x ≪ 0, which the checker reports.
"""
import numpy as np
import sympy as sp

from derive import DerivationStep, Elementwise, Input, define_backward, define_op, register, value_symbol as v

C = sp.sqrt(2 / sp.pi)                 # √(2/π), exact
# 0.044715 as the exact value of the nearest double (what PyTorch's float64 kernel uses): a Rational with a
# denominator of 2^57, which the proofs treat as an arbitrary positive constant.  (With the decimal
# Rational(44715, 10**6), 8943/100000 times √(2/π) stays inside an exponential and SymPy's polynomial
# remainder rejects the proof's square-root generator there.)
A = sp.Rational(0.044715)

X = Input("x", ("n", "d"), "pre-activations", role="logits")
Y = Input("y", ("n", "d"), "activations gelu(x)")
# offsets up to 3 plus a spread up to 6: |x| ≤ 9 covers the curved part of GELU (beyond, gelu(x) ≈ max(x, 0))
# and the naive overflow at x ≈ 3.9 in float16, and keeps x³ finite in float16
DOMAIN = {"sizes": {"n": (1, 8), "d": (1, 16)}, "max_abs": 3.0, "max_spread": 6.0}

# √(2/π) is a value of its own (rounded once), so the steps that use it stay short.
K = Elementwise("k", C, "√(2/π)")
U = Elementwise("u", v("k") * (v("x") + A * v("x") ** 3), "u = √(2/π)(x + 0.044715 x³)")
DU = Elementwise("du", v("k") * (1 + 3 * A * v("x") ** 2), "u′ = √(2/π)(1 + 3·0.044715 x²)")
TANH_BY_EXP = (Elementwise("e2", sp.exp(2 * v("u")), "e^{2u}: overflows for large u"),
               Elementwise("t", (v("e2") - 1) / (v("e2") + 1), "tanh u = (e^{2u} − 1)/(e^{2u} + 1)"))
SIGMOID_2U = (Elementwise("den", 1 + sp.exp(-2 * v("u")), "1 + e^{−2u}"),
              Elementwise("sig", 1 / v("den"), "σ(2u) = ½(1 + tanh u)"))

GELU = define_op(
    "gelu", family="gelu", inputs=(X,), outputs=(Y,), axis_order=("n", "d"), independent_axis="n",
    summary="GELU, tanh approximation: y = ½ x (1 + tanh(√(2/π)(x + 0.044715 x³)))", domain=DOMAIN,
    formulations={
        "naive": ("y = ½ x (1 + (e^{2u} − 1)/(e^{2u} + 1))", (K, U) + TANH_BY_EXP + (
            Elementwise("y", v("x") * (1 + v("t")) / 2),)),
        "stable": ("y = x σ(2u) = x / (1 + e^{−2u})", (K, U) + SIGMOID_2U + (Elementwise("y", v("x") * v("sig")),)),
    },
    derivation=(
        DerivationStep("forward definition",
                       r"y = \tfrac12 x \big(1 + \tanh u\big), \qquad u = \sqrt{2/\pi}\,(x + 0.044715\,x^3)"),
        DerivationStep("sigmoid form", r"\tfrac12 (1 + \tanh u) = \frac{1}{1 + e^{-2u}} = \sigma(2u) \;\Rightarrow\; y = x\,\sigma(2u)"),
    ),
)

GELU_BACKWARD = define_backward(
    GELU, "gelu_backward",
    formulations={
        "naive": ("dx = dy (½(1 + t) + ½ x (1 − t²) u′), t = (e^{2u} − 1)/(e^{2u} + 1)", (K, U, DU) + TANH_BY_EXP + (
            Elementwise("dx", v("dy") * ((1 + v("t")) / 2 + v("x") * (1 - v("t") ** 2) * v("du") / 2)),)),
        "stable": ("dx = dy σ(2u) (1 + 2 x u′ σ(−2u)), σ(∓2u) = 1/(1 + e^{±2u})", (K, U, DU) + SIGMOID_2U + (
            Elementwise("den_neg", 1 + sp.exp(2 * v("u")), "1 + e^{2u}"),
            Elementwise("sig_neg", 1 / v("den_neg"), "σ(−2u) = 1 − σ(2u), without the subtraction"),
            Elementwise("dx", v("dy") * v("sig") * (1 + 2 * v("x") * v("du") * v("sig_neg"))),)),
    },
    stable="stable", accurate="stable",
    derivation=(
        DerivationStep("product and chain rule",
                       r"\frac{\partial y}{\partial x} = \tfrac12 (1 + \tanh u) + \tfrac12 x\,(1 - \tanh^2 u)\,u'(x), \qquad u' = \sqrt{2/\pi}\,(1 + 3 \cdot 0.044715\,x^2)"),
        DerivationStep("sigmoid form", r"\frac{\partial y}{\partial x} = \sigma(2u) + 2 x\,u'\,\sigma(2u)\big(1 - \sigma(2u)\big) = \sigma(2u)\big(1 + 2 x\,u'\,\sigma(-2u)\big)"),
    ),
    mistakes=(("tanh_term_missing", "the derivative of the tanh term is missing: you computed dy · ½(1 + tanh u), "
               "dropping ½ x (1 − tanh² u) u′", (K, U) + SIGMOID_2U + (Elementwise("dx", v("dy") * v("sig")),)),),
)

# replace=True: the check command imports this file a second time to find the user's function.
register(GELU, GELU_BACKWARD, replace=True)


# --- A user's hand-written backward passes, as `gradaudit check FILE.py:fn --op gelu_backward` takes them.
_C = np.sqrt(2 / np.pi)
_A = 0.044715


def gelu_backward_right(x, dy):
    """Correct: dy · σ(2u) (1 + 2 x u′ σ(−2u)), the sigmoid form.  Both sigmoids are 1/(1 + e^{∓2u}): an
    overflowing exponential gives the right limit 0, and nothing cancels.  float16/bfloat16 inputs are
    computed in float32, as frameworks do (x² and x³ overflow float16 for |x| > 40), and the result is
    returned in the dtype of x."""
    work = np.float64 if x.dtype == np.float64 else np.float32
    xw, dyw = x.astype(work), dy.astype(work)
    u = _C * (xw + _A * xw ** 3)
    du = _C * (1 + 3 * _A * xw * xw)
    with np.errstate(over="ignore"):
        dx = dyw * (1 / (1 + np.exp(-2 * u))) * (1 + 2 * xw * du / (1 + np.exp(2 * u)))
    return dx.astype(x.dtype)


def gelu_backward_tanh(x, dy):
    """The textbook formula dy · (½(1 + tanh u) + ½ x (1 − tanh² u) u′), which loses relative accuracy for
    x ≪ 0: 1 + tanh u and 1 − tanh² u cancel (at x = −6 about 2.7e-7 relative in float64, κ ≈ 54), and
    the checker reports it as beyond what a stable implementation errs by."""
    c, a = x.dtype.type(_C), x.dtype.type(_A)
    t = np.tanh(c * (x + a * x ** 3))
    return dy * ((1 + t) / 2 + x * (1 - t * t) * c * (1 + 3 * a * x * x) / 2)


def gelu_backward_wrong(x, dy):
    """Wrong: the derivative of the tanh term is missing (only ½(1 + tanh u) is kept)."""
    c, a = x.dtype.type(_C), x.dtype.type(_A)
    t = np.tanh(c * (x + a * x ** 3))
    return dy * (1 + t) / 2
