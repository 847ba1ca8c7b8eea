"""Revenue, margin and customer economics: CAC, CLV, LTV:CAC, payback (seeds 000, 001, 003).

Profit is revenue (``orders.amount``) minus cost to serve (``costs.amount``), both by the
time they happen. CAC is marketing spend over new customers; ``marketing_spend.channel`` is
matched with ``customers.acquisition_channel``, so both answer ``by channel``.
"""

from __future__ import annotations

from sqlalchemy import Integer, and_, func, literal, select, union_all

from metrics.kpis import customers as customer_kpis
from metrics.kpis import packaged
from metrics.kpis.common import div, money_zero, num
from metrics.spec import Measure, Metric
from storage.schema import customers, marketing_spend

# ---- spend and new customers per acquisition channel ---------------------------------------


def spend_and_new(w):
    """Per window and channel: marketing spend and new customers (one row each, unioned)."""
    ms, c = marketing_spend, customers
    spend = (
        select(
            w.c.w,
            ms.c.channel.label("acquisition_channel"),
            func.sum(ms.c.amount).label("spend"),
            literal(0, Integer).label("new"),
        )
        .select_from(ms.join(w, and_(ms.c.spent_on >= w.c.ds, ms.c.spent_on < w.c.de)))
        .group_by(w.c.w, ms.c.channel)
    )
    new = (
        select(
            w.c.w,
            c.c.acquisition_channel,
            money_zero().label("spend"),
            func.count().label("new"),
        )
        .select_from(c.join(w, and_(c.c.signed_up_at >= w.c.ws, c.c.signed_up_at < w.c.we)))
        .group_by(w.c.w, c.c.acquisition_channel)
    )
    return union_all(spend, new).subquery("spend_and_new")


def _cac(a) -> dict:
    spend, new = a.get("spend"), a.get("new")
    if spend is None and new is None:
        return {"value": None}
    return {"value": div(spend, new), "spend": num(a, "spend"), "new_customers": num(a, "new")}


_PYTHON = [
    Metric(
        id="cac",
        label="Customer acquisition cost",
        group="financial",
        unit="currency",
        formula="marketing spend in the period ÷ new customers in the period; by channel: the channel's spend ÷ "
        "new customers acquired through it (marketing_spend.channel = customers.acquisition_channel)",
        direction="lower",
        synonyms=("acquisition cost", "customer acquisition cost", "cost per acquisition", "cpa", "cost per customer"),
        tables=("marketing_spend", "customers"),
        dimensions=("acquisition_channel",),
        customer_dimensions=False,
        measure=Measure(
            table=spend_and_new,
            join=lambda t, w: t.c.w == w.c.w,
            aggregates={"spend": lambda t, w: func.sum(t.c.spend), "new": lambda t, w: func.sum(t.c.new)},
            finalize=_cac,
            customer_key=None,
        ),
        description="Seed 001: 'CAC = Total Acquisition Marketing Spend / Number of New Customers … "
        "Calculating CAC by channel, campaign, or promo code helps optimize your advertising'.",
        extras_doc={"spend": "marketing spend", "new_customers": "new customers"},
        extras_units={"spend": "currency", "new_customers": "count"},
    ),
]
# Aggregations, ratios and derivations are data (metrics/kpis/data/financial.yml); the Python
# entry above reads a union of tables pre-aggregated per window (CAC).
_DATA = packaged.load("financial.yml", known=[*customer_kpis.METRICS, *_PYTHON])
_ORDER = ("revenue", "mrr", "arr", "arpa", "margin", "gross_margin", "profit_per_customer", "avg_customer_value", "aov",
          "repeat_transactions", "cac", "clv", "clv_simple", "ltv_cac", "cac_payback")
METRICS = [next(m for m in (*_DATA, *_PYTHON) if m.id == mid) for mid in _ORDER]


def profit_rows():
    """Orders and cost lines as one stream (customer_id, at, revenue, cost): the rows of
    ``margin`` (its data entry's union), which the profitability report ranks per customer."""
    table = next(m for m in _DATA if m.id == "margin").measure.table  # type: ignore[union-attr]
    assert callable(table)
    return table()  # type: ignore[call-arg]
