"""Wall and CPU time of ``gradaudit report`` (every family, the frameworks report, the tutorial audit), in one run:

* cold and warm runs of ``gradaudit report --jobs 1`` and ``--jobs 2`` as separate processes: cold with a fresh
  empty cache directory (``GRADAUDIT_CACHE``), warm right after on the cache that cold run filled.  CPU is user +
  system time of the command and every process it waited for (workers, the JAX child, the audit's children);
* where a cold run's work goes: one serial report in this process on a fresh cache, each phase timed (CPU of
  this process, plus its children's for phases that start processes).

The machine is shared, so the load average is printed beside the wall times; CPU seconds are the steadier
number.  Target (issue 11): cold ``--jobs 2`` ≤ 8 s wall on 2 cores.

Run: ``python bench/bench_report.py [--skip-phases]``.
"""
from __future__ import annotations

import functools
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_cli(jobs: int, cache: Path, out: Path) -> tuple[float, float]:
    """(wall s, CPU s) of one ``gradaudit report --jobs N`` with ``GRADAUDIT_CACHE=cache``."""
    env = dict(os.environ, GRADAUDIT_CACHE=str(cache), CI="1")
    before, start = _children_cpu(), time.perf_counter()
    subprocess.run([sys.executable, "-m", "numeric.cli", "report", "--jobs", str(jobs), "--out", str(out)],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, _children_cpu() - before


def cli_times() -> None:
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| run | jobs | wall s | CPU s | load (1 min) after |")
    print("|---|---|---|---|---|")
    outputs = {}
    for jobs in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            cache, out = Path(tmp) / "cache", Path(tmp) / "out"
            for kind in ("cold", "warm"):
                wall, cpu = run_cli(jobs, cache, out)
                print(f"| {kind} | {jobs} | {wall:.1f} | {cpu:.1f} | {os.getloadavg()[0]:.2f} |", flush=True)
            outputs[jobs] = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    same = outputs[1] == outputs[2]
    print(f"\n--jobs 1 and --jobs 2 wrote {'the same' if same else 'DIFFERENT'} bytes "
          f"({len(outputs[1])} files)")
    differ = sorted(str(n) for n in outputs[1].keys() | outputs[2].keys() if outputs[1].get(n) != outputs[2].get(n))
    if differ:
        print("differing: " + ", ".join(differ))


#: Phases of a report: (module attribute of numeric.report, label, counts its children's CPU too).
PHASES = (("find_thresholds", "hand-written thresholds", False),
          ("_keep", "file results (parent: cache writes)", False),
          ("start_frameworks_report", "frameworks report (torch here, JAX in a child)", True),
          ("_batchnorm_report", "render batchnorm.md", False),
          ("_logit_report", "render softmax / cross_entropy .md", False),
          ("_generic_report", "render other families' .md", False),
          ("_index", "render index.md", False))


def phase_breakdown() -> None:
    """One serial cold report in this process (in-process executor), with every task kind and phase timed."""
    os.environ["GRADAUDIT_CACHE"] = tempfile.mkdtemp()
    os.environ["CI"] = "1"
    seconds: dict = {}

    def add(label, cpu, wall):
        c, w, n = seconds.get(label, (0.0, 0.0, 0))
        seconds[label] = (c + cpu, w + wall, n + 1)

    start_cpu, start = _self_cpu(), time.perf_counter()
    import numeric.report as report
    add("import numeric.report", _self_cpu() - start_cpu, time.perf_counter() - start)

    work = report._work

    def timed_work(task):
        c, w = _self_cpu() + _children_cpu(), time.perf_counter()
        try:
            return work(task)
        finally:
            add(f"task: {task[0]}", _self_cpu() + _children_cpu() - c, time.perf_counter() - w)
    report._work = timed_work

    def timed(fn, label, children):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            c, w = _self_cpu() + (_children_cpu() if children else 0.0), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                add(label, _self_cpu() + (_children_cpu() if children else 0.0) - c, time.perf_counter() - w)
        return wrapper
    for name, label, children in PHASES:
        setattr(report, name, timed(getattr(report, name), label, children))
    # the frameworks report starts JAX's child first and is finished (torch measured, the child collected) later
    from numeric.frameworks_report import FrameworksRun
    FrameworksRun.finish = timed(FrameworksRun.finish, "frameworks report (torch here, JAX in a child)", True)

    c0, w0 = _self_cpu() + _children_cpu(), time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        report.write_reports(list(report.FAMILIES), report.ReportConfig(out=Path(tmp) / "out", jobs=1))
    total_cpu, total_wall = _self_cpu() + _children_cpu() - c0, time.perf_counter() - w0
    print("\nCold serial report in one process, by phase (task kinds are the units handed to workers):")
    print("| phase | count | CPU s | wall s |")
    print("|---|---|---|---|")
    for label, (cpu, wall, n) in sorted(seconds.items(), key=lambda kv: -kv[1][0]):
        print(f"| {label} | {n} | {cpu:.2f} | {wall:.2f} |")
    print(f"| **write_reports total** | | {total_cpu:.2f} | {total_wall:.2f} |")


def main() -> None:
    cli_times()
    if "--skip-phases" not in sys.argv:
        phase_breakdown()


if __name__ == "__main__":
    main()
