"""Customer attributes copied into kpibot's rollup store, with a fingerprint of where they came from.

Breakdowns, filters and "what moved it" cut the usage KPIs by customer attributes (industry,
size band, region, plan, acquisition channel, a model file's own). The rollup lives in its own
database (a DuckDB file beside the metrics file, or ``KPI_ROLLUP_URL``), so the join must
happen there: reading the customers from the source at question time and shipping them (or
the per-customer counts) through Python would cost more than the question. So the attributes
(and ``signed_up_at`` / ``churned_at``) are copied into the store on refresh, one row per
customer, and the copy is used only while it is exact:

* **Fingerprint.** The row count and an order-independent sum of per-row hashes of the key,
  the dates and every attribute, computed by the source database itself (DuckDB ``hash``,
  PostgreSQL ``hashtextextended``; elsewhere a BLAKE2 hash in Python). It is stored with the
  copy and compared with the source's once per data version (:func:`metrics.rollups.serve`):
  any changed, added or removed customer, or another set of dimensions (a model file), makes
  the copy unused until the next refresh copies again. Never a stale attribute.
* **Only when changed.** A refresh copies again only when the fingerprint differs (100k
  customers: about a second), in one transaction with the new fingerprint.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    cast,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.schema import SchemaItem

from metrics.model import relations
from storage import database

meta = MetaData()
copies = Table(
    "kpibot_customer_copy", meta,
    Column("name", String, primary_key=True),
    Column("source", String, nullable=False),
    Column("dimensions", String, nullable=False),  # comma-separated: the attribute columns copied
    Column("fingerprint", String, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("built_at", DateTime, nullable=False),
)
NAME = "customers"
TABLE = "kpibot_customers"
_SEP, _NULL = "\x1f", "\x01"
_tables: dict[tuple[str, ...], Table] = {}


@dataclass(frozen=True)
class Copy:
    dimensions: tuple[str, ...]
    fingerprint: str
    rows: int


def table(dimensions: tuple[str, ...]) -> Table:
    """The copy's table for these attribute columns (created on refresh)."""
    found = _tables.get(dimensions)
    if found is None:
        columns: list[SchemaItem] = [Column("customer_id", String, nullable=False), Column("signed_up_at", DateTime),
                                     Column("churned_at", DateTime), *(Column(d, String) for d in dimensions)]
        found = _tables[dimensions] = Table(TABLE, MetaData(), *columns)
    return found


def dimensions() -> tuple[str, ...]:
    """The customer attributes a question may cut by now (a model file adds its own)."""
    return tuple(relations.customer_dimensions())


def _columns(dims: tuple[str, ...]):
    c = relations.table("customers")
    return [c.c.customer_id, c.c.signed_up_at, c.c.churned_at, *(c.c[d] for d in dims)]


def fingerprint(source: Engine, dims: tuple[str, ...]) -> str:
    """The customers' count and an order-independent hash of every row's key, dates and ``dims``."""
    cols = _columns(dims)
    line: Any = func.coalesce(cast(cols[0], String), _NULL)
    for col in cols[1:]:
        line = line + _SEP + func.coalesce(cast(col, String), _NULL)
    dialect = source.dialect.name
    with database.query(source) as conn:
        if dialect == "duckdb":
            n, total = conn.execute(select(func.count(), func.sum(func.hash(line)))).one()
        elif dialect == "postgresql":
            n, total = conn.execute(select(func.count(), func.sum(func.hashtextextended(line, 0)))).one()
        else:  # no hash function in SQL (SQLite): the lines, hashed here
            n, total = 0, 0
            for (text,) in conn.execute(select(line)):
                n += 1
                total += int.from_bytes(hashlib.blake2b(str(text).encode(), digest_size=8).digest(), "big")
    return f"{dialect}:{int(n or 0)}:{int(total or 0)}:{','.join(dims)}"


_ready: set[str] = set()  # stores known to hold the copy's state table


def current(store: Engine, source_label: str) -> Copy | None:
    """The copy in ``store`` of ``source_label``'s customers (None: none made)."""
    label = store.url.render_as_string(hide_password=True)
    with database.query(store) as conn:
        if label not in _ready:
            if not sa_inspect(conn).has_table(copies.name):
                return None
            _ready.add(label)
        row = conn.execute(select(copies).where(copies.c.name == NAME)).first()
    if row is None or row.source != source_label:
        return None
    dims = tuple(d for d in row.dimensions.split(",") if d)
    return Copy(dims, row.fingerprint, int(row.rows))


def _utc(value) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _text(value) -> str | None:
    """As the source's breakdown names a segment (``str`` of the value); NULL stays NULL."""
    return None if value is None else str(value)


def refresh(source: Engine, store: Engine, source_label: str) -> Copy:
    """Copy the customers again when their fingerprint changed (before the rows are read: a
    change in between leaves a fingerprint that no longer matches, so the copy is unused)."""
    dims = dimensions()
    meta.create_all(store)
    now = fingerprint(source, dims)
    found = current(store, source_label)
    if found is not None and found.fingerprint == now and found.dimensions == dims:
        return found
    with database.connect(source) as conn:
        rows = conn.execute(select(*_columns(dims))).all()
    columns: dict[str, list[Any]] = {"customer_id": [], "signed_up_at": [], "churned_at": [], **{d: [] for d in dims}}
    for row in rows:
        columns["customer_id"].append(str(row[0]))
        columns["signed_up_at"].append(_utc(row[1]))
        columns["churned_at"].append(_utc(row[2]))
        for k, d in enumerate(dims):
            columns[d].append(_text(row[3 + k]))
    from storage.bulk import insert_rows  # Arrow and pandas: only when a rollup is built

    target = table(dims)
    with database.connect(store, wait=60) as conn, conn.begin():
        target.drop(conn, checkfirst=True)  # the columns follow the dimensions
        target.create(conn)
        insert_rows(conn, target, columns)
        conn.execute(delete(copies).where(copies.c.name == NAME))
        conn.execute(insert(copies).values(name=NAME, source=source_label, dimensions=",".join(dims), fingerprint=now,
                                           rows=len(rows), built_at=datetime.now(UTC).replace(tzinfo=None)))
    return Copy(dims, now, len(rows))


def is_fresh(source: Engine, found: Copy) -> bool:
    """Whether the copy still equals the source's customers, for today's dimensions."""
    dims = dimensions()
    return found.dimensions == dims and fingerprint(source, dims) == found.fingerprint


__all__ = ["Copy", "current", "dimensions", "fingerprint", "is_fresh", "refresh", "table"]
