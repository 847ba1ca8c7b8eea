"""SQL snippets of the model file (``expr``, ``filter``) as SQLAlchemy expressions.

A snippet names logical columns (``amount > 0``); each such name becomes a real column
reference of the table it is evaluated on, so that the statement stays one SQLAlchemy tree:
the relations adapter can map it onto the team's database, and the access policy sees the
columns it reads (storage/sensitivity.py). The snippet comes from the model file, which the
team's admin writes, never from a Slack user.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Float, and_, false, func, literal_column, true, type_coerce
from sqlalchemy.sql import elements

from storage.sqlfuncs import hours_between, seconds_between

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


_OPS = {"=": operator.eq, "==": operator.eq, "!=": operator.ne, "<>": operator.ne,
        "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_TERM = re.compile(r"\s*(?:(lower)\(\s*([A-Za-z_]\w*)\s*\)|([A-Za-z_]\w*))\s*"
                   r"(?:(=|==|!=|<>|<=|>=|<|>)\s*(-?\d+(?:\.\d+)?|'(?:[^']|'')*'|true\b|false\b)"
                   r"|is\s+(not\s+)?(null|true|false))\s*\Z", re.I | re.S)
_ARITH = re.compile(r"\s*([A-Za-z_]\w*)\s*([-+*])\s*([A-Za-z_]\w*)\s*\Z")
_MATH = {"+": operator.add, "-": operator.sub, "*": operator.mul}  # no /: SQLAlchemy may cast it
_DURATION = re.compile(r"\s*(hours|seconds)_between\(\s*([A-Za-z_]\w*)\s*,\s*([A-Za-z_]\w*)\s*\)\s*\Z", re.I)


def _structured(snippet: str, table):
    """The common shapes as SQLAlchemy expressions with bound values, as a hand-written
    catalogue entry would build them: ``col <+-*> col``, ``col <op> number|'text'|true|false`` (or ``lower(col) = 'x'``), ``col is
    [not] null|true|false``, those joined by ``and``, and the portable durations
    ``hours_between(end, start)`` / ``seconds_between(end, start)``. None: not one of them."""
    both = _ARITH.match(snippet)
    if both and both.group(1) in table.c and both.group(3) in table.c:
        return _MATH[both.group(2)](table.c[both.group(1)], table.c[both.group(3)])
    duration = _DURATION.match(snippet)
    if duration:
        unit, end, start = duration.groups()
        if end in table.c and start in table.c:
            fn = hours_between if unit.lower() == "hours" else seconds_between
            return fn(table.c[end], table.c[start])
        return None
    parts, current = [], ""
    for m in _TOKENS.finditer(snippet):  # split on `and` outside quoted values
        if m.group(3) and m.group(3).lower() == "and":
            parts.append(current)
            current = ""
        else:
            current += m.group(0)
    terms = []
    for part in [*parts, current]:
        term = _TERM.match(part)
        if not term:
            return None
        lower, lcol, col, op, value, negated, keyword = term.groups()
        name = lcol or col
        if name not in table.c:
            return None
        column = func.lower(table.c[name]) if lower else table.c[name]
        if op:
            literal: Any
            if value.lower() in ("true", "false"):
                literal = true() if value.lower() == "true" else false()
            elif value.startswith("'"):
                literal = value[1:-1].replace("''", "'")
            else:
                literal = float(value) if "." in value else int(value)
            terms.append(_OPS[op](column, literal))
        else:
            target = {"null": None, "true": True, "false": False}[keyword.lower()]
            terms.append(column.is_not(target) if negated else column.is_(target))
    return terms[0] if len(terms) == 1 else and_(*terms)


def build(snippet: str, table, numeric: bool = False):
    """``snippet`` with each logical column name of ``table`` as a column of ``table``."""
    shaped = _structured(snippet, table)
    if shaped is not None:
        return type_coerce(shaped, Float()) if numeric else shaped
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
