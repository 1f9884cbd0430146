"""Hand-written softmax vector–Jacobian products: fn(z (B,K), dy (B,K)) -> dz (B,K).

Check one with:  gradaudit check examples/softmax_backward.py:shifted --op softmax_backward --dtype float32
"""
import numpy as np


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def shifted(z, dy):
    """Correct: s ⊙ (dy − ⟨dy, s⟩) with a max-shifted softmax."""
    s = _softmax(z)
    return s * (dy - (dy * s).sum(axis=1, keepdims=True))


def via_jacobian(z, dy):
    """Correct: build J = diag(s) − s sᵀ and multiply (slow, but right)."""
    s = _softmax(z)
    jac = s[:, :, None] * np.eye(z.shape[1], dtype=z.dtype) - s[:, :, None] * s[:, None, :]   # no einsum:
    return (jac * dy[:, :, None]).sum(axis=1)                                                  # numpy's lacks bfloat16


def unshifted(z, dy):
    """Wrong in floating point: exp(z) overflows once z ≥ ln(max) (88.7 in float32)."""
    e = np.exp(z)
    s = e / e.sum(axis=1, keepdims=True)
    return s * (dy - (dy * s).sum(axis=1, keepdims=True))


def diagonal_only(z, dy):
    """Wrong: uses only the diagonal of the Jacobian, s (1 − s) dy."""
    s = _softmax(z)
    return s * (1 - s) * dy


def sums_over_the_batch(z, dy):
    """Wrong: ⟨dy, s⟩ summed over the batch axis instead of the class axis."""
    s = _softmax(z)
    return s * (dy - (dy * s).sum(axis=0, keepdims=True))


CORRECT = [shifted, via_jacobian]
WRONG = [unshifted, diagonal_only, sums_over_the_batch]
