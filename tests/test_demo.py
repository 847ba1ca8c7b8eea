"""The demo company: deterministic, complete, consistent, and telling the stories KPIs look for."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from sqlalchemy import text

from storage import database
from storage.demo import build_demo
from storage.importer import import_file
from storage.schema import TABLES

TODAY = date(2025, 11, 23)  # the dip month is October 2025
DIP = ("2025-10-01", "2025-11-01")


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory) -> str:
    """One DuckDB demo company at scale 0.25, shared by the read-only tests below."""
    url = f"duckdb:///{tmp_path_factory.mktemp('demo')}/demo.duckdb"
    build_demo(database.get_engine(url), seed=7, scale=0.25, today=TODAY)
    return url


def scalar(url: str, sql: str, **params):
    with database.get_engine(url).connect() as conn:
        return conn.execute(text(sql), params).scalar()


def all_rows(url: str, sql: str, **params) -> list:
    with database.get_engine(url).connect() as conn:
        return conn.execute(text(sql), params).all()


CHECKSUM = """
select
  (select count(*) from customers where churned_at is not null),
  (select round(sum(mrr), 2) from subscriptions),
  (select sum(score) from survey_responses),
  (select round(sum(amount), 2) from orders),
  (select count(distinct user_id) from usage_events),
  (select max(opened_at) from tickets),
  (select min(created_at) from leads)
"""


def test_same_seed_same_company(tmp_path):
    a, b = f"duckdb:///{tmp_path}/a.duckdb", f"duckdb:///{tmp_path}/b.duckdb"
    counts_a = build_demo(database.get_engine(a), seed=11, scale=0.1, today=TODAY)
    counts_b = build_demo(database.get_engine(b), seed=11, scale=0.1, today=TODAY)
    assert counts_a == counts_b
    assert all_rows(a, CHECKSUM) == all_rows(b, CHECKSUM)
    other = f"duckdb:///{tmp_path}/c.duckdb"
    build_demo(database.get_engine(other), seed=12, scale=0.1, today=TODAY)
    assert all_rows(other, CHECKSUM) != all_rows(a, CHECKSUM)


def test_every_table_filled_and_counts_match(demo_url):
    for name in TABLES:
        assert scalar(demo_url, f"select count(*) from {name}") > 0, name  # noqa: S608 - schema names
    assert scalar(demo_url, "select count(*) from customers") == 750


def test_segments_and_values_are_the_documented_ones(demo_url):
    def values(column, table="customers"):
        return {r[0] for r in all_rows(demo_url, f"select distinct {column} from {table}")}  # noqa: S608

    assert values("size_band") == {"SMB", "Mid-Market", "Enterprise"}
    assert values("region") == {"NA", "EMEA", "APAC", "LATAM"}
    assert values("plan") == {"Free", "Starter", "Growth", "Enterprise"}
    assert (
        values("acquisition_channel")
        == values("source", "leads")
        == values("channel", "marketing_spend")
    )
    assert values("survey", "survey_responses") == {"nps", "csat", "ces", "ppr"}
    assert values("product", "subscriptions") == {"core", "analytics", "api"}
    assert values("severity", "incidents") == {"sev1", "sev2", "sev3"}
    assert values("category", "tickets") == {
        "billing",
        "bug",
        "how-to",
        "feature-request",
        "outage",
    }
    assert scalar(demo_url, "select bool_and(not is_paying) from customers where plan = 'Free'")
    bad_scores = scalar(
        demo_url,
        """select count(*) from survey_responses where
           (survey = 'nps' and score not between 0 and 10) or (survey = 'csat' and score not between 1 and 5)
           or (survey = 'ces' and score not between 1 and 7) or (survey = 'ppr' and score not between 1 and 5)""",
    )
    assert bad_scores == 0


def test_window_is_two_years_up_to_today(demo_url):
    assert str(scalar(demo_url, "select min(ordered_at) from orders")) >= "2023-11-01"
    for table, column in [
        ("orders", "ordered_at"),
        ("tickets", "opened_at"),
        ("usage_events", "occurred_at"),
        ("survey_responses", "responded_at"),
        ("leads", "created_at"),
    ]:
        newest = scalar(demo_url, f"select max({column}) from {table}")  # noqa: S608
        assert str(newest) < "2025-11-23", table


def test_relational_integrity(demo_url):
    for table in (
        "subscriptions",
        "orders",
        "tickets",
        "survey_responses",
        "costs",
        "usage_events",
        "opportunities",
    ):
        orphans = scalar(
            demo_url,
            f"select count(*) from {table} t where t.customer_id is not null "  # noqa: S608
            "and not exists (select 1 from customers c where c.customer_id = t.customer_id)",
        )
        assert orphans == 0, table
    assert (
        scalar(
            demo_url,
            "select count(*) from leads where (converted_at is null) <> (customer_id is null)",
        )
        == 0
    )
    assert (
        scalar(
            demo_url,
            "select count(*) from leads l join customers c using (customer_id) "
            "where l.source <> c.acquisition_channel or l.converted_at <> c.signed_up_at "
            "or not (l.created_at <= l.mql_at and l.mql_at <= l.sql_at and l.sql_at <= l.converted_at)",
        )
        == 0
    )
    # keys of the tables without a primary key are unique too
    for table, key in [
        ("costs", "customer_id, incurred_at, category"),
        ("marketing_spend", "spent_on, channel"),
        ("usage_events", "customer_id, user_id, occurred_at, action"),
    ]:
        dupes = scalar(
            demo_url,
            f"select count(*) from (select {key} from {table} group by all having count(*) > 1)",  # noqa: S608
        )
        assert dupes == 0, table


def test_recurring_orders_match_subscriptions(demo_url):
    mismatched = scalar(
        demo_url,
        """select count(*) from orders o where o.is_recurring and not exists (
             select 1 from subscriptions s where s.customer_id = o.customer_id and s.product = o.product
             and s.mrr = o.amount and s.started_at <= o.ordered_at
             and (s.ended_at is null or o.ordered_at < s.ended_at))""",
    )
    assert mismatched == 0
    assert (
        scalar(
            demo_url,
            "select count(*) from subscriptions s join customers c using (customer_id) where not c.is_paying",
        )
        == 0
    )


def test_churned_customers_have_ended_subscriptions(demo_url):
    assert scalar(demo_url, "select count(*) from customers where churned_at is not null") > 50
    open_after_churn = scalar(
        demo_url,
        "select count(*) from subscriptions s join customers c using (customer_id) "
        "where c.churned_at is not null and (s.ended_at is null or s.ended_at > c.churned_at)",
    )
    assert open_after_churn == 0
    # and paying customers who did not churn still have a live core subscription
    assert (
        scalar(
            demo_url,
            "select count(*) from customers c where c.is_paying and c.churned_at is null and not exists "
            "(select 1 from subscriptions s where s.customer_id = c.customer_id and s.product = 'core' and s.ended_at is null)",
        )
        == 0
    )
    # expansion/contraction = a core subscription ends and another starts with a different MRR
    assert (
        scalar(
            demo_url,
            "select count(*) from subscriptions a join subscriptions b on a.customer_id = b.customer_id "
            "and a.product = 'core' and b.product = 'core' and a.ended_at = b.started_at and a.mrr <> b.mrr",
        )
        > 20
    )


NPS_BY_MONTH = """
select date_trunc('month', s.responded_at) as m,
       100.0 * (avg(case when score >= 9 then 1.0 else 0 end) - avg(case when score <= 6 then 1.0 else 0 end))
from survey_responses s join customers c using (customer_id)
where s.survey = 'nps' and s.responded_at >= '2025-04-01' and s.responded_at < '2025-11-01' {extra}
group by 1 order by 1
"""


def test_nps_dips_in_the_last_complete_month(demo_url):
    overall = [v for _, v in all_rows(demo_url, NPS_BY_MONTH.format(extra=""))]
    emea = [v for _, v in all_rows(demo_url, NPS_BY_MONTH.format(extra="and c.region = 'EMEA'"))]
    others = [v for _, v in all_rows(demo_url, NPS_BY_MONTH.format(extra="and c.region <> 'EMEA'"))]
    assert len(overall) == 7
    before = sum(overall[:-1]) / 6
    assert overall[-1] < min(overall[:-1])
    assert before - overall[-1] >= 6
    assert sum(emea[:-1]) / 6 - emea[-1] >= 20  # concentrated in EMEA …
    assert abs(sum(others[:-1]) / 6 - others[-1]) < 10  # … not everywhere
    # and the reasons are in the data: a sev1 outage that month, EMEA outage tickets
    assert (
        scalar(
            demo_url,
            "select count(*) from incidents where severity = 'sev1' and started_at >= :a and started_at < :b",
            a=DIP[0],
            b=DIP[1],
        )
        >= 1
    )
    assert (
        scalar(
            demo_url,
            "select count(*) from tickets t join customers c using (customer_id) "
            "where t.category = 'outage' and c.region = 'EMEA' and t.opened_at >= :a and t.opened_at < :b",
            a=DIP[0],
            b=DIP[1],
        )
        > 20
    )


def test_churners_look_different_before_churning(demo_url):
    tickets = all_rows(
        demo_url,
        """with ch as (select customer_id, churned_at from customers where churned_at >= '2024-06-01')
        select count(*) filter (where t.opened_at >= ch.churned_at - interval 90 day) / 3.0,
               count(*) filter (where t.opened_at >= ch.churned_at - interval 180 day
                                and t.opened_at < ch.churned_at - interval 90 day) / 3.0
        from ch join tickets t using (customer_id)""",
    )[0]
    assert tickets[0] > 1.5 * tickets[1]
    usage = all_rows(
        demo_url,
        """with ch as (select customer_id, churned_at from customers where churned_at >= '2024-06-01')
        select count(*) filter (where u.occurred_at >= ch.churned_at - interval 90 day),
               count(*) filter (where u.occurred_at >= ch.churned_at - interval 180 day
                                and u.occurred_at < ch.churned_at - interval 90 day)
        from ch join usage_events u using (customer_id)""",
    )[0]
    assert usage[0] < 0.8 * usage[1]
    scores = all_rows(
        demo_url,
        """select avg(score) filter (where c.churned_at is not null and s.responded_at >= c.churned_at - interval 90 day),
                  avg(score) filter (where c.churned_at is null)
           from survey_responses s join customers c using (customer_id) where s.survey = 'nps'""",
    )[0]
    assert scores[0] < scores[1] - 1


def test_support_times_are_realistic(demo_url):
    first, resolve = all_rows(
        demo_url,
        "select median(epoch(first_response_at) - epoch(opened_at)) / 3600, "
        "median(epoch(resolved_at) - epoch(opened_at)) / 3600 from tickets",
    )[0]
    assert 0.4 < first < 2.0
    assert 8 < resolve < 48


def test_rebuild_replaces_data(duck_url):
    engine = database.get_engine(duck_url)
    first = build_demo(engine, seed=3, scale=0.05, today=TODAY)
    second = build_demo(engine, seed=3, scale=0.05, today=TODAY)
    assert first == second
    assert scalar(duck_url, "select count(*) from tickets") == first["tickets"]


def test_builds_on_every_backend(db_url):
    engine = database.get_engine(db_url)
    counts = build_demo(engine, seed=5, scale=0.05, today=TODAY)
    assert counts["customers"] == 150
    for name, n in counts.items():
        assert n > 0, name
        assert scalar(db_url, f"select count(*) from {name}") == n, name  # noqa: S608
    # types survive the bulk path: booleans, naive timestamps, dates
    assert scalar(db_url, "select count(*) from usage_events where is_core") > 0
    assert scalar(db_url, "select count(*) from subscriptions where ended_at is not null") > 0
    with engine.connect() as conn:
        spent_on, channel = conn.execute(
            text("select spent_on, channel from marketing_spend order by spent_on limit 1")
        ).one()
    assert str(spent_on)[:10] == "2023-11-01" and channel


def test_demo_rows_pass_the_importer(demo_url, tmp_path):
    """What the demo writes, the importer accepts: export a table and import it elsewhere."""
    path = tmp_path / "surveys.csv"
    with database.get_engine(demo_url).connect() as conn:
        frame = pd.read_sql(text("select * from survey_responses"), conn)
    frame.to_csv(path, index=False)
    n = len(frame)
    target = f"duckdb:///{tmp_path}/copy.duckdb"
    report = import_file(database.get_engine(target), "survey_responses", str(path))
    assert report.rows == n
