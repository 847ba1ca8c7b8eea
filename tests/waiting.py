"""Waiting on a condition with a bounded deadline, the one way tests wait (never a fixed sleep).

The deadline is generous (the tests must pass on a loaded 2-core machine): it only bounds a
failure, it is never the thing asserted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEADLINE = 30.0  # seconds; only reached when the condition is never going to hold


def wait_until(condition: Callable[[], T], *, timeout: float = DEADLINE, what: str = "the condition",
               poll: float = 0.02) -> T:
    """The first truthy value of ``condition()``, polled until ``timeout``; AssertionError after."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still not true after {timeout:.0f}s")
        time.sleep(poll)  # the poll interval, not a wait for something to have happened
