"""Pipe tables whose rows hold a data vector: the column of vectors is the data, the other columns are
recognised by their header (μ / mean, σ² / var, σ / std, normalized / x̂) and checked by :mod:`.stats`."""
from __future__ import annotations

import re

from .checks import Check
from .printed import parse_array
from .stats import NORMALIZED as _NORMALIZED, normalized_claim as _normalized_claim, stat_claim as _stat_claim
from .values import pure as _pure, rows_of as _rows

__all__ = ["table_claims"]

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
