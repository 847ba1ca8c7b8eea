"""Customer counts, churn and retention, footprint, tenure and value (seeds 000, 001, 003).

Seed 000 lists seven KPIs for customer insight: size / industry / demographics (the customer
dimensions every customer-linked KPI is cut by), number of customers, products / users /
licences per customer, percentage retained, length of relationship, average value and
profitability per customer (the last two live in :mod:`metrics.kpis.financial`).
"""

from __future__ import annotations

from sqlalchemy import func, select

from metrics.kpis import packaged
from metrics.kpis.common import (
    div,
)
from metrics.spec import Measure, Metric, active_at
from storage.schema import subscriptions

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
    *packaged.load("customers.yml", "tenure"),  # two means at the period's end, finalized by name: data
]
