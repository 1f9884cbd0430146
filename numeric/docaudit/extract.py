"""Claims written in a document's prose, text blocks and tables, recognised and recomputed.

Two mechanisms, both driven by the printed text only (never by code):

* **Arithmetic chains** — ``Loss = −log(0.828) = −(−0.189) = 0.189``, ``P(A) = 66.7 / 429.8 = 0.155``,
  ``σ²_B = [...] / 4 = 4.6106 / 4 = 1.1527`` (continued on lines that start with ``=``): every bare number
  (or list of numbers) is checked against the nearest arithmetic expression before it in the chain,
  evaluated exactly by :mod:`.arith`.  Segments joined by ``≈`` are not judged.
* **Labelled values in context** — a small reading context, reset at every heading, remembers the
  logits (``z = [...]``, ``Logits: [...]``, ``Z = [ rows ]``, ``z/T = [...]``), the temperature ``T``,
  the labels ``y``, ε, the ``Sample k`` being discussed and the last data vector.  Then
  ``Softmax: [...]`` / ``softmax(z) = [...]`` / ``s = [...]`` are softmax claims, ``Exponentials`` and
  their ``Sum`` are exp claims, ``Gradient`` is a cross-entropy-backward claim, ``z/T`` is checked
  against z / T, and ``mean`` / ``std`` / ``σ²`` / ``Normalized`` next to a data vector are statistics
  and batch-norm claims (both variance conventions are tried; the note says which one matches).
  Tables work the same way: the column holding vectors is the data, other columns are recognised by
  their header (μ / mean, σ² / var, σ / std, normalized / x̂).

Which label means which op is the data table :data:`LABELS`; ops are evaluated through
:func:`.certified.op_slice` (the certified reference), statistics with exact fractions.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

import mpmath

from derive import get_op

from . import arith
from .certified import mean, op_slice, std_candidates, variance
from .checks import Check
from .printed import AGREES, LAST_DIGIT, WRONG, NUMBER, Printed, fmt, parse_array, parse_number, verdict

__all__ = ["inline_claims", "table_claims", "LABELS"]

#: label pattern (searched in the label text) → the claim it makes about the context's logits.
LABELS = (
    ("softmax", re.compile(r"softmax|probabilit|^probs$|(?:^|\W)(?:s|ŷ|Ŷ|p)$", re.IGNORECASE)),
    ("cross_entropy_backward", re.compile(r"gradient|∂L/∂[zZ]|dL/d[zZ]", re.IGNORECASE)),
    ("exp", re.compile(r"exponentials|^exp\(z\)$|^e\^z$", re.IGNORECASE)),
)
_LOGITS = re.compile(r"(?:^|\W)(?:z|Z|logits?)$|^logits?\b", re.IGNORECASE)
_SCALED = re.compile(r"(?:^|\W)z\s*/\s*T$")
_SHIFTED = re.compile(r"(?:^|\W)z\s*-\s*max(?:\s*\(z\))?$")
_LABELS_Y = re.compile(r"(?:^|\W)[yY]$|true label", re.IGNORECASE)
_STATS = (("variance", re.compile(r"^(?:σ²|sigma\^?2|var(?:iance)?)(?:_?\w*)?$|variance", re.IGNORECASE)),
          ("std", re.compile(r"^(?:σ|sigma|std|standard deviation)(?:_?\w*)?$", re.IGNORECASE)),
          ("mean", re.compile(r"^(?:μ|mu|mean|average)(?:_?\w*)?$", re.IGNORECASE)))
_NORMALIZED = re.compile(r"normali[sz]ed|x̂", re.IGNORECASE)
_EPS = re.compile(r"(?:ε|\beps(?:ilon)?)\s*=\s*(" + NUMBER + ")")
_T = re.compile(r"\bT\s*=\s*(" + NUMBER + ")")
_SAMPLE = re.compile(r"^[\W_]*sample\s+(\d+)\b", re.IGNORECASE)
_INLINE_SOFTMAX = re.compile(r"softmax\s*\(\s*(\[[^\]]*\])\s*(?:/\s*(" + NUMBER + r")\s*)?\)", re.IGNORECASE)
_PROSE_ARRAY = re.compile(r"([^\s=≈:,;]+(?:\([^()]*\))?)\s*[=≈]\s*(\[[^\[\]]*\])")
_SUBSCRIPT = str.maketrans("₀₁₂₃₄₅₆₇₈₉", "0123456789")
_INDEXED = re.compile(r"^\s*z_?([₀-₉]+|\d+)\s*=\s*(" + NUMBER + r")(?!\s*[-+*/×·^])")
_P_OF = re.compile(r"^\s*P\s*\((?:[^()]*?\s)?(\d+)\)\s*=")
_SCI = re.compile(r"^\s*(" + NUMBER + r")\s*[×x*]\s*10\s*\^\s*([-−]?\d+)\s*$")


@dataclass
class _Context:
    logits: list | None = None         # rows of Printed
    base_z: list | None = None
    T: Printed | None = None
    y: list | None = None              # rows of Printed
    row: int | None = None
    exps: tuple | None = None          # (line, exact exponentials of the current row)
    data: tuple | None = None          # (line, array)
    eps: Printed | None = None
    indexed: dict = field(default_factory=dict)   # z₀ = 2.1, z₁ = 0.5, … (one per line)
    block: int = 0

    def logits_row(self):
        if not self.logits:
            return None, None
        if len(self.logits) == 1:
            return self.logits[0], 0
        if self.row is not None and self.row < len(self.logits):
            return self.logits[self.row], self.row
        return None, None


@dataclass
class _Segment:
    text: str
    line: int
    approx_before: bool = False


@dataclass
class _Labelled:
    label: str
    value: object          # Printed, or nested list of Printed
    line: int
    from_chain: bool = False
    row_lines: tuple = ()      # line of each row of a matrix printed one row per line


# ------------------------------------------------------------------ text helpers

def _strip_annotation(text: str) -> str:
    """``0.659 (65.9%)``, ``0.769 ← Dominant!``, ``24 normalizations``, ``1.000 ✓`` → the value part."""
    t = re.split(r"←|→|✓|✗|#|\bwhere\b", text)[0]
    t = re.sub(r"\(\s*[\d.]+\s*%\s*\)", "", t)
    t = re.sub(r"\((?=[^()]*[A-Za-z!?])[^()]*\)\s*$", "", t.strip())          # (OVERFLOW!), (uniform)
    t = t.strip().rstrip(".,;:!")
    m = re.match(r"^(" + NUMBER + r")\s+[A-Za-z].*$", t)                        # 24 normalizations
    return m.group(1) if m else t.strip()


def _pure(text: str):
    """A bare printed number or array of numbers (after annotations are stripped), else None."""
    t = _strip_annotation(text)
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


def _split_top(text: str, seps: str) -> list[tuple[str, str]]:
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


def _equations(text: str) -> list[str]:
    pieces = [p for p, _ in _split_top(text, ",")]
    if len(pieces) > 1 and sum("=" in p for p in pieces) >= 2 and all("=" in p for p in pieces if p.strip()):
        return pieces
    return [text]


def _rows(a):
    if isinstance(a, Printed):
        return None
    if a and isinstance(a[0], Printed):
        return [a]
    if a and all(isinstance(r, list) and r and isinstance(r[0], Printed) for r in a):
        return a
    return None


def _text(a) -> str:
    return a.text if isinstance(a, Printed) else "[" + ", ".join(_text(x) for x in a) + "]"


def _floats(row) -> list[float]:
    return [float(p.value) for p in row]


def _sig(p: Printed) -> int:
    digits = len(re.sub(r"[^0-9]", "", p.text.split("e")[0].split("E")[0]).lstrip("0")) or 1
    return digits + 2


# ------------------------------------------------------------------ claims

def _check(line, source, what, printed, exact, *, op="", block=0, note="") -> Check:
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
    return Check(line, source, what, _text(printed), fmt(list(flat_e), digits), v, note, op, block)


def _flatten(a):
    if isinstance(a, (list, tuple)):
        return [x for sub in a for x in _flatten(sub)]
    return [a]


_LOSS = re.compile(r"loss|(?:^|\W)L[₀-₉\d]*$", re.IGNORECASE)


def _arithmetic_tail(text: str) -> str:
    """The longest arithmetic expression ending a prose segment ("and −log(0.5)" → "−log(0.5)"), or ""."""
    t = _strip_annotation(text)
    for m in re.finditer(r"(?:^|\s)(?=\S)", t):
        tail = t[m.end():]
        if re.search(r"\d", tail) and arith.is_arithmetic(tail):
            return tail
    return ""


def _chain_claims(segments: list[_Segment], source: str, block: int, label: str = "") -> list[Check]:
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
                    segments[0] = _Segment(tail, segments[0].line, segments[0].approx_before)
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


def _stat_claim(kind: str, printed, data, line: int, source: str, block: int, label: str) -> Check | None:
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


def _normalized_claim(printed, data, eps: Printed | None, line, source, block) -> Check | None:
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


def _stat_kind(label: str) -> str | None:
    base = label.strip().split(":")[-1].strip()
    if "running" in label.lower():
        return None
    for kind, pattern in _STATS:
        if pattern.search(base):
            return kind
    return None


# ------------------------------------------------------------------ the reader

def _labelled_values(line_text: str, line_no: int, continuation: list[tuple[int, str]]):
    """Split one logical line into equations → (segments per equation, labelled values)."""
    prefix = ""
    text = line_text
    m = re.match(r"^\s*([^=\[\]()\d−-][^=\[\]]*?):\s*(.*)$", text)
    if m:
        prefix, text = m.group(1).strip(" *_"), m.group(2)
    equations = _equations(text)
    chains, labelled = [], []
    for k, eq in enumerate(equations):
        parts = _split_top(eq, "=≈")
        segs = [_Segment(p, line_no, sep == "≈") for p, sep in parts]
        if k == len(equations) - 1:
            for n, cont in continuation:
                more = _split_top(cont.strip()[1:], "=≈")
                segs.append(_Segment(more[0][0], n, False))
                segs += [_Segment(p, n, sep == "≈") for p, sep in more[1:]]
        first = segs[0].text.strip(" *_")
        chains.append((segs, first if not arith.is_arithmetic(first) else prefix))
        label = first if (_pure(first) is None and not arith.is_arithmetic(first)) else ""
        if not label and len(segs) == 1:
            label = prefix
        elif prefix and label:
            label = f"{prefix}: {label}"
        elif prefix and not label:
            label = prefix
        values = [(s, _pure(s.text)) for s in segs[1:] if _pure(s.text) is not None] if len(segs) > 1 else \
                 [(segs[0], _pure(segs[0].text))] if prefix and _pure(segs[0].text) is not None else []
        clean = all(_pure(x.text) is not None or arith.is_arithmetic(_strip_annotation(x.text)) for x in segs[1:])
        if values and clean:
            seg, val = values[0]
            labelled.append(_Labelled(label, val, seg.line, from_chain=len(segs) > 2 or
                                      any(arith.is_arithmetic(_strip_annotation(s.text)) for s in segs)))
    if not labelled and not continuation:
        for m in _PROSE_ARRAY.finditer(line_text):      # "For z = [2, 1, 0.1] we get softmax(z) ≈ [0.66, …]."
            value = parse_array(m.group(2))
            if value is not None:
                labelled.append(_Labelled(m.group(1), value, line_no))
    return chains, labelled


def inline_claims(doc, skip_lines: set[int]) -> list[Check]:
    """Claims in every line of ``doc`` except ``skip_lines`` (Python code and its Output blocks)."""
    lines = doc.lines
    fence_of = {}
    for f in doc.fences:
        for n in range(f.line, f.end + 1):
            fence_of[n] = f.line
    ctx = _Context()
    out = []
    n = 1
    while n <= len(lines):
        raw = lines[n - 1]
        if n in skip_lines:
            n += 1
            continue
        in_fence = n in fence_of
        if not in_fence and re.match(r"^\s{0,3}#{1,6}\s", raw):
            ctx = _Context()
            n += 1
            continue
        if in_fence and fence_of[n] == n:            # the opening fence line itself
            n += 1
            continue
        block = fence_of.get(n, 0)
        text = re.sub(r"\s+#\s.*$", "", raw) if in_fence else raw
        text = text.replace("**", "").replace("`", "")
        # a multi-line array ("Z = [" … "]")
        consumed_to, row_lines = n, ()
        if text.count("[") > text.count("]"):
            depth, j, joined = text.count("[") - text.count("]"), n, text
            while depth > 0 and j < len(lines) and j - n < 40:
                j += 1
                nxt = re.sub(r"\s+#.*$", "", lines[j - 1])
                joined += " " + nxt.strip()
                depth += nxt.count("[") - nxt.count("]")
            if depth == 0:
                text, consumed_to = joined, j
                row_lines = tuple(k for k in range(n + 1, j + 1) if re.match(r"^\s*\[\s*[-−\d.]", lines[k - 1]))
        # continuation lines ("     = 0.189")
        cont = []
        j = consumed_to
        while j < len(lines) and re.match(r"^\s*=(?!=)", lines[j]) and (j + 1) not in skip_lines:
            cont.append((j + 1, re.sub(r"\s+#\s.*$", "", lines[j]).replace("**", "")))
            j += 1
        _observe_scalars(ctx, text)
        ms = _SAMPLE.match(text)
        if ms and ctx.logits and len(ctx.logits) > 1:
            ctx.row = int(ms.group(1)) - 1
        mi = _INDEXED.match(text)
        if mi:
            ctx.indexed[int(mi.group(1).translate(_SUBSCRIPT))] = parse_number(mi.group(2))
        chains, labelled = _labelled_values(text, n, cont)
        for segs, chain_label in chains:
            found = _chain_claims(segs, "inline", block, chain_label)
            out += found or _indexed_claim(ctx, text, segs, block)
        for lv in labelled:
            lv.row_lines = row_lines
            out += _context_claims(ctx, lv, "inline", block)
        if re.search(r"\[[^\]]*(?:\.\.\.|…)", text):
            ctx.data = None
        n = max(j, consumed_to) + 1
    return out


def _indexed_claim(ctx: _Context, text: str, segs: list[_Segment], block: int) -> list[Check]:
    """``P(digit 2) = e^5.3 / (...) = 0.740`` against the softmax of the logits listed as z₀ = …, z₁ = …"""
    m = _P_OF.match(text)
    if not m or len(ctx.indexed) < 2:
        return []
    keys = sorted(ctx.indexed)
    if keys != list(range(keys[0], keys[0] + len(keys))) or int(m.group(1)) not in ctx.indexed:
        return []
    printed = _pure(segs[-1].text)
    if not isinstance(printed, Printed):
        return []
    z = [ctx.indexed[k] for k in keys]
    pos = keys.index(int(m.group(1)))
    exact = op_slice("softmax", z=_floats(z))[pos]
    return [_check(segs[-1].line, "inline", f"softmax({_text(z)})[{pos}]", printed, exact, op="softmax", block=block)]


def _observe_scalars(ctx: _Context, text: str):
    m = _T.search(text)
    if m:
        ctx.T = parse_number(m.group(1))
    m = _EPS.search(text)
    if m:
        ctx.eps = parse_number(m.group(1))


def _context_claims(ctx: _Context, lv: _Labelled, source: str, block: int) -> list[Check]:
    label, value, line = lv.label.strip(), lv.value, lv.line
    tail = label.split(":")[-1].strip()
    rows = _rows(value) if not isinstance(value, Printed) else None
    out = []
    if rows is not None and _SCALED.search(tail):
        if ctx.base_z and ctx.T is not None and len(rows) == 1 and len(rows[0]) == len(ctx.base_z[0]):
            exact = [p.value / ctx.T.value for p in ctx.base_z[0]]
            out.append(_check(line, source, f"z/T for z = {_text(ctx.base_z[0])}, T = {ctx.T.text}", rows[0], exact,
                              block=block))
        ctx.logits, ctx.row, ctx.exps = rows, None, None
        return out
    if rows is not None and (_LOGITS.search(tail) or _SHIFTED.search(tail) or re.match(r"logits?\b", label, re.I)):
        ctx.logits, ctx.row, ctx.exps = rows, None, None
        if not _SHIFTED.search(tail):
            ctx.base_z = rows
        return out
    if rows is not None and _LABELS_Y.search(tail):
        ctx.y = rows
        return out
    kind = _stat_kind(tail) if not lv.from_chain else None
    if kind and ctx.data is not None and line - ctx.data[0] <= 3:
        c = _stat_claim(kind, value, ctx.data[1], line, source, block, tail)
        return [c] if c else []
    if rows is not None and _NORMALIZED.search(tail) and ctx.data is not None and not lv.from_chain:
        c = _normalized_claim(rows[0] if len(rows) == 1 else value, ctx.data[1], ctx.eps, line, source, block)
        return [c] if c else []
    if lv.from_chain:
        return out
    m = _INLINE_SOFTMAX.search(tail)
    if m and rows is not None and len(rows) == 1:            # softmax([1, 2, 3]) = […], softmax([…] / 2) = […]
        z = parse_array(m.group(1))
        t = parse_number(m.group(2)) if m.group(2) else None
        if z is not None and _rows(z) is not None and len(_rows(z)) == 1 and len(z) == len(rows[0]) and (
                t is None or t.value > 0):
            exact = op_slice("softmax", z=[float(p.value / (t.value if t else 1)) for p in z])
            what = f"softmax({_text(z)}{' / ' + t.text if t else ''})"
            return [_check(line, source, what, rows[0], exact, op="softmax", block=block)]
    for name, pattern in LABELS:
        if not pattern.search(tail):
            continue
        if name == "exp" or name == "softmax" or name == "cross_entropy_backward":
            out += _logit_claim(ctx, name, value, rows, line, source, block, lv.row_lines)
            return out
    if isinstance(value, Printed) and re.fullmatch(r"sum", tail, re.IGNORECASE) and ctx.exps and line - ctx.exps[0] <= 3:
        exact = sum(ctx.exps[1])
        return [_check(line, source, "sum of the exponentials above", value, exact, block=block)]
    if rows is not None:
        ctx.data = (line, value)
    return out


def _logit_claim(ctx, name, value, rows, line, source, block, row_lines=()) -> list[Check]:
    if rows is None or not ctx.logits:
        return []
    if len(rows) > 1:
        if len(rows) != len(ctx.logits) or any(len(r) != len(z) for r, z in zip(rows, ctx.logits)):
            return []
        pairs = list(enumerate(zip(ctx.logits, rows)))
    else:
        z, k = ctx.logits_row()
        if z is None or len(z) != len(rows[0]):
            return []
        pairs = [(k, (z, rows[0]))]
    out = []
    for k, (z, printed) in pairs:
        if len(rows) > 1 and len(row_lines) == len(rows):
            line = row_lines[k]
        if name == "exp":
            with mpmath.workdps(40):
                exact = [mpmath.exp(mpmath.mpf(p.text.replace("−", "-"))) for p in z]
            ctx.exps = (line, exact)
            out.append(_check(line, source, f"exp of {_text(z)}", printed, exact, block=block))
        elif name == "softmax":
            exact = op_slice("softmax", z=_floats(z))
            out.append(_check(line, source, f"softmax({_text(z)})", printed, exact, op="softmax", block=block))
        else:
            if not ctx.y:
                continue
            y = ctx.y[k] if len(ctx.y) > k else ctx.y[0] if len(ctx.y) == 1 else None
            if y is None or len(y) != len(z):
                continue
            exact = op_slice("cross_entropy_backward", z=_floats(z), y=_floats(y))
            out.append(_check(line, source, f"∂L/∂z for z = {_text(z)}, y = {_text(y)}", printed, exact,
                              op="cross_entropy_backward", block=block))
    return out


# ------------------------------------------------------------------ tables

_ROLES = (("variance", re.compile(r"σ²|\bvar", re.IGNORECASE)), ("normalized", _NORMALIZED),
          ("std", re.compile(r"σ|\bstd\b|std\.? ?dev", re.IGNORECASE)), ("mean", re.compile(r"μ|\bmean\b", re.IGNORECASE)))


def table_claims(table) -> list[Check]:
    """Statistics and normalized values in a pipe table whose rows hold a data vector."""
    roles = []
    for h in table.header:
        roles.append(next((name for name, p in _ROLES if p.search(h)), None))
    data_col = None
    for c, role in enumerate(roles):
        if role is None and any(c < len(cells) and parse_array(_clean_cell(cells[c])) for _, cells in table.rows):
            data_col = c
            break
    if data_col is None:
        return []
    out = []
    for line, cells in table.rows:
        if data_col >= len(cells):
            continue
        data = parse_array(_clean_cell(cells[data_col]))
        if data is None or _rows(data) is None:
            continue
        for c, role in enumerate(roles):
            if role is None or c >= len(cells):
                continue
            printed = _pure(_clean_cell(cells[c]))
            if printed is None:
                continue
            label = _clean_cell(table.header[c])
            if role == "normalized":
                claim = _normalized_claim(printed, data, None, line, "table", table.line)
            else:
                claim = _stat_claim(role, printed, data, line, "table", table.line, label)
            if claim is not None:
                out.append(claim)
    return out


def _clean_cell(cell: str) -> str:
    return cell.replace("**", "").replace("`", "").strip()
