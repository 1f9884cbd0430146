"""Counterexamples cut down after Hypothesis's shrinking (numeric/check/reduce.py), with the diagnosis kept."""
from __future__ import annotations

import numpy as np

from derive import get_op
from numeric import check_gradient
from numeric.check.judge import judge_example
from numeric.check.reduce import _tied_axes
from numeric.check.run import _wording

from .test_check import load as _example


def _still_fails(fn, op, dtype, finding) -> bool:
    findings, _ = judge_example(fn, get_op(op), np.dtype(dtype), list(finding.counterexample))
    return any(f.kind == finding.kind for f in findings)


def _one_pass_variance_summed_in_order(x, gamma, dy, eps):
    """Batch-norm backward with the one-pass variance E[x²] − E[x]², every sum taken in row order (cumsum):
    numpy's pairwise sums round differently with the arrays' memory alignment, so on a cancelling input
    their result — and Hypothesis's path — would depend on what ran before in the process."""
    n = x.shape[0]
    mu = np.cumsum(x, axis=0)[-1] / n
    var = np.cumsum(x * x, axis=0)[-1] / n - mu * mu
    rstd = 1 / np.sqrt(var + eps)
    xhat = (x - mu) * rstd
    dbeta = np.cumsum(dy, axis=0)[-1]
    dgamma = np.cumsum(dy * xhat, axis=0)[-1]
    return gamma * rstd / n * (n * dy - dbeta - xhat * dgamma), dgamma, dbeta


def test_a_cancelling_batch_norm_is_cut_to_one_feature_and_still_named_cancellation():
    """One-pass variance in float32: Hypothesis leaves several features; the fault lives in one feature
    column.  (How many rows stay is not asserted: the search's path turns on last-bit differences in
    float64 sums whose rounding follows memory alignment, i.e. on what ran before in the process.)"""
    fn = _one_pass_variance_summed_in_order
    result = check_gradient(fn, "batchnorm_backward", dtype="float32")
    value = next(f for f in result.findings if f.kind == "value")
    x, gamma, dy, _ = value.counterexample
    assert x.shape[1] == gamma.shape[0] == dy.shape[1] == 1
    assert "catastrophic cancellation" in value.diagnosis
    assert _still_fails(fn, "batchnorm_backward", "float32", value)
    assert value.worst.inputs is value.counterexample and value.worst.index[1] == 0


def test_the_smallest_reduction_whose_diagnosis_reads_alike_is_kept(monkeypatch):
    """Reductions r1 … r4 of a finding (smaller and smaller) whose diagnoses read as the full input's up to
    r2, then differently: r2 is kept; when the smallest reads alike, it is kept."""
    from numeric.check import run
    from numeric.check.result import Finding

    def chain_with(wordings):
        findings = [Finding("value", "error", f"r{i}") for i in range(len(wordings))]
        said = dict(zip(map(id, findings), wordings))
        monkeypatch.setattr(run, "reductions", lambda finding, *args: findings)
        monkeypatch.setattr(run, "diagnose", lambda finding, *args: said[id(finding)])
        judge = type("J", (), {"op": None, "dtype": None, "fn": None, "truths": None, "measures": {}})()
        return findings, run._smallest_diagnosed(findings[0], judge, {})
    findings, kept = chain_with(["cancellation at 1e4", "cancellation at 3e4", "cancellation at 2.5", "factor 2", "factor 3"])
    assert kept is findings[2] and kept.diagnosis == "cancellation at 2.5"
    findings, kept = chain_with(["cancellation at 1e4", "factor 2", "factor 2", "cancellation at 7"])
    assert kept is findings[3]
    findings, kept = chain_with(["cancellation at 1e4", "factor 2", "factor 2"])
    assert kept is findings[0] and kept.diagnosis == "cancellation at 1e4"


def test_a_fault_across_rows_keeps_the_rows_it_needs():
    """A softmax backward that sums over the batch is right on one row: the cut input keeps two."""
    fn = _example("softmax_backward").sums_over_the_batch
    result = check_gradient(fn, "softmax_backward", dtype="float32")
    value = next(f for f in result.findings if f.kind == "value")
    z, dy = value.counterexample
    assert z.shape[0] == dy.shape[0] == 2
    assert _still_fails(fn, "softmax_backward", "float32", value)


def test_a_missing_term_is_cut_to_the_smallest_batch_with_unit_gamma():
    fn = _example("batchnorm_backward").missing_variance_term
    result = check_gradient(fn, "batchnorm_backward", dtype="float32")
    value = next(f for f in result.findings if f.kind == "value")
    x, gamma, dy, _ = value.counterexample
    assert x.shape == dy.shape == (2, 1) and np.array_equal(gamma, np.ones(1, np.float32))
    assert "variance_as_constant" in value.diagnosis
    assert _still_fails(fn, "batchnorm_backward", "float32", value)


def test_label_rows_and_class_ids_keep_their_class_axis():
    assert _tied_axes(get_op("cross_entropy_backward")) == {"k"}
    assert _tied_axes(get_op("cross_entropy_backward", labels="index")) == {"k"}
    assert _tied_axes(get_op("softmax_backward")) == set()


def test_wording_of_a_diagnosis_is_its_text_without_numbers():
    assert _wording("off by a constant factor (got/expected = -2.74307e+09 on every element)") == \
        _wording("off by a constant factor (got/expected = 316.228 on every element)")
    assert _wording("fails on this input (max |mean|/std = 1.52e+04) but passes") == \
        _wording("fails on this input (max |mean|/std = 167) but passes")
    assert _wording("off by a constant factor N (got/expected = 4 on every element)") != \
        _wording("off by a constant factor (got/expected = 4 on every element)")


def test_a_softmax_gradient_summed_over_the_batch_is_named_as_mixing_rows():
    fn = _example("softmax_backward").sums_over_the_batch
    value = next(f for f in check_gradient(fn, "softmax_backward", dtype="float32").findings if f.kind == "value")
    assert "mixes slices" in value.diagnosis and "`b`" in value.diagnosis


def _batchnorm_backward_with_whole_batch_statistics(x, gamma, dy, eps):
    """Batch norm whose mean and variance run over every element (no axis=0): right for one feature."""
    n = x.shape[0]
    mu = x.mean()
    xc = x - mu
    rstd = 1 / np.sqrt((xc * xc).mean() + eps)
    xhat = xc * rstd
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    return gamma * rstd / n * (n * dy - dbeta - xhat * dgamma), dgamma, dbeta


def test_batch_norm_statistics_over_every_feature_are_named_as_mixing_features():
    """The independent axis of batch norm is the feature axis: each feature alone is right."""
    result = check_gradient(_batchnorm_backward_with_whole_batch_statistics, "batchnorm_backward", dtype="float64")
    value = next(f for f in result.findings if f.kind == "value")
    assert "mixes slices" in value.diagnosis and "`d`" in value.diagnosis
    assert value.counterexample[0].shape[1] == 2
