"""The catalogue from the seeds: every KPI once, with a formula, a direction, synonyms that
resolve to it, the seeds' benchmark bands, and the cuts the issue asks for."""

from __future__ import annotations

from datetime import date

import pytest

from metrics import catalogue, parser
from metrics.catalogue import CATALOGUE, dimensions_for, normalise, resolve
from metrics.kpis import MODULES
from metrics.spec import Derived, Measure

ISSUE_IDS = {
    # customers
    "customers", "seats_per_customer", "products_per_customer", "tenure", "avg_customer_value",
    "profit_per_customer", "gross_margin",
    # satisfaction
    "nps", "csat", "ces", "ppr", "support_csat",
    # retention
    "churn_rate", "monthly_churn", "yearly_churn", "revenue_churn", "nrr", "grr", "new_mrr",
    "expansion_mrr", "contraction_mrr", "churned_mrr", "inactive_customers",
    # financial
    "revenue", "margin", "cac", "clv", "clv_simple", "ltv_cac", "cac_payback",
    # funnel and marketing
    "leads", "mql_rate", "sql_rate", "lead_conversion", "time_to_convert", "new_customers",
    "marketing_roi", "leads_per_dollar",
    # engagement
    "wau", "mau", "core_actions", "core_actions_per_user", "session_time", "feature_adoption",
    # support
    "first_response_time", "resolution_time", "net_resolution_rate", "one_touch_resolution",
    "tickets", "backlog",
    # reliability
    "defects", "defect_resolution_time", "downtime", "uptime",
    # cross/up-sell
    "upsell_opportunities", "upsell_conversion", "addon_penetration",
}

#: The synonyms the issue puts in brackets, and a few more a PM would type.
SYNONYMS = {
    "licences": "seats_per_customer",
    "customer lifetime": "tenure",
    "drr": "nrr",
    "dollar retention": "nrr",
    "net revenue retention": "nrr",
    "acquisition cost": "cac",
    "ltv": "clv",
    "lifetime value": "clv",
    "customer lifetime value": "clv",
    "ltv:cac": "ltv_cac",
    "ltv to cac": "ltv_cac",
    "post-purchase rating": "ppr",
    "gross revenue retention": "grr",
    "revenue churn": "revenue_churn",
    "churn": "churn_rate",
    "annual churn": "yearly_churn",
    "bottom line": "margin",
    "average order value": "aov",
    "purchase frequency": "repeat_transactions",
    "add-on penetration": "addon_penetration",
    "one-touch resolutions": "one_touch_resolution",
    "net resolution rate": "net_resolution_rate",
    "weekly active users": "wau",
    "monthly active users": "mau",
    "time to convert": "time_to_convert",
    "lead to customer conversion": "lead_conversion",
    "marketing roi": "marketing_roi",
    "leads per dollar": "leads_per_dollar",
    "uptime": "uptime",
    "availability": "uptime",
    "time to fix": "defect_resolution_time",
    "win rate": "upsell_conversion",
    "cac payback": "cac_payback",
    "dormant customers": "inactive_customers",
}

UNITS = {"score", "percent", "count", "currency", "hours", "days", "months", "minutes", "ratio", "seconds"}


def test_every_issue_kpi_is_in_the_catalogue_once():
    assert ISSUE_IDS <= set(CATALOGUE)
    ids = [m.id for module in MODULES for m in module.METRICS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("metric_id", sorted(ISSUE_IDS))
def test_each_kpi_is_fully_described(metric_id):
    m = CATALOGUE[metric_id]
    assert m.formula and m.label
    assert m.direction in ("higher", "lower", "neutral")
    assert m.unit in UNITS
    assert m.group in catalogue.GROUPS
    assert m.tables
    if isinstance(m.measure, Derived):
        assert all(i in CATALOGUE for i in m.measure.inputs)
    if m.split == "mean":
        assert isinstance(m.measure, Measure) and m.measure.n, "a mean split needs the weights n"


@pytest.mark.parametrize(("word", "metric_id"), sorted(SYNONYMS.items()))
def test_synonyms_resolve(word, metric_id):
    assert resolve(word).id == metric_id


def test_no_synonym_is_claimed_by_two_kpis():
    owners: dict[str, str] = {}
    for m in CATALOGUE.values():
        for name in (m.id, *m.synonyms):
            key = normalise(name)
            assert owners.setdefault(key, m.id) == m.id, f"{name!r}: {owners[key]} and {m.id}"


@pytest.mark.parametrize(
    ("text", "metric_id"),
    [
        ("cac by channel last-quarter", "cac"),
        ("ltv cac last-quarter", "ltv_cac"),
        ("customer lifetime value ytd", "clv"),
        ("post-purchase rating by touchpoint", "ppr"),
        ("dollar retention last-quarter", "nrr"),
        ("net resolution rate last-month", "net_resolution_rate"),
        ("feature adoption by action", "feature_adoption"),
        ("add-on penetration by product", "addon_penetration"),
        ("leads per dollar by channel", "leads_per_dollar"),
        ("defects by severity last-quarter", "defects"),
    ],
)
def test_questions_parse(text, metric_id):
    q = parser.parse(text, today=date(2026, 11, 23))
    assert q.metric == metric_id


def test_bands_quote_the_seeds():
    def band(metric_id, value):
        return CATALOGUE[metric_id].band_for(value)

    # seed 001: first response under one hour, resolution under 24 hours
    assert band("first_response_time", 0.9).good and not band("first_response_time", 1.0).good
    assert band("resolution_time", 23.9).good and not band("resolution_time", 24.0).good
    # seed 001: CSAT above 80% is good; support CSAT 80%+ is solid
    assert band("csat", 80.0).good and not band("csat", 79.9).good
    assert band("support_csat", 80.0).good and not band("support_csat", 79.9).good
    # seed 001: NPS above 0 good, 50+ excellent, 70+ world-class
    assert not band("nps", -1).good
    assert band("nps", 55).label.startswith("excellent") and band("nps", 72).label.startswith("world-class")
    # seed 001: net resolution rate 85-90%+ is good
    assert not band("net_resolution_rate", 84.9).good
    assert band("net_resolution_rate", 85).good and band("net_resolution_rate", 95).good
    # seed 003: LTV = 3 × CAC minimum; CAC earned back in under 12 months
    assert band("ltv_cac", 3.0).good and not band("ltv_cac", 2.9).good
    assert band("cac_payback", 11.9).good and not band("cac_payback", 12.0).good
    # seed 003: losing money on every dollar of revenue is not a margin
    assert not band("gross_margin", -5).good and band("gross_margin", 5).good


def test_cuts():
    # seed 000: customers by any customer attribute
    assert {"industry", "size_band", "region", "plan", "acquisition_channel"} <= set(dimensions_for(CATALOGUE["customers"]))
    for survey in ("nps", "csat", "ces", "ppr"):
        assert "touchpoint" in dimensions_for(CATALOGUE[survey])
    assert dimensions_for(CATALOGUE["cac"]) == ["acquisition_channel"]
    assert dimensions_for(CATALOGUE["ltv_cac"]) == ["acquisition_channel"]
    assert "severity" in dimensions_for(CATALOGUE["defects"])
    assert "action" in dimensions_for(CATALOGUE["feature_adoption"])
    assert "product" in dimensions_for(CATALOGUE["addon_penetration"])
    assert dimensions_for(CATALOGUE["leads"]) == ["source"]
    assert catalogue.resolve_dimension(CATALOGUE["cac"], "channel") == "acquisition_channel"


def test_per_week_rates_say_so_in_their_formula():
    for metric_id in ("leads", "core_actions"):
        assert "÷ 7" in CATALOGUE[metric_id].formula
    assert "ARPA × gross margin ÷ monthly churn" in CATALOGUE["clv"].formula
    assert "average order value × repeat transactions" in CATALOGUE["clv_simple"].formula
