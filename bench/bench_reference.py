"""Certified-reference throughput, in one run:

1. gradaudit's engines (arb balls, the default; gmpy2 MPFR) against mpmath with its gmpy backend and
   with its pure-Python backend (the pure-Python figure comes from a child process started with
   MPMATH_NOGMPY=1, since mpmath picks its backend at import).  Target: ≥ 3× the pure-Python backend.
2. softmax rows/s of ``reference`` (results lazily converted; and with every element read as a float)
   and of the former per-element arb path, against a plain python-flint loop with the same
   certification rule (radius ≤ 2^-83 |mid|).  Target (issue 11): reference within 1.5× of the loop.
3. the fast certified path (``numeric.engines.fast.rounded_reference``, float64 balls, arb for what they
   leave open) against the arb reference rounded to the same dtype, with how many elements took arb.
4. the same for float64 targets, where the fast path runs in double-double balls: softmax 4096×10 and
   batch norm 4096×8 (plus adversarial variants), double-double against arb, with the slow count.

Run: ``python bench/bench_reference.py [--no-child]`` (``--no-child`` skips the pure-Python mpmath run).
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


def flint_softmax_loop(z):
    """The plain python-flint loop: one row at a time, 128 bits, certified by relative accuracy."""
    import flint
    arb = flint.arb
    out = []
    with flint.ctx.workprec(128):
        for row in z.tolist():
            e = [arb(v).exp() for v in row]
            total = sum(e[1:], e[0])
            s = [v / total for v in e]
            if any(v.rel_accuracy_bits() < 84 for v in s):
                raise ArithmeticError("not certified at 128 bits")
            out.append(s)
    return out


def best_seconds(fn, repeats=5):
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def against_the_flint_loop():
    import importlib
    reference = importlib.import_module("numeric.reference")
    rng = np.random.default_rng(0)
    print(f"\n{'softmax rows':14} {'flint loop':>12} {'reference':>12} {'ratio':>6} {'+read all':>12} "
          f"{'ratio':>6} {'old per-element':>15} {'ratio':>6}")
    read = np.frompyfunc(float, 1, 1)

    def old(z):          # the former per-element arb path on the same balls (no argument checks)
        balls = [np.asarray(reference._ARB_OF(np.asarray(z, dtype=np.float64)), dtype=object)]
        return reference._by_balls_per_element("softmax", balls)

    for b, k in [(1, 10), (100, 10), (1000, 10), (64, 256)]:
        z = 5 * rng.standard_normal((b, k))
        loop = best_seconds(lambda: flint_softmax_loop(z))
        new = best_seconds(lambda: reference.reference("softmax", z))
        consumed = best_seconds(lambda: read(reference.reference("softmax", z)))
        before = best_seconds(lambda: old(z))
        rate = lambda t: f"{b / t:10.0f}/s"
        print(f"{b:5} × {k:<6} {rate(loop):>12} {rate(new):>12} {new / loop:5.2f}x {rate(consumed):>12} "
              f"{consumed / loop:5.2f}x {rate(before):>15} {before / loop:5.2f}x")
    # One row in steady state: the table's single-call best of 5 also holds the interpreter's warm-up of
    # code run for the first time; here each is timed over 20000 calls (CPU time, best of 5).
    import timeit
    z = 5 * np.random.default_rng(1).standard_normal((1, 10))
    per_call = lambda fn: min(timeit.Timer(fn, timer=time.process_time).repeat(number=20000, repeat=5)) / 20000
    loop = per_call(lambda: flint_softmax_loop(z))
    new = per_call(lambda: reference.reference("softmax", z))
    consumed = per_call(lambda: read(reference.reference("softmax", z)))
    print(f"1 × 10 steady state, per call: flint loop {loop * 1e6:.1f} µs, reference {new * 1e6:.1f} µs "
          f"({new / loop:.2f}x), +read all {consumed * 1e6:.1f} µs ({consumed / loop:.2f}x)")


def fast_path():
    from numeric.engines.fast import rounded_reference
    from numeric.reference import reference
    rng = np.random.default_rng(1)
    print(f"\n{'fast path':34} {'dtype':9} {'fast':>9} {'arb+round':>10} {'speed-up':>9} {'slow path':>12}")
    cases = {"softmax 4096×10, |z| ~ 30": ("softmax", (30 * rng.standard_normal((4096, 10)),)),
             "batchnorm_backward 1024×4, mean 1e3": ("batchnorm_backward",
                                                     (1e3 + rng.standard_normal((1024, 4)), rng.standard_normal(4),
                                                      rng.standard_normal((1024, 4)), 1e-5))}
    read = np.frompyfunc(float, 1, 1)
    for label, (op, args) in cases.items():
        for dtype in ("bfloat16", "float32"):
            result = rounded_reference(op, *args, dtype=dtype)
            fast = best_seconds(lambda: rounded_reference(op, *args, dtype=dtype), repeats=3)
            slow = best_seconds(lambda: [read(o) for o in (lambda r: r if isinstance(r, tuple) else (r,))(
                reference(op, *args))], repeats=3)
            print(f"{label:34} {dtype:9} {fast * 1e3:7.1f}ms {slow * 1e3:8.1f}ms {slow / fast:8.1f}x "
                  f"{result.slow:6d}/{result.total}")


def double_double_path():
    """float64 targets: double-double balls (arb for what they leave open) against arb alone (the
    whole-array reference, every element read as a float), on the same inputs in one run."""
    from numeric.engines.fast import rounded_reference
    from numeric.reference import reference
    rng = np.random.default_rng(2)
    cases = {"softmax 4096×10": ("softmax", (5 * rng.standard_normal((4096, 10)),)),
             "softmax 4096×10, logits ±700": ("softmax", (rng.choice([-700.0, 700.0], (4096, 10))
                                                          + rng.standard_normal((4096, 10)),)),
             "batchnorm 4096×8": ("batchnorm", (rng.standard_normal((4096, 8)), rng.standard_normal(8),
                                                rng.standard_normal(8), 1e-5)),
             "batchnorm 4096×8, mean 1e8": ("batchnorm", (1e8 + rng.standard_normal((4096, 8)),
                                                          rng.standard_normal(8), rng.standard_normal(8), 1e-5)),
             "batchnorm_backward 4096×8": ("batchnorm_backward", (rng.standard_normal((4096, 8)),
                                                                  rng.standard_normal(8),
                                                                  rng.standard_normal((4096, 8)), 1e-5))}
    read = np.frompyfunc(float, 1, 1)
    print(f"\n{'float64 target':32} {'double-double':>13} {'arb':>9} {'speed-up':>9} {'took arb':>13}")
    for label, (op, args) in cases.items():
        result = rounded_reference(op, *args, dtype="float64")          # also compiles and builds tables
        dd_time = best_seconds(lambda: rounded_reference(op, *args, dtype="float64"), repeats=3)
        arb_time = best_seconds(lambda: [read(o) for o in (lambda r: r if isinstance(r, tuple) else (r,))(
            reference(op, *args))], repeats=3)
        print(f"{label:32} {dd_time * 1e3:11.1f}ms {arb_time * 1e3:7.1f}ms {arb_time / dd_time:8.1f}x "
              f"{result.slow:6d}/{result.total}")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(rate("mpmath")))
        return
    against_the_flint_loop()
    fast_path()
    double_double_path()
    if "--no-child" in sys.argv:
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
