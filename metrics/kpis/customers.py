"""Customer counts, churn and retention, footprint, tenure and value (seeds 000, 001, 003).

Seed 000 lists seven KPIs for customer insight: size / industry / demographics (the customer
dimensions every customer-linked KPI is cut by), number of customers, products / users /
licences per customer, percentage retained, length of relationship, average value and
profitability per customer (the last two live in :mod:`metrics.kpis.financial`).

Every KPI here is data (metrics/kpis/data/customers.yml), loaded in the catalogue's order.
"""

from __future__ import annotations

from metrics.kpis import packaged

METRICS = packaged.load(
    "customers.yml", "customers", "paying_customers", "new_customers", "churn_rate", "churned_customers",
    "monthly_churn", "yearly_churn", "retention_rate", "seats_per_customer", "products_per_customer", "tenure",
)
