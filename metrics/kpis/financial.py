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
from metrics.spec import Band, Measure, Metric, in_window
from storage.schema import costs, customers, marketing_spend, orders

# ---- profit: revenue and cost to serve side by side ----------------------------------------


def profit_rows():
    """Orders and cost lines as one stream: customer_id, at, revenue, cost."""
    zero = money_zero()
    return union_all(
        select(orders.c.customer_id, orders.c.ordered_at.label("at"), orders.c.amount.label("revenue"), zero.label("cost")),
        select(costs.c.customer_id, costs.c.incurred_at.label("at"), zero.label("revenue"), costs.c.amount.label("cost")),
    ).subquery("profit_rows")


PROFIT_AGGS = {
    "revenue": lambda t, w: func.sum(t.c.revenue),
    "cost": lambda t, w: func.sum(t.c.cost),
}


def _profit(value):
    def fin(a) -> dict:
        if a.get("revenue") is None and a.get("cost") is None:
            return {"value": None}
        revenue, cost = num(a, "revenue"), num(a, "cost")
        return {"value": value(revenue, cost, a), "revenue": revenue, "cost": cost, "profit": revenue - cost}

    return fin


def _profit_measure(value, per_customer: bool = False) -> Measure:
    customers = {"customers": lambda t, w: func.count(t.c.customer_id.distinct())} if per_customer else {}
    return Measure(
        table=profit_rows,
        join=in_window("at"),
        time_column="at",
        aggregates={**PROFIT_AGGS, **customers},
        finalize=_profit(value),
        n="customers" if per_customer else None,
    )


PROFIT_EXTRAS = {"revenue": "revenue", "cost": "cost to serve", "profit": "revenue − cost to serve"}
PROFIT_UNITS = {"revenue": "currency", "cost": "currency", "profit": "currency"}
LOSS_BANDS = (
    Band("losing money (below 0)", None, 0, good=False),
    Band("profitable (0 or more)", 0, None),
)


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
        id="margin",
        label="Margin",
        group="financial",
        unit="currency",
        formula="revenue (orders.amount) − cost to serve (costs.amount) in the period",
        direction="higher",
        synonyms=("bottom line", "profit", "net margin", "profits", "earnings"),
        tables=("orders", "costs"),
        bands=LOSS_BANDS,
        split="sum",
        measure=_profit_measure(lambda revenue, cost, a: revenue - cost),
        description="Seed 003: 'the bottom line, or margin. You can make a whole lot of revenues but if you "
        "lose 2$ for every 1$ of revenue, you'll not go very far.'",
        extras_doc=PROFIT_EXTRAS,
        extras_units=PROFIT_UNITS,
    ),
    Metric(
        id="gross_margin",
        label="Gross margin",
        group="financial",
        unit="percent",
        formula="(revenue − cost to serve) ÷ revenue × 100, over orders and cost lines in the period",
        direction="higher",
        synonyms=("gross margin", "margin percent", "margin %", "gross margin %", "gm", "profit margin"),
        tables=("orders", "costs"),
        bands=LOSS_BANDS,
        measure=_profit_measure(lambda revenue, cost, a: div(revenue - cost, revenue, 100.0)),
        extras_doc=PROFIT_EXTRAS,
        extras_units=PROFIT_UNITS,
    ),
    Metric(
        id="profit_per_customer",
        label="Profit per customer",
        group="customers",
        unit="currency",
        formula="(revenue − cost to serve) in the period ÷ customers with revenue or cost in the period",
        direction="higher",
        synonyms=("profitability per customer", "customer profitability", "profit per account", "customer profit"),
        tables=("orders", "costs"),
        bands=LOSS_BANDS,
        split="mean",
        measure=_profit_measure(lambda revenue, cost, a: div(revenue - cost, a.get("customers")), per_customer=True),
        description="Seed 000: 'Profitability per customer … Helps you identify which are your 'good' and "
        "'bad' customers.' The ranked list of the most and least profitable customers is the "
        "`profitability` report.",
        extras_doc=PROFIT_EXTRAS,
        extras_units=PROFIT_UNITS,
    ),
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
# entries above read a union of tables (profit, CAC).
_DATA = packaged.load("financial.yml", known=[*customer_kpis.METRICS, *_PYTHON])
_ORDER = ("revenue", "mrr", "arr", "arpa", "margin", "gross_margin", "profit_per_customer", "avg_customer_value", "aov",
          "repeat_transactions", "cac", "clv", "clv_simple", "ltv_cac", "cac_payback")
METRICS = [next(m for m in (*_DATA, *_PYTHON) if m.id == mid) for mid in _ORDER]
