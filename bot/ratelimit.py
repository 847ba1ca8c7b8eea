"""Per-user and per-channel rate limits: token buckets on an injectable clock."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``capacity`` questions at once, refilled at ``per_minute`` per minute, per key."""

    def __init__(self, capacity: int, per_minute: float, clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000):
        self.capacity = capacity
        self.rate = per_minute / 60.0
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 if allowed (and counted), else seconds until the next question is allowed."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self.max_keys:
                    self._evict(now)
                bucket = self._buckets[key] = _Bucket(float(self.capacity), now)
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            return (1 - bucket.tokens) / self.rate if self.rate else float("inf")

    def _evict(self, now: float) -> None:
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.updated) * self.rate >= self.capacity]
        for k in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[k]


class Limits:
    """The bot's two limits; a question must pass both."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.user = RateLimiter(int(os.environ.get("KPI_USER_BURST", "10")), float(os.environ.get("KPI_USER_PER_MINUTE", "20")), clock)
        self.channel = RateLimiter(int(os.environ.get("KPI_CHANNEL_BURST", "30")), float(os.environ.get("KPI_CHANNEL_PER_MINUTE", "60")), clock)

    def check(self, user_id: str | None, channel_id: str | None) -> str | None:
        """None if allowed, else a friendly message."""
        wait = self.user.take(f"u:{user_id}")
        if wait:
            return f"You're asking faster than I can keep up — try again in {max(1, round(wait))} s."
        wait = self.channel.take(f"c:{channel_id}")
        if wait:
            return f"This channel is asking a lot at once — try again in {max(1, round(wait))} s."
        return None
