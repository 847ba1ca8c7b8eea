"""Answers that must not mislead (issue 11, items 6, 7, 9, 10): to-date periods, noise,
partial trend buckets and how fresh the data is. Every number is counted by hand from the
small fixtures below; "today" is always injected (``as_of``), never the wall clock."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import insert

from metrics import charts, render
from metrics.api import ask
from storage import database
from storage.schema import orders, survey_responses, tickets
from tests.fake_slack import PNG_MAGIC


def add_tickets(url: str, first: date, last: date, per_day: int = 2) -> None:
    """``per_day`` tickets opened at 10:00 UTC on every day from ``first`` to ``last``."""
    rows, day = [], first
    while day <= last:
        rows += [
            {"ticket_id": f"t{day.isoformat()}-{k}", "opened_at": datetime(day.year, day.month, day.day, 10, k)}
            for k in range(per_day)
        ]
        day += timedelta(days=1)
    with database.get_engine(url).begin() as conn:
        conn.execute(insert(tickets), rows)


# ---- item 10: freshness -----------------------------------------------------------------------


def test_a_period_after_the_data_ends_is_no_data_never_zero(db_url):
    # tickets stop on Fri 20 Nov (the import did not run since); asked on Thu 26 Nov
    add_tickets(db_url, date(2026, 11, 1), date(2026, 11, 20))
    r = ask("tickets last 3 days", as_of=date(2026, 11, 26), url=db_url)  # 23-25 Nov
    assert r.value is None and r.judgement is None
    assert r.data_through == date(2026, 11, 20)
    text = render.text(r)
    assert "*no data*" in text and "No data for this period (data through 20 Nov 2026)." in text
    assert render.to_json(r)["data_through"] == "2026-11-20"


def test_a_period_the_data_covers_in_part_is_noted_and_not_judged(db_url):
    # 15-21 Nov: 6 loaded days x 2 = 12 tickets vs 8-14 Nov: 14. Not a drop: the 21st is missing.
    add_tickets(db_url, date(2026, 11, 1), date(2026, 11, 20))
    r = ask("tickets 2026-11-15 to 2026-11-21", as_of=date(2026, 11, 26), url=db_url)
    assert r.value == 12 and r.previous.value == 14
    assert r.judgement is None
    text = render.text(r)
    assert "Data through 20 Nov 2026: the last day of this period is not loaded yet" in text
    assert "— bad" not in text and "Data through 20 Nov 2026." in text


def test_a_fully_loaded_period_says_how_fresh_it_is(duck_url):
    add_tickets(duck_url, date(2026, 11, 1), date(2026, 11, 25))
    r = ask("tickets 2026-11-15 to 2026-11-21", as_of=date(2026, 11, 26), url=duck_url)
    assert r.value == 14 and r.previous.value == 14 and r.judgement == "flat"
    assert r.notes == [] and "Data through 25 Nov 2026." in render.text(r)


# ---- item 6: to-date periods end at the last complete day ----------------------------------------


def test_this_week_excludes_today(duck_url):
    # 2 tickets a day, loaded through last night (Tue 17 Nov); today is Wed 18 Nov.
    # Mon 16 + Tue 17 = 4 vs Mon 9 + Tue 10 = 4: unchanged (it was "▼ −33.3%": 4 vs 6).
    add_tickets(duck_url, date(2026, 11, 1), date(2026, 11, 17))
    r = ask("tickets this week", as_of=date(2026, 11, 18), url=duck_url)
    assert (r.period.start, r.period.end) == (date(2026, 11, 16), date(2026, 11, 18))
    assert r.value == 4 and r.previous.value == 4 and r.judgement == "flat"
    text = render.text(r)
    assert "this week (2026-11-16 to 2026-11-17)" in text
    assert "vs same days of the previous week, 9–10 Nov 2026 (4)" in text


def test_a_running_year_is_compared_with_the_same_days_of_last_year(duck_url):
    # $100 on the 15th of every month of 2025 and of 2026 to November, and $100 on 30 Nov of both.
    # On 1 Dec 2026: 2026 to 30 Nov = 12 x 100 = 1,200 vs 1 Jan - 30 Nov 2025 = 1,200: unchanged.
    # (Before: all of 2026 vs all of 2025, 1,200 vs 1,300, "bad".)
    rows = [(date(y, m, 15), 100.0) for y in (2025, 2026) for m in range(1, 13) if (y, m) != (2026, 12)]
    rows += [(date(2025, 11, 30), 100.0), (date(2026, 11, 30), 100.0)]
    with database.get_engine(duck_url).begin() as conn:
        conn.execute(insert(orders), [
            {"order_id": f"o{i}", "customer_id": "c1", "ordered_at": datetime(d.year, d.month, d.day, 12), "amount": a}
            for i, (d, a) in enumerate(rows)
        ])
    r = ask("revenue 2026", as_of=date(2026, 12, 1), url=duck_url)
    assert r.value == pytest.approx(1200.0) and r.previous.value == pytest.approx(1200.0)
    assert r.judgement == "flat"
    text = render.text(r)
    assert "Revenue — 2026 to 30 Nov (2026-01-01 to 2026-11-30)" in text
    assert "vs same days of the previous year, 1 Jan – 30 Nov 2025" in text
    # asked against all of 2025: 1,200 over 334 days vs 1,300 over 365 is not like for like
    r = ask("revenue 2026 vs 2025", as_of=date(2026, 12, 1), url=duck_url)
    assert r.value == pytest.approx(1200.0) and r.previous.value == pytest.approx(1300.0)
    assert r.judgement is None
    assert "Not like for like: 1 Jan – 30 Nov 2026 (334 days) vs 1 Jan – 31 Dec 2025 (365 days)." in r.notes


def test_today_so_far_is_not_judged(duck_url):
    # 2 tickets on each day to Wed 18 Nov, the 18th only half loaded (1): 1 vs 2 is no drop
    add_tickets(duck_url, date(2026, 11, 10), date(2026, 11, 17))
    add_tickets(duck_url, date(2026, 11, 18), date(2026, 11, 18), per_day=1)
    r = ask("tickets today", as_of=date(2026, 11, 18), url=duck_url)
    assert r.value == 1 and r.previous.value == 2 and r.judgement is None
    assert "Today (18 Nov) is not over: this is today so far." in r.notes


# ---- item 7: a change inside the noise gets no verdict ---------------------------------------------


def _nps(url: str, day: date, scores: list[int], prefix: str) -> None:
    with database.get_engine(url).begin() as conn:
        conn.execute(insert(survey_responses), [
            {"response_id": f"{prefix}{i}", "responded_at": datetime(day.year, day.month, day.day, 9, i),
             "survey": "nps", "score": s}
            for i, s in enumerate(scores)
        ])


def test_a_change_inside_the_margin_of_error_is_not_called_good(duck_url):
    # October: 6 promoters, 4 detractors -> NPS 20; September: 5 and 5 -> 0. +20 on 10 answers
    # each, far inside the margin of error (±60 or so): no "good", in text, JSON or blocks.
    _nps(duck_url, date(2026, 9, 10), [10] * 5 + [0] * 5, "s")
    _nps(duck_url, date(2026, 10, 10), [10] * 6 + [0] * 4, "o")
    with database.get_engine(duck_url).begin() as conn:  # a CSAT answer: surveys loaded through 31 Oct
        conn.execute(insert(survey_responses), [{"response_id": "x", "responded_at": datetime(2026, 10, 31, 9),
                                                 "survey": "csat", "score": 5}])
    r = ask("nps 2026-10", as_of=date(2026, 11, 26), url=duck_url)
    assert r.value == pytest.approx(20.0) and r.previous.value == pytest.approx(0.0)
    assert r.within_noise and r.judgement is None
    text = render.text(r)
    assert "▲ +20.0 points vs previous month (0.0)\n" in text and "— good" not in text
    assert "it may be noise, so it is not called good or bad" in text
    assert render.to_json(r)["judgement"] is None and render.to_json(r)["within_noise"] is True

    from bot import blocks

    flat = str(blocks.answer_blocks(r))
    assert "good for this KPI" not in flat and "margin of error" in flat
    assert "Data through 31 Oct 2026." in flat


# ---- item 9: partial trend buckets ---------------------------------------------------------------


def test_weekly_trend_marks_partial_weeks(duck_url):
    # 2 tickets a day, 1-17 Nov 2026. Weeks start on Monday; 1 Nov is a Sunday:
    # Sun 1 (1 day, 2 tickets), 2-8 (14), 9-15 (14), Mon 16 - Tue 17 (2 days, 4).
    add_tickets(duck_url, date(2026, 11, 1), date(2026, 11, 17))
    r = ask("tickets weekly 2026-11-01 to 2026-11-17", as_of=date(2026, 11, 18), url=duck_url)
    series = render.to_json(r)["series"]
    assert [(p["start"], p["value"], p["partial"], p["days"]) for p in series] == [
        ("2026-11-01", 2, True, 1),
        ("2026-11-02", 14, False, 7),
        ("2026-11-09", 14, False, 7),
        ("2026-11-16", 4, True, 2),
    ]
    text = render.text(r)
    assert "Trend by week: 14 (2026-11-02) → 14 (2026-11-09), 4 points" in text
    assert "partial weeks, not comparable with full ones: 2026-11-01 (1 day), 2026-11-16 (2 days)" in text
    png = charts.render_png(r)
    assert png is not None and png.startswith(PNG_MAGIC)
    from bot import blocks

    assert "2 partial weeks drawn hollow." in blocks.chart_alt_text(r)
    assert "partial weeks, not comparable" in blocks.trend_text(r)


def test_a_week_the_data_does_not_reach_is_partial_too(duck_url):
    # data through Wed 11 Nov: the week of 9 Nov has 3 loaded days (6 tickets), 16 Nov none
    add_tickets(duck_url, date(2026, 11, 2), date(2026, 11, 11))
    r = ask("tickets weekly 2026-11-02 to 2026-11-22", as_of=date(2026, 11, 23), url=duck_url)
    got = [(p.start, p.value, p.partial, p.days) for p in r.series]
    assert got == [
        (date(2026, 11, 2), 14, False, 7),
        (date(2026, 11, 9), 6, True, 3),
        (date(2026, 11, 16), None, False, 0),
    ]
