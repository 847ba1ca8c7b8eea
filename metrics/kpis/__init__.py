"""The catalogue: one module per KPI family, each loading its data file (metrics/kpis/data/*.yml).
Adding a KPI = one entry in the model file's format (docs/model.md) + its tests."""

from metrics.kpis import (
    customers,
    engagement,
    financial,
    funnel,
    predictive,
    reliability,
    retention,
    satisfaction,
    support,
    upsell,
)

MODULES = (
    satisfaction, customers, retention, financial, predictive, funnel, engagement, support, reliability, upsell,
)
