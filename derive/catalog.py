"""What the built-in ops look like — names, signatures, formulations, conventions — without building them.

Building the op set imports SymPy and runs the reverse-mode derivations (about a second); listing the ops
should not.  The catalogue is computed from the built ops once per version of derive's sources and kept,
keyed by a SHA-256 of those sources, in two places: shipped beside the ops (``derive/ops/catalog.json``,
rewritten by ``python -m derive.catalog``; a test keeps it current) and in the cache directory.  When
neither matches the sources in hand, the ops are built and the catalogue is computed from them — it is
never trusted beyond the sources it was made from.  Imports here are only the standard library.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from . import cache
from .atomic import write_text

__all__ = ["sources_digest", "describe", "builtin_catalog", "SHIPPED", "main"]

PACKAGE = Path(__file__).resolve().parent
SHIPPED = PACKAGE / "ops" / "catalog.json"
_KIND = "catalog"


def sources_digest() -> str:
    """SHA-256 (hex) of every Python source of ``derive`` (names and bytes): anything that can change an op."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def describe(op) -> dict:
    """One op's listing entry: ``name``, ``signature``, ``formulations`` and ``conventions`` (each a dict
    with ``name``, ``default`` and ``choices`` — the Python reprs of the values, or the type's name)."""
    from .registry import parametric_spec

    return {"name": op.name, "signature": op.signature(), "formulations": list(op.formulations),
            "conventions": [{"name": p.name, "default": repr(p.default),
                             "choices": [repr(c) for c in p.choices] if p.choices else p.kind.__name__}
                            for p in parametric_spec(op.base_name)]}


def _compute() -> list[dict]:
    from .registry import OPS

    return [describe(op) for op in OPS.values()]


def _entries_valid(entries) -> bool:
    return isinstance(entries, list) and all(isinstance(e, dict) and {"name", "signature", "formulations",
                                                                      "conventions"} <= set(e) for e in entries)


def _valid(payload: bytes) -> bool:
    return _entries_valid(json.loads(payload))


def _shipped(digest: str) -> list[dict] | None:
    try:
        data = json.loads(SHIPPED.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("sources") != digest:
        return None
    return data["ops"] if _entries_valid(data.get("ops")) else None


def builtin_catalog() -> list[dict]:
    """The listing entries of the built-in ops, in registration order (see the module docstring)."""
    digest = sources_digest()
    entries = _shipped(digest)
    if entries is not None:
        return entries
    path = cache.cache_dir() / f"catalog-{digest[:32]}.json"
    payload = cache.load(path, _KIND, digest, validate=_valid)
    if payload is not None:
        return json.loads(payload)
    entries = _compute()
    cache.store(path, _KIND, digest, json.dumps(entries).encode())
    return entries


def main() -> None:
    """Rewrite the shipped catalogue from the ops built from the current sources."""
    text = json.dumps({"sources": sources_digest(), "ops": _compute()}, indent=1, ensure_ascii=False) + "\n"
    write_text(SHIPPED, text)
    print(SHIPPED)


if __name__ == "__main__":
    main()
