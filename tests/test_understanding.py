"""Questions as people type them (issue 10): the evaluation sets, filters read from the data's
own values, several cuts, comparisons and periods in words, intent words, misspellings, and
answers that say what they understood. Values are computed by hand from tests/kpi_fixtures.py.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import insert

from metrics import values as values_mod
from metrics.api import ask
from metrics.catalogue import CATALOGUE
from metrics.engine import compile_measure
from metrics.errors import QueryError, UnknownDimension
from metrics.parser import parse
from metrics.periods import Settings
from metrics.render import headline, text, to_json
from metrics.values import ValueIndex, build
from storage import database
from storage.schema import customers
from tests.kpi_fixtures import AS_OF, groups, q

ROOT = Path(__file__).resolve().parent.parent
TODAY = date(2026, 11, 23)
DEV_THRESHOLD = 0.98  # measured 223/225 = 99.1% when set; held-out 120/126 = 95.2% (README)

DEMOISH = ValueIndex(
    {
        "industry": ("Retail", "Financial Services", "Healthcare"),
        "size_band": ("SMB", "Mid-Market", "Enterprise"),
        "region": ("NA", "EMEA", "APAC", "LATAM"),
        "plan": ("Free", "Starter", "Growth", "Enterprise"),
        "acquisition_channel": ("organic", "paid_search"),
        "source": ("organic", "paid_search"),
        "touchpoint": ("onboarding", "support"),
        "priority": ("low", "urgent"),
    }
)


def p(question: str):
    return parse(question, today=TODAY, values=DEMOISH)


def _eval_script():
    if "eval_questions" in sys.modules:
        return sys.modules["eval_questions"]
    spec = importlib.util.spec_from_file_location("eval_questions", ROOT / "scripts" / "eval_questions.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["eval_questions"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# ---- the evaluation sets ------------------------------------------------------------------------


def test_evaluation_sets_are_large_and_split():
    ev = _eval_script()
    dev, held = ev.load("dev"), ev.load("heldout")
    assert len(dev) + len(held) >= 300
    assert 0.3 <= len(held) / (len(dev) + len(held)) <= 0.45
    shared = {e["q"].lower() for e in dev} & {e["q"].lower() for e in held}
    assert not shared - {  # only the issue's own examples are in both (the script scores held-out without them too)
        "chrun last quarter", "revenu last month", "nps by indsutry", "churn last quartr",
        "revenue between 2026-01-01 and 2026-03-31", "nps q3 vs q2", "nps for retial", "churn for smb in emea",
        "churn q3 last year", "give me the churn rate for q3 please", "how many customers did we lose last month",
    }


def test_development_score_holds():
    ev = _eval_script()
    score, outcomes = ev.score("dev", ev.demo_values())
    failures = [f"{o.entry['q']}: {o.why}" for o in outcomes if not o.ok]
    assert score >= DEV_THRESHOLD, "\n".join(failures)


# ---- the value index: from the data, bounded, refreshed -------------------------------------------


def test_value_index_reads_each_dimension_from_the_data(company):
    index = build(database.get_engine(company))
    assert set(index.of("industry")) == {"Retail", "Software"}
    assert index.of("region")[0] == "EMEA"  # most frequent first: 4 EMEA customers, 3 NA
    assert set(index.of("priority")) == {"high", "normal", "low"}
    assert set(index.of("touchpoint")) >= {"product", "support", "onboarding"}
    assert index.find("PAID SEARCH") == [("acquisition_channel", "paid_search"), ("source", "paid_search")]
    assert index.truncated == frozenset()


def test_value_index_is_capped_and_says_so(company):
    index = build(database.get_engine(company), cap=1)
    assert index.of("region") == ("EMEA",)  # EMEA (4) wins over NA (3)
    assert "region" in index.truncated
    assert index.knows("region", "NA") is None  # truncated: cannot tell, so a typed value is kept
    q_ = parse("churn where region=NA", today=TODAY, values=index)
    assert q_.filters == (("region", "NA"),)


def test_value_index_is_rebuilt_after_an_import(duck_url, tmp_path):
    engine = database.get_engine(duck_url)
    assert values_mod.index_for(engine).find("retail") == []
    csv = tmp_path / "customers.csv"
    csv.write_text("customer_id,signed_up_at,industry\nc1,2026-01-01,Retail\n")
    from storage.importer import import_file

    import_file(engine, "customers", str(csv))
    assert values_mod.index_for(engine).find("retail") == [("industry", "Retail")]


def test_value_index_expires(duck_url):
    clock = [0.0]
    cache = values_mod._Cache(clock=lambda: clock[0])
    engine = database.get_engine(duck_url)
    assert cache.get(engine).find("retail") == []
    with database.connect(engine) as conn, conn.begin():  # another process loading data
        conn.execute(insert(customers).values(customer_id="c1", signed_up_at=AS_OF, industry="Retail"))
    assert cache.get(engine).find("retail") == []  # still fresh
    clock[0] += values_mod.TTL + 1
    assert cache.get(engine).find("retail") == [("industry", "Retail")]


# ---- filters in words ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "filters"),
    [
        ("retail nps", {"industry": "Retail"}),
        ("nps for SMB customers this year", {"size_band": "SMB"}),
        ("churn in latam", {"region": "LATAM"}),
        ("cac for paid search", {"acquisition_channel": "paid_search"}),
        ("leads from 'paid search'", {"source": "paid_search"}),
        ("mrr of healthcare customers", {"industry": "Healthcare"}),
        ("csat for the onboarding touchpoint", {"touchpoint": "onboarding"}),
        ("nps where industry = Financial Services", {"industry": "Financial Services"}),
        ('nps where industry="financial services"', {"industry": "Financial Services"}),
        ("FINANCIAL SERVICES nps", {"industry": "Financial Services"}),
        ("churn for SMB in EMEA", {"size_band": "SMB", "region": "EMEA"}),
        ("nps on the enterprise plan", {"plan": "Enterprise"}),
    ],
)
def test_filters_said_in_words(question, filters):
    assert dict(p(question).filters) == filters


def test_an_ambiguous_value_is_answered_with_the_choice_stated():
    q_ = p("enterprise nps")
    assert q_.filters == (("size_band", "Enterprise"),)
    assert any("Enterprise" in r and "plan" in r and "size band" in r for r in q_.readings)


def test_a_near_miss_value_gets_did_you_mean():
    with pytest.raises(QueryError, match="Did you mean `plan=Enterprise`"):
        p("nps where plan=Enterprse")
    with pytest.raises(QueryError, match="Did you mean 'Retail'"):
        p("nps for retial")


def test_two_values_of_one_dimension_are_refused():
    with pytest.raises(QueryError, match="One value per dimension"):
        p("nps for retail and healthcare")


def test_values_only_reach_sql_as_bound_parameters():
    evil = "x'); DROP TABLE customers; --"
    q_ = parse(f'nps where industry="{evil}"', today=TODAY)  # no index: kept as typed
    assert q_.filters == (("industry", evil),)
    stmt = compile_measure(CATALOGUE["nps"], CATALOGUE["nps"].measure, [(q_.period.start, q_.period.end)], Settings(), None, q_.filters)
    sql = str(stmt.compile())
    assert "DROP" not in sql and evil.lower() in stmt.compile().params.values()  # compared lower-cased


# ---- several cuts --------------------------------------------------------------------------------


@pytest.mark.parametrize("question", ["nps by industry and plan", "nps by industry by plan", "revenue by plan and region"])
def test_two_breakdowns_are_refused_not_dropped(question):
    with pytest.raises(QueryError, match="one thing at a time"):
        p(question)


def test_an_unknown_cut_lists_the_valid_ones():
    with pytest.raises(UnknownDimension, match="industry"):
        p("nps by colour")


# ---- comparisons and periods in words ------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "period", "compare"),
    [
        ("revenue last quarter compared to the same quarter last year", ("2026-07-01", "2026-10-01"), ("2025-07-01", "2025-10-01")),
        ("nps q3 vs q2", ("2026-07-01", "2026-10-01"), ("2026-04-01", "2026-07-01")),
        ("churn last month vs the month before", ("2026-10-01", "2026-11-01"), ("2026-09-01", "2026-10-01")),
        ("mrr mom", ("2026-10-01", "2026-11-01"), ("2026-09-01", "2026-10-01")),
        ("churn qoq", ("2026-07-01", "2026-10-01"), ("2026-04-01", "2026-07-01")),
        ("tickets wow", ("2026-11-16", "2026-11-23"), ("2026-11-09", "2026-11-16")),
        ("nps h1 vs h2 last year", ("2026-01-01", "2026-07-01"), ("2025-07-01", "2026-01-01")),
    ],
)
def test_comparisons_in_words(question, period, compare):
    q_ = p(question)
    assert (q_.period.start.isoformat(), q_.period.end.isoformat()) == period
    assert (q_.compare.start.isoformat(), q_.compare.end.isoformat()) == compare


@pytest.mark.parametrize(
    ("question", "start", "end"),
    [
        ("nps h1", "2026-01-01", "2026-07-01"),
        ("revenue between 2026-01-01 and 2026-03-31", "2026-01-01", "2026-04-01"),
        ("churn from jan to mar", "2026-01-01", "2026-04-01"),
        ("nps from april to june 2025", "2025-04-01", "2025-07-01"),
        ("churn Q3 last year", "2025-07-01", "2025-10-01"),
        ("mrr at the end of last quarter", "2026-07-01", "2026-10-01"),
        ("tickets week 47", "2026-11-16", "2026-11-23"),  # ISO week 47 of 2026 starts Monday Nov 16
        ("nps last two weeks", "2026-11-09", "2026-11-23"),
        ("revenue past six months", "2026-05-01", "2026-11-01"),
        ("churn last qtr", "2026-07-01", "2026-10-01"),
    ],
)
def test_periods_in_words(question, start, end):
    q_ = p(question)
    assert (q_.period.start.isoformat(), q_.period.end.isoformat()) == (start, end)


def test_since_a_month_runs_to_date():
    q_ = p("nps since January")
    assert q_.period.start == date(2026, 1, 1) and q_.period.to_date


def test_a_six_month_trend_is_monthly():
    q_ = p("churn trend over the last 6 months")
    assert q_.grain == "month" and q_.period.start == date(2026, 5, 1)
    assert p("nps trend last quarter").grain == "week"


# ---- question forms, intent words, sorted breakdowns ----------------------------------------------


@pytest.mark.parametrize(
    ("question", "metric"),
    [
        ("how many customers did we lose last month", "churned_customers"),
        ("how much mrr did we lose last month", "churned_mrr"),
        ("how long does it take to resolve tickets", "resolution_time"),
        ("average first response time", "first_response_time"),
        ("give me the churn rate for Q3 please", "churn_rate"),
        ("what's our ARR", "arr"),
        ("average revenue per user", "arpa"),
        ("LTV to CAC ratio", "ltv_cac"),
        ("support backlog", "backlog"),
        ("time to close leads", "time_to_convert"),
    ],
)
def test_question_forms(question, metric):
    assert p(question).metric == metric


@pytest.mark.parametrize(
    ("question", "dimension", "sort", "limit"),
    [
        ("which industry has the highest nps", "industry", "desc", None),
        ("top plans by mrr", "plan", "desc", None),
        ("top 3 industries by revenue", "industry", "desc", 3),
        ("bottom two regions by csat", "region", "asc", 2),
        ("which channel has the best cac", "acquisition_channel", "asc", None),  # lower CAC is better
        ("which plan has the worst churn", "plan", "desc", None),  # higher churn is worse
    ],
)
def test_sorted_breakdowns(question, dimension, sort, limit):
    q_ = p(question)
    assert (q_.dimension, q_.sort, q_.limit) == (dimension, sort, limit)


def test_top_n_and_lowest_first_in_the_answer(company):
    # Q3 revenue by region (orders): EMEA k1 300+300+200 + k3 40 = 840; NA k2 100 + k4 480 = 580
    top = q(company, "top 1 regions by revenue last quarter")
    assert groups(top) == {"EMEA": 840.0} and top.breakdown_truncated == 1
    low = q(company, "lowest revenue by region last quarter")
    assert [g.group for g in low.breakdown] == ["NA", "EMEA"]


# ---- misspellings --------------------------------------------------------------------------------


def test_one_clear_match_is_read_and_said():
    q_ = p("chrun last quartr")
    assert q_.metric == "churn_rate" and q_.period.start == date(2026, 7, 1)
    assert q_.readings == ("Read `chrun` as `churn`.", "Read `quartr` as `quarter`.")


def test_a_failed_question_gets_the_closest_understood_one():
    with pytest.raises(QueryError, match="Closest question I understand: `"):
        p("zzchurnometer last quarter")


# ---- the new KPIs, by hand --------------------------------------------------------------------------


def test_churned_customers(company):
    r = q(company, "how many customers did we lose last quarter")
    assert r.metric.id == "churned_customers"
    assert r.value == 1  # k3 churned on Aug 16 (Q3)
    assert r.previous.value == 1  # k6 churned on May 10 (Q2)
    assert groups(q(company, "churned customers by plan last quarter")) == {"Starter": 1}
    assert q(company, "customers we lost this year").value == 2  # k6 (May) and k3 (Aug)
    assert q(company, "churned customers last month").value is None  # nobody churned in October: no rows


def test_arr_is_twelve_times_mrr(company):
    r = q(company, "arr last quarter")
    # MRR on Oct 1: s1 100 + s2 50 + s4 60 + s5 20 + s7 120 = 350 → ARR 4,200
    assert r.value == pytest.approx(4200.0)
    # On Jul 1: s1 100 + s3 80 + s5 20 + s6 40 = 240 → 2,880
    assert r.previous.value == pytest.approx(2880.0)


# ---- every answer says what it understood -------------------------------------------------------------


def test_header_and_json_name_filters_period_and_comparison(company):
    r = ask("retail nps last quarter vs q2", as_of=AS_OF, url=company)
    assert r.query.filters == (("industry", "Retail"),)
    head = headline(r)
    assert "Net Promoter Score" in head and "industry = Retail" in head
    assert "2026-Q3" in head and "vs 2026-Q2" in head
    assert text(r).startswith(f"*{head}*")
    data = json.loads(json.dumps(to_json(r), default=str))
    assert data["query"] == {
        "metric": "nps",
        "period": {"start": "2026-07-01", "end": "2026-10-01", "label": "last quarter, 2026-Q3"},
        "compare": {"start": "2026-04-01", "end": "2026-07-01", "label": "2026-Q2"},
        "dimensions": [],
        "filters": {"industry": "Retail"},
        "grain": None,
        "sort": None,
        "limit": None,
        "readings": [],
        "text": "retail nps last quarter vs q2",
    }


def test_a_reading_is_in_the_answer(company):
    r = ask("chrun last quarter", as_of=AS_OF, url=company)
    assert r.notes[0] == "Read `chrun` as `churn`."
    assert "Read `chrun` as `churn`." in text(r)


def test_chart_titles_name_the_filters(company):
    from metrics import charts

    trend = ask("retail nps trend last quarter", as_of=AS_OF, url=company)
    assert charts.title(trend, "trend") == "Net Promoter Score by week · where industry = Retail — last quarter, 2026-Q3"
    bars = ask("nps by plan where region=EMEA last quarter", as_of=AS_OF, url=company)
    assert charts.title(bars, "bars") == "Net Promoter Score by plan · where region = EMEA — last quarter, 2026-Q3"
    assert charts.render_png(bars)[:4] == b"\x89PNG"


def test_sort_words_inside_a_kpi_name_stay_the_name():
    assert p("bottom line last quarter").metric == "margin"
    assert p("top line by plan").metric == "revenue" and p("top line by plan").sort is None
