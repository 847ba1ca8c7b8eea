"""storage.machine: the CPUs and memory a process may use (cgroup-aware), and DuckDB's defaults
from them."""

from __future__ import annotations

import pytest

from storage import database, machine


@pytest.fixture
def cgroup(tmp_path, monkeypatch):
    """A fake /sys/fs/cgroup; the cached answers are forgotten before and after."""
    monkeypatch.setattr(machine, "_CGROUP", tmp_path)
    machine.cpus.cache_clear()
    machine.memory_bytes.cache_clear()
    yield tmp_path
    machine.cpus.cache_clear()
    machine.memory_bytes.cache_clear()


def test_a_cpu_quota_caps_the_cpus(cgroup, monkeypatch):
    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3}, raising=False)
    assert machine.cpus() == 4  # no cpu.max: the affinity
    machine.cpus.cache_clear()
    (cgroup / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs: rounded to 2
    assert machine.cpus() == 2
    machine.cpus.cache_clear()
    (cgroup / "cpu.max").write_text("max 100000\n")
    assert machine.cpus() == 4


def test_a_cgroup_memory_limit_below_the_physical_memory_is_the_memory(cgroup, monkeypatch):
    monkeypatch.setattr(machine.os, "sysconf", lambda name: {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 2**20}[name])
    assert machine.memory_bytes() == 4 * 2**30  # 2**20 pages of 4 KiB
    machine.memory_bytes.cache_clear()
    (cgroup / "memory.max").write_text(f"{2 * 2**30}\n")
    assert machine.memory_bytes() == 2 * 2**30
    machine.memory_bytes.cache_clear()
    (cgroup / "memory.max").write_text("max\n")  # no limit
    assert machine.memory_bytes() == 4 * 2**30


def test_duckdb_memory_limit_is_a_quarter_with_a_floor_unless_configured(monkeypatch):
    monkeypatch.setattr(machine, "memory_bytes", lambda: 4 * 2**30)
    assert machine.duckdb_memory_limit({}) == "1024MB"
    assert machine.duckdb_memory_limit({"KPI_DUCKDB_MEMORY": "300MB"}) == "300MB"
    assert machine.duckdb_memory_limit({"KPI_DUCKDB_MEMORY": "lots"}) == "1024MB"  # not a size: ignored
    monkeypatch.setattr(machine, "memory_bytes", lambda: 512 * 2**20)
    assert machine.duckdb_memory_limit({}) == "256MB"  # a quarter would be 128 MB
    monkeypatch.setattr(machine, "memory_bytes", lambda: None)
    assert machine.duckdb_memory_limit({}) is None  # unknown: DuckDB's own default


def test_duckdb_threads(monkeypatch):
    monkeypatch.setattr(machine, "cpus", lambda: 3)
    assert machine.duckdb_threads({}) == 3
    assert machine.duckdb_threads({"KPI_DUCKDB_THREADS": "1"}) == 1
    assert machine.duckdb_threads({"KPI_DUCKDB_THREADS": "0"}) == 3


def test_a_duckdb_connection_gets_them(tmp_path, monkeypatch):
    monkeypatch.setenv("KPI_DUCKDB_MEMORY", "300MB")
    monkeypatch.setenv("KPI_DUCKDB_THREADS", "1")
    engine = database.get_engine(f"duckdb:///{tmp_path / 'm.duckdb'}")
    try:
        with engine.connect() as conn:
            limit = conn.exec_driver_sql("SELECT current_setting('memory_limit')").scalar()
            threads = conn.exec_driver_sql("SELECT current_setting('threads')").scalar()
    finally:
        database.dispose_all()
    assert str(limit).replace(" ", "") in ("286.1MiB", "300.0MB", "300MB")  # DuckDB prints it in its own unit
    assert int(threads) == 1


def test_the_rollup_store_gets_duckdbs_limit_unless_configured(monkeypatch):
    monkeypatch.setattr(machine, "memory_bytes", lambda: 4 * 2**30)
    assert machine.rollup_memory_limit({}) == "1024MB"
    assert machine.rollup_memory_limit({"KPI_DUCKDB_MEMORY": "256MB"}) == "256MB"
    assert machine.rollup_memory_limit({"KPI_DUCKDB_MEMORY": "256MB", "KPI_ROLLUP_MEMORY": "64MB"}) == "64MB"
    assert machine.rollup_memory_limit({"KPI_ROLLUP_MEMORY": "some"}) == "1024MB"  # not a size: ignored
    monkeypatch.setattr(machine, "memory_bytes", lambda: None)
    assert machine.rollup_memory_limit({}) is None  # unknown: DuckDB's own default


def test_the_rollup_store_connection_gets_its_own_limit(tmp_path, monkeypatch):
    from metrics import rollups

    monkeypatch.setenv("KPI_DUCKDB_MEMORY", "400MB")
    monkeypatch.setenv("KPI_ROLLUP_MEMORY", "100MB")
    url = f"duckdb:///{tmp_path / 'm.rollups.duckdb'}"
    store = rollups._store(url)
    source = database.get_engine(f"duckdb:///{tmp_path / 'm.duckdb'}")
    try:
        with store.connect() as conn:
            own = conn.exec_driver_sql("SELECT current_setting('memory_limit')").scalar()
        with source.connect() as conn:
            main = conn.exec_driver_sql("SELECT current_setting('memory_limit')").scalar()
    finally:
        store.dispose()
        rollups._stores.pop(url, None)
        database.dispose_all()
    assert str(own).replace(" ", "") in ("95.3MiB", "100.0MB", "100MB")
    assert str(main).replace(" ", "") in ("381.4MiB", "400.0MB", "400MB")
