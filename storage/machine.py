"""What this machine (or container) gives kpibot.

One place for the resource settings that depend on the machine: the CPUs and memory this
process may use (its CPU affinity and cgroup quota, the cgroup memory limit or the physical
memory), and from them DuckDB's defaults — its worker threads and its memory limit, unless
``KPI_DUCKDB_THREADS`` / ``KPI_DUCKDB_MEMORY`` say otherwise. DuckDB's own default memory
limit is 80% of the *physical* memory, which in a container, or beside a bot that also draws
charts, is more than the process has.

Tried and dropped (2026-12-07): glibc's ``malloc_trim`` after big answers. At 10M events a
2-year trend leaves the process at ~290 MB, and trimming gave back 1 MB: what stays is
DuckDB's buffer cache, in use up to its limit (closing the database frees it: 132 MB), and
the benchmark's peak was the same with and without it (462 / 464 MB).
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

__all__ = ["cpus", "duckdb_memory_limit", "duckdb_threads", "memory_bytes", "rollup_memory_limit"]

#: DuckDB's share of the memory this process may use, when ``KPI_DUCKDB_MEMORY`` is not set
DUCKDB_SHARE = 0.25
#: ... but never less than this (DuckDB's hash tables for a year of 10M events need ~200 MB)
DUCKDB_FLOOR = 256 * 2**20
_SIZE = re.compile(r"^\d+(\.\d+)?\s*[KMGT]i?B$", re.I)
_CGROUP = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


@cache
def cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (``cpu.max``)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = (_read(_CGROUP / "cpu.max") or "max").split()
    if len(quota) == 2 and quota[0] != "max":
        try:
            n = min(n, max(1, int(float(quota[0]) / float(quota[1]) + 0.5)))
        except (ValueError, ZeroDivisionError):
            pass
    return max(1, n)


@cache
def memory_bytes() -> int | None:
    """Memory this process may use: the cgroup limit (v2 ``memory.max``, v1
    ``memory.limit_in_bytes``) if lower than the physical memory; None if unknown."""
    physical = None
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        pass
    for path in (_CGROUP / "memory.max", _CGROUP / "memory" / "memory.limit_in_bytes"):
        value = _read(path)
        if value and value.isdigit():
            limit = int(value)
            if physical is None or limit < physical:
                return limit
    return physical


def _size(env, name: str) -> str | None:
    """The setting ``name`` if it is a size (``400MB``), else None."""
    configured = (os.environ if env is None else env).get(name, "").strip()
    return configured if configured and _SIZE.match(configured) else None


def duckdb_memory_limit(env=None) -> str | None:
    """``KPI_DUCKDB_MEMORY`` if it is a size (``400MB``), else a quarter of the memory this
    process may use (at least 256 MB); None when the machine does not say."""
    configured = _size(env, "KPI_DUCKDB_MEMORY")
    if configured:
        return configured
    total = memory_bytes()
    if total is None:
        return None
    return f"{max(DUCKDB_FLOOR, int(total * DUCKDB_SHARE)) // 2**20}MB"


def rollup_memory_limit(env=None) -> str | None:
    """The memory limit of kpibot's own rollup store when it is a DuckDB file: a second
    database in the same process, with a buffer cache of its own. ``KPI_ROLLUP_MEMORY`` if it
    is a size, else DuckDB's limit (:func:`duckdb_memory_limit`). Measured at 10M events
    (2026-12-07, the 30 usage cases, one round each): 64 MB instead of 256 MB lowered the
    peak RSS from 562 to 519 MB, but some answers from the rollup (inactive customers) took
    up to 2.6x as long, so the default stays DuckDB's limit and a tight container sets it."""
    return _size(env, "KPI_ROLLUP_MEMORY") or duckdb_memory_limit(env)


def duckdb_threads(env=None) -> int:
    """``KPI_DUCKDB_THREADS`` if a positive integer, else :func:`cpus`."""
    env = os.environ if env is None else env
    configured = env.get("KPI_DUCKDB_THREADS", "").strip()
    return int(configured) if configured.isdigit() and int(configured) > 0 else cpus()
