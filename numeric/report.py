"""``gradaudit report``: one Markdown report per op family, plus ``index.md`` and SVG figures.

Everything in a report is computed here, from a seed: derivations and proofs (``derive``), sweeps of
every formulation × dtype against the certified reference, thresholds by bisection, the batch-norm ε
study.  No timestamps and no timings go into the files, so the same seed gives the same bytes.
Proofs, sweep points, thresholds and figures are cached on disk (keyed by what made them).

How a run goes (:func:`_write_set`): JAX's kernels start in a child process (``frameworks.md``; ``gradaudit
report`` starts it before importing this module); everything not in the cache is cut into tasks
(:func:`_plan`: one proof task per op with its convention instances, largest first; the tutorial audit;
the generic thresholds of each op; sweep points in groups of one op and dtype); what every local worker
would build again (kernels, matplotlib) is built here before they fork (:func:`_prepare_workers`); the
tasks are handed at once to the executor (``jobs`` local processes, or the ``GRADAUDIT_SCHEDULER`` Dask
cluster, or this process); meanwhile this process finds the hand-written thresholds and measures torch.
Results are filed here (:func:`_keep`: disk cache, read back through JSON), the Markdown is rendered in a
fixed order, and the figures missing from the cache are drawn by the workers last.  So the bytes do not
depend on ``jobs`` or on what was cached.
"""
from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from derive import cache, get_op, prove_op
from derive.proof import ProofResult, cached_proof, proof_data, store_proof
from derive import families as derive_families
from derive.registry import parametric_spec
from derive.cache import cache_dir

from derive.atomic import write_bytes, write_text
from .derivation_md import derivation_markdown
from .digest import source_digest
from .dtypes import DTYPES, finfo, resolve_dtype
from .figures import cached_svg, draw_svg, figure_job, store_svg
from .frameworks_report import FRAMEWORKS_INDEX_LINE, start_frameworks_report
from .report_set import replaced_as_a_whole, set_files
from .sweep import SUMMARY_KEYS, sample_inputs, sweep_point
from .thresholds import Threshold, find_thresholds, op_thresholds
from .docaudit import audit_document, render_markdown, summary_line

__all__ = ["FAMILIES", "ReportConfig", "write_reports", "source_digest"]

class _Families(Mapping):
    """Report name → the ops it covers, in order: every family of the registry (``derive.families()``),
    read at each use, so ops registered later (``--ops FILE.py``, :func:`derive.load_ops`) get a report."""

    def __getitem__(self, family):
        return derive_families()[family]

    def __iter__(self):
        return iter(derive_families())

    def __len__(self):
        return len(derive_families())

    def __repr__(self):
        return f"FAMILIES({dict(self)!r})"


FAMILIES = _Families()
#: Families with a hand-written report; every other family gets :func:`_generic_report`.
HANDWRITTEN = ("softmax", "cross_entropy", "batchnorm")
#: The batch-norm ops swept against mean/std and variance (the others of the family are proved and listed).
BATCHNORM_SWEPT = ("batchnorm", "batchnorm_backward")
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
    #: What ``numeric.frameworks_start.start`` began before this run (JAX's child, started by ``gradaudit
    #: report`` before it imports this module): adopted by the frameworks report when its dtypes and seed
    #: are this run's, else closed.  The caller closes it too (a no-op once adopted).
    frameworks_started: object = None


def _run_digest() -> str:
    """:func:`source_digest`, read once per report run (the sources a run reports on are those at its
    start; reading and hashing them for every one of ~1,200 cached sweep points took ~3 s)."""
    return _RUN.get("digest") or source_digest()


# ---------------------------------------------------------------- sweep points (cached, parallel)

def _point_task(task: tuple) -> list[dict]:
    """One (op, magnitude, dtype, seed, sample kwargs) sweep point → summaries of every formulation."""
    from .reference import ReferenceNotCertified

    op, magnitude, dtype, seed, sample = task
    args = sample_inputs(op, magnitude, seed, **dict(sample))
    try:
        return sweep_point(op, args, dtype)
    except ReferenceNotCertified as exc:          # left out of the tables, named in the report
        return {"not_certified": str(exc)}


def _cache_path(task: tuple, digest: str) -> Path:
    key = cache.inputs_digest("sweep point", _cache_inputs(task, digest))[:32]
    return cache_dir() / "sweeps" / f"{key}.json"


def _cache_inputs(task: tuple, digest: str) -> str:
    return digest + json.dumps(task, sort_keys=True)


def _valid_sweep(task: tuple):
    """A cached sweep point must hold one summary per formulation of the task's op, in order."""
    names = list(get_op(task[0]).formulations)

    def validate(payload: bytes) -> bool:
        rows = json.loads(payload)
        if isinstance(rows, dict):
            return set(rows) == {"not_certified"}
        return ([r["formulation"] for r in rows] == names
                and all(isinstance(r["summary"], dict) and SUMMARY_KEYS <= set(r["summary"]) for r in rows))
    return validate


class _Progress:
    def __init__(self, total: int, enabled: bool, what: str = "sweep points"):
        self.total, self.done, self.enabled, self.what = total, 0, enabled and total > 0, what

    def step(self, n: int = 1):
        self.done += n
        if self.enabled:
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {self.what}")
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def _cached_points(tasks: list[tuple]) -> tuple[dict, list[tuple]]:
    """({task: result} of the sweep points already computed in this run or on disk, [tasks to compute])."""
    digest = _run_digest()
    results, todo = {}, []
    for task in tasks:
        if task in _RUN["points"]:
            results[task] = _RUN["points"][task]
            continue
        payload = cache.load(_cache_path(task, digest), "sweep point", _cache_inputs(task, digest),
                             validate=_valid_sweep(task))
        if payload is not None:
            results[task] = json.loads(payload)
        else:
            todo.append(task)
    return results, todo


def _keep_point(task: tuple, value) -> object:
    """Store a fresh sweep point on disk; returns it as read back from JSON (fresh and cached points are
    then the same values, so a report's bytes do not depend on where its points came from)."""
    digest = _run_digest()
    text = json.dumps(value)
    cache.store(_cache_path(task, digest), "sweep point", _cache_inputs(task, digest), text.encode("utf-8"))
    _RUN["points"][task] = value = json.loads(text)
    return value


def _run_tasks(tasks: list[tuple], config: ReportConfig) -> dict:
    """{task: summaries} of sweep points, from this run's results, the disk cache, or computed (``config.jobs``
    processes, or the ``GRADAUDIT_SCHEDULER`` Dask cluster)."""
    results, todo = _cached_points(tasks)
    progress = _Progress(len(tasks), config.progress)
    progress.step(len(tasks) - len(todo))
    from .executors import get_executor      # in process, --jobs local processes, or GRADAUDIT_SCHEDULER (Dask)

    with get_executor(None, config.jobs if len(todo) > 1 else 1) as executor:
        for i, value in executor.imap_unordered(_point_task, todo):
            results[todo[i]] = _keep_point(todo[i], value)
            progress.step()
    return {task: results[task] for task in tasks}


def _series(results: dict, tasks: list[tuple], label=lambda task, f: f, x=lambda task: task[1]) -> dict:
    """{label: {dtype: [(x, summary)]}} from task results, in task order."""
    out: dict = {}
    for task in tasks:
        dtype = task[2]
        if isinstance(results[task], dict):       # the reference could not be certified there
            continue
        for row in results[task]:
            out.setdefault(label(task, row["formulation"]), {}).setdefault(dtype, []).append((x(task), row["summary"]))
    return out


# ---------------------------------------------------------------- formatting

_COLUMNS = ("Table columns: % inputs not representable counts the sweep points whose inputs overflow the dtype "
            "(nothing is measured there; every other column is over the remaining points). ULPs and bits over the "
            "finite, not wrongly zeroed elements whose exact value is not 0 (median: the median over the sweep of "
            "each input's median; max: the worst); % inf/nan and % wrongly 0 (a 0 where the exact value rounds to a "
            "non-zero float: underflow, or cancellation such as 1 − s when s rounds to 1) averaged over the "
            "measured points; where the exact value is 0 ULPs are undefined, so the largest absolute error there "
            "is given in units of the dtype's smallest normal number; κ the componentwise condition number; the "
            "last column the worst relative error ÷ κ·u over elements whose exact value is a normal float of the "
            "dtype: near 1 is what the conditioning costs any algorithm, far above 1 the formulation itself loses "
            "accuracy.")

#: A formulation whose worst error ÷ κu stays at or below this is called stable in the findings.
STABLE_FACTOR = 10.0

def _g(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if math.isinf(x):
        return "∞"
    return f"{x:.{digits}g}"


def _ulps(x: float) -> str:
    """ULP counts: two decimals below 100 (so 1e-52 ULPs of an exactly rounded underflow reads 0.00)."""
    return f"{x:.2f}" if not math.isnan(x) and x < 100 else _g(x)


def _measured(points: list) -> list:
    """The (x, summary) points whose inputs are representable in the dtype (the others measure nothing)."""
    return [(x, s) for x, s in points if not s.get("input_overflow")]


def _finite(values) -> list[float]:
    return [v for v in values if not math.isnan(v)]


def _error_table(series: dict, dtypes) -> list[str]:
    lines = ["| formulation | dtype | % inputs not representable | median ULPs | max ULPs | max bits of error | "
             "% inf/nan | % wrongly 0 | max \\|error\\| at exact 0 (÷ smallest normal) | κ range | max error ÷ κu |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, by_dtype in series.items():
        for dtype in dtypes:
            every = by_dtype.get(dtype, [])
            if not every:
                continue
            pts = [s for _, s in _measured(every)]
            unrepresentable = 100.0 * (len(every) - len(pts)) / len(every)
            med = _finite(s["median_ulps"] for s in pts)
            mx = _finite(s["max_ulps"] for s in pts)
            judged = _finite(s["max_rel_over_kappa_u"] for s in pts)
            at_zero = _finite(s["max_abs_at_zero"] for s in pts)
            kmin = min(_finite(s["kappa_min"] for s in pts), default=math.nan)
            kmax = max(_finite(s["kappa_max"] for s in pts), default=math.nan)
            pct = sum(s["pct_nonfinite"] for s in pts) / len(pts) if pts else math.nan
            flushed = sum(s["pct_flush"] for s in pts) / len(pts) if pts else math.nan
            lines.append(f"| `{label}` | {dtype} | {_g(unrepresentable)} | "
                         f"{_ulps(float(np.median(med)) if med else math.nan)} | "
                         f"{_ulps(max(mx) if mx else math.nan)} | {_g(math.log2(1 + max(mx)) if mx else math.nan)} | "
                         f"{_g(pct)} | {_g(flushed)} | {_g(max(at_zero) if at_zero else math.nan)} | "
                         f"{_g(kmin)} – {_g(kmax)} | {_g(max(judged) if judged else math.nan)} |")
    return lines


def _x_range(xs: list, fmt) -> str:
    return f"= {fmt(xs[0])}" if len(xs) == 1 else f"{fmt(min(xs))} … {fmt(max(xs))}"


def _names(labels) -> str:
    return ", ".join(f"`{label}`" for label in labels)


def _findings(series: dict, dtypes, *, xname: str, fmt=_g) -> str:
    """Sentences generated from ``series`` (the numbers of the table above): where inputs overflow, which
    formulations return inf/nan and where, and which stay within ``STABLE_FACTOR``·κu."""
    out = []
    overflow = {}
    for by_dtype in series.values():
        for dtype in dtypes:
            xs = [x for x, s in by_dtype.get(dtype, []) if s.get("input_overflow")]
            if xs:
                overflow[dtype] = xs
    if overflow:
        out.append("Inputs overflow " + "; ".join(f"{d} at {xname} {_x_range(xs, fmt)}"
                                                  for d, xs in overflow.items())
                   + " (not measured, counted in % inputs not representable).")
    clean, stable, unstable = [], [], []
    for label, by_dtype in series.items():
        bad, measured = [], 0
        worst = (math.nan, "")
        for dtype in dtypes:
            pts = _measured(by_dtype.get(dtype, []))
            measured += len(pts)
            xs = [x for x, s in pts if s["pct_nonfinite"] > 0]
            if xs:
                bad.append(f"{dtype} at {len(xs)} of {len(pts)} measured points ({xname} {_x_range(xs, fmt)})")
            for _, s in pts:
                r = s["max_rel_over_kappa_u"]
                if not math.isnan(r) and not r <= worst[0]:
                    worst = (r, dtype)
        if bad:
            out.append(f"`{label}` returns inf/nan in " + "; ".join(bad) + ".")
        elif measured:
            clean.append(label)
        if not math.isnan(worst[0]):
            (stable if worst[0] <= STABLE_FACTOR else unstable).append((label, worst))
    if clean:
        out.append(f"{_names(clean)} {'returns' if len(clean) == 1 else 'return'} no inf/nan at any measured point.")
    if stable:
        out.append(f"Within {STABLE_FACTOR:g}·κu in every dtype: " + ", ".join(
            f"`{label}` (worst {_g(r)}, {d})" for label, (r, d) in stable) + ".")
    if unstable:
        out.append(f"Beyond {STABLE_FACTOR:g}·κu: " + ", ".join(
            f"`{label}` (worst {_g(r)}, {d})" for label, (r, d) in unstable) + ".")
    return "**Measured.** " + " ".join(out) if out else ""


def _cell(text: str) -> str:
    """Table-cell text: a literal | would end the cell."""
    return text.replace("|", "\\|")


def _threshold_table(thresholds: list[Threshold]) -> list[str]:
    """Found pairs are printed exactly (shortest repr of the float), so adjacent grid points differ."""
    lines = ["| threshold | dtype | last good | first bad | analytic | formula | agrees |", "|---|---|---|---|---|---|---|"]
    for t in thresholds:
        good, bad = (repr(float(v)) for v in t.found) if t.found else ("—", "—")
        known = not math.isnan(t.analytic)
        lines.append(f"| {_cell(t.name)} | {t.dtype} | {good} | {bad} | {f'{t.analytic:.10g}' if known else '—'} | "
                     f"{_cell(t.formula)} | {('yes' if t.agrees else 'NO') if known else '—'} |")
    return lines


TUTORIAL = "shared/reference/tutorial-batchnorm-softmax.md"      # beside the repository


def _tutorial_audit():
    """``gradaudit audit`` of the tutorial (once per process, or handed in by a worker); None when the
    tutorial is not there."""
    if "audit" not in _DONE:
        _DONE["audit"] = _audit_tutorial()
    return _DONE["audit"]


def _audit_tutorial():
    path = Path(__file__).resolve().parent.parent.parent / TUTORIAL
    return audit_document(path, name=TUTORIAL) if path.is_file() else None


def _tutorial_section(family: str) -> list[str]:
    """The tutorial's claims decided by an op of this family, from the audit of the tutorial."""
    audit = _tutorial_audit()
    rows = [c for c in audit.checks if c.op and get_op(c.op).family == family] if audit else []
    if not rows:
        return []
    wrong = sum(c.verdict == "wrong" for c in rows)
    lines = ["## The tutorial's worked examples, checked", "",
             f"Numbers printed in `{TUTORIAL}` that an op of this family decides, from `gradaudit audit` of the "
             f"tutorial (all its checks: [tutorial-audit.md](tutorial-audit.md)). A printed number agrees within "
             f"half a unit of its last digit; within one unit it is \"last digit\" (rounded intermediates), beyond "
             f"that wrong. {len(rows)} claims, {wrong} wrong.", "",
             "| line | claim | tutorial | certified | verdict |", "|---|---|---|---|---|"]
    for c in rows:
        verdict = f"**wrong** ({_cell(c.note)})" if c.verdict == "wrong" and c.note else (
            "**wrong**" if c.verdict == "wrong" else c.verdict)
        lines.append(f"| {c.line} | {_cell(c.what)} | {_cell(c.printed)} | {_cell(c.certified)} | {verdict} |")
    return lines + [""]


def _error_section(heading: str, series: dict, config: ReportConfig, *, figure: str, xlabel: str, title: str,
                   vlines: dict, caption: str, xname: str) -> list[str]:
    """An op's error table, the findings generated from it, then its figure (drawn into ``figures/``) with
    the caption under it.  The caption describes the figure; it names the formulations in ``series``."""
    _figure(config.out / "figures" / figure, figure_job(series, config.dtypes, xlabel=xlabel, title=title,
                                                         vlines=vlines))
    forms = list(dict.fromkeys(label.split(" ")[0] for label in series))
    caption += (f" One line per formulation ({_names(forms)}); × marks points where a formulation returned "
                "inf/nan (drawn on the all-bits-lost line, the grey line at the dtype's precision); no point is "
                "drawn where the inputs overflow the dtype.")
    findings = _findings(series, config.dtypes, xname=xname)
    return [heading, "", *_error_table(series, config.dtypes), "", *([findings, ""] if findings else []),
            f"![{caption.split('.')[0]}](figures/{figure})", "", f"*{caption}*", ""]


def _derivations(family: str) -> list[str]:
    out = []
    for op_name in FAMILIES[family]:
        out += [derivation_markdown(get_op(op_name), _proof(op_name)), ""]
    return out


# ---------------------------------------------------------------- the three reports

def _logit_tasks(family: str, config: ReportConfig) -> list[tuple]:
    return [(op, m, d, config.seed, ()) for op in FAMILIES[family] for m in LOGIT_MAGNITUDES for d in config.dtypes]


def _batchnorm_tasks(config: ReportConfig) -> tuple[list[tuple], list[tuple]]:
    """The sweep points of the batch-norm report: against the mean/std ratio, and the ε study."""
    dtypes = config.dtypes
    ratio = [(op, m, d, config.seed, ()) for op in BATCHNORM_SWEPT for m in MEAN_OVER_STD for d in dtypes]
    eps = [(op, 1.0, d, config.seed, (("eps", e), ("variance", v)))
           for op in BATCHNORM_SWEPT for e in EPS_STUDY for v in VARIANCES for d in dtypes]
    return ratio, eps


def _generic_tasks(family: str, config: ReportConfig) -> list[tuple]:
    return [(op, m, d, config.seed, ()) for op in FAMILIES[family] if _first_array_role(op)
            for m in _AXES.get(_first_array_role(op), _OTHER_AXIS)[0] for d in config.dtypes]


def _family_tasks(family: str, config: ReportConfig) -> list[tuple]:
    """Every sweep point of ``family``'s report."""
    if family == "batchnorm":
        return [t for part in _batchnorm_tasks(config) for t in part]
    return _logit_tasks(family, config) if family in HANDWRITTEN else _generic_tasks(family, config)


def _logit_report(family: str, config: ReportConfig, thresholds: list[Threshold]) -> str:
    tasks = _logit_tasks(family, config)
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
            f"### `{op}`", series, config, figure=f"{op}_error_vs_logit.svg", xlabel="logit magnitude M",
            title=f"{op}: error vs logit magnitude", vlines=vlines, xname="M",
            caption=f"{op}: bits of error (log2(1 + max ULPs)) against logit magnitude M, one panel per dtype; "
                    "dotted lines are ln(max) of the dtype.")
    prefix = "naive softmax" if family == "softmax" else "naive cross-entropy"
    lines += ["## Thresholds", "",
              "Found by bisection on each dtype's own grid (adjacent floats: the last input that works and the "
              "first that does not), beside the analytic value.", "",
              *_threshold_table([t for t in thresholds if t.name.startswith(prefix)]), ""]
    lines += _conventions_section(family)
    lines += _tutorial_section(family)
    return "\n".join(lines)


def _batchnorm_report(config: ReportConfig, thresholds: list[Threshold]) -> str:
    ratio_tasks, eps_tasks = _batchnorm_tasks(config)
    results = _run_tasks(ratio_tasks + eps_tasks, config)
    lines = ["# Batch normalization and its backward pass", "",
             f"Generated by `gradaudit report` (seed {config.seed}). Inputs: x = M + u with u ~ N(0, 1) of shape "
             f"(16, 4), so M is the mean/std ratio (1 to 1e6, {len(MEAN_OVER_STD)} values); γ, β, dy ~ N(0, 1); "
             "ε = 1e-5 unless stated. Errors are in ULPs of the dtype against the certified reference. " + _COLUMNS, ""]
    lines += _derivations("batchnorm")
    lines += ["## Floating-point error against the mean/std ratio", ""]
    one_pass = {t.dtype: [(t.found[1], "one-pass breaks")] for t in thresholds
                if t.name.startswith("one-pass") and t.found}
    for op in BATCHNORM_SWEPT:
        series = _series(results, [t for t in ratio_tasks if t[0] == op])
        lines += _error_section(
            f"### `{op}`", series, config, figure=f"{op}_error_vs_mean_over_std.svg", xlabel="mean / std",
            title=f"{op}: error vs mean/std", vlines=one_pass, xname="mean/std",
            caption=f"{op}: bits of error against the mean/std ratio of each feature, one panel per dtype; "
                    "dotted lines mark where the one-pass variance breaks (the thresholds below).")
    lines += ["## Thresholds", "",
              "On each dtype's own grid (adjacent floats: the last mean/std ratio that works and the first that "
              "does not). float16 and bfloat16: every representable m from 1 up is tried, so the pair is the first "
              "failure even where failures come and go; float32 and float64: a 400-point log-spaced scan, then a "
              "search of the bracket around its first failure.", "",
              *_threshold_table([t for t in thresholds if t.name.startswith("one-pass")]), ""]
    lines += _eps_section(results, eps_tasks, thresholds, config)
    lines += _conventions_section("batchnorm")
    lines += _tutorial_section("batchnorm")
    return "\n".join(lines)


def _eps_section(results, eps_tasks, thresholds, config) -> list[str]:
    dtypes = config.dtypes
    lines = ["## The ε study", "",
             "Where ε stops mattering (ε below half an ulp of the variance, so var + ε == var) and where it "
             "dominates (var < ε: x̂ is shrunk towards 0, |x̂| < 1/√2), found by bisection:", "",
             *_threshold_table([t for t in thresholds if t.name.startswith("ε =")]), ""]
    for op in BATCHNORM_SWEPT:
        tasks = [t for t in eps_tasks if t[0] == op]
        series = _series(results, tasks, label=lambda task, f: f"{f} eps={dict(task[4])['eps']:.0e}",
                         x=lambda task: dict(task[4])["variance"])
        vl = {d: [(float(np.asarray(e, dtype=resolve_dtype(d))), f"ε={e:g}") for e in EPS_STUDY] for d in dtypes}
        lines += _error_section(
            f"### `{op}` against the variance (mean 1)", series, config, figure=f"{op}_error_vs_variance.svg",
            xlabel="variance of the feature", title=f"{op}: error vs variance, ε = 1e-5 / 1e-3", vlines=vl,
            xname="variance",
            caption=f"{op}: bits of error against the feature variance (mean 1) for ε = 1e-5 (solid) and "
                    "ε = 1e-3 (dashed), one colour per formulation and one panel per dtype; dotted lines mark "
                    "the two ε values.")
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
        for row in results[task] if isinstance(results[task], list) else ():
            s = row["summary"]
            if s.get("input_overflow"):
                continue
            pct, judged = stats.get((op, row["formulation"], eps), (0.0, 0.0))
            stats[(op, row["formulation"], eps)] = (max(pct, s["pct_nonfinite"]),
                                                    max(judged, np.nan_to_num(s["max_rel_over_kappa_u"])))
    lines = ["### Does float16 need ε = 1e-3?", "",
             "The tutorial recommends ε = 1e-3 for FP16 training. Measured on the variance sweep above "
             f"(variance {_g(min(VARIANCES))} … {_g(max(VARIANCES))}, mean 1), float16, per formulation:", "",
             "| op | formulation | max % inf/nan, ε = 1e-5 | max % inf/nan, ε = 1e-3 | max error ÷ κu, ε = 1e-5 | max error ÷ κu, ε = 1e-3 |",
             "|---|---|---|---|---|---|"]
    needs, fine = [], []
    for op in BATCHNORM_SWEPT:
        for form in get_op(op).formulations:
            small, large = stats.get((op, form, 1e-5)), stats.get((op, form, 1e-3))
            if small is None or large is None:
                continue
            lines.append(f"| `{op}` | `{form}` | {_g(small[0])} | {_g(large[0])} | {_g(small[1])} | {_g(large[1])} |")
            (needs if small[0] > 0 and large[0] < small[0] else fine).append((op, form))
    info = finfo("float16")
    eps16 = float(np.asarray(1e-5, dtype=np.float16))
    lines += ["", f"ε = 1e-5 is subnormal in float16 (smallest normal {float(info.smallest_normal):.3g}) "
                  f"and is stored as {eps16:.6g} ({abs(eps16 - 1e-5) / 1e-5 * 100:.2g} % off).", ""]
    verdict = ("**Not a property of float16, but of some formulations.** " if fine and needs else
               "**Confirmed.** " if needs else "**Refuted.** ")
    if fine:
        verdict += (f"With ε = 1e-5, {', '.join(f'`{o}`/`{f}`' for o, f in fine)} return no more inf/nan than "
                    "with 1e-3 anywhere on the sweep. ")
    if needs:
        verdict += (f"{', '.join(f'`{o}`/`{f}`' for o, f in needs)} do return inf/nan with ε = 1e-5 and fewer "
                    "or none with 1e-3")
        explained = [t for t in thresholds if t.dtype == "float16" and t.found and t.name.startswith("ε = 1e-05")
                     and any(f in t.name for _, f in needs) and "overflows" in t.name]
        onset_large_eps = float(info.max) ** (-2 / 3) - 1e-3
        for t in explained:
            verdict += (f"; by bisection (thresholds above) “{t.name}” is {t.found[1]:.3g} in float16 "
                        f"(analytic {t.analytic:.3g})"
                        + (f", while with ε = 1e-3 that onset is {onset_large_eps:.3g} < 0: no variance reaches it"
                           if onset_large_eps < 0 else ""))
        verdict += ". "
        instead = [f"`{o}`/`{f}`" for o, f in fine if o in {op for op, _ in needs}]
        verdict += ("So ε = 1e-3 is a workaround for those formulations"
                    + (f" ({', '.join(instead)} need no workaround)" if instead else "")
                    + ", and it has a price: a feature of variance v is normalized to root-mean-square "
                    "√(v/(v + ε)), below 1/√2 for every v < ε = 1e-3.")
    return lines + [verdict, ""]


# ---------------------------------------------------------------- any other family

#: How a generic report sweeps an op, by the role of its first array input: magnitudes, x label, x name.
_AXES = {"logits": (LOGIT_MAGNITUDES, "logit magnitude M", "M"),
         "activations": (MEAN_OVER_STD, "mean / std", "mean/std")}
_OTHER_AXIS = (LOGIT_MAGNITUDES, "input magnitude M", "M")


def _first_array_role(op_name: str) -> str:
    first = next((i for i in get_op(op_name).inputs if i.axes and not i.integer), None)
    return (first.role or "logits") if first is not None else ""


def _inputs_text(op_name: str, seed: int) -> str:
    """``z (4, 8) logits`` style list of what :func:`sample_inputs` draws for ``op_name``."""
    op = get_op(op_name)
    args = sample_inputs(op_name, 1.0, seed)
    return ", ".join(f"{i.name} {tuple(np.shape(a))} {i.role or 'logits'}" if np.shape(a) else
                     f"{i.name} = {_g(float(a))} ({i.role})" for i, a in zip(op.inputs, args))


def _threshold_findings(thresholds: list[Threshold]) -> str:
    """One sentence per formulation with thresholds, from the bisection results."""
    by_form: dict = {}
    for t in thresholds:
        by_form.setdefault(t.name, []).append(t)
    out = []
    for name, ts in by_form.items():
        op_form, _, probe = name.partition(": first m with inf/nan output at ")
        probe = probe.replace(" (certified value finite)", "")
        out.append(f"{op_form} first returns inf/nan at {probe} for m = "
                   + "; ".join(f"{t.found[1]:.6g} in {t.dtype}"
                               + (f" (analytic {t.formula} = {t.analytic:.6g})" if not math.isnan(t.analytic) else "")
                               for t in ts)
                   + " while the certified value there is finite.")
    return ("**Thresholds found.** " + " ".join(out)) if out else ""


def _op_thresholds_cached(op: str, dtypes) -> list[Threshold]:
    """:func:`~numeric.thresholds.op_thresholds`, cached on disk by the source digest, the op and the dtypes."""
    key = (op, tuple(dtypes))
    if key not in _RUN["thresholds"]:
        payload = cache.load(*_thresholds_entry(op, dtypes), validate=lambda data: isinstance(json.loads(data), list))
        _RUN["thresholds"][key] = (json.loads(payload) if payload is not None
                                   else _keep_thresholds(op, dtypes, [t.__dict__ for t in op_thresholds(op, dtypes)]))
    return [Threshold(**{**t, "found": tuple(t["found"]) if t["found"] else None}) for t in _RUN["thresholds"][key]]


def _thresholds_entry(op: str, dtypes) -> tuple[Path, str, str]:
    inputs = repr((_run_digest(), op, tuple(dtypes)))
    return cache_dir() / "thresholds" / f"{cache.inputs_digest('op thresholds', inputs)[:32]}.json", "op thresholds", inputs


def _keep_thresholds(op: str, dtypes, found: list[dict]) -> list[dict]:
    """Store thresholds found (as dicts) on disk; returns them as read back from JSON."""
    text = json.dumps(found)
    cache.store(*_thresholds_entry(op, dtypes), text.encode("utf-8"))
    _RUN["thresholds"][(op, tuple(dtypes))] = found = json.loads(text)
    return found


def _generic_report(family: str, config: ReportConfig) -> tuple[str, list[Threshold]]:
    """Report of a family without a hand-written one: derivations and proofs of each op, an error table,
    findings and figure per op against the magnitude of its first array input, and the overflow
    thresholds of :func:`~numeric.thresholds.op_thresholds`.  Returns the text and the thresholds."""
    dtypes, ops = config.dtypes, FAMILIES[family]
    tasks = _generic_tasks(family, config)
    results = _run_tasks(tasks, config)
    thresholds = [t for op in ops for t in _op_thresholds_cached(op, dtypes)]
    lines = [f"# The `{family}` family: {', '.join(f'`{o}`' for o in ops)}", "",
             f"Generated by `gradaudit report` (seed {config.seed}). Inputs are drawn by role "
             "(`numeric.sweep.sample_inputs`): logits M·u with u ~ N(0, 1); activations M + u, so M is the "
             "mean/std ratio; label rows normalised; weights and upstream gradients N(0, 1); ε = 1e-5. Per op: "
             + "; ".join(f"`{op}`: {_inputs_text(op, config.seed)}" for op in ops)
             + ". Every error is measured in ULPs of the dtype against the certified reference, on the inputs "
             "rounded to that dtype. " + _COLUMNS, ""]
    lines += _derivations(family)
    lines += ["## Floating-point error", ""]
    for op in ops:
        role = _first_array_role(op)
        if not role:
            continue
        magnitudes, xlabel, xname = _AXES.get(role, _OTHER_AXIS)
        series = _series(results, [t for t in tasks if t[0] == op])
        vlines = {t.dtype: [(t.found[1], t.name.split("`")[1] + " breaks")] for t in thresholds
                  if t.name.startswith(f"{op} `") and "−m" not in t.name}
        lines += _error_section(
            f"### `{op}`", series, config, figure=f"{op}_error_vs_{'mean_over_std' if role == 'activations' else 'magnitude'}.svg",
            xlabel=xlabel, title=f"{op}: error vs {xlabel}", vlines=vlines, xname=xname,
            caption=f"{op}: bits of error (log2(1 + max ULPs)) against {xlabel} ({_g(magnitudes[0])} to "
                    f"{_g(magnitudes[-1])}), one panel per dtype; dotted lines mark where a formulation first "
                    "returns inf/nan on the one-row probe input (thresholds, below).")
        skipped = [t for t in tasks if t[0] == op and isinstance(results[t], dict)]
        if skipped:
            lines += [f"Left out of `{op}`'s table and figure (the certified reference was not reached at the "
                      "highest working precision): " + "; ".join(
                          f"{d} at {xname} {_x_range([t[1] for t in skipped if t[2] == d], _g)}"
                          for d in dtypes if any(t[2] == d for t in skipped)) + ".", ""]
    lines += ["## Thresholds", "",
              "Found on each dtype's own grid (adjacent floats: the last magnitude that works and the first that "
              "does not). float16 and bfloat16: every representable m from 1 up to the failure is tried, so the "
              "pair is the first failure even where failures come and go; float32 and float64: a 400-point "
              "log-spaced scan, then a search of the bracket around its first failure (a failure between two scan "
              "points, before it, would be missed where the output is not monotone in m). Ops with an output "
              "summed over the rows (dγ, a loss) are scanned 400 points first in every dtype, so there an "
              "isolated failure with none on that scan would be missed. The probe is a one-row "
              "input whose first array input is [[m, 0]] or [[−m, 0]] "
              "(logits) or m ∓ 1 (activations, ε = 0), the other inputs fixed "
              "(`numeric.thresholds.probe_inputs`); a threshold is kept only where the certified value is "
              "finite in the dtype. The analytic column is filled where the op declares one "
              "(`op.domain[\"thresholds\"]`).", ""]
    if thresholds:
        findings = _threshold_findings(thresholds)
        lines += [*_threshold_table(thresholds), "", *([findings, ""] if findings else [])]
    else:
        lines += ["No formulation returns inf/nan on the probe input over the scanned range "
                  "(m from 1 to min(max, 1e6) for logits, to min(max/4, 1e12) for activations) in any dtype.", ""]
    lines += _conventions_section(family)
    lines += _tutorial_section(family)
    return "\n".join(lines), thresholds


# ---------------------------------------------------------------- conventions

#: The value shown for a float convention without a list of choices (label smoothing α).
FLOAT_CONVENTION_EXAMPLE = 0.1
#: Batch sizes of the running-statistics table.
RUNNING_STATS_N = (2, 4, 16, 64)


def convention_instances(base: str) -> list[str]:
    """Names of the non-default convention instances of op ``base``: every combination of its conventions
    with choices except the defaults, then each float convention at :data:`FLOAT_CONVENTION_EXAMPLE`."""
    import itertools

    specs = parametric_spec(base)
    choice = [p for p in specs if p.choices]
    names = []
    for values in itertools.product(*(p.choices for p in choice)):
        params = dict(zip((p.name for p in choice), values))
        if any(params[p.name] != p.default for p in choice):
            names.append(get_op(base, **params).name)
    for p in specs:
        if not p.choices and p.kind is float:
            names.append(get_op(base, **{p.name: FLOAT_CONVENTION_EXAMPLE}).name)
    return list(dict.fromkeys(names))


def _family_instances(family: str) -> list[str]:
    return [name for base in FAMILIES[family] for name in convention_instances(base)]


def _conventions_section(family: str) -> list[str]:
    """Each convention instance of the family's ops: proof status and the known mistakes proved to differ;
    the generic claims an instance proves; the running-statistics table where the family has one."""
    instances = _family_instances(family)
    if not instances:
        return []
    lines = ["## Conventions", "",
             "Each op of this family under every other convention it accepts (`--param name=value`, or "
             "`get_op(name, **conventions)`), proved like the defaults: every formulation equal to the definition "
             f"at concrete sizes, the generic claims, the invariants, and every known mistake shown to differ. "
             f"A float convention is shown at {FLOAT_CONVENTION_EXAMPLE:g}.", "",
             "| instance | proof | formulations | known mistakes proved to differ |", "|---|---|---|---|"]
    claims = []
    for name in instances:
        proof = _proof(name)
        mistakes = proof.mistakes or []
        differ = [m["name"] for m in mistakes if m["differs"]]
        same = [m["name"] for m in mistakes if not m["differs"]]
        text = (", ".join(f"`{m}`" for m in differ) or "—") + (
            f"; NOT shown to differ: {', '.join(f'`{m}`' for m in same)}" if same else "")
        lines.append(f"| `{_cell(name)}` | {'proved' if proof.proved else 'NOT PROVED'} | "
                     f"{', '.join(f'`{f}`' for f in get_op(name).formulations)} | {_cell(text)} |")
        claims += [(name, g) for g in proof.generic]
    lines.append("")
    if claims:
        lines += ["Generic claims of these instances (the size is a symbol):", ""]
        lines += [f"- `{name}`, {'proved' if g['proved'] else 'FAILED'}: ${g['statement'].strip()}$ ({g['setting']})"
                  for name, g in claims]
        lines.append("")
    lines += _running_stats_table(family)
    return lines


def _running_stats_table(family: str) -> list[str]:
    """For a family with an op taking ``correction`` whose instances prove a generic claim (the running
    statistics): the certified new running variance under correction 1 and 0 for a few batch sizes N, their
    difference, and m·σ_B²/(N − 1) computed exactly from the batch (fractions)."""
    from .reference import reference

    base = next((b for b in FAMILIES[family]
                 if any(p.name == "correction" for p in parametric_spec(b)) and get_op(b).generic
                 and [i.role for i in get_op(b).inputs] == ["activations", "weight", "positive", "fraction"]), None)
    if base is None:
        return []
    momentum = 0.1
    rng = np.random.default_rng(0)
    rows = []
    for n in RUNNING_STATS_N:
        x = rng.standard_normal((n, 1))
        args = (x, np.zeros(1), np.ones(1), momentum)
        unbiased = float(reference(base, *args, correction=1)[1][0])
        biased = float(reference(base, *args, correction=0)[1][0])
        values = [Fraction(float(v)) for v in x[:, 0]]
        mean = sum(values) / n
        var_b = sum((v - mean) ** 2 for v in values) / n
        predicted = Fraction(momentum) * var_b / (n - 1)
        rows.append((n, float(var_b), unbiased, biased, unbiased - biased, float(predicted),
                     1 + (unbiased - biased) / (momentum * float(var_b))))
    lines = [f"### `{base}`: the unbiased update against the biased one", "",
             f"Certified new running variance (`numeric.reference`, rounded to float64) from running_var = 1, "
             f"momentum m = {momentum:g}, one feature of N draws from N(0, 1) (seed 0): correction = 1 (PyTorch's "
             "update, although PyTorch normalises the batch with the biased variance) against correction = 0. The "
             "last column is m·σ_B²/(N − 1) computed exactly from the batch with fractions, the right side of the "
             "proved identity above.", "",
             "| N | σ_B² (biased) | new running var, correction = 1 | correction = 0 | difference | "
             "m·σ_B²/(N − 1) exact | batch term, unbiased ÷ biased |", "|---|---|---|---|---|---|---|"]
    for n, var_b, u, b, d, pred, factor in rows:
        lines.append(f"| {n} | {var_b:.6g} | {u:.10g} | {b:.10g} | {d:.6g} | {pred:.6g} | {factor:.6g} |")
    agree = all(abs(d - pred) <= 1e-12 * abs(pred) for _, _, _, _, d, pred, _ in rows)
    decreasing = all(a[6] > b[6] > 1 for a, b in zip(rows, rows[1:]))
    lines += ["", f"**Measured.** The certified difference {'equals' if agree else 'does NOT equal'} "
                  "m·σ_B²/(N − 1) at every N measured (to 1e-12 relative); the unbiased update's batch term divided by "
                  "the biased one is " + ", ".join(f"{r[6]:.4g} at N = {r[0]}" for r in rows) + (", so a model normalised in training with the biased variance is evaluated "
                                           "with a larger one, the more so the smaller N" if decreasing else "") + ".", ""]
    return lines


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
    audit = _tutorial_audit()
    if audit is not None:
        lines += ["", f"The tutorial's worked examples ([tutorial-audit.md](tutorial-audit.md), by `gradaudit audit`): "
                      f"{summary_line(audit)}; the wrong ones are on lines "
                      f"{', '.join(str(n) for n in sorted({c.line for c in audit.wrong}))}. "
                      "Details at the end of each report.", ""]
    lines += ["## Thresholds at a glance", "", *_threshold_table(thresholds), ""]
    return "\n".join(lines)


def _proof(op_name: str) -> ProofResult:
    """The proof result of an op: proved by a worker of this run, else from the disk cache, else proved here
    (once per process)."""
    if op_name not in _DONE["proofs"]:
        _DONE["proofs"][op_name] = prove_op(get_op(op_name))
    return _DONE["proofs"][op_name]


#: Results that outlive a run in this process: proofs by op name, the tutorial's audit.
_DONE: dict = {"proofs": {}}
#: Results of the current run, read by the renderers: sweep points by task, generic thresholds by (op, dtypes).
_RUN: dict = {"points": {}, "thresholds": {}, "figures": None, "digest": None}
#: Sweep points per worker task (about 0.1 s of work each, one op and dtype).
POINTS_PER_TASK = 17


# ---------------------------------------------------------------- the run's work as tasks

def _work(task: tuple):
    """One piece of a report set's work, run by an executor (module level, plain data in and out):
    ("proofs", [ops]) → their proof data; ("points", [sweep tasks]) → their summaries; ("thresholds", (op,
    dtypes)) → thresholds as dicts; ("audit", None) → the tutorial's audit; ("figure", job) → SVG bytes."""
    kind, arg = task
    if kind == "proofs":
        return [proof_data(prove_op(get_op(name), use_cache=False)) for name in arg]
    if kind == "points":
        return [_point_task(t) for t in arg]
    if kind == "thresholds":
        return [t.__dict__ for t in op_thresholds(*arg)]
    if kind == "audit":
        return _audit_tutorial()
    if kind == "figure":
        return draw_svg(arg)
    raise ValueError(f"unknown report task {kind!r}")


def _proof_weight(op_name: str) -> int:
    """A rough cost of proving an op, to hand out the largest proofs first: per size, outputs × input
    elements (an entry's size; entries equal up to relabelling are decided once) × programs proved."""
    op = get_op(op_name)
    size = sum(len(op.outputs) * sum(math.prod(lengths.get(a, 1) for a in i.axes) for i in op.inputs)
               for lengths in op.proof_lengths)
    return size * (len(op.formulations) + len(op.invariants) + len(op.mistakes) // 2 + 1)


def _plan(families, config: ReportConfig) -> list[tuple]:
    """The tasks whose results are neither in this process nor in the disk cache, largest first (proofs of
    an op and its convention instances, the tutorial audit, thresholds, then sweep points grouped by op
    and dtype) so that the workers finish together."""
    names = list(dict.fromkeys(op for f in families for op in (*FAMILIES[f], *_family_instances(f))))
    by_base: dict = {}           # the convention instances of one op share subexpressions: one process
    for name in names:
        if name not in _DONE["proofs"]:
            cached = cached_proof(get_op(name))
            if cached is not None:
                _DONE["proofs"][name] = cached
            else:
                by_base.setdefault(get_op(name).base_name, []).append(name)
    groups = sorted(by_base.values(), key=lambda group: sum(map(_proof_weight, group)), reverse=True)
    tasks = [("proofs", tuple(group)) for group in groups]
    if "audit" not in _DONE:
        tasks.append(("audit", None))
    for family in families:
        if family not in HANDWRITTEN:
            for op in FAMILIES[family]:
                payload = cache.load(*_thresholds_entry(op, config.dtypes),
                                     validate=lambda data: isinstance(json.loads(data), list))
                if payload is not None:
                    _RUN["thresholds"][(op, tuple(config.dtypes))] = json.loads(payload)
                else:
                    tasks.append(("thresholds", (op, tuple(config.dtypes))))
    points = [t for family in families for t in _family_tasks(family, config)]
    found, todo = _cached_points(list(dict.fromkeys(points)))
    _RUN["points"].update(found)
    groups: dict = {}
    for t in todo:
        groups.setdefault((t[0], t[2]), []).append(t)
    for group in groups.values():
        for i in range(0, len(group), POINTS_PER_TASK):
            tasks.append(("points", group[i:i + POINTS_PER_TASK]))
    return tasks


def _prepare_workers(tasks: list[tuple]) -> None:
    """Before worker processes fork: what each of them would otherwise do again on its own, done once here —
    build the kernels of every op with sweep points (one float64 point each: the formulations', the certified
    reference's and the sensitivities'), import matplotlib when there are points to draw, and the part of
    SymPy that ``simplify`` imports on first use."""
    kinds = {kind for kind, _ in tasks}
    if "proofs" in kinds:
        import sympy.physics.units  # noqa: F401  (imported by sympy.simplify on its first call)
    if "points" in kinds:
        from .figures import prepare_drawing
        prepare_drawing()
        firsts: dict = {}                            # op -> its first sweep point
        for kind, group in tasks:
            for t in group if kind == "points" else ():
                firsts.setdefault(t[0], t)
        for op, magnitude, _, seed, sample in firsts.values():
            _point_task((op, magnitude, "float64", seed, sample))


def _keep(task: tuple, value) -> None:
    """File a task's result where the renderers look for it (and in the disk cache)."""
    kind, arg = task
    if kind == "proofs":
        for name, data in zip(arg, value):
            result = ProofResult(**data)
            store_proof(get_op(name), result)
            _DONE["proofs"][name] = result
    elif kind == "points":
        for t, v in zip(arg, value):
            _keep_point(t, v)
    elif kind == "thresholds":
        _keep_thresholds(arg[0], arg[1], value)
    elif kind == "audit":
        _DONE["audit"] = value


def _figure(path: Path, job: dict) -> None:
    """Write the figure ``job`` at ``path``: from the disk cache, or drawn now, or — while a run collects
    figures — drawn later by a worker (:func:`_draw_figures`)."""
    svg = cached_svg(job)
    if svg is None and _RUN["figures"] is not None:
        _RUN["figures"].append((path, job))
        return
    if svg is None:
        svg = draw_svg(job)
        store_svg(job, svg)
    write_bytes(path, svg)


def _draw_figures(executor, progress) -> None:
    pending = _RUN["figures"] or []
    for i, svg in executor.imap_unordered(_work, [("figure", job) for _, job in pending]):
        path, job = pending[i]
        store_svg(job, svg)
        write_bytes(path, svg)
        progress.step()


def write_reports(families, config: ReportConfig) -> list[Path]:
    """Write the reports of ``families`` (names of :data:`FAMILIES`), their figures, ``index.md`` and
    ``manifest.json`` as one set that replaces ``config.out`` as a whole (:mod:`numeric.report_set`):
    the directory then holds exactly this run's files, and an interrupted run leaves the old set intact.
    ``config.out`` is checked before any computation (:class:`~numeric.report_set.OutputError`).
    Repeated dtypes count once.  Returns the written paths, under ``config.out``."""
    for family in families:
        if family not in FAMILIES:
            raise ValueError(f"report must be one of {', '.join(FAMILIES)}; got {family!r}")
    for d in config.dtypes:
        resolve_dtype(d, argument="dtypes")
    families = list(dict.fromkeys(families))
    config = replace(config, dtypes=tuple(dict.fromkeys(config.dtypes)))
    with replaced_as_a_whole(config.out) as staging:
        cache.available()                      # probe once, before worker processes inherit the answer
        written = _write_set(families, replace(config, out=staging))
        names = [p.relative_to(staging) for p in written]
    return [Path(config.out) / n for n in names]


def _write_set(families, config: ReportConfig) -> list[Path]:
    from .executors import get_executor      # in process, --jobs local processes, or GRADAUDIT_SCHEDULER (Dask)

    digest = source_digest()
    _RUN.update(points={}, thresholds={}, figures=[], digest=digest)
    try:
        # JAX's child first (None without torch/JAX): it runs on the core that planning leaves idle
        frameworks_run = start_frameworks_report(config.out, dtypes=config.dtypes, seed=config.seed,
                                                 started=config.frameworks_started)
        with frameworks_run or nullcontext(), get_executor(None, config.jobs) as executor:
            tasks = _plan(families, config)
            if getattr(executor, "forks", False):
                _prepare_workers(tasks)
            progress = _Progress(len(tasks), config.progress, "report tasks")
            running = executor.start(_work, tasks)
            # while the workers run: the hand-written thresholds and torch's kernels, in this process
            thresholds = find_thresholds(config.dtypes)
            frameworks = frameworks_run.finish() if frameworks_run is not None else None
            for i, value in running:
                _keep(tasks[i], value)
                progress.step()
            written = []
            for family in families:
                if family == "batchnorm":
                    text = _batchnorm_report(config, thresholds)
                elif family in HANDWRITTEN:
                    text = _logit_report(family, config, thresholds)
                else:
                    text, found = _generic_report(family, config)
                    thresholds = thresholds + found
                path = config.out / f"{family}.md"
                write_text(path, text)
                written.append(path)
            progress = _Progress(len(_RUN["figures"]), config.progress, "figures")
            _draw_figures(executor, progress)
    finally:
        _RUN.update(points={}, thresholds={}, figures=None, digest=None)
    written += [frameworks] if frameworks else []
    index = config.out / "index.md"
    write_text(index, _index(config, families, thresholds) + (FRAMEWORKS_INDEX_LINE if frameworks else ""))
    if _tutorial_audit() is not None:
        written.append(config.out / "tutorial-audit.md")
        write_text(written[-1], render_markdown(_tutorial_audit()))
    manifest = config.out / "manifest.json"
    files = sorted(set_files(config.out) + ["manifest.json"])          # the set, for the next run's swap
    write_text(manifest, json.dumps({"source_digest": digest, "seed": config.seed,
                                     "dtypes": list(config.dtypes), "families": list(families),
                                     "files": files}, indent=1) + "\n")
    return written + [index, manifest]
