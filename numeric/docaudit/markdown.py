"""A Markdown document's parts the audit needs, with 1-based line numbers (markdown-it-py, CommonMark).

* :class:`Fence` — every fenced code block; a Python block is paired with the "Output" / "Expected
  Output" block that follows it (a paragraph such as ``**Expected Output:**`` with only blank lines or
  horizontal rules between);
* :class:`Table` — pipe tables (header cells and rows, each row with its line);
* :func:`text_lines` — the lines where prose claims live: everything except Python code and the Output
  blocks paired with it, each with the heading context reset marker.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from markdown_it import MarkdownIt

__all__ = ["Fence", "Table", "Document", "parse"]

PYTHON = {"python", "py", "python3", "pycon", "ipython"}
_OUTPUT_LABEL = re.compile(r"^\s*(?:[*_]{1,2})?\s*(?:expected\s+|actual\s+|sample\s+)?output\s*:?\s*(?:[*_]{1,2})?\s*:?\s*$",
                           re.IGNORECASE)


@dataclass
class Fence:
    line: int                 # line of the opening fence
    first: int                # line of the first content line
    end: int                  # line of the closing fence (or last line)
    lang: str
    code: str
    output: "Fence | None" = None
    output_label: str = ""

    @property
    def is_python(self) -> bool:
        return self.lang in PYTHON


@dataclass
class Table:
    line: int
    header: list[str]
    rows: list[tuple[int, list[str]]] = field(default_factory=list)


@dataclass
class Document:
    lines: list[str]
    fences: list[Fence]
    tables: list[Table]

    @property
    def python_blocks(self) -> list[Fence]:
        return [f for f in self.fences if f.is_python]


def _cells(line: str) -> list[str]:
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|"):
        s = s[:-1]
    return [c.strip() for c in re.split(r"(?<!\\)\|", s)]


def parse(text: str) -> Document:
    """Fences, tables and lines of ``text``."""
    md = MarkdownIt("commonmark").enable("table")
    tokens = md.parse(text)
    lines = text.split("\n")
    fences, tables = [], []
    for tok in tokens:
        if tok.type == "fence" and tok.map:
            start, stop = tok.map
            lang = (tok.info or "").strip().split()[0].lower() if (tok.info or "").strip() else ""
            fences.append(Fence(line=start + 1, first=start + 2, end=stop, lang=lang, code=tok.content))
        elif tok.type == "table_open" and tok.map:
            start, stop = tok.map
            rows = [(i + 1, _cells(lines[i])) for i in range(start, stop) if lines[i].strip()]
            if len(rows) >= 2:
                header = rows[0][1]
                body = [r for r in rows[1:] if not re.fullmatch(r"[\s:|-]*", lines[r[0] - 1])]
                tables.append(Table(line=start + 1, header=header, rows=body))
    _pair_outputs(lines, fences)
    return Document(lines=lines, fences=fences, tables=tables)


def _pair_outputs(lines: list[str], fences: list[Fence]) -> None:
    for block, after in zip(fences, fences[1:]):
        if not block.is_python or after.is_python:
            continue
        between = lines[block.end:after.line - 1]
        label = [s for s in between if s.strip() and not re.fullmatch(r"\s*([-*_])(\s*\1){2,}\s*", s)]
        if len(label) == 1 and _OUTPUT_LABEL.match(label[0]):
            block.output = after
            block.output_label = label[0].strip().strip("*_: ")
