"""The first KPIs against a hand-computed fixture, on DuckDB, SQLite and PostgreSQL."""

from __future__ import annotations

import math
from datetime import date

import pytest

from metrics import charts, render
from metrics.api import ask
from tests import fixtures

AS_OF = date(2026, 11, 23)


@pytest.fixture
def company(db_url):
    fixtures.load(db_url)
    return db_url


def q(url, text):
    return ask(text, as_of=AS_OF, url=url)


def test_nps_last_quarter_with_n_margin_and_change(company):
    r = q(company, "nps last-quarter")
    assert r.period.start == date(2026, 7, 1) and r.period.end == date(2026, 10, 1)
    assert r.value == pytest.approx(20.0)
    assert r.n == 10
    # p = .5, d = .3: sqrt((.5 + .3 - .2^2) / 10) * 1.96 * 100
    assert r.moe == pytest.approx(1.96 * 100 * math.sqrt(0.76 / 10))
    assert r.previous.value == pytest.approx(0.0)
    assert r.change == pytest.approx(20.0)
    # +20 is inside the combined margin of error (±54 now, more on Q2 2 answers): no verdict
    assert r.judgement is None and r.within_noise
    assert any("fewer than 30" in n for n in r.notes)
    assert r.band.label.startswith("good")


def test_nps_by_industry(company):
    r = q(company, "what was nps by industry last quarter?")
    groups = {g.group: (g.value, g.n) for g in r.breakdown}
    assert groups["Retail"] == (pytest.approx(60.0), 5)
    assert groups["Software"] == (pytest.approx(-20.0), 5)
    assert [g.group for g in r.breakdown] == ["Retail", "Software"]
    assert r.breakdown[0].previous == pytest.approx(0.0)  # Q2: c1 (Retail) 10, c3 (Retail) 5
    assert r.breakdown[1].previous is None  # no Software answers in Q2


def test_nps_filter(company):
    r = q(company, "nps last-quarter where industry=software")
    assert r.value == pytest.approx(-20.0)
    assert r.n == 5


def test_csat_and_ces(company):
    assert q(company, "csat 2026-Q3").value == pytest.approx(75.0)
    r = q(company, "ces Q3 2026")
    assert r.value == pytest.approx(6.0)
    assert r.n == 3


def test_customer_counts_churn_and_retention(company):
    assert q(company, "customers last-quarter").value == 2  # c1, c2 active on Oct 1
    assert q(company, "new_customers last-quarter").value == 1  # c2
    churn = q(company, "churn last-quarter")
    assert churn.value == pytest.approx(50.0)  # c1, c3 active Jul 1; c3 churned
    assert churn.previous.value == pytest.approx(100 / 3)  # c1, c3, c4 on Apr 1; c4 churned
    assert churn.judgement == "bad"
    assert q(company, "retention_rate last-quarter").value == pytest.approx(50.0)  # (2 - 1) / 2


def test_revenue_split_mrr_and_arpa(company):
    r = q(company, "revenue last-quarter")
    assert r.value == pytest.approx(250.0)
    assert r.extras["recurring"] == pytest.approx(200.0)
    assert r.extras["one_off"] == pytest.approx(50.0)
    assert r.previous.value == pytest.approx(80.0)
    assert r.change_pct == pytest.approx(212.5)
    assert q(company, "mrr last-quarter").value == pytest.approx(160.0)  # s1 100 + s3 60
    assert q(company, "arpa last-quarter").value == pytest.approx(80.0)  # 160 / (c1, c2)


def test_support_times_tickets_backlog(company):
    assert q(company, "first_response_time last-quarter").value == pytest.approx(1.0)  # median .5, 2, 1
    assert q(company, "resolution time last-quarter").value == pytest.approx(14.0)  # median 24, 4
    t = q(company, "tickets last-quarter by category")
    assert t.value == 3
    assert {g.group: g.value for g in t.breakdown} == {"bug": 2, "billing": 1}
    b = q(company, "backlog last-quarter")
    assert b.value == 1 and b.previous.value == 1  # t3 open on Oct 1; t0 open on Jul 1


def test_monthly_trend_has_points_and_previous_series(company):
    r = q(company, "nps monthly 2026-Q3")
    assert [p.start for p in r.series] == [date(2026, 7, 1), date(2026, 8, 1), date(2026, 9, 1)]
    # July: k = 0,3,6,9 -> scores 10, 8, 3, 10 -> 2 promoters, 1 detractor of 4 -> 25
    assert r.series[0].value == pytest.approx(25.0)
    assert len(r.previous_series) == 3


def test_no_data_is_null_not_zero(company):
    r = q(company, "nps 2024-Q1")
    assert r.value is None and r.change is None
    assert "No data" in render.text(r)


def test_render_and_chart(company):
    r = q(company, "nps by industry last-quarter")
    out = render.text(r)
    assert "20.0" in out and "Retail" in out and "Formula:" in out
    png = charts.render_png(r)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    data = render.to_json(r)
    assert data["period"] == {"start": "2026-07-01", "end": "2026-10-01", "label": r.period.label}
    assert data["previous"]["value"] == pytest.approx(0.0)
    assert data["breakdown"][0]["group"] == "Retail"
