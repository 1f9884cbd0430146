"""A report set is replaced as a whole: written into a sibling directory, then swapped into place.

``with replaced_as_a_whole(out) as staging:`` checks ``out`` (before any computation), creates
``.<name>.new-<pid>-<random>`` beside it, and yields it; the caller writes every file there, the
manifest last (``manifest.json`` with a ``files`` list, see :func:`set_files`).  On a normal exit,
with Ctrl-C held off: entries of ``out`` that are not part of its old set (another command's
``exhaustive/``, a user's notes) are moved into the new set, the old ``out`` is renamed aside, the new
one renamed into place, and the old one removed.  On any exception — Ctrl-C included — the staging
directory is removed and ``out`` is untouched, so an interrupted run leaves the old set intact, never a
mix.  The new set is this run's files only: a partial run (one family) drops the other families'
reports of the old set, so every file of a set comes from one seed and one source.

What may be replaced: a missing or empty directory, or one holding a report set (a ``manifest.json``).
Any other non-empty directory is refused with :class:`OutputError`, so ``--out ~`` cannot move a home
directory, and so is a directory containing the current one.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
from pathlib import Path

__all__ = ["OutputError", "check_output_dir", "replaced_as_a_whole", "set_files"]


class OutputError(ValueError):
    """``out`` cannot receive a report set; the message is one line naming the path."""


def set_files(root: Path) -> list[str]:
    """Every file under ``root`` as a sorted list of '/'-separated relative paths (the manifest's ``files``)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _old_set(out: Path) -> set[str] | None:
    """Top-level names of ``out``'s report set, from its manifest (None without a readable manifest)."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if isinstance(files, list):
        return {str(f).split("/")[0] for f in files} | {"manifest.json"}
    # manifests written before "files": the set was its *.md files and figures/
    return {p.name for p in out.iterdir() if p.suffix == ".md" and p.is_file()} | {"manifest.json", "figures"}


def check_output_dir(out) -> Path:
    """``out`` as an absolute path (symlinks resolved) after checking that a set can replace it; raises
    :class:`OutputError` when ``out`` is a file, is not writable, sits under a file, contains the current
    directory, or is a non-empty directory without a report set's ``manifest.json``."""
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
        entries = sorted(out.iterdir())
        if entries and _old_set(out) is None:
            raise OutputError(f"--out {out} holds {entries[0].name} but no manifest.json, so it is not a report "
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
    carried = []
    try:
        moved = out.exists()
        try:
            if moved:
                old_set = _old_set(out) or set()
                for entry in sorted(out.iterdir()):
                    if entry.name not in old_set and not (staging / entry.name).exists():
                        os.rename(entry, staging / entry.name)
                        carried.append(entry.name)
                os.rename(out, old)
            os.rename(staging, out)
        except BaseException:
            if moved and not out.exists():
                os.rename(old, out)
            for name in carried:
                os.rename(staging / name, out / name)
            raise
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    shutil.rmtree(old, ignore_errors=True)
