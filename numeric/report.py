"""``gradaudit report``: one Markdown report per op family, plus ``index.md`` and PNG figures.

Everything in a report is computed here, from a seed: derivations and proofs (``derive``), sweeps of
every formulation × dtype against the certified reference, thresholds by bisection, the batch-norm ε
study.  No timestamps and no timings go into the files, so the same seed gives the same bytes.
Sweep points are cached on disk (keyed by the source code of ``derive``/``numeric`` and the point), and
``jobs > 1`` spreads them over processes.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from derive import get_op, prove_op
from derive.proof import cache_dir

from derive.atomic import write_text
from .derivation_md import derivation_markdown
from .dtypes import DTYPES, finfo, resolve_dtype
from .figures import error_curves
from .sweep import sample_inputs, sweep_point
from .thresholds import Threshold, find_thresholds
from .tutorial_audit import audit

__all__ = ["FAMILIES", "ReportConfig", "write_reports", "source_digest"]

#: Report name → the ops it covers, in order.
FAMILIES = {
    "softmax": ("softmax", "softmax_jacobian", "softmax_backward"),
    "cross_entropy": ("cross_entropy", "cross_entropy_backward"),
    "batchnorm": ("batchnorm", "batchnorm_backward"),
}
LOGIT_MAGNITUDES = tuple(float(m) for m in np.geomspace(1, 1e4, 17))
MEAN_OVER_STD = tuple(float(m) for m in np.geomspace(1, 1e6, 13))
VARIANCES = tuple(float(v) for v in np.geomspace(1e-8, 1e2, 11))
EPS_STUDY = (1e-5, 1e-3)


@dataclass(frozen=True)
class ReportConfig:
    out: Path
    dtypes: tuple = tuple(DTYPES)
    seed: int = 0
    jobs: int = 1
    progress: bool = False


def source_digest() -> str:
    """SHA-256 over the source files of ``derive`` and ``numeric``: what the reports depend on."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for package in ("derive", "numeric"):
        for path in sorted((root / package).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


# ---------------------------------------------------------------- sweep points (cached, parallel)

def _point_task(task: tuple) -> list[dict]:
    """One (op, magnitude, dtype, seed, sample kwargs) sweep point → summaries of every formulation."""
    op, magnitude, dtype, seed, sample = task
    args = sample_inputs(op, magnitude, seed, **dict(sample))
    return sweep_point(op, args, dtype)


def _cache_path(task: tuple, digest: str) -> Path:
    key = hashlib.sha256((digest + json.dumps(task, sort_keys=True)).encode()).hexdigest()[:32]
    return cache_dir() / "sweeps" / f"{key}.json"


class _Progress:
    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.enabled = total, 0, enabled

    def step(self, n: int = 1):
        self.done += n
        if self.enabled:
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} sweep points")
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def _run_tasks(tasks: list[tuple], config: ReportConfig) -> dict:
    digest = source_digest()
    results, todo = {}, []
    for task in tasks:
        path = _cache_path(task, digest)
        if path.exists():
            results[task] = json.loads(path.read_text())
        else:
            todo.append(task)
    progress = _Progress(len(tasks), config.progress)
    progress.step(len(tasks) - len(todo))
    if config.jobs > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=config.jobs) as pool:
            for task, value in zip(todo, pool.map(_point_task, todo, chunksize=4)):
                results[task] = value
                progress.step()
    else:
        for task in todo:
            results[task] = _point_task(task)
            progress.step()
    for task in todo:
        write_text(_cache_path(task, digest), json.dumps(results[task]))
    return results


def _series(results: dict, tasks: list[tuple], label=lambda task, f: f, x=lambda task: task[1]) -> dict:
    """{label: {dtype: [(x, summary)]}} from task results, in task order."""
    out: dict = {}
    for task in tasks:
        dtype = task[2]
        for row in results[task]:
            out.setdefault(label(task, row["formulation"]), {}).setdefault(dtype, []).append((x(task), row["summary"]))
    return out


# ---------------------------------------------------------------- formatting

_COLUMNS = ("Table columns: ULPs and bits over the finite, not wrongly zeroed elements (median: the median over the "
            "sweep of each input's median; max: the worst); % inf/nan and % wrongly 0 (a 0 where the exact value "
            "rounds to a non-zero float: underflow, or cancellation such as 1 − s when s rounds to 1) averaged "
            "over the sweep; κ the componentwise condition number; the last column the worst relative error "
            "÷ κ·u over elements whose exact value is a normal float of the dtype.")

def _g(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if math.isinf(x):
        return "∞"
    return f"{x:.{digits}g}"


def _ulps(x: float) -> str:
    """ULP counts: two decimals below 100 (so 1e-52 ULPs of an exactly rounded underflow reads 0.00)."""
    return f"{x:.2f}" if not math.isnan(x) and x < 100 else _g(x)


def _error_table(series: dict, dtypes) -> list[str]:
    lines = ["| formulation | dtype | median ULPs | max ULPs | max bits of error | % inf/nan | % wrongly 0 | κ range | max error ÷ κu |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, by_dtype in series.items():
        for dtype in dtypes:
            pts = [s for _, s in by_dtype.get(dtype, [])]
            if not pts:
                continue
            med = [s["median_ulps"] for s in pts if not math.isnan(s["median_ulps"])]
            mx = [s["max_ulps"] for s in pts if not math.isnan(s["max_ulps"])]
            judged = [s["max_rel_over_kappa_u"] for s in pts if not math.isnan(s["max_rel_over_kappa_u"])]
            kmin = min((s["kappa_min"] for s in pts if not math.isnan(s["kappa_min"])), default=math.nan)
            kmax = max((s["kappa_max"] for s in pts if not math.isnan(s["kappa_max"])), default=math.nan)
            pct = sum(s["pct_nonfinite"] for s in pts) / len(pts)
            flushed = sum(s.get("pct_flush", 0.0) for s in pts) / len(pts)
            lines.append(f"| `{label}` | {dtype} | {_ulps(float(np.median(med)) if med else math.nan)} | "
                         f"{_ulps(max(mx) if mx else math.nan)} | {_g(math.log2(1 + max(mx)) if mx else math.nan)} | "
                         f"{_g(pct)} | {_g(flushed)} | {_g(kmin)} – {_g(kmax)} | {_g(max(judged) if judged else math.nan)} |")
    return lines


def _cell(text: str) -> str:
    """Table-cell text: a literal | would end the cell."""
    return text.replace("|", "\\|")


def _threshold_table(thresholds: list[Threshold]) -> list[str]:
    """Found pairs are printed exactly (shortest repr of the float), so adjacent grid points differ."""
    lines = ["| threshold | dtype | last good | first bad | analytic | formula | agrees |", "|---|---|---|---|---|---|---|"]
    for t in thresholds:
        good, bad = (repr(float(v)) for v in t.found) if t.found else ("—", "—")
        lines.append(f"| {_cell(t.name)} | {t.dtype} | {good} | {bad} | {t.analytic:.10g} | {_cell(t.formula)} | "
                     f"{'yes' if t.agrees else 'NO'} |")
    return lines


def _tutorial_section(family: str) -> list[str]:
    """The tutorial's worked examples of this family beside the certified values."""
    rows = audit(family)
    if not rows:
        return []
    wrong = sum(not all(r["agrees"]) for r in rows)
    lines = ["## The tutorial's worked examples, checked", "",
             f"Numbers printed in `shared/reference/tutorial-batchnorm-softmax.md`, against the certified values "
             f"(a printed number agrees when it is within one unit of its last digit). {len(rows)} examples, "
             f"{wrong} with wrong numbers.", "",
             "| line | example | tutorial | certified | verdict |", "|---|---|---|---|---|"]
    for r in rows:
        c = r["claim"]
        shown = ", ".join(f"{v:.{c.decimals}f}" for v in c.claimed)
        exact = ", ".join(f"{v:.{c.decimals + 2}f}" for v in r["exact"])
        verdict = "agrees" if all(r["agrees"]) else "**wrong** (" + ", ".join(
            f"{v:.{c.decimals}f}" for v, ok in zip(c.claimed, r["agrees"]) if not ok) + ")"
        lines.append(f"| {c.line} | {_cell(c.what)} | {shown} | {exact} | {verdict} |")
    return lines + [""]


def _error_section(heading: str, series: dict, config: ReportConfig, *, figure: str, xlabel: str, title: str,
                   vlines: dict, caption: str) -> list[str]:
    """An op's error table, then its figure (drawn into ``figures/``) with the caption under it."""
    error_curves(series, config.dtypes, xlabel=xlabel, title=title, path=config.out / "figures" / figure,
                 vlines=vlines)
    return [heading, "", *_error_table(series, config.dtypes), "",
            f"![{caption.split('.')[0]}](figures/{figure})", "", f"*{caption}*", ""]


def _derivations(family: str) -> list[str]:
    out = []
    for op_name in FAMILIES[family]:
        out += [derivation_markdown(get_op(op_name), _proof(op_name)), ""]
    return out


# ---------------------------------------------------------------- the three reports

def _logit_report(family: str, config: ReportConfig, thresholds: list[Threshold]) -> str:
    dtypes = config.dtypes
    tasks = [(op, m, d, config.seed, ()) for op in FAMILIES[family] for m in LOGIT_MAGNITUDES for d in dtypes]
    results = _run_tasks(tasks, config)
    title = {"softmax": "Softmax, its Jacobian and its vector–Jacobian product",
             "cross_entropy": "Cross-entropy and its gradient ŷ − y"}[family]
    second = {"softmax": "the upstream gradient of the vector–Jacobian product is dy ~ N(0, 1)",
              "cross_entropy": "labels are soft rows summing to 1"}[family]
    lines = [f"# {title}", "",
             f"Generated by `gradaudit report` (seed {config.seed}). Inputs: z = M·u with u ~ N(0, 1) of shape "
             f"(4, 8), M from 1 to 1e4 ({len(LOGIT_MAGNITUDES)} magnitudes); {second}. Every error is measured "
             "in ULPs of the dtype against the certified reference (≥ 83 correct bits), on the inputs rounded "
             "to that dtype. " + _COLUMNS, ""]
    lines += _derivations(family)
    lines += ["## Floating-point error", ""]
    vlines = {t.dtype: [(t.analytic, "ln(max)")] for t in thresholds if t.name.startswith("naive softmax")}
    for op in FAMILIES[family]:
        series = _series(results, [t for t in tasks if t[0] == op])
        lines += _error_section(
            f"### `{op}`", series, config, figure=f"{op}_error_vs_logit.png", xlabel="logit magnitude M",
            title=f"{op}: error vs logit magnitude", vlines=vlines, caption=f"{op}: bits of error (log2(1 + max ULPs)) against logit magnitude, one panel per "
                              "dtype. × marks magnitudes where the formulation returned inf/nan (drawn on the "
                              "all-bits-lost line); dotted lines are ln(max) of the dtype. What to see: the naive "
                              "formulation stops at its overflow threshold while the shifted / log-sum-exp ones stay "
                              "finite. Read the rise of the curves with M against the table's last column: error ÷ κu "
                              "near 1 is the conditioning of exp (κ grows like M) that costs every algorithm; far "
                              "above 1 the formulation itself loses accuracy.")
    prefix = "naive softmax" if family == "softmax" else "naive cross-entropy"
    lines += ["## Thresholds", "",
              "Found by bisection on each dtype's own grid (adjacent floats: the last input that works and the "
              "first that does not), beside the analytic value.", "",
              *_threshold_table([t for t in thresholds if t.name.startswith(prefix)]), ""]
    lines += _tutorial_section(family)
    return "\n".join(lines)


def _batchnorm_report(config: ReportConfig, thresholds: list[Threshold]) -> str:
    dtypes = config.dtypes
    ratio_tasks = [(op, m, d, config.seed, ()) for op in FAMILIES["batchnorm"] for m in MEAN_OVER_STD for d in dtypes]
    eps_tasks = [(op, 1.0, d, config.seed, (("eps", eps), ("variance", v)))
                 for op in FAMILIES["batchnorm"] for eps in EPS_STUDY for v in VARIANCES for d in dtypes]
    results = _run_tasks(ratio_tasks + eps_tasks, config)
    lines = ["# Batch normalization and its backward pass", "",
             f"Generated by `gradaudit report` (seed {config.seed}). Inputs: x = M + u with u ~ N(0, 1) of shape "
             f"(16, 4), so M is the mean/std ratio (1 to 1e6, {len(MEAN_OVER_STD)} values); γ, β, dy ~ N(0, 1); "
             "ε = 1e-5 unless stated. Errors are in ULPs of the dtype against the certified reference. " + _COLUMNS, ""]
    lines += _derivations("batchnorm")
    lines += ["## Floating-point error against the mean/std ratio", ""]
    one_pass = {t.dtype: [(t.found[1], "one-pass breaks")] for t in thresholds
                if t.name.startswith("one-pass") and t.found}
    for op in FAMILIES["batchnorm"]:
        series = _series(results, [t for t in ratio_tasks if t[0] == op])
        lines += _error_section(
            f"### `{op}`", series, config, figure=f"{op}_error_vs_mean_over_std.png", xlabel="mean / std",
            title=f"{op}: error vs mean/std", vlines=one_pass, caption=f"{op}: bits of error against the mean/std ratio of each feature, one panel per dtype. "
                              "What to see: the one-pass variance E[x²] − E[x]² loses about 2·log2(mean/std) bits "
                              "and returns inf/nan (×) once the dotted threshold is passed, while the two-pass "
                              "(compact, staged) formulations lose only the log2(mean/std) bits that the "
                              "conditioning of x − μ costs any algorithm.")
    lines += ["## Thresholds", "", *_threshold_table([t for t in thresholds if t.name.startswith("one-pass")]), "",
              "Reading the tables: the last column divides each relative error by κ·u (elements whose exact value "
              "is a normal number of the dtype). The two-pass formulations stay within a small multiple of 1 "
              "— they lose only what conditioning costs any algorithm — while the one-pass variance is off by "
              "orders of magnitude.", ""]
    lines += _eps_section(results, eps_tasks, thresholds, config)
    lines += _tutorial_section("batchnorm")
    return "\n".join(lines)


def _eps_section(results, eps_tasks, thresholds, config) -> list[str]:
    dtypes = config.dtypes
    lines = ["## The ε study", "",
             "Where ε stops mattering (ε below half an ulp of the variance, so var + ε == var) and where it "
             "dominates (var < ε: x̂ is shrunk towards 0, |x̂| < 1/√2), found by bisection:", "",
             *_threshold_table([t for t in thresholds if t.name.startswith("ε =")]), ""]
    for op in FAMILIES["batchnorm"]:
        tasks = [t for t in eps_tasks if t[0] == op]
        series = _series(results, tasks, label=lambda task, f: f"{f} eps={dict(task[4])['eps']:.0e}",
                         x=lambda task: dict(task[4])["variance"])
        vl = {d: [(float(np.asarray(e, dtype=resolve_dtype(d))), f"ε={e:g}") for e in EPS_STUDY] for d in dtypes}
        lines += _error_section(
            f"### `{op}` against the variance (mean 1)", series, config, figure=f"{op}_error_vs_variance.png",
            xlabel="variance of the feature", title=f"{op}: error vs variance, ε = 1e-5 / 1e-3", vlines=vl,
            caption=f"{op}: bits of error against the feature variance (mean 1) for ε = 1e-5 (solid) and "
                              "ε = 1e-3 (dashed), one colour per formulation and one panel per dtype; dotted lines "
                              "mark the two ε values, × marks inf/nan, the grey line the dtype's precision. What to see: "
                              "the one-pass variance loses bits as the variance shrinks against the mean, and in "
                              "float16 the staged chain turns to inf/nan below the variance where rstd³ overflows — "
                              "both only with ε = 1e-5.")
    lines += _float16_verdict(results, eps_tasks, thresholds)
    return lines


def _float16_verdict(results, eps_tasks, thresholds) -> list[str]:
    """Confirm or refute "float16 needs ε = 1e-3", formulation by formulation, from the measured numbers."""
    if "float16" not in {t[2] for t in eps_tasks}:
        return []
    stats: dict = {}
    for task in eps_tasks:
        op, _, dtype, _, sample = task
        if dtype != "float16":
            continue
        eps = dict(sample)["eps"]
        for row in results[task]:
            s = row["summary"]
            pct, judged = stats.get((op, row["formulation"], eps), (0.0, 0.0))
            stats[(op, row["formulation"], eps)] = (max(pct, s["pct_nonfinite"]),
                                                    max(judged, np.nan_to_num(s["max_rel_over_kappa_u"])))
    lines = ["### Does float16 need ε = 1e-3?", "",
             "The tutorial recommends ε = 1e-3 for FP16 training. Measured on the variance sweep above "
             "(variance 1e-8 … 1e2, mean 1), float16, per formulation:", "",
             "| op | formulation | max % inf/nan, ε = 1e-5 | max % inf/nan, ε = 1e-3 | max error ÷ κu, ε = 1e-5 | max error ÷ κu, ε = 1e-3 |",
             "|---|---|---|---|---|---|"]
    needs, fine = [], []
    for op in FAMILIES["batchnorm"]:
        for form in get_op(op).formulations:
            small, large = stats.get((op, form, 1e-5)), stats.get((op, form, 1e-3))
            if small is None or large is None:
                continue
            lines.append(f"| `{op}` | `{form}` | {_g(small[0])} | {_g(large[0])} | {_g(small[1])} | {_g(large[1])} |")
            (needs if small[0] > 0 and large[0] < small[0] else fine).append(f"`{op}`/`{form}`")
    eps16 = float(np.asarray(1e-5, dtype=np.float16))
    lines += ["", f"ε = 1e-5 is subnormal in float16 (smallest normal {float(finfo('float16').smallest_normal):.3g}) "
                  f"and is stored as {eps16:.6g} ({abs(eps16 - 1e-5) / 1e-5 * 100:.2g} % off) — harmless in itself.", ""]
    staged = [t for t in thresholds if t.dtype == "float16" and "rstd³" in t.name and t.found]
    verdict = ("**Not a property of float16, but of some formulations.** " if fine and needs else
               "**Confirmed.** " if needs else "**Refuted.** ")
    if fine:
        verdict += f"With ε = 1e-5, {', '.join(fine)} return no more inf/nan than with 1e-3 anywhere on the sweep. "
    if needs:
        verdict += f"{', '.join(needs)} do return inf/nan with ε = 1e-5 and fewer or none with 1e-3"
        if staged:
            t = staged[0]
            verdict += (f" — for the paper's staged chain because (σ² + ε)^(−3/2) overflows 65504 once the "
                        f"variance drops below {t.found[1]:.3g} (bisection; analytic 65504^(−2/3) − ε = "
                        f"{t.analytic:.3g}), which ε = 1e-3 rules out")
        verdict += ". "
    verdict += ("So ε = 1e-3 is a workaround for those formulations (use the compact backward instead), and it "
                "has a price: every feature with variance below 1e-3 is normalized to |x̂| < 1/√2.")
    return lines + [verdict, ""]


# ---------------------------------------------------------------- driver

def _index(config: ReportConfig, families, thresholds) -> str:
    lines = ["# gradaudit reports", "",
             f"Generated by `gradaudit report` with seed {config.seed} for dtypes {', '.join(config.dtypes)}. "
             "Regenerate with `gradaudit report`; the same seed gives the same bytes.", "",
             "| report | ops | proofs |", "|---|---|---|"]
    for family in families:
        proofs = [_proof(op) for op in FAMILIES[family]]
        status = "all proved" if all(p.proved for p in proofs) else "SOME FAILED"
        lines.append(f"| [{family}]({family}.md) | {', '.join(f'`{o}`' for o in FAMILIES[family])} | {status} |")
    checked = audit()
    wrong = [r["claim"] for r in checked if not all(r["agrees"])]
    lines += ["", f"The tutorial's worked examples: {len(checked)} checked against certified values, {len(wrong)} wrong "
                  f"({'; '.join(f'line {c.line}: {c.what}' for c in wrong)}). Details at the end of each report.", ""]
    lines += ["## Thresholds at a glance", "", *_threshold_table(thresholds), ""]
    return "\n".join(lines)


@lru_cache(maxsize=None)
def _proof(op_name: str):
    """The proof result of an op (from the disk cache once :func:`_prove_all` has filled it)."""
    return prove_op(get_op(op_name))


def _prove_in_child(op_name: str) -> None:
    prove_op(get_op(op_name))


def _prove_all(op_names, jobs: int) -> None:
    """Fill the proof cache, ``jobs`` processes at a time; every later use reads it once via :func:`_proof`."""
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(_prove_in_child, op_names))
    for name in op_names:
        _proof(name)


def write_reports(families, config: ReportConfig) -> list[Path]:
    """Write the reports of ``families`` (names of :data:`FAMILIES`) and ``index.md`` under ``config.out``."""
    for family in families:
        if family not in FAMILIES:
            raise ValueError(f"report must be one of {', '.join(FAMILIES)}; got {family!r}")
    for d in config.dtypes:
        resolve_dtype(d, argument="dtypes")
    _prove_all([op for family in families for op in FAMILIES[family]], config.jobs)
    thresholds = find_thresholds(config.dtypes)
    written = []
    for family in families:
        text = (_batchnorm_report(config, thresholds) if family == "batchnorm"
                else _logit_report(family, config, thresholds))
        path = config.out / f"{family}.md"
        write_text(path, text)
        written.append(path)
    index = config.out / "index.md"
    write_text(index, _index(config, families, thresholds))
    manifest = config.out / "manifest.json"
    write_text(manifest, json.dumps({"source_digest": source_digest(), "seed": config.seed,
                                     "dtypes": list(config.dtypes), "families": list(families)}, indent=1) + "\n")
    return written + [index, manifest]
