"""Which sensitive data a SQL statement reads, from the columns it references.

A column declares its sensitivity once, where the table is declared (``storage/schema.py``, or
a model file mapping the team's own tables)::

    Column("amount", Float, info={"sensitivity": MONEY})

and everything that reads it inherits it: a KPI, its extra figures, a breakdown, a report, a
digest or an alert. Nothing is labelled by hand downstream; :func:`read_by` walks a statement
(through subqueries, unions, joins and filters) to the base columns it actually reads.

How far a sensitivity spreads depends on what it protects (:data:`REACH`):

* ``money`` spreads to anything *read* from the column: a sum of amounts is still money, and so
  is a ratio with money on one side or a filter on an amount.
* ``per_customer`` (who a customer is) spreads only when the column's values leave the database
  — projected bare, or grouped by, in the outermost statement: a ranking of customers is
  per-customer data, a count of distinct customers is not.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import cast

from sqlalchemy import Column, Table
from sqlalchemy.sql import elements, selectable

MONEY = "money"
PER_CUSTOMER = "per_customer"
READ, OUTPUT = "read", "output"
#: Every sensitivity a column may declare, and how it spreads (see the module docstring).
REACH: dict[str, str] = {MONEY: READ, PER_CUSTOMER: OUTPUT}
KEY = "sensitivity"


def of_column(column) -> frozenset[str]:
    """The sensitivities ``column`` declares (a name or a tuple of names in ``info``)."""
    value = getattr(column, "info", {}).get(KEY) if isinstance(column, Column) else None
    if not value:
        return frozenset()
    names = (value,) if isinstance(value, str) else tuple(value)
    unknown = [n for n in names if n not in REACH]
    if unknown:
        raise ValueError(f"{column}: unknown sensitivity {unknown} (known: {', '.join(REACH)})")
    return frozenset(names)


def check_declarations(tables: Iterable[Table]) -> None:
    """Raise on a misspelt sensitivity, at import time rather than when a question reads it."""
    for table in tables:
        for column in table.c:
            of_column(column)


class _Walk:
    """Base columns reached from a statement, each with how: read, or output (values leave)."""

    def __init__(self) -> None:
        self.found: dict[Column, str] = {}
        self._clauses_done: set[int] = set()
        self._stack: set[tuple[int, str | None, bool]] = set()

    def add(self, column: Column, output: bool) -> None:
        if output or column not in self.found:
            self.found[column] = OUTPUT if output else self.found.get(column, READ)

    def select(self, sel, wanted: str | None, outer: bool) -> None:
        """Read ``sel``'s clauses, and its projected column ``wanted`` (None: all of them)."""
        key = (id(sel), wanted, outer)
        if key in self._stack:
            return
        self._stack.add(key)
        if isinstance(sel, selectable.CompoundSelect):
            for part in sel.selects:
                self.select(part, wanted, outer)
            return
        if isinstance(sel, (selectable.Subquery, selectable.Alias)):  # e.g. a subquery used as a select
            self.select(sel.element, wanted, outer)
            return
        if not isinstance(sel, selectable.Select):
            if isinstance(sel, Table) and wanted in sel.c:
                self.add(sel.c[wanted], outer)
            return
        for column in sel.selected_columns:
            if wanted is None or column.key == wanted or getattr(column, "name", None) == wanted:
                self.expr(column, bare=outer)
        self.clauses(sel, outer)

    def clauses(self, sel, outer: bool) -> None:
        if id(sel) in self._clauses_done:
            return
        self._clauses_done.add(id(sel))
        for clause in (*sel._where_criteria, *sel._having_criteria, *sel._order_by_clauses):
            self.expr(clause, bare=False)
        for clause in sel._group_by_clauses:  # the outermost grouping keys leave the database
            self.expr(clause, bare=outer)
        for source in sel.get_final_froms():
            self.from_(source)

    def from_(self, source) -> None:
        if isinstance(source, selectable.Join):
            self.expr(source.onclause, bare=False)
            self.from_(source.left)
            self.from_(source.right)
        elif isinstance(source, (selectable.Subquery, selectable.Alias, selectable.CTE)):
            inner = source.element
            if isinstance(inner, selectable.CompoundSelect):
                for part in inner.selects:
                    self.clauses(part, False)
            elif isinstance(inner, selectable.Select):
                self.clauses(inner, False)

    def expr(self, element, bare: bool) -> None:
        if element is None:
            return
        if isinstance(element, elements.Label):
            self.expr(element.element, bare)
            return
        if isinstance(element, elements.ColumnClause):
            table = getattr(element, "table", None)
            if isinstance(table, Table):
                self.add(table.c[element.key] if element.key in table.c else cast(Column, element), bare)
            elif isinstance(table, (selectable.Subquery, selectable.Alias, selectable.CTE)):
                self.select(table.element, element.key, bare)
            return
        if isinstance(element, (selectable.Select, selectable.CompoundSelect)):
            self.select(element, None, False)
            return
        inner = getattr(element, "element", None)
        if isinstance(element, (selectable.ScalarSelect, selectable.Exists)) or isinstance(inner, selectable.SelectBase):
            self.select(inner if isinstance(inner, selectable.SelectBase) else element.element, None, False)
            return
        for child in element.get_children():
            self.expr(child, bare=False)


_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def columns_read(statement) -> dict[Column, str]:
    """Every base-table column ``statement`` reads, with ``read`` or ``output``."""
    walk = _Walk()
    walk.select(statement, None, True)
    return walk.found


def read_by(statement) -> frozenset[str]:
    """The sensitivities ``statement`` reads (cached per statement object: the engine reuses them)."""
    try:
        with _cache_lock:
            hit = _cache.get(statement)
        if hit is not None:
            return hit
    except TypeError:  # not weak-referenceable
        pass
    out: set[str] = set()
    for column, how in columns_read(statement).items():
        for name in of_column(column):
            if REACH[name] == READ or how == OUTPUT:
                out.add(name)
    found = frozenset(out)
    try:
        with _cache_lock:
            _cache[statement] = found
    except TypeError:
        pass
    return found
