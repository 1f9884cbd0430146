"""Hand arithmetic as worked examples print it (``e^2.0``, ``−log(0.828)``, ``(0.56 − 1.05)²``,
``√1.1528``, ``0.9 × 0.23 + 0.1 × 2.7``, ``1.97 × 10^434``, ``[0.581−1, 0.096−0]``), evaluated exactly.

The text is rewritten to Python syntax and parsed with :mod:`ast`; only number literals, + − × ÷ and
powers, unary minus, lists, and the calls ``exp``, ``log`` (natural, the ML convention), ``ln``,
``log10``, ``log2`` and ``sqrt`` are accepted — nothing is ever ``eval``-ed.  Anything else (a name, an
index, a comparison) makes the expression "not arithmetic" (None).  Values are mpmath numbers at 60
significant digits (exact decimals are converted exactly where they are integers or Fractions).
"""
from __future__ import annotations

import ast
import re

import mpmath

__all__ = ["evaluate", "is_arithmetic"]

_SUP = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")
_FUNCS = {"exp": mpmath.exp, "log": mpmath.log, "ln": mpmath.log, "log10": mpmath.log10,
          "log2": lambda x: mpmath.log(x, 2), "sqrt": mpmath.sqrt}
DPS = 60


def _to_python(text: str) -> str:
    t = text.strip().replace("−", "-").replace("×", "*").replace("·", "*").replace("÷", "/")
    t = re.sub(r"(\d),(\d{3})(?!\d)", r"\1\2", t)                         # 25,088 → 25088
    t = re.sub(r"\be\s*\^\s*\(", "exp(", t)                               # e^(−2)
    t = re.sub(r"\be\s*\^\s*\{([^{}]*)\}", r"exp(\1)", t)                 # e^{z}
    t = re.sub(r"\be\s*\^\s*(-?[\d.]+)", r"exp(\1)", t)                   # e^2.0
    t = re.sub(r"\be([⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+)", lambda m: f"exp({m.group(1).translate(_SUP)})", t)   # e³
    t = re.sub(r"([⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+)", lambda m: f"**({m.group(1).translate(_SUP)})", t)       # x²
    t = re.sub(r"√\s*([\d.]+)", r"sqrt(\1)", t)                           # √1.1528
    t = t.replace("√", "sqrt")                                            # √(…)
    t = t.replace("^", "**")
    return t


def _is_number_node(node) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float) or (
        isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) and _is_number_node(node.operand))


class _Eval:
    def __init__(self, source: str):
        self.source = source

    def literal(self, node) -> mpmath.mpf:
        text = ast.get_source_segment(self.source, node)
        return mpmath.mpf(text) if text is not None else mpmath.mpf(repr(node.value))

    def __call__(self, node):
        if isinstance(node, ast.Expression):
            return self(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return self.literal(node)
        if isinstance(node, ast.List):
            items = [self(e) for e in node.elts]
            if not items or any(isinstance(i, list) for i in items):
                raise ValueError("nested list")
            return items
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = self(node.operand)
            return _map1(lambda x: -x if isinstance(node.op, ast.USub) else x, v)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)):
            a, b = self(node.left), self(node.right)
            op = {ast.Add: lambda x, y: x + y, ast.Sub: lambda x, y: x - y, ast.Mult: lambda x, y: x * y,
                  ast.Div: lambda x, y: x / y, ast.Pow: _power}[type(node.op)]
            return _map2(op, a, b)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS
                and len(node.args) == 1 and not node.keywords):
            return _map1(_FUNCS[node.func.id], self(node.args[0]))
        raise ValueError(f"not arithmetic: {type(node).__name__}")


def _power(x, y):
    if abs(y) > 10000:
        raise ValueError("exponent too large")
    return x ** y


def _scalar(v):
    return v[0] if isinstance(v, list) and len(v) == 1 else v        # [a + b] / 4: brackets as grouping


def _map1(f, v):
    v = _scalar(v)
    return [f(x) for x in v] if isinstance(v, list) else f(v)


def _map2(f, a, b):
    a, b = _scalar(a), _scalar(b)
    if isinstance(a, list) and isinstance(b, list):
        raise ValueError("vector with vector")
    if isinstance(a, list):
        return [f(x, b) for x in a]
    if isinstance(b, list):
        return [f(a, y) for y in b]
    return f(a, b)


def _parse(text: str):
    source = _to_python(text)
    if not source or len(source) > 2000:
        return None, None
    try:
        return ast.parse(source, mode="eval"), source
    except (SyntaxError, ValueError):
        return None, None


def evaluate(text: str):
    """The value of a printed arithmetic expression (mpmath number or list of them), or None."""
    tree, source = _parse(text)
    if tree is None:
        return None
    try:
        with mpmath.workdps(DPS):
            value = _Eval(source)(tree)
            return _scalar(value)
    except (ValueError, ZeroDivisionError, TypeError, OverflowError):
        return None


def is_arithmetic(text: str) -> bool:
    """True when ``text`` is an expression with at least one operation (not a bare number or list of
    bare numbers)."""
    tree, _ = _parse(text)
    if tree is None:
        return False
    body = tree.body
    if _is_number_node(body):
        return False
    if isinstance(body, ast.List) and all(_is_number_node(e) for e in body.elts):
        return False
    return evaluate(text) is not None
