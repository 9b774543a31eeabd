"""Names and strings put into SQL text: quoted, so that a quote in a file name or a column name
is text, never SQL (a file name with a quote broke the statement it was pasted into)."""

from __future__ import annotations


def quote_identifier(identifier: str) -> str:
    """``identifier`` as a double-quoted SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """``text`` as a single-quoted SQL string literal."""
    return "'" + str(text).replace("'", "''") + "'"
