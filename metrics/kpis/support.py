"""Support KPIs (seed 001 benchmarks: first response under 1 hour, resolution under 24 hours).

All are data (metrics/kpis/data/support.yml): medians of durations, counts, the backlog level
and the resolution rates, finalized by named functions (metrics/kpis/functions.py).
"""

from __future__ import annotations

from metrics.kpis import packaged

METRICS = packaged.load("support.yml")
