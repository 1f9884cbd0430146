"""A module the checked file imports from its own folder (gradaudit check must find it)."""
import numpy as np


def row_softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
