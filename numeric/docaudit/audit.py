"""``audit_document``: every checkable number of a Markdown document, decided.

Order of work: parse (:mod:`.markdown`); run the Python blocks in one sandboxed child
(:mod:`.runner`, :mod:`.classify`) and judge each "Output" block — number by number for deterministic
blocks (:mod:`.outputs`), by internal consistency otherwise (:mod:`.consistency`); extract inline and
table claims from the rest of the text (:mod:`.extract`); add the claims file (:mod:`.claimsfile`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .checks import NOT_CHECKED, BlockResult, Check
from .claimsfile import check_claims, load_claims
from .classify import classify, imported_modules
from .consistency import consistency_checks
from .extract import inline_claims, table_claims
from .markdown import parse
from .outputs import comment_outputs, compare_output
from .printed import AGREES, LAST_DIGIT, WRONG
from .runner import Run, Runner

__all__ = ["Audit", "audit_document", "audit_text"]

_RANK = {WRONG: 0, LAST_DIGIT: 1, NOT_CHECKED: 2, AGREES: 3}


@dataclass
class Audit:
    """The audit of one document: ``checks`` (wrong first, then by line) and ``blocks``."""
    name: str
    checks: list[Check]
    blocks: list[BlockResult] = field(default_factory=list)

    @property
    def wrong(self) -> list[Check]:
        return [c for c in self.checks if c.verdict == WRONG]

    @property
    def ok(self) -> bool:
        return not self.wrong

    def wrong_blocks(self) -> list[int]:
        """Lines of the fences / tables (0: prose) that hold at least one wrong number."""
        return sorted({c.block for c in self.wrong})


def audit_document(path, *, claims=None, timeout: float = 30.0, run_code: bool = True, name: str | None = None) -> Audit:
    """Audit the Markdown file ``path`` (``claims``: optional TOML claims file; ``timeout``: seconds per
    block; ``name``: how the report names the document, default the path as given)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    extra = load_claims(claims) if claims is not None else []
    return audit_text(text, name=name or str(path), claims=extra, timeout=timeout, run_code=run_code)


def audit_text(text: str, *, name: str = "document", claims=(), timeout: float = 30.0, run_code: bool = True) -> Audit:
    doc = parse(text)
    checks: list[Check] = []
    blocks: list[BlockResult] = []
    skip: set[int] = set()
    for f in doc.python_blocks:
        skip |= set(range(f.line, f.end + 1))
        if f.output:
            skip |= set(range(f.output.line, f.output.end + 1))
    runs = _run_blocks(doc.python_blocks, timeout, run_code)
    for f, (kind, run) in zip(doc.python_blocks, runs):
        found: list[Check] = []
        verdict = ""
        if f.output is not None:
            if kind.deterministic and run.status == "ok":
                found = compare_output(f.output.code, run.stdout, f.output.first, f.output.line)
            else:
                found = consistency_checks(f.output.code, f.output.first, f.output.line)
            verdict = (WRONG if any(c.verdict == WRONG for c in found) else AGREES if found else NOT_CHECKED)
        if kind.deterministic and run.status == "ok":
            found += comment_outputs(f.code, f.first, run.stdout, f.line)
        checks += found
        blocks.append(BlockResult(f.line, f.output.line if f.output else 0, kind.deterministic, kind.reason,
                                  run.status, run.error, verdict))
    checks += inline_claims(doc, skip)
    for t in doc.tables:
        if t.line not in skip:
            checks += table_claims(t)
    checks += check_claims(list(claims))
    checks.sort(key=lambda c: (_RANK.get(c.verdict, 9), c.line, c.source, c.what))
    return Audit(name, checks, blocks)


def _run_blocks(fences, timeout: float, run_code: bool):
    results = []
    seeded = False
    runner = Runner(timeout=timeout)
    with runner:
        for f in fences:
            kind, seeded = classify(f.code, seeded)
            if not run_code:
                results.append((kind, Run("not run", error="code execution disabled")))
            elif not kind.run:
                results.append((kind, Run("not run", error=kind.reason)))
            else:
                results.append((kind, runner.run(f.code, f"<block at line {f.line}>", imported_modules(f.code))))
    return results
