"""Revenue retention, MRR movements and inactive customers (seeds 001, 003).

Every KPI here is data (metrics/kpis/data/retention.yml): the MRR movements over each
customer's MRR at the window's start and end (``summarize``), inactive customers over the
``inactivity`` rows (metrics/kpis/rows.py). Customer churn and retention rates are in
:mod:`metrics.kpis.customers`.
"""

from __future__ import annotations

from metrics.kpis import packaged

METRICS = packaged.load("retention.yml")
