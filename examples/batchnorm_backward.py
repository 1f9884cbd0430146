"""Hand-written batch-norm backward passes: one right, several subtly wrong.

Signature (gradaudit's ``batchnorm_backward``): fn(x (N,D), gamma (D,), dy (N,D), eps) -> (dx, dgamma, dbeta).
Check one with:  gradaudit check examples/batchnorm_backward.py:compact --op batchnorm_backward --dtype float32
"""
import numpy as np


def compact(x, gamma, dy, eps):
    """Correct: two-pass variance, the compact formula (ε in the working dtype: a Python float would
    promote bfloat16 to float32)."""
    n = x.shape[0]
    eps = x.dtype.type(eps)
    mu = x.mean(axis=0)
    xc = x - mu
    rstd = 1 / np.sqrt((xc * xc).mean(axis=0) + eps)
    xhat = xc * rstd
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    dx = gamma * rstd / n * (n * dy - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta


def staged(x, gamma, dy, eps):
    """Correct: the original paper's chain dx̂ → dvar → dμ → dx (overflows float16 where σ³ does:
    small variances with ε = 1e-5)."""
    n = x.shape[0]
    eps, half = x.dtype.type(eps), x.dtype.type(0.5)
    mu = x.mean(axis=0)
    xc = x - mu
    var = (xc * xc).mean(axis=0)
    std = np.sqrt(var + eps)
    xhat = xc / std
    dxhat = dy * gamma
    dvar = (dxhat * xc).sum(axis=0) * -half / (std * std * std)
    dmu = (-dxhat / std).sum(axis=0) + dvar * (-2 * xc).mean(axis=0)
    dx = dxhat / std + dvar * 2 * xc / n + dmu / n
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def one_pass_variance(x, gamma, dy, eps):
    """Wrong in floating point: var = E[x²] − E[x]² cancels catastrophically when |mean| ≫ std."""
    n = x.shape[0]
    mu = x.mean(axis=0)
    var = (x * x).mean(axis=0) - mu * mu
    rstd = 1 / np.sqrt(var + eps)
    xhat = (x - mu) * rstd
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    return gamma * rstd / n * (n * dy - dbeta - xhat * dgamma), dgamma, dbeta


def missing_variance_term(x, gamma, dy, eps):
    """Wrong: treats σ as a constant (drops the x̂ Σ dy x̂ term that comes through the variance)."""
    n = x.shape[0]
    mu = x.mean(axis=0)
    xc = x - mu
    rstd = 1 / np.sqrt((xc * xc).mean(axis=0) + eps)
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xc * rstd).sum(axis=0)
    return gamma * rstd / n * (n * dy - dbeta), dgamma, dbeta


def unbiased_variance(x, gamma, dy, eps):
    """Wrong: uses the unbiased variance (÷ (N − 1)) although training-mode batch norm uses ÷ N."""
    n = x.shape[0]
    mu = x.mean(axis=0)
    xc = x - mu
    rstd = 1 / np.sqrt((xc * xc).sum(axis=0) / (n - 1) + eps)
    xhat = xc * rstd
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    return gamma * rstd / n * (n * dy - dbeta - xhat * dgamma), dgamma, dbeta


def eps_outside_sqrt(x, gamma, dy, eps):
    """Wrong: normalizes by √var + ε instead of √(var + ε)."""
    n = x.shape[0]
    mu = x.mean(axis=0)
    xc = x - mu
    rstd = 1 / (np.sqrt((xc * xc).mean(axis=0)) + eps)
    xhat = xc * rstd
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    return gamma * rstd / n * (n * dy - dbeta - xhat * dgamma), dgamma, dbeta


CORRECT = [compact, staged]
WRONG = [one_pass_variance, missing_variance_term, unbiased_variance, eps_outside_sqrt]
