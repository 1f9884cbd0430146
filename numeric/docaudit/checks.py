"""The audit's records: one :class:`Check` per claim decided, one :class:`BlockResult` per code block."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Check", "BlockResult", "NOT_CHECKED"]

NOT_CHECKED = "not checked"


@dataclass(frozen=True)
class Check:
    """A printed number (or vector of them) against the value it should have.

    ``source``: "code output", "consistency", "inline", "table" or "claims file"; ``verdict``: agrees,
    last digit, wrong (see :mod:`.printed`) or not checked; ``op``: the gradaudit op whose certified
    reference decided it ("" for exact arithmetic); ``block``: line of the enclosing fence or table."""
    line: int
    source: str
    what: str
    printed: str
    certified: str
    verdict: str
    note: str = ""
    op: str = ""
    block: int = 0


@dataclass(frozen=True)
class BlockResult:
    """A Python block: how it was classified and run, and the verdict on its Output block."""
    line: int
    output_line: int           # 0 when no Output block follows
    deterministic: bool
    reason: str                # why it is not deterministic ("" when it is)
    status: str                # ok, error, exit, skipped, timeout, crashed, not run
    error: str
    verdict: str               # agrees / wrong / not checked / "" (no output block)
