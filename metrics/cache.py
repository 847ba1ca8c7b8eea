"""Answers already computed: a repeated question, a digest or an alert check costs a look-up.

An entry is keyed by what decides its content, all of it:

* the question's query (KPI, periods, cut, filters, as-of day, how its words were read), the
  settings (time zone, fiscal year) and the ``KPI_`` environment a KPI may read (inactive days);
* what the asker may see: the sensitivities the policy allowed (``None``: unguarded, e.g. the
  CLI), because an answer's explanation is dropped when it would read beyond them. Entries are
  stored only after the access check passed, so a refused question never reaches the cache;
* the data version: :func:`storage.database.generation` (bumped by every import and demo
  build in this process) and, for a database in a local file (DuckDB, SQLite), the file's
  and its write-ahead log's size and modification time, which change with any write from any
  process (``kpibot import`` runs in another one). A server database (PostgreSQL, a
  warehouse) has no such stamp: there the key holds the freshness watermark of the tables
  the KPI reads (one MAX per time column, :mod:`metrics.freshness`), and an entry lives at
  most ``KPI_ANSWER_CACHE_TTL`` seconds (default 60), for loads that rewrite old days.

Bounded by entries (``KPI_ANSWER_CACHE_ENTRIES``, default 512) and by approximate bytes
(``KPI_ANSWER_CACHE_MB``, default 32; ``0`` turns the cache off), least recently used first.
Concurrent askers of the same key wait for the first one's answer instead of running it
again (a burst of the same digest question costs one run). Values are deep-copied in and out:
a caller may change its answer (attach an explanation) without changing the cached one.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine

from storage import database

T = TypeVar("T")

_off: ContextVar[bool] = ContextVar("kpibot_cache_off", default=False)


@dataclass
class Stats:
    hits: int = 0
    misses: int = 0
    stores: int = 0
    evictions: int = 0
    shared: int = 0  # answers handed to a concurrent asker of the same question


def _env_number(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "").strip() or default)
    except ValueError:
        return default


def _size(value: Any, depth: int = 0) -> int:
    """An estimate of the bytes an answer holds (its lists of points and segments dominate)."""
    if depth > 4:
        return 64
    if isinstance(value, (str, bytes)):
        return 50 + len(value)
    if isinstance(value, dict):
        return 64 + sum(_size(k, depth + 1) + _size(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return 56 + sum(_size(v, depth + 1) for v in value)
    if is_dataclass(value) and not isinstance(value, type):
        if getattr(value, "__module__", "") == "metrics.spec":  # a catalogue entry: shared, not held
            return 8
        return 56 + sum(_size(getattr(value, f.name), depth + 1) for f in fields(value))
    return 32


def _copy(value: T) -> T:
    """A deep copy that shares the catalogue entries (they hold functions and never change)."""
    memo: dict[int, Any] = {}
    for shared in _shared(value):
        memo[id(shared)] = shared
    return copy.deepcopy(value, memo)


def _shared(value: Any) -> Iterator[Any]:
    metric = getattr(value, "metric", None)
    if metric is not None and not isinstance(metric, str):
        yield metric


class AnswerCache:
    """LRU by entries and bytes, with an age bound per entry and single flight per key."""

    def __init__(self, entries: int = 512, max_bytes: int = 32 << 20):
        self.entries, self.max_bytes = entries, max_bytes
        self.lock = threading.Lock()
        self.items: OrderedDict[tuple, tuple[Any, int, float | None]] = OrderedDict()  # value, size, expiry
        self.bytes = 0
        self.flights: dict[tuple, threading.Event] = {}
        self.stats = Stats()

    @classmethod
    def from_env(cls) -> AnswerCache:
        mb = _env_number("KPI_ANSWER_CACHE_MB", 32)
        return cls(int(_env_number("KPI_ANSWER_CACHE_ENTRIES", 512)), int(mb * (1 << 20)))

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0 and self.entries > 0 and not _off.get()

    def get(self, key: tuple) -> Any | None:
        with self.lock:
            return self._get(key)

    def _get(self, key: tuple) -> Any | None:
        item = self.items.get(key)
        if item is None:
            return None
        value, size, expiry = item
        if expiry is not None and time.monotonic() >= expiry:
            del self.items[key]
            self.bytes -= size
            return None
        self.items.move_to_end(key)
        return value

    def put(self, key: tuple, value: Any, ttl: float | None = None) -> None:
        size = _size(value)
        if size > self.max_bytes:
            return
        with self.lock:
            old = self.items.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self.items[key] = (value, size, None if ttl is None else time.monotonic() + ttl)
            self.bytes += size
            self.stats.stores += 1
            while self.items and (len(self.items) > self.entries or self.bytes > self.max_bytes):
                _, (_, dropped, _) = self.items.popitem(last=False)
                self.bytes -= dropped
                self.stats.evictions += 1

    def clear(self) -> None:
        with self.lock:
            self.items.clear()
            self.bytes = 0

    def through(self, key: tuple, compute: Callable[[], T], ttl: float | None = None) -> T:
        """The cached value of ``key``, else ``compute()``'s (stored; errors are not), computed
        in the caller's compute slot (:func:`computing_in`): a hit, or waiting for another
        thread's run of the same key, holds none."""
        if not self.enabled:
            with computing():
                return compute()
        while True:
            with self.lock:
                hit = self._get(key)
                if hit is not None:
                    self.stats.hits += 1
                    return _copy(hit)
                flight = self.flights.get(key)
                if flight is None:
                    flight = self.flights[key] = threading.Event()
                    break
            left = database.remaining()  # another thread computes this very answer: take its result
            if not flight.wait(None if left is None else max(0.0, left)):
                return compute()  # not within this question's deadline: run it (and meet the deadline there)
            with self.lock:
                if key in self.items:
                    self.stats.shared += 1
            # loop: a hit now, or (it failed) compute it ourselves
        try:
            with self.lock:
                self.stats.misses += 1
            with computing():
                value = compute()
            self.put(key, _copy(value), ttl)
            return value
        finally:
            with self.lock:
                self.flights.pop(key, None)
            flight.set()


_cache: AnswerCache | None = None
_cache_lock = threading.Lock()


def answers() -> AnswerCache:
    """The process's answer cache (sized from the environment on first use)."""
    global _cache
    if _cache is None:
        with _cache_lock:
            if _cache is None:
                _cache = AnswerCache.from_env()
    return _cache


def reset() -> None:
    """Forget every answer and re-read the size settings (tests; a changed configuration)."""
    global _cache
    with _cache_lock:
        _cache = None


# ---- compute slots ------------------------------------------------------------------------------

_gate: ContextVar[Any] = ContextVar("kpibot_compute_gate", default=None)
_holding: ContextVar[bool] = ContextVar("kpibot_compute_holding", default=False)


@contextmanager
def computing_in(gate: Any) -> Iterator[None]:
    """Inside, whatever the cache cannot answer (a query, a chart) runs holding ``gate`` (a
    semaphore: a front end's slots for CPU work), taken only then: a repeated question is a
    look-up that never queues behind another question's computation."""
    token = _gate.set(gate)
    try:
        yield
    finally:
        _gate.reset(token)


@contextmanager
def computing() -> Iterator[None]:
    """Holds the compute slot of :func:`computing_in` (once per thread: work nested in work
    does not take a second one); nothing outside it."""
    gate = _gate.get()
    if gate is None or _holding.get():
        yield
        return
    with gate:
        token = _holding.set(True)
        try:
            yield
        finally:
            _holding.reset(token)


@contextmanager
def bypassed() -> Iterator[None]:
    """Inside, every answer is computed (the benchmark's cold runs)."""
    token = _off.set(True)
    try:
        yield
    finally:
        _off.reset(token)


def chart(result: Any, threshold: float | None, draw: Callable[[], bytes | None]) -> bytes | None:
    """The chart of an answer that came through the cache, drawn once per cached answer."""
    key = getattr(result, "_answer_key", None)
    if key is None:
        with computing():
            return draw()
    return answers().through(("chart", key, threshold), draw)


def keep_key(value: Any, key: tuple) -> Any:
    """Marks an answer with its cache key, so that its chart is cached with it."""
    try:
        value._answer_key = key
    except AttributeError:  # not an object that takes attributes (cells of an alert check)
        pass
    return value


# ---- the data version -------------------------------------------------------------------------


def _files(engine: Engine) -> tuple[Path, ...] | None:
    """The files a local database lives in (None: a server database, or in memory)."""
    if engine.dialect.name not in ("duckdb", "sqlite"):
        return None
    name = engine.url.database
    if name and name.startswith("file:"):  # SQLite opened read-only by URI: file:/path?mode=ro
        from urllib.parse import unquote

        name = unquote(name[5:].split("?", 1)[0])
    if not name or name == ":memory:":
        return None
    path = Path(name)
    return (path, Path(f"{name}.wal"), Path(f"{name}-wal"))


def _stamp(paths: tuple[Path, ...]) -> tuple:
    out: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            out.append(None)
            continue
        out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


def data_version(engine: Engine, tables: tuple[str, ...], settings) -> tuple[tuple, float | None]:
    """What the data behind ``tables`` is now, and how long an answer over it may be kept
    (None: until the version changes). See the module docstring."""
    gen = database.generation(engine)
    paths = _files(engine)
    if paths is not None and paths[0].is_file():  # else: not where we thought; probe instead
        return (gen, _stamp(paths)), None
    from metrics import freshness

    watermark = freshness.by_table(tuple(sorted(set(tables))), engine, settings)
    ttl = _env_number("KPI_ANSWER_CACHE_TTL", 60)
    return (gen, tuple(sorted(watermark.items()))), max(0.0, ttl)


__all__ = ["AnswerCache", "Stats", "answers", "bypassed", "chart", "data_version", "keep_key", "reset"]
