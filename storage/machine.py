"""What this machine (or container) gives kpibot, and giving freed memory back to it.

One place for the resource settings that depend on the machine: the CPUs and memory this
process may use (its CPU affinity and cgroup quota, the cgroup memory limit or the physical
memory), and from them DuckDB's defaults — its worker threads and its memory limit, unless
``KPI_DUCKDB_THREADS`` / ``KPI_DUCKDB_MEMORY`` say otherwise. DuckDB's own default memory
limit is 80% of the *physical* memory, which in a container, or beside a bot that also draws
charts, is more than the process has.

:func:`trim` hands the heap's free pages back to the system (glibc's ``malloc_trim``; a
no-op elsewhere). glibc keeps what a big aggregation freed, in the arenas of the threads
that allocated it, so a process's resident memory only ever grows by the largest answer it
has computed; trimming when the work is done brings it back to what is in use.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import threading
from functools import cache
from pathlib import Path

__all__ = ["cpus", "duckdb_memory_limit", "duckdb_threads", "memory_bytes", "resident_bytes", "trim", "trim_if_grown"]

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


def duckdb_memory_limit(env=None) -> str | None:
    """``KPI_DUCKDB_MEMORY`` if it is a size (``400MB``), else a quarter of the memory this
    process may use (at least 256 MB); None when the machine does not say."""
    env = os.environ if env is None else env
    configured = env.get("KPI_DUCKDB_MEMORY", "").strip()
    if configured and _SIZE.match(configured):
        return configured
    total = memory_bytes()
    if total is None:
        return None
    return f"{max(DUCKDB_FLOOR, int(total * DUCKDB_SHARE)) // 2**20}MB"


def duckdb_threads(env=None) -> int:
    """``KPI_DUCKDB_THREADS`` if a positive integer, else :func:`cpus`."""
    env = os.environ if env is None else env
    configured = env.get("KPI_DUCKDB_THREADS", "").strip()
    return int(configured) if configured.isdigit() and int(configured) > 0 else cpus()


# ---- giving memory back ------------------------------------------------------------------------


@cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None (musl, macOS, Windows)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


def resident_bytes() -> int | None:
    """This process's resident memory now (Linux ``/proc/self/statm``), else None."""
    text = _read(Path("/proc/self/statm"))
    if not text:
        return None
    try:
        return int(text.split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (IndexError, ValueError, OSError):
        return None


def trim() -> bool:
    """Return the heap's free memory to the system; False where there is no ``malloc_trim``."""
    fn = _malloc_trim()
    if fn is None:
        return False
    fn(0)
    return True


#: trim when the resident memory has grown this much since the last trim
GROWTH = 32 * 2**20
_trim_lock = threading.Lock()
_after_trim: list[int] = [0]


def trim_if_grown(growth: int = GROWTH) -> bool:
    """:func:`trim` if the process has grown by ``growth`` bytes since it last trimmed (a
    big aggregation ran): cheap to call after every piece of work (one read of ``statm``)."""
    now = resident_bytes()
    if now is None or now - _after_trim[0] < growth or not _trim_lock.acquire(blocking=False):
        return False
    try:
        trimmed = trim()
        _after_trim[0] = resident_bytes() or now
        return trimmed
    finally:
        _trim_lock.release()
