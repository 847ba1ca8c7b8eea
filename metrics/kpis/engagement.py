"""Engagement and product usage (seeds 001, 003).

Seed 003: 'Total amount of customers, total amount of core actions per week, traffic …
Weekly active users, amount of core tasks done per user per month (i.e. purchase) … Average
session time'. Seed 001: 'Feature adoption & activation … Usage frequency and depth'.

Every engagement KPI is data (metrics/kpis/data/engagement.yml): active users and core
actions per user over a per-window summary of users (``summarize``), feature adoption over
every (active customer, action) pair (``pairs``).
"""

from __future__ import annotations

from metrics.kpis import packaged

METRICS = packaged.load("engagement.yml")
