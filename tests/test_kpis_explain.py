"""Segment attribution (metrics/explain.py) on a fixture where the answer is known.

tests/kpi_fixtures_explain.py: four customers, four NPS answers each per quarter.

    Q2 (before)              Q3 (now)
    x1 Ent EMEA 10 10 10 10  3 4 5 10   <- the drop
    x2 Ent NA   10 10  8  8  same
    x3 SMB EMEA  9  8  8  8  9 8 8 6    <- a little
    x4 SMB NA    9  9  6  8  same

NPS Q2: 9 promoters, 1 detractor of 16 = 50. Q3: 6 promoters, 5 detractors of 16 = 6.25. Change −43.75.
Shares stay 50/50, so contribution = ½ · value_now − ½ · value_before:
    region: EMEA 62.5 → −25: −43.75 (all of it); NA 37.5 → 37.5: 0
    size:   Enterprise 75 → 0: −37.5;            SMB 25 → 12.5: −6.25
Within EMEA by size (shares of all 16 answers, ¼ each): Enterprise 100 → −50: ¼ · (−50 − 50) −
¼ · (100 − 50) = −37.5, i.e. 86% of the drop, over the 75% needed to name the pair.
"""

from __future__ import annotations

from datetime import date

import pytest

from metrics import explain
from metrics.api import ask
from metrics.catalogue import CATALOGUE
from metrics.engine import Cell
from metrics.periods import Settings
from storage import database
from tests import kpi_fixtures, kpi_fixtures_explain

AS_OF = date(2026, 11, 23)


@pytest.fixture
def dip(db_url):
    kpi_fixtures_explain.load(db_url)
    return db_url


def why(url, text):
    result = ask(text, as_of=AS_OF, url=url)
    return result, explain.explain(result, database.get_engine(url), Settings())


def test_nps_drop_is_emea_enterprise(dip):
    result, text = why(dip, "nps last-quarter")
    assert result.value == pytest.approx(6.25) and result.previous.value == pytest.approx(50.0)
    found = explain.find(result, database.get_engine(dip), Settings())
    assert (found.dimension, found.segment) == ("size_band", "Enterprise")
    assert (found.parent.dimension, found.parent.segment) == ("region", "EMEA")
    assert found.parent.amount == pytest.approx(-43.75)
    assert found.amount == pytest.approx(-37.5)
    assert text == (
        "Net Promoter Score fell 43.8 points vs previous quarter; EMEA region, Enterprise size band "
        "explains 86% of the drop (Net Promoter Score there went from 100.0 to -50.0)."
    )


def test_within_a_filter(dip):
    # Only EMEA (x1, x3): NPS 62.5 -> -25; Enterprise (x1) 100 -> -50 with half the answers:
    # ½ · (−50 − 62.5) − ½ · (100 − 62.5) = −75 of −87.5: 86%
    _, text = why(dip, "nps last-quarter where region=EMEA")
    assert text.startswith("Net Promoter Score fell 87.5 points")
    assert "Enterprise size band explains 86% of the drop" in text


def test_counts_split_by_their_own_change(dip):
    # Tickets: Q2 x1 bug, x2 billing; Q3 x1 5 bugs, x2 billing, x3 bug: 2 -> 7.
    # category: bug 1 -> 6 (+5), billing 1 -> 1; region: EMEA 1 -> 6 (+5). Bug tickets all come
    # from EMEA customers, so "bug / EMEA" is the same set of tickets and is not named.
    _, text = why(dip, "tickets last-quarter")
    assert text == (
        "Tickets opened rose 5 vs previous quarter; bug category explains 100% of the rise "
        "(Tickets opened there went from 1 to 6)."
    )


def test_nothing_to_explain(dip):
    assert why(dip, "customers last-quarter")[1] is None  # 4 and 4: no change
    assert why(dip, "nps 2024-Q1")[1] is None  # no data
    assert why(dip, "first_response_time last-quarter")[1] is None  # a median does not split


def test_derived_kpis_do_not_split(db_url):
    kpi_fixtures.load(db_url)
    result, text = why(db_url, "arpa last-quarter")
    assert result.change and text is None


def test_contributions_add_up_to_the_change():
    metric = CATALOGUE["csat"]
    grouped = {
        (0, "a"): Cell(80.0, n=30), (0, "b"): Cell(50.0, n=10),
        (1, "a"): Cell(90.0, n=10), (1, "b"): Cell(60.0, n=10),
    }
    # now (80·30 + 50·10) / 40 = 72.5; before 75: change −2.5
    parts = explain.contributions(metric, "plan", grouped, baseline=75.0)
    assert sum(p.amount for p in parts) == pytest.approx(72.5 - 75.0)
    a = next(p for p in parts if p.segment == "a")
    assert a.amount == pytest.approx(0.75 * (80 - 75) - 0.5 * (90 - 75))


def test_a_segment_that_moved_more_than_the_whole_is_said_in_two_movements(dip):
    # issue 11, item 8: tickets rose 5 (2 -> 7); suppose EMEA rose 8 (1 -> 9): then the rest
    # fell 3 (5 - 8). Never "explains 160% of the rise".
    result, _ = why(dip, "tickets last-quarter")
    found = explain.Contribution("region", "EMEA", 8.0, 9.0, 1.0)
    assert explain.sentence(result, found) == (
        "Tickets opened rose 5 vs previous quarter: EMEA region rose by 8 (Tickets opened there went "
        "from 1 to 9) while the rest fell by 3."
    )
    # a mean KPI: NPS fell 43.75 (50 -> 6.25); Enterprise pulled it down by 60, the rest up by 16.25
    result, _ = why(dip, "nps last-quarter")
    found = explain.Contribution("size_band", "Enterprise", -60.0, -50.0, 100.0)
    found.parent = explain.Contribution("plan", "Enterprise", -55.0, None, None)
    assert explain.sentence(result, found) == (
        "Net Promoter Score fell 43.8 points vs previous quarter: Enterprise plan, Enterprise size band "
        "pulled it down by 60.0 points (Net Promoter Score there went from 100.0 to -50.0) while the "
        "rest pulled it up by 16.2 points."
    )
    assert explain.segment_name("acquisition_channel", "(not set)") == "no acquisition channel set"
