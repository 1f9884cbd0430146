"""The frameworks report's first step (numeric.frameworks_start): light to import, taken by `gradaudit
report` before numeric.report is imported, adopted by the report, and never leaving a child behind."""
import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from derive import cache
from numeric import frameworks_report as fr
from numeric import frameworks_start as fs

needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
FOUR = ("float16", "bfloat16", "float32", "float64")


def in_fresh_process(code: str, tmp_path, cache_dir=None) -> dict:
    """Run ``code`` (which prints one JSON line last) in a fresh interpreter with CI=1 and a cache
    directory of its own; its parsed last line."""
    env = dict(os.environ, CI="1", GRADAUDIT_CACHE=str(cache_dir or tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_importing_it_imports_neither_sympy_nor_a_framework(tmp_path):
    heavy = in_fresh_process("""
        import json, sys
        import numeric.frameworks_start
        print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'sympy', 'mpmath', 'jax', 'torch'})))
    """, tmp_path)
    assert heavy == []


@needs_jax
def test_the_cli_starts_the_jax_child_before_importing_numeric_report(tmp_path):
    """A cold `gradaudit report`: the child is spawned with every JAX task while neither numeric.report nor
    SymPy nor JAX is imported in the main process.  (The spawn is replaced by a recorder that stops the run.)"""
    seen = in_fresh_process(f"""
        import json, sys
        import numeric.frameworks_start as fs
        from numeric.cli import main
        seen = []
        def spawn(tasks, compile_cache):
            seen.append({{"imported": sorted(m for m in ("numeric.report", "sympy", "jax", "torch") if m in sys.modules),
                          "tasks": [(t[0].__name__, str(t[3]), t[2][0].shape) for t in tasks]}})
            raise SystemExit(0)
        fs.spawn_jax_child = spawn
        try:
            main(["report", "--out", {str(tmp_path / "out")!r}])
        except SystemExit:
            pass
        print(json.dumps(seen))
    """, tmp_path)
    assert len(seen) == 1 and seen[0]["imported"] == []
    # expected tasks, independently: each kernel × dtype × magnitude whose logits M·N(0, 1) fit the dtype
    z = np.random.default_rng(0).standard_normal((4, 8))
    largest = {"float16": 65504.0, "bfloat16": 3.3895e38, "float32": 3.4028e38, "float64": 1.7976e308}
    expected = [[name, d, [4, 8]] for name in ("softmax", "log_softmax") for d in FOUR
                for m in (1.0, 10.0, 100.0, 1e4) if np.abs(m * z).max() <= largest[d]]
    assert seen[0]["tasks"] == expected


def test_a_warm_cli_report_starts_no_child_and_imports_no_framework(tmp_path, monkeypatch):
    """The frameworks report's text in the disk cache (a real entry under the key the CLI computes): the
    CLI's start finds it, spawns nothing and imports neither torch nor JAX."""
    frameworks = {f for f in ("torch", "jax") if importlib.util.find_spec(f) is not None}
    if not frameworks:
        pytest.skip("neither torch nor JAX is installed")
    root = tmp_path / "cache"
    monkeypatch.setenv("GRADAUDIT_CACHE", str(root))
    path, text, inputs = fs.cached_text(frameworks, FOUR, 0, None)
    assert text is None
    cache.store(path, "frameworks report", inputs, b"# cached\n")
    seen = in_fresh_process(f"""
        import json, sys
        import numeric.frameworks_start as fs
        from numeric.cli import main
        seen, real = [], fs.start
        fs.spawn_jax_child = lambda *args: seen.append("spawned")
        def start(*args, **kwargs):
            started = real(*args, **kwargs)
            seen.append({{"text": started.cached[1], "child": started.child is not None,
                          "imported": sorted(m for m in ("numeric.report", "jax", "torch") if m in sys.modules)}})
            raise SystemExit(0)
        fs.start = start
        try:
            main(["report", "--out", {str(tmp_path / "out")!r}])
        except SystemExit:
            pass
        print(json.dumps(seen))
    """, tmp_path, cache_dir=root)
    assert seen == [{"text": "# cached\n", "child": False, "imported": []}]


@needs_jax
def test_a_usage_error_after_the_start_stops_the_child(tmp_path):
    """`report nosuchop` is found out after the child started (the op names need SymPy): exit 2, one
    line, and the child is stopped before the CLI returns."""
    seen = in_fresh_process("""
        import json, sys
        import numeric.frameworks_start as fs
        from numeric.cli import main
        made, real = [], fs.start
        def start(*args, **kwargs):
            made.append(real(*args, **kwargs))
            return made[-1]
        fs.start = start
        code = main(["report", "nosuchop", "--out", "out"])
        child = made[0].child if made else None
        print(json.dumps({"code": code, "starts": len(made), "owned": child is not None,
                          "alive": [p.name for p in __import__("multiprocessing").active_children()]}))
    """, tmp_path)
    assert seen == {"code": 2, "starts": 1, "owned": False, "alive": []}


@pytest.mark.parametrize("argv", [["report", "--dtypes", "float8"], ["report", "--jobs", "0"],
                                  ["report", "--out", "a-file"]])
def test_a_usage_error_before_the_start_starts_nothing(tmp_path, argv):
    (tmp_path / "a-file").write_text("x")
    seen = in_fresh_process(f"""
        import json
        import numeric.frameworks_start as fs
        from numeric.cli import main
        starts = []
        fs.start = lambda *args, **kwargs: starts.append(args)
        print(json.dumps({{"code": main({argv!r}), "starts": len(starts)}}))
    """, tmp_path)
    assert seen == {"code": 2, "starts": 0}


class _FakeChild:
    def __init__(self):
        self.calls = []

    def is_alive(self):
        return True

    def terminate(self):
        self.calls.append("terminate")

    def join(self):
        self.calls.append("join")

    def close(self):                          # the pipe
        self.calls.append("close")


def _started(dtypes=("float32",), seed=0):
    started = fs.Started(dtypes, seed, None, ("entry.json", None, "inputs"))
    started.child, started.pipe, started.entries = _FakeChild(), _FakeChild(), ["entry"]
    return started


def test_the_report_adopts_a_start_of_its_own_dtypes_and_seed(tmp_path, monkeypatch):
    monkeypatch.setattr(fr, "_start", lambda *args: pytest.fail("a second start for the same report"))
    started = _started()
    child = started.child
    run = fr.start_frameworks_report(tmp_path, dtypes=("float32",), seed=0, started=started)
    assert run._child is child and run._jax_entries == ["entry"] and run.cached == ("entry.json", None, "inputs")
    started.close()                           # the CLI's close: the child is the run's now
    assert child.calls == []
    run._child, run._results_pipe = None, None


@pytest.mark.parametrize("dtypes, seed", [(("float32",), 1), (("float16",), 0), (("float32", "float16"), 0)])
def test_a_start_of_another_report_is_closed_and_a_new_one_made(tmp_path, monkeypatch, dtypes, seed):
    made = []
    monkeypatch.setattr(fr, "_start", lambda *args: made.append(args))
    started = _started()
    child = started.child
    assert fr.start_frameworks_report(tmp_path, dtypes=dtypes, seed=seed, started=started) is None
    assert child.calls == ["terminate", "join"] and started.child is None
    assert made == [(dtypes, seed, None)]


def test_given_cases_start_no_child_and_use_no_cache(tmp_path):
    case = fr.KernelCase("torch", "k", None, fr._logits, (0,), (1.0,), "M")
    run = fr.start_frameworks_report(tmp_path, dtypes=("float32",), cases=[case])
    assert run._child is None and run.cached is None and run.text is None
    assert fr.start_frameworks_report(tmp_path, cases=[]) is None
