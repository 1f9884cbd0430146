"""CPU time of one default ``check_gradient`` (200 examples + edge cases) per op and dtype on a correct
implementation (no early stop), in one run:

* **new**: the current checker, for the four CASES below and for the other families' backward ops
  (``FAMILY_OPS``; the correct function is gradaudit's stable formulation of the op run in the dtype);
* **old**: for the four CASES, the same checker with the former inner loop patched back in (the full
  tolerance of every input, one numpy JVP per input element, the per-element arb reference with eager
  ``mpmath`` conversion) — verdicts and example counts must be identical;
* **gradcheck**: for the four CASES, ``torch.autograd.gradcheck`` of the same function in torch,
  float64, one call at the default domain's largest shapes (column skipped when torch is not installed);
* **large batches**: the new checker with one axis drawn up to 1024 (rows, classes or features), float32.

Times are CPU seconds of this process (``time.process_time``, the least of ``--repeat`` runs), since
the machine is shared.  Targets (issue 11): a default check ≤ 1 s for float16/bfloat16/float32 and
≤ 1.5 s for float64; ≤ 10 s with batches up to 1024 rows or 1024 classes.  Each row says met/missed.

Run: ``python bench/bench_check.py [--quick] [--repeat N] [--no-large]`` (``--quick``: float32 and
float64 only, no large batches).
"""
import contextlib
import importlib
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

import numeric
from derive import get_op
from numeric.arguments import check_arguments
from numeric.check.edge_cases import edge_cases
from numeric.dtypes import resolve_dtype
from numeric.evaluate import evaluate
from numeric.strategies import domain_of

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

#: Backward ops of the other families, checked with their stable formulation (when registered).
FAMILY_OPS = ("log_softmax_backward", "softmax_t_backward", "bce_with_logits_backward", "layer_norm_backward",
              "rms_norm_backward")

#: Large batches: (op, axis drawn from 1 to 1024 — rows b/n, classes k, features d —, the other axes as in
#: the op's default domain).
LARGE = [("softmax_backward", "b"), ("softmax_backward", "k"), ("cross_entropy_backward", "b"),
         ("cross_entropy_backward", "k"), ("batchnorm_backward", "n"), ("layer_norm_backward", "n"),
         ("layer_norm_backward", "d"), ("rms_norm_backward", "n"), ("rms_norm_backward", "d")]

#: Seconds allowed per default check, by dtype; and with large batches.
TARGET = {"float16": 1.0, "bfloat16": 1.0, "float32": 1.0, "float64": 1.5}
LARGE_TARGET = 10.0


def stable_formulation(op_name):
    """A correct numpy implementation of ``op_name``: its stable formulation evaluated in the inputs' dtype."""
    op = get_op(op_name)
    form = op.stable_formulation.name

    def fn(*args):
        dtype = next(np.asarray(a).dtype for a, i in zip(args, op.inputs) if i.axes and not i.integer)
        return evaluate(op_name, *args, dtype=dtype, formulation=form)
    return fn


def family_cases():
    cases = []
    for name in FAMILY_OPS:
        try:
            cases.append((name, stable_formulation(name)))
        except ValueError:           # not registered in this checkout
            pass
    return cases


def _sensitivities_per_direction(the_op, arrays):
    return tuple(condition._values_and_sensitivities_per_direction(the_op.name, arrays)[1])


@contextlib.contextmanager
def old_inner_loop():
    """The checker's former inner loop: the full tolerance of every input (no early acceptance by the
    normwise bound), per-direction JVPs and the per-element arb reference."""
    saved = judge.sensitivities_of, reference._by_balls, judge._all_accepted
    judge.sensitivities_of = _sensitivities_per_direction
    reference._by_balls = reference._by_balls_per_element
    judge._all_accepted = lambda *args: False
    try:
        yield
    finally:
        judge.sensitivities_of, reference._by_balls, judge._all_accepted = saved


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


def warm_up(fn, op, dtype):
    """Compile what a check uses before timing one: a short check, then the full tolerance of every edge
    case (the check computes the componentwise bound's parts — the JVP, the ball-arithmetic rounding
    model — only for inputs the normwise bound does not accept, so a short check may not build them)."""
    numeric.check_gradient(fn, op, dtype=dtype, examples=3, framework="numpy")
    the_op, dt = get_op(op), resolve_dtype(dtype)
    for args in edge_cases(the_op, domain_of(the_op, dt)):
        judge.Truth(the_op, check_arguments(the_op, args, dt), dt).componentwise


def check_seconds(fn, op, dtype, repeat, **limits):
    """(least CPU seconds of ``repeat`` default checks, the last result)."""
    best, result = np.inf, None
    for _ in range(repeat):
        s, result = timed(lambda: numeric.check_gradient(fn, op, dtype=dtype, framework="numpy", **limits))
        best = min(best, s)
    return best, result


def verdict(seconds, target):
    return "met" if seconds <= target else "MISSED"


def main():
    quick = "--quick" in sys.argv
    repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 1
    dtypes = ("float32", "float64") if quick else ("float16", "bfloat16", "float32", "float64")
    import os
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (CPU seconds inflate when "
          "the cores are shared)")
    torch = torch_cases()
    grad = {op: gradcheck_seconds(torch[op]) for op, _ in CASES} if torch else {}
    print(f"{'op':26} {'dtype':8} {'new s':>6} {'target':>6} {'':6} {'old s':>6} {'old/new':>8} {'gradcheck s':>11} "
          f"{'new/gradcheck':>13} {'examples':>8} ok    same verdict")
    missed = []
    for op, fn in CASES + family_cases():
        for dtype in dtypes:
            warm_up(fn, op, dtype)                               # compile kernels first
            new_s, new = check_seconds(fn, op, dtype, repeat)
            ok = verdict(new_s, TARGET[dtype])
            if ok != "met":
                missed.append(f"{op} {dtype}")
            old_col, same = f"{'—':>6} {'—':>8}", "—"
            if op in dict(CASES):
                with old_inner_loop():
                    old_s, old = timed(lambda: numeric.check_gradient(fn, op, dtype=dtype, framework="numpy"))
                same = str((new.ok, new.examples, new.failures) == (old.ok, old.examples, old.failures))
                old_col = f"{old_s:6.2f} {old_s / new_s:7.1f}x"
            g = grad.get(op)
            gcol = f"{g:11.4f} {new_s / g:12.0f}x" if g else f"{'—':>11} {'—':>13}"
            print(f"{op:26} {dtype:8} {new_s:6.2f} {TARGET[dtype]:6.1f} {ok:6} {old_col} {gcol} {new.examples:8d} "
                  f"{str(new.ok):5} {same}", flush=True)
    if not quick and "--no-large" not in sys.argv:
        print(f"\nlarge batches (float32, new path; target ≤ {LARGE_TARGET:g} s)")
        print(f"{'op':26} {'sizes':22} {'new s':>6} {'':6} {'examples':>8} ok")
        fns = dict(CASES + family_cases())
        for op, axis in LARGE:
            if op not in fns:
                continue
            s, result = check_seconds(fns[op], op, "float32", 1, sizes={axis: (1, 1024)})
            ok = verdict(s, LARGE_TARGET)
            if ok != "met":
                missed.append(f"{op} {axis} ≤ 1024")
            print(f"{op:26} {axis + ' from 1 to 1024':22} {s:6.2f} {ok:6} {result.examples:8d} {result.ok}", flush=True)
    print("\nall targets met" if not missed else f"\ntargets missed: {'; '.join(missed)}")


if __name__ == "__main__":
    main()
