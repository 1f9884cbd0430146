"""Lambdified kernels vs hand-written numpy, float32, measured in one run.

Prints time ratios (target ≤ 1.3) and effective bandwidth against ``np.copyto`` of the same bytes.
Run: ``python bench/bench_kernels.py``.
"""
import time

import numpy as np

import numeric


def best_of(fn, repeats=7):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def hand_softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def hand_batchnorm_backward(x, gamma, dy, eps):
    n = np.float32(x.shape[0])
    mu = x.sum(axis=0) / n
    xc = x - mu
    rstd = 1 / np.sqrt((xc * xc).sum(axis=0) / n + eps)
    xhat = xc * rstd
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    dx = gamma * rstd / n * (n * dy - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta


def report(name, lambdified, hand, nbytes):
    buf = np.empty(nbytes // 4, dtype=np.float32)
    src = np.ones_like(buf)
    t_l, t_h, t_c = best_of(lambdified), best_of(hand), best_of(lambda: np.copyto(buf, src))
    gbs = lambda t: nbytes / t / 1e9
    print(f"{name:36} lambdified {t_l*1e3:7.2f} ms  hand {t_h*1e3:7.2f} ms  ratio {t_l/t_h:5.2f}  "
          f"| {gbs(t_l):5.2f} GB/s vs copyto {gbs(t_c):5.2f} GB/s ({t_c/t_l:.2f} of copy speed)")


def main():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4096, 1000)).astype(np.float32)
    report("softmax shifted 4096x1000",
           lambda: numeric.evaluate("softmax", z, dtype="float32", formulation="shifted"),
           lambda: hand_softmax(z), 2 * z.nbytes)
    x = rng.normal(size=(4096, 1024)).astype(np.float32)
    dy = rng.normal(size=(4096, 1024)).astype(np.float32)
    gamma = rng.normal(size=1024).astype(np.float32)
    eps = np.float32(1e-5)
    report("batchnorm_backward compact 4096x1024",
           lambda: numeric.evaluate("batchnorm_backward", x, gamma, dy, eps, dtype="float32", formulation="compact"),
           lambda: hand_batchnorm_backward(x, gamma, dy, eps), 3 * x.nbytes)


if __name__ == "__main__":
    main()
