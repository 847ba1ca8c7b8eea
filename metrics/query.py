"""A parsed question: which KPI, over which period, cut how."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from metrics.periods import Period


@dataclass(frozen=True)
class Query:
    metric: str
    period: Period
    compare: Period  # the period the change is measured against
    dimension: str | None = None  # "by industry"
    grain: str | None = None  # "trend"/"weekly": day, week, month, quarter, year
    filters: tuple[tuple[str, str], ...] = ()  # where dimension = value
    as_of: date | None = None
    text: str = ""
    explicit_period: bool = field(default=False, compare=False)
    sort: str | None = None  # "desc": highest first, "asc": lowest first (a sorted breakdown)
    limit: int | None = None  # top/bottom N segments
    readings: tuple[str, ...] = field(default=(), compare=False)  # how words were read ("read `chrun` as churn")
