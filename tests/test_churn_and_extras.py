"""The churn rate and the before-churn report agree on who churned, with the difference said;
extra figures read as money, percentages and durations with human labels."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from sqlalchemy import insert

from metrics import render, reports
from metrics.api import answer, ask
from metrics.catalogue import CATALOGUE
from storage import database
from storage.schema import costs, customers, orders
from tests.kpi_fixtures import q

AS_OF = date(2026, 11, 23)

PEOPLE = [
    # id, signed up, churned
    ("a", "2026-01-01", "2026-08-01"),  # at Q3's start, churns in Q3: in the rate
    ("b", "2026-01-01", None),  # at the start, stays
    ("c", "2026-07-10", "2026-09-01"),  # signs up and churns inside Q3: left, but not in the base
    ("d", "2026-08-01", None),  # new, stays
    ("e", "2026-02-01", "2026-06-01"),  # gone before Q3
]


@pytest.fixture
def people(db_url):
    rows = [
        {"customer_id": c, "signed_up_at": datetime.fromisoformat(s), "churned_at": e and datetime.fromisoformat(e)}
        for c, s, e in PEOPLE
    ]
    with database.get_engine(db_url).begin() as conn:
        conn.execute(insert(customers), rows)
    return db_url


def test_churn_rate_and_before_churn_reconcile(people):
    rate = ask("churn 2026-Q3", as_of=AS_OF, url=people)
    assert rate.value == pytest.approx(50.0)  # a of {a, b}
    assert rate.extras["churned"] == 1 and rate.extras["churned_new"] == 1  # a; c
    assert "also left, not in the rate: customers who signed up in the period: 1" in render.extras_line(rate)
    report = answer("before-churn 2026-Q3", as_of=AS_OF, url=people)
    assert report.churned.customers == 2  # a and c: everyone who left
    assert report.signed_up_in_period == 1
    text = reports.render_text(report)
    assert ("2 customers churned (1 customer at the period's start, whom the churn rate counts, "
            "and 1 who signed up during the period and left within it)") in text


def test_extras_are_percentages_with_human_labels(company):
    r = q(company, "churn last-quarter")  # k1, k2, k3 at Jul 1; k3 churns: c = 1/3 over 92 days
    line = render.extras_line(r)
    # 1 − (2/3)^(30.4375/92) = 12.55…%, 1 − (2/3)^(365.25/92) = 80.006…%
    assert line == ("monthly churn at the same pace: 12.6% · yearly churn at the same pace: 80.0% · "
                    "customers who churned (of those at the start): 1")
    assert "^" not in line and "in %" not in line


def test_money_extras_have_currency_and_separators(db_url, monkeypatch):
    monkeypatch.setenv("KPI_CURRENCY", "€")
    with database.get_engine(db_url).begin() as conn:
        conn.execute(insert(orders), [
            {"order_id": "o1", "customer_id": "a", "ordered_at": datetime(2026, 3, 5), "amount": 1234567.89},
        ])
        conn.execute(insert(costs), [
            {"customer_id": "a", "incurred_at": datetime(2026, 3, 6), "amount": 45.25, "category": "infra"},
        ])
    r = ask("margin 2026-03", as_of=date(2026, 4, 10), url=db_url)
    # revenue 1,234,567.89; cost 45.25; profit 1,234,522.64 (whole currency units from 100 up)
    assert render.extras_line(r) == ("revenue: €1,234,568 · cost to serve: €45.25 · "
                                     "revenue − cost to serve: €1,234,523")


def test_every_extra_unit_is_a_known_unit_of_a_documented_extra():
    units = {"score", "percent", "count", "currency", "hours", "days", "months", "minutes", "ratio", "seconds"}
    for metric in CATALOGUE.values():
        assert set(metric.extras_units.values()) <= units, metric.id
        for label in metric.extras_doc.values():
            assert "^" not in label and "in %" not in label, (metric.id, label)
