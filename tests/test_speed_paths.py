"""The fast paths compute what the slow definitions compute.

* sensitivities: the batched JVP (all directions in one pass) against the former definition, one numpy JVP
  per direction, for every op in ``derive.OPS`` on random shapes and values.
"""
import zlib

import numpy as np
import pytest

import derive
from numeric import condition

LENGTHS = [{"b": 1, "k": 1, "n": 1, "d": 1}, {"b": 3, "k": 5, "n": 7, "d": 2}, {"b": 2, "k": 9, "n": 33, "d": 3}]


def random_args(op, lengths, rng, scale):
    """Arguments of ``op`` with every array axis at its length in ``lengths`` (scalars: a small ε)."""
    args = []
    for inp in op.inputs:
        if not inp.axes:
            args.append(1e-5)
        else:
            args.append(scale * rng.standard_normal([lengths[a] for a in inp.axes]))
    return tuple(args)


@pytest.mark.parametrize("name", list(derive.OPS))
@pytest.mark.parametrize("lengths", LENGTHS, ids=lambda l: "x".join(map(str, l.values())))
@pytest.mark.parametrize("scale", [1.0, 300.0])
def test_batched_sensitivities_equal_the_per_direction_definition(name, lengths, scale):
    rng = np.random.default_rng(zlib.crc32(f"{name} {scale} {lengths}".encode()))
    args = random_args(derive.get_op(name), lengths, rng, scale)
    values_new, new = condition._values_and_sensitivities(name, args)
    values_old, old = condition._values_and_sensitivities_per_direction(name, args)
    assert len(new) == len(old)
    for n, o in zip(new, old):
        assert n.shape == o.shape
        # the same terms summed in another order: equal to a few roundings of the largest term
        np.testing.assert_allclose(n, o, rtol=1e-13, atol=0)


def test_batched_sensitivities_of_softmax_match_the_closed_form():
    # Σ_j |s_i (δ_ij − s_j)| |z_j| = s_i (1 − s_i)|z_i| + s_i Σ_{j≠i} s_j |z_j|, written out independently
    z = np.array([[0.5, -2.0, 3.0, 0.0], [100.0, 99.0, -50.0, 1e-3]])
    s = np.exp(z - z.max(axis=1, keepdims=True))
    s /= s.sum(axis=1, keepdims=True)
    want = s * (1 - s) * np.abs(z) + s * ((s * np.abs(z)).sum(axis=1, keepdims=True) - s * np.abs(z))
    np.testing.assert_allclose(condition.sensitivities("softmax", z), want, rtol=1e-12)


def test_directions_are_chunked_without_changing_the_result(monkeypatch):
    rng = np.random.default_rng(3)
    args = (rng.standard_normal((40, 3)), rng.standard_normal(3), rng.standard_normal((40, 3)), 1e-5)
    whole = condition.sensitivities("batchnorm_backward", *args)
    monkeypatch.setattr(condition, "CHUNK_ELEMENTS", 1)         # one direction per run
    for a, b in zip(whole, condition.sensitivities("batchnorm_backward", *args)):
        np.testing.assert_allclose(a, b, rtol=1e-14)
