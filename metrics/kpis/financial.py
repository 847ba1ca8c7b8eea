"""Revenue, margin and customer economics: CAC, CLV, LTV:CAC, payback (seeds 000, 001, 003).

Profit is revenue (``orders.amount``) minus cost to serve (``costs.amount``), both by the
time they happen. CAC is marketing spend over new customers; ``marketing_spend.channel`` is
matched with ``customers.acquisition_channel``, so both answer ``by channel``.
"""

from __future__ import annotations

from metrics.kpis import customers as customer_kpis
from metrics.kpis import packaged

# Every financial KPI is data (metrics/kpis/data/financial.yml): aggregations, ratios,
# derivations and unions of tables (profit over orders and costs, CAC over spend and sign-ups).
_DATA = packaged.load("financial.yml", known=customer_kpis.METRICS)
_ORDER = ("revenue", "mrr", "arr", "arpa", "margin", "gross_margin", "profit_per_customer", "avg_customer_value", "aov",
          "repeat_transactions", "cac", "clv", "clv_simple", "ltv_cac", "cac_payback")
METRICS = [next(m for m in _DATA if m.id == mid) for mid in _ORDER]


def profit_rows():
    """Orders and cost lines as one stream (customer_id, at, revenue, cost): the rows of
    ``margin`` (its data entry's union), which the profitability report ranks per customer."""
    table = next(m for m in _DATA if m.id == "margin").measure.table  # type: ignore[union-attr]
    assert callable(table)
    return table()  # type: ignore[call-arg]
