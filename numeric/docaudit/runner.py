"""Run a document's Python blocks in order in ONE child process, like a notebook.

The child (``sys.executable -I``, see :mod:`._child`) runs in a fresh temporary directory (files a block
writes land there and are deleted afterwards), with no standard input, ``MPLBACKEND=Agg`` and its own
process group.  Each block has a wall-clock ``timeout`` (seconds); a block that exceeds it, or kills the
interpreter, ends the child — later blocks run in a new child whose namespace starts empty (reported).
``sys.exit`` inside a block is caught and reported; the namespace survives it.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Run", "Runner"]

_CHILD = (Path(__file__).with_name("_child.py")).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Run:
    """What one block did: ``status`` is ok, error, exit (sys.exit), skipped (an import is missing),
    timeout, crashed (the interpreter died) or not run."""
    status: str
    stdout: str = ""
    stderr: str = ""
    error: str = ""
    seconds: float = 0.0


class Runner:
    """``with Runner(timeout=20) as r: r.run(code, name, modules)`` — one child, blocks in order."""

    def __init__(self, timeout: float = 30.0):
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds; got {timeout!r}")
        self.timeout = float(timeout)
        self._proc = None
        self._tmp = None
        self.restarts = 0

    def __enter__(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="gradaudit-doc-")
        return self

    def __exit__(self, *exc):
        self._stop()
        self._tmp.cleanup()

    def _start(self):
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")}
        env.update(MPLBACKEND="Agg", PYTHONHASHSEED="0", PYTHONIOENCODING="utf-8", OMP_NUM_THREADS="1")
        self._proc = subprocess.Popen([sys.executable, "-I", "-c", _CHILD], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=self._tmp.name,
                                      env=env, start_new_session=True)

    def _stop(self):
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._proc = None

    def run(self, code: str, name: str, modules=()) -> Run:
        """Run ``code`` (file name ``name`` in tracebacks) after importing ``modules`` in the child."""
        fresh = self._proc is None
        if fresh:
            self._start()
        start = time.monotonic()
        try:
            self._proc.stdin.write((json.dumps({"code": code, "name": name, "modules": list(modules)}) + "\n").encode())
            self._proc.stdin.flush()
        except BrokenPipeError:
            self._stop()
            return Run("crashed", error="the child process died before the block started")
        line = self._read_line(start)
        elapsed = time.monotonic() - start
        if line is None:
            self._stop()
            self.restarts += 1
            return Run("timeout", error=f"no result after {self.timeout:g} s; stopped (later blocks start "
                                        "from an empty namespace)", seconds=elapsed)
        if line == b"":
            self._stop()
            self.restarts += 1
            return Run("crashed", error="the interpreter exited during the block (later blocks start from an "
                                        "empty namespace)", seconds=elapsed)
        reply = json.loads(line)
        return Run(reply["status"], reply["stdout"], reply["stderr"], reply["error"], elapsed)

    def _read_line(self, start: float):
        """One protocol line; None on timeout, b"" at end of file."""
        fd = self._proc.stdout.fileno()
        chunks = []
        while True:
            left = self.timeout - (time.monotonic() - start)
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            data = os.read(fd, 1 << 16)
            if not data:
                return b"" if not chunks else b"".join(chunks)
            chunks.append(data)
            if data.endswith(b"\n"):
                return b"".join(chunks)
