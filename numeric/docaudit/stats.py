"""Statistics and batch-norm claims about a printed data vector (or the columns of a matrix): mean (exact
fraction), variance and standard deviation in both conventions (population ÷N, sample ÷(N−1); the note
says which matches), and normalized values through the batchnorm op's certified reference."""
from __future__ import annotations

import re

from derive import get_op

from .certified import mean, op_slice, std_candidates, variance
from .checks import Check
from .printed import AGREES, LAST_DIGIT, WRONG, Printed
from .values import check as _check, floats as _floats, rows_of as _rows, text_of as _text

__all__ = ["stat_claim", "normalized_claim", "stat_kind", "NORMALIZED", "STATS"]

STATS = (("variance", re.compile(r"^(?:σ²|sigma\^?2|var(?:iance)?)(?:_?\w*)?$|variance", re.IGNORECASE)),
          ("std", re.compile(r"^(?:σ|sigma|std|standard deviation)(?:_?\w*)?$", re.IGNORECASE)),
          ("mean", re.compile(r"^(?:μ|mu|mean|average)(?:_?\w*)?$", re.IGNORECASE)))


NORMALIZED = re.compile(r"normali[sz]ed|x̂", re.IGNORECASE)


def stat_claim(kind: str, printed, data, line: int, source: str, block: int, label: str) -> Check | None:
    """``printed`` (number, or one number per column of a 2-D ``data``) as the mean / variance / std."""
    rows = _rows(data)
    if rows is None:
        return None
    if len(rows) == 1:
        groups = [rows[0]]
    elif isinstance(printed, list) and len(printed) == len(rows[0]):
        groups = [[r[j] for r in rows] for j in range(len(rows[0]))]
    else:
        return None
    claimed = printed if isinstance(printed, list) else [printed]
    if len(claimed) != len(groups) or not all(isinstance(c, Printed) for c in claimed):
        return None
    what = f"{kind} of {_text(groups[0]) if len(groups) == 1 else _text(data) + ' per column'}"
    if kind == "mean":
        exact = [mean([p.value for p in g]) for g in groups]
        return _check(line, source, what, printed, exact if isinstance(printed, list) else exact[0], block=block,
                      op="batchnorm")
    results = {}
    for name, ddof in (("population", 0), ("sample", 1)):
        if all(len(g) > ddof for g in groups):
            if kind == "variance":
                exact = [variance([p.value for p in g], ddof) for g in groups]
            else:
                exact = [std_candidates([p.value for p in g])[name] for g in groups]
            results[name] = _check(line, source, what, printed, exact if isinstance(printed, list) else exact[0],
                                   block=block, op="batchnorm")
    rank = {AGREES: 0, LAST_DIGIT: 1, WRONG: 2}
    best = min(results.values(), key=lambda c: rank[c.verdict])
    matching = [n for n, c in results.items() if c.verdict != WRONG]
    others = ", ".join(f"{n} {c.certified}" for n, c in results.items())
    note = (f"{' and '.join(matching)} convention matches ({others})" if matching
            else f"neither convention matches ({others})")
    return Check(best.line, source, f"{label or kind}: {what}", best.printed,
                 results[matching[0]].certified if matching else best.certified, best.verdict, note, "batchnorm", block)


def normalized_claim(printed, data, eps: Printed | None, line, source, block) -> Check | None:
    rows = _rows(data)
    if rows is None or len(rows) != 1 or not isinstance(printed, list) or len(printed) != len(rows[0]):
        return None
    if not all(isinstance(p, Printed) for p in printed):
        return None
    op = get_op("batchnorm")
    e = float(eps.value) if eps is not None else float(op.scalars.get("eps", 0.0))
    exact = op_slice("batchnorm", x=_floats(rows[0]), gamma=[1.0], beta=[0.0], eps=e)
    return _check(line, source, f"normalized {_text(rows[0])} (γ = 1, β = 0, ε = {e:g})", printed, exact,
                  op="batchnorm", block=block)


def stat_kind(label: str) -> str | None:
    base = label.strip().split(":")[-1].strip()
    if "running" in label.lower():
        return None
    for kind, pattern in STATS:
        if pattern.search(base):
            return kind
    return None
