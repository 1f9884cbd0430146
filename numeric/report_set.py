"""A report set is replaced as a whole: written into a sibling directory, then swapped into place.

``with replaced_as_a_whole(out) as staging:`` checks ``out`` (before any computation), creates
``.<name>.new-<pid>-<random>`` beside it, and yields it; the caller writes every file there.  On a
normal exit the old ``out`` is renamed aside, the new one renamed into place (Ctrl-C held off between
the two renames) and the old one removed.  On any exception — Ctrl-C included — the staging directory
is removed and ``out`` is untouched, so an interrupted run leaves the old set intact, never a mix.

What may be replaced: a missing or empty directory, or one holding only a report set (``*.md``,
``manifest.json`` and ``figures/*.png``).  Anything else in ``out`` is refused with
:class:`OutputError`, so ``--out .`` cannot delete a project.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
from pathlib import Path

__all__ = ["OutputError", "check_output_dir", "replaced_as_a_whole"]


class OutputError(ValueError):
    """``out`` cannot receive a report set; the message is one line naming the path."""


def _is_report_file(path: Path, top: Path) -> bool:
    rel = path.relative_to(top)
    if len(rel.parts) == 1:
        return path.is_file() and (path.suffix == ".md" or path.name == "manifest.json")
    return len(rel.parts) == 2 and rel.parts[0] == "figures" and path.is_file() and path.suffix == ".png"


def check_output_dir(out) -> Path:
    """``out`` as an absolute path (symlinks resolved) after checking that a set can replace it; raises
    :class:`OutputError` when ``out`` is a file, is not writable, sits in an unwritable directory, or
    holds files that are not a report set."""
    out = Path(out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out must be a directory; {out} is a file")
    parent = out.parent
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"--out {out}: {parent} is a file, not a directory")
    cwd = Path.cwd().resolve()
    if cwd == out or out in cwd.parents:
        raise OutputError(f"--out {out} contains the current directory; run from elsewhere or choose another --out")
    if out.is_dir():
        if not os.access(out, os.W_OK | os.X_OK):
            raise OutputError(f"--out {out} is not writable")
        for entry in sorted(out.iterdir()):
            if entry.name == "figures" and entry.is_dir():
                foreign = [p for p in sorted(entry.iterdir()) if not _is_report_file(p, out)]
            else:
                foreign = [] if _is_report_file(entry, out) else [entry]
            if foreign:
                raise OutputError(f"--out {out} holds {foreign[0].relative_to(out)}, which is not part of a report "
                                  "set; choose an empty or new directory")
    return out


def _remove_leftovers(out: Path) -> None:
    """Staging / old directories of runs that were killed (their process is gone)."""
    for path in out.parent.glob(f".{out.name}.*-*-*"):
        kind, _, rest = path.name[len(out.name) + 2:].partition("-")
        pid = rest.split("-")[0]
        if kind not in ("new", "old") or not pid.isdigit() or not path.is_dir():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def _sibling(out: Path, kind: str) -> Path:
    return out.parent / f".{out.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"


@contextlib.contextmanager
def replaced_as_a_whole(out):
    """Yield a fresh staging directory beside ``out``; swap it in for ``out`` when the block succeeds."""
    out = check_output_dir(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(out)
        staging = _sibling(out, "new")
        staging.mkdir()                        # mode from the umask, like every file written in it
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot write in {out.parent} ({exc.strerror or exc})") from None
    try:
        yield staging
        _swap(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap(staging: Path, out: Path) -> None:
    old = _sibling(out, "old")
    blocked = hasattr(signal, "pthread_sigmask")
    if blocked:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        moved = out.exists()
        if moved:
            os.rename(out, old)
        try:
            os.rename(staging, out)
        except BaseException:
            if moved:
                os.rename(old, out)
            raise
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    shutil.rmtree(old, ignore_errors=True)
