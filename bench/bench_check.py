"""Wall time of one ``check_gradient`` with default settings (200 examples + edge cases) per op, on a
correct implementation (the slow path: no early stop).  Target ≤ 10 s per op on this 2-core machine.

Run: ``python bench/bench_check.py``.
"""
import importlib.util
import time
from pathlib import Path

import numpy as np

import numeric

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example(module, name):
    spec = importlib.util.spec_from_file_location(module, EXAMPLES / f"{module}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return getattr(mod, name)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


CASES = [
    ("softmax", softmax),
    ("softmax_backward", example("softmax_backward", "shifted")),
    ("cross_entropy_backward", example("cross_entropy_backward", "shifted")),
    ("batchnorm_backward", example("batchnorm_backward", "compact")),
]


def main():
    print(f"{'op':24} {'dtype':8} {'seconds':>8} {'examples':>9} ok")
    for op, fn in CASES:
        for dtype in ("float32", "float64"):
            start = time.perf_counter()
            result = numeric.check_gradient(fn, op, dtype=dtype)
            print(f"{op:24} {dtype:8} {time.perf_counter() - start:8.2f} {result.examples:9d} {result.ok}")


if __name__ == "__main__":
    main()
