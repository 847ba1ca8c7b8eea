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
    count_if,
    div,
    when,
)
from metrics.spec import Measure, Metric, active_at
from storage.schema import subscriptions
from storage.sqlfuncs import median, seconds_between

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
    *packaged.load("customers.yml", "churn_rate"),  # churn pace: a named function of metrics/kpis/functions.py
    *packaged.load("customers.yml", "churned_customers"),  # a plain count, kept as data
    *packaged.load("customers.yml", "monthly_churn", "yearly_churn"),
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
