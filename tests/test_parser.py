"""The query language: any order, filler, hyphens, and clear errors."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.errors import QueryError, UnknownDimension, UnknownMetric
from metrics.parser import parse

TODAY = date(2026, 11, 23)


def p(text):
    return parse(text, today=TODAY)


@pytest.mark.parametrize(
    "text",
    [
        "nps by industry last-quarter",
        "nps by industry last quarter",
        "last quarter nps by industry",
        "by industry, what was our NPS last quarter?",
        "show me the net promoter score by industry for last-quarter please",
        "Net-Promoter-Score last quarter by Industry",
    ],
)
def test_same_question_many_ways(text):
    q = p(text)
    assert (q.metric, q.dimension, q.period.start, q.period.end) == ("nps", "industry", date(2026, 7, 1), date(2026, 10, 1))


def test_synonyms_and_dimension_aliases():
    assert p("churn last month").metric == "churn_rate"
    assert p("time to close").metric == "resolution_time"
    assert p("frt by size").dimension == "size_band"
    assert p("tickets by channel").dimension == "channel"  # the ticket's own channel
    assert p("customers by channel").dimension == "acquisition_channel"
    assert p("nps by size band").dimension == "size_band"


def test_trend_words():
    assert p("nps trend").grain == "month"
    assert p("nps weekly last quarter").grain == "week"
    assert p("nps by month this year").grain == "month"
    assert p("csat daily last-7-days").grain == "day"
    assert p("nps trend last month").grain == "day"  # short period: automatic grain
    assert p("nps last quarter").grain is None


def test_filters_keep_original_spelling():
    q = p("nps where industry=Retail last quarter")
    assert q.filters == (("industry", "Retail"),)
    q = p('tickets where plan = "Enterprise" by priority')
    assert q.filters == (("plan", "Enterprise"),) and q.dimension == "priority"


def test_unknown_metric_suggests():
    with pytest.raises(UnknownMetric) as err:
        p("nsp last quarter")
    assert "did you mean `nps`" in str(err.value).lower()


def test_unknown_dimension_lists_valid_ones():
    with pytest.raises(UnknownDimension) as err:
        p("nps by colour")
    message = str(err.value)
    assert "touchpoint" in message and "industry" in message


def test_unknown_filter_dimension():
    with pytest.raises(UnknownDimension):
        p("nps where flavour=vanilla")


def test_leftover_words_are_reported():
    with pytest.raises(QueryError, match="zorblat"):
        p("nps last quarter zorblat")
    q = p("nps last quater")  # one clear close word: read as it, and said so
    assert q.period.start == date(2026, 7, 1) and q.readings == ("Read `quater` as `quarter`.",)


def test_empty_and_filler_only():
    with pytest.raises(QueryError, match="Which KPI"):
        p("what is the ?")


def test_long_text_refused():
    with pytest.raises(QueryError, match="under"):
        p("nps " * 40_000)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_no_text_crashes_the_parser(text):
    try:
        p(text)
    except QueryError:
        pass


WORDS = ["nps", "by", "industry", "last", "quarter", "vs", "yoy", "trend", "where", "=", "2026-Q3",
         "since", "to", "2026-01-01", "weekly", "-", "this", "month", "churn", "Retail", "plan=x", "7", "days"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=8))
def test_no_word_salad_crashes_the_parser(words):
    try:
        p(" ".join(words))
    except QueryError:
        pass
