"""Internal consistency of a printed output that cannot be reproduced (random data, training, downloads).

The output is read as labelled items (``Probabilities: [...]``, ``Input:`` followed by a ``tensor(...)``,
``Digit 7: 0.9234``), grouped in sections (``Sample 0:``).  Checked, each with the rounding of the
printed inputs propagated into the tolerance:

* every row of a probability array lies in [0, 1] and sums to 1 (within the sum of half-units);
* a probability array against the softmax (certified reference) of the logits printed in the same
  section, and ``Digit k: p`` lines against entry k of it.  The printed logits stand for a box of
  half-width δ (their half-unit); s_k is increasing in z_k and decreasing in the others, so over the box
  it ranges exactly over [s_k(z_k − 2δ), s_k(z_k + 2δ)] (softmax ignores a common shift).  ``p`` agrees
  when it lies within u_p/2 of that range;
* a ``Loss`` printed in a section with a probability row and a ``True label`` / ``Target`` k against
  −log p_k (the cross-entropy of that row), with p's half-unit carried through (|Δ| ≤ δ/p);
* ``X mean`` / ``X std`` / ``X var`` against the same statistic of the printed array ``X`` (per column
  when the lengths say so), population and sample conventions both tried, tolerance u/2 plus the
  propagated half-units of the entries.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

import mpmath

from .certified import mean, softmax_row, std_candidates, variance
from .checks import Check
from .printed import AGREES, WRONG, Printed, find_arrays, fmt, parse_number

__all__ = ["consistency_checks", "parse_items"]


@dataclass
class Item:
    line: int
    label: str
    value: object       # nested list of Printed, a Printed, or None (a header such as "Probabilities:")
    section: int


_SECTION = re.compile(r"^\s*(?:sample|example|item|batch|image)\s*#?\s*\d+\s*:?\s*$", re.IGNORECASE)
_LABELLED = re.compile(r"^\s*([A-Za-z][\w .'()/-]*?)\s*[:=]\s*(.*)$")


def _value(text: str):
    arrays = find_arrays(text)
    if arrays:
        return arrays[0][2]
    m = re.match(r"\s*(?:tensor\()?\s*(" + r"[-−]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?" + r")", text)
    return parse_number(m.group(1)) if m else None


def parse_items(text: str, first_line: int) -> list[Item]:
    lines = text.split("\n")
    items, section, i = [], 0, 0
    while i < len(lines):
        s = lines[i]
        if _SECTION.match(s):
            section += 1
            i += 1
            continue
        m = _LABELLED.match(s)
        if not m:
            i += 1
            continue
        label, rest = m.group(1).strip(), m.group(2)
        j = i
        if not rest.strip() and i + 1 < len(lines) and lines[i + 1].lstrip().startswith(("tensor(", "[", "array(")):
            j = i + 1
            rest = lines[j]
        if "[" in rest:                              # gather a multi-line array until brackets balance
            depth = rest.count("[") - rest.count("]")
            while depth > 0 and j + 1 < len(lines):
                j += 1
                rest += " " + lines[j]
                depth += lines[j].count("[") - lines[j].count("]")
        items.append(Item(first_line + i, label, _value(rest) if rest.strip() else None, section))
        i = j + 1
    return items


def _rows(a):
    if isinstance(a, list) and a and isinstance(a[0], Printed):
        return [a]
    return [r for sub in a for r in _rows(sub)] if isinstance(a, list) else []


def _shape(a):
    return (len(a),) + _shape(a[0]) if isinstance(a, list) else ()


def _text(a) -> str:
    if isinstance(a, Printed):
        return a.text
    return "[" + ", ".join(_text(x) for x in a) + "]"


def consistency_checks(text: str, first_line: int, block: int) -> list[Check]:
    items = parse_items(text, first_line)
    checks = []
    checks += _probability_rows(items, block)
    checks += _softmax_of_logits(items, block)
    checks += _statistics(items, block)
    checks += _loss_of_probabilities(items, block)
    return sorted(checks, key=lambda c: c.line)


def _is_prob(label: str) -> bool:
    return re.search(r"prob|softmax", label, re.IGNORECASE) is not None


def _probability_rows(items, block):
    out = []
    for it in items:
        if not (_is_prob(it.label) and isinstance(it.value, list)):
            continue
        bad = []
        for row in _rows(it.value):
            total = sum(p.value for p in row)
            slack = sum(p.half for p in row)
            if abs(total - 1) > slack or any(p.value < 0 or p.value > 1 for p in row):
                bad.append(f"{float(total):.4g}")
        out.append(Check(it.line, "consistency", f"{it.label}: each row sums to 1", _text(it.value)[:80],
                         "1", WRONG if bad else AGREES, note=("rows sum to " + ", ".join(bad)) if bad else "",
                         block=block))
    return out


def _softmax_of_logits(items, block):
    out = []
    logits = {}
    for it in items:
        if re.search(r"logit", it.label, re.IGNORECASE) and isinstance(it.value, list):
            rows = _rows(it.value)
            logits[it.section] = rows
            continue
        rows = logits.get(it.section)
        if not rows:
            continue
        if _is_prob(it.label) and isinstance(it.value, list):
            probs = _rows(it.value)
            if len(probs) != len(rows) or any(len(p) != len(z) for p, z in zip(probs, rows)):
                continue
            bad, certified = [], []
            for z, p in zip(rows, probs):
                s = softmax_row([float(v.value) for v in z])
                certified.append(s)
                bad += [f"{pk.text} (softmax {fmt(sk, 4)})" for k, (pk, sk) in enumerate(zip(p, s))
                        if not _close(pk, z, k)]
            out.append(Check(it.line, "consistency", f"{it.label} = softmax(logits printed above)",
                             _text(it.value)[:80], fmt(certified[0] if len(certified) == 1 else certified, 4)[:80],
                             WRONG if bad else AGREES, note=("; ".join(bad[:4])) if bad else "", op="softmax",
                             block=block))
        m = re.fullmatch(r"(?:digit|class|label)\s+(\d+)", it.label, re.IGNORECASE)
        if m and isinstance(it.value, Printed) and len(rows) == 1 and int(m.group(1)) < len(rows[0]):
            z = rows[0]
            k = int(m.group(1))
            s = softmax_row([float(v.value) for v in z])[k]
            ok = _close(it.value, z, k)
            out.append(Check(it.line, "consistency", f"{it.label}: softmax(logits printed above)[{k}]",
                             it.value.text, fmt(s, 4), AGREES if ok else WRONG, op="softmax", block=block))
    return out


def _loss_of_probabilities(items, block):
    out = []
    sections = {}
    for it in items:
        sections.setdefault(it.section, []).append(it)
    for group in sections.values():
        probs = next((x for x in group if _is_prob(x.label) and isinstance(x.value, list) and len(_rows(x.value)) == 1), None)
        target = next((x for x in group if re.search(r"true label|target|label$", x.label, re.IGNORECASE)
                       and isinstance(x.value, Printed) and x.value.value.denominator == 1), None)
        if probs is None or target is None:
            continue
        row, k = _rows(probs.value)[0], int(target.value.value)
        if not 0 <= k < len(row) or row[k].value <= 0:
            continue
        for it in group:
            if re.search(r"loss", it.label, re.IGNORECASE) and isinstance(it.value, Printed):
                p = row[k]
                with mpmath.workdps(30):
                    exact = -mpmath.log(mpmath.mpf(p.value.numerator) / p.value.denominator)
                tol = float(it.value.half) + float(p.half) / float(p.value) * 1.01 + 1e-15
                ok = abs(float(it.value.value) - float(exact)) <= tol
                out.append(Check(it.line, "consistency", f"{it.label} = −log p[{k}] of the printed {probs.label}",
                                 it.value.text, fmt(exact, 5), AGREES if ok else WRONG, op="cross_entropy",
                                 block=block))
    return out


def _close(p: Printed, z: list[Printed], k: int) -> bool:
    """Is printed probability ``p`` entry ``k`` of the softmax of some logits the printed ``z`` stand for?"""
    delta = 2 * float(max(v.half for v in z))
    zs = [float(v.value) for v in z]
    lo = softmax_row(zs[:k] + [zs[k] - delta] + zs[k + 1:])[k]
    hi = softmax_row(zs[:k] + [zs[k] + delta] + zs[k + 1:])[k]
    half = float(p.half) + 1e-15
    return float(lo) - half <= float(p.value) <= float(hi) + half


_STAT = re.compile(r"^(.*?)\s*\b(mean|average|std|standard deviation|var|variance)$", re.IGNORECASE)


def _statistics(items, block):
    out = []
    for idx, it in enumerate(items):
        m = _STAT.match(it.label)
        if not m or it.value is None:
            continue
        base, stat = m.group(1).strip().lower(), m.group(2).lower()
        source = next((x for x in reversed(items[:idx]) if x.label.lower() == base and isinstance(x.value, list)), None)
        if source is None:
            continue
        claimed = it.value if isinstance(it.value, list) else [it.value]
        if not all(isinstance(c, Printed) for c in claimed):
            continue
        groups = _groups(source.value, len(claimed))
        if groups is None:
            continue
        verdicts, shown, conventions = [], [], set()
        for c, g in zip(claimed, groups):
            ok, value, conv = _stat_agrees(stat, c, g)
            verdicts.append(ok)
            shown.append(value)
            conventions |= conv
        note = f"{stat} of the printed {source.label!r} (line {source.line})"
        if stat not in ("mean", "average"):
            note += "; convention that matches: " + (" and ".join(sorted(conventions)) if conventions
                                                     else "neither population nor sample")
        out.append(Check(it.line, "consistency", f"{it.label} of the printed {source.label}", _text(claimed),
                         "[" + ", ".join(shown) + "]", AGREES if all(verdicts) else WRONG, note=note, block=block))
    return out


def _groups(array, n):
    """The printed array cut into ``n`` groups the statistic runs over (columns, rows, or all)."""
    shape = _shape(array)
    if len(shape) == 1 and n == 1:
        return [array]
    if len(shape) == 2:
        if shape[1] == n:
            return [[row[j] for row in array] for j in range(n)]
        if shape[0] == n:
            return array
    return None


def _stat_agrees(stat: str, claimed: Printed, group: list[Printed]):
    values = [p.value for p in group]
    delta = max(p.half for p in group)
    n = len(values)
    if stat in ("mean", "average"):
        mu = mean(values)
        return abs(claimed.value - mu) <= claimed.half + delta, fmt(mu, 5), set()
    results, texts = set(), []
    for name, ddof in (("population", 0), ("sample", 1)):
        if n <= ddof:
            continue
        if stat.startswith("var"):
            v = variance(values, ddof)
            sd = math.sqrt(float(v))
            tol = claimed.half + Fraction(2 * sd * float(delta) * math.sqrt(n / (n - ddof))) + delta ** 2 * n / (n - ddof)
            exact = mpmath.mpf(v.numerator) / v.denominator
        else:
            exact = std_candidates(values)[name]
            tol = claimed.half + delta * Fraction(math.sqrt(n / (n - ddof)))
        texts.append(f"{name} {fmt(exact, 5)}")
        if abs(float(claimed.value) - float(exact)) <= float(tol) + 1e-15:
            results.add(name)
    return bool(results), " / ".join(texts), results
