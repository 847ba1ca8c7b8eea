"""Sensitivity is derived from the SQL a question runs, for the whole catalogue.

Every KPI and report is run for real on the hand-made company of ``tests.kpi_fixtures``
while every statement sent to the database is recorded; the columns those statements
actually read must be covered by what :mod:`metrics.access` derived beforehand, and any KPI
that reads a money column is refused by the default policy in a channel and in a DM.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import Engine, event, func, select

from bot.policy import DEFAULT, Place
from metrics import access, reports
from metrics import engine as kpi_engine
from metrics.catalogue import CATALOGUE
from metrics.periods import Period, Settings
from storage import database
from storage.schema import customers, orders
from storage.sensitivity import MONEY, PER_CUSTOMER, columns_read, of_column, read_by
from tests import kpi_fixtures

CHANNEL = Place("C0GENERAL")
DM = Place("D0ALICE", "im", frozenset({"U0ALICE"}))
WINDOWS = [(date(2026, 7, 1), date(2026, 10, 1)), (date(2026, 4, 1), date(2026, 7, 1))]


@pytest.fixture(scope="module")
def company(tmp_path_factory):
    url = f"duckdb:///{tmp_path_factory.mktemp('sens') / 'company.duckdb'}"
    kpi_fixtures.load(url)
    return database.get_engine(url)


def _recorded(engine: Engine, run) -> list:
    seen: list = []

    def record(conn, clause, *args):
        if conn.engine is engine:
            seen.append(clause)

    event.listen(Engine, "before_execute", record)
    try:
        run()
    finally:
        event.remove(Engine, "before_execute", record)
    return seen


def _reads_money(statements) -> bool:
    return any(MONEY in of_column(c) for s in statements for c in columns_read(s))


@pytest.mark.parametrize("metric_id", sorted(CATALOGUE))
def test_each_kpi_is_restricted_by_the_data_it_actually_reads(company, metric_id):
    metric = CATALOGUE[metric_id]
    statements = _recorded(company, lambda: kpi_engine.compute(metric, WINDOWS, Settings(), company))
    assert statements, "the KPI ran no SQL"
    derived = access.of_metric(metric_id)
    actual = frozenset().union(*(read_by(s) for s in statements))
    assert actual <= derived, f"{metric_id} read {sorted(actual - derived)} that the policy was not shown"
    if _reads_money(statements):
        assert MONEY in derived
        needs = access.for_metric(metric_id)
        assert not DEFAULT.allows(needs, CHANNEL) and not DEFAULT.allows(needs, DM)


@pytest.mark.parametrize("name", sorted(reports.REPORTS))
def test_each_report_is_restricted_by_the_data_it_actually_reads(company, name):
    period = Period(date(2026, 7, 1), date(2026, 10, 1), "2026-Q3")
    statements = _recorded(company, lambda: reports.run(name, period, company, Settings()))
    actual = frozenset().union(*(read_by(s) for s in statements))
    assert actual <= access.of_report(name)


def test_every_leak_the_issue_lists_reads_money():
    for kpi in ("profit_per_customer", "avg_customer_value", "new_mrr", "net_new_mrr", "churned_mrr", "nrr", "grr",
                "revenue_churn", "marketing_roi", "upsell_opportunities", "upsell_conversion", "leads",
                "leads_per_dollar", "predicted_clv"):
        assert MONEY in access.of_metric(kpi), kpi
    assert MONEY in access.of_report("acquisition")
    assert {MONEY, PER_CUSTOMER} <= access.of_report("profitability")
    assert MONEY in access.of_metric("churned_mrr", "plan")
    for kpi in ("nps", "csat", "tickets", "wau", "uptime", "churn_rate"):  # no money: open by default
        assert access.of_metric(kpi) == frozenset(), kpi


def test_who_a_customer_is_counts_only_when_it_leaves_the_database():
    counted = select(func.count(func.distinct(customers.c.customer_id)))
    ranked = select(customers.c.name, func.count()).group_by(customers.c.name)
    inner = select(orders.c.customer_id.label("who"), func.sum(orders.c.amount).label("spent")).group_by(
        orders.c.customer_id).subquery()
    via_subquery = select(customers.c.name, inner.c.spent).join_from(inner, customers, customers.c.customer_id == inner.c.who)
    assert read_by(counted) == frozenset()
    assert read_by(ranked) == {PER_CUSTOMER}
    assert read_by(via_subquery) == {PER_CUSTOMER, MONEY}
    # a projection that is not used does not count: only the column the outer query takes
    wide = select(*orders.c).subquery()
    assert read_by(select(func.count(wide.c.order_id))) == frozenset()
    assert read_by(select(func.sum(wide.c.amount))) == {MONEY}
