"""SQL snippets of the model file (``expr``, ``filter``) as SQLAlchemy expressions.

A snippet names logical columns (``amount > 0``); each such name becomes a real column
reference of the table it is evaluated on, so that the statement stays one SQLAlchemy tree:
the relations adapter can map it onto the team's database, and the access policy sees the
columns it reads (storage/sensitivity.py). The snippet comes from the model file, which the
team's admin writes, never from a Slack user.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import Float, literal_column, type_coerce
from sqlalchemy.sql import elements

# quoted strings first, so that words inside them are left alone
_TOKENS = re.compile(r"('(?:[^']|'')*')|(\"[^\"]+\")|([A-Za-z_][A-Za-z0-9_]*)|(\s+)|(.)", re.S)
_FORBIDDEN = re.compile(r";|--|/\*|\b(select|insert|update|delete|drop|create|alter|grant|truncate|copy)\b", re.I)


class SnippetError(ValueError):
    """A snippet that is not a plain expression over the source's columns."""


def names(snippet: str) -> list[str]:
    """The bare words of a snippet (column names, functions, keywords)."""
    return [m.group(3) for m in _TOKENS.finditer(snippet) if m.group(3)]


def check(snippet: str, columns: Iterable[str]) -> list[str]:
    """Problems with a snippet: a statement rather than an expression; unknown columns are
    left to the database (a function name is a word too), so this is only the shape."""
    if not isinstance(snippet, str) or not snippet.strip():
        return ["empty expression"]
    if _FORBIDDEN.search(snippet):
        return ["must be an expression over the source's columns (no statements, comments or ';')"]
    return []


def build(snippet: str, table, numeric: bool = False):
    """``snippet`` with each logical column name of ``table`` as a column of ``table``."""
    parts: list = []
    text: list[str] = []
    for m in _TOKENS.finditer(snippet):
        word = m.group(3)
        if word is not None and word in table.c:
            if text:
                parts.append(literal_column("".join(text)))
                text = []
            parts.append(table.c[word])
        else:
            text.append(m.group(0))
    if text:
        parts.append(literal_column("".join(text)))
    if len(parts) == 1:
        expr = parts[0]
    else:
        joined = elements.ClauseList(*parts, operator=None, group=False)  # type: ignore[arg-type]  # None: joined by spaces
        expr = elements.Grouping(joined)
    return type_coerce(expr, Float()) if numeric else expr
