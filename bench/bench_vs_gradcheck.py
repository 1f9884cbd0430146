"""gradaudit's ``check_gradient`` against ``torch.autograd.gradcheck`` on the same hand-written backward
passes (examples/*.py: the ``CORRECT`` and ``WRONG`` lists, each file named after its op), in float64 and
float32, in one run: each tool's verdict and CPU time per function, then its false alarms (a correct
function failed) and misses (a wrong one passed), and the time ratio.

How gradcheck sees a numpy backward: an ``autograd.Function`` whose forward is gradaudit's stable
formulation of the forward op in the dtype (numpy) and whose backward calls the user's function; gradcheck
compares it with finite differences of that forward (its defaults: eps 1e-6, atol 1e-5, rtol 1e-3), once,
on inputs like a user's test: logits z ~ N(0, 1) of shape (4, 8) (soft labels for cross-entropy), batch
norm x ~ N(0, 1) of shape (16, 4), γ ~ U(0.5, 1.5), β ~ N(0, 1), ε = 1e-5.  ``fast_mode=True`` checks one
random projection instead of the whole Jacobian.  gradaudit: default ``check_gradient`` (200 Hypothesis
examples + edge cases, seed 0).

Times are CPU seconds of this process (``time.process_time``; the machine is shared).
Run: ``python bench/bench_vs_gradcheck.py [--dtypes float64,float32]``.
"""
import argparse
import importlib.util
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from derive import get_op
from numeric import check_gradient
from numeric.adapters.pairing import forward_of, vjp_plan
from numeric.evaluate import evaluate

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_examples():
    """[(op name, function, truly correct?)] from every examples/<op>.py with CORRECT and WRONG lists."""
    cases = []
    for path in sorted(EXAMPLES.glob("*.py")):
        try:
            op = get_op(path.stem).name
        except ValueError:
            continue
        spec = importlib.util.spec_from_file_location(f"examples_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        cases += [(op, fn, True) for fn in getattr(module, "CORRECT", [])]
        cases += [(op, fn, False) for fn in getattr(module, "WRONG", [])]
    return cases


def user_inputs(fwd, rng):
    """Forward-op inputs like a user's unit test: N(0, 1) data, labels normalized per row, ε = 1e-5."""
    lengths = {"b": 4, "k": 8, "n": 16, "d": 4}
    args = []
    for inp in fwd.inputs:
        if not inp.axes:
            args.append(float(fwd.scalars.get(inp.name, 1e-5)))
            continue
        shape = tuple(lengths.get(a, 4) for a in inp.axes)
        if getattr(inp, "role", "") in ("labels", "onehot") or inp.name == "y" and len(inp.axes) == 2:
            y = rng.random(shape)
            args.append(y / y.sum(axis=-1, keepdims=True))
        elif inp.name == "gamma":
            args.append(rng.uniform(0.5, 1.5, shape))
        else:
            args.append(rng.standard_normal(shape))
    return args


def gradcheck_verdict(torch, fn, op_name, dtype, fast_mode, seed=0):
    """(passed?, CPU seconds) of torch.autograd.gradcheck on ``fn`` as the backward of its forward op."""
    bwd = get_op(op_name)
    fwd = forward_of(bwd)
    plan = vjp_plan(fwd, bwd)
    np_dtype = np.dtype(dtype)
    args = [a.astype(np_dtype) if isinstance(a, np.ndarray) else a for a in user_inputs(fwd, np.random.default_rng(seed))]
    diff = plan.differentiated
    stable = fwd.stable_formulation.name

    def full_args(tensors):
        out = list(args)
        for k, t in zip(diff, tensors):
            out[k] = t.detach().numpy()
        return out

    class Wrapped(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *tensors):
            ctx.save_for_backward(*tensors)
            with np.errstate(all="ignore"):
                y = evaluate(fwd.name, *full_args(tensors), dtype=dtype, formulation=stable)
            return torch.from_numpy(np.asarray(y, dtype=np_dtype).copy())

        @staticmethod
        def backward(ctx, upstream):
            primals = full_args(ctx.saved_tensors)
            bargs = [None] * len(bwd.inputs)
            for k, src in enumerate(plan.primal_from):
                if src is not None:
                    bargs[src] = primals[k]
            g = upstream.detach().numpy()
            for slot in plan.cotangents:
                bargs[slot] = g
            with np.errstate(all="ignore"):
                value = fn(*bargs)
            outs = value if isinstance(value, tuple) else (value,)
            grads = {k: np.asarray(o, dtype=np_dtype) for k, o in zip(plan.grad_of, outs)}
            scale = 1.0 if plan.cotangents else float(g)        # a loss: the user's dz times upstream
            return tuple(torch.from_numpy(np.ascontiguousarray(grads[k] * scale)) for k in diff)

    inputs = tuple(torch.from_numpy(args[k].copy()).requires_grad_(True) for k in diff)
    start = time.process_time()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ok = bool(torch.autograd.gradcheck(Wrapped.apply, inputs, fast_mode=fast_mode, raise_exception=False))
    except Exception:            # gradcheck raising (e.g. nan in the forward) is a failure
        ok = False
    return ok, time.process_time() - start


def gradaudit_verdict(fn, op_name, dtype):
    start = time.process_time()
    with np.errstate(all="ignore"):           # overflow inside the user's function is a finding, not noise
        ok = check_gradient(fn, op_name, dtype=dtype).ok
    return ok, time.process_time() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="float64,float32")
    ns = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("torch is not installed: pip install 'gradaudit[torch]'")
        return 0
    torch.set_num_threads(1)
    tools = ("gradcheck", "gradcheck fast", "gradaudit")
    tally = {(t, d): {"alarms": 0, "misses": 0, "time": 0.0, "n": 0} for t in tools for d in ns.dtypes.split(",")}
    print(f"torch {torch.__version__}, CPU seconds per call\n")
    print(f"| op | function | truth | dtype | gradcheck | s | fast_mode | s | gradaudit | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for op_name, fn, correct in load_examples():
        for dtype in ns.dtypes.split(","):
            results = {"gradcheck": gradcheck_verdict(torch, fn, op_name, dtype, False),
                       "gradcheck fast": gradcheck_verdict(torch, fn, op_name, dtype, True),
                       "gradaudit": gradaudit_verdict(fn, op_name, dtype)}
            cells = []
            for tool in tools:
                ok, seconds = results[tool]
                t = tally[(tool, dtype)]
                t["n"] += 1
                t["time"] += seconds
                t["alarms"] += int(correct and not ok)
                t["misses"] += int(not correct and ok)
                mark = "pass" if ok else "FAIL"
                wrong = (correct and not ok) or (not correct and ok)
                cells += [mark + (" ✗" if wrong else ""), f"{seconds:.3f}"]
            print(f"| {op_name} | {fn.__name__} | {'correct' if correct else 'wrong'} | {dtype} | " + " | ".join(cells) + " |")
            sys.stdout.flush()
    print("\n✗ = wrong verdict.  Summary (false alarms = correct functions failed; misses = wrong ones passed):\n")
    print("| tool | dtype | functions | false alarms | misses | CPU s total |")
    print("|---|---|---|---|---|---|")
    for (tool, dtype), t in tally.items():
        print(f"| {tool} | {dtype} | {t['n']} | {t['alarms']} | {t['misses']} | {t['time']:.2f} |")
    for dtype in ns.dtypes.split(","):
        ga = tally[("gradaudit", dtype)]["time"]
        print(f"\n{dtype}: gradaudit / gradcheck time = {ga / max(tally[('gradcheck', dtype)]['time'], 1e-9):.0f}×, "
              f"gradaudit / gradcheck fast_mode = {ga / max(tally[('gradcheck fast', dtype)]['time'], 1e-9):.0f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
