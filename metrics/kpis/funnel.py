"""Lead funnel and marketing return (seed 003, sections 3 and 7).

'Amount of new leads per week, avg. potential of each lead. Amount of new marketing qualified
leads (MQL) per week, the amount of new sales qualified leads (SQL) per week … Percentage of
lead that converts to MQL and then to SQL … Amount of leads per $ invested. $ earned per $
invested. Lead to customer conversion. time from the first touchpoint to MQL, SQL, and
customer conversion.'

The counts and rates are data (metrics/kpis/data/funnel.yml); what stays here reads a union of
tables pre-aggregated per window and channel, then per channel again (marketing return: revenue
from each channel's customers, counted only where the channel has spend).
A "per week" value over any period is the weekly average: count ÷ (days in the period ÷ 7).
Conversion rates follow the cohort of leads created in the period (recent cohorts are still
converting); time to convert follows the events (an MQL, SQL or conversion in the period).
Lead ``source`` and marketing channels share their names (``paid_search``, ``events`` …).
"""

from __future__ import annotations

from sqlalchemy import and_, func, select, union_all

from metrics.kpis import packaged
from metrics.kpis.common import div, money_zero, num, when
from metrics.spec import Measure, Metric
from storage.schema import customers, marketing_spend, orders

LEAD_DIMS = ("source",)


# ---- marketing return per channel ---------------------------------------------------------


def _revenue_and_spend(w):
    """Per window and acquisition channel: revenue from its customers and spend on it."""
    o, c, ms = orders, customers, marketing_spend
    revenue = (
        select(
            w.c.w,
            c.c.acquisition_channel,
            func.sum(o.c.amount).label("revenue"),
            money_zero().label("spend"),
        )
        .select_from(
            o.join(c, o.c.customer_id == c.c.customer_id).join(
                w, and_(o.c.ordered_at >= w.c.ws, o.c.ordered_at < w.c.we)
            )
        )
        .group_by(w.c.w, c.c.acquisition_channel)
    )
    spend = (
        select(
            w.c.w,
            ms.c.channel.label("acquisition_channel"),
            money_zero().label("revenue"),
            func.sum(ms.c.amount).label("spend"),
        )
        .select_from(ms.join(w, and_(ms.c.spent_on >= w.c.ds, ms.c.spent_on < w.c.de)))
        .group_by(w.c.w, ms.c.channel)
    )
    both = union_all(revenue, spend).subquery("revenue_spend_rows")
    return (
        select(
            both.c.w,
            both.c.acquisition_channel,
            func.sum(both.c.revenue).label("revenue"),
            func.sum(both.c.spend).label("spend"),
        )
        .group_by(both.c.w, both.c.acquisition_channel)
        .subquery("revenue_and_spend")
    )


def _roi(a) -> dict:
    if a.get("spend") is None:
        return {"value": None}
    return {
        "value": div(a.get("earned"), a.get("spend")),
        "earned": num(a, "earned"),
        "spend": num(a, "spend"),
        "revenue_all_channels": num(a, "revenue"),
    }


_DATA = packaged.load("funnel.yml")  # counts, cohort rates, time to convert, leads per spend: data
METRICS = [
    *(m for m in _DATA if m.id != "leads_per_dollar"),
    Metric(
        id="marketing_roi",
        label="Marketing ROI",
        group="funnel",
        unit="ratio",
        formula="revenue in the period from customers acquired through channels with spend ÷ marketing spend in the "
        "period ($ earned per $ spent); by channel: the channel's customers' revenue ÷ its spend",
        direction="higher",
        synonyms=("roi", "marketing return", "return on marketing", "return on ad spend", "roas",
                  "earned per dollar", "marketing return on investment"),
        tables=("orders", "customers", "marketing_spend"),
        dimensions=("acquisition_channel",),
        customer_dimensions=False,
        measure=Measure(
            table=_revenue_and_spend,
            join=lambda t, w: t.c.w == w.c.w,
            aggregates={
                "earned": lambda t, w: func.sum(when(t.c.spend > 0, t.c.revenue)),
                "spend": lambda t, w: func.sum(t.c.spend),
                "revenue": lambda t, w: func.sum(t.c.revenue),
            },
            finalize=_roi,
            customer_key=None,
        ),
        description="Seed 003: 'The ideal way to calculate ROI is $ earned vs $ invested.' Revenue is "
        "attributed to the channel a customer was acquired through.",
        extras_doc={"earned": "revenue from paid channels' customers", "spend": "marketing spend"},
        extras_units={"earned": "currency", "spend": "currency"},
    ),
    next(m for m in _DATA if m.id == "leads_per_dollar"),  # after marketing_roi, as listed before
]
