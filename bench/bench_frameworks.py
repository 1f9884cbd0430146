"""Where the CPU time of ``reports/frameworks.md`` goes (``numeric.frameworks_report``), in one run.

Each part runs in a fresh process (so imports and compilations are cold) and is timed as CPU seconds
(user + system, the process and the children it waited for), beside the wall time and the load average
(the machine is shared):

* ``import torch`` / ``import jax`` alone;
* the JAX child's work (:func:`numeric.frameworks_jax.run_all` on the report's tasks): without a compile
  cache, filling an empty one, and reading it back (a rerun whose text cache missed, e.g. after an edit);
* torch's rows in the parent (:func:`numeric.frameworks_report._measure_all`, torch imported before):
  first pass (reference, κ and formulation kernels built) and second pass (kernels built);
* the whole phase, :func:`~numeric.frameworks_report.write_frameworks_report` on an empty cache, then on
  the cache it filled.

Run: ``python bench/bench_frameworks.py``.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time

PREFIX = "import os, resource, time\n" \
         "def cpu():\n" \
         "    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)\n" \
         "    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime\n"

PARTS = {
    "import torch": "c = cpu(); import torch\nprint(cpu() - c)",
    "import jax": "c = cpu(); import jax\nprint(cpu() - c)",
    "JAX child: kernels, no compile cache": "from numeric import frameworks_jax, frameworks_start as fs\n"
        "from numeric.dtypes import DTYPES\n_, tasks = fs.jax_tasks(fs.JAX_KERNELS, tuple(DTYPES), None, 0)\n"
        "import jax\nc = cpu(); frameworks_jax.run_all(tasks)\nprint(cpu() - c)",
    "JAX child: kernels, empty compile cache": "from numeric import frameworks_jax, frameworks_start as fs\n"
        "from numeric.dtypes import DTYPES\n_, tasks = fs.jax_tasks(fs.JAX_KERNELS, tuple(DTYPES), None, 0)\n"
        "import jax\nc = cpu(); frameworks_jax.run_all(tasks, os.environ['GRADAUDIT_CACHE'] + '/jax')\nprint(cpu() - c)",
    "JAX child: kernels, filled compile cache": None,          # the previous part again, same cache
    "torch rows: first pass (kernels built)": "import numeric.report\nfrom numeric import frameworks_report as fr\n"
        "from numeric.dtypes import DTYPES\ncases = fr.torch_cases()\nimport torch\ntorch.set_num_threads(1)\n"
        "c = cpu(); fr._measure_all(cases, tuple(DTYPES), None, 0, 'cpu', {})\nprint(cpu() - c)\n"
        "c = cpu(); fr._measure_all(cases, tuple(DTYPES), None, 0, 'cpu', {})\nprint(cpu() - c)",
    # imports under the guard: the spawned JAX child re-imports this script as its main module
    "whole phase, empty cache": "if __name__ == '__main__':\n    import tempfile\n    import numeric.report\n"
        "    from numeric.frameworks_report import write_frameworks_report\n"
        "    c = cpu(); write_frameworks_report(tempfile.mkdtemp())\n    print(cpu() - c)",
    "whole phase, cache filled by the previous run": None,
}


def run(code: str, cache: str) -> tuple[list[float], float]:
    """(numbers the snippet printed, wall s) of ``code`` in a fresh interpreter with ``GRADAUDIT_CACHE``."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(PREFIX + code + "\n")
    try:
        start = time.perf_counter()
        out = subprocess.run([sys.executable, f.name], env=dict(os.environ, GRADAUDIT_CACHE=cache, CI="1"),
                             capture_output=True, text=True, check=True).stdout
        return [float(x) for x in out.split()], time.perf_counter() - start
    finally:
        os.unlink(f.name)


def main() -> None:
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| part | CPU s | process wall s | load (1 min) after |")
    print("|---|---|---|---|")
    code, cache = None, None
    for label, snippet in PARTS.items():
        if snippet is not None:
            code, cache = snippet, tempfile.mkdtemp()
        numbers, wall = run(code, cache)
        if label.startswith("torch rows"):
            print(f"| torch rows: first pass (kernels built) | {numbers[0]:.2f} | {wall:.1f} | {os.getloadavg()[0]:.2f} |")
            print(f"| torch rows: second pass | {numbers[1]:.2f} | | |")
            continue
        print(f"| {label} | {numbers[0]:.2f} | {wall:.1f} | {os.getloadavg()[0]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
