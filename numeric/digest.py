"""The source digest of ``derive`` and ``numeric``: what the reports and their cache entries depend on.

A module of its own (standard library only) so that a check that needs it — is the frameworks report in
the disk cache? — runs before ``numeric.report`` (SymPy) is imported.  ``numeric.report.source_digest``
is this function.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["source_digest"]


def source_digest() -> str:
    """SHA-256 (64 hex digits) over the paths and bytes of every ``*.py`` file of ``derive`` and
    ``numeric``, in sorted order; about 2.5 ms."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for package in ("derive", "numeric"):
        for path in sorted((root / package).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()
