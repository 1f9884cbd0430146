"""Printed values inside prose and text blocks: annotations stripped, bare numbers and arrays recognised,
equations split at top-level separators; and the :class:`~.checks.Check` of a printed value (or array)
against its exact value, the worst element deciding."""
from __future__ import annotations

import re
from fractions import Fraction

from .checks import Check
from .printed import AGREES, LAST_DIGIT, NUMBER, WRONG, Printed, fmt, parse_array, parse_number, verdict

__all__ = ["strip_annotation", "pure", "split_top", "equations", "rows_of", "text_of", "floats", "check"]

_SCI = re.compile(r"^\s*(" + NUMBER + r")\s*[×x*]\s*10\s*\^\s*([-−]?\d+)\s*$")


def strip_annotation(text: str) -> str:
    """``0.659 (65.9%)``, ``0.769 ← Dominant!``, ``24 normalizations``, ``1.000 ✓`` → the value part."""
    t = re.split(r"←|→|✓|✗|#|\bwhere\b", text)[0]
    t = re.sub(r"\(\s*[\d.]+\s*%\s*\)", "", t)
    t = re.sub(r"\((?=[^()]*[A-Za-z!?])[^()]*\)\s*$", "", t.strip())          # (OVERFLOW!), (uniform)
    t = t.strip().rstrip(".,;:!")
    m = re.match(r"^(" + NUMBER + r")\s+[A-Za-z].*$", t)                        # 24 normalizations
    return m.group(1) if m else t.strip()


def pure(text: str):
    """A bare printed number or array of numbers (after annotations are stripped), else None."""
    t = strip_annotation(text)
    if re.fullmatch(r"[-−]?\d{1,3}(?:,\d{3})+(?:\.\d+)?", t):            # 25,088
        t = t.replace(",", "")
    p = parse_number(t)
    if p is not None:
        return p
    m = _SCI.match(t)
    if m:
        mant = parse_number(m.group(1))
        e = int(m.group(2).replace("−", "-"))
        return Printed(t, mant.value * Fraction(10) ** e, mant.unit * Fraction(10) ** e)
    return parse_array(t) if t.startswith("[") else None


def split_top(text: str, seps: str) -> list[tuple[str, str]]:
    """Split at top-level separators (outside brackets); returns (piece, separator before it)."""
    out, depth, cur, prev = [], 0, "", ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        if depth == 0 and ch in seps:
            before, after = text[i - 1] if i else "", text[i + 1] if i + 1 < len(text) else ""
            if ch == "=" and (before in "=<>!:" or after == "="):
                cur += ch
            else:
                out.append((cur, prev))
                cur, prev = "", ch
                i += 1
                continue
        cur += ch
        i += 1
    out.append((cur, prev))
    return out


def equations(text: str) -> list[str]:
    pieces = [p for p, _ in split_top(text, ",")]
    if len(pieces) > 1 and sum("=" in p for p in pieces) >= 2 and all("=" in p for p in pieces if p.strip()):
        return pieces
    return [text]


def rows_of(a):
    if isinstance(a, Printed):
        return None
    if a and isinstance(a[0], Printed):
        return [a]
    if a and all(isinstance(r, list) and r and isinstance(r[0], Printed) for r in a):
        return a
    return None


def text_of(a) -> str:
    return a.text if isinstance(a, Printed) else "[" + ", ".join(text_of(x) for x in a) + "]"


def floats(row) -> list[float]:
    return [float(p.value) for p in row]


def _sig(p: Printed) -> int:
    digits = len(re.sub(r"[^0-9]", "", p.text.split("e")[0].split("E")[0]).lstrip("0")) or 1
    return digits + 2


def check(line, source, what, printed, exact, *, op="", block=0, note="") -> Check:
    """``printed`` (Printed or list) against ``exact`` (value or list): worst element decides."""
    if isinstance(printed, Printed):
        v = verdict(printed, exact)
        return Check(line, source, what, printed.text, fmt(exact, _sig(printed)), v, note, op, block)
    flat_p, flat_e = _flatten(printed), _flatten(exact)
    vs = [verdict(p, e) for p, e in zip(flat_p, flat_e)]
    v = WRONG if WRONG in vs else LAST_DIGIT if LAST_DIGIT in vs else AGREES
    bad = [f"{p.text} (exact {fmt(e, _sig(p))})" for p, e, x in zip(flat_p, flat_e, vs) if x == WRONG]
    note = "; ".join(x for x in (note, ("wrong: " + ", ".join(bad[:6])) if bad else "") if x)
    digits = max(_sig(p) for p in flat_p)
    return Check(line, source, what, text_of(printed), fmt(list(flat_e), digits), v, note, op, block)


def _flatten(a):
    if isinstance(a, (list, tuple)):
        return [x for sub in a for x in _flatten(sub)]
    return [a]
