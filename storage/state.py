"""The bot's own state: scheduled digests, alert rules, alert states and the delivery log.

This is a separate, small database from the metrics one. Its URL comes from
``KPI_STATE_URL``; by default it is ``sqlite:///data/state.sqlite``, beside the default
metrics file. SQLite (WAL, one writer at a time) and PostgreSQL both work, and several
``kpibot serve`` processes may share one state database: every "who does this" decision is
an INSERT against a UNIQUE key or a compare-and-set UPDATE, never a read followed by a write.

Times are naive UTC timestamps, as in the metrics schema. DuckDB is not used here on
purpose: it lets only one process open a file for writing.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

DEFAULT_URL = "sqlite:///data/state.sqlite"

metadata = MetaData()

#: Scheduled KPI digests, one row per ``/kpi digest add``; removal is a soft delete so the
#: delivery log keeps pointing at something.
digests = Table(
    "digests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel_id", String(64), nullable=False),
    Column("frequency", String(16), nullable=False),  # daily, weekly, monthly
    Column("weekday", Integer),  # 0 = Monday, weekly only
    Column("day_of_month", String(8)),  # "1".."28" or "last", monthly only
    Column("at_time", String(5), nullable=False),  # "HH:MM", local to ``timezone``
    Column("timezone", String(64), nullable=False),
    Column("metrics", Text, nullable=False),  # KPI ids, comma-separated, in order
    Column("created_by", String(64)),
    Column("created_at", DateTime, nullable=False),
    Column("removed_at", DateTime),
    Column("source", String(16), nullable=False, default="slack"),  # slack, cli, file
    Column("source_key", String(200), unique=True),  # stable identity of a rules-file entry
)

#: Alert rules. ``threshold`` is in the KPI's own unit (hours, percent, score...);
#: for drops/rises it is the size of the change, ``relative`` meaning percent of before.
alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel_id", String(64), nullable=False),
    Column("owner", String(64)),  # told when the channel cannot be reached
    Column("metric", String(64), nullable=False),
    Column("dimension", String(64)),  # "by industry": one alert per segment
    Column("condition", String(16), nullable=False),  # above, below, drops, rises
    Column("threshold", Float, nullable=False),
    Column("relative", Boolean, nullable=False, default=False),
    Column("window_days", Integer, nullable=False, default=7),
    Column("consecutive", Integer, nullable=False, default=1),
    Column("min_sample", Integer),  # None: KPI_ALERT_MIN_SAMPLE for survey KPIs
    Column("timezone", String(64), nullable=False),
    Column("text", Text, nullable=False),  # the rule as a person would say it
    Column("snoozed_until", DateTime),
    Column("created_by", String(64)),
    Column("created_at", DateTime, nullable=False),
    Column("removed_at", DateTime),
    Column("source", String(16), nullable=False, default="slack"),
    Column("source_key", String(200), unique=True),
)

#: Where each rule (and each segment of a "by" rule) stands. ``episode`` numbers the
#: breaches of one rule/segment; delivery keys are built from it, so that two processes
#: agree on which post belongs to which breach.
alert_states = Table(
    "alert_states",
    metadata,
    Column("rule_id", Integer, primary_key=True, autoincrement=False),
    Column("segment", String(200), primary_key=True),  # "" for the whole KPI
    Column("status", String(16), nullable=False, default="ok"),  # ok, breaching
    Column("episode", Integer, nullable=False, default=0),
    Column("streak", Integer, nullable=False, default=0),  # consecutive breaching windows
    Column("streak_window", Date),  # the last window counted in ``streak``
    Column("notified_window", Date),  # the last window told to the channel (fire/follow-up)
    Column("channel_id", String(64)),
    Column("message_ts", String(32)),  # the one alert message, updated while it lasts
    Column("breach_started_at", DateTime),
    Column("last_value", Float),
    Column("last_n", Integer),
    Column("checked_at", DateTime),
    Column("updated_at", DateTime),
)

#: What people did to one alert message from its buttons (or ``alert ack``): who acknowledged
#: it, and whether its follow-ups are quiet until it recovers. Keyed by the message, so a
#: grouped alert (one message for many segments) has one mark.
alert_marks = Table(
    "alert_marks",
    metadata,
    Column("rule_id", Integer, primary_key=True, autoincrement=False),
    Column("message_ts", String(32), primary_key=True),
    Column("acked_by", String(64)),
    Column("acked_at", DateTime),
    Column("quiet_by", String(64)),  # "snooze until recovered"
    Column("quiet_at", DateTime),
)

#: One row per thing kpibot posts on its own (digest slot, preview, alert event, failure
#: report). ``key`` is UNIQUE: inserting it is how a process claims the right to post.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(255), nullable=False, unique=True),
    Column("kind", String(24), nullable=False),
    Column("ref_id", Integer),  # digest id or alert rule id
    Column("segment", String(200)),
    Column("slot", DateTime),  # when it was due (UTC)
    Column("channel_id", String(64), nullable=False),
    Column("owner", String(64)),
    # claimed -> sending -> posted | failed (-> claimed again on retry) | gave_up;
    # skipped (missed beyond the grace window); unknown (a process died mid-post)
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("reason", Text),
    Column("payload", Text),  # JSON: what to post, so a retry posts the same thing
    Column("message_ts", String(32)),
    Column("claimed_by", String(128)),
    Column("claimed_at", DateTime),
    Column("updated_at", DateTime),
    Column("posted_at", DateTime),
    Column("reported_at", DateTime),  # a failure was told to someone (or reporting is moot)
)

Index("ix_deliveries_status", deliveries.c.status)
Index("ix_deliveries_ref", deliveries.c.kind, deliveries.c.ref_id)

TABLES = {t.name: t for t in metadata.sorted_tables}


def state_url() -> str:
    """``KPI_STATE_URL``, else ``sqlite:///data/state.sqlite`` (beside the default metrics file).

    Deliberately not derived from ``KPI_DATABASE_URL``: ``kpibot --url … digest add`` and
    ``kpibot serve`` must find the same schedules whatever metrics database they point at.
    """
    return os.environ.get("KPI_STATE_URL") or DEFAULT_URL


def _sqlite_connect(dbapi_conn, _record) -> None:
    # Let SQLAlchemy issue BEGIN itself (below), so that it can be BEGIN IMMEDIATE.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin(conn) -> None:
    # Take the write lock at the start of every transaction: writers queue on the busy
    # timeout instead of failing when a read lock cannot be upgraded.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def get_state_engine(url: str | None = None) -> Engine:
    """One engine per URL per process, with the state tables created on first use."""
    url = url or state_url()
    with _lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        engine = _make_engine(url)
        try:
            metadata.create_all(engine, checkfirst=True)
        except (IntegrityError, ProgrammingError, OperationalError):
            # Two processes starting together both tried to create a table: the other won.
            metadata.create_all(engine, checkfirst=True)
        _engines[url] = engine
        return engine


def _make_engine(url: str) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 10, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})
    if backend == "duckdb":
        raise ValueError(
            "KPI_STATE_URL cannot be DuckDB: it allows one writing process per file. "
            "Use SQLite (the default) or PostgreSQL."
        )
    return create_engine(url, pool_pre_ping=True)


def insert_unique(conn: Connection, table: Table, values: dict) -> int | None:
    """INSERT a row unless its unique key exists; the new primary key, or None if taken.

    This is the claim primitive: of any number of processes and threads inserting the same
    key, exactly one gets an id back.
    """
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        insert = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)
        stmt = insert.values(**values).on_conflict_do_nothing().returning(*table.primary_key.columns)
        row = conn.execute(stmt).first()
        return None if row is None else row[0]
    savepoint = conn.begin_nested()
    try:
        result = conn.execute(table.insert().values(**values))
    except IntegrityError:
        savepoint.rollback()
        return None
    savepoint.commit()
    return result.inserted_primary_key[0]  # type: ignore[index]  # an INSERT has one


def insert_unique_key(conn: Connection, table: Table, values: dict) -> bool:
    """:func:`insert_unique` for a table whose primary key is given (no id comes back):
    True if this INSERT created the row, False if the key was taken.

    The new row's key is read back with RETURNING, not ``rowcount``: SQLAlchemy 2.1 on
    psycopg reports -1 for an INSERT, which made every key look taken."""
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        insert = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)
        stmt = insert.values(**values).on_conflict_do_nothing().returning(*table.primary_key.columns)
        return conn.execute(stmt).first() is not None
    savepoint = conn.begin_nested()
    try:
        conn.execute(table.insert().values(**values))
    except IntegrityError:
        savepoint.rollback()
        return False
    savepoint.commit()
    return True


def dispose_all() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
