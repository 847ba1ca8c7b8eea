"""Logical tables → the team's relations: the one place kpibot's data model meets theirs.

Everything in kpibot builds its SQL over *logical* tables: the canonical ones of
``storage/schema.py`` (``customers``, ``orders`` …) and, with a model file, the team's own
sources (``refunds``) and canonical tables widened by extra dimension columns. When a
statement is sent to the database a model maps, :func:`adapt` (a ``before_execute`` hook)
replaces each logical table by its *physical* form::

    (SELECT id AS customer_id, created_at AS signed_up_at, … FROM crm.accounts) AS customers

so a KPI, a report, the value index or the freshness check reads the team's tables without
knowing it. The access guard (metrics/access.py) runs before this hook and sees the logical
statement, whose columns carry their sensitivities. A logical column the model does not map
is refused in one line naming it (:class:`Unmapped`), before anything runs.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Engine,
    Float,
    MetaData,
    String,
    Table,
    event,
    literal_column,
    null,
    select,
    text,
    type_coerce,
)
from sqlalchemy.sql import visitors
from sqlalchemy.sql.selectable import CompoundSelect, Select
from sqlalchemy.types import NullType, TypeEngine

import metrics.access  # noqa: F401 - its guard must see the logical statement: registered before ours
from storage import database, sensitivity
from storage.ownership import Refusal, read_only_url
from storage.schema import CUSTOMER_DIMENSIONS, MONEY, TABLES, is_money

KINDS: dict[str, TypeEngine] = {
    "number": Float(), "money": MONEY, "text": String(), "timestamp": DateTime(), "date": Date(), "boolean": Boolean(),
}


@dataclass(frozen=True)
class ColumnMap:
    """How one logical column is read: a team column (times ``scale``) or an SQL expression."""

    logical: str
    column: str | None = None
    expr: str | None = None
    scale: float | None = None
    kind: str | None = None  # declared type (KINDS); else the canonical one, else guessed from the name


@dataclass(frozen=True)
class Source:
    """One logical table and where it lives in the team's database."""

    name: str
    columns: Mapping[str, ColumnMap]
    relation: str | None = None  # schema.table or a view
    sql: str | None = None  # or a SELECT
    time: str | None = None
    customer_key: str | None = None
    sensitivity: Mapping[str, str] = field(default_factory=dict)
    origin: str = ""
    line: int | None = None

    @property
    def canonical(self) -> bool:
        return self.name in TABLES


class Unmapped(database.Refused):
    """A KPI reads a logical column (or table) the model does not map."""

    def __init__(self, what: str, kpi: str | None = None):
        self.what = what
        self.refusal = Refusal("no_column", what)
        self.kpi = kpi
        where = "sources." + what.replace(".", ".columns.") if "." in what else f"sources.{what}"
        head = f"Can't answer `{kpi}`: it" if kpi else "This"
        database.DatabaseError.__init__(
            self, f"{head} needs `{what}`, which the model file does not map (add it under `{where}`)."
        )

    def for_kpi(self, kpi: str) -> Unmapped:
        return self if self.kpi else Unmapped(self.what, kpi)


def _guess(name: str) -> TypeEngine:
    if name.endswith("_at") or name.endswith("_time"):
        return DateTime()
    if name.endswith("_on") or name.endswith("_date") or name == "date":
        return Date()
    if name.startswith(("is_", "has_")):
        return Boolean()
    if name == "id" or name.endswith("_id"):
        return String()
    return NullType()


def logical_type(source: Source, name: str, dimension: bool = False) -> TypeEngine:
    mapped = source.columns.get(name)
    if mapped is not None and mapped.kind:
        return KINDS[mapped.kind]
    if source.canonical and name in TABLES[source.name].c:
        return TABLES[source.name].c[name].type
    if dimension:
        return String()
    if source.sensitivity.get(name) == "money":
        return MONEY
    return _guess(name)


class Relations:
    """A model's sources as logical tables and their physical forms over one database."""

    def __init__(self, sources: Mapping[str, Source], dimensions: Mapping[str, tuple[str, str]] | None = None):
        # dimensions: name -> (source, logical column) of the model's extra dimensions
        global _serial
        with _lock:
            _serial += 1
            self.serial = _serial  # tells cached statements of different models apart
        self.sources = dict(sources)
        self.dimensions = dict(dimensions or {})
        self.metadata = MetaData()
        self.logical: dict[str, Table] = {}  # logical name -> the Table kpibot builds SQL over
        dims_of: dict[str, set[str]] = {}
        for dim, (src, _col) in self.dimensions.items():
            dims_of.setdefault(src, set()).add(dim)
        for name, source in self.sources.items():
            extra = [c for c in source.columns if not (source.canonical and c in TABLES[name].c)]
            if source.canonical and not extra:
                self.logical[name] = TABLES[name]
                continue
            cols = []
            if source.canonical:
                cols = [Column(c.name, c.type, info=dict(c.info)) for c in TABLES[name].c]
            for logical in extra:
                info = {"sensitivity": source.sensitivity[logical]} if logical in source.sensitivity else {}
                cols.append(Column(logical, logical_type(source, logical, logical in dims_of.get(name, ())), info=info))
            self.logical[name] = Table(name, self.metadata, *cols)
        self._physical: dict[int, tuple[Table, Any]] = {}
        for name, source in self.sources.items():
            physical = self._build(source)
            for table in {id(TABLES.get(name)): TABLES.get(name), id(self.logical[name]): self.logical[name]}.values():
                if table is not None:
                    self._physical[id(table)] = (table, physical)

    # -- what the rest of kpibot asks ----------------------------------------------------------

    def table(self, name: str) -> Table:
        """The logical table kpibot builds SQL over (the canonical one unless widened or new)."""
        found = self.logical.get(name)
        return TABLES[name] if found is None else found

    def mapped(self, name: str) -> bool:
        return name in self.sources

    def missing(self, name: str, columns) -> list[str]:
        """Of a logical table's ``columns``, those the model does not map."""
        if name not in self.sources:
            return []
        return [c for c in columns if c not in self.sources[name].columns]

    def customer_dimensions(self) -> tuple[str, ...]:
        extra = tuple(d for d, (src, _c) in self.dimensions.items() if src == "customers")
        return CUSTOMER_DIMENSIONS + tuple(d for d in extra if d not in CUSTOMER_DIMENSIONS)

    # -- the physical side ---------------------------------------------------------------------

    def _build(self, source: Source):
        """``SELECT <team column or expression> AS <logical name>, … FROM <relation>``."""
        if source.relation:
            schema, _, rel = source.relation.rpartition(".")
            used = {m.column for m in source.columns.values() if m.column}
            base: Any = Table(
                rel, MetaData(), *(Column(c, NullType()) for c in sorted(used)), schema=schema or None
            )
        else:
            base = text(str(source.sql)).columns().subquery("src")
        cols = []
        if source.canonical:  # columns the model leaves out read as NULL; a KPI that needs one is refused (adapt)
            for c in TABLES[source.name].c:
                if c.name not in source.columns:
                    cols.append(type_coerce(null(), c.type).label(c.name))
        for logical, m in source.columns.items():
            expr: Any = base.c[m.column] if m.column and source.relation else literal_column(m.column or m.expr or "NULL")
            if m.scale is not None and m.scale != 1:
                expr = expr * literal_column(repr(float(m.scale)))
            kind = self.table(source.name).c[logical].type if logical in self.table(source.name).c else NullType()
            cols.append(type_coerce(expr, kind).label(logical))
        return select(*cols).select_from(base).subquery(source.name)

    def physical(self, name: str):
        return self._physical[id(self.table(name))][1]

    def adapt(self, stmt):
        """``stmt`` over the team's relations; raises :class:`Unmapped` for a column no
        source maps."""
        found = self._physical
        if isinstance(stmt, (Select, CompoundSelect)):
            # the columns the statement really reads (not those a subquery only passes through)
            for column in sensitivity.columns_read(stmt):
                table = getattr(column, "table", None)
                hit = found.get(id(table))
                if hit is not None and hit[0] is table:
                    source = self.sources[table.name]
                    if column.name not in source.columns:
                        raise Unmapped(f"{table.name}.{column.name}")

        def replace(element, **_kw):
            if isinstance(element, Table):
                hit = found.get(id(element))
                return hit[1] if hit is not None and hit[0] is element else None
            if isinstance(element, Column):
                table = getattr(element, "table", None)
                hit = found.get(id(table))
                if hit is not None and hit[0] is table:
                    physical = hit[1]
                    if element.name not in physical.c:
                        raise Unmapped(f"{table.name}.{element.name}")
                    return physical.c[element.name]
            return None

        return visitors.replacement_traverse(stmt, {}, replace)


# ---- the active model ---------------------------------------------------------------------------


@dataclass
class _Active:
    relations: Relations
    url: str | None  # the database the model describes; None: every engine but kpibot's own state


_active: _Active | None = None
_serial = 0
_lock = threading.Lock()
_adapted: OrderedDict[tuple[int, int], tuple[Any, Any]] = OrderedDict()
_applies: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()


def activate(relations: Relations | None, url: str | None = None) -> None:
    """Makes ``relations`` the mapping used for the database at ``url`` (None: none)."""
    global _active
    with _lock:
        _active = None if relations is None else _Active(relations, url)
        _applies.clear()


def generation() -> int:
    """Which mapping is active (part of cached statements' keys): 0 for none."""
    active = _active
    return 0 if active is None else active.relations.serial


def current() -> Relations | None:
    return _active.relations if _active is not None else None


def table(name: str) -> Table:
    """The logical table ``name``: what every reader of kpibot's data builds SQL over."""
    active = current()
    return active.table(name) if active is not None else TABLES[name]


def has_table(name: str) -> bool:
    active = current()
    return name in TABLES or (active is not None and name in active.logical)


def customer_dimensions() -> tuple[str, ...]:
    active = current()
    return active.customer_dimensions() if active is not None else CUSTOMER_DIMENSIONS


def unmapped_tables(names) -> tuple[str, ...]:
    """Of logical tables, those the database must hold under kpibot's own names."""
    active = current()
    return tuple(n for n in names if active is None or not active.mapped(n))


def _same(url: str) -> set[str]:
    """``url`` and the read-only form kpibot opens a foreign file with (storage.ownership)."""
    ro = read_only_url(url)
    return {url, ro if isinstance(ro, str) else ro.render_as_string(hide_password=False)}


def applies(engine: Engine) -> bool:
    """Whether the active model describes the database ``engine`` opens."""
    active = _active
    if active is None:
        return False
    if active.url is None:
        return True
    known = _applies.get(engine)
    if known is None:
        known = engine.url.render_as_string(hide_password=False) in _same(active.url)
        _applies[engine] = known
    return known


def adapt_for(engine: Engine, stmt):
    """``stmt`` as it runs on ``engine``: mapped when the model describes that database."""
    active = _active
    if active is None or not isinstance(stmt, (Select, CompoundSelect)) or not applies(engine):
        return stmt  # only reads are mapped: an import into kpibot's own tables writes to them
    key = (id(stmt), active.relations.serial)
    with _lock:
        hit = _adapted.get(key)
        if hit is not None and hit[0] is stmt:
            _adapted.move_to_end(key)
            return hit[1]
    adapted = active.relations.adapt(stmt)
    with _lock:
        _adapted[key] = (stmt, adapted)  # the statement is kept alive, so its id is not reused
        while len(_adapted) > 512:
            _adapted.popitem(last=False)
    return adapted


@event.listens_for(Engine, "before_execute", retval=True)
def _adapt(conn, clauseelement, multiparams, params, execution_options):
    return adapt_for(conn.engine, clauseelement), multiparams, params


def qualified(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z_][\w$]*(\.[A-Za-z_][\w$]*){0,2}", name))


__all__ = [
    "ColumnMap", "Source", "Relations", "Unmapped", "activate", "table", "customer_dimensions",
    "unmapped_tables", "adapt_for", "is_money",
]


def readable(engine: Engine, name: str, column: str) -> bool:
    """Whether ``name.column`` can be read on ``engine`` (False: the model maps no such column)."""
    active = current()
    if active is None or not applies(engine):
        return True
    if name not in active.sources:  # kpibot's own name: read only where the database has it
        return not database.missing_tables(engine, [name])
    return column in active.sources[name].columns


def time_columns(name: str, own: tuple[str, ...], engine: Engine) -> tuple[str, ...]:
    """The columns saying when ``name``'s rows happened (freshness): kpibot's own list, or a
    model source's ``time``, of those the model maps."""
    active = current()
    if active is not None and name in active.sources and name not in TABLES:
        time = active.sources[name].time
        return (time,) if time else ()
    return tuple(c for c in own if readable(engine, name, c))
