import numpy as np
import pytest

from numeric.compare import compare
from numeric.condition import condition_numbers
from tests import independent


@pytest.mark.parametrize("op, formulation", [("softmax", "shifted"), ("softmax", "logsumexp"),
                                             ("cross_entropy_backward", "logsumexp"),
                                             ("softmax_backward", "shifted")])
def test_stable_formulations_are_within_a_few_ulps_in_float32(op, formulation):
    rng = np.random.default_rng(11)
    z = rng.normal(scale=3, size=(4, 10))
    second = rng.random((4, 10))
    args = (z,) if op == "softmax" else (z, second / second.sum(axis=1, keepdims=True))
    s = compare(op, *args, dtype="float32", formulation=formulation).summary()
    assert s["pct_nonfinite"] == 0
    assert s["max_ulps"] <= 16 * max(1.0, s["kappa_max"] / 10), s


def test_naive_softmax_is_non_finite_past_the_threshold_and_shifted_is_not():
    z = np.array([[100.0, 0.0, -3.0]])
    assert compare("softmax", z, dtype="float32", formulation="naive").summary()["pct_nonfinite"] > 0
    s = compare("softmax", z, dtype="float32", formulation="shifted").summary()
    assert s["pct_nonfinite"] == 0 and s["max_ulps"] <= 4


def test_one_pass_variance_error_grows_with_mean_over_std_while_two_pass_does_not():
    rng = np.random.default_rng(5)
    u = rng.normal(size=(32, 2))
    one, two = [], []
    for mean in (1.0, 1e2, 1e3):
        args = (mean + u, np.ones(2), np.zeros(2), 1e-5)
        one.append(compare("batchnorm", *args, dtype="float32", formulation="one_pass").summary()["max_rel_over_kappa_u"])
        two.append(compare("batchnorm", *args, dtype="float32", formulation="two_pass").summary()["max_rel_over_kappa_u"])
    # error relative to κ·u: the two-pass variance stays near 1 (stable), the one-pass one explodes
    assert max(two) < 10
    assert one[2] > 100 * one[0] and one[2] > 100 * two[2]


def test_condition_numbers_match_the_closed_form_for_softmax():
    z = np.random.default_rng(2).normal(scale=4, size=(3, 6))
    s = independent.softmax(z)
    weighted = (s * np.abs(z)).sum(axis=1, keepdims=True)
    want = np.abs(z) * (1 - s) + weighted - s * np.abs(z)   # Σ_j |J_ij| |z_j| / s_i
    np.testing.assert_allclose(condition_numbers("softmax", z), want, rtol=1e-10)


def test_condition_number_of_batchnorm_grows_like_mean_over_std():
    u = np.random.default_rng(1).normal(size=(16, 1))
    k1 = condition_numbers("batchnorm", 1 + u * 1e-2, np.ones(1), np.zeros(1), 0.0).max()
    k2 = condition_numbers("batchnorm", 1e3 + u * 1e-2, np.ones(1), np.zeros(1), 0.0).max()
    assert 300 < k2 / k1 < 3000


def test_sweep_covers_every_formulation_and_dtype_and_finds_the_overflow():
    from numeric.sweep import sweep
    points = sweep("softmax", dtypes=("float16", "float32"), magnitudes=(1.0, 100.0))
    assert {(p.formulation, p.dtype, p.magnitude) for p in points} == {
        (f, d, m) for f in ("naive", "shifted", "logsumexp") for d in ("float16", "float32") for m in (1.0, 100.0)}
    by = {(p.formulation, p.dtype, p.magnitude): p.summary for p in points}
    assert by[("naive", "float32", 1.0)]["pct_nonfinite"] == 0
    assert by[("naive", "float32", 100.0)]["pct_nonfinite"] > 0       # some |z| > 88.72
    assert all(by[("shifted", d, m)]["pct_nonfinite"] == 0 for d in ("float16", "float32") for m in (1.0, 100.0))


def test_reference_float64_is_the_reference_rounded():
    import mpmath
    from numeric.reference import reference, reference_float64
    z = np.array([[0.1, 0.2, 0.7]])
    exact = reference("softmax", z)
    assert np.array_equal(reference_float64("softmax", z), np.array([[float(v) for v in exact[0]]]))
    with mpmath.workdps(40):
        e = [mpmath.exp(mpmath.mpf(v)) for v in z[0]]
        assert float(e[2] / sum(e)) == reference_float64("softmax", z)[0, 2]
