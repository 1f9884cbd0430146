"""A deterministic block's "Output" block against what the block prints now, number by number.

Lines are aligned by their text with the numbers masked out (difflib), so a changed number never
breaks the alignment and an inserted warning line does not shift the rest.  Trailing ``# comments`` in
the Output block are ignored, and a line ``...`` stands for omitted lines.  Two printed numbers agree
when they are within half a unit of the last digit of each of them (:func:`.printed.pair_verdict`).
"""
from __future__ import annotations

import difflib
import re

from .checks import Check
from .printed import AGREES, NUMBER, WRONG, find_numbers, pair_verdict

__all__ = ["compare_output"]

_NUM = re.compile(NUMBER)


def _clean(line: str) -> str:
    return re.sub(r"\s+#(?!\d).*$", "", line.rstrip())


def _skeleton(line: str) -> str:
    return re.sub(r"\s+", "", _NUM.sub("#", line))


def compare_output(expected: str, actual: str, first_line: int, block: int) -> list[Check]:
    """One :class:`Check` per line of ``expected`` (an Output block whose first line is document line
    ``first_line``) that prints numbers."""
    exp = [(first_line + i, _clean(s)) for i, s in enumerate(expected.split("\n"))]
    exp = [(n, s) for n, s in exp if s.strip() and s.strip() not in ("...", "…")]
    act = [_clean(s) for s in actual.split("\n") if s.strip()]
    matcher = difflib.SequenceMatcher(None, [_skeleton(s) for _, s in exp], [_skeleton(s) for s in act],
                                      autojunk=False)
    checks = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        pairs = list(zip(range(i1, i2), range(j1, j2))) if tag in ("equal", "replace") else []
        for i, j in pairs:
            checks.extend(_line_check(exp[i], act[j], block))
        for i in range(i1 + len(pairs), i2):
            n, s = exp[i]
            nums = find_numbers(s)
            if nums:
                checks.append(Check(n, "code output", "printed line", ", ".join(p.text for p in nums),
                                    "(not printed by the code)", WRONG, note=s.strip()[:60], block=block))
    return checks


def _line_check(expected: tuple[int, str], actual: str, block: int) -> list[Check]:
    n, text = expected
    e, a = find_numbers(text), find_numbers(actual)
    if not e:
        return []
    shown = ", ".join(p.text for p in e)
    if len(e) != len(a):
        return [Check(n, "code output", "printed line", shown, actual.strip()[:80] or "(empty)", WRONG,
                      note="the code prints a different line", block=block)]
    bad = [i for i, (x, y) in enumerate(zip(e, a)) if pair_verdict(x, y) != AGREES]
    note = ("wrong: " + ", ".join(f"{e[i].text} (code prints {a[i].text})" for i in bad[:6])
            + (f" and {len(bad) - 6} more" if len(bad) > 6 else "")) if bad else ""
    return [Check(n, "code output", "printed line", shown, ", ".join(p.text for p in a),
                  WRONG if bad else AGREES, note=note, block=block)]


_COMMENT_OUTPUT = re.compile(r"#\s*(?:expected\s+)?(?:output|prints?)\s*:?\s*(.*)$", re.IGNORECASE)


def comment_outputs(code: str, first_line: int, actual: str, block: int) -> list[Check]:
    """``print(x)  # Output: [0.09 0.24 0.67]`` comments inside a code block: their numbers must appear, in
    order, on one line the block printed (each pair agreeing as in :func:`compare_output`)."""
    printed_lines = [find_numbers(_clean(s)) for s in actual.split("\n")]
    checks = []
    for i, line in enumerate(code.split("\n")):
        m = _COMMENT_OUTPUT.search(line)
        if not m:
            continue
        claimed = find_numbers(m.group(1))
        if not claimed:
            continue
        found = next((nums[k:k + len(claimed)] for nums in printed_lines for k in range(len(nums) - len(claimed) + 1)
                      if all(pair_verdict(c, a) == AGREES for c, a in zip(claimed, nums[k:k + len(claimed)]))), None)
        closest = next((nums for nums in printed_lines if len(nums) >= len(claimed)), [])
        shown = ", ".join(p.text for p in claimed)
        checks.append(Check(first_line + i, "code output", "# Output comment", shown,
                            ", ".join(p.text for p in (found or closest[:len(claimed)])) or "(nothing printed)",
                            AGREES if found else WRONG, note="" if found else "no printed line holds these numbers",
                            block=block))
    return checks
