"""A TOML file of claims the extractor cannot find: an author pins a printed number to an op call.

    [[claim]]
    line = 120                       # line of the document where the number is printed
    op = "softmax"                   # any op of the registry (`gradaudit list`)
    args = { z = [[1.0, 2.0, 3.0]] } # the op's inputs by name, full shapes; scalars (eps) default
    output = 0                       # optional: output index or name (default 0)
    index = [0, 0]                   # optional: one element; without it ``printed`` is the whole output
    printed = 0.0900                 # as printed: a number (its digits are read from the file, so the
                                     # trailing zeros count), a string "0.0900", or a list of either
    what = "softmax of [1, 2, 3]"    # optional description

Values are read as data with :mod:`tomllib`; nothing is evaluated.  Errors name the claim and the key.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import numpy as np

from .certified import op_call
from .checks import Check
from .printed import AGREES, LAST_DIGIT, WRONG, Printed, fmt, parse_number, verdict

__all__ = ["load_claims", "check_claims"]

_KEYS = {"line", "op", "args", "output", "index", "printed", "what"}


class ClaimsError(ValueError):
    """A malformed claims file (message names the claim and key)."""


def _printed(value, where: str):
    if isinstance(value, bool):
        raise ClaimsError(f"{where}: 'printed' must be a number, a string such as \"0.0900\" or a list; got {value!r}")
    if isinstance(value, str):
        p = parse_number(value)
        if p is None:
            raise ClaimsError(f"{where}: 'printed' must look like a number (e.g. \"0.0900\"); got {value!r}")
        return p
    if isinstance(value, (int, float)):
        return parse_number(repr(value))
    if isinstance(value, list) and value:
        return [_printed(v, where) for v in value]
    raise ClaimsError(f"{where}: 'printed' must be a number, a string such as \"0.0900\" or a list; got {value!r}")


def load_claims(path) -> list[dict]:
    """The claims of a TOML file, validated (``ClaimsError`` names the bad claim and key)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ClaimsError(f"{path}: not valid TOML ({exc})") from None
    claims = data.get("claim", [])
    if not isinstance(claims, list) or not all(isinstance(c, dict) for c in claims):
        raise ClaimsError(f"{path}: expected [[claim]] tables")
    # TOML floats forget trailing zeros (0.0900 → 0.09): take each bare ``printed = <number>`` as written.
    literals = iter(re.findall(r"(?m)^\s*printed\s*=\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?:#.*)?$", text))
    out = []
    for i, c in enumerate(claims, 1):
        where = f"{path.name}: claim {i}"
        unknown = set(c) - _KEYS
        if unknown:
            raise ClaimsError(f"{where}: unknown key {sorted(unknown)[0]!r} (keys: {', '.join(sorted(_KEYS))})")
        for key in ("line", "op", "args", "printed"):
            if key not in c:
                raise ClaimsError(f"{where}: missing key {key!r}")
        if not isinstance(c["line"], int) or c["line"] < 1:
            raise ClaimsError(f"{where}: 'line' must be a positive integer; got {c['line']!r}")
        if not isinstance(c["op"], str):
            raise ClaimsError(f"{where}: 'op' must be an op name string; got {c['op']!r}")
        if not isinstance(c["args"], dict):
            raise ClaimsError(f"{where}: 'args' must be a table of inputs by name, e.g. {{ z = [[1.0, 2.0]] }}")
        index = c.get("index")
        if index is not None and not (isinstance(index, list) and all(isinstance(k, int) for k in index)):
            raise ClaimsError(f"{where}: 'index' must be a list of integers; got {index!r}")
        printed = c["printed"]
        if isinstance(printed, (int, float)) and not isinstance(printed, bool):
            literal = next(literals, None)
            if literal is not None and float(literal) == float(printed):
                printed = literal
        out.append(dict(c, printed=_printed(printed, where), where=where))
    return out


def check_claims(claims: list[dict]) -> list[Check]:
    """Each claim against its op's certified value (``ClaimsError`` for an op call that cannot be made)."""
    checks = []
    for c in claims:
        try:
            value = op_call(c["op"], c["args"], c.get("output", 0))
        except (ValueError, TypeError) as exc:
            raise ClaimsError(f"{c['where']}: {exc}") from None
        value = np.asarray(value, dtype=object)
        if c.get("index") is not None:
            try:
                value = value[tuple(c["index"])]
            except IndexError:
                raise ClaimsError(f"{c['where']}: index {c['index']} is outside the output of shape {value.shape}") from None
        exact = list(np.asarray(value, dtype=object).reshape(-1))
        printed = c["printed"] if isinstance(c["printed"], list) else [c["printed"]]
        if len(printed) != len(exact):
            raise ClaimsError(f"{c['where']}: {len(printed)} printed numbers for an output of {len(exact)} elements")
        verdicts = [verdict(p, e) for p, e in zip(printed, exact)]
        v = WRONG if WRONG in verdicts else LAST_DIGIT if LAST_DIGIT in verdicts else AGREES
        shown = ", ".join(p.text for p in printed)
        what = c.get("what") or f"{c['op']}({', '.join(f'{k}={v}' for k, v in c['args'].items())})" + (
            f"[{', '.join(map(str, c['index']))}]" if c.get("index") is not None else "")
        checks.append(Check(c["line"], "claims file", what, shown,
                            ", ".join(fmt(e, max(len(p.text) + 1, 6)) for p, e in zip(printed, exact)), v, op=c["op"]))
    return checks


_ = Printed  # re-exported type of 'printed'
