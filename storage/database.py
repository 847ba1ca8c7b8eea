"""Connections to the metrics database, with the few per-dialect settings kpibot relies on.

The URL comes from ``KPI_DATABASE_URL``; the embedded default is a DuckDB file under
``./data/``. DuckDB lets only one process open a file for writing, and opening it costs
~15 ms, so a DuckDB engine keeps its connections only while it is busy: after
``KPI_DUCKDB_LINGER`` seconds idle (default 2) the pool is emptied and the file lock released,
so `kpibot import` in another process gets its turn. A query that finds the file locked by
an import is retried briefly and then reported as :class:`DataBusy`.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from storage.schema import ROW_STORE_INDEXES, metadata

DEFAULT_URL = "duckdb:///data/kpibot.duckdb"


class DatabaseError(Exception):
    """The metrics database could not answer; the message is safe to show a user."""


class DataBusy(DatabaseError):
    """The database file is locked by a running import."""


def database_url() -> str:
    return os.environ.get("KPI_DATABASE_URL") or DEFAULT_URL


def query_timeout_seconds() -> float:
    return float(os.environ.get("KPI_QUERY_TIMEOUT", "20"))


class _Median:
    """SQLite has no median; this aggregate runs inside SQLite, fed row by row."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def step(self, value: float | None) -> None:
        if value is not None:
            self.values.append(value)

    def finalize(self) -> float | None:
        return statistics.median(self.values) if self.values else None


def _sqlite_setup(dbapi_conn, _record) -> None:
    dbapi_conn.create_aggregate("median", 1, _Median)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


_engines: dict[tuple[str, bool], Engine] = {}
_created: set[str] = set()
_lock = threading.Lock()


def get_engine(url: str | None = None) -> Engine:
    """One engine per URL per process, with the tables created on first use."""
    url = url or database_url()
    key = (url, True)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _make_engine(url)
            _engines[key] = engine
    if url not in _created:
        create_tables(engine)
        _created.add(url)
    return engine


_stopping = threading.Event()
_lingers: list[_Linger] = []


class _Linger:
    """Empties a DuckDB engine's pool once it has been idle, releasing the file lock."""

    def __init__(self, engine: Engine, seconds: float):
        self.engine = engine
        self.seconds = seconds
        self.busy = 0
        self.last = time.monotonic()
        self.lock = threading.Lock()
        event.listen(engine, "checkout", self._out)
        event.listen(engine, "checkin", self._in)
        self.thread = threading.Thread(target=self._run, name="duckdb-linger", daemon=True)
        self.thread.start()
        _lingers.append(self)

    def _out(self, *_):
        with self.lock:
            self.busy += 1

    def _in(self, *_):
        with self.lock:
            self.busy -= 1
            self.last = time.monotonic()

    def _run(self) -> None:
        while not _stopping.wait(self.seconds / 2):
            with self.lock:
                idle = self.busy == 0 and time.monotonic() - self.last >= self.seconds
                if idle:
                    self.engine.pool.dispose()
                    self.last = float("inf")  # nothing more to release until next use


def _cache_statements(engine: Engine) -> Engine:
    """duckdb-engine opts out of SQLAlchemy's compiled-statement cache; kpibot's statements are
    plain SELECTs and INSERTs whose compiled form depends only on their structure, so caching
    them is safe and saves ~2 ms of compilation per question."""
    engine.dialect.__dict__["_supports_statement_cache"] = True
    return engine


_SIZE = re.compile(r"^\d+(\.\d+)?\s*[KMGT]i?B$", re.I)


def _duckdb_setup(dbapi_conn, _record) -> None:
    """Per connection. Every range join kpibot writes is against its small windows table
    (one row per period or trend bucket, ~50 for a 2-year monthly trend): a nested loop is
    the fastest plan for those, but DuckDB only picks it up to 5 rows (measured at 10M rows:
    a 2-year monthly trend 1.5-2.5x faster). ``KPI_DUCKDB_MEMORY`` (e.g. ``400MB``) caps
    DuckDB's buffer cache, which may otherwise grow to 80% of RAM; ``KPI_DUCKDB_THREADS``
    caps its worker threads."""
    statements = ["SET nested_loop_join_threshold = 1000"]
    memory = os.environ.get("KPI_DUCKDB_MEMORY", "").strip()
    if memory and _SIZE.match(memory):
        statements.append(f"SET memory_limit = '{memory}'")
    threads = os.environ.get("KPI_DUCKDB_THREADS", "").strip()
    if threads.isdigit() and int(threads) > 0:
        statements.append(f"SET threads = {int(threads)}")
    for sql in statements:
        dbapi_conn.execute(sql)


def _make_engine(url: str) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "duckdb":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            linger = float(os.environ.get("KPI_DUCKDB_LINGER", "2"))
            if linger <= 0:
                engine = create_engine(url, poolclass=NullPool)
                event.listen(engine, "connect", _duckdb_setup)
                return engine
            engine = create_engine(url, pool_size=8, max_overflow=24, pool_reset_on_return=None)
            event.listen(engine, "connect", _duckdb_setup)
            _Linger(engine, linger)
            return _cache_statements(engine)
        engine = create_engine(url)
        event.listen(engine, "connect", _duckdb_setup)
        return _cache_statements(engine)
    if backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 5, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_setup)
        return engine
    if backend == "postgresql":
        timeout_ms = int(query_timeout_seconds() * 1000)
        # JIT compilation costs seconds on the wide aggregate statements and saves nothing here
        connect_args = {"connect_timeout": 3, "options": f"-c statement_timeout={timeout_ms} -c jit=off"}
        # no pool_pre_ping: _retrying_connect pings itself, after checkout, so that a server that
        # stops answering mid-ping can be cut off by query()'s deadline like any other read
        return create_engine(url, connect_args=connect_args)
    return create_engine(url, pool_pre_ping=True)


def create_tables(engine: Engine) -> None:
    with _retrying_connect(engine) as conn:
        metadata.create_all(conn, checkfirst=True)
        if engine.dialect.name != "duckdb":
            existing = {
                ix["name"]
                for table in {ix.table.name for ix in ROW_STORE_INDEXES}
                for ix in inspect(conn).get_indexes(table)
            }
            for index in ROW_STORE_INDEXES:
                if index.name not in existing:
                    index.create(conn)
        conn.commit()


def analyze(engine: Engine, tables) -> None:
    """Fresh planner statistics after a bulk load (PostgreSQL plans badly without them)."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in tables:
            conn.exec_driver_sql(f'ANALYZE "{table.name}"')  # names from the schema, never user text


def is_lock_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "could not set lock" in text or "conflicting lock" in text or "database is locked" in text


def busy_wait_seconds() -> float:
    return float(os.environ.get("KPI_BUSY_WAIT", "3"))


@contextmanager
def _retrying_connect(engine: Engine, wait: float | None = None, guard: _Guard | None = None) -> Iterator[Connection]:
    """Connects, retrying for up to ``wait`` seconds while another process holds the file.
    PostgreSQL connections are pinged here (see _make_engine); ``guard`` gets the driver
    connection before the first byte is sent, for a deadline to cut."""
    deadline = time.monotonic() + (busy_wait_seconds() if wait is None else wait)
    pause = 0.05
    pings = 0
    while True:
        try:
            conn = engine.connect()
        except (OperationalError, DBAPIError) as exc:
            if not is_lock_error(exc):
                raise DatabaseError(_short(exc)) from exc
            if time.monotonic() + pause > deadline:
                raise DataBusy("data is being refreshed, try again in a moment") from exc
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
            continue
        if guard is not None:
            guard.connection = conn.connection.driver_connection
        if engine.dialect.name == "postgresql" and not _ping(conn):
            pings += 1
            conn.invalidate()
            conn.close()
            if guard is not None and guard.fired:
                raise DatabaseError("cut off by the query deadline")
            if pings > 1:
                raise DatabaseError("the metrics database is not answering (its connections keep dropping)")
            continue
        with conn:
            yield conn
        return


def _ping(conn: Connection) -> bool:
    """False when a pooled connection is not usable (the server restarted since it was used,
    a deadline cut it, it was left mid-command): the caller drops it and takes another."""
    try:
        conn.dialect.do_ping(conn.connection.dbapi_connection)
    except conn.dialect.loaded_dbapi.Error:
        return False
    return True


@contextmanager
def connect(engine: Engine | None = None, wait: float | None = None, guard: _Guard | None = None
            ) -> Iterator[Connection]:
    """A connection; lock contention becomes :class:`DataBusy`, outages :class:`DatabaseError`."""
    engine = engine or get_engine()
    try:
        with _retrying_connect(engine, wait, guard) as conn:
            yield conn
    except DatabaseError:
        raise
    except (OperationalError, DBAPIError) as exc:
        if is_lock_error(exc):
            raise DataBusy("data is being refreshed, try again in a moment") from exc
        raise DatabaseError(_short(exc)) from exc


SILENCE_GRACE = 1.5  # seconds past the query timeout before a silent PostgreSQL socket is cut


@contextmanager
def query(engine: Engine | None = None) -> Iterator[Connection]:
    """:func:`connect` for answering a question, under a deadline the database cannot ignore.

    DuckDB is ``interrupt()``ed after ``KPI_QUERY_TIMEOUT``. PostgreSQL enforces that timeout
    itself (``statement_timeout``); a server that stops answering altogether (a hung host, a
    network partition) would leave the read blocked until TCP gives up, minutes later, so
    ``SILENCE_GRACE`` after the timeout the socket is shut: the ping, query or rollback fails
    at once, the pool drops that connection and the user gets one line.
    """
    engine = engine or get_engine()
    seconds = query_timeout_seconds()
    guard = _Guard()
    handle = None
    if engine.dialect.name == "duckdb":
        handle = watchdog.call_later(seconds, lambda: guard.cut(lambda c: c.interrupt()))
    elif engine.dialect.name == "postgresql":
        handle = watchdog.call_later(seconds + SILENCE_GRACE, lambda: guard.cut(_shut_socket))
    try:
        with connect(engine, guard=guard) as conn:
            yield conn
    except Exception as exc:
        if handle is not None and handle[0]:
            what = "the query took too long and was stopped" if engine.dialect.name == "duckdb" else (
                f"the metrics database stopped answering (nothing for {seconds + SILENCE_GRACE:g} s)")
            raise DatabaseError(what) from exc
        raise
    finally:
        if handle is not None:
            watchdog.cancel(handle)


class _Guard:
    """The connection a query deadline would cut, and whether it did."""

    def __init__(self) -> None:
        self.connection = None
        self.fired = False

    def cut(self, how) -> None:
        self.fired = True
        if self.connection is not None:
            how(self.connection)


def _shut_socket(driver_connection) -> None:
    """Shut a psycopg connection's socket from another thread: its blocked read returns at once."""
    import socket

    fd = driver_connection.pgconn.socket
    sock = socket.socket(fileno=os.dup(fd))
    try:
        sock.shutdown(socket.SHUT_RDWR)
    finally:
        sock.close()


def _short(exc: BaseException) -> str:
    """One generic line for users; the driver's text (host, port, file, user) only goes to the log."""
    orig = getattr(exc, "orig", None) or exc
    first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    logging.getLogger("kpibot.storage").warning("metrics database error: %s: %s", type(orig).__name__, first[:300])
    if "statement timeout" in first:  # the server's own deadline: worth saying, and no address in it
        return "the metrics database stopped the query: it took too long (statement timeout)"
    return "the metrics database is not answering right now; try again in a few minutes"


def dispose_all() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _created.clear()


def _shutdown() -> None:
    """Stop the linger threads and close every connection before the interpreter goes."""
    _stopping.set()
    for linger in _lingers:
        linger.thread.join(timeout=2)
    watchdog.clear()
    dispose_all()


atexit.register(_shutdown)


class _Watchdog:
    """One thread for every query deadline (a Timer thread per query costs ~3 ms to start)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, list]] = []
        self._seq = 0
        self._thread: threading.Thread | None = None

    def call_later(self, seconds: float, fn) -> list:
        """Returns a handle: ``handle[0]`` is True once fired; ``cancel(handle)`` stops it."""
        import heapq

        handle = [False, fn, False]  # fired, callback, cancelled
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (time.monotonic() + seconds, self._seq, handle))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="query-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
        return handle

    @staticmethod
    def cancel(handle: list) -> None:
        handle[2] = True
        handle[1] = None  # drop the connection reference now, not when the deadline passes

    def clear(self) -> None:
        with self._cond:
            self._heap.clear()
            self._cond.notify()

    def _run(self) -> None:
        import heapq

        while not _stopping.is_set():
            with self._cond:
                while self._heap and self._heap[0][2][2]:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait(1.0)
                    continue
                due, _, handle = self._heap[0]
                delay = due - time.monotonic()
                if delay > 0:
                    self._cond.wait(min(delay, 1.0))
                    continue
                heapq.heappop(self._heap)
            fn = handle[1]
            if not handle[2] and fn is not None:
                handle[0] = True
                try:
                    fn()
                except Exception:  # noqa: BLE001 - a failed interrupt must not stop the watchdog
                    pass


watchdog = _Watchdog()
