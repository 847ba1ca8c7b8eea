"""Whether kpibot may change the metrics database: decided once per URL, before any statement.

kpibot creates and changes tables only in a database it owns: the embedded default (the
DuckDB file under ``./data/``), a database with nothing in it yet, or one carrying kpibot's
marker (the ``kpibot_meta`` table, written when kpibot created the schema). Any other
database is the team's own: it is opened read-only (a read-only PostgreSQL session, SQLite's
``mode=ro``, DuckDB's ``read_only``), nothing is created in it, ``import``/``demo`` are
refused, and a KPI whose table it lacks answers which table is missing.

The probe itself runs on a read-only connection, so deciding never changes a foreign
database either (SQLite's ``journal_mode=WAL``, for one, would rewrite the file's header).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Column, Engine, MetaData, String, Table, create_engine, inspect, select, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.pool import NullPool

from storage.schema import TABLES

MARKER_TABLE = "kpibot_meta"
#: The version of kpibot's schema written into the marker; a migration bumps it.
SCHEMA_VERSION = 1

marker_metadata = MetaData()
#: kpibot's marker: present only in a database whose schema kpibot created.
kpibot_meta = Table(
    MARKER_TABLE,
    marker_metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(200), nullable=False),
)

#: kpibot's own state tables (storage.state, bot.audit): a metrics URL shared with the state
#: database is still "empty" of anybody else's data when these are all it holds.
_STATE_TABLES = frozenset({"digests", "alert_rules", "alert_states", "alert_marks", "deliveries", "audit_log",
                           "dedupe_keys", "favourites"})


@dataclass(frozen=True)
class Ownership:
    """Who a metrics database belongs to. ``relations`` (lower-case names of the tables and
    views a query can name unqualified) is filled in only for a foreign database."""

    owned: bool
    reason: str  # "embedded default", "new", "empty", "marker", "kpibot schema", "foreign"
    relations: frozenset[str] = field(default_factory=frozenset)


class ForeignDatabase(Exception):
    """Raised by :func:`require_owned`; the message is one line, safe to show."""


def read_only_url(url: str) -> str | URL:
    """The URL to open a foreign SQLite file read-only (``mode=ro``); others unchanged."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not _sqlite_file(parsed):
        return url
    path = quote(str(Path(parsed.database or "").resolve()))
    return parsed.set(database=f"file:{path}", query={**parsed.query, "mode": "ro", "uri": "true"})


def read_only_connect_args(url: str) -> dict:
    """Driver arguments that make every session read-only, where the driver supports it."""
    backend = make_url(url).get_backend_name()
    if backend == "duckdb":
        return {"read_only": True}
    if backend == "postgresql":
        return {"options": "-c default_transaction_read_only=on"}
    return {}


def _sqlite_file(parsed: URL) -> str | None:
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


def _duckdb_file(parsed: URL) -> str | None:
    database = parsed.database
    return database if database and database != ":memory:" else None


def is_default(url: str, default_url: str) -> bool:
    """The embedded default: the DuckDB file kpibot keeps under ``./data/``, however spelled."""
    parsed, default = make_url(url), make_url(default_url)
    if parsed.get_backend_name() != "duckdb" or not _duckdb_file(parsed):
        return False
    return Path(parsed.database or "").resolve() == Path(default.database or "").resolve()


def classify(url: str, default_url: str) -> Ownership:
    """Decides ownership without changing anything (see the module docstring)."""
    if is_default(url, default_url):
        return Ownership(True, "embedded default")
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("duckdb", "sqlite"):
        path = _duckdb_file(parsed) if backend == "duckdb" else _sqlite_file(parsed)
        if path is None:
            return Ownership(True, "new")  # in memory: nobody else's
        if not Path(path).exists() or Path(path).stat().st_size == 0:
            return Ownership(True, "new")
    probe = _probe_engine(url)
    try:
        with probe.connect() as conn:
            return _decide(conn)
    finally:
        probe.dispose()


def _probe_engine(url: str) -> Engine:
    args = read_only_connect_args(url)
    if make_url(url).get_backend_name() == "postgresql":
        args = {"connect_timeout": 3, **args}
    return create_engine(read_only_url(url), poolclass=NullPool, connect_args=args)


def _decide(conn: Connection) -> Ownership:
    visible = _visible_relations(conn)
    others = _all_relations(conn) - _STATE_TABLES - {MARKER_TABLE}
    if not others and MARKER_TABLE not in visible:
        return Ownership(True, "empty")
    if visible.get(MARKER_TABLE) == "table" and _marker_version(conn) is not None:
        return Ownership(True, "marker")
    if _kpibot_shaped(conn, visible):
        return Ownership(True, "kpibot schema")
    return Ownership(False, "foreign", frozenset(visible))


def _visible_relations(conn: Connection) -> dict[str, str]:
    """Lower-case name -> "table" or "view", for relations an unqualified name resolves to."""
    if conn.dialect.name == "postgresql":
        rows = conn.execute(text(
            "SELECT c.relname, c.relkind FROM pg_catalog.pg_class c "
            "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND pg_catalog.pg_table_is_visible(c.oid) "
            "AND c.relnamespace <> 'pg_catalog'::regnamespace "
            "AND c.relnamespace <> 'information_schema'::regnamespace"
        )).all()
        return {name.lower(): "table" if kind in ("r", "p") else "view" for name, kind in rows}
    found = inspect(conn)
    try:
        out = {name.lower(): "view" for name in found.get_view_names()}
    except NotImplementedError:  # some warehouse dialects list no views
        out = {}
    out.update({name.lower(): "table" for name in found.get_table_names()})
    return out


def _all_relations(conn: Connection) -> set[str]:
    """Every user relation in any schema (PostgreSQL), else in the default one."""
    if conn.dialect.name == "postgresql":
        rows = conn.execute(text(
            "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'"
        )).scalars()
        return {name.lower() for name in rows}
    return set(_visible_relations(conn))


def _marker_version(conn: Connection) -> int | None:
    try:
        value = conn.execute(select(kpibot_meta.c.value).where(kpibot_meta.c.name == "schema_version")).scalar()
    except Exception:  # noqa: BLE001 - a table of that name that is not kpibot's: no marker
        return None
    return int(value) if value is not None and str(value).isdigit() else None


def _kpibot_shaped(conn: Connection, visible: dict[str, str]) -> bool:
    """A database kpibot created before it wrote a marker: every one of its tables, as a base
    table, with each one's key and required columns. A team's own schema never matches that."""
    if any(visible.get(name) != "table" for name in TABLES):
        return False
    for name, table in TABLES.items():
        columns = _columns(conn, name)
        needed = {c.name for c in table.columns if not c.nullable} | set(table.info["key"])
        if not needed <= columns:
            return False
    return True


def _columns(conn: Connection, table: str) -> set[str]:
    """Lower-case column names; DuckDB's through information_schema (its reflection trips on
    kpibot's DECIMAL money columns)."""
    if conn.dialect.name == "duckdb":
        rows = conn.execute(text(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = :t AND table_schema = current_schema()"), {"t": table}).scalars()
        return {str(name).lower() for name in rows}
    return {c["name"].lower() for c in inspect(conn).get_columns(table)}


def mark(conn: Connection) -> None:
    """Writes kpibot's marker (in a database kpibot owns), keeping a newer version."""
    marker_metadata.create_all(conn, checkfirst=True)
    if _marker_version(conn) is None:
        conn.execute(kpibot_meta.insert().values(name="schema_version", value=str(SCHEMA_VERSION)))


def schema_version(conn: Connection) -> int | None:
    """The version in the marker, or None (no marker)."""
    return _marker_version(conn)


def set_schema_version(conn: Connection, version: int) -> None:
    """For a migration of kpibot's own schema, after it ran."""
    conn.execute(kpibot_meta.update().where(kpibot_meta.c.name == "schema_version").values(value=str(version)))


# ---- a refused query, in one line ---------------------------------------------------------------

_NAME = r'"?([\w.]+)"?'
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("permission", re.compile(r"permission denied for (?:table|relation|view|materialized view) " + _NAME, re.I)),
    ("permission_schema", re.compile(r"permission denied for schema " + _NAME, re.I)),
    ("no_table", re.compile(r"relation " + _NAME + r" does not exist", re.I)),
    ("no_table", re.compile(r"no such table: " + _NAME, re.I)),
    ("no_table", re.compile(r"Table with name " + _NAME + r" does not exist", re.I)),
    ("no_column", re.compile(r"column " + _NAME + r" does not exist", re.I)),
    ("no_column", re.compile(r"no such column: " + _NAME, re.I)),
    ("no_column", re.compile(r'Referenced column "([^"]+)" not found', re.I)),
    ("no_column", re.compile(r'does not have a column named "([^"]+)"', re.I)),
    ("read_only", re.compile(r"read-only transaction|readonly database|read-only mode|read_only", re.I)),
    ("type", re.compile(r"operator does not exist|function \S+ does not exist|Conversion Error|"
                        r"invalid input syntax|No function matches", re.I)),
)


@dataclass(frozen=True)
class Refusal:
    """What the database refused, from the driver's message; never the message itself."""

    kind: str
    name: str | None = None

    def describe(self) -> str:
        name = self.name.rsplit(".", 1)[-1] if self.name else None
        if self.kind == "permission":
            return f"kpibot may not read `{name}` (permission denied)"
        if self.kind == "permission_schema":
            return f"kpibot may not read schema `{name}` (permission denied)"
        if self.kind == "no_table":
            return f"this database has no `{name}` table"
        if self.kind == "no_column":
            table = self.name.rsplit(".", 1)[0] if self.name and "." in self.name else None
            where = f"`{table}` has" if table else "the database has"
            return f"{where} no column `{name}` where this KPI reads it"
        if self.kind == "read_only":
            return "the database is read-only for kpibot"
        return "a column does not have the type this KPI expects"


def refusal(exc: BaseException) -> Refusal | None:
    """A query the database refused (a missing table or column, no permission, a type
    mismatch), as opposed to an outage; None when it is not one of those."""
    orig = getattr(exc, "orig", None) or exc
    diag = getattr(orig, "diag", None)
    state = getattr(orig, "sqlstate", None) or getattr(diag, "sqlstate", None)
    message = str(orig)
    for kind, pattern in _PATTERNS:
        found = pattern.search(message)
        if found:
            return Refusal(kind, found.group(1) if pattern.groups else None)
    if state == "42501":
        return Refusal("permission", getattr(diag, "table_name", None))
    return None
