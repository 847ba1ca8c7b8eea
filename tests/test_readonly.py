"""Read-only on a database kpibot did not create (issue 14, item 4), on real engines.

The team's database below is shaped like the issue's: ``customers`` is a VIEW over the team's
own ``crm_accounts`` (other column names), ``survey_responses`` a view over a survey tool's
export (``rating``), ``orders`` a table of the team's with kpibot's names, and no ``tickets``.
On PostgreSQL kpibot connects as a role that may only SELECT.

Hand-computed answers for October 2026 (UTC):
* new_customers: a2 (Oct 5) and a3 (Oct 20) signed up in October -> 2.
* customers: active at Nov 1 = signed up before it and not churned by then: a1, a2 -> 2
  (a3 churned Oct 28, a4 Oct 15, a5 signs up Nov 2).
* revenue: o1 100.10 + o2 250.25 + o3 49.65 = 400.00 (o4 is September, o5 November 2);
  by region: EU (a1) 100.10 + 49.65 = 149.75, US (a2) 250.25.
* nps: October NPS ratings 10, 9, 9, 7, 3 -> promoters 3/5, detractors 1/5 -> 100 x 0.4 = 40
  (the csat row and September's 0 do not count).
"""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import date
from pathlib import Path

import duckdb
import pytest
from sqlalchemy import create_engine, func, select, table, text

from bot import cli
from metrics.api import answer
from storage import database, ownership
from storage.database import DatabaseError
from tests.pg_team import team_database

AS_OF = date(2026, 11, 15)

TEAM_SCHEMA = [
    "CREATE TABLE crm_accounts (account_id VARCHAR(20) PRIMARY KEY, account_name VARCHAR(50), "
    "created_at TIMESTAMP NOT NULL, closed_at TIMESTAMP, industry VARCHAR(20), region VARCHAR(20), "
    "plan VARCHAR(20), channel VARCHAR(20))",
    "CREATE INDEX crm_accounts_created ON crm_accounts (created_at)",
    "CREATE VIEW customers AS SELECT account_id AS customer_id, account_name AS name, "
    "created_at AS signed_up_at, closed_at AS churned_at, industry, CAST(NULL AS VARCHAR(20)) AS size_band, "
    "region, plan, channel AS acquisition_channel, TRUE AS is_paying FROM crm_accounts",
    "CREATE TABLE orders (order_id VARCHAR(20) PRIMARY KEY, customer_id VARCHAR(20) NOT NULL, "
    "ordered_at TIMESTAMP NOT NULL, amount DECIMAL(12, 2) NOT NULL, product VARCHAR(20), "
    "is_recurring BOOLEAN NOT NULL)",
    "CREATE TABLE survey_export (id VARCHAR(20) PRIMARY KEY, account VARCHAR(20), "
    "submitted_at TIMESTAMP NOT NULL, kind VARCHAR(10) NOT NULL, rating INTEGER NOT NULL, channel VARCHAR(20))",
    "CREATE VIEW survey_responses AS SELECT id AS response_id, account AS customer_id, "
    "submitted_at AS responded_at, kind AS survey, rating AS score, channel AS touchpoint, "
    "CAST(NULL AS VARCHAR(200)) AS comment FROM survey_export",
]

TEAM_ROWS = [
    "INSERT INTO crm_accounts VALUES "
    "('a1', 'Acme', '2026-08-10 09:00:00', NULL, 'Retail', 'EU', 'Growth', 'events'), "
    "('a2', 'Beta', '2026-10-05 12:00:00', NULL, 'Software', 'US', 'Starter', 'organic'), "
    "('a3', 'Core', '2026-10-20 08:00:00', '2026-10-28 10:00:00', 'Retail', 'EU', 'Starter', 'events'), "
    "('a4', 'Dyna', '2026-09-01 00:00:00', '2026-10-15 00:00:00', 'Software', 'US', 'Growth', 'organic'), "
    "('a5', 'Echo', '2026-11-02 00:00:00', NULL, 'Retail', 'EU', 'Free', 'events')",
    "INSERT INTO orders VALUES "
    "('o1', 'a1', '2026-10-03 10:00:00', 100.10, 'core', TRUE), "
    "('o2', 'a2', '2026-10-10 10:00:00', 250.25, 'core', FALSE), "
    "('o3', 'a1', '2026-10-31 23:00:00', 49.65, 'addon', FALSE), "
    "('o4', 'a2', '2026-09-15 10:00:00', 80.00, 'core', TRUE), "
    "('o5', 'a3', '2026-11-02 08:00:00', 999.00, 'core', FALSE)",
    "INSERT INTO survey_export VALUES "
    "('r1', 'a1', '2026-10-02 10:00:00', 'nps', 10, 'email'), "
    "('r2', 'a2', '2026-10-06 10:00:00', 'nps', 9, 'email'), "
    "('r3', 'a1', '2026-10-12 10:00:00', 'nps', 9, 'app'), "
    "('r4', 'a3', '2026-10-21 10:00:00', 'nps', 7, 'app'), "
    "('r5', 'a2', '2026-10-30 10:00:00', 'nps', 3, 'email'), "
    "('r6', 'a1', '2026-10-15 10:00:00', 'csat', 5, 'support'), "
    "('r7', 'a4', '2026-09-20 10:00:00', 'nps', 0, 'email')",
]

QUESTIONS = {
    "new_customers 2026-10": 2,
    "customers 2026-10": 2,
    "revenue 2026-10": 400.00,
    "nps 2026-10": 40.0,
}


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.setenv("KPI_TIMEZONE", "UTC")
    monkeypatch.setenv("KPI_STATE_URL", f"sqlite:///{tmp_path}/state.sqlite")
    monkeypatch.setenv("KPI_AUDIT", "0")
    yield
    database.dispose_all()


def _ask_all(url: str) -> None:
    """The hand-computed answers, and a breakdown through the ``customers`` view."""
    for question, expected in QUESTIONS.items():
        result = answer(question, as_of=AS_OF, url=url)
        assert result.value is not None, question
        assert round(result.value, 2) == expected, (question, result.value)
    by_region = answer("revenue by region 2026-10", as_of=AS_OF, url=url)
    assert {g.group: round(g.value, 2) for g in by_region.breakdown} == {"EU": 149.75, "US": 250.25}


def _missing_tickets(url: str) -> None:
    with pytest.raises(DatabaseError) as err:
        answer("tickets 2026-10", as_of=AS_OF, url=url)
    assert str(err.value) == "Can't answer `tickets`: this database has no `tickets` table."


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---- PostgreSQL: a SELECT-only role on tables and views named the team's way ---------------------


def _pg_snapshot(admin_db_url: str) -> dict:
    """Every relation (tables, views, indexes, sequences) in every user schema, and row counts."""
    engine = create_engine(admin_db_url)
    try:
        with engine.connect() as conn:
            relations = sorted(conn.execute(text(
                "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
                "AND n.nspname NOT LIKE 'pg_toast%'"
            )).all())
            counts = {
                name: conn.execute(select(func.count()).select_from(table(name, schema=schema))).scalar()
                for schema, name, kind in relations if kind == "r"
            }
            settings = conn.execute(text(
                "SELECT d.setconfig FROM pg_db_role_setting d JOIN pg_database b ON b.oid = d.setdatabase "
                "WHERE b.datname = current_database()"
            )).all()
    finally:
        engine.dispose()
    return {"relations": relations, "counts": counts, "settings": settings}


@pytest.fixture(scope="module")
def team_pg():
    """A fresh database holding the team's schema, and a role that may only SELECT from it
    (except ``costs``, which it may not read at all). Dropped afterwards."""
    with team_database("kpibot_team") as db:
        yield from _team_schema(db)


def _team_schema(db):
    name, role = db.name, db.role
    admin_db = db.owner_url
    owner = create_engine(admin_db)
    with owner.begin() as conn:
        conn.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
        for sql in TEAM_SCHEMA + TEAM_ROWS:
            conn.execute(text(sql))
        # a table the role may not read, and a view without a column a KPI needs
        conn.execute(text("CREATE TABLE costs (customer_id VARCHAR(20), incurred_at TIMESTAMP, "
                          "amount DECIMAL(12, 2), category VARCHAR(20))"))
        conn.execute(text("CREATE TABLE billing (sub VARCHAR(20), account VARCHAR(20), since TIMESTAMP, "
                          "until TIMESTAMP, cents INTEGER)"))
        conn.execute(text("CREATE VIEW subscriptions AS SELECT sub AS subscription_id, account AS customer_id, "
                          "since AS started_at, until AS ended_at FROM billing"))
        conn.execute(text(f'GRANT CONNECT ON DATABASE "{name}" TO "{role}"'))
        conn.execute(text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
        for relation in ("crm_accounts", "customers", "orders", "survey_export", "survey_responses",
                         "billing", "subscriptions"):
            conn.execute(text(f'GRANT SELECT ON "{relation}" TO "{role}"'))
    owner.dispose()
    yield {"url": db.reader_url, "admin": admin_db}


def test_postgres_select_only_role_answers_and_nothing_changes(team_pg):
    before = _pg_snapshot(team_pg["admin"])
    assert ("public", "customers", "v") in before["relations"]

    engine = database.get_engine(team_pg["url"])
    assert not database.ownership_of(engine).owned
    _ask_all(team_pg["url"])
    _missing_tickets(team_pg["url"])
    with database.query(engine) as conn:  # every session kpibot opens here is read-only
        assert conn.execute(text("SHOW transaction_read_only")).scalar() == "on"

    assert _pg_snapshot(team_pg["admin"]) == before


def test_postgres_refusals_name_the_kpi_and_the_relation_never_the_server(team_pg):
    with pytest.raises(DatabaseError) as err:
        answer("margin 2026-10", as_of=AS_OF, url=team_pg["url"])
    assert str(err.value) == "Can't answer `margin`: kpibot may not read `costs` (permission denied)."
    with pytest.raises(DatabaseError) as err:
        answer("mrr 2026-10", as_of=AS_OF, url=team_pg["url"])
    assert str(err.value) == "Can't answer `mrr`: `subscriptions` has no column `mrr` where this KPI reads it."
    for message in (str(err.value),):
        assert "127.0.0.1" not in message and "5432" not in message and "\n" not in message


def test_postgres_import_and_demo_are_refused_in_one_line(team_pg, tmp_path, capsys):
    before = _pg_snapshot(team_pg["admin"])
    csv = tmp_path / "orders.csv"
    csv.write_text("order_id,customer_id,ordered_at,amount\nz1,a1,2026-10-01,5.00\n")

    code, out, err = _cli(capsys, "--url", team_pg["url"], "import", "orders", str(csv))
    assert code == cli.EXIT_DATABASE and out == ""
    assert err.count("\n") == 1 and err.startswith("`kpibot import` refused: kpibot did not create this database")

    code, out, err = _cli(capsys, "--url", team_pg["url"], "demo", "--if-empty")
    assert code == cli.EXIT_DATABASE and out == ""
    assert err.count("\n") == 1 and err.startswith("`kpibot demo` refused")

    code, out, err = _cli(capsys, "--url", team_pg["url"], "ask", "tickets 2026-10", "--as-of", "2026-11-15")
    assert code == cli.EXIT_DATABASE and "Traceback" not in err
    assert err == "Can't answer `tickets`: this database has no `tickets` table.\n"

    assert _pg_snapshot(team_pg["admin"]) == before


# ---- SQLite and DuckDB: the team's file is left byte for byte as it was ---------------------------


def _team_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path)
    for sql in TEAM_SCHEMA + TEAM_ROWS:
        conn.execute(sql)
    conn.commit()
    conn.close()


def _team_duckdb(path: Path) -> None:
    conn = duckdb.connect(str(path))
    for sql in TEAM_SCHEMA + TEAM_ROWS:
        conn.execute(sql)
    conn.close()


def _file_state(folder: Path) -> dict:
    """Every file in the folder with its bytes' digest and mtime."""
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.iterdir()) if p.is_file()
    }


@pytest.mark.parametrize("backend", ["sqlite", "duckdb"])
def test_foreign_file_answers_and_is_unchanged(backend, tmp_path, capsys):
    folder = tmp_path / "team"
    folder.mkdir()
    path = folder / f"warehouse.{backend}"
    (_team_sqlite if backend == "sqlite" else _team_duckdb)(path)
    url = f"{backend}:///{path}"
    before = _file_state(folder)

    _ask_all(url)
    _missing_tickets(url)
    code, _, err = _cli(capsys, "--url", url, "import", "orders", str(tmp_path / "none.csv"))
    assert code == cli.EXIT_DATABASE and "refused" in err
    database.dispose_all()

    assert _file_state(folder) == before


def test_sqlite_foreign_connections_cannot_write(tmp_path):
    path = tmp_path / "team.sqlite"
    _team_sqlite(path)
    engine = database.get_engine(f"sqlite:///{path}")
    with pytest.raises(DatabaseError) as err, database.connect(engine) as conn:
        conn.execute(text("DELETE FROM orders"))
    assert str(err.value) == "The database refused the query: the database is read-only for kpibot."
    assert sqlite3.connect(path).execute("SELECT count(*) FROM orders").fetchone() == (5,)


# ---- what kpibot owns --------------------------------------------------------------------------


def _marker(path: Path) -> list:
    return sqlite3.connect(path).execute("SELECT name, value FROM kpibot_meta").fetchall()


def test_a_new_database_gets_the_schema_and_the_marker_and_stays_kpibots(tmp_path):
    path = tmp_path / "new.sqlite"
    engine = database.get_engine(f"sqlite:///{path}")
    assert database.ownership_of(engine).reason == "new"
    assert _marker(path) == [("schema_version", str(ownership.SCHEMA_VERSION))]
    database.dispose_all()

    engine = database.get_engine(f"sqlite:///{path}")  # now it has tables: the marker decides
    assert database.ownership_of(engine).reason == "marker"
    database.require_owned(engine, "kpibot import")


def test_a_kpibot_database_from_before_the_marker_is_adopted(tmp_path):
    from storage.schema import metadata

    path = tmp_path / "old.sqlite"
    old = create_engine(f"sqlite:///{path}")
    metadata.create_all(old)
    old.dispose()
    engine = database.get_engine(f"sqlite:///{path}")
    assert database.ownership_of(engine).reason == "kpibot schema"
    assert _marker(path) == [("schema_version", str(ownership.SCHEMA_VERSION))]


def test_a_database_holding_only_kpibots_state_is_empty(tmp_path):
    from bot.audit import audit_metadata
    from bot.dedupe import dedupe_metadata
    from bot.favourites import fav_metadata
    from storage.state import metadata as state_metadata

    path = tmp_path / "shared.sqlite"
    shared = create_engine(f"sqlite:///{path}")
    for meta in (state_metadata, audit_metadata, dedupe_metadata, fav_metadata):  # every state table kpibot keeps
        meta.create_all(shared)
    shared.dispose()
    engine = database.get_engine(f"sqlite:///{path}")
    assert database.ownership_of(engine).reason == "empty"


def test_a_table_named_like_the_marker_without_kpibots_row_is_not_a_marker(tmp_path):
    path = tmp_path / "team.sqlite"
    _team_sqlite(path)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE kpibot_meta (name TEXT, value TEXT)")
    conn.commit()
    conn.close()
    engine = database.get_engine(f"sqlite:///{path}")
    assert database.ownership_of(engine).reason == "foreign"


def test_a_digest_over_a_foreign_database_names_the_missing_table_and_keeps_the_rest(tmp_path):
    from bot.schedules.digests import compute_lines, settings_for
    from bot.schedules.parse import DigestSpec
    from metrics.periods import Period

    path = tmp_path / "team.duckdb"
    _team_duckdb(path)
    spec = DigestSpec("monthly", None, "1", "09:00", "UTC", ("revenue", "tickets", "nps"))
    october = Period(date(2026, 10, 1), date(2026, 11, 1), "October 2026", "month")
    lines = compute_lines(spec, october, settings_for("UTC"), f"duckdb:///{path}")

    by_kpi = {line.metric_id: line for line in lines}
    assert round(by_kpi["revenue"].result.value, 2) == 400.00
    assert by_kpi["nps"].result.value == 40.0
    assert by_kpi["tickets"].result is None
    assert by_kpi["tickets"].error == "Can't answer `tickets`: this database has no `tickets` table."


@pytest.mark.parametrize("backend", ["sqlite", "duckdb"])
def test_a_missing_column_in_a_foreign_file_is_named_in_one_line(backend, tmp_path):
    path = tmp_path / f"team.{backend}"
    (_team_sqlite if backend == "sqlite" else _team_duckdb)(path)
    conn = sqlite3.connect(path) if backend == "sqlite" else duckdb.connect(str(path))
    conn.execute("CREATE TABLE ledger (id VARCHAR(20), account VARCHAR(20), booked TIMESTAMP, cents INTEGER)")
    conn.execute("CREATE VIEW costs AS SELECT account AS customer_id, booked AS incurred_at, id AS category FROM ledger")
    conn.commit() if backend == "sqlite" else None
    conn.close()

    with pytest.raises(DatabaseError) as err:
        answer("margin 2026-10", as_of=AS_OF, url=f"{backend}:///{path}")
    message = str(err.value)
    assert message.startswith("Can't answer `margin`: ") and "no column `amount`" in message, message
    assert "\n" not in message and "Error" not in message
