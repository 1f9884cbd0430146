"""Arithmetic chains — ``Loss = −log(0.828) = −(−0.189) = 0.189``, ``P(A) = 66.7 / 429.8 = 0.155`` — possibly
continued on lines that start with ``=``: every bare number (or list of numbers) is checked against the
nearest arithmetic expression before it in the chain, evaluated exactly by :mod:`.arith`.  Segments
joined by ``≈`` are not judged.  In prose the first segment may end a sentence ("and −log(0.5)"): its
longest arithmetic tail is used."""
from __future__ import annotations

import re
from dataclasses import dataclass

from . import arith
from .checks import Check
from .printed import Printed
from .values import check as _check, pure as _pure, strip_annotation as _strip_annotation

__all__ = ["Segment", "chain_claims"]


@dataclass
class Segment:
    text: str
    line: int
    approx_before: bool = False


_LOSS = re.compile(r"loss|(?:^|\W)L[₀-₉\d]*$", re.IGNORECASE)


def _arithmetic_tail(text: str) -> str:
    """The longest arithmetic expression ending a prose segment ("and −log(0.5)" → "−log(0.5)"), or ""."""
    t = _strip_annotation(text)
    for m in re.finditer(r"(?:^|\s)(?=\S)", t):
        tail = t[m.end():]
        if re.search(r"\d", tail) and arith.is_arithmetic(tail):
            return tail
    return ""


def chain_claims(segments: list[Segment], source: str, block: int, label: str = "") -> list[Check]:
    """Bare numbers of a chain against the nearest arithmetic before them.  A chain labelled as a loss
    (``Loss = −log(0.828) = 0.189``) is filed under the cross_entropy op: −log p is its value at p."""
    op = "cross_entropy" if _LOSS.search(label.strip()) else ""
    out = []
    for i, seg in enumerate(segments):
        if i == 0:
            continue
        printed = _pure(seg.text)
        if printed is None:
            continue
        for j in range(i - 1, -1, -1):
            if segments[j + 1].approx_before:
                j = -1
                break
            if arith.is_arithmetic(_strip_annotation(segments[j].text)):
                break
            if j == 0:
                tail = _arithmetic_tail(segments[0].text)
                if tail:
                    segments[0] = Segment(tail, segments[0].line, segments[0].approx_before)
                    break
        else:
            j = -1
        if j < 0:
            continue
        expr = _strip_annotation(segments[j].text)
        value = arith.evaluate(expr)
        if value is None:
            continue
        if isinstance(printed, Printed) != (not isinstance(value, list)):
            continue
        if isinstance(value, list) and (not isinstance(printed, list) or len(value) != len(printed)
                                        or not all(isinstance(p, Printed) for p in printed)):
            continue
        out.append(_check(seg.line, source, f"{expr.strip()} (arithmetic)", printed, value, block=block, op=op))
    return out
