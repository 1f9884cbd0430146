"""Progress bars that say what they count (op, dtype, phase), on stderr, for runs longer than a moment.

A bar appears only after ``DELAY_SECONDS`` (so quick runs print nothing), only when stderr is a terminal,
and never under CI (the ``CI`` environment variable set to anything but ``""``/``0``/``false``).
``progress(total, what="softmax bfloat16: exhaustive z[0,0]", unit="chunk")`` returns an object with
``update(n)`` and ``close()`` (also a context manager); a disabled bar is a no-op with the same methods.
"""
from __future__ import annotations

import os
import sys

__all__ = ["progress", "progress_enabled", "DELAY_SECONDS"]

#: Seconds a run must last before its bar is drawn.
DELAY_SECONDS = 2.0


def progress_enabled(stream=None) -> bool:
    """True when ``stream`` (default stderr) is a terminal and the ``CI`` variable is not set."""
    stream = sys.stderr if stream is None else stream
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class _Off:
    """A disabled bar: counts, draws nothing."""

    def __init__(self, total: int):
        self.total, self.n = total, 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def progress(total: int, *, what: str, unit: str = "chunk", enabled: bool | None = None, stream=None):
    """A bar over ``total`` items of ``unit`` labelled ``what`` (say the op, dtype and phase).

    ``enabled=None`` decides with :func:`progress_enabled`; ``False`` always gives the no-op bar.
    """
    if not isinstance(what, str) or not what:
        raise ValueError(f"what must name what is counted (op, dtype, phase); got {what!r}")
    stream = sys.stderr if stream is None else stream
    if enabled is None:
        enabled = progress_enabled(stream)
    if not enabled:
        return _Off(total)
    from tqdm import tqdm

    return tqdm(total=total, desc=what, unit=unit, file=stream, delay=DELAY_SECONDS, dynamic_ncols=True,
                leave=True)
