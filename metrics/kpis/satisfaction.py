"""Survey KPIs (seed 001): NPS, CSAT, CES, post-purchase rating, support CSAT.

All five are data (metrics/kpis/data/satisfaction.yml): the aggregates they need, and the
named function that finalizes them with their margin of error (metrics/kpis/functions.py).
"""

from __future__ import annotations

from metrics.kpis import packaged

METRICS = packaged.load("satisfaction.yml")
