"""SQL and arithmetic pieces the catalogue entries share (no KPIs here)."""

from __future__ import annotations

import os

from sqlalchemy import ColumnElement, and_, case, cast, func, literal_column, or_

from metrics.spec import Aggs
from storage.schema import MONEY
from storage.sqlfuncs import seconds_between

DAY = 86400.0
#: Days in an average month (365.25 / 12), for "per month" rates and months of tenure.
MONTH_DAYS = 30.4375
YEAR_DAYS = 365.25


def money_zero() -> ColumnElement:
    """0 as money, for the empty side of a union: a float 0.0 there would turn the money
    column into a float on DuckDB and PostgreSQL, and its sums inexact."""
    return cast(literal_column("0"), MONEY)


def count_if(cond) -> ColumnElement:
    return func.sum(case((cond, 1), else_=0))


def when(cond, value) -> ColumnElement:
    """``value`` where ``cond`` holds, else NULL (for AVG, MEDIAN, COUNT over a subset)."""
    return case((cond, value), else_=None)


def alive_at(t, at) -> ColumnElement:
    """A customer signed up before ``at`` and not churned by then."""
    return and_(t.c.signed_up_at < at, or_(t.c.churned_at.is_(None), t.c.churned_at >= at))


def window_seconds(t, w) -> ColumnElement:
    """The window's length in seconds (one value per window; MAX makes it an aggregate)."""
    return func.max(seconds_between(w.c.we, w.c.ws))


def window_days(a: Aggs, key: str = "window_seconds") -> float | None:
    """Whole days in the window (rounded, so a DST change does not make 91.96 days)."""
    secs = a.get(key)
    if not secs:
        return None
    return float(max(round(float(secs) / DAY), 1))


def per_week(count: float | None, a: Aggs) -> float | None:
    """A count over the window as a weekly average: count ÷ (days / 7)."""
    days = window_days(a)
    if count is None or not days:
        return None
    return float(count) * 7.0 / days


def per_month(count: float | None, a: Aggs) -> float | None:
    """A count over the window as a monthly average: count ÷ (days / 30.4375)."""
    days = window_days(a)
    if count is None or not days:
        return None
    return float(count) * MONTH_DAYS / days


def div(num: float | None, den: float | None, scale: float = 1.0) -> float | None:
    if num is None or not den:
        return None
    return scale * float(num) / float(den)


def num(a: Aggs, key: str) -> float:
    v = a.get(key)
    return 0.0 if v is None else float(v)


def inactive_days() -> int:
    """Days without usage after which a customer counts as inactive (``KPI_INACTIVE_DAYS``)."""
    try:
        days = int(os.environ.get("KPI_INACTIVE_DAYS", "30"))
    except ValueError:
        return 30
    return min(max(days, 1), 3650)
