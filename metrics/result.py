"""What an answer holds: small, already aggregated, ready for any front end."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from metrics.periods import Period
from metrics.query import Query
from metrics.spec import Band, Metric


@dataclass
class PeriodValue:
    period: Period
    value: float | None
    n: int | None = None


@dataclass
class Group:
    group: str
    value: float | None
    n: int | None = None
    previous: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Point:
    start: date
    value: float | None
    n: int | None = None
    partial: bool = False  # the bucket is cut short (period edge or end of the data): not a full week
    days: int | None = None  # days the bucket covers


@dataclass
class Result:
    query: Query
    metric: Metric
    period: Period
    value: float | None
    n: int | None = None
    moe: float | None = None
    previous: PeriodValue | None = None
    change: float | None = None
    change_pct: float | None = None
    judgement: str | None = None  # good, bad, flat; None when neutral, inside the noise or not like for like
    within_noise: bool = False  # the change is inside the margin of error: no verdict
    breakdown: list[Group] = field(default_factory=list)
    breakdown_truncated: int = 0  # segments left out of the breakdown
    series: list[Point] = field(default_factory=list)
    previous_series: list[Point] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    band: Band | None = None
    notes: list[str] = field(default_factory=list)
    explanation: str | None = None  # which segment moved the change most (metrics.explain)
    elapsed_ms: float = 0.0
    data_through: date | None = None  # the last day the KPI's sources have data for (None: unknown)
    # every candidate dimension's cells for the two periods, when the breakdown was cut from the
    # explanation's one scan (metrics.engine.run with every_cut); dropped once explained
    cuts: dict[str, Any] | None = field(default=None, repr=False, compare=False)
