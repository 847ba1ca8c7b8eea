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

from sqlalchemy import (
    ColumnElement,
    Float,
    and_,
    false,
    func,
    literal_column,
    or_,
    true,
    type_coerce,
)
from sqlalchemy.sql import elements, sqltypes
from sqlalchemy.types import TypeDecorator

from storage.sqlfuncs import add_days, hours_between, seconds_between

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
_MATH = {"+": operator.add, "-": operator.sub, "*": operator.mul}  # no /: SQLAlchemy may cast it
_LEX = re.compile(r"\s*('(?:[^']|'')*'|\d+(?:\.\d+)?|[A-Za-z_]\w*|<=|>=|<>|!=|==|[=<>()*+,-]|\S)")
#: window bounds a snippet may name (an aggregate of a function-finalized metric only)
WINDOW = {"period_start": "ws", "period_end": "we"}


#: whole-day shifts a snippet may write (``occurred_at >= days_before(period_end, 7)``): portable SQL
#: (storage.sqlfuncs.add_days), the day count a number in the statement
_DAYS = {"days_before": -1, "days_after": 1}
#: SQL words a snippet may use besides column names (see :func:`unknown`)
_WORDS = {"and", "or", "not", "is", "null", "true", "false", "case", "when", "then", "else", "end", "in", "between",
          "like", "ilike", "distinct", "as", "cast", "interval", "from", "day", "days", "integer", "float", "numeric",
          "text", "varchar", "date", "timestamp", "epoch", "extract"}


def unknown(snippet: str, columns: Iterable[str]) -> str | None:
    """The first word of ``snippet`` that is not one of ``columns``, a window bound, a function
    (a word before ``(``) or an SQL word: a summary's columns are all known, so a typo there is a
    load error rather than a database error at question time."""
    known = set(columns) | set(WINDOW)
    for m in _TOKENS.finditer(snippet):
        word = m.group(3)
        if word is None or word in known or word.lower() in _WORDS or snippet[m.end():].lstrip().startswith("("):
            continue
        return word
    return None


class _Unsupported(Exception):
    """Not one of the shapes :func:`_structured` builds: the snippet goes to the database as text."""


class _Parser:
    """``or`` of ``and`` of comparisons (parentheses allowed); a comparison is ``operand <op>
    operand``, ``operand is [not] null|true|false`` or a boolean column; an operand a column,
    a window bound, a number, 'text', true/false, ``lower(col)``, ``coalesce(col, …)``, ``hours_between(end, start)``
    / ``seconds_between(end, start)``, ``days_before(col, n)`` / ``days_after(col, n)`` (n whole days), or
    those joined by + - *."""

    def __init__(self, snippet: str, table, window) -> None:
        self.tokens = [m.group(1) for m in _LEX.finditer(snippet)]
        self.at, self.table, self.window = 0, table, window

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, *expected: str) -> str:
        tok = self.peek()
        if tok is None or (expected and tok.lower() not in expected):
            raise _Unsupported
        self.at += 1
        return tok

    def parse(self):
        expr = self.disjunction()
        if self.peek() is not None:
            raise _Unsupported
        return expr

    def disjunction(self):
        terms = [self.conjunction()]
        while (self.peek() or "").lower() == "or":
            self.take()
            terms.append(self.conjunction())
        return terms[0] if len(terms) == 1 else or_(*terms)

    def conjunction(self):
        terms = [self.comparison()]
        while (self.peek() or "").lower() == "and":
            self.take()
            terms.append(self.comparison())
        return terms[0] if len(terms) == 1 else and_(*terms)

    def comparison(self):
        if self.peek() == "(":
            self.take()
            inner = self.disjunction()
            self.take(")")
            return inner
        left = self.operand()
        tok = (self.peek() or "").lower()
        if tok == "is":
            self.take()
            negated = (self.peek() or "").lower() == "not"
            if negated:
                self.take()
            target = {"null": None, "true": True, "false": False}[self.take("null", "true", "false").lower()]
            return left.is_not(target) if negated else left.is_(target)
        if tok in _OPS:
            self.take()
            right = self.operand()
            for side, other in ((left, right), (right, left)):
                if isinstance(other, (str, int, float)) and not _binds(side, other):
                    raise _Unsupported  # e.g. a date column against '2024-01-01': the database reads it
            return _OPS[tok](left, right)
        return left

    def operand(self):
        value = self.atom()
        while self.peek() in _MATH:
            value = _MATH[self.take()](value, self.atom())
        return value

    def atom(self):
        tok = self.take()
        low = tok.lower()
        if tok.startswith("'"):
            return tok[1:-1].replace("''", "'")
        if tok[0].isdigit():
            return float(tok) if "." in tok else int(tok)
        if low in ("true", "false"):
            return true() if low == "true" else false()
        if low in _DAYS and self.peek() == "(":
            self.take("(")
            at = self.column()
            self.take(",")
            days = self.take()
            self.take(")")
            if not days.isdigit():
                raise _Unsupported
            return add_days(at, _DAYS[low] * int(days))
        if low in ("lower", "coalesce", "hours_between", "seconds_between") and self.peek() == "(":
            self.take("(")
            args = [self.column()]
            while self.peek() == ",":
                self.take()
                args.append(self.atom() if low == "coalesce" else self.column())  # coalesce(product, '(none)')
            self.take(")")
            if low == "lower" and len(args) == 1:
                return func.lower(args[0])
            if low == "coalesce":
                return func.coalesce(*args)
            if low != "lower" and len(args) == 2:
                return (hours_between if low == "hours_between" else seconds_between)(args[0], args[1])
            raise _Unsupported
        self.at -= 1
        return self.column()

    def column(self):
        tok = self.take()
        if tok in self.table.c:
            return self.table.c[tok]
        if self.window is not None and tok in WINDOW:
            return self.window.c[WINDOW[tok]]
        raise _Unsupported


def _binds(expr, value) -> bool:
    """Whether ``value`` may be bound with ``expr``'s type (text to text, numbers to numbers;
    a driver would refuse '2024-01-01' for a timestamp column, or 2 for a boolean one)."""
    kind = getattr(expr, "type", None)
    if isinstance(kind, TypeDecorator):  # e.g. money: judged by the type it stores as
        kind = kind.impl_instance
    if kind is None or isinstance(kind, sqltypes.NullType):
        return True
    if isinstance(value, str):
        return isinstance(kind, sqltypes.String)
    return isinstance(kind, (sqltypes.Integer, sqltypes.Numeric)) and not isinstance(kind, sqltypes.Boolean)


def _structured(snippet: str, table, window=None):
    """The common shapes as SQLAlchemy expressions with bound values, as a hand-written
    catalogue entry would build them (see :class:`_Parser`). None: not one of them."""
    try:
        expr = _Parser(snippet, table, window).parse()
    except (_Unsupported, KeyError):
        return None
    return expr if isinstance(expr, ColumnElement) else None


def build(snippet: str, table, numeric: bool = False, window=None):
    """``snippet`` with each logical column name of ``table`` as a column of ``table`` (and,
    given the windows ``window``, ``period_start`` / ``period_end`` as the window's bounds)."""
    shaped = _structured(snippet, table, window)
    if shaped is not None:
        return type_coerce(shaped, Float()) if numeric else shaped
    parts: list = []
    text: list[str] = []
    for m in _TOKENS.finditer(snippet):
        word = m.group(3)
        if word is not None and (word in table.c or (window is not None and word in WINDOW)):
            if text:
                parts.append(literal_column("".join(text)))
                text = []
            parts.append(table.c[word] if word in table.c else window.c[WINDOW[word]])
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
