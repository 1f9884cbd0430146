"""A small disk cache whose entries prove their own integrity (proofs, sweep points, figures).

An entry is one JSON file (written atomically)::

    {"format": "gradaudit-cache/1", "kind": "proof", "inputs": <sha256 of what produced it>,
     "sha256": <sha256 of the payload bytes>, "encoding": "text" | "base64", "payload": …}

:func:`load` returns the payload only when the file parses, is of this format and ``kind``, was made
from the same inputs, its payload matches its digest, and the caller's ``validate`` accepts it.
Anything else — a truncated or garbage file, an entry copied from another key, an edited payload, a
valid-looking but wrong value — is ignored with one line on stderr naming the file, and the caller
recomputes (and overwrites it).  A cache directory that cannot be created or written (a file in its
place, no permission, disk full) switches the cache off for the rest of the process, with one warning;
the computation then runs without a cache.  Nothing here ever raises on a bad cache.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Callable

from .atomic import write_bytes

__all__ = ["FORMAT", "cache_dir", "inputs_digest", "load", "store", "available"]

FORMAT = "gradaudit-cache/1"

_state = {"root": None, "usable": None}     # the probed root and whether it is usable (per process)


def cache_dir() -> Path:
    """Where entries live: ``$GRADAUDIT_CACHE`` or ``~/.cache/gradaudit``."""
    root = os.environ.get("GRADAUDIT_CACHE") or Path.home() / ".cache" / "gradaudit"
    return Path(root)


def _warn(message: str) -> None:
    print(f"gradaudit: warning: {message}", file=sys.stderr, flush=True)


def _disable(root: Path, exc: BaseException) -> None:
    if _state["usable"] is not False or _state["root"] != root:
        _warn(f"cache directory {root} is unusable ({type(exc).__name__}: {exc}); running without a cache")
    _state.update(root=root, usable=False)


def available() -> bool:
    """True when the cache directory exists or can be created and a file can be written in it.

    Probed once per process and cache directory (a child process forked after the probe inherits the
    answer); an unusable directory is reported once on stderr."""
    root = cache_dir()
    if _state["root"] == root and _state["usable"] is not None:
        return _state["usable"]
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".probe-{os.getpid()}"
        write_bytes(probe, b"")
        probe.unlink()
    except OSError as exc:
        _disable(root, exc)
        return False
    _state.update(root=root, usable=True)
    return True


def inputs_digest(kind: str, inputs: str) -> str:
    """SHA-256 (hex) naming an entry: the cache format, the entry's kind and a text of its inputs."""
    return hashlib.sha256("\n".join((FORMAT, kind, inputs)).encode()).hexdigest()


def _ignore(path: Path, reason: str) -> None:
    _warn(f"ignoring cache entry {path}: {reason}; recomputing")


def load(path: Path, kind: str, inputs: str, *, validate: Callable[[bytes], bool] | None = None) -> bytes | None:
    """The payload stored at ``path`` for (``kind``, ``inputs``), or None (missing, unusable, or rejected
    with a warning).  ``validate(payload)`` may reject a payload that is intact but cannot be right."""
    if not available():
        return None
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        _ignore(path, f"unreadable ({type(exc).__name__})")
        return None
    try:
        entry = json.loads(raw)
        if not isinstance(entry, dict) or entry.get("format") != FORMAT:
            return _ignore(path, "not a gradaudit cache entry")
        if entry.get("kind") != kind or entry.get("inputs") != inputs_digest(kind, inputs):
            return _ignore(path, "made from other inputs")
        text = entry["payload"]
        payload = (text.encode("utf-8") if entry["encoding"] == "text"
                   else base64.b64decode(text.encode("ascii"), validate=True))
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        return _ignore(path, "truncated or not valid JSON")
    if hashlib.sha256(payload).hexdigest() != entry.get("sha256"):
        return _ignore(path, "content does not match its digest")
    try:
        ok = validate is None or validate(payload)
    except Exception:                                  # a validator's parse error means "invalid"
        ok = False
    if not ok:
        return _ignore(path, f"not a valid {kind}")
    return payload


def store(path: Path, kind: str, inputs: str, payload: bytes) -> None:
    """Write ``payload`` at ``path`` as an entry for (``kind``, ``inputs``); on an OS error the cache is
    switched off with one warning (the caller has its result either way)."""
    if not available():
        return
    try:
        text, encoding = payload.decode("utf-8"), "text"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(payload).decode("ascii"), "base64"
    entry = {"format": FORMAT, "kind": kind, "inputs": inputs_digest(kind, inputs),
             "sha256": hashlib.sha256(payload).hexdigest(), "encoding": encoding, "payload": text}
    try:
        write_bytes(path, json.dumps(entry).encode("utf-8"))
    except OSError as exc:
        _disable(cache_dir(), exc)
