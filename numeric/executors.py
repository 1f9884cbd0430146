"""Executors: *where* chunk tasks run — in this process, in local processes, or on a Dask cluster.

One interface, ``executor.imap_unordered(fn, tasks)`` → ``(task index, result)`` pairs as tasks finish, and
one driver, :func:`run_chunks`, that streams every result to its own file the moment it arrives (atomic
write), so a lost worker loses only the chunk it was running and a rerun resumes from the files already
there.  Results are returned in *task order*, whatever the completion order, so outputs built from them are
the same bytes whichever executor ran them.

* :class:`InProcess`: ``fn(task)`` one after another (``jobs=1``, no scheduler).
* :class:`LocalProcesses`: a ``multiprocessing.Pool`` of ``jobs`` workers.
* :class:`DaskScheduler`: a ``dask.distributed`` scheduler at an address (``tcp://host:8786``); tasks
  lost with a worker are rescheduled by Dask.

``fn`` must be a module-level function (pickled by reference) and its tasks and results plain data; results
stored by :func:`run_chunks` must be JSON-serialisable (dicts, lists, str, int, float incl. inf/nan).
:func:`get_executor` picks the executor from ``--scheduler`` / ``GRADAUDIT_SCHEDULER`` and ``--jobs``.
"""
from __future__ import annotations

import gc
import hashlib
import json
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from derive.atomic import write_text

__all__ = ["Executor", "InProcess", "LocalProcesses", "DaskScheduler", "get_executor", "run_chunks",
           "SCHEDULER_ENV", "scheduler_scope", "sigint_deferred"]

#: Modules whose import starts threads that make forking this process unsafe (see LocalProcesses).
FORK_UNSAFE = ("jax",)
#: Environment variable naming a Dask scheduler address when ``--scheduler`` is not given.
SCHEDULER_ENV = "GRADAUDIT_SCHEDULER"


class Executor:
    """Runs ``fn`` over tasks; ``imap_unordered`` yields ``(index into tasks, result)`` as each finishes."""
    name = "executor"
    #: Workers start as copies of this process when the first tasks are handed out (what it holds then, they
    #: share instead of each building it again).
    forks = False

    def imap_unordered(self, fn: Callable, tasks: list) -> Iterator[tuple[int, object]]:
        raise NotImplementedError

    def start(self, fn: Callable, tasks: list) -> Iterator[tuple[int, object]]:
        """Like :meth:`imap_unordered`, but executors with workers hand the tasks out *now*, so the caller
        can do other work before reading the results (in this process the tasks run while reading)."""
        return self.imap_unordered(fn, tasks)

    def close(self) -> None:
        """Release workers (a no-op for executors that own none)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class InProcess(Executor):
    """Every task in this process, in order."""
    name = "in-process"

    def imap_unordered(self, fn, tasks):
        for i, task in enumerate(tasks):
            yield i, fn(task)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def sigint_deferred():
    """Ctrl-C is held back while child processes start, then delivered on leaving: an interrupt in the middle
    of starting one left a half-started child that printed its own traceback (a spawned child reading its
    preparation data got EOF).  Two parts: SIGINT is blocked in this thread, so children started here keep
    it blocked (the parent alone answers Ctrl-C and shuts them down); and, in the main thread, Python's
    handler only records it meanwhile — a SIGINT sent to the process can be taken by another thread (numpy's
    BLAS threads do not block it), and Python then runs the handler in the main thread all the same."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    received = []
    handler = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or handler is None:
        handler = None                  # (signal.signal works in the main thread; None: a handler set in C)
    else:
        signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)      # a SIGINT held back is recorded now
        if handler is not None:
            signal.signal(signal.SIGINT, handler)
            if received:
                signal.raise_signal(signal.SIGINT)                # delivered to the handler it was meant for


def _indexed(item):
    fn, i, task = item
    return i, fn(task)


class LocalProcesses(Executor):
    """``jobs`` local worker processes (``multiprocessing.Pool``); the pool starts on first use.  Workers
    ignore Ctrl-C: the parent alone handles it (one message, no traceback per worker) and, on Ctrl-C or any
    error, terminates the workers at once instead of letting them finish their chunks."""

    def __init__(self, jobs: int):
        if not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs must be an integer ≥ 1; got {jobs!r}")
        self.jobs = jobs
        self.name = f"{jobs} local processes"
        self._pool = self._method = None

    @staticmethod
    def _context():
        """The platform's default start method (fork on Linux before Python 3.14), except after a library
        that runs threads of its own has been imported in this process (JAX: a forked copy of its threads'
        locks can deadlock the workers, as JAX warns): then a fork server, started clean."""
        import multiprocessing

        if any(name in sys.modules for name in FORK_UNSAFE):
            return multiprocessing.get_context("forkserver")
        return multiprocessing.get_context()

    @property
    def forks(self) -> bool:
        """Whether the workers start (or started) as copies of this process."""
        return (self._method if self._pool is not None else self._context().get_start_method()) == "fork"

    def imap_unordered(self, fn, tasks):
        return self._results(self._submit(fn, tasks))       # handed out now, results as they finish

    def _submit(self, fn, tasks):
        if self._pool is None:
            # What this process holds now goes to the permanent generation while the workers fork: their
            # collector then never visits (and so never writes to and copies) the pages they share with it.
            gc.freeze()
            try:
                context = self._context()
                with sigint_deferred():
                    self._pool = context.Pool(self.jobs, initializer=_ignore_sigint)
                self._method = context.get_start_method()
            finally:
                gc.unfreeze()
        return self._pool.imap_unordered(_indexed, [(fn, i, task) for i, task in enumerate(tasks)])

    def _results(self, results):
        try:
            yield from results
        except BaseException:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
            raise

    def close(self):
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None


class DaskScheduler(Executor):
    """Tasks on a ``dask.distributed`` cluster; ``address`` such as ``tcp://127.0.0.1:8786`` (or a
    ``distributed.Client`` already connected, which is then not closed here)."""

    def __init__(self, address, *, timeout: float = 10.0):
        try:
            from distributed import Client
        except ImportError:      # pragma: no cover - a dependency of the project
            raise ValueError("--scheduler needs dask.distributed: pip install 'dask[distributed]'") from None
        if isinstance(address, Client):
            self.client, self._owned = address, False
        else:
            if not isinstance(address, str) or "://" not in address:
                raise ValueError(f"scheduler must be an address such as tcp://127.0.0.1:8786; got {address!r}")
            try:
                self.client = Client(address, timeout=timeout, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise ValueError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
            self._owned = True
        self.name = f"Dask scheduler {self.client.scheduler.address}"

    def imap_unordered(self, fn, tasks):
        return self._results(self._submit(fn, tasks))       # handed out now, results as they finish

    def _submit(self, fn, tasks):
        # pure=False: every run really runs (a rerun after a lost chunk must not hit a stale key)
        return self.client.map(fn, tasks, pure=False) if tasks else []

    def _results(self, futures):
        from distributed import as_completed as dask_completed

        if not futures:
            return
        index = {future.key: i for i, future in enumerate(futures)}
        try:
            for future in dask_completed(futures, loop=self.client.loop):    # not the default client's loop
                result = future.result()
                i = index[future.key]
                future.release()
                yield i, result
        finally:
            self.client.cancel([f for f in futures if not f.done()])

    def close(self):
        if self._owned:
            self.client.close()


def get_executor(scheduler: str | None = None, jobs: int = 1) -> Executor:
    """The executor for ``scheduler`` (a Dask address; ``None`` reads ``GRADAUDIT_SCHEDULER``), else
    :class:`LocalProcesses` for ``jobs > 1``, else :class:`InProcess`."""
    address = scheduler or os.environ.get(SCHEDULER_ENV) or None
    if address:
        return DaskScheduler(address)
    return LocalProcesses(jobs) if jobs > 1 else InProcess()


@contextmanager
def scheduler_scope(address: str | None):
    """Within the block, ``GRADAUDIT_SCHEDULER`` is ``address`` (unchanged when ``address`` is None), so
    code that calls :func:`get_executor` without one (the report's sweep points) uses it too."""
    if not address:
        yield
        return
    previous = os.environ.get(SCHEDULER_ENV)
    os.environ[SCHEDULER_ENV] = address
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(SCHEDULER_ENV, None)
        else:
            os.environ[SCHEDULER_ENV] = previous


def _chunk_path(store: Path, index: int, task) -> Path:
    digest = hashlib.sha256(json.dumps(task, sort_keys=True, default=repr).encode()).hexdigest()[:16]
    return store / f"chunk-{index:07d}-{digest}.json"


def run_chunks(fn: Callable, tasks: Iterable, *, executor: Executor | None = None, store: Path | None = None,
               progress=None) -> list:
    """``[fn(task) for task in tasks]``, run by ``executor`` (default :class:`InProcess`).

    With ``store`` (a directory), each result is written to its own JSON file as soon as it arrives and
    tasks whose file exists are not run again; file names carry the task's index and a hash of the task,
    so a store is only reused for the same tasks.  ``progress``: an object with ``update(n)`` (see
    ``numeric.progress``), advanced once per finished or already stored task.
    """
    tasks = list(tasks)
    results: list = [None] * len(tasks)
    todo = []
    for i, task in enumerate(tasks):
        path = _chunk_path(store, i, task) if store is not None else None
        if path is not None and path.exists():
            results[i] = json.loads(path.read_text())
            if progress is not None:
                progress.update(1)
        else:
            todo.append(i)
    executor = executor or InProcess()
    for j, value in executor.imap_unordered(fn, [tasks[i] for i in todo]):
        i = todo[j]
        if store is not None:
            text = json.dumps(value, sort_keys=True)
            write_text(_chunk_path(store, i, tasks[i]), text)
            value = json.loads(text)         # the same values whether stored, loaded or fresh
        results[i] = value
        if progress is not None:
            progress.update(1)
    return results
