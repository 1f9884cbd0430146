"""Numbers as a document prints them: exact decimal value plus the unit of the last printed digit.

A printed number ``p`` with unit ``u`` (``0.0900`` → u = 1e-4; ``1.97 × 10^434`` → u = 1e432) stands for
every value in ``[p − u/2, p + u/2]``.  The agreement rule used everywhere in the audit:

* **agrees**      |p − v| ≤ u/2           (``p`` is ``v`` correctly rounded at the printed precision);
* **last digit**  u/2 < |p − v| ≤ u       (off by less than one unit in the last place: what rounding the
                                           intermediate results of a hand calculation produces; reported,
                                           not counted as wrong unless ``strict``);
* **wrong**       |p − v| > u.

Comparing two printed numbers (a code block's "Output" against what the code prints now) neither is
exact: they agree when |p − q| ≤ (u_p + u_q)/2, the widest gap two roundings of one value can have.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

import mpmath

__all__ = ["Printed", "NUMBER", "parse_number", "find_numbers", "parse_array", "find_arrays", "verdict",
           "pair_verdict", "AGREES", "LAST_DIGIT", "WRONG", "fmt"]

AGREES, LAST_DIGIT, WRONG = "agrees", "last digit", "wrong"

# A decimal number, optionally in scientific notation; not part of an identifier (z₁, W2, x3).
NUMBER = r"(?<![\w.])[-−]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w])"
_NUMBER_RE = re.compile(NUMBER)
_SPECIAL_RE = re.compile(r"(?<![\w.])[-−]?(?:nan|inf)(?![\w])")


@dataclass(frozen=True)
class Printed:
    """A printed number: ``text`` as printed, ``value`` its exact decimal value, ``unit`` the place value
    of its last printed digit (both exact rationals)."""
    text: str
    value: Fraction
    unit: Fraction

    @property
    def half(self) -> Fraction:
        return self.unit / 2

    def __float__(self) -> float:
        return float(self.value)


def parse_number(text: str) -> Printed | None:
    """``"0.0900"``, ``"-2.9802e-08"``, ``"12"``, ``"−1.5"`` → :class:`Printed`; anything else → None."""
    t = text.strip().replace("−", "-")
    m = re.fullmatch(r"([-+]?)(\d*)(?:\.(\d*))?(?:[eE]([-+]?\d+))?", t)
    if not m or not (m.group(2) or m.group(3)):
        return None
    sign, whole, frac, exp = m.group(1), m.group(2) or "0", m.group(3) or "", int(m.group(4) or 0)
    digits = int(whole + frac)
    scale = exp - len(frac)
    value = Fraction(digits) * Fraction(10) ** scale
    return Printed(text.strip(), -value if sign == "-" else value, Fraction(10) ** scale)


def find_numbers(text: str) -> list[Printed]:
    """Every number printed in ``text``, left to right."""
    return [parse_number(m.group()) for m in _NUMBER_RE.finditer(text)]


_ARRAY_BODY = re.compile(r"^[\s\[\],]*$")


def parse_array(text: str):
    """A bracketed list as printed by Python, numpy or torch (commas optional) → nested lists of
    :class:`Printed`; None when it holds anything but numbers (names, ``...``, expressions)."""
    body = text.strip()
    if not body.startswith("["):
        return None
    if _ARRAY_BODY.match(_NUMBER_RE.sub(" ", _SPECIAL_RE.sub(" ", body))) is None:
        return None
    if _SPECIAL_RE.search(body):
        return None
    stack = [[]]
    for m in re.finditer(r"\[|\]|" + NUMBER, body):
        tok = m.group()
        if tok == "[":
            stack.append([])
        elif tok == "]":
            if len(stack) < 2:
                return None
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(parse_number(tok))
    if len(stack) != 1 or len(stack[0]) != 1:
        return None
    out = stack[0][0]
    return out if _rectangular(out) else None


def _rectangular(a) -> bool:
    if not a:
        return False
    if all(isinstance(x, Printed) for x in a):
        return True
    if not all(isinstance(x, list) for x in a):
        return False
    return len({len(x) for x in a}) == 1 and all(_rectangular(x) for x in a)


def find_arrays(text: str) -> list[tuple[int, int, list]]:
    """Every complete top-level bracketed array of numbers in ``text``: (start, end, array)."""
    out, depth, start = [], 0, None
    for i, ch in enumerate(text):
        if ch == "[":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "]" and depth:
            depth -= 1
            if depth == 0:
                arr = parse_array(text[start:i + 1])
                if arr is not None:
                    out.append((start, i + 1, arr))
    return out


def _to_fraction(v) -> Fraction | None:
    if isinstance(v, Fraction):
        return v
    if isinstance(v, Printed):
        return v.value
    if isinstance(v, int):
        return Fraction(v)
    if not isinstance(v, mpmath.mpf):       # mpf(·) would round an existing mpf to the working precision
        v = mpmath.mpf(v)
    if not mpmath.isfinite(v):
        return None
    sign, man, exp, _ = v._mpf_              # exact binary value: (-1)^sign · man · 2^exp
    return (-1) ** sign * Fraction(int(man)) * (Fraction(2) ** int(exp))


def verdict(printed: Printed, exact) -> str:
    """The rule of the module docstring for a printed number against an exact value (Fraction, int or
    mpmath number correct far beyond the printed digits)."""
    v = _to_fraction(exact)
    if v is None:
        return WRONG
    err = abs(printed.value - v)
    slack = abs(v) * Fraction(1, 10 ** 30)           # the reference's own (certified, tiny) error
    if err <= printed.half + slack:
        return AGREES
    if err <= printed.unit + slack:
        return LAST_DIGIT
    return WRONG


def pair_verdict(expected: Printed, actual: Printed, extra=Fraction(0)) -> str:
    """Two printed numbers that should be roundings of one value (``extra``: a further allowed gap)."""
    err = abs(expected.value - actual.value)
    return AGREES if err <= (expected.unit + actual.unit) / 2 + extra else WRONG


def worst(verdicts) -> str:
    vs = list(verdicts)
    return WRONG if WRONG in vs else LAST_DIGIT if LAST_DIGIT in vs else AGREES


def fmt(v, digits: int = 6) -> str:
    """A certified value shown with ``digits`` significant digits (deterministic text)."""
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt(x, digits) for x in v) + "]"
    if isinstance(v, Fraction):
        if v.denominator == 1:
            return str(v.numerator)
        v = mpmath.mpf(v.numerator) / v.denominator
    return mpmath.nstr(mpmath.mpf(v), digits, min_fixed=-6, max_fixed=12)
