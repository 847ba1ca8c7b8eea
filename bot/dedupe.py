"""Answer each Slack request once: drop retried events and replayed slash commands.

Slack re-sends an Events API delivery (``X-Slack-Retry-Num: 1..3``) when it did not see a
2xx within 3 seconds, or after a connection failure; each copy carries the same
``event_id``. A slash command carries a ``trigger_id`` unique to the invocation, so a
replayed request (the same signed body sent again within the 5 minutes its signature is
valid) has the same one. Keys are ``event:<event_id>`` and ``slash:<trigger_id>``,
remembered for ``KPI_DEDUPE_TTL`` seconds (600, longer than both windows).

The store is shared by every replica (:func:`make_deduper`):

* ``KPI_REDIS_URL`` set: Redis, ``SET <prefix>dedupe:<key> 1 NX EX ttl`` (one round trip;
  ``KPI_REDIS_PREFIX``, default ``kpibot:``, separates bots sharing one Redis);
* otherwise the state database (``KPI_STATE_URL``): a ``dedupe_keys`` table whose primary
  key is the request key, claimed with insert-or-ignore; expired keys are deleted as they
  are met and swept once a minute.

If the shared store cannot be reached the key is checked in this process's own
:class:`TTLSet` instead (logged): a retry might then be answered twice by two replicas,
which is better than answering no one.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Column, DateTime, Engine, MetaData, String, Table, delete

from bot.logging import event as log_event
from bot.logging import get_logger

log = get_logger("kpibot.dedupe")


class Deduper(Protocol):
    def first_time(self, key: str) -> bool:
        """True the first time ``key`` is seen (and remember it); False for a repeat."""


class TTLSet:
    """A bounded, thread-safe set whose members expire ``ttl`` seconds after insertion."""

    def __init__(self, ttl: float = 600.0, maxsize: int = 10_000, clock: Callable[[], float] = time.monotonic):
        if ttl <= 0 or maxsize <= 0:
            raise ValueError("ttl and maxsize must be positive")
        self.ttl = ttl
        self.maxsize = maxsize
        self._clock = clock
        self._items: OrderedDict[str, float] = OrderedDict()  # key -> expiry, oldest first
        self._lock = threading.Lock()

    def first_time(self, key: str) -> bool:
        now = self._clock()
        with self._lock:
            self._expire(now)
            if key in self._items:
                return False
            self._items[key] = now + self.ttl
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
            return True

    def __contains__(self, key: str) -> bool:
        with self._lock:
            self._expire(self._clock())
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._items)

    def _expire(self, now: float) -> None:
        while self._items:
            key, expiry = next(iter(self._items.items()))
            if expiry > now:
                break
            self._items.popitem(last=False)


dedupe_metadata = MetaData()

dedupe_keys = Table(
    "dedupe_keys",
    dedupe_metadata,
    Column("key", String(200), primary_key=True),
    Column("expires_at", DateTime, nullable=False),  # naive UTC
)


class SqlDeduper:
    """Keys in the state database: every replica sharing it answers a request once."""

    SWEEP_EVERY = 60.0  # seconds between deletes of all expired keys

    def __init__(self, engine: Engine, ttl: float = 600.0, clock: Callable[[], datetime] | None = None):
        self.engine = engine
        self.ttl = ttl
        self._clock = clock or (lambda: datetime.now(UTC).replace(tzinfo=None))
        self._swept = 0.0
        dedupe_metadata.create_all(engine, checkfirst=True)

    def first_time(self, key: str) -> bool:
        from storage.state import insert_unique_key

        now = self._clock()
        with self.engine.begin() as conn:
            if time.monotonic() - self._swept > self.SWEEP_EVERY:
                self._swept = time.monotonic()
                conn.execute(delete(dedupe_keys).where(dedupe_keys.c.expires_at <= now))
            else:
                conn.execute(delete(dedupe_keys).where(dedupe_keys.c.key == key[:200],
                                                       dedupe_keys.c.expires_at <= now))
            return insert_unique_key(conn, dedupe_keys, {"key": key[:200],
                                                         "expires_at": now + timedelta(seconds=self.ttl)})


class RedisDeduper:
    """Keys in Redis (``SET NX EX``), for replicas that share a Redis rather than a state file."""

    def __init__(self, url: str, ttl: float = 600.0, prefix: str = "kpibot:"):
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.ttl = max(1, int(ttl))
        self.prefix = prefix

    def first_time(self, key: str) -> bool:
        return bool(self.client.set(f"{self.prefix}dedupe:{key}", b"1", nx=True, ex=self.ttl))


class SharedDeduper:
    """A shared store, with this process's memory as the fallback when the store fails."""

    def __init__(self, store: Any, ttl: float = 600.0):
        self.store = store
        self.local = TTLSet(ttl=ttl)
        self.failures = 0

    def first_time(self, key: str) -> bool:
        try:
            first = bool(self.store.first_time(key))
        except Exception as exc:  # noqa: BLE001 - an answer given twice beats one never given
            self.failures += 1
            log_event(log, "dedupe_store_failed", level=30, store=type(self.store).__name__,
                      error=type(exc).__name__)
            return self.local.first_time(key)
        self.local.first_time(key)  # remembered here too, for when the store fails later
        return first


LOCK_WAIT = 0.3  # seconds a SQLite dedupe claim waits for the write lock before using memory


def _state_engine(url: str | None) -> Engine:
    """The state database; for SQLite an engine of its own that waits ``LOCK_WAIT`` for the
    write lock (not the state engine's 10 s): a held lock must not delay answers."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from storage.state import get_state_engine, state_url

    url = url or state_url()
    engine = get_state_engine(url)  # creates the file and the state tables, as every user does
    if make_url(url).get_backend_name() != "sqlite":
        return engine
    return create_engine(url, connect_args={"timeout": LOCK_WAIT, "check_same_thread": False})


def make_deduper(ttl: float = 600.0, env: Any = None) -> Deduper:
    """Redis when ``KPI_REDIS_URL`` is set, else the state database; see the module docstring."""
    env = os.environ if env is None else env
    redis_url = env.get("KPI_REDIS_URL")
    try:
        if redis_url:
            store: Any = RedisDeduper(redis_url, ttl, env.get("KPI_REDIS_PREFIX") or "kpibot:")
        else:
            store = SqlDeduper(_state_engine(env.get("KPI_STATE_URL") or None), ttl)
    except Exception as exc:  # noqa: BLE001 - e.g. a read-only state file: dedupe per process
        log_event(log, "dedupe_store_unavailable", level=30, error=type(exc).__name__)
        return TTLSet(ttl=ttl)
    return SharedDeduper(store, ttl)
