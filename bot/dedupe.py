"""Drop Slack's retried deliveries of an event we have already taken.

Slack re-sends an Events API delivery (``X-Slack-Retry-Num: 1..3``) when it did not see a
2xx within 3 seconds, or after a connection failure; each copy carries the same
``event_id``. :class:`TTLSet` remembers ids for ``ttl`` seconds (Slack's retries span about
five minutes) and at most ``maxsize`` of them. It is per process: several replicas behind a
load balancer need a shared store with the same :class:`Deduper` interface (e.g. Redis
``SET key 1 NX EX ttl``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol


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
