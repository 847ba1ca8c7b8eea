"""Python's full garbage collections at quiet moments, not in the middle of someone's answer.

A bot that has answered a few hundred different questions holds ~700k objects, most of them
its statement caches (kpibot's and SQLAlchemy's), and a full collection walks every one:
measured at 10M events over the benchmark's 329 questions, 14 full collections of 60-475 ms,
each landing on whichever answer was running (the chart that took 776 ms among draws of
85-130). So a process that serves people (``kpibot serve``, ``kpibot chat``, the benchmark)
calls :func:`install`:

* what it has imported (~160k objects: pandas, SciPy, matplotlib, SQLAlchemy) is frozen
  (``gc.freeze``): alive for the whole process, so never walked again;
* the automatic full collection is off; young objects are still collected as usual;
* :func:`tidy`, called when a reply has been delivered, runs the full collection when it is
  due (as often as Python would: every ``threshold2`` partial ones) and no answer is in flight
  (:func:`answering`, around :func:`metrics.api.answer`);
* under a load that never goes quiet it runs anyway at the end of an answer, once ten times
  overdue, so memory held by reference cycles stays bounded.

Without :func:`install` (a one-off ``kpibot ask``, the tests) nothing changes.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["answering", "install", "tidy"]

#: the automatic full collection, off: far above any count of partial collections
NEVER = 1_000_000_000
#: overdue this many times Python's own cadence, the full collection runs even mid-load
FORCE_AFTER = 10

_lock = threading.Lock()
_in_flight = 0
_due: int | None = None  # partial collections between full ones (Python's threshold2), once installed


def install() -> None:
    """Freeze what the process holds now and take over the full collections (see above)."""
    global _due
    with _lock:
        if _due is not None:
            return
        first, second, third = gc.get_threshold()
        _due = max(1, third)
        gc.collect()  # what is garbage now is not frozen
        gc.freeze()
        gc.set_threshold(first, second, NEVER)


def _overdue(times: int) -> bool:
    return _due is not None and gc.get_count()[2] >= _due * times


@contextmanager
def answering() -> Iterator[None]:
    """An answer in flight: no full collection starts at a quiet moment meanwhile."""
    global _in_flight
    with _lock:
        _in_flight += 1
    try:
        yield
    finally:
        with _lock:
            _in_flight -= 1
        if _overdue(FORCE_AFTER):
            gc.collect()


def tidy() -> bool:
    """A quiet moment (a reply delivered): the full collection, if due and nothing is in
    flight. Whether it ran."""
    with _lock:
        if _in_flight or not _overdue(1):
            return False
    gc.collect()
    return True
