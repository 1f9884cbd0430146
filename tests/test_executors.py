"""Executors: the same results (and report bytes) in process, in local processes and on a real Dask
LocalCluster with one worker killed mid-run; chunk files let an interrupted run resume."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys

import pytest

from numeric.executors import (DaskScheduler, InProcess, LocalProcesses, SCHEDULER_ENV, get_executor, run_chunks,
                               scheduler_scope)

CALLS: list = []


def square(task):
    CALLS.append(task)
    if task == "boom":
        raise RuntimeError("chunk failed")
    return {"n": task, "square": task * task, "half": task / 2}


def test_in_process_and_local_processes_agree_in_task_order():
    tasks = list(range(23))
    expected = [{"n": t, "square": t * t, "half": t / 2} for t in tasks]
    assert run_chunks(square, tasks, executor=InProcess()) == expected
    with LocalProcesses(2) as pool:
        assert run_chunks(square, tasks, executor=pool) == expected


FROZEN = """
import gc, json
from numeric.executors import LocalProcesses

def frozen_objects(_task):
    return gc.get_freeze_count()

before = gc.get_freeze_count()
with LocalProcesses(2) as pool:
    counts = [n for _, n in pool.imap_unordered(frozen_objects, [0, 1, 2, 3])]
    after = gc.get_freeze_count()
print(json.dumps([before, after, counts, pool.forks]))
"""


def test_workers_fork_with_the_parents_objects_frozen_and_the_parent_collects_as_before():
    """The parent's objects are in the permanent generation in each worker (its collector leaves the shared
    pages alone); the parent unfreezes them once the workers are started.  (In a fresh process: this one
    may have imported JAX, after which workers come from a fork server instead.)"""
    proc = subprocess.run([sys.executable, "-c", FROZEN], capture_output=True, text=True, check=True)
    before, after, counts, forks = json.loads(proc.stdout)
    assert forks and after == before
    assert min(counts) > before + 1000


AFTER_JAX = """
import json, sys, warnings
warnings.simplefilter("error")          # JAX's warning about forking its threads would be an error
import jax
from numeric.executors import LocalProcesses, run_chunks

def cube(n):
    return {"n": n, "cube": n ** 3}

if __name__ == "__main__":
    with LocalProcesses(2) as pool:
        forks_before = pool.forks
        results = run_chunks(cube, [1, 2, 3, 4], executor=pool)
        print(json.dumps([forks_before, pool.forks, [r["cube"] for r in results]]))
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_after_jax_is_imported_workers_come_from_a_fork_server(tmp_path):
    """JAX runs threads of its own (and warns that forking them can deadlock): once it is imported, the
    workers start from a fork server, and the results are the same."""
    script = tmp_path / "after_jax.py"
    script.write_text(AFTER_JAX)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout) == [False, False, [1, 8, 27, 64]]
    assert "os.fork()" not in proc.stderr


def test_an_error_in_a_worker_reaches_the_caller_and_stops_the_pool():
    with LocalProcesses(2) as pool:
        with pytest.raises(RuntimeError, match="chunk failed"):
            run_chunks(square, [1, "boom", 3], executor=pool)
        assert pool._pool is None                                  # terminated, not left running
        assert run_chunks(square, [4], executor=pool)[0]["square"] == 16    # and usable again


def test_store_streams_each_result_to_a_file_and_a_rerun_resumes(tmp_path):
    CALLS.clear()
    tasks = [1, 2, "boom", 4]
    with pytest.raises(RuntimeError, match="chunk failed"):
        run_chunks(square, tasks, store=tmp_path)
    stored = sorted(p.name for p in tmp_path.iterdir())
    assert len(stored) == 2 and stored[0].startswith("chunk-0000000-") and stored[1].startswith("chunk-0000001-")
    assert json.loads((tmp_path / stored[1]).read_text()) == {"half": 1.0, "n": 2, "square": 4}
    CALLS.clear()
    tasks[2] = 3
    assert [r["square"] for r in run_chunks(square, tasks, store=tmp_path)] == [1, 4, 9, 16]
    assert CALLS == [3, 4]          # the two stored chunks were not run again


def test_a_store_is_not_reused_for_other_tasks(tmp_path):
    run_chunks(square, [5], store=tmp_path)
    CALLS.clear()
    assert run_chunks(square, [6], store=tmp_path)[0]["square"] == 36
    assert CALLS == [6]


def test_get_executor_choices(monkeypatch):
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    assert isinstance(get_executor(None, 1), InProcess)
    assert isinstance(get_executor(None, 3), LocalProcesses)
    with pytest.raises(ValueError, match="jobs must be an integer ≥ 1"):
        LocalProcesses(0)
    with pytest.raises(ValueError, match="scheduler must be an address"):
        get_executor("localhost", 1)
    monkeypatch.setenv(SCHEDULER_ENV, "not-an-address")
    with pytest.raises(ValueError, match="not-an-address"):
        get_executor(None, 1)


def test_scheduler_scope_sets_and_restores_the_variable(monkeypatch):
    monkeypatch.setenv(SCHEDULER_ENV, "tcp://before:1")
    with scheduler_scope("tcp://inside:2"):
        assert os.environ[SCHEDULER_ENV] == "tcp://inside:2"
    assert os.environ[SCHEDULER_ENV] == "tcp://before:1"
    with scheduler_scope(None):
        assert os.environ[SCHEDULER_ENV] == "tcp://before:1"


def test_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        DaskScheduler("tcp://127.0.0.1:9", timeout=1)


class _KillOnFirstResult:
    """A progress object that kills one worker process when the first chunk result arrives."""

    def __init__(self, pid):
        self.pid, self.killed, self.seen = pid, False, 0

    def update(self, n):
        self.seen += n
        if not self.killed:
            self.killed = True
            os.kill(self.pid, signal.SIGKILL)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


@pytest.fixture(scope="module")
def cluster():
    """A real two-worker Dask cluster (separate processes) on this machine."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        yield c


def test_report_sweep_points_on_dask_equal_local_ones(cluster, tmp_path, monkeypatch):
    from numeric.report import ReportConfig, _run_tasks

    tasks = [(op, m, "float16", 0, ()) for op in ("softmax", "softmax_backward") for m in (1.0, 30.0)]
    config = ReportConfig(out=tmp_path, dtypes=("float16",))
    monkeypatch.setenv("GRADAUDIT_CACHE", str(tmp_path / "local-cache"))
    local = _run_tasks(tasks, config)
    monkeypatch.setenv("GRADAUDIT_CACHE", str(tmp_path / "dask-cache"))     # cold again: nothing from the cache
    with scheduler_scope(cluster.scheduler_address):
        remote = _run_tasks(tasks, config)
    assert list(remote) == list(local) == tasks
    assert json.dumps(list(remote.values())) == json.dumps(list(local.values()))


def test_cli_uses_the_scheduler_named_by_the_environment(cluster, tmp_path, monkeypatch, capsys):
    from numeric.cli import main

    argv = ["exhaustive", "softmax", "--dtype", "float16", "--vary", "z[0,1]", "--fix", "z=[[2.0, 0.0, -1.0]]",
            "--formulation", "logsumexp", "--chunk", "9000"]
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    assert main(argv + ["--out", str(tmp_path / "local")]) == 0
    assert "on in-process" in capsys.readouterr().err
    monkeypatch.setenv(SCHEDULER_ENV, cluster.scheduler_address)
    assert main(argv + ["--out", str(tmp_path / "dask")]) == 0
    assert f"on Dask scheduler {cluster.scheduler_address}" in capsys.readouterr().err
    for name in ("exhaustive-softmax-float16-z_0_1.md", "figures/exhaustive-softmax-float16-z_0_1.png"):
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "dask" / name).read_bytes()


def test_dask_local_cluster_with_a_killed_worker_gives_the_same_report_bytes(cluster, tmp_path, monkeypatch):
    import distributed
    from numeric.exhaustive import make_plan, parse_element, parse_fix, write_exhaustive
    import numeric.exhaustive.run as run_module

    plan = make_plan("softmax", "float16", [parse_element("z[0,0]")], fixed=[parse_fix("z=[[0.5, -1.0]]")],
                     formulations=["naive", "shifted"])
    local = write_exhaustive(plan, tmp_path / "local", points_per_chunk=4000, show_progress=False)
    with distributed.Client(cluster) as client:
        before = client.run(os.getpid)
        killer = _KillOnFirstResult(next(iter(before.values())))
        monkeypatch.setattr(run_module, "progress_bar", lambda *a, **k: killer)
        dask_paths = write_exhaustive(plan, tmp_path / "dask", executor=DaskScheduler(client), points_per_chunk=4000)
        assert killer.killed and killer.seen == 16            # 63487 points / 4000 per chunk, every chunk once
        client.wait_for_workers(2, timeout=30)
        assert set(client.run(os.getpid).values()) != set(before.values())    # the nanny restarted the killed one
    for a, b in zip(local, dask_paths):
        assert a.name == b.name and a.read_bytes() == b.read_bytes()
    assert not list((tmp_path / "dask").rglob("chunk-*"))      # chunk files live in the cache, not the output


class _Terminal:
    """A stream that claims to be a terminal and keeps what is written."""

    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def test_progress_bars_only_on_a_terminal_and_never_under_ci(monkeypatch):
    from numeric.progress import progress, progress_enabled

    monkeypatch.delenv("CI", raising=False)
    assert progress_enabled(_Terminal()) and not progress_enabled(open(os.devnull, "w"))
    for value in ("true", "1", "yes"):
        monkeypatch.setenv("CI", value)
        assert not progress_enabled(_Terminal())
    monkeypatch.setenv("CI", "false")
    assert progress_enabled(_Terminal())
    with pytest.raises(ValueError, match="what must name what is counted"):
        progress(3, what="")


def test_a_progress_bar_names_what_it_counts(monkeypatch):
    from numeric import progress as progress_module

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(progress_module, "DELAY_SECONDS", 0.0)
    terminal = _Terminal()
    with progress_module.progress(4, what="softmax bfloat16: exhaustive z[0,0]", unit="chunk", stream=terminal) as bar:
        for _ in range(4):
            bar.update(1)
    assert "softmax bfloat16: exhaustive z[0,0]" in terminal.text and "4/4" in terminal.text and "chunk" in terminal.text
    quiet = _Terminal()
    monkeypatch.setenv("CI", "true")
    with progress_module.progress(4, what="softmax bfloat16", stream=quiet) as bar:
        bar.update(4)
    assert quiet.text == ""


def test_a_sigint_taken_by_another_thread_is_held_back_until_the_children_started():
    """A SIGINT sent to the process may land on any thread that does not block it (numpy's BLAS threads);
    Python still runs its handler in the main thread.  Inside ``sigint_deferred`` it must only be recorded,
    then delivered on leaving, or a child half started prints a traceback."""
    import threading
    import time

    from numeric.executors import sigint_deferred

    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()                               # started outside: SIGINT is not blocked there
    reached_the_end = False
    try:
        with pytest.raises(KeyboardInterrupt):
            with sigint_deferred():
                signal.pthread_kill(other.ident, signal.SIGINT)
                for _ in range(200):            # bytecodes and sleeps: a live handler would raise here
                    time.sleep(0.001)
                reached_the_end = True
    finally:
        stop.set()
        other.join()
    assert reached_the_end
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
