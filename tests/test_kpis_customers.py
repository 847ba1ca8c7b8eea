"""Customer, churn and retention KPIs against tests/kpi_fixtures.py, by hand, on every backend.

Last quarter = 2026-Q3 = [Jul 1, Oct 1), 92 days; the quarter before = Q2 = [Apr 1, Jul 1).
A month is 30.4375 days (365.25 / 12).
"""

from __future__ import annotations

import pytest

from tests.kpi_fixtures import groups, q

M = 30.4375




def test_customer_counts_and_cuts(company):
    r = q(company, "customers last-quarter")
    assert r.value == 4  # active on Oct 1: k1, k2, k4, k5 (k3 churned Aug 16, k7 signs in October)
    assert r.previous.value == 3  # on Jul 1: k1, k2, k3 (k6 churned in May)
    by_region = q(company, "customers by region last-quarter")
    assert groups(by_region) == {"EMEA": 2, "NA": 2}  # EMEA: k1, k5; NA: k2, k4
    assert {g.group: g.previous for g in by_region.breakdown} == {"EMEA": 2, "NA": 1}  # Jul 1: k1, k3 | k2
    assert groups(q(company, "customers by plan last-quarter")) == {"Growth": 2, "Starter": 1, "Free": 1}
    assert q(company, "customers last-quarter where size=smb").value == 2  # k2, k5
    assert q(company, "paying_customers last-quarter").value == 3  # k5 is free
    new = q(company, "new_customers last-quarter by channel")
    assert new.value == 2 and new.extras["paying"] == 1 and new.extras["free"] == 1  # k4 paying, k5 free
    assert groups(new) == {"events": 1, "paid_search": 1}


def test_seats_and_products_per_customer(company):
    seats = q(company, "licences last-quarter")
    assert seats.metric.id == "seats_per_customer"
    # On Oct 1 the subscriptions with seats: s1 10 (k1), s4 3 (k2), s7 20 (k4): 33 seats / 3 customers
    assert seats.value == pytest.approx(11.0)
    assert seats.extras["seats"] == 33
    # On Jul 1: s1 10 (k1), s3 5 (k2), s6 2 (k3): 17 / 3
    assert seats.previous.value == pytest.approx(17 / 3)
    products = q(company, "products_per_customer last-quarter")
    # Oct 1: k1 {core, analytics}, k2 {core, api}, k4 {core}: 5 products / 3 customers
    assert products.value == pytest.approx(5 / 3)
    # Jul 1: k1 {core}, k2 {core, api}, k3 {core}: 4 / 3
    assert products.previous.value == pytest.approx(4 / 3)


def test_tenure(company):
    r = q(company, "customer lifetime last-quarter")
    assert r.metric.id == "tenure"
    # Active on Oct 1 and days since sign-up: k1 638 (365 + 273), k2 487 (365 + 122),
    # k4 83 (Jul 10 -> Oct 1), k5 42 (Aug 20 -> Oct 1): mean 1250 / 4 = 312.5 days
    assert r.value == pytest.approx(312.5 / M)
    assert r.n == 4
    assert r.extras["median"] == pytest.approx((83 + 487) / 2 / M)
    # k3 churned in Q3 after 213 days (Jan 15 -> Aug 16)
    assert r.extras["churned_lifetime"] == pytest.approx(213 / M)


def test_churn_monthly_and_yearly(company):
    r = q(company, "churn last-quarter")
    assert r.value == pytest.approx(100 / 3)  # k1, k2, k3 active on Jul 1; k3 churned
    assert r.previous.value == pytest.approx(25.0)  # k1, k2, k3, k6 on Apr 1; k6 churned
    assert r.extras["monthly"] == pytest.approx(100 * (1 - (2 / 3) ** (M / 92)))
    assert r.extras["yearly"] == pytest.approx(100 * (1 - (2 / 3) ** (365.25 / 92)))
    assert groups(q(company, "churn by industry last-quarter")) == {
        "Retail": pytest.approx(50.0),  # k1, k3; k3 churned
        "Software": pytest.approx(0.0),  # k2
    }
    # August: k1, k2, k3, k4 active on Aug 1, k3 churns: 25% over 31 days
    august = q(company, "monthly_churn 2026-08")
    assert august.value == pytest.approx(100 * (1 - 0.75 ** (M / 31)))
    assert august.extras["period"] == pytest.approx(25.0)
    # 2026 is still running on Nov 23: Jan 1 - Nov 22, 326 days. k1, k2, k6 active on Jan 1
    # (k3 signs on Jan 15); k6 churns: 1/3 over 326 days
    year = q(company, "yearly_churn 2026")
    assert year.value == pytest.approx(100 * (1 - (2 / 3) ** (365.25 / 326)))
    assert q(company, "retention_rate last-quarter").value == pytest.approx(200 / 3)  # (4 - 2 new) / 3


def test_mrr_movements_nrr_grr(company):
    # MRR per customer on Jul 1 -> Oct 1: k1 100 -> 150 (analytics added), k2 100 -> 80
    # (core 80 -> 60, api 20 kept), k3 40 -> 0 (churned), k4 0 -> 120 (new). Start 240, end 350.
    new = q(company, "new_mrr last-quarter")
    assert new.value == pytest.approx(120.0)
    assert new.extras["mrr_start"] == pytest.approx(240.0) and new.extras["mrr_end"] == pytest.approx(350.0)
    assert q(company, "expansion_mrr last-quarter").value == pytest.approx(50.0)
    assert q(company, "contraction_mrr last-quarter").value == pytest.approx(20.0)
    churned = q(company, "churned_mrr last-quarter")
    assert churned.value == pytest.approx(40.0)
    assert churned.previous.value == pytest.approx(30.0)  # Q2: k6's 30
    net = q(company, "net_new_mrr last-quarter")
    assert net.value == pytest.approx(110.0)  # 120 + 50 - 20 - 40 = 350 - 240
    assert net.value == pytest.approx(q(company, "mrr last-quarter").value - q(company, "mrr 2026-Q2").value)
    nrr = q(company, "dollar retention last-quarter")
    assert nrr.metric.id == "nrr"
    assert nrr.value == pytest.approx(100 * (150 + 80 + 0) / 240)
    assert nrr.previous.value == pytest.approx(100 * 240 / 270)  # Apr 1: k1 100, k2 100, k3 40, k6 30
    assert q(company, "grr last-quarter").value == pytest.approx(100 * (240 - 20 - 40) / 240)
    assert q(company, "revenue_churn last-quarter").value == pytest.approx(100 * (40 + 20) / 240)
    assert groups(q(company, "nrr by industry last-quarter")) == {
        "Retail": pytest.approx(100 * 150 / 140),  # k1 100 -> 150, k3 40 -> 0
        "Software": pytest.approx(100 * 80 / 100),  # k2 100 -> 80 (k4 had none at the start)
    }


def test_inactive_customers(company, monkeypatch):
    r = q(company, "inactive customers last-quarter")
    # Active on Oct 1: k1, k2, k4, k5. Usage in [Sep 1, Oct 1): k1, k2 (Sep 5), k4 (Sep 30). k5: none.
    assert r.value == 1
    assert r.extras["pct"] == pytest.approx(25.0)
    # Jul 1: k1, k2, k3; usage in [Jun 1, Jul 1): only k3
    assert r.previous.value == 2
    monkeypatch.setenv("KPI_INACTIVE_DAYS", "20")
    # [Sep 11, Oct 1): k1 (Sep 25, 28) and k4 (Sep 30) used it; k2 (Sep 5) and k5 did not
    assert q(company, "inactive_customers last-quarter").value == 2
    monkeypatch.setenv("KPI_INACTIVE_DAYS", "60")
    # [Aug 2, Oct 1): k1, k2, k4 (Aug 15) used it; k5 signed up Aug 20, a customer for less than 60 days
    assert q(company, "inactive_customers last-quarter").value == 0
