"""Certified-reference throughput: gradaudit's engines (arb balls, the default; gmpy2 MPFR) against
mpmath with its gmpy backend and with its pure-Python backend, in one run (the pure-Python figure comes from a child process started with
MPMATH_NOGMPY=1, since mpmath picks its backend at import).  Target: ≥ 3× the pure-Python backend.

Run: ``python bench/bench_reference.py``.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

CASES = {
    "softmax K=10": ("softmax", lambda rng: (rng.normal(size=(1, 10)),)),
    "batchnorm_backward N=32": ("batchnorm_backward",
                                lambda rng: (rng.normal(size=(32, 1)), rng.normal(size=1), rng.normal(size=(32, 1)), 1e-5)),
}


def rate(engine, windows=7, seconds=0.3):
    """Best evaluations/s over several short windows (the machine is noisy; the best window is the
    least disturbed one)."""
    from numeric.reference import reference
    rng = np.random.default_rng(0)
    out = {}
    for label, (op, make) in CASES.items():
        args = make(rng)
        reference(op, *args, engine=engine)
        best = 0.0
        for _ in range(windows):
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                reference(op, *args, engine=engine)
                n += 1
            best = max(best, n / (time.perf_counter() - start))
        out[label] = best
    return out


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(rate("mpmath")))
        return
    import mpmath.libmp
    arb = rate("arb")
    here = rate("gmpy2")
    with_gmpy_backend = rate("mpmath")
    env = dict(os.environ, MPMATH_NOGMPY="1")
    child = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True, check=True)
    pure = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"mpmath backend in this process: {mpmath.libmp.BACKEND}; child: python (MPMATH_NOGMPY=1)")
    print(f"{'case':26} {'arb (default)':>14} {'gmpy2':>10} {'mpmath+gmpy':>12} {'mpmath pure':>12} "
          f"{'arb/pure':>9} {'gmpy2/pure':>11}")
    for label in CASES:
        print(f"{label:26} {arb[label]:12.0f}/s {here[label]:8.0f}/s {with_gmpy_backend[label]:10.0f}/s "
              f"{pure[label]:10.0f}/s {arb[label] / pure[label]:8.2f}x {here[label] / pure[label]:10.2f}x")


if __name__ == "__main__":
    main()
