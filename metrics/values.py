"""The values each dimension takes in a database, so that `retail nps` means industry=Retail.

The parser reads filters said in words (`nps for SMB customers`, `churn in latam`) by looking
words up in this index. It is built from the data itself (a grouped count per dimension
column, the most frequent values first), bounded (``MAX_VALUES`` per dimension: a column with
more is marked truncated and its rarer values must be named as ``dimension=value``), cached
per database, rebuilt after an import or a demo build in this process
(``storage.database.data_changed``) and otherwise at most ``TTL`` seconds old (data loaded by
another process).
Values never reach SQL from here: a filter is compared as a bound parameter by the engine.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import Engine, String, func, select

from metrics.model import relations
from storage import database

MAX_VALUES = 200  # per dimension; the rest are not offered as words
TTL = 600.0  # seconds: data loaded by other means shows up within this long

#: Everyday names for values, used only when the database holds the value they point to.
ALIASES = {
    "north america": "na", "americas": "na", "us": "na", "europe": "emea", "eu": "emea",
    "latin america": "latam", "south america": "latam", "asia": "apac", "asia pacific": "apac",
    "mid size": "mid market", "midmarket": "mid market", "small business": "smb",
    "small businesses": "smb", "how to": "how to", "feature requests": "feature request",
}


def key(text: str) -> str:
    """How a value is matched: any case, and ``_``, ``-`` or spaces alike."""
    return " ".join(re.split(r"[\s_\-]+", text.strip().lower())).strip()


@dataclass(frozen=True)
class ValueIndex:
    """dimension → its values (as stored), most frequent first."""

    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    truncated: frozenset[str] = frozenset()  # dimensions with more than MAX_VALUES values
    _by_key: dict[str, list[tuple[str, str]]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for dim, vals in self.values.items():
            for v in vals:
                k = key(v)
                if k:
                    self._by_key.setdefault(k, []).append((dim, v))
        for alias, target in ALIASES.items():
            if alias not in self._by_key and target in self._by_key:
                self._by_key[alias] = self._by_key[target]

    def find(self, phrase: str) -> list[tuple[str, str]]:
        """Every (dimension, value) a phrase names exactly (any case, `_`/`-`/space alike)."""
        return list(self._by_key.get(key(phrase), ()))

    def keys(self) -> list[str]:
        return list(self._by_key)

    def knows(self, dimension: str, value: str) -> bool | None:
        """True/False when the index can tell; None when the dimension was truncated or unknown."""
        if dimension in self.truncated or dimension not in self.values:
            return None
        return any(d == dimension for d, _ in self.find(value))

    def canonical(self, dimension: str, value: str) -> str | None:
        return next((v for d, v in self.find(value) if d == dimension), None)

    def of(self, dimension: str) -> tuple[str, ...]:
        return tuple(self.values.get(dimension, ()))


def columns() -> dict[str, list[tuple[str, str]]]:
    """dimension → the (table, column) pairs holding its values."""
    from metrics.catalogue import CATALOGUE  # the catalogue imports nothing from here

    out: dict[str, list[tuple[str, str]]] = {d: [("customers", d)] for d in relations.customer_dimensions()}
    for metric in CATALOGUE.values():
        for dim in metric.dimensions:
            for table in metric.tables:
                t = relations.table(table) if relations.has_table(table) else None
                if t is not None and dim in t.c and isinstance(t.c[dim].type, String):
                    pairs = out.setdefault(dim, [])
                    if (table, dim) not in pairs:
                        pairs.append((table, dim))
    return out


def build(engine: Engine, cap: int = MAX_VALUES) -> ValueIndex:
    """One grouped count per dimension column, at most ``cap + 1`` rows each."""
    values: dict[str, list[str]] = {}
    truncated: set[str] = set()
    with database.query(engine) as conn:
        for dim, pairs in columns().items():
            seen: list[str] = values.setdefault(dim, [])
            for table, column in pairs:
                if not relations.readable(engine, table, column):
                    continue  # a model file that maps no such column: nothing to offer
                col = relations.table(table).c[column]
                stmt = (
                    select(col)
                    .where(col.is_not(None))
                    .group_by(col)
                    .order_by(func.count().desc(), col)
                    .limit(cap + 1)
                )
                rows = [r[0] for r in conn.execute(stmt)]
                if len(rows) > cap:
                    truncated.add(dim)
                for v in rows[:cap]:
                    if isinstance(v, str) and v.strip() and v not in seen and len(seen) < cap:
                        seen.append(v)
    return ValueIndex({d: tuple(v) for d, v in values.items() if v}, frozenset(truncated))


class _Cache:
    """Indexes by database URL, rebuilt when older than ``TTL`` or invalidated by an import."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.items: dict[str, tuple[float, int, ValueIndex]] = {}
        self.lock = threading.Lock()

    def get(self, engine: Engine) -> ValueIndex:
        url, gen = str(engine.url), database.generation(engine)
        with self.lock:
            item = self.items.get(url)
            if item is not None and item[1] == gen and self.clock() - item[0] < TTL:
                return item[2]
        index = build(engine)
        with self.lock:
            self.items[url] = (self.clock(), gen, index)
        return index

    def invalidate(self, url: str | None = None) -> None:
        with self.lock:
            if url is None:
                self.items.clear()
            else:
                self.items.pop(url, None)


_cache = _Cache()


def index_for(engine: Engine) -> ValueIndex:
    """The (cached) index of ``engine``'s database; an empty one where the database refuses
    part of it (a team's database without some table). An outage or a timeout is raised: the
    question cannot be answered either, and the user should hear why, not a later "too long"."""
    try:
        return _cache.get(engine)
    except database.Refused:
        return ValueIndex()


def invalidate(engine: Engine | None = None) -> None:
    """Forget a database's index (after an import), or all of them."""
    _cache.invalidate(None if engine is None else str(engine.url))
