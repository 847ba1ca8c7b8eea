"""dbt metrics answered end to end (issue 14, item 5): the dbt_shop project's tables in the
team's database (DuckDB file; PostgreSQL under a SELECT-only role), ``KPI_DBT_PROJECT`` naming
the project, answers through metrics.api (the one query path) equal to what the seeds give by
hand; the database is never changed.

The rows are tests/data/dbt_shop/seeds/*.csv, loaded as the tables the semantic manifest names
(``analytics.<alias>``; dbt would build them as views over its seeds).
"""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bot import cli
from metrics import model
from metrics.api import ask
from metrics.catalogue import CATALOGUE, resolve
from storage import database
from tests.pg_team import team_database

SHOP = Path(__file__).parent / "data" / "dbt_shop"
AS_OF = date(2026, 4, 15)  # "last quarter" is Q1 2026

TABLES = {
    "accounts": "id VARCHAR(10), created_at TIMESTAMP, plan_name VARCHAR(10), vertical VARCHAR(20), "
                "country VARCHAR(2), status VARCHAR(10), status_changed_at TIMESTAMP",
    "invoices": "id VARCHAR(10), account_id VARCHAR(10), issued_at TIMESTAMP, amount_cents BIGINT, status VARCHAR(10)",
    "survey_export": "id VARCHAR(10), account_id VARCHAR(10), submitted_at TIMESTAMP, rating INTEGER",
    "trials": "id VARCHAR(10), account_id VARCHAR(10), started_at TIMESTAMP",
}


def _load(conn) -> None:
    conn.execute(text("CREATE SCHEMA analytics"))
    for name, columns in TABLES.items():
        conn.execute(text(f"CREATE TABLE analytics.{name} ({columns})"))
        with open(SHOP / "seeds" / f"raw_{name}.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        keys = list(rows[0])
        conn.execute(text(f"INSERT INTO analytics.{name} ({', '.join(keys)}) "  # noqa: S608 - our fixture's names
                          f"VALUES ({', '.join(':' + k for k in keys)})"),
                     [{k: (v or None) if k != "amount_cents" and k != "rating" else int(v) for k, v in r.items()}
                      for r in rows])


def _snapshot(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rels = sorted(tuple(r) for r in conn.execute(text(
                "SELECT table_schema, table_name, table_type FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')")).all())
            counts = [conn.execute(text(f"SELECT count(*) FROM analytics.{n}")).scalar()  # noqa: S608
                      for n in TABLES]
    finally:
        engine.dispose()
    return [rels, counts]


@pytest.fixture
def duckdb_shop(tmp_path):
    url = f"duckdb:///{tmp_path / 'shop.duckdb'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        _load(conn)
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def pg_shop():
    with team_database("kpibot_dbt") as db:
        yield from _shop_schema(db)


def _shop_schema(db):
    name, role = db.name, db.role
    owner_url = db.owner_url
    owner = create_engine(owner_url)
    with owner.begin() as conn:
        conn.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
        _load(conn)
        conn.execute(text(f'GRANT USAGE ON SCHEMA analytics TO "{role}"'))
        conn.execute(text(f'GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO "{role}"'))
        conn.execute(text(f'GRANT CONNECT ON DATABASE "{name}" TO "{role}"'))
    owner.dispose()
    yield {"url": db.reader_url, "admin": owner_url}


@pytest.fixture
def from_settings(monkeypatch):
    """KPI_DBT_PROJECT + KPI_DATABASE_URL → model.from_settings(); kpibot's own model afterwards."""

    def configure(url: str, project: Path = SHOP):
        monkeypatch.setenv("KPI_DBT_PROJECT", str(project))
        monkeypatch.setenv("KPI_DATABASE_URL", url)
        monkeypatch.delenv("KPI_MODEL", raising=False)
        return model.from_settings()

    yield configure
    model.configure(None)


def _value(question: str, url: str) -> float | None:
    return ask(question, as_of=AS_OF, url=url).value


def _groups(question: str, url: str) -> dict:
    return {g.group: g.value for g in ask(question, as_of=AS_OF, url=url).breakdown}


def _assert_answers(url: str) -> None:
    """Every number from the seeds by hand."""
    # simple: accounts opened — A5 in March; A3, A4 in February
    assert _value("accounts opened march 2026", url) == 1
    assert _value("accounts opened february 2026", url) == 2
    # paid invoices in cents / 100: March I6 75.50 + I7 123.45 + I8 99.99; February I3 + I4 (I5 is void)
    march = 75.50 + 123.45 + 99.99
    assert _value("invoiced amount march 2026", url) == pytest.approx(march, abs=0.005)
    assert _value("billings february 2026", url) == pytest.approx(123.45 + 200.01, abs=0.005)  # a meta synonym
    assert _value("paid invoices march 2026", url) == 3
    # a filter on metric_time compares days: I3 (10 February, 08:00) is in, I4 (12th) is not
    assert _value("early_invoicing february 2026", url) == pytest.approx(123.45, abs=0.005)
    assert _value("early_invoicing january 2026", url) == pytest.approx(123.45 + 50.00, abs=0.005)
    assert _value("early_invoicing march 2026", url) is None  # no rows: no data, never 0
    assert _value("average rating march 2026", url) == pytest.approx((9 + 6 + 10) / 3)
    # ratio of two metrics, and one with a filtered input (inline): 1 void of 3 in February
    assert _value("average paid invoice march 2026", url) == pytest.approx(march / 3)
    assert _value("share of void invoices february 2026", url) == pytest.approx(100 / 3)
    assert _value("share of promoters march 2026", url) == pytest.approx(100 * 2 / 3)  # 9, 10 of 9, 6, 10
    # derived: (promoters - detractors) * 100 / responses; March 9, 6, 10; February 3, 7
    assert _value("shop nps march 2026", url) == pytest.approx(100 * (2 - 1) / 3)
    assert _value("survey nps february 2026", url) == pytest.approx(-50.0)
    # cumulative (running total at the period's end): 5 accounts by the end of March, 4 of February
    assert _value("accounts to date march 2026", url) == 5
    assert _value("accounts to date february 2026", url) == 4
    # conversion within 14 days: February T3 (9 days) yes, T4 (17.8 days) no; Q1: T1, T2, T3 of 5
    assert _value("trial to invoice february 2026", url) == pytest.approx(50.0)
    assert _value("trial to invoice last quarter", url) == pytest.approx(60.0)
    # dbt's categorical dimensions: by and where
    assert _groups("accounts opened by plan last quarter", url) == {"pro": 3, "basic": 2}
    assert _groups("accounts opened by country last quarter", url) == {"DE": 2, "US": 2, "FR": 1}
    assert _value("accounts opened where vertical=retail last quarter", url) == 3  # A1, A4, A5
    assert _groups("invoices by invoice_status february 2026", url) == {"paid": 2, "void": 1}
    assert _groups("accounts to date by plan march 2026", url) == {"pro": 3, "basic": 2}


def test_duckdb_answers_the_dbt_metrics(duckdb_shop, from_settings):
    before = _snapshot(duckdb_shop)
    loaded = from_settings(duckdb_shop)
    assert loaded is not None
    # what the project has that kpibot cannot compute is reported, the rest answers
    assert sorted(e.message.split("`")[1] for e in loaded.errors) == [
        "invoiced_amount_30d", "invoiced_amount_growth", "median_invoice", "pro_invoice_share"]
    assert set(loaded.team) >= {"accounts_opened", "invoiced_amount", "survey_nps", "total_accounts", "trial_to_paid"}
    _assert_answers(duckdb_shop)
    database.dispose_all()
    assert _snapshot(duckdb_shop) == before


def test_postgres_select_only_role_answers_the_dbt_metrics(pg_shop, from_settings):
    before = _snapshot(pg_shop["admin"])
    from_settings(pg_shop["url"])
    assert not database.ownership_of(database.get_engine(pg_shop["url"])).owned
    _assert_answers(pg_shop["url"])
    assert _snapshot(pg_shop["admin"]) == before  # no new relation, no row changed


def test_the_manifest_json_itself_and_money_is_sensitive(duckdb_shop, from_settings):
    from metrics import access

    from_settings(duckdb_shop, SHOP / "target" / "semantic_manifest.json")
    assert "invoiced_amount" in CATALOGUE
    assert "money" in access.for_metric("invoiced_amount", None, ()).sensitivities
    assert "money" not in access.for_metric("accounts_opened", None, ()).sensitivities


def test_a_customer_dimension_without_a_customers_table_is_one_clear_line(duckdb_shop, from_settings):
    from_settings(duckdb_shop)
    with pytest.raises(database.DatabaseError) as caught:
        ask("invoiced amount by industry last quarter", as_of=AS_OF, url=duckdb_shop)
    message = str(caught.value)
    assert "invoiced_amount" in message and "customers" in message and "\n" not in message


def test_kpibot_define_shows_the_sql_over_the_dbt_relation(duckdb_shop, monkeypatch, capsys):
    monkeypatch.setenv("KPI_DBT_PROJECT", str(SHOP))
    monkeypatch.delenv("KPI_MODEL", raising=False)
    try:
        assert cli.main(["--url", duckdb_shop, "define", "invoiced amount"]) == 0
    finally:
        model.configure(None)
    out = capsys.readouterr().out
    assert "Invoiced amount" in out and "analytics.invoices" in out and "amount_cents / 100.0" in out


def test_a_missing_manifest_is_one_load_error_and_kpibot_still_answers(duckdb_shop, tmp_path, from_settings):
    loaded = from_settings(duckdb_shop, tmp_path / "not_parsed_yet")
    assert loaded is not None
    assert len(loaded.errors) == 1 and "dbt parse" in loaded.errors[0].message
    assert loaded.team == ()


def test_kpibot_check_lists_the_dbt_sources_kpis_and_what_is_unsupported(duckdb_shop, monkeypatch, capsys):
    monkeypatch.setenv("KPI_DBT_PROJECT", str(SHOP))
    monkeypatch.delenv("KPI_MODEL", raising=False)
    try:
        cli.main(["--url", duckdb_shop, "check"])
    finally:
        model.configure(None)
    out = capsys.readouterr().out
    assert "4 sources, 5 dimensions, 16 team KPIs" in out
    for relation, rows in (("analytics.accounts", 5), ("analytics.invoices", 8), ("analytics.survey_export", 7),
                           ("analytics.trials", 5)):
        assert f"{relation}: ok ({rows} sample rows)" in out
    for unsupported in ("median_invoice", "pro_invoice_share", "invoiced_amount_growth", "invoiced_amount_30d"):
        assert f"metric `{unsupported}`" in out
    available = out.split("KPIs available (16):", 1)[1].split("KPIs unavailable", 1)[0]
    assert "trial_to_paid" in available and "survey_nps" in available


MODEL_FILE = """\
version: 1
sources:
  customers:
    relation: analytics.accounts
    columns:
      customer_id: id
      signed_up_at: created_at
      churned_at: {expr: "case when status = 'churned' then status_changed_at end"}
      industry: vertical
      is_paying: {expr: "true"}
metrics:
  survey_nps: {type: derived, expr: "survey_promoters * 2"}
"""


def test_a_model_file_and_the_dbt_project_merge(duckdb_shop, tmp_path, monkeypatch):
    """KPI_MODEL maps kpibot's customers onto the same accounts table: built-in customer KPIs
    answer, and the dbt metrics get the customer dimensions through their `account` entity."""
    path = tmp_path / "kpibot.yml"
    path.write_text(MODEL_FILE, encoding="utf-8")
    monkeypatch.setenv("KPI_MODEL", str(path))
    monkeypatch.setenv("KPI_DBT_PROJECT", str(SHOP))
    monkeypatch.setenv("KPI_DATABASE_URL", duckdb_shop)
    try:
        loaded = model.from_settings()
        assert loaded is not None
        # the same id in both: one error naming both origins, the model file's definition stands
        twice = [e for e in loaded.errors if "survey_nps" in e.message]
        assert len(twice) == 1
        assert twice[0].origin == str(SHOP / "target" / "semantic_manifest.json") and str(path) in twice[0].message
        assert loaded.definitions["survey_nps"]["expr"] == "survey_promoters * 2"
        # built-in KPI over the mapped accounts: A1 … A5 signed up in Q1, A3 churned on 10 March
        assert _value("new customers last quarter", duckdb_shop) == 5
        # invoiced amount by industry (vertical): retail A1 3 × 123.45 + A4 75.50 + A5 99.99; saas A2 50.00 + A3 200.01
        by_industry = _groups("invoiced amount by industry last quarter", duckdb_shop)
        assert by_industry == pytest.approx({"retail": 3 * 123.45 + 75.50 + 99.99, "saas": 50.00 + 200.01}, abs=0.005)
    finally:
        model.configure(None)


def test_kpibot_ask_with_only_kpi_dbt_project(duckdb_shop, monkeypatch, capsys):
    monkeypatch.setenv("KPI_DBT_PROJECT", str(SHOP))
    monkeypatch.delenv("KPI_MODEL", raising=False)
    try:
        code = cli.main(["--url", duckdb_shop, "ask", "shop nps march 2026", "--as-of", "2026-04-15"])
    finally:
        model.configure(None)
    captured = capsys.readouterr()
    assert code == 0
    assert "Survey NPS" in captured.out and "33.3" in captured.out  # (2 - 1) × 100 / 3
    assert "metric `median_invoice`" in captured.err  # the unsupported ones are said, once each


def test_a_dbt_metric_whose_id_is_a_built_in_synonym_is_found_by_its_id(duckdb_shop, tmp_path, from_settings):
    """`new accounts` is a synonym of kpibot's new_customers; a team metric with that id wins."""
    manifest = json.loads((SHOP / "target" / "semantic_manifest.json").read_text(encoding="utf-8"))
    for metric in manifest["metrics"]:
        if metric["name"] == "accounts_opened":
            metric["name"], metric["label"] = "new_accounts", "New accounts"
    path = tmp_path / "semantic_manifest.json"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    loaded = from_settings(duckdb_shop, path)
    assert "new_accounts" in loaded.team
    assert resolve("new_accounts").id == "new_accounts"
    assert ask("new accounts march 2026", as_of=AS_OF, url=duckdb_shop).metric.id == "new_accounts"
    assert _value("new_accounts february 2026", duckdb_shop) == 2  # A3, A4
    assert resolve("new customers").id == "new_customers"  # the built-in keeps its own names
