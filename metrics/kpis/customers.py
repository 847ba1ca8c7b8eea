"""Customer counts, churn and retention, footprint, tenure and value (seeds 000, 001, 003).

Seed 000 lists seven KPIs for customer insight: size / industry / demographics (the customer
dimensions every customer-linked KPI is cut by), number of customers, products / users /
licences per customer, percentage retained, length of relationship, average value and
profitability per customer (the last two live in :mod:`metrics.kpis.financial`).
"""

from __future__ import annotations

from sqlalchemy import and_, func, or_, select

from metrics.kpis import packaged
from metrics.kpis.common import (
    DAY,
    MONTH_DAYS,
    YEAR_DAYS,
    count_if,
    div,
    when,
    window_days,
    window_seconds,
)
from metrics.spec import Measure, Metric, active_at
from storage.schema import subscriptions
from storage.sqlfuncs import median, seconds_between

# ---- churn: the period's rate, and the same pace per month and per year ---------------------


def churn_rates(a) -> dict | None:
    """Period churn c, and its monthly / yearly equivalents at the same pace:
    1 − (1 − c)^(30.4375 / days) and 1 − (1 − c)^(365.25 / days)."""
    start, churned, days = a.get("active_start"), a.get("churned"), window_days(a)
    if not start or not days:
        return None
    c = min(float(churned or 0) / float(start), 1.0)
    return {
        "period": 100.0 * c,
        "monthly": 100.0 * (1.0 - (1.0 - c) ** (MONTH_DAYS / days)),
        "yearly": 100.0 * (1.0 - (1.0 - c) ** (YEAR_DAYS / days)),
    }


def _churn(key: str):
    def fin(a) -> dict:
        rates = churn_rates(a)
        if rates is None:
            return {"value": None}
        return {
            "value": rates[key],
            **{k: v for k, v in rates.items() if k != key},
            "churned": a.get("churned"),
            "churned_new": a.get("churned_new") or None,  # None: nothing to reconcile, not shown
        }

    return fin


def _churn_measure(key: str) -> Measure:
    """The rate counts customers active at the window's start who churned in it. Customers who
    signed up *and* churned within the window (``churned_new``) left too, but were never in
    the base the rate divides by: they are counted beside it, so that the before-churn report,
    which looks at everyone who left, reconciles (its total = churned + churned_new)."""
    return Measure(
        table="customers",
        join=lambda t, w: and_(t.c.signed_up_at < w.c.we, or_(t.c.churned_at.is_(None), t.c.churned_at >= w.c.ws)),
        aggregates={
            "active_start": lambda t, w: count_if(t.c.signed_up_at < w.c.ws),
            "churned": lambda t, w: count_if(and_(t.c.signed_up_at < w.c.ws, t.c.churned_at < w.c.we)),
            "churned_new": lambda t, w: count_if(and_(t.c.signed_up_at >= w.c.ws, t.c.churned_at < w.c.we)),
            "window_seconds": window_seconds,
        },
        finalize=_churn(key),
        n="active_start",
    )


CHURN_EXTRAS = {
    "monthly": "monthly churn at the same pace",
    "yearly": "yearly churn at the same pace",
    "churned": "customers who churned (of those at the start)",
    "churned_new": "also left, not in the rate: customers who signed up in the period",
}
CHURN_UNITS = {"period": "percent", "monthly": "percent", "yearly": "percent", "churned": "count", "churned_new": "count"}


# ---- footprint: seats and products per customer ----------------------------------------------


def _held_products(w):
    """One row per window, customer and product held at the window's end."""
    s = subscriptions
    return (
        select(w.c.w, s.c.customer_id, func.coalesce(s.c.product, "(none)").label("product"))
        .select_from(s.join(w, active_at(s, "started_at", "ended_at", w.c.we)))
        .distinct()
        .subquery("held_products")
    )


# ---- tenure -----------------------------------------------------------------------------------


def _tenure(a) -> dict:
    n = a.get("active_end")
    if not n:
        return {"value": None}
    churned = a.get("churned") or 0
    med = a.get("median_seconds")
    return {
        "value": float(a["tenure_seconds"] or 0) / n / DAY / MONTH_DAYS,
        "median": None if med is None else float(med) / DAY / MONTH_DAYS,
        "churned_lifetime": div(a.get("churned_seconds"), churned, 1 / DAY / MONTH_DAYS),
        "churned": churned,
    }


def _alive_at_end(t, w):
    return or_(t.c.churned_at.is_(None), t.c.churned_at >= w.c.we)


METRICS = [
    *packaged.load("customers.yml", "customers", "paying_customers"),  # levels, kept as data
    *packaged.load("customers.yml", "new_customers"),  # a count with its paying/free split, kept as data
    Metric(
        id="churn_rate",
        label="Customer churn rate",
        group="retention",
        unit="percent",
        formula="customers active at the period's start who churned within it ÷ customers active at the start × 100",
        direction="lower",
        synonyms=("churn", "customer churn", "attrition", "churn rate", "logo churn"),
        tables=("customers",),
        split="mean",
        measure=_churn_measure("period"),
        description="Seed 003: 'monthly/yearly churn (amount unsubscribe measured as a percentage of "
        "total amount of users)'. Ask for a month or a year, or see the monthly / yearly equivalents.",
        extras_doc=CHURN_EXTRAS,
        extras_units=CHURN_UNITS,
    ),
    *packaged.load("customers.yml", "churned_customers"),  # a plain count, kept as data
    Metric(
        id="monthly_churn",
        label="Monthly churn rate",
        group="retention",
        unit="percent",
        formula="the period's churn rate c as a monthly pace: 1 − (1 − c)^(30.4375 ÷ days in the period), × 100",
        direction="lower",
        synonyms=("monthly churn rate", "churn per month", "monthly customer churn"),
        tables=("customers",),
        measure=_churn_measure("monthly"),
        extras_doc={"period": "churn over the whole period", **CHURN_EXTRAS},
        extras_units=CHURN_UNITS,
    ),
    Metric(
        id="yearly_churn",
        label="Yearly churn rate",
        group="retention",
        unit="percent",
        formula="the period's churn rate c as a yearly pace: 1 − (1 − c)^(365.25 ÷ days in the period), × 100",
        direction="lower",
        synonyms=("annual churn", "annual churn rate", "yearly churn rate", "churn per year"),
        tables=("customers",),
        measure=_churn_measure("yearly"),
        extras_doc={"period": "churn over the whole period", **CHURN_EXTRAS},
        extras_units=CHURN_UNITS,
    ),
    *packaged.load("customers.yml", "retention_rate"),  # counts by window bounds, finalized by name: data
    *packaged.load("customers.yml", "seats_per_customer"),  # a ratio over active subscriptions: data
    Metric(
        id="products_per_customer",
        label="Products per customer",
        group="customers",
        unit="count",
        formula="distinct products held at the period's end (active subscriptions) summed over customers ÷ customers holding any",
        direction="higher",
        synonyms=("products per account", "product footprint", "number of products per customer"),
        tables=("subscriptions",),
        snapshot=True,
        split="mean",
        measure=Measure(
            table=_held_products,
            join=lambda t, w: t.c.w == w.c.w,
            aggregates={
                "held": lambda t, w: func.count(),
                "customers": lambda t, w: func.count(t.c.customer_id.distinct()),
            },
            finalize=lambda a: {"value": div(a.get("held"), a.get("customers"))},
            n="customers",
        ),
        description="Seed 000: 'Number of products / users / licences per customer (now and trend)'.",
    ),
    Metric(
        id="tenure",
        label="Customer tenure",
        group="customers",
        unit="months",
        formula="mean months (of 30.4375 days) from signed_up_at to the period's end over customers active at the end "
        "(median, and the lifetime of customers who churned in the period, as extras)",
        direction="higher",
        synonyms=(
            "customer lifetime", "customer tenure", "length of relationship", "relationship length",
            "customer lifespan", "average tenure", "lifetime",
        ),
        tables=("customers",),
        snapshot=True,
        split="mean",
        measure=Measure(
            table="customers",
            join=lambda t, w: and_(
                t.c.signed_up_at < w.c.we, or_(t.c.churned_at.is_(None), t.c.churned_at >= w.c.ws)
            ),
            aggregates={
                "active_end": lambda t, w: count_if(_alive_at_end(t, w)),
                "tenure_seconds": lambda t, w: func.sum(
                    when(_alive_at_end(t, w), seconds_between(w.c.we, t.c.signed_up_at))
                ),
                "median_seconds": lambda t, w: median(
                    when(_alive_at_end(t, w), seconds_between(w.c.we, t.c.signed_up_at))
                ),
                "churned": lambda t, w: count_if(t.c.churned_at < w.c.we),
                "churned_seconds": lambda t, w: func.sum(
                    when(t.c.churned_at < w.c.we, seconds_between(t.c.churned_at, t.c.signed_up_at))
                ),
            },
            finalize=_tenure,
            n="active_end",
        ),
        description="Seed 000: 'Length of customer relationship with your firm'; seed 001: "
        "'Customer lifetime: the average lifespan of a customer'.",
        extras_doc={
            "median": "median tenure",
            "churned_lifetime": "mean lifetime of customers who churned in the period",
        },
        extras_units={"median": "months", "churned_lifetime": "months"},
    ),
]
