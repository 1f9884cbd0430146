"""Wall time of one default ``check_gradient`` (200 examples + edge cases) per op and dtype on a correct
implementation (no early stop), in one run, three ways:

* **new**: the current checker (sensitivities in one batched JVP, whole-array arb reference);
* **old**: the same checker with the former inner loop patched back in (one numpy JVP per input
  element, the per-element arb reference with eager ``mpmath`` conversion) — verdicts and example counts
  must be identical;
* **gradcheck**: ``torch.autograd.gradcheck`` of the same function in torch, float64, one call at the
  default domain's largest shapes (column skipped when torch is not installed).

Times are CPU seconds of this process (``time.process_time``), since the machine is shared.
Targets (issue 11): new ≤ 1 s for float16/bfloat16/float32 and ≤ 1.5 s for float64.

Run: ``python bench/bench_check.py [--quick]`` (``--quick``: float32 and float64 only).
"""
import contextlib
import importlib
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

import numeric

condition = importlib.import_module("numeric.condition")
reference = importlib.import_module("numeric.reference")     # the module (the package re-exports the function)
judge = importlib.import_module("numeric.check.judge")

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


def _sensitivities_per_direction(the_op, arrays):
    return tuple(condition._values_and_sensitivities_per_direction(the_op.name, arrays)[1])


@contextlib.contextmanager
def old_inner_loop():
    """The checker's former inner loop: per-direction JVPs and the per-element arb reference."""
    saved = judge.sensitivities_of, reference._by_balls
    judge.sensitivities_of = _sensitivities_per_direction
    reference._by_balls = reference._by_balls_per_element
    try:
        yield
    finally:
        judge.sensitivities_of, reference._by_balls = saved


def torch_cases():
    """op -> (function of torch tensors, inputs): what gradcheck verifies for the same op, float64."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)

    def t(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)

    y = torch.softmax(torch.randn(8, 16, generator=g, dtype=torch.float64), dim=1)
    beta = torch.randn(4, generator=g, dtype=torch.float64)
    return {
        "softmax": (lambda z: torch.softmax(z, dim=1), (t(8, 16),)),
        "softmax_backward": (lambda z: torch.softmax(z, dim=1), (t(8, 16),)),
        "cross_entropy_backward": (lambda z: F.cross_entropy(z, y, reduction="sum"), (t(8, 16),)),
        "batchnorm_backward": (lambda x, w: F.batch_norm(x, None, None, w, beta, training=True, eps=1e-5),
                               (t(64, 4), t(4))),
    }


def timed(fn):
    """(CPU seconds of this process, result): on a 2-core machine shared with other jobs, wall time
    mostly measures the neighbours."""
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def gradcheck_seconds(case, repeats=3):
    import torch
    fn, inputs = case
    return min(timed(lambda: torch.autograd.gradcheck(fn, inputs))[0] for _ in range(repeats))


def main():
    dtypes = ("float32", "float64") if "--quick" in sys.argv else ("float16", "bfloat16", "float32", "float64")
    torch = torch_cases()
    grad = {op: gradcheck_seconds(torch[op]) for op, _ in CASES} if torch else {}
    print(f"{'op':24} {'dtype':8} {'new s':>6} {'old s':>6} {'old/new':>8} {'gradcheck s':>11} {'new/gradcheck':>13} "
          f"{'examples':>8} ok  same verdict")
    for op, fn in CASES:
        for dtype in dtypes:
            numeric.check_gradient(fn, op, dtype=dtype, examples=3)          # compile kernels outside the timing
            new_s, new = timed(lambda: numeric.check_gradient(fn, op, dtype=dtype))
            with old_inner_loop():
                old_s, old = timed(lambda: numeric.check_gradient(fn, op, dtype=dtype))
            same = (new.ok, new.examples, new.failures) == (old.ok, old.examples, old.failures)
            g = grad.get(op)
            gcol = f"{g:11.4f} {new_s / g:12.0f}x" if g else f"{'—':>11} {'—':>13}"
            print(f"{op:24} {dtype:8} {new_s:6.2f} {old_s:6.2f} {old_s / new_s:7.1f}x {gcol} {new.examples:8d} "
                  f"{str(new.ok):5} {same}")


if __name__ == "__main__":
    main()
