"""The named finalizers data entries refer to (metrics/kpis/functions.py), computed by hand,
and the loader's checks on ``aggregates`` / ``finalize`` (a typo is a file:line error)."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import literal, select

from metrics.kpis.functions import FINALIZERS
from metrics.model.document import parse
from metrics.model.load import load_model
from metrics.model.sqlexpr import build
from storage.schema import TABLES


def run(name: str, aggs: dict, **args) -> dict:
    return FINALIZERS[name].fn(aggs, **args)


def test_nps_with_its_margin_of_error():
    # 10 answers: 5 promoters, 2 detractors -> p = .5, d = .2; variance p + d - (p - d)^2 = .61
    out = run("nps", {"n": 10, "promoters": 5, "detractors": 2})
    assert out["value"] == pytest.approx(30.0)
    assert out["moe"] == pytest.approx(100 * 1.96 * math.sqrt(0.061))  # 48.41
    assert (out["promoters_pct"], out["detractors_pct"], out["passives_pct"]) == pytest.approx((50.0, 20.0, 30.0))
    assert run("nps", {"n": 0, "promoters": None, "detractors": None}) == {"value": None}


def test_share_and_mean_with_margin_of_error():
    out = run("share_with_moe", {"n": 4, "hits": 3})  # 3 of 4 satisfied
    assert out["value"] == pytest.approx(75.0)
    assert out["moe"] == pytest.approx(196 * math.sqrt(0.75 * 0.25 / 4))  # 42.44
    # answers 1, 2, 3: mean 2, sample variance ((1+4+9) - 3*4) / 2 = 1
    out = run("mean_with_moe", {"n": 3, "total": 6, "squares": 14})
    assert out["value"] == pytest.approx(2.0)
    assert out["moe"] == pytest.approx(1.96 / math.sqrt(3))
    assert run("mean_with_moe", {"n": 1, "total": 4, "squares": 16}) == {"value": 4.0, "moe": 0.0}
    assert run("share_with_moe", {"n": None, "hits": None}) == {"value": None}


def test_value_ratio_and_weekly_with_extras():
    aggs = {"resolved": 8, "one_touch": 2, "window_seconds": 14 * 86400.0}
    assert run("value", aggs, of="one_touch", show=["resolved"], rates={"pct": ["one_touch", "resolved"]},
               exact=True) == {"value": 2, "resolved": 8, "pct": 25.0}
    assert run("ratio", aggs, num="one_touch", den="resolved", scale=100) == {"value": 25.0}
    assert run("ratio", {"a": 3, "b": 0}, num="a", den="b") == {"value": None}  # no data, never a division by 0
    # 1 of 4 closed opportunities won, for 250.50; no amount won reads 0, not "no data"
    assert run("ratio", {"won": 1, "closed": 4, "amt": 250.5}, num="won", den="closed", scale=100,
               amounts=["amt"]) == {"value": 25.0, "amt": 250.5}
    assert run("ratio", {"won": 0, "closed": 4, "amt": None}, num="won", den="closed", amounts=["amt"])["amt"] == 0.0
    assert run("weekly", aggs, of="resolved", show={"tickets": "resolved"}) == {"value": 4.0, "tickets": 8}
    assert run("value", {"m": None}, of="m") == {"value": None}


def test_mean_of_durations_with_median():
    # 3 sessions of 60, 120 and 360 seconds: mean 180 s = 3 minutes, median 120 s = 2 minutes
    out = run("mean_of", {"sessions": 3, "total": 540, "median": 120}, total="total", n="sessions",
              median="median", divide=60, count_as="sessions")
    assert out == {"value": 3.0, "median": 2.0, "sessions": 3}
    assert run("mean_of", {"n": 0, "total": None}, total="total", n="n") == {"value": None}


def test_retention_from_counts_at_the_window_bounds():
    # 10 active at the start, 12 at the end of which 4 are new: (12 - 4) / 10 = 80%
    assert run("retention", {"active_start": 10, "active_end": 12, "new": 4}) == {"value": 80.0}
    assert run("retention", {"active_start": 0, "active_end": 3, "new": 3}) == {"value": None}


def test_churn_pace_per_month_and_year():
    # 100 customers at the start of a 61-day period, 10 of them churned: c = 10%; 2 more joined and left
    aggs = {"active_start": 100, "churned": 10, "churned_new": 2, "window_seconds": 61 * 86400.0}
    out = run("churn_pace", aggs, pace="monthly")
    assert out["value"] == pytest.approx(100 * (1 - 0.9 ** (30.4375 / 61)))  # 5.11% a month
    assert out["period"] == pytest.approx(10.0)
    assert out["yearly"] == pytest.approx(100 * (1 - 0.9 ** (365.25 / 61)))
    assert (out["churned"], out["churned_new"]) == (10, 2)
    assert run("churn_pace", {**aggs, "churned_new": 0})["churned_new"] is None  # nothing to reconcile
    assert run("churn_pace", {**aggs, "active_start": 0}) == {"value": None}


def test_tenure_in_months():
    # 2 customers active at the end, 30.4375 and 91.3125 days in (1 and 3 months); 1 churned after 60.875 days
    month = 30.4375 * 86400
    aggs = {"active_end": 2, "tenure_seconds": 4 * month, "median_seconds": 2 * month, "churned": 1,
            "churned_seconds": 2 * month}
    out = run("tenure", aggs)
    assert (out["value"], out["median"], out["churned_lifetime"], out["churned"]) == pytest.approx((2.0, 2.0, 2.0, 1))
    assert run("tenure", {**aggs, "churned": 0, "churned_seconds": None})["churned_lifetime"] is None


def test_snippets_become_bound_comparisons():
    t = TABLES["survey_responses"]
    assert str(build("survey = 'csat' and lower(touchpoint) = 'support'", t)) == (
        "survey_responses.survey = :survey_1 AND lower(survey_responses.touchpoint) = :lower_1")
    assert str(build("score * score", t)) == "survey_responses.score * survey_responses.score"
    assert "= 'a and b'" not in str(build("survey = 'a and b'", t))  # the whole value is one bound parameter
    assert str(build("comment is not null", t)) == "survey_responses.comment IS NOT NULL"
    assert str(build("is_core = true", TABLES["usage_events"])) == "usage_events.is_core = true"
    d = TABLES["defects"]
    w = select(literal(0).label("w"), literal(0).label("ws"), literal(0).label("we")).subquery("w")
    assert str(build("resolved_at is null or (resolved_at >= period_end and severity <> 'low')", d, window=w)) == (
        "defects.resolved_at IS NULL OR defects.resolved_at >= w.we AND defects.severity != :severity_1")
    assert "period_end" in str(build("resolved_at >= period_end", d))  # no windows: left as written
    # a value a driver would not bind with the column's type stays text, for the database to read
    assert "'2024-01-01'" in str(build("ordered_at >= '2024-01-01'", TABLES["orders"]))
    assert str(build("amount > 0", TABLES["orders"])) == "orders.amount > :amount_1"  # money binds a number
    o = TABLES["opportunities"]
    assert str(build("coalesce(won_at, lost_at) < period_end", o, window=w)) == (
        "coalesce(opportunities.won_at, opportunities.lost_at) < w.we")
    # whole-day shifts are the portable add_days (a number in the statement); coalesce takes a literal
    from storage.sqlfuncs import add_days

    ue = TABLES["usage_events"]
    shifted = build("occurred_at >= days_before(period_end, 7) and occurred_at < period_end", ue, window=w)
    since = shifted.clauses[0].right
    assert isinstance(since, add_days) and [str(c) for c in since.clauses] == ["w.we", "-7"]
    later = build("signed_up_at < days_after(period_start, 30)", TABLES["customers"], window=w).right
    assert isinstance(later, add_days) and [str(c) for c in later.clauses] == ["w.ws", "30"]
    assert str(build("coalesce(product, '(none)')", TABLES["subscriptions"])) == (
        "coalesce(subscriptions.product, :coalesce_1)")  # '(none)' bound, not text
    assert "days_before" in str(build("occurred_at >= days_before(period_end, 1.5)", ue, window=w))  # whole days only


def test_unknown_names_in_a_snippet():
    from metrics.model.sqlexpr import unknown

    cols = ["mrr_start", "mrr_end"]
    assert unknown("mrr_start > 0 and coalesce(mrr_end, 0) < period_end", cols) is None  # functions, bounds, words
    assert unknown("case when mrr_start is not null then 1 else 0 end", cols) is None
    assert unknown("mrr_strat > 0", cols) == "mrr_strat"
    assert unknown("mrr_end = 'mrr_x'", cols) is None  # quoted text is not a name


BAD = """\
version: 1
metrics:
  good_share:
    type: simple
    source: survey_responses
    time: responded_at
    aggregates:
      n: {agg: count}
      hits: {agg: count, filter: "score >= 4"}
    finalize: share_with_moe
    n: n
  typo:
    type: simple
    source: survey_responses
    aggregates: {n: {agg: count}}
    finalize: share_with_mo
  missing:
    type: simple
    source: survey_responses
    aggregates: {n: {agg: count}}
    finalize: {function: ratio, num: hits, den: n}
  bad_option:
    type: simple
    source: survey_responses
    aggregates: {n: {agg: count}}
    finalize: {function: value, of: n, scale: 2}
  two_clocks:
    type: simple
    source: survey_responses
    time: responded_at
    in_window: "responded_at < period_end"
    aggregates: {n: {agg: count}}
    finalize: {function: value, of: n}
  typo_inside:
    type: simple
    source: survey_responses
    aggregates: {n: {agg: count}, hits: {agg: count, filtr: "score >= 4"}}
    finalize: share_with_moe
  no_of:
    type: simple
    source: survey_responses
    aggregates: {n: {agg: count}}
    finalize: {function: ratio, num: n, per: day}
"""


def test_unknown_function_option_or_aggregate_is_a_file_line_error():
    doc, errors = parse(BAD, "team.yml")
    assert errors == [] and doc is not None
    loaded = load_model([("team.yml", doc)])
    assert sorted(str(e) for e in loaded.errors) == [
        "team.yml:16: metric `typo`: unknown finalize function `share_with_mo` (did you mean `share_with_moe`?) "
        "(one of " + ", ".join(FINALIZERS) + ")",
        "team.yml:20: metric `missing`: finalize `ratio` reads aggregate `hits`, which `aggregates` does not declare",
        "team.yml:26: metric `bad_option`: finalize `value`: unknown option `scale` (one of of, show, rates, exact)",
        "team.yml:31: metric `two_clocks`: give `time` or `in_window`, not both",
        "team.yml:37: metric `typo_inside`: aggregate `hits`: unknown key `filtr` (did you mean `filter`?)",
        "team.yml:43: metric `no_of`: finalize `ratio`: give `den`",
    ]
    assert loaded.team == ("good_share",)
    metric = loaded.metrics["good_share"]
    assert metric.measure.n == "n" and metric.measure.finalize({"n": 4, "hits": 3})["value"] == pytest.approx(75.0)


def test_profit_margin_gross_margin_and_per_customer():
    profit = FINALIZERS["profit"].fn
    # revenue 500, cost to serve 200, over 3 customers: 300 profit, 60%, 100 each
    a = {"revenue": 500, "cost": 200, "customers": 3}
    assert profit(a) == {"value": 300.0, "revenue": 500.0, "cost": 200.0, "profit": 300.0}
    assert profit(a, value="gross_margin")["value"] == pytest.approx(60.0)
    assert profit(a, value="per_customer")["value"] == pytest.approx(100.0)
    # cost but no revenue: a loss of 200, no gross margin (÷ 0); neither: no data
    assert profit({"revenue": None, "cost": 200})["value"] == -200.0
    assert profit({"revenue": None, "cost": 200}, value="gross_margin")["value"] is None
    assert profit({"revenue": None, "cost": None}) == {"value": None}


def test_in_days_turns_seconds_into_days_with_extras():
    # 2 days and 12 hours to convert, 1 day to MQL, no SQL yet, 4 leads converted
    out = run("in_days", {"c": 216000, "m": 86400, "s": None, "n": 4}, of="c", days={"to_mql": "m", "to_sql": "s"},
              show=["n"])
    assert out == {"value": 2.5, "to_mql": 1.0, "to_sql": None, "n": 4}
    assert run("in_days", {"c": None}, of="c") == {"value": None}


def test_acquisition_cost_and_leads_per_spend():
    # 1,500 spent, 6 new customers: 250 each; spend without customers: no CAC, the spend shown
    assert run("acquisition_cost", {"spend": 1500, "new": 6}) == {"value": 250.0, "spend": 1500.0, "new_customers": 6.0}
    assert run("acquisition_cost", {"spend": 1500, "new": 0})["value"] is None
    assert run("acquisition_cost", {"spend": None, "new": None}) == {"value": None}
    # 30 leads for 2,400: 12.5 leads per 1,000, 80 per lead
    out = run("leads_per_spend", {"leads": 30, "spend": 2400})
    assert out == {"value": 12.5, "leads": 30.0, "spend": 2400.0, "cost_per_lead": 80.0}
    assert run("leads_per_spend", {"leads": None, "spend": None}) == {"value": None}


def test_marketing_return_per_dollar_spent():
    # 900 earned from paid channels' customers (1,200 from all) on 300 spent: 3 per dollar
    out = run("marketing_return", {"earned": 900, "spend": 300, "revenue": 1200})
    assert out == {"value": 3.0, "earned": 900.0, "spend": 300.0, "revenue_all_channels": 1200.0}
    assert run("marketing_return", {"earned": 900, "spend": None, "revenue": 1200}) == {"value": None}
    assert run("marketing_return", {"earned": None, "spend": 300, "revenue": None})["earned"] == 0.0


def test_arithmetic_over_aggregates_with_amounts():
    # MRR 200 at the start, 150 of it kept at the end: 100 × 150 ÷ 200 = 75%
    moves = {"kept": 150, "mrr_start": 200, "contraction": 30, "churned": 40, "new": 25}
    out = run("arithmetic", moves, expr="100 * kept / mrr_start", amounts=["new", "churned", "expansion"])
    assert out == {"value": 75.0, "new": 25.0, "churned": 40.0, "expansion": 0.0}
    # (200 − 30 − 40) ÷ 200 = 65%; 25 − 30 − 40 = −45
    assert run("arithmetic", moves, expr="100 * (mrr_start - contraction - churned) / mrr_start")["value"] == 65.0
    assert run("arithmetic", moves, expr="new - contraction - churned")["value"] == -45.0
    # a division by zero or a missing aggregate is no data
    assert run("arithmetic", {"kept": 0, "mrr_start": 0}, expr="100 * kept / mrr_start")["value"] is None
    assert run("arithmetic", {"kept": None, "mrr_start": 5}, expr="kept / mrr_start")["value"] is None


def test_arithmetic_names_only_declared_aggregates():
    doc, _ = parse(
        "version: 1\nmetrics:\n  odd:\n    type: simple\n    source: orders\n    time: ordered_at\n"
        "    aggregates: {total: {agg: sum, expr: amount}}\n    finalize: {function: arithmetic, expr: total / n}\n"
        "  bad:\n    type: simple\n    source: orders\n    time: ordered_at\n"
        "    aggregates: {total: {agg: sum, expr: amount}}\n    finalize: {function: arithmetic, expr: total ** 2}\n",
        "team.yml")
    errors = [str(e) for e in load_model([("team.yml", doc)]).errors]
    assert len(errors) == 2
    assert errors[0].startswith(
        "team.yml:7: metric `odd`: finalize `arithmetic` reads aggregate `n`, which `aggregates` does not declare")
    assert errors[1] == "team.yml:14: metric `bad`: finalize `arithmetic`: expr: `total ** 2`: only + - * / ( ), " \
        "numbers and aggregate names"


def test_downtime_and_uptime_from_outage_seconds():
    # 2 outages, 5,400 s down once overlaps are merged, the longest 3,600 s, in a 30-day window
    aggs = {"down": 5400.0, "incidents": 2, "longest": 3600.0, "tracked": 7, "window_seconds": 30 * 86400.0}
    assert run("downtime", aggs) == {"value": 90.0, "incidents": 2, "longest": 60.0}
    up = run("uptime", aggs)
    assert up["value"] == pytest.approx(100 * (1 - 5400 / 2_592_000))  # 99.7917
    assert (up["downtime_minutes"], up["incidents"]) == (90.0, 2)
    # a window without outages: 0 minutes, 100% up; no incident tracked at all: no data
    quiet = {"down": None, "incidents": 0, "longest": None, "tracked": 7, "window_seconds": 86400.0}
    assert run("downtime", quiet) == {"value": 0.0, "incidents": 0, "longest": None}
    assert run("uptime", quiet)["value"] == 100.0
    assert run("downtime", {**aggs, "tracked": 0}) == {"value": None}
    assert run("uptime", {**aggs, "tracked": 0}) == {"value": None}


def test_inactive_customers_with_their_share(monkeypatch):
    monkeypatch.setenv("KPI_INACTIVE_DAYS", "45")
    # 8 customers active at the end, 2 of them without usage in the 45 days before it
    assert run("inactive", {"active": 8, "inactive": 2}) == {"value": 2.0, "pct": 25.0, "days": 45}
    assert run("inactive", {"active": 0, "inactive": 0}) == {"value": None}
