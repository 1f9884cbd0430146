"""Independent float64 implementations of the seven ops, written straight from the textbook formulas
(not from gradaudit's SymPy steps), used as expected values in tests."""
import numpy as np


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_jacobian(z):
    s = softmax(z)
    return np.einsum("bi,ij->bij", s, np.eye(z.shape[1])) - np.einsum("bi,bj->bij", s, s)


def softmax_backward(z, dy):
    return np.einsum("bij,bi->bj", softmax_jacobian(z), dy)


def cross_entropy(z, y):
    m = z.max(axis=1, keepdims=True)
    log_s = z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))
    return -(y * log_s).sum()


def cross_entropy_backward(z, y):
    return softmax(z) * y.sum(axis=1, keepdims=True) - y


def batchnorm(x, gamma, beta, eps):
    mu = x.mean(axis=0)
    var = ((x - mu) ** 2).mean(axis=0)
    return gamma * (x - mu) / np.sqrt(var + eps) + beta


def batchnorm_backward(x, gamma, dy, eps):
    # Ioffe & Szegedy (2015), Algorithm "backprop through BN", written as the paper's chain.
    n = x.shape[0]
    mu = x.mean(axis=0)
    var = ((x - mu) ** 2).mean(axis=0)
    xhat = (x - mu) / np.sqrt(var + eps)
    dxhat = dy * gamma
    dvar = (dxhat * (x - mu)).sum(axis=0) * -0.5 * (var + eps) ** -1.5
    dmu = (-dxhat / np.sqrt(var + eps)).sum(axis=0) + dvar * (-2 * (x - mu)).mean(axis=0)
    dx = dxhat / np.sqrt(var + eps) + dvar * 2 * (x - mu) / n + dmu / n
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)
