"""Is a Python block's printed output reproducible?  Decided from its source before it runs.

Rules are data (:data:`RULES`): each names a reason, a pattern, and whether the block is still run
(state for later blocks, cheap) or not run at all (network, long training).  A block that matches no
rule is *deterministic*: its "Output" block is compared number by number with what it prints now.
For the others only the internal consistency of the printed output is checked.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

__all__ = ["Kind", "classify", "imported_modules"]


@dataclass(frozen=True)
class Kind:
    deterministic: bool
    run: bool
    reason: str = ""


_SEED = re.compile(r"manual_seed\s*\(|np\.random\.seed\s*\(|numpy\.random\.seed\s*\(|\brandom\.seed\s*\(|"
                   r"default_rng\s*\(\s*\d|set_seed\s*\(")
_RANDOM = re.compile(r"\btorch\.(?:randn|rand|randint|randperm|normal|bernoulli|multinomial|randn_like|rand_like)\s*\(|"
                     r"\bnp\.random\.|\bnumpy\.random\.|\brandom\.(?:random|randint|choice|shuffle|gauss|uniform|sample)\s*\(|"
                     r"default_rng\s*\(\s*\)|\bnn\.(?:Linear|Conv[123]d|LSTM|GRU|RNN|Embedding|Bilinear)\s*\(")

#: (reason, pattern, run?) — first match wins.
RULES = (
    ("downloads data", re.compile(r"download\s*=\s*True|\burlopen\s*\(|urlretrieve\s*\(|\brequests\.(?:get|post)\s*\(|"
                                  r"\bload_dataset\s*\(|from_pretrained\s*\(|hf_hub_download\s*\(|\bwget\b"), False),
    ("reads the clock", re.compile(r"\btime\.time\s*\(|perf_counter\s*\(|datetime\.now\s*\(|datetime\.today\s*\("), True),
)


def _trains(tree: ast.AST) -> bool:
    """A loop whose body calls ``.backward()`` or ``.step()`` (an optimisation loop)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.While)):
            for sub in ast.walk(node):
                if (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute)
                        and sub.func.attr in ("backward", "step")):
                    return True
    return False


def classify(code: str, seeded_before: bool) -> tuple[Kind, bool]:
    """The block's :class:`Kind`, and whether a random seed has been set once it ran."""
    seeded = seeded_before or bool(_SEED.search(code))
    for reason, pattern, run in RULES:
        if pattern.search(code):
            return Kind(False, run, reason), seeded
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return Kind(True, True), seeded
    if _trains(tree):
        return Kind(False, False, "trains a model"), seeded
    if _RANDOM.search(code) and not seeded:
        return Kind(False, True, "draws random numbers without a seed"), seeded
    return Kind(True, True), seeded


def imported_modules(code: str) -> list[str]:
    """Top-level module names the block imports (``import torch.nn as nn`` → ``torch``), in order."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module.split(".")[0])
    return list(dict.fromkeys(names))
