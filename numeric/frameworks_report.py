"""``reports/frameworks.md``: the frameworks' own kernels measured like gradaudit's formulations.

For each kernel (torch's ``softmax``, ``log_softmax``, ``cross_entropy`` with its defaults — mean over the
batch, integer targets —, ``batch_norm`` in training mode, ``layer_norm``; JAX's ``jax.nn.softmax`` and
``jax.nn.log_softmax`` when JAX is installed), its forward and its autograd backward pass run in every
dtype on a few deterministic inputs of growing magnitude.  Each output element is compared with the exact
value for the same (rounded) inputs: ULPs of the dtype (``numeric.metrics``), inf/nan counts, and the
largest relative error ÷ (max(κ, 1)·u) over elements whose exact value is a normal number (about 1 for a
backward-stable kernel).  Beside it: gradaudit's stable formulation of the same op, measured the same way.

Exact values: ``numeric.reference`` of the gradaudit op when it exists (``get_op``), with κ from
``numeric.condition``.  For an op gradaudit does not have yet (log-softmax, layer norm) the exact value
is computed here in mpmath from the textbook definition at 256 and 512 bits (the two must agree to 83
bits, else the run stops), and κ from a float64 Jacobian of the framework's own float64 kernel.

Deterministic: fixed seeds, torch limited to one thread while measuring (a parallel reduction's order
could otherwise depend on the thread count), no timings.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import mpmath
import numpy as np

import derive

from . import frameworks_jax
from .adapters import torch_tensors
from .adapters.pairing import backward_of, vjp_plan
from .condition import condition_numbers
from .dtypes import DTYPES, finfo, resolve_dtype
from .evaluate import as_tuple, evaluate
from .frameworks_start import JAX_KERNELS, LOGIT_MAGNITUDES, is_float as _is_float
from .frameworks_start import kernel_inputs as _inputs, logits as _logits, start as _start, stop_child
from .metrics import error_metrics
from .reference import reference

__all__ = ["FRAMEWORKS_INDEX_LINE", "KernelCase", "torch_cases", "jax_cases", "measure_case", "frameworks_markdown", "write_frameworks_report",
           "start_frameworks_report", "FrameworksRun"]

#: Appended to reports/index.md when frameworks.md was written.
FRAMEWORKS_INDEX_LINE = ("\n## Framework kernels\n\n[frameworks.md](frameworks.md): the installed frameworks' own softmax, "
                         "log-softmax, cross-entropy, batch-norm and layer-norm kernels and their autograd backward "
                         "passes, measured against the certified reference per dtype.\n")
MEAN_OVER_STD = (1.0, 100.0, 1e4)
CERTIFY_BITS = 83


# ---------------------------------------------------------------- exact values for ops gradaudit lacks

def _mp_certified(fn, args) -> list:
    """``fn(mp_args)`` (list of object arrays of mpf) at 256 and 512 bits; the 512-bit values, after
    checking that both agree to ``CERTIFY_BITS`` relative (or are both within 2^-1080 of 0)."""
    def run(bits):
        with mpmath.workprec(bits):
            mp_args = [np.vectorize(lambda v: mpmath.mpf(float(v)), otypes=[object])(a) if _is_float(a)
                       else (mpmath.mpf(a) if isinstance(a, float) else a) for a in args]
            return [np.asarray(o, dtype=object) for o in fn(*mp_args)]
    lo, hi = run(256), run(512)
    tiny = mpmath.mpf(2) ** -1080
    for a, b in zip(lo, hi):
        for x, y in zip(a.ravel(), b.ravel()):
            if abs(y) <= tiny and abs(x) <= tiny:
                continue
            if abs(x - y) > abs(y) * mpmath.mpf(2) ** -CERTIFY_BITS:
                raise ArithmeticError("mpmath reference did not settle between 256 and 512 bits")
    return hi


def _rows(a):
    return [list(r) for r in a]


def _mp_log_softmax(z):
    out = []
    for row in _rows(z):
        lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in row))
        out.append([v - lse for v in row])
    return [np.array(out, dtype=object)]


def _mp_log_softmax_backward(z, dy):
    """dz = dy − softmax(z) Σ_k dy_k."""
    out = []
    for row, g in zip(_rows(z), _rows(dy)):
        lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in row))
        total = mpmath.fsum(g)
        out.append([gk - mpmath.exp(v - lse) * total for v, gk in zip(row, g)])
    return [np.array(out, dtype=object)]


def _mp_layer_norm_parts(x, eps):
    d = x.shape[1]
    xhat, rstd = [], []
    for row in _rows(x):
        mu = mpmath.fsum(row) / d
        var = mpmath.fsum((v - mu) ** 2 for v in row) / d
        r = 1 / mpmath.sqrt(var + eps)
        rstd.append(r)
        xhat.append([(v - mu) * r for v in row])
    return xhat, rstd


def _mp_layer_norm(x, w, b, eps):
    xhat, _ = _mp_layer_norm_parts(x, eps)
    return [np.array([[w[j] * v + b[j] for j, v in enumerate(row)] for row in xhat], dtype=object)]


def _mp_layer_norm_backward(x, w, b, eps, dy):
    """dx = rstd/D (D g − Σ g − x̂ Σ g x̂) with g = dy ⊙ w (per row); dw = Σ_rows dy x̂; db = Σ_rows dy."""
    xhat, rstd = _mp_layer_norm_parts(x, eps)
    d = x.shape[1]
    dx = []
    for xr, r, gy in zip(xhat, rstd, _rows(dy)):
        g = [gk * w[j] for j, gk in enumerate(gy)]
        sg, sgx = mpmath.fsum(g), mpmath.fsum(a * c for a, c in zip(g, xr))
        dx.append([r / d * (d * g[j] - sg - xr[j] * sgx) for j in range(d)])
    dw = [mpmath.fsum(dy[i, j] * xhat[i][j] for i in range(x.shape[0])) for j in range(d)]
    db = [mpmath.fsum(dy[i, j] for i in range(x.shape[0])) for j in range(d)]
    return [np.array(dx, dtype=object), np.array(dw, dtype=object), np.array(db, dtype=object)]


# ---------------------------------------------------------------- cases

@dataclass(frozen=True)
class KernelCase:
    """One framework kernel: ``forward`` takes and returns the framework's arrays; ``args(M, rng)`` the
    float64 forward inputs at magnitude M (integers for class ids, Python floats for ε); ``diff`` the
    forward inputs differentiated by the backward pass.  ``op``: gradaudit's op name, or "" with
    ``exact_forward``/``exact_backward`` mpmath definitions."""
    framework: str
    label: str
    forward: Callable
    args: Callable
    diff: tuple
    magnitudes: tuple
    xname: str
    op: str = ""
    exact_forward: Callable | None = field(default=None, repr=False)
    exact_backward: Callable | None = field(default=None, repr=False)
    note: str = ""


def _registered(name: str) -> str:
    """``name`` when gradaudit has that op now (``derive.get_op``), else ""."""
    try:
        return derive.get_op(name).name
    except ValueError:
        return ""


def _centred(shape):
    def make(m, rng):
        x = m + rng.standard_normal(shape)
        return (x, rng.standard_normal(shape[1]), rng.standard_normal(shape[1]), 1e-5)
    return make


def _ce_args(m, rng):
    return (m * rng.standard_normal((4, 8)), rng.integers(0, 8, size=4))


def torch_cases() -> list[KernelCase]:
    import torch
    F = torch.nn.functional
    log_softmax_op = _registered("log_softmax")
    layer_norm_op = _registered("layer_norm")
    own = "exact values from mpmath in this module (gradaudit has no such op yet)"
    return [
        KernelCase("torch", "torch.softmax(z, dim=1)", lambda z: torch.softmax(z, dim=1), _logits, (0,),
                   LOGIT_MAGNITUDES, "M", op="softmax"),
        KernelCase("torch", "torch.log_softmax(z, dim=1)", lambda z: torch.log_softmax(z, dim=1), _logits, (0,),
                   LOGIT_MAGNITUDES, "M", op=log_softmax_op, exact_forward=_mp_log_softmax,
                   exact_backward=_mp_log_softmax_backward, note="" if log_softmax_op else own),
        KernelCase("torch", "F.cross_entropy(z, y) (mean, integer targets)",
                   lambda z, y: F.cross_entropy(z, y.long()), _ce_args, (0,), LOGIT_MAGNITUDES, "M",
                   op="cross_entropy[labels=index,reduction=mean]"),
        KernelCase("torch", "F.batch_norm(x, None, None, γ, β, training=True, eps=ε)",
                   lambda x, g, b, eps: F.batch_norm(x, None, None, g, b, training=True, eps=eps),
                   _centred((16, 4)), (0, 1, 2), MEAN_OVER_STD, "M", op="batchnorm"),
        KernelCase("torch", "F.layer_norm(x, (D,), w, b, eps=ε)",
                   lambda x, w, b, eps: F.layer_norm(x, (x.shape[-1],), w, b, eps=eps),
                   _centred((4, 16)), (0, 1, 2), MEAN_OVER_STD, "M", op=layer_norm_op,
                   exact_forward=_mp_layer_norm, exact_backward=_mp_layer_norm_backward,
                   note="" if layer_norm_op else own),
    ]


def jax_cases() -> list[KernelCase]:
    """JAX's kernels, :data:`numeric.frameworks_start.JAX_KERNELS` in that order, with gradaudit's ops
    (building the list does not import JAX; running a case does).  The forwards are module-level
    functions of :mod:`numeric.frameworks_jax`, so a case's kernel pickles to a child."""
    log_softmax_op = _registered("log_softmax")
    own = "exact values from mpmath in this module (gradaudit has no such op yet)"
    ops = {"jax.nn.softmax(z, axis=1)": {"op": "softmax"},
           "jax.nn.log_softmax(z, axis=1)": {"op": log_softmax_op, "exact_forward": _mp_log_softmax,
                                             "exact_backward": _mp_log_softmax_backward,
                                             "note": "" if log_softmax_op else own}}
    return [KernelCase("jax", k.label, k.forward, k.args, k.diff, k.magnitudes, "M", **ops[k.label])
            for k in JAX_KERNELS]


# ---------------------------------------------------------------- running a kernel

def _run_torch(case, args, dt, seed, device):
    """(forward outputs, gradients of ``case.diff``, upstream gradients) as numpy arrays of the dtypes torch
    produced: one forward, then the backward of that graph with :func:`frameworks_jax.upstream_for`."""
    import torch
    ts = [torch.from_numpy(a.astype(np.int64)).to(device) if isinstance(a, np.ndarray) and a.dtype.kind in "iu"
          else torch_tensors.to_torch(a, device) for a in args]
    for k in case.diff:
        ts[k] = ts[k].detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = case.forward(*ts)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    outs_np = [torch_tensors.to_numpy(o) for o in outs]
    upstream = frameworks_jax.upstream_for(outs_np, dt, seed)
    ups = [torch_tensors.to_torch(u, device) if u is not None else torch.ones_like(o) for u, o in zip(upstream, outs)]
    grads = torch.autograd.grad(outs, [ts[k] for k in case.diff], grad_outputs=ups)
    return outs_np, [torch_tensors.to_numpy(g) for g in grads], upstream


def _jacobian_kappa(case, args, upstream, which):
    """κ per output element, Σ_j |∂f_i/∂x_j| |x_j| / |f_i| over every float input (and the upstream
    gradients for the backward pass), from a float64 Jacobian of the torch kernel (a JAX case uses its
    torch twin: κ is a property of the function, not of the kernel)."""
    import torch
    if case.framework != "torch":
        return _jacobian_kappa(_torch_twin(case), args, upstream, which)
    float_slots = [k for k, a in enumerate(args) if _is_float(a)]
    base = [torch.from_numpy(np.asarray(a)) if isinstance(a, np.ndarray) else a for a in args]
    variables = [base[k].to(torch.float64) for k in float_slots]
    if which == "backward":
        variables += [torch.from_numpy(u.astype(np.float64)) for u in upstream]

    def f(*xs):
        full = list(base)
        for k, v in zip(float_slots, xs):
            full[k] = v
        if which == "forward":
            return case.forward(*full)
        with torch.enable_grad():
            diff = [full[k] if full[k].requires_grad else full[k].detach().requires_grad_(True) for k in case.diff]
            for k, v in zip(case.diff, diff):
                full[k] = v
            out = case.forward(*full)
            ups = list(xs[len(float_slots):]) or [torch.ones_like(out)]
            return torch.autograd.grad(out, diff, grad_outputs=ups[0], create_graph=True)
    values = f(*variables)
    values = tuple(v.detach() for v in (values if isinstance(values, tuple) else (values,)))
    jac = torch.autograd.functional.jacobian(f, tuple(variables))
    jac = jac if isinstance(jac[0], tuple) else (jac,)
    kappas = []
    for v, rows in zip(values, jac):
        total = torch.zeros_like(v)
        for r, x in zip(rows, variables):
            total += (r.abs() * x.abs().reshape((1,) * v.dim() + tuple(x.shape))).reshape(*v.shape, -1).sum(-1)
        mag = v.abs()
        kappas.append(torch.where(mag > 0, total / torch.where(mag > 0, mag, 1.0),
                                  torch.where(total > 0, math.inf, 0.0)).numpy())
    return kappas


def _torch_twin(case):
    """The torch kernel computing the same function as a JAX case (for κ only, in float64)."""
    import torch
    twins = {"jax.nn.softmax(z, axis=1)": lambda z: torch.softmax(z, dim=1),
             "jax.nn.log_softmax(z, axis=1)": lambda z: torch.log_softmax(z, dim=1)}
    return KernelCase("torch", case.label, twins[case.label], case.args, case.diff, case.magnitudes, case.xname)


def _exact(case, rounded, upstream):
    """(forward exact outputs, backward exact outputs, forward κ, backward κ)."""
    if case.op:
        fwd = derive.get_op(case.op)
        ref_f = as_tuple(reference(fwd.name, *rounded))
        kap_f = as_tuple(condition_numbers(fwd.name, *rounded))
        bwd, bargs = _backward_args(fwd, rounded, upstream)
        ref_b = as_tuple(reference(bwd.name, *bargs))
        kap_b = as_tuple(condition_numbers(bwd.name, *bargs))
        return ref_f, ref_b, kap_f, kap_b
    ref_f = _mp_certified(case.exact_forward, rounded)
    ref_b = _mp_certified(case.exact_backward, (*rounded, *[u for u in upstream if u is not None]))
    f64 = tuple(a.astype(np.float64) if _is_float(a) else a for a in rounded)
    ups = [u.astype(np.float64) for u in upstream if u is not None]
    return (ref_f, ref_b, _jacobian_kappa(case, f64, ups, "forward"), _jacobian_kappa(case, f64, ups, "backward"))


def _backward_args(fwd, rounded, upstream):
    plan = vjp_plan(fwd, backward_of(fwd))
    bargs = [None] * len(plan.backward.inputs)
    for k, src in enumerate(plan.primal_from):
        if src is not None:
            bargs[src] = rounded[k]
    for slot, u in zip(plan.cotangents, upstream):
        bargs[slot] = u
    return plan.backward, bargs


def _summary(gots, refs, kappas, dt) -> dict:
    u = float(finfo(dt).eps) / 2
    normal = float(finfo(dt).smallest_normal)
    ulps, judged, inf, nan, flush = [], [], 0, 0, 0
    for got, ref, kap in zip(gots, refs, kappas):
        got = np.asarray(got)
        if got.dtype != dt:
            return {"dtype_out": str(got.dtype)}
        m = error_metrics(got, np.asarray(ref, dtype=object).reshape(got.shape), dt)
        ulps.append(m.finite_ulps.ravel())
        inf, nan, flush = inf + int(m.inf.sum()), nan + int(m.nan.sum()), flush + int(m.flush.sum())
        r = np.abs(np.asarray(np.frompyfunc(float, 1, 1)(np.asarray(ref, dtype=object)), dtype=np.float64)).reshape(got.shape)
        with np.errstate(all="ignore"):
            ok = np.isfinite(m.rel) & (r >= normal)
            judged.append((m.rel / (np.maximum(np.asarray(kap, dtype=np.float64), 1.0) * u))[ok].ravel())
    ulps, judged = np.concatenate(ulps), np.concatenate(judged)
    return {"max_ulps": float(ulps.max()) if ulps.size else math.nan,
            "over_kappa_u": float(judged.max()) if judged.size else math.nan,
            "inf": inf, "nan": nan, "flush": flush}


def measure_case(case: KernelCase, dtype, magnitude: float, *, seed: int = 0, device: str = "cpu",
                 memo: dict | None = None) -> dict:
    """{"forward": summary, "backward": summary, "gradaudit_forward": …, "gradaudit_backward": …} for one
    kernel at one magnitude in one dtype (summaries: max_ulps, over_kappa_u, inf, nan, flush).  The
    upstream gradient is N(0, 1) of the output's shape, or 1 for a scalar loss.  ``memo``: see
    :func:`_measured_row`."""
    dt = resolve_dtype(dtype)
    rounded = _inputs(case, dt, magnitude, seed)
    if rounded is None:
        return {"unrepresentable": True}
    if case.framework == "torch":
        outs, grads, upstream = _run_torch(case, rounded, dt, seed, device)
    else:
        outs, grads, upstream = frameworks_jax.run(case.forward, case.diff, rounded, dt, seed)
    return _measured_row(case, dt, rounded, outs, grads, upstream, memo)


def _measured_row(case: KernelCase, dt, rounded, outs, grads, upstream, memo: dict | None = None) -> dict:
    """:func:`measure_case`'s row from the kernel's outputs and gradients on ``rounded`` inputs.

    ``memo`` (one run's dict) keeps the exact values, κ and gradaudit's own rows of a registered op by
    (op, dtype, input and upstream bytes): a JAX kernel measured on the same rounded inputs and upstream
    gradients as its torch twin reuses them instead of recomputing them."""
    key = _memo_key(case, dt, rounded, upstream) if memo is not None else None
    if key is not None and key in memo:
        ref_f, ref_b, kap_f, kap_b, ours = memo[key]
    else:
        ref_f, ref_b, kap_f, kap_b = _exact(case, rounded, upstream)
        ours = _gradaudit_rows(case, dt, rounded, upstream, ref_f, ref_b, kap_f, kap_b)
        if key is not None:
            memo[key] = (ref_f, ref_b, kap_f, kap_b, ours)
    return {"forward": _summary(outs, ref_f, kap_f, dt), "backward": _summary(grads, ref_b, kap_b, dt), **ours}


def _gradaudit_rows(case, dt, rounded, upstream, ref_f, ref_b, kap_f, kap_b) -> dict:
    """{"gradaudit_forward": …, "gradaudit_backward": …}: the op's stable formulation measured like the
    kernel (empty for a case without a gradaudit op)."""
    if not case.op:
        return {}
    rows = {}
    fwd = derive.get_op(case.op)
    bwd, bargs = _backward_args(fwd, rounded, upstream)
    for key, op, a, ref, kap in (("gradaudit_forward", fwd, rounded, ref_f, kap_f),
                                 ("gradaudit_backward", bwd, bargs, ref_b, kap_b)):
        name = op.stable_formulation.name
        with np.errstate(all="ignore"):
            got = as_tuple(evaluate(op.name, *a, dtype=dt, formulation=name))
        rows[key] = {**_summary(got, ref, kap, dt), "formulation": name}
    return rows


def _memo_key(case, dt, rounded, upstream):
    """Hashable key of everything a registered op's exact values and gradaudit rows depend on, or None
    for a case whose κ comes from its own kernel (``op`` empty: not shared)."""
    if not case.op:
        return None

    def part(a):
        if isinstance(a, np.ndarray):
            return (a.dtype.str, a.shape, a.tobytes())
        return (type(a).__name__, repr(a))
    return (case.op, np.dtype(dt).name, tuple(part(a) for a in rounded), tuple(part(u) for u in upstream))


# ---------------------------------------------------------------- Markdown

def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    return f"{x:.3g}"


def _cell(s: dict) -> tuple[str, str, str]:
    if not s:
        return "—", "—", "—"
    if "dtype_out" in s:
        return f"returned {s['dtype_out']}", "—", "—"
    bad = f"{s['inf']}/{s['nan']}" + (f" ({s['flush']} flushed)" if s["flush"] else "")
    return _fmt(s["max_ulps"]), _fmt(s["over_kappa_u"]), bad


def frameworks_markdown(results: list, environment: dict) -> str:
    """The report from ``[(case, dtype, magnitude, row)]`` and ``environment`` (framework versions, device)."""
    lines = ["# Framework kernels against the certified reference", "",
             "Each framework kernel and its autograd backward pass, run on the same inputs in each dtype and "
             "compared element by element with the exact value for those inputs. Columns: worst error in ULPs "
             "of the dtype; worst relative error ÷ (max(κ, 1)·u) over elements whose exact value is a normal "
             "number (≈ 1 for a backward-stable kernel, ≫ 1 for an unstable one); inf/nan outputs. "
             "Beside it, gradaudit's stable formulation of the same op, measured the same way.", "",
             "Inputs: logits z = M·N(0, 1) of shape (4, 8) (integer class ids for cross-entropy); "
             "batch norm x = M + N(0, 1) of shape (16, 4), layer norm the same of shape (4, 16), "
             "γ, β ~ N(0, 1), ε = 1e-5; upstream gradients ~ N(0, 1) (1 for the scalar loss). "
             "M is the magnitude column; seed 0; one thread. A row \"not measured\" names the error that stopped it.", "",
             "## Environment", "", "| what | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in environment.items()]
    lines.append("")
    seen = []
    for case, _, _, _ in results:
        if case.label not in [c.label for c in seen]:
            seen.append(case)
    for case in seen:
        rows = [(dt, m, r) for c, dt, m, r in results if c.label == case.label]
        lines += [f"## `{case.label}`", ""]
        lines.append(f"gradaudit op: `{case.op}`." if case.op else f"Note: {case.note}.")
        lines.append("")
        for pass_name in ("forward", "backward"):
            lines += [f"**{pass_name}**" + (" (autograd)" if pass_name == "backward" else ""), "",
                      f"| dtype | {case.xname} | {case.framework} ULPs | {case.framework} err/κu | inf/nan "
                      "| gradaudit formulation | its ULPs | its err/κu | its inf/nan |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for dt, m, r in rows:
                if "error" in r:
                    lines.append(f"| {dt} | {_fmt(m)} | not measured: {r['error'].replace('|', '/')} | | | | | | |")
                    continue
                if r.get("unrepresentable"):
                    lines.append(f"| {dt} | {_fmt(m)} | inputs overflow {dt} | | | | | | |")
                    continue
                ours = r.get(f"gradaudit_{pass_name}", {})
                lines.append(f"| {dt} | {_fmt(m)} | {' | '.join(_cell(r[pass_name]))} | "
                             f"{('`' + ours['formulation'] + '`') if ours else '—'} | {' | '.join(_cell(ours))} |")
            lines.append("")
    return "\n".join(lines)


def _environment(frameworks, device) -> dict:
    env = {}
    if "torch" in frameworks:
        import torch
        env["torch"] = torch.__version__
        env["torch device"] = device
    if "jax" in frameworks:
        import jax
        env["jax"] = jax.__version__
        env["jax device"] = str(jax.devices()[0].platform)
        env["jax x64"] = "enabled" if jax.config.jax_enable_x64 else "disabled (float64 rows skipped)"
    return env


def _measure_all(cases, dtypes, magnitudes, seed, device, memo: dict | None = None) -> list:
    """[(case index, dtype name, magnitude, row)]; a case that raises gives {"error": …} (the report says
    "not measured" and why) instead of stopping ``gradaudit report``."""
    rows = []
    for i, case in enumerate(cases):
        for d in dtypes:
            dt = resolve_dtype(d, argument="dtypes")
            if case.framework == "jax" and dt == np.float64:
                import jax
                if not jax.config.jax_enable_x64:
                    continue
            for m in (magnitudes or case.magnitudes):
                try:
                    row = measure_case(case, dt, m, seed=seed, device=device, memo=memo)
                except Exception as exc:
                    row = {"error": f"{type(exc).__name__}: {exc}"}
                rows.append((i, dt.name, m, row))
    return rows


def _jax_rows(cases, entries, results, x64: bool, memo: dict | None = None) -> list:
    """[(case index, dtype name, magnitude, row)] from the child's results (float64 rows skipped when
    JAX's 64-bit mode is off, ``x64``); a kernel or reference that raised gives {"error": …}."""
    rows, done = [], iter(results)
    for i, dt, m, rounded in entries:
        result = next(done) if rounded is not None else None
        if dt == np.float64 and not x64:
            continue
        if rounded is None:
            rows.append((i, dt.name, m, {"unrepresentable": True}))
            continue
        if result[0] == "error":
            rows.append((i, dt.name, m, {"error": result[1]}))
            continue
        try:
            row = _measured_row(cases[i], dt, rounded, *result[1:], memo)
        except Exception as exc:
            row = {"error": f"{type(exc).__name__}: {exc}"}
        rows.append((i, dt.name, m, row))
    return rows


def write_frameworks_report(out, *, dtypes=tuple(DTYPES), seed: int = 0, cases=None, magnitudes=None):
    """Write ``out/frameworks.md`` when torch (or JAX) is importable; returns its path, or None when
    neither is.  ``cases``/``magnitudes`` narrow the run (tests; given cases run in this process).
    :func:`start_frameworks_report`, :meth:`FrameworksRun.measure`, :meth:`FrameworksRun.finish`."""
    run = start_frameworks_report(out, dtypes=dtypes, seed=seed, cases=cases, magnitudes=magnitudes)
    if run is None:
        return None
    with run:
        run.measure()
        return run.finish()


def start_frameworks_report(out, *, dtypes=tuple(DTYPES), seed: int = 0, cases=None, magnitudes=None,
                            started=None):
    """Start a frameworks report: a :class:`FrameworksRun` (or None when neither torch nor JAX is
    importable) whose :meth:`~FrameworksRun.measure` measures this process's kernels (torch's) and
    :meth:`~FrameworksRun.finish` writes ``out/frameworks.md``.

    By default JAX's kernels run in a *spawned* child process (JAX starts threads when imported, and
    ``gradaudit report`` or a test suite may fork worker processes afterwards; a spawned child shares
    nothing with them), started by :func:`numeric.frameworks_start.start`.  The child imports only
    numpy and JAX (:mod:`numeric.frameworks_jax`), runs on its own about 2.5 CPU-s (JAX's eager kernels
    compile per primitive and dtype), and keeps what it compiles in ``<cache>/jax`` (JAX's persistent
    compilation cache, :func:`~numeric.frameworks_start.compile_cache`) once the gradaudit cache directory
    has shown it persists.  So a caller starts it as early as it can, measures torch here while it runs,
    and collects it with ``finish`` when it has nothing else to do (exact values, κ and metrics of its
    outputs are computed then, here).  A default run whose report is in the disk cache
    (:func:`~numeric.frameworks_start.cached_text`) starts no child and imports neither framework.

    ``started``: what ``frameworks_start.start`` began earlier (``gradaudit report`` calls it before
    importing ``numeric.report``, so the child runs during those imports).  When it is this default
    run's start (same dtypes, seed and magnitudes) its cache lookup and its child become this run's;
    otherwise it is closed and a new start made.  ``cases`` given: they all run in this process, uncached."""
    path = Path(out) / "frameworks.md"
    if cases is not None:
        return FrameworksRun(path, None, cases, (dtypes, magnitudes, seed)) if cases else None
    if started is not None and not started.matches(dtypes, seed, magnitudes):
        started.close()
        started = None
    if started is None:
        started = _start(dtypes, seed, magnitudes)
        if started is None:
            return None
    run = FrameworksRun(path, started.cached, None, (dtypes, magnitudes, seed))
    run.text = started.cached[1]
    run.adopt(started)
    return run


class FrameworksRun:
    """A frameworks report under way (:func:`start_frameworks_report`), JAX's child (if any) running.
    :meth:`measure` measures this process's kernels, :meth:`finish` waits for the child and writes the
    report; :meth:`close` (or leaving a ``with`` block) stops the child if it still runs.  ``cases``:
    the kernels to run here, None for torch's (:func:`torch_cases`, when torch is installed)."""

    def __init__(self, path: Path, cached, cases, plan):
        self.path, self.cached, self.text = path, cached, None
        self._cases, self._plan = cases, plan       # plan: (dtypes, magnitudes, seed)
        self.results, self.environment = None, {}
        self._child = self._results_pipe = None
        self._jax_entries = None     # the child's entries (frameworks_start.jax_tasks) while it runs
        self._memo = {}              # exact values by op and input bytes, shared by torch's and JAX's rows

    def adopt(self, started) -> None:
        """Take over the JAX child (if any) of ``started`` (:class:`numeric.frameworks_start.Started`): from
        now on this run collects and stops it."""
        self._child, self._results_pipe, self._jax_entries = started.take_child()

    def measure(self) -> None:
        """Measure this process's kernels (torch limited to one thread meanwhile); once."""
        if self.text is not None or self.results is not None:
            return
        dtypes, magnitudes, seed = self._plan
        cases = self._cases
        if cases is None:
            cases = torch_cases() if torch_tensors.available() else []
        frameworks = sorted({c.framework for c in cases})
        device, threads = "cpu", None
        if "torch" in frameworks:
            import torch
            device = torch_tensors.default_device()
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
        try:
            indexed = _measure_all(cases, dtypes, magnitudes, seed, device, self._memo)
        finally:
            if threads is not None:
                torch.set_num_threads(threads)
        self.results = [(cases[i], d, m, row) for i, d, m, row in indexed]
        self.environment = _environment(frameworks, device)

    def finish(self) -> Path:
        """Measure here if not done yet, collect the child's results, write the report (and its cache
        entry); returns its path."""
        from derive.atomic import write_text
        if self.text is None:
            self.measure()
            results, environment = list(self.results), dict(self.environment)
            if self._child is not None:
                jax_results, jax_env = self._jax_results()
                self.close()
                x64 = jax_env["jax x64"] == "enabled"
                jcases = jax_cases()            # JAX_KERNELS' order, as the child's entries
                results += [(jcases[i], d, m, row)
                            for i, d, m, row in _jax_rows(jcases, self._jax_entries, jax_results, x64, self._memo)]
                environment.update(jax_env)
            self.text = frameworks_markdown(results, environment) + "\n"
            if self.cached is not None:
                derive.cache.store(self.cached[0], "frameworks report", self.cached[2], self.text.encode("utf-8"))
        write_text(self.path, self.text)
        return self.path

    def _jax_results(self) -> tuple[list, dict]:
        """What the JAX child sent (:func:`frameworks_jax.child_main`); its error, or its death, raised here."""
        try:
            outcome, value = self._results_pipe.recv()
        except EOFError:
            self._child.join()
            raise RuntimeError(f"the JAX child process died (exit code {self._child.exitcode}) before "
                               f"sending its results") from None
        if outcome != "ok":
            raise RuntimeError(f"the JAX child process failed: {value}")
        return value

    def close(self) -> None:
        """Stop the JAX child if it still runs (nothing to do once its results are in)."""
        if self._child is not None:
            stop_child(self._child, self._results_pipe)
            self._child = self._results_pipe = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
