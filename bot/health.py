"""What is wrong with this process right now, for ``GET /healthz``: a registry of problems.

Any part of the bot reports a problem under a name (``audit``: audit rows cannot be
written, so restricted answers are being withheld) and clears it when it is over; the
health check answers 503 with the list while any is open. Additive by design: start-up
state and other checks register their own names beside these.
"""

from __future__ import annotations

import threading
import time

_lock = threading.Lock()
_problems: dict[str, tuple[str, float]] = {}  # name -> (what, since: time.time())


def report(name: str, detail: str) -> None:
    """Open (or keep open) problem ``name``; ``detail`` is a short line safe to show an operator."""
    with _lock:
        since = _problems.get(name, (detail, time.time()))[1]
        _problems[name] = (detail[:200], since)


def clear(name: str) -> None:
    with _lock:
        _problems.pop(name, None)


def problems() -> dict[str, dict[str, object]]:
    """The open problems: name -> {"detail", "since"} (epoch seconds)."""
    with _lock:
        return {name: {"detail": d, "since": round(s, 3)} for name, (d, s) in _problems.items()}
