"""Lead funnel and engagement KPIs against tests/kpi_fixtures.py, by hand.

Q3 = [Jul 1, Oct 1), 92 days: a weekly rate is count × 7 / 92, a monthly one count × 30.4375 / 92.
"""

from __future__ import annotations

from datetime import date

import pytest

from tests.kpi_fixtures import groups, q

M = 30.4375




def test_leads_per_week_and_potential(company):
    r = q(company, "leads last-quarter by source")
    assert r.value == pytest.approx(5 * 7 / 92)  # L1-L5 created in Q3
    assert r.extras["leads"] == 5
    assert r.extras["avg_potential"] == pytest.approx((1000 + 500 + 3000 + 200) / 4)  # L4 has none
    assert r.previous.value == pytest.approx(1 * 7 / 91)  # L6, in Q2's 91 days
    assert groups(r) == {
        "paid_search": pytest.approx(2 * 7 / 92),
        "events": pytest.approx(2 * 7 / 92),
        "organic": pytest.approx(1 * 7 / 92),
    }
    # MQL dates in Q3: L1, L2, L3, L5, L6; SQL dates: L1, L3, L5, L6
    assert q(company, "mqls last-quarter").value == pytest.approx(5 * 7 / 92)
    assert q(company, "sqls last-quarter").value == pytest.approx(4 * 7 / 92)


def test_weekly_buckets_are_clipped_to_the_period(company):
    r = q(company, "leads weekly 2026-07")
    # July 2026 starts on a Wednesday: the first bucket is Jul 1-5 (5 days) with L1 and L2,
    # the second Jul 6-12 with L3.
    assert r.series[0].start == date(2026, 7, 1)
    assert r.series[0].value == pytest.approx(2 * 7 / 5)
    assert r.series[1].value == pytest.approx(1.0)


def test_funnel_rates(company):
    # Cohort of the 5 leads created in Q3: MQL L1, L2, L3, L5; SQL after MQL L1, L3, L5; customers L1, L3
    assert q(company, "mql rate last-quarter").value == pytest.approx(80.0)
    sql = q(company, "sql_rate last-quarter")
    assert sql.value == pytest.approx(75.0)
    assert sql.extras["lead_to_sql"] == pytest.approx(60.0)
    conv = q(company, "lead conversion last-quarter by source")
    assert conv.value == pytest.approx(40.0)
    assert groups(conv) == {"paid_search": 50.0, "events": 50.0, "organic": 0.0}


def test_time_to_convert(company):
    r = q(company, "time to convert last-quarter by source")
    # Conversions in Q3: L1 50 days (Jul 1 -> Aug 20), L3 4 days, L6 102 days (Jun 20 -> Sep 30)
    assert r.value == pytest.approx(50.0)
    assert r.n == 3
    # MQLs in Q3: L1 2, L2 10, L3 1, L5 2, L6 12 days -> median 2; SQLs: L1 10, L3 3, L5 10, L6 30 -> 10
    assert r.extras["to_mql"] == pytest.approx(2.0)
    assert r.extras["to_sql"] == pytest.approx(10.0)
    assert groups(r)["paid_search"] == pytest.approx((50 + 102) / 2)


def test_active_users(company):
    wau = q(company, "wau last-quarter")
    # Sep 24 - Oct 1: k1/u1, k1/u2, k4/u9 (k1's first October event is outside)
    assert wau.value == 3 and wau.extras["customers"] == 2
    assert groups(q(company, "wau by region last-quarter")) == {"EMEA": 2, "NA": 1}
    # Sep 1 - Oct 1: k1/u1, k1/u2, k2/u1 (another user than k1's u1), k4/u9
    assert q(company, "mau last-quarter").value == 4


def test_core_actions_session_time(company):
    core = q(company, "core actions last-quarter by action")
    assert core.value == pytest.approx(7 * 7 / 92)  # 7 core events in Q3
    assert core.extras["count"] == 7
    assert groups(core) == {"report": pytest.approx(5 * 7 / 92), "dashboard": pytest.approx(2 * 7 / 92)}
    # 7 core events by 7 users active in Q3, over 92 days: per user per month
    assert q(company, "core actions per user last-quarter").value == pytest.approx(7 / 7 * M / 92)
    session = q(company, "session time last-quarter")
    # Q3 sessions: 600, 300, 1200, 60, 900, 120, 300 seconds
    assert session.value == pytest.approx(3480 / 7 / 60)
    assert session.extras["median"] == pytest.approx(5.0)
    assert session.n == 7


def test_feature_adoption(company):
    r = q(company, "feature adoption last-quarter by action")
    # Active in Q3: k1 (report, export), k2 (report, export), k3 (report), k4 (dashboard), k5 (report)
    assert groups(r) == {"report": pytest.approx(80.0), "export": pytest.approx(40.0), "dashboard": pytest.approx(20.0)}
    assert r.value == pytest.approx(100 * 7 / 15)  # 7 of 5 x 3 customer-action pairs: the mean over actions
    assert r.extras == {"pairs": 15}
    # EMEA: k1, k3, k5 -> 4 of 9 pairs; NA: k2, k4 -> 3 of 6 (every action seen counts)
    assert groups(q(company, "feature_adoption by region last-quarter")) == {
        "EMEA": pytest.approx(400 / 9),
        "NA": pytest.approx(50.0),
    }
    assert q(company, "feature_adoption last-quarter where action=export").value == pytest.approx(40.0)
