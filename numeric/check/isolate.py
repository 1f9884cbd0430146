"""Run the checked code in a child process: nothing it does — sys.exit, os._exit, printing, hanging,
crashing the interpreter — can turn a wrong verdict into a pass or mix its output into the report.

The child is forked (it inherits the compiled kernels and the user's function, nothing is pickled on the
way in); its stdout and stderr go to a file that the parent reads back; its result comes back pickled
through a pipe.  A child that dies or runs past ``timeout`` seconds is a failure, with the reason.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import sys
import tempfile
import traceback

__all__ = ["run_isolated", "IsolationFailure"]


class IsolationFailure(RuntimeError):
    """The child did not come back with a result: it exited, crashed or timed out (``reason`` says)."""

    def __init__(self, reason: str, output: str = ""):
        super().__init__(reason)
        self.reason, self.output = reason, output


def _child(conn, task, capture_path):
    fd = os.open(capture_path, os.O_WRONLY)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    try:
        result = ("ok", task())
    except SystemExit as exc:
        result = ("exit", f"the checked code called sys.exit({exc.code!r})")
    except BaseException as exc:         # noqa: BLE001 — reported to the parent, never raised there
        result = ("error", (type(exc).__name__, str(exc), traceback.format_exc()))
    try:
        conn.send_bytes(pickle.dumps(result))
    except Exception as exc:             # noqa: BLE001
        conn.send_bytes(pickle.dumps(("error", (type(exc).__name__, f"result could not be sent back: {exc}", ""))))
    conn.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_isolated(task, *, timeout: float):
    """``task()`` run in a forked child; returns ``(value, captured output)``.

    Raises :class:`IsolationFailure` when the child exits early (``os._exit``, a crash, ``sys.exit``)
    or runs longer than ``timeout`` seconds; re-raises, as ``RuntimeError``, an exception ``task`` raised.
    """
    ctx = mp.get_context("fork")
    with tempfile.NamedTemporaryFile(prefix="gradaudit-output-", delete=False) as capture:
        capture_path = capture.name
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(child, task, capture_path), daemon=True)
    process.start()
    child.close()
    ready, message = False, None
    try:
        ready = parent.poll(timeout)
        message = parent.recv_bytes() if ready else None
    except EOFError:          # the child died without sending: poll said "ready" on the closed pipe
        message = None
    finally:
        if process.is_alive() and message is None:
            process.kill()
        process.join(5)
        parent.close()
    try:
        with open(capture_path, encoding="utf-8", errors="replace") as fh:
            output = fh.read()
    finally:
        os.unlink(capture_path)
    if message is None:
        if not ready:
            raise IsolationFailure(f"timed out after {timeout:g} s (the function hangs or is far too slow)", output)
        raise IsolationFailure(f"the checked code ended the process (exit code {process.exitcode}) before the check "
                               "finished — e.g. os._exit or a crash", output)
    status, value = pickle.loads(message)
    if status == "ok":
        return value, output
    if status == "exit":
        raise IsolationFailure(value, output)
    name, text, tb = value
    raise RuntimeError(f"{name}: {text}\n{tb}")
