"""Conventions as op parameters, user-defined ops, separate failure kinds, named mistakes, and a checker
that the checked code cannot fool.  Expected values come from PyTorch (float64 autograd) or from the
mathematics of the convention, never from gradaudit's own output."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import numeric
from derive import get_op, load_ops, prove_op
from numeric import check_gradient
from numeric.reference import reference_float64

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


# ---------------------------------------------------------------- functions as people write them

def cs231n_softmax_grad(x, y):
    """cs231n ``softmax_loss`` (gradient part): mean over N, integer labels."""
    shifted = x - np.max(x, axis=1, keepdims=True)
    probs = np.exp(shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True)))
    n = x.shape[0]
    dx = probs.copy()
    dx[np.arange(n), y] -= 1
    return dx / n


def makemore_bn_backward(x, gamma, dy, eps):
    """Karpathy's makemore backprop-ninja batch norm: Bessel-corrected variance, compact dx."""
    n = x.shape[0]
    diff = x - x.mean(0, keepdims=True)
    var = (diff ** 2).sum(0, keepdims=True) / (n - 1)
    var_inv = (var + eps) ** -0.5
    raw = diff * var_inv
    dx = gamma * var_inv / n * (n * dy - dy.sum(0) - n / (n - 1) * raw * (dy * raw).sum(0))
    return dx, (dy * raw).sum(0), dy.sum(0)


def bn_backward_eps_missing_and_squeezed(x, gamma, dy, eps):
    """ε missing in x̂ (a formula error at every D) and np.squeeze turning D = 1 outputs into 0-d arrays."""
    n = x.shape[0]
    mu = x.mean(axis=0)
    var = ((x - mu) ** 2).mean(axis=0)
    xhat = (x - mu) / np.sqrt(var)
    rstd = 1 / np.sqrt(var + eps)
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    dx = gamma * rstd / n * (n * dy - dbeta - xhat * dgamma)
    return dx, np.squeeze(dgamma), np.squeeze(dbeta)


def bn_backward_variance_as_constant(x, gamma, dy, eps):
    n = x.shape[0]
    mu = x.mean(axis=0)
    rstd = 1 / np.sqrt(((x - mu) ** 2).mean(axis=0) + eps)
    xhat = (x - mu) * rstd
    return gamma * rstd / n * (n * dy - dy.sum(axis=0)), (dy * xhat).sum(axis=0), dy.sum(axis=0)


def test_cs231n_mean_integer_label_loss_passes_with_its_conventions():
    assert check_gradient(cs231n_softmax_grad, "cross_entropy_backward", reduction="mean", labels="index",
                          examples=60).ok
    assert check_gradient(cs231n_softmax_grad, "cross_entropy_backward[labels=index,reduction=mean]",
                          dtype="float32", examples=60).ok


def test_the_default_convention_fails_and_names_the_convention_that_passes():
    result = check_gradient(cs231n_softmax_grad, "cross_entropy_backward", examples=60)
    assert not result.ok
    assert "labels='index'" in result.diagnosis and "reduction='mean'" in result.diagnosis

    def mean_soft(z, y):
        e = np.exp(z - z.max(1, keepdims=True))
        return (e / e.sum(1, keepdims=True) * y.sum(1, keepdims=True) - y) / z.shape[0]
    result = check_gradient(mean_soft, "cross_entropy_backward", dtype="float32", examples=60)
    assert not result.ok and "reduction='mean'" in result.diagnosis


def test_bessel_corrected_batchnorm_passes_with_correction_1_and_is_named_otherwise():
    assert check_gradient(makemore_bn_backward, "batchnorm_backward", correction=1, examples=60).ok
    result = check_gradient(makemore_bn_backward, "batchnorm_backward", examples=60)
    assert not result.ok and "correction" in result.diagnosis


def test_a_d1_shape_quirk_does_not_hide_the_formula_error_at_larger_d():
    result = check_gradient(bn_backward_eps_missing_and_squeezed, "batchnorm_backward", dtype="float64")
    kinds = {f.kind: f for f in result.findings}
    assert not result.ok
    assert kinds["shape"].severity == "warning"
    value = kinds["value"]
    assert value.severity == "error"
    d = np.shape(value.counterexample[0])[1]
    assert "ε missing in one term" in value.diagnosis, value.diagnosis
    assert np.shape(kinds["shape"].counterexample[0])[1] == 1 and d >= 1


def test_a_missing_variance_term_is_named_not_called_a_constant_factor():
    result = check_gradient(bn_backward_variance_as_constant, "batchnorm_backward", dtype="float32")
    assert not result.ok and "variance treated as a constant" in result.diagnosis


def bn_backward_unbiased_statistics(x, gamma, dy, eps):
    """The biased (N) backward formula on statistics taken with np.var(ddof=1), as torch.var gives them."""
    n = x.shape[0]
    xc = x - x.mean(axis=0)
    rstd = 1 / np.sqrt(x.var(axis=0, ddof=1) + eps)
    xhat = xc * rstd
    dbeta, dgamma = dy.sum(axis=0), (dy * xhat).sum(axis=0)
    return gamma * rstd / n * (n * dy - dbeta - xhat * dgamma), dgamma, dbeta


def test_statistics_of_one_correction_with_the_backward_of_the_other_are_named():
    """Neither convention: σ from N − 1 with the backward formula for N — not "implements correction=1"
    (whose backward differs by N/(N − 1) on the x̂·Σdy·x̂ term), but the mix, named."""
    result = check_gradient(bn_backward_unbiased_statistics, "batchnorm_backward", dtype="float64")
    assert not result.ok and "variance_correction_mixed" in result.diagnosis, result.diagnosis


def test_every_convention_instance_is_proved():
    for name in ("cross_entropy_backward[labels=index,reduction=mean]", "cross_entropy_backward[label_smoothing=0.1]",
                 "batchnorm_backward[correction=1]", "batchnorm_backward[layout=nchw]",
                 "batchnorm_running_stats", "batchnorm_eval"):
        result = prove_op(get_op(name), use_cache=False)
        assert result.proved, name
        assert all(m["differs"] for m in result.mistakes or [])


@pytest.mark.parametrize("params", [{"reduction": "mean", "labels": "index"}, {"reduction": "sum", "labels": "index"},
                                    {"reduction": "mean", "label_smoothing": 0.1, "labels": "index"}])
def test_cross_entropy_conventions_match_pytorch(params):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    z, y = rng.normal(scale=3, size=(5, 7)), rng.integers(0, 7, size=5)
    t = torch.tensor(z, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(t, torch.tensor(y), reduction=params["reduction"],
                                             label_smoothing=params.get("label_smoothing", 0.0))
    (grad,) = torch.autograd.grad(loss, t)
    got = numeric.evaluate("cross_entropy", z, y, dtype="float64", formulation="logsumexp", **params)
    dz = numeric.evaluate("cross_entropy_backward", z, y, dtype="float64", formulation="logsumexp", **params)
    np.testing.assert_allclose(got, loss.item(), rtol=1e-13)
    np.testing.assert_allclose(dz, grad.numpy(), rtol=1e-12, atol=1e-15)
    ref = reference_float64("cross_entropy_backward", z, y, **params)
    np.testing.assert_allclose(ref, grad.numpy(), rtol=1e-13, atol=1e-16)


def test_batchnorm_nchw_and_running_statistics_match_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x, g, b, dy = rng.normal(2, 1.5, (3, 2, 2, 3)), rng.normal(size=2), rng.normal(size=2), rng.normal(size=(3, 2, 2, 3))
    tx, tg, tb = (torch.tensor(a, requires_grad=True) for a in (x, g, b))
    y = torch.nn.functional.batch_norm(tx, None, None, tg, tb, training=True, eps=1e-5)
    grads = torch.autograd.grad(y, (tx, tg, tb), torch.tensor(dy))
    np.testing.assert_allclose(numeric.evaluate("batchnorm", x, g, b, 1e-5, dtype="float64", layout="nchw"),
                               y.detach().numpy(), rtol=1e-12, atol=1e-12)
    for formulation in ("derived", "compact", "staged"):
        got = numeric.evaluate("batchnorm_backward", x, g, dy, 1e-5, dtype="float64", formulation=formulation,
                               layout="nchw")
        for a, w in zip(got, grads):
            np.testing.assert_allclose(a, w.numpy(), rtol=1e-10, atol=1e-12)
    layer = torch.nn.BatchNorm2d(2, momentum=0.1, dtype=torch.float64)
    layer.train()
    layer(torch.tensor(x))
    new_mean, new_var = numeric.evaluate("batchnorm_running_stats", x, np.zeros(2), np.ones(2), 0.1,
                                         dtype="float64", layout="nchw")
    np.testing.assert_allclose(new_mean, layer.running_mean.numpy(), rtol=1e-13)
    np.testing.assert_allclose(new_var, layer.running_var.numpy(), rtol=1e-13)      # PyTorch: unbiased update
    biased = numeric.evaluate("batchnorm_running_stats", x, np.zeros(2), np.ones(2), 0.1, dtype="float64",
                              layout="nchw", correction=0)[1]
    n = 3 * 2 * 3
    np.testing.assert_allclose(new_var - biased, 0.1 * x.transpose(1, 0, 2, 3).reshape(2, -1).var(axis=1) / (n - 1),
                               rtol=1e-10)


def test_bad_conventions_name_the_parameter():
    with pytest.raises(ValueError, match="reduction"):
        get_op("cross_entropy", reduction="avg")
    with pytest.raises(ValueError, match="no convention 'momentum'"):
        get_op("cross_entropy", momentum=0.1)
    with pytest.raises(ValueError, match="label_smoothing"):
        get_op("cross_entropy", label_smoothing=1.5)
    with pytest.raises(ValueError, match="class ids"):
        numeric.evaluate("cross_entropy", np.zeros((2, 3)), np.array([0, 3]), labels="index")


# ---------------------------------------------------------------- user-defined ops

def test_readme_user_op_example_runs_as_written():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- user-op-example -->\s*```python\n(.*?)```", text, re.S)
    assert block, "README has no user-op example block"
    namespace = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)      # the README's own code, not user input


def test_gelu_example_through_the_cli():
    ops = str(ROOT / "examples" / "custom_op.py")
    proc = run_cli("--ops", ops, "derive", "gelu_backward")
    assert proc.returncode == 0 and "| proved |" in proc.stdout, proc.stderr
    assert run_cli("--ops", ops, "check", f"{ops}:gelu_backward_right", "--op", "gelu_backward",
                   "--dtype", "float32", "--examples", "40").returncode == 0
    wrong = run_cli("--ops", ops, "check", f"{ops}:gelu_backward_wrong", "--op", "gelu_backward", "--examples", "40")
    assert wrong.returncode == 1 and "Diagnosis" in wrong.stdout
    assert "gelu" in run_cli("--ops", ops, "list").stdout


# ---------------------------------------------------------------- the checked code cannot fool the checker

def run_cli(*argv, timeout=300):
    return subprocess.run([sys.executable, "-m", "numeric.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, cwd="/")


@pytest.mark.parametrize("function, code, needle", [
    ("softmax_via_sibling", 0, "passed"),          # imports its sibling module like Python would
    ("exits", 1, "sys.exit"),
    ("hard_exits", 1, "ended the process"),
    ("chatty", 0, "kept apart"),
    ("wrong_signature", 2, "cannot take the arguments"),
])
def test_cli_check_cannot_be_fooled(function, code, needle):
    proc = run_cli("check", f"{DATA / 'user_code.py'}:{function}", "--op", "softmax", "--examples", "20")
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert needle in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "debugging output" not in proc.stdout


def test_cli_check_times_out_a_hanging_function():
    proc = run_cli("check", f"{DATA / 'user_code.py'}:hangs", "--op", "softmax", "--timeout", "3")
    assert proc.returncode == 1 and "timed out" in proc.stdout


def test_api_catches_sys_exit_in_the_checked_function():
    def exits(z):
        raise SystemExit(0)
    result = check_gradient(exits, "softmax", examples=5)
    assert not result.ok and "sys.exit" in result.error
    result = check_gradient(exits, "softmax", examples=5, isolate=True)
    assert not result.ok


def test_returning_none_or_text_is_named_as_such():
    result = check_gradient(lambda z: None, "softmax", examples=5)
    assert not result.ok and "NoneType" in result.error and "upcast" not in result.error
    result = check_gradient(lambda z: "s", "softmax", examples=5)
    assert not result.ok and "str" in result.error
