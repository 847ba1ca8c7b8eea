"""Revenue, margin, CAC, CLV and marketing return against tests/kpi_fixtures.py, by hand.

Q3 orders: o1 300 (k1, recurring), o2 300 (k1, recurring), o3 200 (k1, one-off), o4 100 (k2,
recurring), o5 40 (k3, recurring), o6 480 (k4, one-off): 1,420 from 6 orders by 4 customers.
Q3 cost to serve: k1 150 + 150, k2 300, k3 100, k5 70: 770.
Q3 spend: paid_search 400 + 400, events 300 (Oct 1 and Jun 30 are outside): 1,100.
New customers in Q3: k4 (events), k5 (paid_search).
"""

from __future__ import annotations

import pytest

from tests.kpi_fixtures import groups, q

M = 30.4375
ARPA = 350 / 3  # MRR on Oct 1 (k1 150, k2 80, k4 120) over 3 paying customers (k1, k2, k4)
GROSS_MARGIN = 100 * (1420 - 770) / 1420
MONTHLY_CHURN = 100 * (1 - (2 / 3) ** (M / 92))  # 1 of 3 customers lost in 92 days, as a monthly pace




def test_revenue_split_ytd_and_yoy(company):
    r = q(company, "revenue last-quarter")
    assert r.value == pytest.approx(1420.0)
    assert r.extras["recurring"] == pytest.approx(300 + 300 + 100 + 40)
    assert r.extras["one_off"] == pytest.approx(200 + 480)
    assert r.previous.value == pytest.approx(100.0)  # o7
    ytd = q(company, "revenue ytd yoy")
    assert ytd.value == pytest.approx(1420 + 100 + 50)  # every 2026 order up to today
    assert ytd.previous.period.start.year == 2025 and ytd.previous.value is None  # no 2025 orders


def test_margin_gross_margin_and_profit_per_customer(company):
    m = q(company, "bottom line last-quarter")
    assert m.metric.id == "margin"
    assert m.value == pytest.approx(650.0)  # 1420 - 770
    assert m.previous.value == pytest.approx(50.0)  # Q2: o7 100 - k2's 50
    assert m.band.good
    # Retail: k1 800 - 300, k3 40 - 100, k5 0 - 70 = 370; Software: k2 100 - 300, k4 480 = 280
    assert groups(q(company, "margin by industry last-quarter")) == {
        "Retail": pytest.approx(370.0),
        "Software": pytest.approx(280.0),
    }
    gm = q(company, "gross margin last-quarter")
    assert gm.value == pytest.approx(GROSS_MARGIN)
    ppc = q(company, "profit_per_customer last-quarter")
    assert ppc.value == pytest.approx(650 / 5)  # k1..k5 have revenue or cost in Q3
    assert ppc.previous.value == pytest.approx(50.0)  # Q2: k2 only
    assert q(company, "avg_customer_value last-quarter").value == pytest.approx(1420 / 4)
    assert q(company, "aov last-quarter").value == pytest.approx(1420 / 6)
    # 6 orders by 4 customers over 92 days: per customer per month
    assert q(company, "repeat_transactions last-quarter").value == pytest.approx(6 / 4 * M / 92)


def test_cac_overall_and_by_channel(company):
    r = q(company, "acquisition cost last-quarter by channel")
    assert r.metric.id == "cac"
    assert r.value == pytest.approx(1100 / 2)
    assert r.extras["spend"] == pytest.approx(1100.0) and r.extras["new_customers"] == 2
    assert groups(r) == {"paid_search": pytest.approx(800.0), "events": pytest.approx(300.0)}
    assert r.previous.value is None  # Q2: 111 spent, no new customer
    assert q(company, "cac last-quarter where channel=events").value == pytest.approx(300.0)


def test_clv_ltv_cac_and_payback(company):
    clv = q(company, "ltv last-quarter")
    assert clv.metric.id == "clv"
    assert clv.value == pytest.approx(ARPA * (GROSS_MARGIN / 100) / (MONTHLY_CHURN / 100))
    simple = q(company, "clv_simple last-quarter")
    aov, repeat = 1420 / 6, 6 / 4 * M / 92
    assert simple.value == pytest.approx(aov * repeat * 100 / MONTHLY_CHURN)
    ratio = q(company, "ltv:cac last-quarter")
    assert ratio.value == pytest.approx(clv.value / 550)
    assert not ratio.band.good  # well under 3x
    payback = q(company, "cac payback last-quarter")
    assert payback.value == pytest.approx(550 / (ARPA * GROSS_MARGIN / 100))
    assert payback.band.good  # about 10.3 months: under 12
    # events: CAC 300; k4 brings 120 MRR at a 100% margin (480 revenue, no cost): 2.5 months
    assert groups(q(company, "cac_payback by channel last-quarter"))["events"] == pytest.approx(2.5)


def test_marketing_roi_and_leads_per_dollar(company):
    roi = q(company, "marketing roi last-quarter by channel")
    # Q3 revenue by acquisition channel: paid_search k1 800 + k3 40 = 840; events k4 480;
    # organic k2 100 has no spend and is left out: (840 + 480) / 1100
    assert roi.value == pytest.approx(1320 / 1100)
    assert groups(roi) == {"paid_search": pytest.approx(840 / 800), "events": pytest.approx(480 / 300), "organic": None}
    lpd = q(company, "leads per dollar last-quarter by channel")
    assert lpd.value == pytest.approx(5 / 1100 * 1000)  # L1-L5 created in Q3
    assert lpd.extras["cost_per_lead"] == pytest.approx(220.0)
    assert groups(lpd) == {
        "paid_search": pytest.approx(2 / 800 * 1000),  # L1, L2
        "events": pytest.approx(2 / 300 * 1000),  # L3, L4
        "organic": None,  # L5, no spend
    }
