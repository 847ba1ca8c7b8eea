"""Satisfaction, support, reliability and cross/up-sell KPIs against tests/kpi_fixtures.py,
by hand; and every KPI over trend windows, on every backend."""

from __future__ import annotations

from datetime import date

import pytest

from metrics.api import ask
from metrics.catalogue import CATALOGUE
from metrics.engine import compile_measure
from metrics.periods import Settings
from metrics.spec import Measure
from tests import fixtures
from tests.kpi_fixtures import groups, q


def test_surveys(company):
    nps = q(company, "nps last-quarter by touchpoint")
    # R1 10, R2 9, R3 3, R4 2, R5 10, R6 7, R7 6, R8 8: 3 promoters, 3 detractors of 8
    assert nps.value == pytest.approx(0.0) and nps.n == 8
    assert groups(nps)["product"] == pytest.approx(100 * (2 - 1) / 3)  # 10, 9, 6
    assert q(company, "csat last-quarter").value == pytest.approx(60.0)  # 5, 2, 1, 4, 5: three of 5 are 4+
    support = q(company, "support_csat last-quarter")
    assert support.value == pytest.approx(100 / 3)  # support and "Support": 5, 2, 1
    assert support.n == 3
    assert not support.band.good  # under the seed's 80%
    ppr = q(company, "post-purchase rating last-quarter by touchpoint")
    assert ppr.metric.id == "ppr"
    assert ppr.value == pytest.approx((5 + 4 + 2) / 3)
    assert groups(ppr) == {"checkout": pytest.approx(4.5), "delivery": pytest.approx(2.0)}


def test_support(company):
    nrr = q(company, "net resolution rate last-quarter by category")
    # Resolved in Q3: T1, T2 (reopened), T3 (escalated), T4, T7 (opened in June): 3 of 5 clean
    assert nrr.value == pytest.approx(60.0) and nrr.n == 5
    assert groups(nrr) == {"bug": pytest.approx(100 / 3), "billing": 100.0, "onboarding": 100.0}
    assert not nrr.band.good  # under 85%
    # NA is k2 and k4: T2 (reopened) and T3 (escalated), bugs, and T7 (clean), onboarding
    na = q(company, "net resolution rate last-quarter by category where region=NA")
    assert na.value == pytest.approx(100 / 3) and na.n == 3
    assert groups(na) == {"bug": pytest.approx(0.0), "onboarding": pytest.approx(100.0)}
    one = q(company, "one-touch resolutions last-quarter")
    assert one.value == 2  # T1, T4 (T7 took two replies)
    assert one.extras["pct"] == pytest.approx(40.0)
    # First responses (hours) of Q3 tickets: .5, 1, 2, .25, 1/3 -> median .5; resolutions: 3, 24, 24, 1, 72 -> 24
    assert q(company, "first_response_time last-quarter").value == pytest.approx(0.5)
    assert q(company, "resolution_time last-quarter").value == pytest.approx(24.0)
    assert q(company, "tickets last-quarter").value == 6
    assert q(company, "backlog last-quarter").value == 2  # T5 never resolved, T6 resolved Oct 2


def test_defects(company):
    d = q(company, "defects last-quarter by severity")
    assert d.value == 3 and d.extras["still_open"] == 1  # D1, D2, D3; D3 open
    assert groups(d) == {"critical": 1, "minor": 1, "major": 1}
    assert d.previous.value == 1  # D4
    t = q(company, "defect_resolution_time last-quarter")
    # Resolved in Q3: D1 24 h, D2 72 h, D4 156 h (Jun 25 -> Jul 1 12:00)
    assert t.value == pytest.approx((24 + 72 + 156) / 3)
    assert t.extras["median"] == pytest.approx(72.0)


def test_downtime_and_uptime(company):
    down = q(company, "downtime last-quarter by severity")
    # I1 60 min inside Q3 (00:00-01:00 Jul 1), I2 30 min, I3 is a degradation, I4 still open
    # from Sep 30 23:00: 60 min to the quarter's end
    assert down.value == pytest.approx(150.0)
    assert down.extras["incidents"] == 3
    assert down.extras["longest"] == pytest.approx(60.0)
    assert down.previous.value == pytest.approx(60.0)  # I1's first hour, in Q2
    assert groups(down) == {"sev1": pytest.approx(120.0), "sev2": pytest.approx(30.0)}
    up = q(company, "uptime last-quarter")
    assert up.value == pytest.approx(100 * (1 - 150 / (92 * 1440)))
    may = q(company, "uptime 2026-05")
    assert may.value == pytest.approx(100.0)  # no outage in May: fully up, not "no data"
    assert q(company, "downtime 2026-05").value == pytest.approx(0.0)
    october = q(company, "downtime 2026-10")
    assert october.value == pytest.approx(31 * 1440)  # I4 is still open: all of October
    assert q(company, "uptime 2026-10").value == pytest.approx(0.0)


def test_no_incident_data_is_no_data(db_url):
    fixtures.load(db_url)  # a company without an incidents table
    r = ask("uptime 2026-Q3", as_of=date(2026, 11, 23), url=db_url)
    assert r.value is None


def test_upsell(company):
    opp = q(company, "upsell opportunities last-quarter by kind")
    assert opp.value == 4 and opp.extras["pipeline"] == pytest.approx(140.0)  # O1-O4
    assert groups(opp) == {"cross-sell": 2, "upsell": 2}
    conv = q(company, "upsell_conversion last-quarter")
    # Closed in Q3: O1 won, O2 lost, O3 won, O5 lost (created in Q2)
    assert conv.value == pytest.approx(50.0) and conv.n == 4
    assert conv.extras["won_amount"] == pytest.approx(90.0)
    pen = q(company, "add-on penetration last-quarter by product")
    # Active on Oct 1: k1 {core, analytics}, k2 {core, api}, k4 {core}, k5 {}
    assert groups(pen) == {"core": pytest.approx(75.0), "analytics": pytest.approx(25.0), "api": pytest.approx(25.0)}
    assert pen.value == pytest.approx(100 * 5 / 12)
    # Jul 1: k1 {core}, k2 {core, api}, k3 {core}; products core, api: 4 of 6
    assert pen.previous.value == pytest.approx(100 * 4 / 6)
    # cut by region, the pairs are counted (a row per customer × the 3 products held on Oct 1):
    # EMEA k1 (2 held) + k5 (none): 2 of 6; NA k2 (2) + k4 (1): 3 of 6
    assert groups(q(company, "add-on penetration last-quarter by region")) == {
        "EMEA": pytest.approx(100 * 2 / 6), "NA": pytest.approx(50.0)}


def test_pairs_are_counted_unless_the_item_is_cut():
    """A row per customer weighted by the items seen (``_n``), not one per (customer, item);
    cut or filtered by the item itself, every pair is listed."""
    metric = CATALOGUE["addon_penetration"]
    windows = [(date(2026, 7, 1), date(2026, 10, 1))]

    def sql(**cut) -> str:
        return str(compile_measure(metric, metric.measure, windows, Settings(), **cut))

    for counted in (sql(), sql(dimension="region"), sql(dimensions=("industry", "plan")),
                    sql(filters=[("region", "EMEA")])):
        assert "_n" in counted and "count(DISTINCT" in counted
    for listed in (sql(dimension="product"), sql(filters=[("product", "core")])):
        assert "_n" not in listed


def test_every_kpi_over_any_window(company):
    """A month asked directly equals the same month as a trend bucket, for every KPI."""
    for metric in CATALOGUE.values():
        if not isinstance(metric.measure, Measure) and metric.id not in ("arpa", "clv", "clv_simple", "ltv_cac", "cac_payback"):
            continue  # models (predicted CLV) are tested by their owner
        trend = q(company, f"{metric.id} monthly 2026-Q3")
        assert [p.start for p in trend.series] == [date(2026, 7, 1), date(2026, 8, 1), date(2026, 9, 1)], metric.id
        august = q(company, f"{metric.id} 2026-08")
        if august.value is None:
            assert trend.series[1].value is None, metric.id
        else:
            assert trend.series[1].value == pytest.approx(august.value, rel=1e-6, abs=1e-6), metric.id


def test_a_cut_of_the_customers_keeps_their_rows_before_adding_them_up():
    """Tickets cut by their own column within a region are added up per customer of that
    region only (a semi-join inside), not per every customer before the region is applied."""
    metric = CATALOGUE["net_resolution_rate"]
    windows = [(date(2026, 7, 1), date(2026, 10, 1))]
    sql = str(compile_measure(metric, metric.measure, windows, Settings(), dimension="category",
                              filters=[("region", "NA")]))
    inner = sql[sql.index("FROM (SELECT"):sql.index(") AS p")]
    assert "IN (SELECT customers.customer_id" in inner and "lower(customers.region)" in inner
