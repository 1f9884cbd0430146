"""Checker messages that never mislead (issues 9 and 13): each names what happened, with numbers that are
true of the counterexample it shows."""
import numpy as np

from numeric import check_gradient


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_an_always_nan_function_gets_no_threshold_at_zero():
    result = check_gradient(lambda z: np.full_like(z, np.nan), "softmax", dtype="float32", examples=20)
    finding = next(f for f in result.errors if f.kind == "nonfinite")
    assert finding.nan > 0
    assert "≥ 0 " not in finding.diagnosis and "once" not in finding.diagnosis
    assert "0 inf and 0 nan" not in finding.diagnosis


def test_a_function_returning_zeros_is_not_off_by_a_factor_zero():
    result = check_gradient(lambda z: np.zeros_like(z), "softmax", dtype="float32", examples=20)
    assert not result.ok
    assert "factor 0" not in result.diagnosis and "returns 0" in result.diagnosis


def test_an_unshifted_overflow_names_its_onset_only_when_everything_below_passed():
    def unshifted(z):
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
    result = check_gradient(unshifted, "softmax", dtype="float32", examples=100)
    finding = next(f for f in result.errors if f.kind == "nonfinite")
    z = np.asarray(finding.counterexample[0], dtype=np.float64)
    assert np.abs(z).max() > np.log(np.finfo(np.float32).max)        # the shown input really overflows exp
    assert "inf" in finding.diagnosis or "nan" in finding.diagnosis


def test_a_list_or_none_is_named_not_called_an_upcast():
    result = check_gradient(lambda z: softmax(z).tolist(), "softmax", dtype="float32", examples=10)
    assert result.ok and any("Python list" in f.message for f in result.warnings)
    result = check_gradient(lambda z: None, "softmax", dtype="float32", examples=5)
    assert "NoneType" in result.error and "upcast" not in result.error


def test_a_correct_backward_with_an_exact_zero_term_passes_by_the_normwise_bound():
    """The paper's staged chain computes dvar·Σ(−2(x − μ))/N, zero in exact arithmetic; its rounding
    residue must not fail a correct implementation."""
    def staged(x, gamma, dy, eps):
        n = x.shape[0]
        mu = x.mean(axis=0)
        xc = x - mu
        std = np.sqrt((xc * xc).mean(axis=0) + eps)
        xhat = xc / std
        dxhat = dy * gamma
        dvar = (dxhat * xc).sum(axis=0) * -0.5 / std ** 3
        dmu = (-dxhat / std).sum(axis=0) + dvar * (-2 * xc).mean(axis=0)
        return dxhat / std + dvar * 2 * xc / n + dmu / n, (dy * xhat).sum(axis=0), dy.sum(axis=0)
    for dtype in ("float64", "float32"):
        result = check_gradient(staged, "batchnorm_backward", dtype=dtype, examples=100)
        assert result.ok, result.to_markdown()


def test_warnings_do_not_fail_but_errors_do():
    def upcast(z):
        return softmax(z.astype(np.float64))
    result = check_gradient(upcast, "softmax", dtype="float32", examples=20)
    assert result.ok and [f.kind for f in result.warnings] == ["dtype"]
