"""The families added through the public op API (log_softmax, softmax_t, bce_with_logits, layer_norm,
rms_norm) and the user GELU of examples/custom_op.py: proofs, dtypes kept by every formulation, values
and gradients against PyTorch (float64) and against the same program run in mpmath, the thresholds of the
naive BCE, the accuracy of the log1p log-softmax, and the invariants on computed gradients."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import mpmath
import numpy as np
import pytest

from derive import Kernel, families, get_op, load_ops, prove_op, registry
from numeric.dtypes import resolve_dtype
from numeric.evaluate import evaluate
from numeric.invariants import check_invariants

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "custom_op.py"
FAMILIES = ("log_softmax", "softmax_t", "bce_with_logits", "layer_norm", "rms_norm")
BUILTIN = [name for fam in FAMILIES for name in families()[fam]]
DTYPES = ("float16", "bfloat16", "float32", "float64")


@pytest.fixture
def gelu(monkeypatch):
    """The example's module, its ops registered in a throw-away copy of the registry (no other test sees them)."""
    monkeypatch.setattr(registry, "OPS", dict(registry.OPS))
    monkeypatch.setattr(registry, "_INSTANCES", dict(registry._INSTANCES))
    assert load_ops(EXAMPLE) == ["gelu", "gelu_backward"]
    spec = importlib.util.spec_from_file_location("custom_op_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)        # registers again (replace=True), as `check FILE.py:fn` does
    return module


def _inputs(op, shape, seed=0):
    """Arguments for ``op`` drawn by role: logits N(0, 3²)·, targets in [0, 1], dy in [−1, 1], …"""
    rng = np.random.default_rng(seed)
    lengths = dict(zip(op.inputs[0].axes, shape))
    out = []
    for inp in op.inputs:
        size = tuple(lengths[a] for a in inp.axes)
        out.append({"logits": lambda: 3 * rng.standard_normal(size),
                    "labels": lambda: rng.uniform(0, 1, size),
                    "upstream": lambda: rng.uniform(-1, 1, size),
                    "activations": lambda: 1.5 + 2 * rng.standard_normal(size),
                    "weight": lambda: rng.uniform(-2, 2, size),
                    "eps": lambda: np.float64(1e-5),
                    "temperature": lambda: np.float64(0.7)}[inp.role]())
    return out


def test_families_are_registered_in_order():
    names = list(registry.OPS)          # other tests may register user ops after these
    start = names.index("log_softmax")
    assert names[start:start + 10] == ["log_softmax", "log_softmax_backward", "softmax_t", "softmax_t_backward",
                           "bce_with_logits", "bce_with_logits_backward", "layer_norm", "layer_norm_backward",
                           "rms_norm", "rms_norm_backward"]
    assert get_op("layer_norm_backward").signature() == (
        "layer_norm_backward(x (N,D), gamma (D), dy (N,D), eps scalar) -> dx (N,D), dgamma (D), dbeta (D)")
    assert get_op("softmax_t_backward").signature() == "softmax_t_backward(z (B,K), dy (B,K), T scalar) -> dz (B,K)"
    for name in BUILTIN:
        op = get_op(name)
        assert all(i.role for i in op.inputs), name
        assert op.domain["sizes"] and op.derivation, name
        if op.grad_of:
            assert op.generic and op.mistakes, name          # proved for any size; bugs it can name


def test_gelu_example_is_proved(gelu):
    for name in ("gelu", "gelu_backward"):
        result = prove_op(get_op(name), use_cache=False)
        assert result.proved, result
    assert "derived" in get_op("gelu_backward").formulations


@pytest.mark.parametrize("name", BUILTIN)
def test_every_formulation_keeps_the_working_dtype(name):
    op = get_op(name)
    args = _inputs(op, (3, 5))
    for dtype in DTYPES:
        for form in op.formulations:
            with np.errstate(all="ignore"):
                outs = evaluate(name, *args, dtype=dtype, formulation=form)
            for out in outs if isinstance(outs, tuple) else (outs,):
                assert out.dtype.name == dtype, (form, dtype)


def _mp_run(form, args):
    """``form`` run element by element in mpmath at 60 digits (a different printer and backend than numpy)."""
    with mpmath.workdps(60):
        arrays = [np.frompyfunc(mpmath.mpf, 1, 1)(np.asarray(a, dtype=np.float64)) for a in args]
        return tuple(np.asarray(o, dtype=np.float64) for o in Kernel(form, "mpmath").run(*arrays))


@pytest.mark.parametrize("name", BUILTIN)
def test_numpy_kernels_compute_what_the_program_says(name):
    # The numpy printer once turned 1/(1 + exp(-z)) into 1/1 + exp(-z): compare every formulation's numpy
    # kernel with the same program in mpmath.
    # Known mistakes too: the checker runs them to name a user's bug.
    op = get_op(name)
    args = _inputs(op, (2, 4), seed=1)
    forms = {**op.formulations, **{m.name: m.formulation for m in op.mistakes}}
    for form_name, form in forms.items():
        got = Kernel(form, "numpy").run(*(np.asarray(a, dtype=np.float64) for a in args))
        for g, want in zip(got, _mp_run(form, args)):
            np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-13, err_msg=f"{name}/{form_name}")


def _torch():
    """PyTorch, or skip the test (an optional dependency)."""
    return pytest.importorskip("torch")


def _torch_cases():
    """(forward op, its backward op, torch forward taking the op's forward inputs, forward input names that
    get gradients, backward inputs from the forward ones and dy)."""
    def layer_norm(t, x, g, b, eps):
        return t.nn.functional.layer_norm(x, (x.shape[-1],), g, b, float(eps))

    def rms_norm(t, x, g, eps):
        return g * x / t.sqrt((x * x).mean(dim=-1, keepdim=True) + float(eps))

    return {
        "log_softmax": (lambda t, z: t.log_softmax(z, dim=-1), ("z",)),
        "softmax_t": (lambda t, z, T: t.softmax(z / float(T), dim=-1), ("z",)),
        "bce_with_logits": (lambda t, z, y: t.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="sum"),
                            ("z",)),
        "layer_norm": (layer_norm, ("x", "gamma", "beta")),
        "rms_norm": (rms_norm, ("x", "gamma")),
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_values_and_gradients_match_torch(family):
    t = _torch()
    fn, wrt = _torch_cases()[family]
    op, back = get_op(family), get_op(family + "_backward")
    args = _inputs(op, (4, 6), seed=2)
    tensors = {i.name: t.tensor(a, dtype=t.float64, requires_grad=i.name in wrt) for i, a in zip(op.inputs, args)}
    out = fn(t, *tensors.values())
    # a scalar loss is the end of the graph (cotangent 1); other outputs get a random upstream gradient
    dy = np.random.default_rng(3).uniform(-1, 1, tuple(out.shape)) if out.dim() else np.float64(1.0)
    (out * t.tensor(dy)).sum().backward()
    for form in op.formulations:
        np.testing.assert_allclose(evaluate(family, *args, dtype="float64", formulation=form), out.detach().numpy(),
                                   rtol=1e-12, atol=1e-12, err_msg=f"{family}/{form}")
    given = dict(zip((i.name for i in op.inputs), args), dy=dy)
    back_args = [given[i.name] for i in back.inputs]
    want = [tensors[o.name[1:]].grad.numpy() for o in back.outputs]
    for form in back.formulations:
        got = evaluate(back.name, *back_args, dtype="float64", formulation=form)
        for g, w, o in zip(got if isinstance(got, tuple) else (got,), want, back.outputs):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12, err_msg=f"{back.name}/{form}/{o.name}")


def test_rms_norm_matches_torch_builtin():
    t = _torch()
    if not hasattr(t.nn.functional, "rms_norm"):
        pytest.skip("torch.nn.functional.rms_norm needs PyTorch ≥ 2.4")
    x, g, eps = _inputs(get_op("rms_norm"), (3, 8), seed=4)
    for form in get_op("rms_norm").formulations:
        np.testing.assert_allclose(evaluate("rms_norm", x, g, eps, dtype="float64", formulation=form),
                                   t.nn.functional.rms_norm(t.tensor(x), (8,), t.tensor(g), float(eps)).numpy(),
                                   rtol=1e-12, atol=1e-12)


def test_gelu_matches_torch_and_judges_the_example_functions(gelu):
    t = _torch()
    x = np.linspace(-6, 6, 24).reshape(4, 6)
    dy = np.random.default_rng(5).uniform(-1, 1, x.shape)
    X = t.tensor(x, requires_grad=True)
    y = t.nn.functional.gelu(X, approximate="tanh")
    (y * t.tensor(dy)).sum().backward()
    for form in get_op("gelu").formulations:
        np.testing.assert_allclose(evaluate("gelu", x, dtype="float64", formulation=form), y.detach().numpy(),
                                   rtol=1e-12, atol=1e-12)
    for form in get_op("gelu_backward").formulations:
        np.testing.assert_allclose(evaluate("gelu_backward", x, dy, dtype="float64", formulation=form),
                                   X.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gelu.gelu_backward_right(x, dy), X.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(gelu.gelu_backward_wrong(x, dy) - X.grad.numpy())) > 0.1
    for dtype in DTYPES:
        for name, args in (("gelu", (x,)), ("gelu_backward", (x, dy))):
            for form in get_op(name).formulations:
                with np.errstate(all="ignore"):
                    assert evaluate(name, *args, dtype=dtype, formulation=form).dtype.name == dtype


def test_naive_gelu_overflows_where_e_to_the_2u_does_and_the_stable_one_does_not(gelu):
    # e^{2u} overflows float16 once 2u > ln(65504); u(x) = √(2/π)(x + 0.044715 x³) crosses 5.545 near x = 3.9.
    u = lambda x: math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
    x_over = next(x / 100 for x in range(300, 500) if 2 * u(x / 100) > math.log(65504))
    x = np.array([[x_over - 0.05, x_over + 0.05]])
    with np.errstate(all="ignore"):
        naive = evaluate("gelu", x, dtype="float16", formulation="naive")
        stable = evaluate("gelu", x, dtype="float16", formulation="stable")
    assert np.isfinite(naive[0, 0]) and np.isnan(naive[0, 1])
    np.testing.assert_allclose(stable.astype(float), x, rtol=2e-3)       # gelu(x) ≈ x there


@pytest.mark.parametrize("dtype, max_finite, bits", [("float16", 65504.0, 11), ("bfloat16", 3.3895313892515355e38, 8),
                                                      ("float32", 3.4028234663852886e38, 24),
                                                      ("float64", 1.7976931348623157e308, 53)])
def test_naive_bce_breaks_at_the_analytic_thresholds(dtype, max_finite, bits):
    # e^{−z} overflows below −ln Ω; 1 + e^{−z} rounds to 1 (so log(1 − σ) = log 0) once z ≥ p ln 2.
    low, high = -math.log(max_finite), bits * math.log(2)
    z = np.array([[low * 0.99, low * 1.01, high * 0.97, high * 1.03]])
    y = np.full_like(z, 0.5)
    with np.errstate(all="ignore"):
        naive = [float(evaluate("bce_with_logits", z[:, [i]], y[:, [i]], dtype=dtype, formulation="naive"))
                 for i in range(4)]
        stable = [float(evaluate("bce_with_logits", z[:, [i]], y[:, [i]], dtype=dtype, formulation="softplus"))
                  for i in range(4)]
    assert [math.isfinite(v) for v in naive] == [True, False, True, False]
    # the softplus form stays within a few units of roundoff of max(z, 0) + log1p(e^{−|z|}) − y z (mpmath)
    for value, zz in zip(stable, z[0]):
        zz = float(np.asarray(zz).astype(resolve_dtype(dtype)).astype(np.float64))     # the input as rounded
        with mpmath.workdps(40):
            truth = float(max(zz, 0) + mpmath.log1p(mpmath.exp(-abs(mpmath.mpf(zz)))) - 0.5 * zz)
        assert abs(value - truth) <= 4 * 2.0 ** -bits * abs(truth) + 1e-300, (zz, value, truth)


def test_log1p_log_softmax_keeps_the_tiny_log_probability_of_the_winner():
    z = np.array([[0.0, -40.0, -50.0, -45.0]])
    with mpmath.workdps(50):
        want = -mpmath.log(1 + mpmath.exp(-40) + mpmath.exp(-50) + mpmath.exp(-45))
    accurate = evaluate("log_softmax", z, dtype="float64", formulation="log1p")[0, 0]
    assert abs(accurate - float(want)) <= 2 * 2.0 ** -53 * abs(float(want))
    assert evaluate("log_softmax", z, dtype="float64", formulation="logsumexp")[0, 0] == 0.0   # all digits lost


def test_log1p_log_softmax_handles_ties_at_the_maximum():
    z = np.array([[2.0, 2.0, -1.0], [5.0, 5.0, 5.0]])
    with mpmath.workdps(40):
        want = [[float(zz - mpmath.log(sum(mpmath.exp(w) for w in row))) for zz in row] for row in z]
    np.testing.assert_allclose(evaluate("log_softmax", z, dtype="float64", formulation="log1p"), want, rtol=1e-15)


@pytest.mark.parametrize("name", [n for n in BUILTIN if get_op(n).invariants])
def test_invariants_hold_on_the_stable_formulation(name):
    op = get_op(name)
    args = _inputs(op, (3, 7), seed=6)
    outs = evaluate(name, *args, dtype="float64", formulation=op.stable or None)
    check_invariants(name, args, outs)


def test_a_backward_reference_must_be_one_of_its_formulations():
    from derive import define_backward

    forward = get_op("bce_with_logits")
    with pytest.raises(ValueError, match="reference must be one of its formulations"):
        define_backward(forward, "bce_again_backward", reference="sigmoid")
    op = get_op("bce_with_logits_backward")
    assert op.reference.name == "stable" and list(op.formulations)[0] == "stable" and "derived" in op.formulations
