"""Claims written in a document's prose and text blocks, read with a small context.

The context, reset at every heading, remembers the logits (``z = [...]``, ``Logits: [...]``,
``Z = [ rows ]``, ``z/T = [...]``, ``z₀ = 2.1`` one per line), the temperature ``T``, the labels ``y``, ε,
the ``Sample k`` being discussed and the last data vector.  Then ``Softmax: [...]`` /
``softmax(z) = [...]`` / ``softmax([1, 2, 3]) = [...]`` / ``s = [...]`` are softmax claims,
``Exponentials`` and their ``Sum`` exp claims, ``Gradient`` a cross-entropy-backward claim, ``z/T`` is
checked against z / T, ``P(digit k) = … = p`` against entry k, and ``mean`` / ``std`` / ``σ²`` /
``Normalized`` next to a data vector go to :mod:`.stats`.  Every line's equations also go to
:mod:`.chains` (hand arithmetic); pipe tables to :mod:`.tables`.

Which label means which op is the data table :data:`LABELS`; ops are evaluated through
:func:`.certified.op_slice` (the certified reference).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import mpmath

from . import arith
from .certified import op_slice
from .chains import Segment as _Segment, chain_claims as _chain_claims
from .checks import Check
from .printed import NUMBER, Printed, parse_array, parse_number
from .stats import NORMALIZED as _NORMALIZED, normalized_claim as _normalized_claim, stat_claim as _stat_claim, \
    stat_kind as _stat_kind
from .tables import table_claims
from .values import check as _check, floats as _floats, pure as _pure, rows_of as _rows, split_top as _split_top, \
    equations as _equations, strip_annotation as _strip_annotation, text_of as _text

__all__ = ["inline_claims", "table_claims", "LABELS"]

LABELS = (
    ("softmax", re.compile(r"softmax|probabilit|^probs$|(?:^|\W)(?:s|ŷ|Ŷ|p)$", re.IGNORECASE)),
    ("cross_entropy_backward", re.compile(r"gradient|∂L/∂[zZ]|dL/d[zZ]", re.IGNORECASE)),
    ("exp", re.compile(r"exponentials|^exp\(z\)$|^e\^z$", re.IGNORECASE)),
)


_LOGITS = re.compile(r"(?:^|\W)(?:z|Z|logits?)$|^logits?\b", re.IGNORECASE)


_SCALED = re.compile(r"(?:^|\W)z\s*/\s*T$")


_SHIFTED = re.compile(r"(?:^|\W)z\s*-\s*max(?:\s*\(z\))?$")


_LABELS_Y = re.compile(r"(?:^|\W)[yY]$|true label", re.IGNORECASE)


_EPS = re.compile(r"(?:ε|\beps(?:ilon)?)\s*=\s*(" + NUMBER + ")")


_T = re.compile(r"\bT\s*=\s*(" + NUMBER + ")")


_SAMPLE = re.compile(r"^[\W_]*sample\s+(\d+)\b", re.IGNORECASE)


_INLINE_SOFTMAX = re.compile(r"softmax\s*\(\s*(\[[^\]]*\])\s*(?:/\s*(" + NUMBER + r")\s*)?\)", re.IGNORECASE)


_PROSE_ARRAY = re.compile(r"([^\s=≈:,;]+(?:\([^()]*\))?)\s*[=≈]\s*(\[[^\[\]]*\])")


_SUBSCRIPT = str.maketrans("₀₁₂₃₄₅₆₇₈₉", "0123456789")


_INDEXED = re.compile(r"^\s*z_?([₀-₉]+|\d+)\s*=\s*(" + NUMBER + r")(?!\s*[-+*/×·^])")


_P_OF = re.compile(r"^\s*P\s*\((?:[^()]*?\s)?(\d+)\)\s*=")


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
class _Labelled:
    label: str
    value: object          # Printed, or nested list of Printed
    line: int
    from_chain: bool = False
    row_lines: tuple = ()      # line of each row of a matrix printed one row per line


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
