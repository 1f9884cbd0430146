import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from numeric import assert_gradient, check_gradient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES = []
for _name in ("batchnorm_backward", "softmax_backward", "cross_entropy_backward"):
    _module = load(_name)
    CASES += [(_name, fn, True) for fn in _module.CORRECT] + [(_name, fn, False) for fn in _module.WRONG]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op, fn, correct", CASES, ids=[f"{op}-{fn.__name__}" for op, fn, _ in CASES])
def test_examples_correct_pass_and_wrong_are_flagged(op, fn, correct, dtype):
    result = check_gradient(fn, op, dtype=dtype)
    assert result.ok is correct, result.to_markdown()
    if not correct:
        assert result.worst is not None or result.error
        assert result.diagnosis or result.error


# Further hand-written ops, as people write them (not in examples/).
def softmax_shifted(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_naive(z):
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def jacobian_right(z):
    s = softmax_shifted(z)
    return np.einsum("bi,ij->bij", s, np.eye(z.shape[1], dtype=z.dtype)) - np.einsum("bi,bj->bij", s, s)


def jacobian_without_diagonal(z):
    s = softmax_shifted(z)
    return -np.einsum("bi,bj->bij", s, s)


def cross_entropy_lse(z, y):
    m = z.max(axis=1, keepdims=True)
    lse = m + np.log(np.exp(z - m).sum(axis=1, keepdims=True))
    return (y * (lse - z)).sum()


def cross_entropy_log_of_softmax(z, y):
    return -(y * np.log(softmax_shifted(z))).sum()


def cross_entropy_mean(z, y):
    return cross_entropy_lse(z, y) / z.shape[0]


def batchnorm_right(x, gamma, beta, eps):
    mu = x.mean(axis=0)
    xc = x - mu
    return gamma * xc / np.sqrt((xc * xc).mean(axis=0) + eps) + beta


def batchnorm_unbiased(x, gamma, beta, eps):
    mu = x.mean(axis=0)
    xc = x - mu
    return gamma * xc / np.sqrt((xc * xc).sum(axis=0) / max(x.shape[0] - 1, 1) + eps) + beta


MORE = [("softmax", softmax_shifted, True), ("softmax", softmax_naive, False),
        ("softmax_jacobian", jacobian_right, True), ("softmax_jacobian", jacobian_without_diagonal, False),
        ("cross_entropy", cross_entropy_lse, True), ("cross_entropy", cross_entropy_log_of_softmax, False),
        ("cross_entropy", cross_entropy_mean, False),
        ("batchnorm", batchnorm_right, True), ("batchnorm", batchnorm_unbiased, False)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op, fn, correct", MORE, ids=[f"{op}-{fn.__name__}" for op, fn, _ in MORE])
def test_more_hand_written_ops(op, fn, correct, dtype):
    result = check_gradient(fn, op, dtype=dtype, examples=100)
    assert result.ok is correct, result.to_markdown()


def test_overflow_is_diagnosed_with_the_threshold_and_a_shrunk_counterexample():
    result = check_gradient(load("softmax_backward").unshifted, "softmax_backward", dtype="float32")
    assert not result.ok and "non-finite" in result.diagnosis
    z = np.asarray(result.worst.inputs[0], dtype=np.float64)
    assert z.size <= 2 and 88.7 < np.abs(z).max() <= 100      # shrunk to just past ln(FLT_MAX)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_pass_variance_is_diagnosed_as_cancellation(dtype):
    result = check_gradient(load("batchnorm_backward").one_pass_variance, "batchnorm_backward", dtype=dtype)
    assert not result.ok and "catastrophic cancellation" in result.diagnosis


def test_a_loss_returned_as_a_python_float_is_accepted():
    def loss(z, y):
        return float(cross_entropy_lse(z, y))
    assert check_gradient(loss, "cross_entropy", dtype="float32", examples=30).ok


def test_raising_wrong_shape_and_wrong_dtype_are_failures_not_crashes():
    def raises(z, dy):
        raise RuntimeError("boom")

    def wrong_shape(z, dy):
        return z[:, :1]

    def upcasts(z, dy):
        return np.zeros(z.shape, dtype=np.float64)

    r = check_gradient(raises, "softmax_backward", dtype="float32", examples=5)
    assert not r.ok and "RuntimeError: boom" in r.error
    r = check_gradient(wrong_shape, "softmax_backward", dtype="float32", examples=5)
    assert not r.ok and "shape" in r.error
    r = check_gradient(upcasts, "softmax_backward", dtype="float32", examples=5)
    assert not r.ok and "dtype float64" in r.error


def test_assert_gradient_reports_worst_element_index_values_and_ulps():
    with pytest.raises(AssertionError) as info:
        assert_gradient(load("cross_entropy_backward").y_minus_yhat, "cross_entropy_backward", dtype="float32")
    text = str(info.value)
    for needle in ("worst element: dz[", "got:", "expected:", "ULPs", "sign is flipped"):
        assert needle in text
    assert assert_gradient(load("cross_entropy_backward").shifted, "cross_entropy_backward",
                           dtype="float32", examples=20).ok


def test_markdown_of_a_failure_has_the_counterexample():
    r = check_gradient(load("cross_entropy_backward").mean_over_batch, "cross_entropy_backward", dtype="float64")
    md = r._repr_markdown_()
    assert "FAILED" in md and "z = " in md and "y = " in md and "reduction='mean'" in md


@pytest.mark.parametrize("kwargs, exc, word", [
    ({"op": "softmaxx"}, ValueError, "op"),
    ({"dtype": "float8"}, ValueError, "dtype"),
    ({"examples": 0}, ValueError, "examples"),
    ({"seed": "x"}, TypeError, "seed"),
])
def test_bad_check_arguments_name_the_argument(kwargs, exc, word):
    args = {"op": "softmax", **kwargs}
    op = args.pop("op")
    with pytest.raises(exc, match=word):
        check_gradient(softmax_shifted, op, **args)


def test_non_callable_fn_is_a_type_error():
    with pytest.raises(TypeError, match="fn must be callable"):
        check_gradient("not a function", "softmax")


def run_cli(*argv):
    return subprocess.run([sys.executable, "-m", "numeric.cli", *argv], capture_output=True, text=True)


@pytest.mark.parametrize("target, extra, code", [
    ("cross_entropy_backward.py:shifted", ["--dtype", "float32", "--examples", "30"], 0),
    ("cross_entropy_backward.py:mean_over_batch", ["--dtype", "float32"], 1),
    ("missing.py:f", [], 2),
    ("cross_entropy_backward.py", [], 2),
    ("cross_entropy_backward.py:nope", [], 2),
    ("cross_entropy_backward.py:shifted", ["--dtype", "float8"], 2),
])
def test_cli_check_exit_codes(target, extra, code):
    proc = run_cli("check", str(EXAMPLES / target), "--op", "cross_entropy_backward", *extra)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    if code == 1:
        assert "Counterexample" in proc.stdout


def test_the_truth_cache_changes_no_verdict_and_keeps_one_truth_per_rounded_input():
    from numeric.check import judge as judge_module
    from numeric.check.judge import TruthCache
    from derive import get_op
    wrong = load("softmax_backward").diagonal_only
    cached = check_gradient(wrong, "softmax_backward", dtype="float32", examples=40)
    original = TruthCache.get
    try:
        TruthCache.get = lambda self, op, rounded, dtype: judge_module.Truth(op, rounded, dtype)
        fresh = check_gradient(wrong, "softmax_backward", dtype="float32", examples=40)
    finally:
        TruthCache.get = original
    assert not cached.ok and cached.to_markdown() == fresh.to_markdown()
    op, dt = get_op("softmax_backward"), np.dtype(np.float32)
    z = np.array([[1.0, 2.0, 3.0]], dtype=dt)
    cache = TruthCache(max_elements=96)                # inputs of up to 96 / 16 = 6 elements are kept
    first = cache.get(op, [z, z], dt)
    assert cache.get(op, [z.copy(), z.copy()], dt) is first                    # same bytes: same truth
    assert cache.get(op, [z.astype(np.float64), z.astype(np.float64)], np.dtype(np.float64)) is not first
    for k in range(40):                                                         # 6 elements each: old ones go
        cache.get(op, [z + k, z], dt)
    assert cache._elements <= 96 and cache.get(op, [z, z], dt) is not first
    assert cache.get(op, [np.zeros((1, 7), dt)] * 2, dt) is not cache.get(op, [np.zeros((1, 7), dt)] * 2, dt)


def test_a_seeded_search_draws_the_same_inputs_every_time():
    # strategies are built once and shared between checks: they must hold no state between draws
    def recorder(seen):
        def fn(x, gamma, dy, eps):
            seen.append((x.tobytes(), gamma.tobytes(), dy.tobytes(), eps))
            return load("batchnorm_backward").compact(x, gamma, dy, eps)
        return fn
    first, second = [], []
    check_gradient(recorder(first), "batchnorm_backward", dtype="float32", examples=30, framework="numpy")
    check_gradient(recorder(second), "batchnorm_backward", dtype="float32", examples=30, framework="numpy")
    assert len(first) > 30 and first == second
