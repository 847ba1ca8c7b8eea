"""Shared fixtures: one fresh metrics database per test, on DuckDB, SQLite and PostgreSQL.

PostgreSQL is the server at ``KPI_TEST_POSTGRES`` (default 127.0.0.1:5432, user postgres,
database test). Each test run creates its own database there and drops it at the end; where
no server answers, the PostgreSQL cases are skipped with the reason printed.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text

from storage import database

PG_ADMIN_URL = os.environ.get(
    "KPI_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
_pg_reason: str | None = None
_pg_db: str | None = None


def _postgres_database() -> str:
    """A database of this run's own on the local server, created once."""
    global _pg_reason, _pg_db
    if _pg_db:
        return _pg_db
    if _pg_reason:
        pytest.skip(_pg_reason)
    name = f"kpibot_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means "no server here"
        _pg_reason = f"PostgreSQL not available at {PG_ADMIN_URL}: {str(exc).splitlines()[0]}"
        print(_pg_reason)
        pytest.skip(_pg_reason)
    _pg_db = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    return _pg_db


def _drop_postgres() -> None:
    if not _pg_db:
        return
    database.dispose_all()
    name = _pg_db.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def pytest_sessionfinish(session, exitstatus):
    _drop_postgres()


BACKENDS = ["duckdb", "sqlite", "postgresql"]


def fresh_url(backend: str, tmp_path) -> str:
    if backend == "duckdb":
        return f"duckdb:///{tmp_path}/metrics.duckdb"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/metrics.sqlite"
    url = _postgres_database()
    engine = database.get_engine(url)
    from storage.schema import metadata

    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    return url


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> str:
    """A URL to an empty metrics database with the tables created, on each backend."""
    url = fresh_url(request.param, tmp_path)
    database.get_engine(url)
    return url


@pytest.fixture
def duck_url(tmp_path) -> str:
    """DuckDB only, for tests where the backend does not matter."""
    return fresh_url("duckdb", tmp_path)


@pytest.fixture
def company(db_url):
    """The hand-computed company of tests/kpi_fixtures.py, on each backend (modules may override)."""
    from tests import kpi_fixtures

    kpi_fixtures.load(db_url)
    return db_url
