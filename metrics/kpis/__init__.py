"""The catalogue entries, one module per KPI family. Adding a KPI = one entry + its tests."""

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
