"""The cross-silo reports (seed 002's three questions, seed 000's good and bad customers)
against tests/kpi_fixtures.py, computed by hand, on every backend."""

from __future__ import annotations

import pytest

from metrics import reports
from metrics.errors import QueryError
from tests import kpi_fixtures

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def company(db_url):
    kpi_fixtures.load(db_url)
    return db_url


def run(url, text):
    return reports.run_report(text, today=kpi_fixtures.AS_OF, url=url)


def test_acquisition(company):
    r = run(company, "acquisition last-quarter")
    assert isinstance(r, reports.AcquisitionReport)
    assert (r.period.start.isoformat(), r.period.end.isoformat()) == ("2026-07-01", "2026-10-01")
    channels = {c.channel: (c.new_customers, c.paying, c.spend, c.cac) for c in r.channels}
    # k4 (events, paying), k5 (paid_search, free); spend events 300, paid_search 800
    assert channels == {"events": (1, 1, 300.0, 300.0), "paid_search": (1, 0, 800.0, 800.0)}
    funnel = {f.source: (f.leads, f.mqls, f.sqls, f.customers) for f in r.funnel}
    # Leads created in Q3: paid_search L1 (MQL, SQL, customer), L2 (MQL); events L3 (all), L4 (none);
    # organic L5 (MQL, SQL)
    assert funnel == {"paid_search": (2, 2, 1, 1), "events": (2, 1, 1, 1), "organic": (1, 1, 1, 0)}
    assert (r.total.leads, r.total.mqls, r.total.sqls, r.total.customers) == (5, 4, 3, 2)
    assert r.total.conversion == pytest.approx(40.0)
    assert (r.days_to_mql, r.days_to_sql, r.days_to_customer) == (pytest.approx(2.0), pytest.approx(10.0), pytest.approx(50.0))
    text = reports.render_text(r)
    assert "How do people become our customers?" in text and "paid_search" in text and "40%" in text
    assert reports.render_png(r)[:8] == PNG


def test_complaints(company):
    r = run(company, "complaints last quarter")
    assert [c.category for c in r.by_volume] == ["bug", "billing"]  # 4 (T2-T5) and 2 (T1, T6) tickets
    bug, billing = r.by_volume
    assert (bug.tickets, bug.customers) == (4, 2)  # k2, k3
    # NPS in Q3 from k2 (3) and k3 (2): -100; from everyone else (10, 9, 10, 7, 6, 8): 3 promoters,
    # 1 detractor of 6 -> 33.3
    assert bug.with_ticket.nps == pytest.approx(-100.0)
    assert bug.without.nps == pytest.approx(100 / 3)
    assert bug.nps_effect == pytest.approx(-100 - 100 / 3)
    # CSAT from k2 (2) and k3 (1): 0%; from the rest (5, 4, 5): 100%
    assert (bug.with_ticket.csat, bug.without.csat) == (pytest.approx(0.0), pytest.approx(100.0))
    # billing: k1 (10, 9) and k2 (3): 2 promoters, 1 detractor of 3 -> 33.3; the rest (2, 10, 7, 6, 8) -> -20
    assert billing.with_ticket.nps == pytest.approx(100 / 3)
    assert billing.without.nps == pytest.approx(-20.0)
    assert [c.category for c in r.by_effect] == ["bug", "billing"]
    touch = {t.touchpoint: (t.scores.nps_n, t.scores.detractors, t.dissatisfied) for t in r.touchpoints}
    assert r.touchpoints[0].touchpoint == "support"  # the most detractors: R3, R4
    assert touch["support"] == (2, 2, 2)  # CSAT 2 and 1 (one says "Support")
    assert r.points_lost(r.touchpoints[0]) == pytest.approx(100 * 2 / 8)
    assert r.overall.nps == pytest.approx(0.0)
    text = reports.render_text(r)
    assert "What creates unhappy customers?" in text and "*bug*" in text
    assert reports.render_png(r)[:8] == PNG


def test_before_churn(company):
    r = run(company, "before-churn last-quarter")
    c, k = r.churned, r.retained
    # Churned in Q3: k3 (Aug 16), window May 18 - Aug 16. Stayed: k1, k2 (customers on Jul 1 and Oct 1;
    # k4 and k5 are new), window Jul 3 - Oct 1.
    assert (c.customers, k.customers) == (1, 2)
    assert c.tickets == 2 and k.tickets == 3  # k3: T4, T5; k2: T2, T3, T6 (k1's T1 on Jul 2 is before Jul 3)
    assert k.tickets_per_customer == pytest.approx(1.5)
    assert c.nps_mean == pytest.approx(2.0) and k.nps_mean == pytest.approx((10 + 9 + 3) / 3)
    assert c.csat_mean == pytest.approx(1.0) and k.csat_mean == pytest.approx((5 + 2) / 2)
    assert c.scores.nps == pytest.approx(-100.0) and k.scores.nps == pytest.approx(100 / 3)
    # k3's usage: Jun 1, Jun 5 (days 90-61), Jun 20 (60-31), Jul 20 (30-0);
    # k1: Sep 10, 25, 28 (30-0); k2: Jul 15 (90-61), Sep 5 (30-0)
    assert c.usage == (2, 1, 1) and k.usage == (1, 0, 4)
    assert c.usage_trend == pytest.approx(-50.0) and k.usage_trend == pytest.approx(300.0)
    assert r.categories == [("bug", 2)]
    text = reports.render_text(r)
    assert "1 customer churned" in text and "bug (2)" in text
    assert reports.render_png(r)[:8] == PNG


def test_profitability(company):
    r = run(company, "good customers 2026-Q3")
    assert r.name == "profitability"
    # Q3 profit: k1 800 - 300 = 500, k4 480, k3 40 - 100 = -60, k5 -70, k2 100 - 300 = -200
    assert (r.customers, r.unprofitable, r.profit) == (5, 3, pytest.approx(650.0))
    # 5 customers, fewer than 2 x 5: each list gets 2 so that they do not overlap
    assert [(p.name, p.profit) for p in r.best] == [("Acme", 500.0), ("Dyna", 480.0)]
    assert [(p.name, p.profit) for p in r.worst] == [("Beta", -200.0), ("Echo", -70.0)]
    assert "Most profitable" in reports.render_text(r)
    assert reports.render_png(r)[:8] == PNG


def test_words_and_errors(company):
    assert reports.find("before churn last-quarter") == ("before-churn", 2)
    assert reports.find("nps last-quarter") is None
    assert set(reports.REPORTS) >= {"acquisition", "complaints", "before-churn"}
    with pytest.raises(QueryError):
        run(company, "complaints last-quarter banana")
    empty = run(company, "before-churn 2024-Q1")
    assert empty.churned.customers == 0
    assert "No customer churned" in reports.render_text(empty)
    assert reports.render_png(empty) is None
