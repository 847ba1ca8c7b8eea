"""Pre-aggregations kpibot keeps itself: daily usage per user, in kpibot's own store.

The engagement KPIs group every usage event of a period into users; on a year of product
events that is most of the work of a question. Here the events are rolled up once per UTC day
and user — ``(day, user, customer, events, core actions, sessions, session seconds)``, with
integer keys for users and customers — in a store that is never among the team's tables: an
embedded DuckDB file beside the metrics database (``<name>.rollups.duckdb``), or
``KPI_ROLLUP_URL`` (e.g. a schema the team grants kpibot in its warehouse).

* **Exact.** Distinct users over any run of whole days are distinct user keys over those
  days' rows: no approximation. Per-customer-day counts would not add up to distinct users
  (one user on two days), so the grain is the user-day. Each row carries its user's previous
  day of use (and, on one row per customer and day, its customer's): a user is counted in a
  window on the one day in it whose previous day is before the window, so counting needs no
  grouping by user, and a per-day table of user-days by previous day (``daily``) answers an
  uncut window from a few hundred rows a day.
* **Incremental.** :func:`refresh` reads only the days from the watermark (the last built
  day again, as it may have been partial, then every newer day), a month per transaction;
  each transaction moves the watermark with its rows, so a build that is killed leaves the
  previous rollup, consistent, in use. Old events that changed (a backfill) make it build
  everything again.
* **Used only when fresh.** :func:`serve` answers a KPI from the rollup only when every window
  is whole UTC days inside the watermark and the source still holds exactly the events the
  rollup was built from before the watermark (an import that added, changed or removed old
  events makes it stale: the source answers). Served: ``mau``, ``wau``,
  ``core_actions_per_user``, ``core_actions`` (not cut by action: the source answers that),
  ``session_time`` (every mean from the sums of session seconds; the period's exact median,
  an extra, from a per-day count of sessions by 10-second length bucket, which says in which
  bucket the middle sessions fall and how many are shorter, and then that bucket's events
  in the source, tens of thousands of rows, not the period's millions), ``inactive_customers`` (customers
  without a user-day in the N days before each end, from the customers' copy below),
  ``feature_adoption`` (from one row per day, customer and action with that pair's previous
  day, and per-day tables of them: :mod:`metrics.rollup_adoption`), and KPIs derived from them.
* **Cut by customer attributes too.** A breakdown or filter by a customer attribute, and
  "what moved it" (:func:`serve_each`: every attribute in one statement), join the rollup's
  customer keys to a copy of the customers' attributes in the store
  (:mod:`metrics.rollup_customers`), used only while its fingerprint equals the source's
  customers; else the source answers. The statements: :mod:`metrics.rollup_query`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    and_,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.engine import make_url

from metrics import rollup_customers
from metrics.periods import Settings
from metrics.spec import Metric
from storage import database, machine
from storage.schema import usage_events

if TYPE_CHECKING:
    from metrics.rollup_query import Plan

log = logging.getLogger(__name__)
meta = MetaData()
state = Table(
    "kpibot_rollup_state", meta,
    Column("name", String, primary_key=True),
    Column("source", String, nullable=False),
    Column("first_day", Date, nullable=False),
    Column("built_through", Date, nullable=False),  # exclusive: days before it are built
    Column("source_rows", BigInteger, nullable=False),  # source events before built_through
    Column("built_at", DateTime, nullable=False),
)
user_keys = Table(
    "kpibot_user_keys", meta,
    Column("user_key", Integer, nullable=False),
    Column("customer_id", String, nullable=False),
    Column("user_id", String, nullable=False),
)
customer_keys = Table(
    "kpibot_customer_keys", meta,
    Column("customer_key", Integer, nullable=False),
    Column("customer_id", String, nullable=False),
)
user_days = Table(
    "kpibot_user_days", meta,
    Column("day", Date, nullable=False),
    Column("user_key", Integer, nullable=False),
    Column("customer_key", Integer, nullable=False),
    Column("events", Integer, nullable=False),
    Column("core", Integer, nullable=False),
    Column("sessions", Integer, nullable=False),
    Column("session_seconds", Float),
    # the user's previous day of use (NULL: none): a user is active in [lo, hi) once, on the
    # day in it whose previous day is before lo, so distinct users need no grouping by user
    Column("prev_day", Date),
    # the same for the customer, on one row per customer and day (its least user key); on
    # the customer's other rows of that day, the day itself (never before a window's start)
    Column("customer_prev", Date),
)
daily = Table(  # user-days per day and previous day: a window's distinct users in a few rows a day
    "kpibot_daily_firsts", meta,
    Column("day", Date, nullable=False),
    Column("prev_day", Date),
    Column("users", Integer, nullable=False),  # user-days whose user's previous day is prev_day
    Column("customers", Integer, nullable=False),  # customer-days whose customer's previous day is prev_day
    Column("core", BigInteger, nullable=False),
    Column("sessions", BigInteger, nullable=False),  # sessions with a length, and their seconds
    Column("session_seconds", Float),
)
lengths = Table(  # sessions per day and length bucket: a window's exact median reads one bucket's events
    "kpibot_session_lengths", meta,
    Column("day", Date, nullable=False),
    Column("bucket", BigInteger, nullable=False),  # session_bucket(session_seconds), as the source computes it
    Column("sessions", BigInteger, nullable=False),
)
actions = Table(  # feature adoption: a customer's day of an action, with that pair's previous day of use
    "kpibot_customer_actions", meta,
    Column("day", Date, nullable=False),
    Column("customer_key", Integer, nullable=False),
    Column("action", String, nullable=False),  # a missing action: rollup_adoption.NULL_ACTION
    Column("prev_day", Date),
)
day_actions = Table(  # the actions of each day: a window's actions seen in a few rows a day
    "kpibot_day_actions", meta,
    Column("day", Date, nullable=False),
    Column("action", String, nullable=False),
)
daily_pairs = Table(  # pairs per day, action and previous day: a window's used pairs in a few rows a day
    "kpibot_daily_pairs", meta,
    Column("day", Date, nullable=False),
    Column("action", String, nullable=False),
    Column("prev_day", Date),
    Column("pairs", BigInteger, nullable=False),
)
action_stage = Table(
    "kpibot_customer_actions_stage", meta,
    Column("day", Date, nullable=False),
    Column("customer_id", String, nullable=False),
    Column("action", String, nullable=False),
)
calendar = Table(  # every built day: windows become (window, day) pairs, equi-joined to the rows
    "kpibot_days", meta,
    Column("day", Date, nullable=False),
)
stage = Table(
    "kpibot_user_days_stage", meta,
    Column("day", Date, nullable=False),
    Column("customer_id", String, nullable=False),
    Column("user_id", String, nullable=False),
    Column("events", Integer, nullable=False),
    Column("core", Integer, nullable=False),
    Column("sessions", Integer, nullable=False),
    Column("session_seconds", Float),
)
NAME = "usage_user_days"
#: Seconds per session-length bucket (:func:`session_bucket`).
BUCKET_SECONDS = 10
#: KPI → how it reads the rollup (see :class:`metrics.rollup_query.Plan`) and its look-back in days
#: (None: the window itself; inactivity reads ``KPI_INACTIVE_DAYS`` per question).
SERVED: dict[str, tuple[str, int | None]] = {
    "wau": ("active", 7),
    "mau": ("active", 30),
    "core_actions_per_user": ("per_user", None),
    "core_actions": ("core", None),
    "session_time": ("session", None),
    "inactive_customers": ("inactive", None),
    "feature_adoption": ("adoption", None),
}


@dataclass(frozen=True)
class Status:
    source: str
    first_day: date
    built_through: date
    source_rows: int
    built_at: datetime
    rows: int


def _label(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def store_url(source: Engine) -> str | None:
    """``KPI_ROLLUP_URL``, else a DuckDB file beside a file database (None: no default)."""
    configured = os.environ.get("KPI_ROLLUP_URL", "").strip()
    if configured:
        return configured
    name = source.url.database
    if source.dialect.name not in ("duckdb", "sqlite") or not name or name == ":memory:" or name.startswith("file:"):
        return None
    path = Path(name)
    return f"duckdb:///{path.with_name(path.stem + '.rollups.duckdb')}"


_stores: dict[str, Engine] = {}
_lock = threading.Lock()


def _store(url: str) -> Engine:
    with _lock:
        engine = _stores.get(url)
        if engine is None:
            # a second DuckDB database in the process, with a buffer cache of its own (KPI_ROLLUP_MEMORY)
            engine = _stores[url] = database._make_engine(url, duckdb_memory=machine.rollup_memory_limit())
        return engine


def _exists(url: str) -> bool:
    parsed = make_url(url)
    if parsed.get_backend_name() in ("duckdb", "sqlite"):
        return bool(parsed.database) and Path(parsed.database or "").exists()
    return True


# ---- building ---------------------------------------------------------------------------------


def _day(col, dialect: str):
    return func.date(col) if dialect == "sqlite" else cast(col, Date)


def _as_date(value) -> date | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.date() if isinstance(value, datetime) else value


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time())


def _next_month(day: date) -> date:
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


#: What a build writes day by day: dropped for an earlier layout, emptied to build it all again.
BUILT = (user_days, daily, lengths, actions, day_actions, daily_pairs, calendar)


def refresh(source: Engine, *, on_chunk: Callable[[date, int], None] | None = None) -> Status | None:
    """Bring the rollup up to the source's last day, reading only days from the watermark on.
    One transaction per month: rows and watermark move together (``on_chunk(day, rows)``
    after each). Returns the status, None when the source has no usage events."""
    url = store_url(source)
    if url is None:
        raise database.DatabaseError("no rollup store: set KPI_ROLLUP_URL (kpibot writes only there)")
    store = _store(url)
    with database.connect(store, wait=60) as conn:
        outdated = _outdated(conn)
        conn.rollback()
        if outdated:  # built by an earlier kpibot: kpibot's own tables, built again
            with conn.begin():
                for table in (*BUILT, state):
                    table.drop(conn, checkfirst=True)
        _ready.discard(url)
    meta.create_all(store)
    with database.connect(source) as conn:
        first, last = conn.execute(select(func.min(usage_events.c.occurred_at), func.max(usage_events.c.occurred_at))).one()
    first_day, last_day = _as_date(first), _as_date(last)
    if first_day is None or last_day is None:
        return None
    current = _state(store, source)
    if current is not None and (current.first_day != first_day or not is_fresh(source, current)):
        # events before the watermark were added, changed or removed: build it all again
        with database.connect(store, wait=60) as conn, conn.begin():
            for table in BUILT:
                conn.execute(delete(table))
            conn.execute(delete(state).where(state.c.name == NAME))
        current = None
    start = first_day if current is None else current.built_through - timedelta(days=1)
    end = last_day + timedelta(days=1)
    day = start
    while day < end:
        upto = min(_next_month(day), end)
        rows = _chunk(source, store, first_day, day, upto)
        if on_chunk is not None:
            on_chunk(upto, rows)
        day = upto
    rollup_customers.refresh(source, store, _label(source))  # only when the customers changed
    return status(source)


def _chunk(source: Engine, store: Engine, first_day: date, lo: date, hi: date) -> int:
    ue = usage_events
    dialect = source.dialect.name
    day = _day(ue.c.occurred_at, dialect).label("day")
    query = (
        select(day, ue.c.customer_id, ue.c.user_id, func.count().label("events"),
               func.sum(cast(ue.c.is_core, Integer)).label("core"),
               func.count(ue.c.session_seconds).label("sessions"),
               func.sum(ue.c.session_seconds).label("session_seconds"))
        .where(ue.c.occurred_at >= _midnight(lo), ue.c.occurred_at < _midnight(hi))
        .group_by(day, ue.c.customer_id, ue.c.user_id)
    )
    bucket = session_bucket(ue.c.session_seconds).label("bucket")
    by_length = (select(day, bucket, func.count().label("sessions"))
                 .where(ue.c.occurred_at >= _midnight(lo), ue.c.occurred_at < _midnight(hi),
                        ue.c.session_seconds.is_not(None))
                 .group_by(day, bucket))
    from metrics.rollup_adoption import NULL_ACTION

    action = func.coalesce(ue.c.action, NULL_ACTION).label("action")
    by_action = (select(day, ue.c.customer_id, action)
                 .where(ue.c.occurred_at >= _midnight(lo), ue.c.occurred_at < _midnight(hi))
                 .group_by(day, ue.c.customer_id, action))
    with database.connect(source) as conn:
        found = conn.execute(query).all()
        counted = conn.execute(by_length).all()
        used = conn.execute(by_action).all()
        before = conn.execute(select(func.count()).select_from(ue).where(ue.c.occurred_at < _midnight(hi))).scalar() or 0
    from storage.bulk import insert_rows  # Arrow and pandas: only when a rollup is built

    columns: dict[str, list[Any]] = {c.name: [] for c in stage.c}
    for row in found:
        columns["day"].append(_as_date(row.day))
        columns["customer_id"].append(row.customer_id)
        columns["user_id"].append(row.user_id)
        columns["events"].append(int(row.events))
        columns["core"].append(int(row.core or 0))
        columns["sessions"].append(int(row.sessions or 0))
        columns["session_seconds"].append(None if row.session_seconds is None else float(row.session_seconds))
    with database.connect(store, wait=60) as conn, conn.begin():
        conn.execute(delete(stage))
        insert_rows(conn, stage, columns)
        _new_keys(conn)
        conn.execute(delete(user_days).where(user_days.c.day >= lo))
        conn.execute(delete(calendar).where(calendar.c.day >= lo))
        conn.execute(insert(calendar), [{"day": lo + timedelta(days=k)} for k in range((hi - lo).days)])
        conn.execute(delete(daily).where(daily.c.day >= lo))
        conn.execute(delete(lengths).where(lengths.c.day >= lo))
        conn.execute(delete(action_stage))
        insert_rows(conn, action_stage, {"day": [_as_date(r.day) for r in used], "customer_id": [r.customer_id for r in used],
                                         "action": [r.action for r in used]})
        conn.execute(delete(actions).where(actions.c.day >= lo))
        conn.execute(delete(day_actions).where(day_actions.c.day >= lo))
        conn.execute(insert(actions).from_select([col.name for col in actions.c], _with_previous_pairs(lo)))
        conn.execute(insert(day_actions).from_select(["day", "action"], select(action_stage.c.day, action_stage.c.action)
                                                                            .distinct()))
        conn.execute(delete(action_stage))
        conn.execute(delete(daily_pairs).where(daily_pairs.c.day >= lo))
        conn.execute(insert(daily_pairs).from_select(["day", "action", "prev_day", "pairs"], select(
            actions.c.day, actions.c.action, actions.c.prev_day, func.count()).where(actions.c.day >= lo)
            .group_by(actions.c.day, actions.c.action, actions.c.prev_day)))
        insert_rows(conn, lengths, {"day": [_as_date(r.day) for r in counted], "bucket": [int(r.bucket) for r in counted],
                                    "sessions": [int(r.sessions) for r in counted]})
        conn.execute(insert(user_days).from_select([col.name for col in user_days.c], _with_previous_days(lo)))
        conn.execute(insert(daily).from_select([col.name for col in daily.c], _daily_firsts(lo)))
        conn.execute(delete(stage))
        conn.execute(delete(state).where(state.c.name == NAME))
        conn.execute(insert(state).values(name=NAME, source=_label(source), first_day=first_day, built_through=hi,
                                          source_rows=int(before), built_at=datetime.now(UTC).replace(tzinfo=None)))
    return len(found)


def session_bucket(seconds):
    """A session length's bucket, computed by the database that holds it: ``BUCKET_SECONDS``
    wide, rounded or truncated as that database casts. Only its order matters (a longer session
    never has a lower bucket), and the median's second statement compares the same expression
    on the same database, so every database's rounding gives the same median."""
    return cast(seconds / BUCKET_SECONDS, BigInteger)


def _with_previous_days(lo: date) -> Select:
    """The staged days as user-day rows, each with its user's and customer's previous day of
    use: from the staged days themselves and, before them, the last built day before ``lo``."""
    s, k, c, d = stage, user_keys, customer_keys, user_days
    new = (select(s.c.day, k.c.user_key, c.c.customer_key, s.c.events, s.c.core, s.c.sessions, s.c.session_seconds)
           .select_from(s.join(k, and_(k.c.customer_id == s.c.customer_id, k.c.user_id == s.c.user_id))
                        .join(c, c.c.customer_id == s.c.customer_id)).cte("new_days"))
    earlier = d.c.day < lo
    users = _previous(new, d, ("user_key",), lo, "user")
    firsts = (select(new.c.customer_key, new.c.day, func.min(new.c.user_key).label("user_key"))
              .group_by(new.c.customer_key, new.c.day))
    customer_last = (select(d.c.customer_key, func.max(d.c.day).label("day"), cast(null(), Integer).label("user_key"))
                     .where(earlier, d.c.customer_key.in_(select(new.c.customer_key))).group_by(d.c.customer_key))
    cu = union_all(firsts, customer_last).subquery("customer_seq")
    customers = select(cu.c.customer_key, cu.c.day, cu.c.user_key,
                       func.lag(cu.c.day).over(partition_by=cu.c.customer_key, order_by=cu.c.day).label("prev_day")
                       ).subquery("customer_prev")
    designated = and_(customers.c.customer_key == new.c.customer_key, customers.c.day == new.c.day,
                      customers.c.user_key == new.c.user_key)
    return (select(new.c.day, new.c.user_key, new.c.customer_key, new.c.events, new.c.core, new.c.sessions,
                   new.c.session_seconds, users.c.prev_day,
                   case((customers.c.user_key.is_(None), new.c.day), else_=customers.c.prev_day).label("customer_prev"))
            .select_from(new.join(users, and_(users.c.user_key == new.c.user_key, users.c.day == new.c.day,
                                              users.c.staged == 1))
                         .outerjoin(customers, designated)))


def _previous(new, built: Table, keys: Sequence[str], lo: date, name: str):
    """``new``'s staged rows (``staged`` 1) and, before them, each of their keys' last day in
    ``built`` before ``lo``, each with its key's previous day of use (``prev_day``)."""
    known = select(*(new.c[k] for k in keys)).distinct().subquery(f"{name}_keys")
    last = (select(*(built.c[k] for k in keys), func.max(built.c.day).label("day"), literal(0, Integer).label("staged"))
            .select_from(built.join(known, and_(*(known.c[k] == built.c[k] for k in keys))))
            .where(built.c.day < lo).group_by(*(built.c[k] for k in keys)))
    seq = union_all(select(*(new.c[k] for k in keys), new.c.day, literal(1, Integer).label("staged")), last
                    ).subquery(f"{name}_seq")
    prev = func.lag(seq.c.day).over(partition_by=[seq.c[k] for k in keys], order_by=seq.c.day)
    return select(*(seq.c[k] for k in keys), seq.c.day, seq.c.staged, prev.label("prev_day")).subquery(f"{name}_prev")


def _with_previous_pairs(lo: date) -> Select:
    """The staged (day, customer, action) rows, each with that pair's previous day of use: from
    the staged days and, before them, the pair's last built day before ``lo``."""
    s, c = action_stage, customer_keys
    new = (select(s.c.day, c.c.customer_key, s.c.action)
           .select_from(s.join(c, c.c.customer_id == s.c.customer_id)).cte("new_pairs"))
    pairs = _previous(new, actions, ("customer_key", "action"), lo, "pair")
    return select(pairs.c.day, pairs.c.customer_key, pairs.c.action, pairs.c.prev_day).where(pairs.c.staged == 1)


def _daily_firsts(lo: date) -> Select:
    """Per built day from ``lo``: its user-days per previous day (with their core actions and
    sessions), and its customers per previous day."""
    d = user_days
    per_user = (select(d.c.day, d.c.prev_day, func.count().label("users"), literal(0, Integer).label("customers"),
                       func.sum(d.c.core).label("core"), func.sum(d.c.sessions).label("sessions"),
                       func.sum(d.c.session_seconds).label("session_seconds"))
                .where(d.c.day >= lo).group_by(d.c.day, d.c.prev_day))
    per_customer = (select(d.c.day, d.c.customer_prev, literal(0, Integer), func.count(), literal(0, Integer),
                           literal(0, Integer), cast(null(), Float))
                    .where(d.c.day >= lo, or_(d.c.customer_prev.is_(None), d.c.customer_prev < d.c.day))
                    .group_by(d.c.day, d.c.customer_prev))
    return select(union_all(per_user, per_customer).subquery("firsts"))


def _new_keys(conn) -> None:
    """Integer keys for users and customers not seen before (counting integers is cheaper
    than grouping pairs of strings)."""
    s, k, c = stage, user_keys, customer_keys
    users = select(s.c.customer_id, s.c.user_id).distinct().subquery("new_users")
    top = select(func.coalesce(func.max(k.c.user_key), 0)).scalar_subquery()
    conn.execute(insert(k).from_select(["user_key", "customer_id", "user_id"], select(
        top + func.row_number().over(order_by=(users.c.customer_id, users.c.user_id)), users.c.customer_id, users.c.user_id,
    ).where(~select(k.c.user_key).where(k.c.customer_id == users.c.customer_id, k.c.user_id == users.c.user_id).exists())))
    names = select(s.c.customer_id).distinct().subquery("new_customers")
    top_c = select(func.coalesce(func.max(c.c.customer_key), 0)).scalar_subquery()
    conn.execute(insert(c).from_select(["customer_key", "customer_id"], select(
        top_c + func.row_number().over(order_by=names.c.customer_id), names.c.customer_id,
    ).where(~select(c.c.customer_key).where(c.c.customer_id == names.c.customer_id).exists())))


def _state(store: Engine, source: Engine, count_rows: bool = False) -> Status | None:
    with database.query(store) as conn:
        row = conn.execute(select(state).where(state.c.name == NAME)).first()
        if row is None or row.source != _label(source):
            return None
        rows = conn.execute(select(func.count()).select_from(user_days)).scalar() or 0 if count_rows else 0
    return Status(row.source, _as_date(row.first_day), _as_date(row.built_through), int(row.source_rows),  # type: ignore[arg-type]
                  row.built_at, int(rows))


def status(source: Engine, count_rows: bool = False) -> Status | None:
    """The rollup's watermark for ``source`` (None: none built, or no store)."""
    url = store_url(source)
    if url is None or not _exists(url):
        return None
    store = _store(url)
    if url not in _ready:
        from sqlalchemy import inspect

        with database.connect(store) as conn:
            if not inspect(conn).has_table(state.name) or _outdated(conn):
                return None
        _ready.add(url)
    return _state(store, source, count_rows)


_ready: set[str] = set()  # stores known to hold the rollup tables


def is_outdated(source: Engine) -> bool:
    """Whether the store holds a rollup of an earlier layout, unused until a refresh rebuilds it."""
    url = store_url(source)
    if url is None or not _exists(url):
        return False
    with database.connect(_store(url)) as conn:
        return _outdated(conn)


def _outdated(conn) -> bool:
    """Whether the store holds a rollup of an earlier layout (without the previous days, or
    without the session lengths, or without the customers' actions)."""
    from sqlalchemy import inspect

    found = inspect(conn)  # the per-day table came with the previous days: one implies the other
    return found.has_table(user_days.name) and not all(found.has_table(t.name) for t in (daily, lengths, daily_pairs))


def is_fresh(source: Engine, found: Status) -> bool:
    """Whether the source still holds exactly the events the rollup was built from."""
    with database.query(source) as conn:
        now = conn.execute(select(func.count()).select_from(usage_events)
                           .where(usage_events.c.occurred_at < _midnight(found.built_through))).scalar()
    return int(now or 0) == found.source_rows


# ---- answering --------------------------------------------------------------------------------

_checked: dict[tuple, tuple[float, bool]] = {}  # (what, source, data version …) → (checked at, fresh)


def enabled() -> bool:
    return os.environ.get("KPI_ROLLUPS", "1").strip().lower() not in ("0", "false", "no", "off")


def _plan(metric: Metric, windows: Sequence[tuple[date, date]], settings: Settings, engine: Engine,
          names: Sequence[str]) -> Plan | None:
    """None when the rollup cannot answer: a KPI it does not serve, windows not on whole UTC
    days inside its watermark, a cut by something other than customer attributes, or a
    rollup (or customer copy) that no longer matches the source."""
    how = SERVED.get(metric.id)
    if how is not None and how[0] == "adoption":  # the rollup holds the action: a cut of its own
        from metrics.rollup_adoption import ITEM

        names = [n for n in names if n != ITEM]
    if how is None or not windows or not enabled() or any(n in metric.dimensions for n in names):
        return None
    url = store_url(engine)
    if url is None or not _exists(url):
        return None
    from metrics.periods import to_utc

    utc = [(to_utc(ds, settings), to_utc(de, settings)) for ds, de in windows]
    if any(t.time() != time() for pair in utc for t in pair):
        return None  # windows not on UTC midnights: the daily rollup cannot cut them
    kind, days = how
    if kind == "inactive":  # customers without a day of use in the N days before the end
        from metrics.kpis.common import inactive_days

        days = inactive_days()
    spans = [((we - timedelta(days=days)).date() if days else ws.date(), we.date()) for ws, we in utc]
    found = _fresh(engine, settings)
    # before first_day the source had no events either (an older one arriving later changes
    # the count is_fresh checks): only the watermark bounds what the rollup can answer
    if found is None or max(hi for _, hi in spans) > found.built_through:
        return None
    tables = {"user_days": user_days, "daily": daily, "calendar": calendar, "customer_keys": customer_keys,
              "lengths": lengths, "actions": actions, "day_actions": day_actions, "daily_pairs": daily_pairs}
    version: tuple = (found.first_day, found.built_through, found.source_rows)
    copy = _fresh_customers(engine, settings) if names or kind == "inactive" or (len(windows) >= 2 and kind != "adoption") \
        else None
    if copy is not None:
        tables["attrs"] = rollup_customers.table(copy.dimensions)
        version += (copy.fingerprint,)
    if (names or kind == "inactive") and (copy is None or not set(names) <= set(copy.dimensions)):
        return None
    from metrics.rollup_query import Plan

    return Plan(kind, spans, utc, _store(url), tables, engine, version)


def _explained_by(metric: Metric, plan: Plan, filters: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """The dimensions "what moved it" will cut this answer's period by, when the customers'
    copy has them all (then the answer's statement cuts them too): see :mod:`metrics.explain`."""
    from metrics.catalogue import dimensions_for

    if metric.split not in ("sum", "mean") or "attrs" not in plan.tables or len(plan.spans) < 2:
        return ()
    fixed = {name for name, _ in filters}
    dims = tuple(d for d in dimensions_for(metric) if d not in fixed)
    return dims if set(dims) <= set(plan.tables["attrs"].c.keys()) else ()


def _serving(metric: Metric, answer: Callable[[Plan], Any], plan: Callable[[], Plan | None], engine: Engine):
    """``answer(plan)``, or None when there is no plan or the store could not answer. Never for
    the access check's dry run: it derives what the source's statements read, before any work."""
    from metrics import access

    if access.is_dry_run(engine):
        return None
    try:
        found = plan()
        return None if found is None else answer(found)
    except database.DatabaseError as exc:
        left = database.remaining()
        if left is not None and left <= 0:  # out of time: the source would be too
            raise
        # the store is being refreshed, or refused this statement (out of memory): the source answers
        log.warning("rollup not used for %s: %s", metric.id, exc)
        return None


def serve(
    metric: Metric,
    windows: Sequence[tuple[date, date]],
    settings: Settings,
    engine: Engine,
    dimension: str | None = None,
    filters: Sequence[tuple[str, str]] = (),
) -> dict | None:
    """The KPI's cells from the rollup, exactly as :func:`metrics.engine.compute` gives them
    from the source (cut by a customer attribute, filtered by customer attributes); None when
    the rollup cannot answer (then the source does)."""
    from metrics import rollup_query

    names = [n for n in (dimension, *(name for name, _ in filters)) if n]

    def answer(plan: Plan) -> dict:
        if plan.kind == "adoption":
            from metrics import rollup_adoption

            return rollup_adoption.cells(metric, plan, dimension, filters)
        # the period's median session (an extra: one window; the trend and the cuts have none)
        median = plan.kind == "session" and dimension is None
        known = _median(plan) if median and not filters else {}
        cells = rollup_query.cells(metric, plan, dimension, filters, lambda fixed: _explained_by(metric, plan, fixed),
                                   known)
        if median and not known and (0, None) in cells:
            _source_median(cells, metric, windows, settings, engine, filters)
        return cells

    return _serving(metric, answer, lambda: _plan(metric, windows, settings, engine, names), engine)


def _median(plan: Plan) -> dict[str, Any]:
    """The period's exact median session length in seconds, as the source computes it, from
    the bucket counts and that bucket's events (:func:`metrics.rollup_query.median`); empty
    when the source no longer holds those events (then :func:`_source_median` gives it)."""
    from metrics import rollup_query

    found = rollup_query.median(plan, usage_events.c.session_seconds, usage_events.c.occurred_at, session_bucket)
    return {} if found is None else {"median": found}


def _source_median(cells: dict, metric: Metric, windows: Sequence[tuple[date, date]], settings: Settings,
                   engine: Engine, filters: Sequence[tuple[str, str]]) -> None:
    """The period's median from all of its events in the source: for a period filtered by
    customer attributes (the bucket counts are not per customer)."""
    from metrics.engine import _compute

    found = _compute(metric, windows[:1], settings, engine, None, filters).get((0, None))
    cell = cells[(0, None)]
    if found is not None and found.extras is not None and cell.extras is not None:
        cell.extras["median"] = found.extras.get("median")


def serve_each(
    metric: Metric,
    windows: Sequence[tuple[date, date]],
    settings: Settings,
    engine: Engine,
    dimensions: Sequence[str],
    filters: Sequence[tuple[str, str]] = (),
) -> dict[str, dict] | None:
    """Per dimension, what :func:`serve` gives for it, from one statement: "what moved it"
    (:mod:`metrics.scan`) from the rollup; None when the rollup cannot answer."""
    from metrics import rollup_query

    names = [*dimensions, *(name for name, _ in filters)]
    if not dimensions:
        return None
    def answer(plan: Plan) -> dict[str, dict]:
        if plan.kind == "adoption":
            from metrics import rollup_adoption

            found = rollup_adoption.cells_by_each(metric, plan, dimensions, filters)
            return {d: found[d] for d in dimensions}
        return rollup_query.cells_by_each(metric, plan, dimensions, filters)

    return _serving(metric, answer, lambda: _plan(metric, windows, settings, engine, names), engine)


def _remembered(key: tuple, ttl: float | None, check: Callable[[], bool]) -> bool:
    """``check()``, run once per key (the source's data version), and again after ``ttl``
    seconds where the version is only a watermark (a server database)."""
    import time as clock

    hit = _checked.get(key)
    now = clock.monotonic()
    if hit is None or (ttl is not None and now - hit[0] > ttl):
        from metrics import access

        with access.unguarded():  # bookkeeping: nothing of it reaches the asker
            hit = (now, check())
        if len(_checked) > 256:
            _checked.clear()
        _checked[key] = hit
    return hit[1]


def _fresh(engine: Engine, settings: Settings) -> Status | None:
    """The rollup's status if it may be used, checked once per data version of the source."""
    from metrics import cache

    found = status(engine)
    if found is None:
        return None
    version, ttl = cache.data_version(engine, ("usage_events",), settings)
    key = ("events", _label(engine), version, found.built_through, found.source_rows)
    return found if _remembered(key, ttl, lambda: is_fresh(engine, found)) else None


def _fresh_customers(engine: Engine, settings: Settings) -> rollup_customers.Copy | None:
    """The customers' copy if it still equals the source's customers (once per data version)."""
    from metrics import cache

    url = store_url(engine)
    if url is None:
        return None
    copy = rollup_customers.current(_store(url), _label(engine))
    if copy is None:
        return None
    version, ttl = cache.data_version(engine, ("customers",), settings)
    key = ("customers", _label(engine), version, copy.fingerprint, copy.dimensions)
    return copy if _remembered(key, ttl, lambda: rollup_customers.is_fresh(engine, copy)) else None


def customers_status(source: Engine) -> tuple[rollup_customers.Copy | None, bool]:
    """The customers' copy in the store (None: none made) and whether it equals the source's."""
    url = store_url(source)
    if url is None or not _exists(url):
        return None, False
    copy = rollup_customers.current(_store(url), _label(source))
    return copy, copy is not None and rollup_customers.is_fresh(source, copy)


def dispose() -> None:
    with _lock:
        for engine in _stores.values():
            engine.dispose()
        _stores.clear()
    _checked.clear()
    _ready.clear()
    rollup_customers._ready.clear()
    from metrics import rollup_query

    rollup_query.forget()


__all__ = ["SERVED", "Status", "customers_status", "dispose", "enabled", "is_fresh", "is_outdated", "refresh", "serve", "serve_each", "status", "store_url"]
