"""A throwaway PostgreSQL database and a role with no rights of its own, for tests of kpibot
over a team's database it did not create (the fixture grants the role what it may read)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, text

from storage import database
from tests.conftest import PG_ADMIN_URL


@dataclass(frozen=True)
class TeamDatabase:
    name: str
    role: str
    owner_url: str  # the superuser on that database: builds the schema, snapshots it
    reader_url: str  # the role: what kpibot connects as


@contextmanager
def team_database(prefix: str) -> Iterator[TeamDatabase]:
    """The database and its role, both dropped afterwards; the test is skipped without a server."""
    suffix = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
    name, role = f"{prefix}_{suffix}", f"{prefix}_reader_{suffix}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
            conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
    except Exception as exc:  # noqa: BLE001 - no server here
        pytest.skip(f"PostgreSQL not available at {PG_ADMIN_URL}: {str(exc).splitlines()[0]}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield TeamDatabase(name, role, f"{base}/{name}", base.replace("postgres@", f"{role}@", 1) + f"/{name}")
    finally:
        database.dispose_all()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()
