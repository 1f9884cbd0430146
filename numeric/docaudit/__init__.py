"""``gradaudit audit``: execute a Markdown document's Python blocks, check their printed outputs, and
recompute its inline and table claims against certified values.

Modules, one idea each: :mod:`.markdown` (blocks, Output pairing, tables), :mod:`.runner` (one sandboxed
child, per-block timeout), :mod:`.classify` (reproducible or not), :mod:`.printed` (numbers at their
printed precision, the agreement rule), :mod:`.outputs` (Output vs stdout), :mod:`.consistency`
(non-reproducible outputs), :mod:`.arith` (hand arithmetic, parsed, never eval-ed), :mod:`.extract`
(labelled values in context), :mod:`.chains` (hand arithmetic), :mod:`.stats` (mean/variance/std,
normalized values), :mod:`.tables`, :mod:`.values` (printed values in text), :mod:`.certified` (op calls on the certified reference, exact statistics),
:mod:`.claimsfile` (TOML claims), :mod:`.audit` (orchestration), :mod:`.render` (Markdown).
"""
from .audit import Audit, audit_document, audit_text
from .claimsfile import ClaimsError
from .render import render_markdown, summary_line

__all__ = ["Audit", "audit_document", "audit_text", "render_markdown", "summary_line", "ClaimsError"]
