"""Injectable clocks: every time-dependent function here asks a clock, never ``datetime.now``.

Clocks return timezone-aware UTC datetimes. Tests use :class:`FixedClock` and move it by
hand; production uses :class:`SystemClock`. Nothing in kpibot sleeps to wait for time.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that stands still until told otherwise."""

    def __init__(self, now: datetime):
        self._now = aware(now)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, now: datetime) -> None:
        with self._lock:
            self._now = aware(now)

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now


def aware(moment: datetime) -> datetime:
    """A UTC-aware datetime; naive values are taken to be UTC (as stored in the databases)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def naive_utc(moment: datetime) -> datetime:
    """How times are stored: naive UTC."""
    return aware(moment).replace(tzinfo=None)
