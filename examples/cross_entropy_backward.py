"""Hand-written cross-entropy gradients (loss summed over the batch): fn(z (B,K), y (B,K)) -> dz (B,K).

Check one with:  gradaudit check examples/cross_entropy_backward.py:shifted --op cross_entropy_backward
"""
import numpy as np


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def shifted(z, y):
    """Correct for any labels: softmax(z) Σ_k y − y."""
    return _softmax(z) * y.sum(axis=1, keepdims=True) - y


def yhat_minus_y(z, y):
    """Correct for normalized labels (one-hot, smoothed, soft): ŷ − y."""
    return _softmax(z) - y


def mean_over_batch(z, y):
    """Wrong for a summed loss: divides by the batch size (the gradient of the *mean* loss)."""
    return (_softmax(z) - y) / z.shape[0]


def y_minus_yhat(z, y):
    """Wrong: the sign is flipped."""
    return y - _softmax(z)


def unshifted(z, y):
    """Wrong in floating point: exp(z) overflows past ln(max)."""
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True) - y


CORRECT = [shifted, yhat_minus_y]
WRONG = [mean_over_batch, y_minus_yhat, unshifted]
