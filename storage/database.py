"""Connections to the metrics database, with the few per-dialect settings kpibot relies on.

The URL comes from ``KPI_DATABASE_URL``; the embedded default is a DuckDB file under
``./data/``. DuckDB lets only one process open a file for writing, and opening it costs
~15 ms, so a DuckDB engine keeps its connections only while it is busy: after
``KPI_DUCKDB_LINGER`` seconds idle (default 2; 300 in ``kpibot serve``, which would otherwise
reopen the file for most questions) the pool is emptied and the file lock released, so
`kpibot import` in another process gets its turn; a process waiting for the file asks for it
(a ``<file>.release`` marker) and an idle holder lets go at once. A query that finds the file locked by
an import is retried briefly and then reported as :class:`DataBusy`.

kpibot changes only a database it owns (see :mod:`storage.ownership`): any other is opened
read-only, gets no tables, and a KPI whose table it lacks says so in one line.
"""

from __future__ import annotations

import atexit
import contextvars
import functools
import logging
import os
import statistics
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from storage import machine, ownership
from storage.ownership import Ownership, Refusal
from storage.schema import ROW_STORE_INDEXES, TABLES, is_money, metadata

DEFAULT_URL = "duckdb:///data/kpibot.duckdb"


class DatabaseError(Exception):
    """The metrics database could not answer; the message is safe to show a user."""


class DataBusy(DatabaseError):
    """The database file is locked by a running import."""


class ReadOnlyDatabase(DatabaseError):
    """A write (import, demo) asked of a database kpibot did not create."""


class Refused(DatabaseError):
    """The database refused a query (a missing table or column, no permission); the message
    names what, never the driver's text. :meth:`for_kpi` names the KPI too."""

    def __init__(self, refusal: Refusal, kpi: str | None = None):
        self.refusal = refusal
        self.kpi = kpi
        what = refusal.describe()
        super().__init__(f"Can't answer `{kpi}`: {what}." if kpi else f"The database refused the query: {what}.")

    def for_kpi(self, kpi: str) -> Refused:
        return self if self.kpi else Refused(self.refusal, kpi)


class MissingTable(Refused):
    """A KPI reads a table the (foreign) database does not have."""

    def __init__(self, table: str, kpi: str | None = None):
        self.table = table
        super().__init__(Refusal("no_table", table), kpi)

    def for_kpi(self, kpi: str) -> MissingTable:
        return self if self.kpi else MissingTable(self.table, kpi)


def database_url() -> str:
    return os.environ.get("KPI_DATABASE_URL") or DEFAULT_URL


def query_timeout_seconds() -> float:
    return float(os.environ.get("KPI_QUERY_TIMEOUT", "20"))


# ---- one deadline per question ----------------------------------------------------------------

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("kpibot_deadline", default=None)
_interrupting = threading.Event()  # set while the process stops: every query ends at once
_active: set = set()  # the guards of queries running now, for interrupt_all()
_active_lock = threading.Lock()
TOO_LONG = "the question took too long and was stopped"
TOO_LONG_SQL = "the metrics database took too long (statement timeout); the question was stopped"


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """All the work inside (every statement, on every engine, and model fitting that calls
    :func:`check_deadline`) shares one deadline, ``seconds`` from now, in this thread."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left before the current deadline (None: none set); 0 while the process stops."""
    if _interrupting.is_set():
        return 0.0
    due = _deadline.get()
    return None if due is None else due - time.monotonic()


def check_deadline() -> None:
    """Raise :class:`DatabaseError` once the question's deadline has passed (for loops in Python)."""
    left = remaining()
    if left is not None and left <= 0:
        raise DatabaseError(TOO_LONG)


def interrupt_all() -> None:
    """Stop every running query now and refuse new ones (the process is stopping)."""
    _interrupting.set()
    with _active_lock:
        guards = list(_active)
    for guard in guards:
        try:
            guard.cut(guard.how)
        except Exception:  # noqa: BLE001 - best effort: the process is going away
            pass


def resume_queries() -> None:
    """Undo :func:`interrupt_all` (a test starting a new app in the same process)."""
    _interrupting.clear()


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


def _sqlite_read_only_setup(dbapi_conn, _record) -> None:
    """A team's file: no WAL switch (that rewrites the file's header), writes refused."""
    dbapi_conn.create_aggregate("median", 1, _Median)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA query_only=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


_engines: dict[tuple[str, bool], Engine] = {}
_created: set[str] = set()
_owners: weakref.WeakKeyDictionary[Engine, Ownership] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


_generations: dict[str, int] = {}


def data_changed(engine: Engine) -> None:
    """Called after an import or a demo build, so that caches of the data (the dimension
    values the parser knows, metrics.values) are rebuilt on their next use."""
    with _lock:
        _generations[str(engine.url)] = _generations.get(str(engine.url), 0) + 1


def generation(engine: Engine) -> int:
    """How many times this process has changed the data behind ``engine``."""
    return _generations.get(str(engine.url), 0)


def get_engine(url: str | None = None) -> Engine:
    """One engine per URL per process. In a database kpibot owns, its tables are created on
    first use; any other is opened read-only and left exactly as it is."""
    url = url or database_url()
    key = (url, True)
    with _lock:
        engine = _engines.get(key)
    if engine is None:
        owner = _classify(url)  # outside the lock: it connects
        with _lock:
            engine = _engines.get(key)
            if engine is None:
                engine = _make_engine(url, read_only=not owner.owned)
                _owners[engine] = owner
                _engines[key] = engine
    if url not in _created and ownership_of(engine).owned:
        create_tables(engine)
        _created.add(url)
    return engine


def _classify(url: str) -> Ownership:
    """Ownership, waiting (like a query) while an import in another process holds the file."""
    deadline = time.monotonic() + busy_wait_seconds()
    pause = 0.05
    asked: Path | None = None
    try:
        while True:
            try:
                return ownership.classify(url, DEFAULT_URL)
            except (OperationalError, DBAPIError, duckdb_error()) as exc:
                if not is_lock_error(exc):
                    raise DatabaseError(_short(exc)) from exc
                if time.monotonic() + pause > deadline:
                    raise DataBusy("data is being refreshed, try again in a moment") from exc
                asked = asked or _ask_release(url)
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
    finally:
        _withdraw(asked)


def duckdb_error() -> type[Exception]:
    try:
        import duckdb
    except ImportError:  # pragma: no cover - duckdb is a dependency
        return OperationalError
    return duckdb.Error


def ownership_of(engine: Engine) -> Ownership:
    """Whose database ``engine`` opens: decided when :func:`get_engine` made it, else now."""
    owner = _owners.get(engine)
    if owner is None:
        owner = _classify(engine.url.render_as_string(hide_password=False))
        _owners[engine] = owner
    return owner


def require_owned(engine: Engine, action: str) -> None:
    """Refuses ``action`` (e.g. ``kpibot import``) on a database kpibot did not create."""
    if not ownership_of(engine).owned:
        raise ReadOnlyDatabase(
            f"`{action}` refused: kpibot did not create this database, so it only reads it "
            "(it writes only to its embedded DuckDB file, an empty database, or one it created)."
        )


def missing_tables(engine: Engine, tables) -> list[str]:
    """Of ``tables``, those a foreign database does not have (a database kpibot owns has all)."""
    owner = _owners.get(engine)
    if owner is None or owner.owned:
        return []
    return [name for name in tables if name.lower() not in owner.relations]


def check_tables(engine: Engine, tables, kpi: str | None = None) -> None:
    """Raises :class:`MissingTable` naming the first of ``tables`` the database lacks."""
    missing = missing_tables(engine, tables)
    if missing:
        raise MissingTable(missing[0], kpi)


_stopping = threading.Event()
_lingers: list[_Linger] = []


class _Linger:
    """Empties a DuckDB engine's pool once it has been idle, releasing the file lock; at once
    (when idle) if another process waiting for the file asked for it (:func:`release_request`)."""

    def __init__(self, engine: Engine, seconds: float):
        self.engine = engine
        self.seconds = seconds
        self.busy = 0
        self.last = time.monotonic()
        self.lock = threading.Lock()
        self.asked = release_request(engine)
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
        while not _stopping.wait(min(self.seconds / 2, 0.25)):
            asked = self.asked is not None and _recent(self.asked)
            with self.lock:
                idle = self.busy == 0 and (asked or time.monotonic() - self.last >= self.seconds)
                if idle and self.last != float("inf"):
                    self.engine.pool.dispose()
                    self.last = float("inf")  # nothing more to release until next use


def release_request(engine: Engine | str) -> Path | None:
    """The file by which a process waiting for a DuckDB file asks the process holding it open
    (a warm ``kpibot serve``) to let go when idle; None for other databases."""
    url = make_url(engine) if isinstance(engine, str) else engine.url
    name = url.database
    if url.get_backend_name() != "duckdb" or not name or name == ":memory:":
        return None
    return Path(f"{name}.release")


def _recent(path: Path) -> bool:
    """A release request still waited on (one a crashed waiter left behind is ignored)."""
    try:
        return time.time() - path.stat().st_mtime < 120
    except OSError:
        return False


def linger_seconds() -> float:
    """How long an idle DuckDB file stays open: ``KPI_DUCKDB_LINGER``, else 2 s (a command), or
    what :func:`keep_warm` set (``kpibot serve``: 300 s, as reopening costs every question)."""
    value = os.environ.get("KPI_DUCKDB_LINGER", "").strip()
    try:
        return float(value) if value else _warm
    except ValueError:
        return _warm


_warm = 2.0


def keep_warm(seconds: float) -> None:
    """Engines made from now on keep an idle DuckDB file open this long (unless configured)."""
    global _warm
    _warm = seconds


def _cache_statements(engine: Engine) -> Engine:
    """duckdb-engine opts out of SQLAlchemy's compiled-statement cache; kpibot's statements are
    plain SELECTs and INSERTs whose compiled form depends only on their structure, so caching
    them is safe and saves ~2 ms of compilation per question."""
    engine.dialect.__dict__["_supports_statement_cache"] = True
    return engine


def _duckdb_setup(dbapi_conn, _record, memory: str | None = None) -> None:
    """Per connection. Every range join kpibot writes is against its small windows table
    (one row per period or trend bucket, ~50 for a 2-year monthly trend): a nested loop is
    the fastest plan for those, but DuckDB only picks it up to 5 rows (measured at 10M rows:
    a 2-year monthly trend 1.5-2.5x faster). DuckDB's memory limit and threads come from
    :mod:`storage.machine` (``KPI_DUCKDB_MEMORY``, ``KPI_DUCKDB_THREADS``, else what this
    machine or container gives the process)."""
    statements = ["SET nested_loop_join_threshold = 1000", f"SET threads = {machine.duckdb_threads()}"]
    memory = memory or machine.duckdb_memory_limit()
    if memory:
        statements.append(f"SET memory_limit = '{memory}'")
    for sql in statements:
        dbapi_conn.execute(sql)


def _make_engine(url: str, read_only: bool = False, duckdb_memory: str | None = None) -> Engine:
    """``read_only`` (a database kpibot did not create): every session is read-only where
    the driver can enforce it — DuckDB ``read_only``, SQLite ``mode=ro`` and ``query_only``,
    PostgreSQL ``default_transaction_read_only``. ``duckdb_memory``: a DuckDB database's
    own memory limit (else :func:`storage.machine.duckdb_memory_limit`)."""
    parsed = make_url(url)
    setup = functools.partial(_duckdb_setup, memory=duckdb_memory)
    backend = parsed.get_backend_name()
    if backend == "duckdb":
        database = parsed.database
        extra = {"connect_args": {"read_only": True}} if read_only else {}
        if database and database != ":memory:":
            if not read_only:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            linger = linger_seconds()
            if linger <= 0:
                engine = create_engine(url, poolclass=NullPool, **extra)
                event.listen(engine, "connect", setup)
                return engine
            engine = create_engine(url, pool_size=8, max_overflow=24, pool_reset_on_return=None, **extra)
            event.listen(engine, "connect", setup)
            _Linger(engine, linger)
            return _cache_statements(engine)
        engine = create_engine(url)
        event.listen(engine, "connect", setup)
        return _cache_statements(engine)
    if backend == "sqlite":
        database = parsed.database
        if read_only:
            engine = create_engine(ownership.read_only_url(url),
                                   connect_args={"timeout": 5, "check_same_thread": False})
            event.listen(engine, "connect", _sqlite_read_only_setup)
            return engine
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 5, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_setup)
        return engine
    if backend == "postgresql":
        timeout_ms = int(query_timeout_seconds() * 1000)
        # JIT compilation costs seconds on the wide aggregate statements and saves nothing here
        options = f"-c statement_timeout={timeout_ms} -c jit=off"
        if read_only:
            options += " -c default_transaction_read_only=on"
        connect_args = {"connect_timeout": 3, "options": options}
        # no pool_pre_ping: _retrying_connect pings itself, after checkout, so that a server that
        # stops answering mid-ping can be cut off by query()'s deadline like any other read
        return create_engine(url, connect_args=connect_args)
    return create_engine(url, pool_pre_ping=True)


def create_tables(engine: Engine) -> None:
    """kpibot's tables, indexes and marker, in a database it owns (refused in any other)."""
    require_owned(engine, "create tables")
    with _retrying_connect(engine) as conn:
        metadata.create_all(conn, checkfirst=True)
        if engine.dialect.name == "duckdb":
            migrate_money(conn)
        ownership.mark(conn)
        if engine.dialect.name != "duckdb":
            existing = {
                ix["name"]
                for table in {ix.table.name for ix in ROW_STORE_INDEXES}  # type: ignore[union-attr]  # made on columns
                for ix in inspect(conn).get_indexes(table)
            }
            for index in ROW_STORE_INDEXES:
                if index.name not in existing:
                    index.create(conn)
        conn.commit()


def _old_float_money(conn: Connection) -> list[tuple[str, str]]:
    """The money columns still typed FLOAT in a DuckDB file that kpibot itself created
    (before money was DECIMAL, it stored it as DuckDB's 4-byte FLOAT), else [].

    Created by kpibot means: every canonical table is there with exactly kpibot's columns, and
    every money column is FLOAT. Any other file is left as it is (it is not kpibot's to change)."""
    rows = conn.exec_driver_sql(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema()"
    ).all()
    found: dict[str, dict[str, str]] = {}
    for table, column, kind in rows:
        found.setdefault(table, {})[column] = str(kind).upper()
    old = []
    for name, table in TABLES.items():
        columns = found.get(name, {})
        if set(columns) != {c.name for c in table.columns}:
            return []
        for col in table.columns:
            if is_money(col.type):
                if columns[col.name] not in ("FLOAT", "REAL", "FLOAT4"):
                    return []
                old.append((name, col.name))
    return old


def migrate_money(conn: Connection) -> list[tuple[str, str]]:
    """Converts an older kpibot DuckDB file's FLOAT money columns to ``DECIMAL(18, 2)``.

    Each stored value becomes the nearest cent. A 4-byte FLOAT keeps about 7 significant
    digits, so amounts below ~$100,000 get their exact cents back; larger ones keep the cent
    the FLOAT had drifted to (1234567.89 was stored as 1234567.875 and becomes 1234567.88):
    re-import those files to restore them. Returns the (table, column) pairs converted."""
    old = _old_float_money(conn)
    quote = conn.dialect.identifier_preparer.quote
    for table, column in old:  # names from the schema, never user text
        conn.exec_driver_sql(f"ALTER TABLE {quote(table)} ALTER {quote(column)} TYPE DECIMAL(18, 2)")
    return old


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
    asked: Path | None = None
    while True:
        try:
            conn = engine.connect()
        except (OperationalError, DBAPIError) as exc:
            if not is_lock_error(exc):
                _withdraw(asked)
                raise DatabaseError(_short(exc)) from exc
            if time.monotonic() + pause > deadline:
                _withdraw(asked)
                raise DataBusy("data is being refreshed, try again in a moment") from exc
            if asked is None:
                asked = _ask_release(engine)
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
            continue
        _withdraw(asked)
        asked = None
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


def _ask_release(engine: Engine | str) -> Path | None:
    """Asks whoever holds the DuckDB file (an idle, warm bot) to release it: see :class:`_Linger`."""
    path = release_request(engine)
    if path is None:
        return None
    try:
        path.touch()
    except OSError:
        return None
    return path


def _withdraw(path: Path | None) -> None:
    if path is not None:
        try:
            path.unlink()
        except OSError:
            pass


def _ping(conn: Connection) -> bool:
    """False when a pooled connection is not usable (the server restarted since it was used,
    a deadline cut it, it was left mid-command): the caller drops it and takes another."""
    try:
        conn.dialect.do_ping(conn.connection.dbapi_connection)  # type: ignore[arg-type]  # checked out: never None
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
        refused = ownership.refusal(exc)
        if refused is not None:
            raise Refused(refused) from exc
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
    left = remaining()
    tighter = left is not None and left < seconds  # the question's deadline comes first
    if left is not None:
        check_deadline()
        seconds = min(seconds, left)
    guard = _Guard()
    handle = None
    dialect = engine.dialect.name
    started = time.monotonic()
    if dialect == "duckdb":
        guard.how = lambda c: c.interrupt()

        def interrupt() -> None:
            # an interrupt before DuckDB has begun the statement (still compiling) does nothing:
            # repeat it until the query is over (never after: the connection is back in the pool)
            if guard.done:
                return
            guard.cut(guard.how)
            watchdog.call_later(0.05, interrupt)

        handle = watchdog.call_later(seconds, interrupt)
    elif dialect == "postgresql":
        guard.how = _cancel_pg
        handle = watchdog.call_later(seconds + SILENCE_GRACE, lambda: guard.cut(_shut_socket))
    elif dialect == "sqlite":
        guard.how = lambda c: c.interrupt()
    with _active_lock:
        _active.add(guard)
    try:
        with connect(engine, guard=guard) as conn:
            undo = _limit(conn, dialect, seconds, tighter)
            try:
                yield conn
            finally:
                undo()
    except Exception as exc:
        if (handle is not None and handle[0]) or (guard.fired and dialect != "postgresql"):
            what = TOO_LONG_SQL if dialect != "postgresql" or _interrupting.is_set() else (
                f"the metrics database stopped answering (nothing for {seconds + SILENCE_GRACE:g} s)")
            raise DatabaseError(what) from exc
        if isinstance(exc, DatabaseError) and dialect == "postgresql" and not tighter and not _interrupting.is_set():
            raise  # the server's own words, made safe by connect(): statement timeout, connect timeout
        left = remaining()
        if (left is not None and left <= 0) or (dialect == "sqlite" and time.monotonic() >= started + seconds):
            raise DatabaseError(TOO_LONG_SQL) from exc  # the deadline, SQLite's progress handler
        raise
    finally:
        guard.done = True
        with _active_lock:
            _active.discard(guard)
        if handle is not None:
            watchdog.cancel(handle)


def _limit(conn: Connection, dialect: str, seconds: float, tighter: bool):
    """Per-statement limits for what is left of the deadline; returns how to undo them.
    SQLite has no timeout of its own: a progress handler stops it (every ~10k VM steps)."""
    if dialect == "sqlite":
        raw = conn.connection.driver_connection
        assert raw is not None
        due = time.monotonic() + seconds
        raw.set_progress_handler(lambda: 1 if _interrupting.is_set() or time.monotonic() > due else 0, 10_000)
        return lambda: raw.set_progress_handler(None, 0)
    if dialect == "postgresql" and tighter:
        conn.exec_driver_sql(f"SET statement_timeout = {max(1, int(seconds * 1000))}")

        def undo() -> None:
            try:
                conn.exec_driver_sql(f"SET statement_timeout = {int(query_timeout_seconds() * 1000)}")
            except Exception:  # noqa: BLE001 - a broken connection is dropped by the pool anyway
                conn.invalidate()

        return undo
    return lambda: None


def _cancel_pg(driver_connection) -> None:
    """Cancel the statement a psycopg connection is running (thread-safe, a new socket to the server)."""
    driver_connection.cancel()


class _Guard:
    """The connection a query deadline would cut, and whether it did."""

    def __init__(self) -> None:
        self.connection = None
        self.fired = False
        self.how = lambda _c: None  # how interrupt_all() stops this query
        self.done = False

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
        _owners.clear()


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
