"""The model file over a team's own database (issue 14): a SaaS company's schema with its own
names, money in cents, a survey tool's export behind a view, a SELECT-only role. Seed KPIs and
the team's own KPIs must equal what the small fixture gives by hand, on PostgreSQL, DuckDB and
SQLite; the team's database must not change; load errors name file:line; `kpibot check`
names each gap with the closest names.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, table, text

from bot import cli
from metrics import model
from metrics.api import ask
from metrics.catalogue import CATALOGUE, dimensions_for
from metrics.model.document import parse
from metrics.model.load import load_model
from storage import database
from tests.pg_team import team_database

AS_OF = date(2026, 4, 15)

# The team's schema: {crm}/{billing}/{surveys} are schemas on PostgreSQL and DuckDB, name prefixes on SQLite.
SCHEMA = [
    "CREATE TABLE {crm}accounts (id VARCHAR(10), created_at TIMESTAMP, status VARCHAR(10), "
    "status_changed_at TIMESTAMP, vertical VARCHAR(20), country VARCHAR(2), plan_name VARCHAR(10), is_test BOOLEAN)",
    "CREATE TABLE {crm}trials (id VARCHAR(10), account_id VARCHAR(10), started_at TIMESTAMP)",
    "CREATE TABLE {billing}invoices (id VARCHAR(10), account_id VARCHAR(10), issued_at TIMESTAMP, "
    "amount_cents BIGINT, kind VARCHAR(12))",
    "CREATE TABLE {billing}refunds (id VARCHAR(10), account_id VARCHAR(10), created_at TIMESTAMP, cents BIGINT)",
    "CREATE TABLE {billing}plans (id VARCHAR(10), account_id VARCHAR(10), started_at TIMESTAMP, "
    "ended_at TIMESTAMP, mrr_cents BIGINT)",
    "CREATE TABLE {surveys}responses_export (id VARCHAR(10), account_id VARCHAR(10), submitted_at TIMESTAMP, "
    "survey_kind VARCHAR(10), rating INTEGER)",
    "CREATE VIEW {surveys}answers AS SELECT * FROM {surveys}responses_export",
]
ROWS = [
    "INSERT INTO {crm}accounts VALUES "
    "('a1', '2026-01-05 10:00:00', 'active', NULL, 'Retail', 'FR', 'pro', false), "
    "('a2', '2026-01-10 10:00:00', 'churned', '2026-03-10 09:00:00', 'Tech', 'DE', 'basic', false), "
    "('a3', '2026-02-03 10:00:00', 'active', NULL, 'Retail', 'FR', 'pro', false), "
    "('a4', '2026-03-15 10:00:00', 'active', NULL, 'Tech', 'US', 'basic', false), "
    "('t9', '2026-01-01 10:00:00', 'churned', '2026-03-02 10:00:00', 'Tech', 'US', 'pro', true)",
    "INSERT INTO {crm}trials VALUES ('tr1', 'a1', '2026-03-01 08:00:00'), ('tr2', 'a4', '2026-03-10 08:00:00'), "
    "('tr3', 'p5', '2026-03-12 08:00:00'), ('tr4', 'a3', '2026-03-01 08:00:00'), ('tr5', 'a2', '2026-02-01 08:00:00')",
    "INSERT INTO {billing}invoices VALUES "
    "('i1', 'a1', '2026-03-02 00:00:00', 10050, 'subscription'), ('i2', 'a2', '2026-03-05 00:00:00', 2000, 'one_off'), "
    "('i3', 'a3', '2026-03-20 00:00:00', 1999, 'subscription'), ('i4', 'a1', '2026-02-10 00:00:00', 5000, 'subscription'), "
    "('i5', 'a4', '2026-03-16 00:00:00', 4900, 'subscription')",
    "INSERT INTO {billing}refunds VALUES ('r1', 'a1', '2026-03-03 00:00:00', 550), "
    "('r2', 'a3', '2026-03-25 00:00:00', 1000), ('r3', 'a1', '2026-02-15 00:00:00', 300)",
    "INSERT INTO {billing}plans VALUES ('s1', 'a1', '2026-01-05 10:00:00', NULL, 4900), "
    "('s2', 'a2', '2026-01-10 10:00:00', '2026-03-10 09:00:00', 1900), ('s3', 'a3', '2026-02-03 10:00:00', NULL, 4900), "
    "('s4', 'a4', '2026-03-15 10:00:00', NULL, 1900)",
    "INSERT INTO {surveys}responses_export VALUES "
    "('n1', 'a1', '2026-03-04 00:00:00', 'NPS', 10), ('n2', 'a2', '2026-03-04 00:00:00', 'NPS', 3), "
    "('n3', 'a3', '2026-03-08 00:00:00', 'NPS', 9), ('n4', 'a3', '2026-03-09 00:00:00', 'NPS', 7), "
    "('n5', 'a4', '2026-03-20 00:00:00', 'NPS', 9), "
    "('c1', 'a1', '2026-03-05 00:00:00', 'CSAT', 5), ('c2', 'a2', '2026-03-05 00:00:00', 'CSAT', 2), "
    "('c3', 'a3', '2026-03-06 00:00:00', 'CSAT', 4), ('c4', 'a4', '2026-03-21 00:00:00', 'CSAT', 3)",
]

MODEL = """\
version: 1
sources:
  customers:
    sql: "select * from {crm}accounts where not is_test"
    columns:
      customer_id: id
      signed_up_at: created_at
      churned_at: {{expr: "case when status = 'churned' then status_changed_at end"}}
      industry: vertical
      plan: plan_name
  orders:
    relation: {billing}invoices
    columns:
      order_id: id
      customer_id: account_id
      ordered_at: issued_at
      amount: {{column: amount_cents, scale: 0.01}}
      is_recurring: {{expr: "kind = 'subscription'"}}
  subscriptions:
    relation: {billing}plans
    columns: {{subscription_id: id, customer_id: account_id, started_at: started_at, ended_at: ended_at,
               mrr: {{column: mrr_cents, scale: 0.01}}}}
  survey_responses:
    relation: {surveys}answers
    columns:
      response_id: id
      customer_id: account_id
      responded_at: submitted_at
      survey: {{expr: "lower(survey_kind)"}}
      score: rating
  refunds:
    relation: {billing}refunds
    columns: {{refund_id: id, customer_id: account_id, refunded_at: created_at, amount: {{column: cents, scale: 0.01}}}}
    time: refunded_at
    customer_key: customer_id
    sensitivity: {{amount: money}}
  trials:
    relation: {crm}trials
    columns: {{trial_id: id, customer_id: account_id, started_at: started_at}}
    time: started_at
    customer_key: customer_id
dimensions:
  country:
    source: customers
    column: country
    label: Country
metrics:
  refunded_amount:
    type: simple
    label: Refunded amount
    source: refunds
    agg: sum
    expr: amount
    unit: currency
    direction: lower
    synonyms: [refunds, money refunded]
  refund_rate:
    type: ratio
    label: Refund rate
    numerator: refunded_amount
    denominator: revenue
    scale: 100
    unit: percent
    direction: lower
  net_revenue:
    type: derived
    label: Net revenue
    expr: "revenue - refunded_amount"
    unit: currency
    direction: higher
  pro_accounts:
    type: cumulative
    label: Pro accounts
    source: customers
    agg: count
    start: signed_up_at
    end: churned_at
    filter: "plan = 'pro'"
    unit: count
    direction: higher
  trial_to_paid:
    type: conversion
    label: Trial to paid
    base: {{source: trials, time: started_at}}
    conversion: {{source: orders, time: ordered_at}}
    entity: customer_id
    window_days: 14
    unit: percent
    direction: higher
"""


def _fill(sql: str, prefix: dict[str, str]) -> str:
    return sql.format(**prefix)


def _value(question: str, url: str) -> float | None:
    return ask(question, as_of=AS_OF, url=url).value


def _assert_answers(url: str) -> None:
    """Every number computed by hand from ROWS (March 2026)."""
    # NPS: 10, 3, 9, 7, 9 -> 3 promoters, 1 detractor of 5
    assert _value("nps march 2026", url) == pytest.approx(100 * (3 - 1) / 5)
    # CSAT: 5, 2, 4, 3 on 1-5 -> 2 of 4 satisfied
    assert _value("csat march 2026", url) == pytest.approx(50.0)
    # churn: a1, a2, a3 active on 1 March (t9 is a test account), a2 churned on the 10th
    assert _value("churn rate march 2026", url) == pytest.approx(100 / 3)
    # revenue: 100.50 + 20.00 + 19.99 + 49.00 (cents / 100)
    revenue = 100.50 + 20.00 + 19.99 + 49.00
    assert _value("revenue march 2026", url) == pytest.approx(revenue, abs=0.005)
    # MRR at the end of March: s1, s3, s4 (s2 ended on the 10th)
    assert _value("mrr march 2026", url) == pytest.approx(49.00 + 49.00 + 19.00, abs=0.005)
    # the team's own KPIs
    refunded = 5.50 + 10.00
    assert _value("refunded amount march 2026", url) == pytest.approx(refunded, abs=0.005)
    assert _value("refund rate march 2026", url) == pytest.approx(100 * refunded / revenue)
    assert _value("net revenue march 2026", url) == pytest.approx(revenue - refunded, abs=0.005)
    # pro accounts alive at the end of March: a1, a3 (t9 is a test account)
    assert _value("pro accounts march 2026", url) == pytest.approx(2)
    # trials started in March: a1 (paid next day), a4 (6 days), p5 (never), a3 (19 days: too late)
    assert _value("trial to paid march 2026", url) == pytest.approx(50.0)
    # an extra dimension from the team's columns, on a built-in and on a team KPI
    by_country = {g.group: g.value for g in ask("revenue by country march 2026", as_of=AS_OF, url=url).breakdown}
    assert by_country == pytest.approx({"FR": 100.50 + 19.99, "DE": 20.00, "US": 49.00})
    assert _value("refunded amount for FR march 2026", url) == pytest.approx(refunded, abs=0.005)
    by_industry = {g.group: g.value for g in ask("nps by industry march 2026", as_of=AS_OF, url=url).breakdown}
    assert by_industry == pytest.approx({"Retail": 100 * (2 - 0) / 3, "Tech": 100 * (1 - 1) / 2})


@pytest.fixture
def configured():
    """configure() for a test; kpibot's own catalogue and tables again afterwards."""
    yield lambda m, url: model.configure(m, url)
    model.configure(None)


def _model(tmp_path: Path, prefix: dict[str, str], text: str = MODEL):
    """``text`` (this module's model by default) with its schema ``prefix``, read as kpibot.yml."""
    path = tmp_path / "kpibot.yml"
    path.write_text(text.format(**prefix))
    loaded = model.read(path)
    assert loaded.errors == []
    return loaded


# ---- PostgreSQL: schemas, a view, a SELECT-only role -----------------------------------------------


def _pg_snapshot(url: str) -> dict:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            relations = sorted(conn.execute(text(
                "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
                "AND n.nspname NOT LIKE 'pg_toast%'")).all())
            counts = {(s, n): conn.execute(select(func.count()).select_from(table(n, schema=s))).scalar()
                      for s, n, kind in relations if kind == "r"}
    finally:
        engine.dispose()
    return {"relations": relations, "counts": counts}


@pytest.fixture(scope="module")
def saas_pg():
    with team_database("kpibot_saas") as db:
        yield from _saas_schema(db)


def _saas_schema(db):
    name, role = db.name, db.role
    owner_url = db.owner_url
    prefix = {"crm": "crm.", "billing": "billing.", "surveys": "surveys."}
    owner = create_engine(owner_url)
    with owner.begin() as conn:
        conn.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
        for schema in ("crm", "billing", "surveys"):
            conn.execute(text(f"CREATE SCHEMA {schema}"))
            conn.execute(text(f'GRANT USAGE ON SCHEMA {schema} TO "{role}"'))
            conn.execute(text(f'GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO "{role}"'))  # none yet
        for sql in SCHEMA + ROWS:
            conn.execute(text(_fill(sql, prefix)))
        for schema in ("crm", "billing", "surveys"):
            conn.execute(text(f'GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO "{role}"'))
        conn.execute(text(f'GRANT CONNECT ON DATABASE "{name}" TO "{role}"'))
    owner.dispose()
    yield {"url": db.reader_url, "admin": owner_url, "prefix": prefix}


def test_postgres_select_only_role_seed_and_team_kpis_equal_hand_computed(saas_pg, tmp_path, configured):
    before = _pg_snapshot(saas_pg["admin"])
    configured(_model(tmp_path, saas_pg["prefix"]), saas_pg["url"])
    engine = database.get_engine(saas_pg["url"])
    assert not database.ownership_of(engine).owned
    _assert_answers(saas_pg["url"])
    assert _pg_snapshot(saas_pg["admin"]) == before  # no new relation, no row changed


def test_postgres_define_shows_the_sql_over_the_teams_tables(saas_pg, tmp_path, configured, monkeypatch, capsys):
    path = tmp_path / "kpibot.yml"
    path.write_text(MODEL.format(**saas_pg["prefix"]))
    monkeypatch.setenv("KPI_MODEL", str(path))
    try:
        assert cli.main(["--url", saas_pg["url"], "define", "refunded amount"]) == 0
    finally:
        model.configure(None)
    out = capsys.readouterr().out
    assert "Refunded amount" in out and "billing.refunds" in out and "cents" in out


def test_postgres_check_reads_everything_and_changes_nothing(saas_pg, tmp_path, monkeypatch, capsys):
    before = _pg_snapshot(saas_pg["admin"])
    path = tmp_path / "kpibot.yml"
    path.write_text(MODEL.format(**saas_pg["prefix"]).replace("relation: {billing}plans".format(**saas_pg["prefix"]),
                                                              "relation: billing.plan"))
    monkeypatch.setenv("KPI_MODEL", str(path))
    try:
        assert cli.main(["--url", saas_pg["url"], "check"]) == 1
    finally:
        model.configure(None)
    out = capsys.readouterr().out
    assert "relation `billing.plan` not found (closest: billing.plans" in out
    assert "  refunds            billing.refunds: ok (3 sample rows)" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and len(line.split()) > 1}
    assert "needs table `tickets`: not in the model, not in the database" in lines["tickets"]
    available = out.split("KPIs available")[1].split("KPIs unavailable")[0]
    for kpi in ("nps", "csat", "churn_rate", "revenue", "refunded_amount", "refund_rate", "trial_to_paid"):
        assert f" {kpi}," in available or f" {kpi}\n" in available
    assert "mrr," not in available.replace("_mrr,", "")  # its source's relation is misspelt
    assert _pg_snapshot(saas_pg["admin"]) == before


# ---- the same mapping on DuckDB and SQLite files -------------------------------------------------


def _file_db(backend: str, tmp_path: Path) -> tuple[str, dict[str, str]]:
    if backend == "duckdb":
        path = tmp_path / "team.duckdb"
        url = f"duckdb:///{path}"
        prefix = {"crm": "crm.", "billing": "billing.", "surveys": "surveys."}
        setup = [f"CREATE SCHEMA {s}" for s in ("crm", "billing", "surveys")]
    else:
        path = tmp_path / "team.sqlite"
        url = f"sqlite:///{path}"
        prefix = {"crm": "crm_", "billing": "billing_", "surveys": "surveys_"}
        setup = []
    engine = create_engine(url)
    with engine.begin() as conn:
        for sql in setup + [_fill(s, prefix) for s in SCHEMA + ROWS]:
            conn.execute(text(sql))
    engine.dispose()
    return url, prefix


def _file_relations(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if url.startswith("sqlite"):
                return sorted(conn.execute(text("SELECT type, name FROM sqlite_master")).all())
            return sorted(conn.execute(text(
                "SELECT table_schema, table_name, table_type FROM information_schema.tables")).all())
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["duckdb", "sqlite"])
def test_the_same_mapping_on_duckdb_and_sqlite_files(backend, tmp_path, configured):
    url, prefix = _file_db(backend, tmp_path)
    before = _file_relations(url)
    configured(_model(tmp_path, prefix), url)
    _assert_answers(url)
    database.dispose_all()
    assert _file_relations(url) == before


# ---- load errors and `kpibot check` -------------------------------------------------------------

BAD = """\
version: 1
sources:
  customers:
    relation: accounts
    columns: {customer_id: id, signed_up_at: created_at, churned_at: closd_at, signup_channel: channel}
  refunds:
    relation: refundz
    columns: {refund_id: id, customer_id: account_id, refunded_at: created_at, amount: cents}
    time: refunded_at
metrics:
  summed_dates:
    type: simple
    source: customers
    agg: sum
    expr: signed_up_at
  loop_a: {type: derived, expr: "loop_b + 1"}
  loop_b: {type: derived, expr: "loop_a * 2"}
  from_nowhere: {type: simple, source: refundss, agg: count}
  odd: {type: percentile}
  ratio_of_ghosts: {type: ratio, numerator: refunded, denominator: revenue}
  refunds_total: {type: simple, source: refunds, agg: sum, expr: amount, unit: currency}
  typo: {type: simple, source: refunds, agg: count, filtr: "amount > 0"}
"""


def test_load_errors_name_file_and_line_and_the_rest_loads():
    doc, errors = parse(BAD, "team.yml")
    assert errors == [] and doc is not None
    loaded = load_model([("team.yml", doc)])
    found = sorted(str(e) for e in loaded.errors)
    assert found == sorted([
        "team.yml:5: source `customers`: kpibot's `customers` has no column `signup_channel` (did you mean "
        "`acquisition_channel`?) (declare extra columns under `dimensions`)",
        "team.yml:15: metric `summed_dates`: cannot sum `signed_up_at`: it is not numeric (datetime)",
        "team.yml:16: metric `loop_a`: cycle among derived metrics: loop_a -> loop_b -> loop_a",
        "team.yml:18: metric `from_nowhere`: unknown source `refundss` (did you mean `refunds`?)",
        "team.yml:19: metric `odd`: bad type `percentile` (one of simple, ratio, derived, cumulative, conversion, model)",
        "team.yml:20: metric `ratio_of_ghosts`: unknown metric `refunded` (did you mean `refunds_total`?)",
        "team.yml:22: metric `typo`: unknown key `filtr` for a simple metric (did you mean `filter`?)",
    ])
    assert loaded.team == ("refunds_total",)  # the good entry still loads
    assert "refunds_total" in loaded.metrics and "nps" in loaded.metrics
    assert "customers" in loaded.sources and "signup_channel" not in loaded.sources["customers"].columns


def test_yaml_syntax_error_is_one_line_with_its_line(tmp_path):
    path = tmp_path / "kpibot.yml"
    path.write_text("version: 1\nsources:\n  customers: [unclosed\n")
    loaded = model.read(path)
    assert len(loaded.errors) == 1
    assert str(loaded.errors[0]).startswith(f"{path}:4: not valid YAML")


def test_check_names_gaps_with_the_closest_names(tmp_path, monkeypatch, capsys, configured):
    url, _prefix = _file_db("sqlite", tmp_path)
    with create_engine(url).begin() as conn:  # the team's names, unprefixed
        conn.execute(text("CREATE VIEW accounts AS SELECT * FROM crm_accounts"))
        conn.execute(text("CREATE VIEW refunds AS SELECT * FROM billing_refunds"))
    path = tmp_path / "kpibot.yml"
    path.write_text(BAD)
    monkeypatch.setenv("KPI_MODEL", str(path))
    before = _file_relations(url)
    try:
        assert cli.main(["--url", url, "check"]) == 1
    finally:
        model.configure(None)
    out = capsys.readouterr().out
    assert "team.yml" not in out and f"{path}:15: metric `summed_dates`" in out
    assert "relation `refundz` not found (closest: refunds" in out
    assert "`churned_at`: column `closd_at` not in `accounts` (closest: " in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and len(line.split()) > 1}
    assert "needs `customers.is_paying`: not mapped (closest: " in lines["paying_customers"]
    assert "is_test" in lines["paying_customers"]
    assert "needs table `survey_responses`: not in the model, not in the database (closest: " \
           "surveys_responses_export, surveys_answers" in lines["nps"]
    assert "needs table `orders`: not in the model, not in the database" in lines["revenue"]
    assert "KPIs available" in out
    assert _file_relations(url) == before
    assert dimensions_for(CATALOGUE["nps"])  # the built-in catalogue is back


def test_team_kpis_get_the_access_policy_from_the_columns_they_read(tmp_path, configured):
    from metrics import access

    url, prefix = _file_db("sqlite", tmp_path)
    configured(_model(tmp_path, prefix), url)
    # refunds.amount is declared money; orders.amount is money in kpibot's schema
    assert access.of_metric("refunded_amount") == {"money"}
    assert access.of_metric("refund_rate") == {"money"}
    assert access.of_metric("net_revenue", "country") == {"money"}
    assert access.of_metric("trial_to_paid") == frozenset()
    assert access.of_metric("pro_accounts", "country") == frozenset()


def test_a_builtin_kpi_names_the_logical_column_the_model_does_not_map(tmp_path, configured):
    url, prefix = _file_db("sqlite", tmp_path)
    configured(_model(tmp_path, prefix), url)
    with pytest.raises(database.DatabaseError) as err:
        ask("support csat march 2026", as_of=AS_OF, url=url)
    assert str(err.value) == (
        "Can't answer `support_csat`: it needs `survey_responses.touchpoint`, which the model file does not map "
        "(add it under `sources.survey_responses.columns.touchpoint`).")
    with pytest.raises(database.DatabaseError) as err:
        ask("tickets march 2026", as_of=AS_OF, url=url)
    assert str(err.value) == "Can't answer `tickets`: this database has no `tickets` table."


def test_model_path_setting(tmp_path, monkeypatch):
    from bot.app import Settings

    monkeypatch.chdir(tmp_path)
    assert model.model_path({}) is None
    (tmp_path / "kpibot.yml").write_text("version: 1\n")
    assert model.model_path({}) == "kpibot.yml"
    assert model.model_path({"KPI_MODEL": "/x/models"}) == "/x/models"
    assert Settings.from_env({"KPI_MODEL": "/x/models"}).model == "/x/models"


def test_cli_ask_reads_the_model_file_the_settings_name(tmp_path, monkeypatch, capsys):
    import json

    url, prefix = _file_db("sqlite", tmp_path)
    path = tmp_path / "models"
    path.mkdir()
    (path / "team.yml").write_text(MODEL.format(**prefix))
    monkeypatch.setenv("KPI_MODEL", str(path))  # a folder of model files
    try:
        assert cli.main(["--url", url, "ask", "net revenue march 2026", "--as-of", "2026-04-15", "--json"]) == 0
    finally:
        model.configure(None)
    data = json.loads(capsys.readouterr().out)
    assert data["metric"] == "net_revenue"
    assert data["value"] == pytest.approx((100.50 + 20.00 + 19.99 + 49.00) - (5.50 + 10.00), abs=0.005)
    assert "net_revenue" not in CATALOGUE  # kpibot's own catalogue again


def test_slack_answers_team_kpis_from_the_model_file_in_its_settings(tmp_path, monkeypatch):
    """Through Slack (signed requests, the fake Web API): the app reads KPI_MODEL's file when
    it is built; a team KPI and a built-in one over the team's tables."""
    from tests.trust_helpers import start_app

    url, prefix = _file_db("sqlite", tmp_path)
    path = tmp_path / "kpibot.yml"
    path.write_text(MODEL.format(**prefix))
    try:
        with start_app(url, monkeypatch, state_url=f"sqlite:///{tmp_path / 'state.sqlite'}",
                       model=str(path)) as app:
            reply = app.ask("trial to paid march 2026")
            assert reply.kind == "answer" and "*50.0%*" in reply.text  # 2 of 4 trials (see _assert_answers)
            reply = app.ask("pro accounts by country march 2026")
            assert reply.kind == "answer" and "*2*" in reply.text and "FR" in reply.text  # a1, a3
    finally:
        model.configure(None)


def test_check_reads_a_sample_of_values_and_flags_a_score_on_another_scale(tmp_path, monkeypatch, capsys):
    url, _prefix = _file_db("sqlite", tmp_path)
    path = tmp_path / "kpibot.yml"
    path.write_text(
        "version: 1\nsources:\n  survey_responses:\n    relation: surveys_answers\n    columns:\n"
        "      response_id: id\n      customer_id: account_id\n      responded_at: submitted_at\n"
        "      survey: {expr: \"lower(survey_kind)\"}\n      score: {column: rating, scale: 2}\n"
        "  orders:\n    relation: billing_invoices\n    columns: {order_id: id, customer_id: account_id, "
        "ordered_at: issued_at, amount: kind}\n")
    monkeypatch.setenv("KPI_MODEL", str(path))
    try:
        assert cli.main(["--url", url, "check"]) == 1
    finally:
        model.configure(None)
    out = capsys.readouterr().out
    # CSAT 5, 2, 4, 3 doubled: 4-10, outside 1-5; NPS 3-10 doubled: 6-20, outside 0-10
    assert "`score`: csat answers range 4-10 in the sample, kpibot reads csat on 1-5" in out
    assert "`score`: nps answers range 6-20 in the sample, kpibot reads nps on 0-10" in out
    assert "`amount` should be a number; sample values: ['subscription', 'one_off']" in out


def test_a_model_read_again_while_configured_loads_the_same(tmp_path, configured):
    url, prefix = _file_db("sqlite", tmp_path)
    first = _model(tmp_path, prefix)
    configured(first, url)
    again = model.read(tmp_path / "kpibot.yml")  # e.g. a reload: the team's ids are not "built-in"
    assert again.errors == [] and again.team == first.team


OWN_TABLES_MODEL = """\
version: 1
metrics:
  escalation_rate:
    type: ratio
    label: Escalation rate
    numerator: {source: tickets, agg: count, filter: "escalated", time: opened_at}
    denominator: {source: tickets, agg: count, time: opened_at}
    scale: 100
    unit: percent
    direction: lower
    dimensions: [category]
"""


def test_team_kpis_over_kpibots_own_tables_need_no_sources(tmp_path, configured):
    from datetime import datetime

    from storage.schema import tickets

    url = f"duckdb:///{tmp_path / 'own.duckdb'}"
    engine = database.get_engine(url)  # kpibot's own database: its tables are created
    rows = [("t1", "bug", True), ("t2", "bug", False), ("t3", "billing", False), ("t4", "bug", True)]
    with engine.begin() as conn:
        conn.execute(tickets.insert(), [{"ticket_id": i, "opened_at": datetime(2026, 3, 2 + n), "category": c,
                                         "escalated": e, "resolved_at": datetime(2026, 3, 3 + n) if n else None}
                                        for n, (i, c, e) in enumerate(rows)])
    doc, errors = parse(OWN_TABLES_MODEL, "own.yml")
    assert not errors and doc is not None
    loaded = load_model([("own.yml", doc)])
    assert loaded.errors == []
    configured(loaded, url)
    assert _value("escalation rate march 2026", url) == pytest.approx(100 * 2 / 4)
    groups = {g.group: g.value for g in ask("escalation rate by category march 2026", as_of=AS_OF, url=url).breakdown}
    assert groups == pytest.approx({"bug": 100 * 2 / 3, "billing": 0.0})
    # backlog (a cumulative kept as data): t1 still open at the end of March; by category, the
    # categories whose tickets are all resolved are a level of 0, not "no data"
    assert _value("backlog march 2026", url) == pytest.approx(1)
    groups = {g.group: g.value for g in ask("backlog by category march 2026", as_of=AS_OF, url=url).breakdown}
    assert groups == {"bug": 1, "billing": 0}


UNTYPED_MODEL = """
version: 1
sources:
  visits:
    relation: web.visits
    columns: {visit_id: id, visited_at: seen_at, account: account_ref}
    time: visited_at
metrics:
  visiting_accounts:
    type: simple
    label: Visiting accounts
    source: visits
    agg: count_distinct
    expr: account
    unit: count
    direction: higher
"""


def test_a_column_of_no_known_type_is_answered_and_policed(tmp_path, configured):
    """`account` matches no naming rule for a type: the access check (a dry run on an in-memory
    copy of the tables) must still build that table instead of failing on an untyped column."""
    import duckdb

    path = tmp_path / "team.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA web")
        con.execute("CREATE TABLE web.visits (id VARCHAR, seen_at TIMESTAMP, account_ref VARCHAR)")
        con.execute("INSERT INTO web.visits VALUES ('v1', '2026-03-02 10:00', 'a1'), ('v2', '2026-03-03 10:00', 'a1'),"
                    " ('v3', '2026-03-04 10:00', 'a2'), ('v4', '2026-04-01 10:00', 'a3')")
    url = f"duckdb:///{path}"
    doc, errors = parse(UNTYPED_MODEL, "team.yml")
    assert not errors and doc is not None
    loaded = load_model([("team.yml", doc)])
    assert loaded.errors == []
    configured(loaded, url)
    from metrics import access

    # reads no money and no per-customer column (a failed dry run would count as reading all)
    assert access.of_metric("visiting_accounts") == frozenset()
    # March: a1 (twice) and a2 -> 2 distinct accounts; v4 is in April
    assert _value("visiting accounts march 2026", url) == 2
