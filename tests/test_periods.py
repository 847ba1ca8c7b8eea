"""Every period form against a pinned today (Monday 2026-11-23), checked by calendar."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from metrics.errors import BadPeriod, TooLarge
from metrics.parser import parse
from metrics.periods import Settings

TODAY = date(2026, 11, 23)  # a Monday
D = date


def period(text: str, settings: Settings | None = None):
    query = parse(f"nps {text}", today=TODAY, settings=settings or Settings())
    return (query.period.start, query.period.end), (query.compare.start, query.compare.end)


@pytest.mark.parametrize(
    "text, current, compare",
    [
        ("today", (D(2026, 11, 23), D(2026, 11, 24)), (D(2026, 11, 22), D(2026, 11, 23))),
        ("yesterday", (D(2026, 11, 22), D(2026, 11, 23)), (D(2026, 11, 21), D(2026, 11, 22))),
        ("last-week", (D(2026, 11, 16), D(2026, 11, 23)), (D(2026, 11, 9), D(2026, 11, 16))),
        ("this month", (D(2026, 11, 1), D(2026, 11, 23)), (D(2026, 10, 1), D(2026, 10, 23))),
        ("mtd", (D(2026, 11, 1), D(2026, 11, 23)), (D(2026, 10, 1), D(2026, 10, 23))),
        ("last month", (D(2026, 10, 1), D(2026, 11, 1)), (D(2026, 9, 1), D(2026, 10, 1))),
        ("this-quarter", (D(2026, 10, 1), D(2026, 11, 23)), (D(2026, 7, 1), D(2026, 8, 23))),
        ("qtd", (D(2026, 10, 1), D(2026, 11, 23)), (D(2026, 7, 1), D(2026, 8, 23))),
        ("last quarter", (D(2026, 7, 1), D(2026, 10, 1)), (D(2026, 4, 1), D(2026, 7, 1))),
        ("this year", (D(2026, 1, 1), D(2026, 11, 23)), (D(2025, 1, 1), D(2025, 11, 23))),
        ("ytd", (D(2026, 1, 1), D(2026, 11, 23)), (D(2025, 1, 1), D(2025, 11, 23))),
        ("last year", (D(2025, 1, 1), D(2026, 1, 1)), (D(2024, 1, 1), D(2025, 1, 1))),
        ("last-7-days", (D(2026, 11, 16), D(2026, 11, 23)), (D(2026, 11, 9), D(2026, 11, 16))),
        ("last 2 weeks", (D(2026, 11, 9), D(2026, 11, 23)), (D(2026, 10, 26), D(2026, 11, 9))),
        ("last-3-months", (D(2026, 8, 1), D(2026, 11, 1)), (D(2026, 5, 1), D(2026, 8, 1))),
        ("last 2 quarters", (D(2026, 4, 1), D(2026, 10, 1)), (D(2025, 10, 1), D(2026, 4, 1))),
        ("2026-Q3", (D(2026, 7, 1), D(2026, 10, 1)), (D(2026, 4, 1), D(2026, 7, 1))),
        ("Q3 2026", (D(2026, 7, 1), D(2026, 10, 1)), (D(2026, 4, 1), D(2026, 7, 1))),
        ("2026-10", (D(2026, 10, 1), D(2026, 11, 1)), (D(2026, 9, 1), D(2026, 10, 1))),
        ("Oct 2026", (D(2026, 10, 1), D(2026, 11, 1)), (D(2026, 9, 1), D(2026, 10, 1))),
        ("october 2025", (D(2025, 10, 1), D(2025, 11, 1)), (D(2025, 9, 1), D(2025, 10, 1))),
        # a year still running ends yesterday and is compared with the same days of 2025
        ("2026", (D(2026, 1, 1), D(2026, 11, 23)), (D(2025, 1, 1), D(2025, 11, 23))),
        ("2025", (D(2025, 1, 1), D(2026, 1, 1)), (D(2024, 1, 1), D(2025, 1, 1))),
        # 90 days inclusive; the comparison is the 90 days before
        ("2026-01-01 to 2026-03-31", (D(2026, 1, 1), D(2026, 4, 1)), (D(2025, 10, 3), D(2026, 1, 1))),
        # 22 complete days (1-22 Nov); the comparison is the 22 days before
        ("since 2026-11-01", (D(2026, 11, 1), D(2026, 11, 23)), (D(2026, 10, 10), D(2026, 11, 1))),
        # no period: the 30 complete days up to today
        ("", (D(2026, 10, 24), D(2026, 11, 23)), (D(2026, 9, 24), D(2026, 10, 24))),
    ],
)
def test_period_forms(text, current, compare):
    assert period(text) == (current, compare)


def test_yoy_and_vs():
    assert period("last quarter yoy")[1] == (D(2025, 7, 1), D(2025, 10, 1))
    assert period("ytd year over year")[1] == (D(2025, 1, 1), D(2025, 11, 23))
    assert period("2026-Q3 vs 2025-Q3")[1] == (D(2025, 7, 1), D(2025, 10, 1))
    assert period("last month vs last year")[1] == (D(2025, 10, 1), D(2025, 11, 1))


def test_fiscal_year_starting_in_april():
    fy = Settings(fiscal_year_start=4)
    # FY2027 runs 2026-04-01 .. 2027-03-31, so "last year" is FY2026
    assert period("last year", fy)[0] == (D(2025, 4, 1), D(2026, 4, 1))
    assert period("2026", fy)[0] == (D(2025, 4, 1), D(2026, 4, 1))
    assert period("2026-Q1", fy)[0] == (D(2025, 4, 1), D(2025, 7, 1))
    assert period("this quarter", fy)[0] == (D(2026, 10, 1), D(2026, 11, 23))
    assert period("ytd", fy)[0] == (D(2026, 4, 1), D(2026, 11, 23))


def test_timezone_moves_utc_bounds():
    berlin = Settings(timezone="Europe/Berlin")
    q = parse("nps 2026-Q3", today=TODAY, settings=berlin)
    start, end = q.period.utc_bounds(berlin)
    assert start == datetime(2026, 6, 30, 22, 0)  # CEST = UTC+2
    assert end == datetime(2026, 9, 30, 22, 0)
    q = parse("nps 2026-01", today=TODAY, settings=berlin)
    assert q.period.utc_bounds(berlin)[0] == datetime(2025, 12, 31, 23, 0)  # CET = UTC+1


@pytest.mark.parametrize("text", ["2026-13", "2026-02-30", "since tomorrow", "since 2027-01-01", "2026-03-05 to 2026-01-01"])
def test_bad_periods_explain_the_forms(text):
    with pytest.raises(BadPeriod) as err:
        parse(f"nps {text}", today=TODAY)
    assert "Periods I understand" in str(err.value)


def test_two_periods_need_vs():
    with pytest.raises(BadPeriod, match="two periods"):
        parse("nps last month last quarter", today=TODAY)


def test_huge_trend_is_refused():
    with pytest.raises(TooLarge, match="points"):
        parse("nps daily 2016-01-01 to 2026-01-01", today=TODAY)
    # monthly over the same ten years is fine
    assert parse("nps monthly 2016-01-01 to 2026-01-01", today=TODAY).grain == "month"


# ---- to-date periods end at the last complete day (issue 11, item 6) -------------------------


def test_to_date_periods_end_yesterday_and_say_which_days():
    wednesday = D(2026, 11, 25)
    q = parse("nps this week", today=wednesday)
    # Mon 23 and Tue 24 Nov (today, the 25th, is partial), vs Mon 16 and Tue 17 Nov
    assert (q.period.start, q.period.end) == (D(2026, 11, 23), D(2026, 11, 25))
    assert (q.compare.start, q.compare.end) == (D(2026, 11, 16), D(2026, 11, 18))
    assert str(q.period) == "this week (2026-11-23 to 2026-11-24)"
    assert q.compare.label == "same days of the previous week, 16–17 Nov 2026"


def test_a_running_year_is_compared_like_for_like():
    q = parse("revenue 2026", today=D(2026, 12, 1))
    assert (q.period.start, q.period.end) == (D(2026, 1, 1), D(2026, 12, 1))
    assert (q.compare.start, q.compare.end) == (D(2025, 1, 1), D(2025, 12, 1))
    assert q.period.label == "2026 to 30 Nov"
    assert q.compare.label == "same days of the previous year, 1 Jan – 30 Nov 2025"
    # the current month by name, too; a past month is left whole
    q = parse("revenue november", today=D(2026, 11, 23))
    assert (q.period.start, q.period.end, q.period.label) == (D(2026, 11, 1), D(2026, 11, 23), "November 2026 to 22 Nov")
    assert parse("revenue october", today=D(2026, 11, 23)).period.end == D(2026, 11, 1)


@pytest.mark.parametrize("text", ["this week", "mtd", "since 2026-11-23"])
def test_a_to_date_period_with_no_complete_day_is_today_so_far_and_says_so(text):
    today = TODAY if text != "mtd" else D(2026, 12, 1)
    q = parse(f"nps {text}", today=today)
    assert (q.period.start, q.period.end) == (today, today + timedelta(days=1))
    assert q.period.label.endswith(f"so far (today, {today:%a %-d %b})")
