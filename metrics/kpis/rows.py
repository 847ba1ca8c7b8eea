"""Named row sources and models a data entry refers to (``rows: {function: outages}``,
``type: model, function: predicted_clv``): the few shapes no entry of the model file states,
each tested by hand (tests/test_outages.py, tests/test_reliability.py, tests/test_kpis_customers.py,
tests/test_clv_*.py).

* ``outages``: incidents of kind outage clipped to each window, the time several overlap
  counted once — the union of intervals, gaps and islands with a window function, not an
  aggregate.
* ``inactivity``: each customer active at the window's end beside their usage events in the
  ``KPI_INACTIVE_DAYS`` before it — a setting, and a left join of two per-window sets.
* ``predicted_clv`` (a model): BG/NBD and Gamma-Gamma fitted over per-customer purchase
  histories (metrics/clv_model.py, metrics/kpis/predictive.py).

A row source builds, per window (``w``), a subquery with a ``w`` column the entry's
``aggregates`` run over.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, or_, select

from metrics.kpis.common import alive_at, inactive_days
from storage.schema import customers, incidents, usage_events
from storage.sqlfuncs import add_days, seconds_between


@dataclass(frozen=True)
class RowSource:
    name: str  # the subquery's name in the SQL
    build: Callable[[Any], Any]  # windows -> subquery with a ``w`` column
    reads: tuple[str, ...]  # the tables it reads (access policy, freshness)


@dataclass(frozen=True)
class Model:
    compute: Callable[..., Mapping[tuple[int, str | None], Mapping[str, Any]]]  # see metrics.spec.Custom
    reads: tuple[str, ...]


def _is_outage(i):
    return or_(i.c.kind.is_(None), func.lower(i.c.kind) == "outage")


def outages(w):
    """Per window: its outages clipped to it, or one empty row when it had none, so that a
    window without outages reads 0 minutes down (100% up) rather than "no data". ``tracked``
    is 0 when the incidents table is empty: then there is nothing to say.

    ``down_seconds`` is the part of an outage no earlier one covers: outages in start order,
    ``covered_to`` the latest end among those before (a window function), so summing it
    counts overlapping time once (the 2026-11-20 demo outages: 421.78 minutes, not 445.02).
    ``length_seconds`` is the outage's own clipped length, for the longest. An outage still
    open runs to the window's end; the time is credited to the outage that started first, so
    a breakdown by severity still adds up to the total."""
    i = incidents
    start = case((i.c.started_at < w.c.ws, w.c.ws), else_=i.c.started_at)
    end = case((or_(i.c.ended_at.is_(None), i.c.ended_at > w.c.we), w.c.we), else_=i.c.ended_at)
    overlaps = and_(
        i.c.started_at < w.c.we, or_(i.c.ended_at.is_(None), i.c.ended_at > w.c.ws), _is_outage(i)
    )
    tracked = select(func.count()).select_from(incidents).scalar_subquery()
    clipped = (
        select(
            w.c.w,
            i.c.incident_id,
            i.c.severity,
            i.c.kind,
            start.label("s"),
            end.label("e"),
            tracked.label("tracked"),
        )
        .select_from(w.outerjoin(i, overlaps))
        .subquery("clipped")
    )
    c = clipped.c
    covered = (
        select(
            clipped,
            func.max(c.e)
            .over(partition_by=c.w, order_by=(c.s, c.incident_id), rows=(None, -1))
            .label("covered_to"),
        )
        .subquery("covered")
    )
    v = covered.c
    down = case(
        (or_(v.covered_to.is_(None), v.covered_to <= v.s), seconds_between(v.e, v.s)),
        (v.covered_to >= v.e, 0.0),
        else_=seconds_between(v.e, v.covered_to),
    )
    return select(
        v.w,
        v.incident_id,
        v.severity,
        v.kind,
        down.label("down_seconds"),
        seconds_between(v.e, v.s).label("length_seconds"),
        v.tracked,
    ).subquery("outages")


def inactivity(w):
    """Per window, each customer active at its end: eligible (a customer for at least the
    inactivity span) and how many usage events they had in that span before the end."""
    days = inactive_days()
    c, ue = customers, usage_events
    recent = (
        select(w.c.w, ue.c.customer_id, func.count().label("events"))
        .select_from(ue.join(w, and_(ue.c.occurred_at >= add_days(w.c.we, -days), ue.c.occurred_at < w.c.we)))
        .group_by(w.c.w, ue.c.customer_id)
        .subquery("recent_usage")
    )
    return (
        select(
            w.c.w,
            c.c.customer_id,
            case((c.c.signed_up_at < add_days(w.c.we, -days), 1), else_=0).label("eligible"),
            func.coalesce(recent.c.events, 0).label("events"),
        )
        .select_from(
            c.join(w, alive_at(c, w.c.we)).outerjoin(
                recent, and_(recent.c.w == w.c.w, recent.c.customer_id == c.c.customer_id)
            )
        )
        .subquery("inactivity")
    )


def _predicted_clv(engine, windows, settings, dimension, filters):
    from metrics.kpis.predictive import (
        predicted,  # NumPy and SciPy load only when a CLV is asked for
    )

    return predicted(engine, windows, settings, dimension, filters)


ROW_SOURCES: dict[str, RowSource] = {
    "outages": RowSource("outages", outages, ("incidents",)),
    "inactivity": RowSource("inactivity", inactivity, ("customers", "usage_events")),
}
MODELS: dict[str, Model] = {
    "predicted_clv": Model(_predicted_clv, ("orders", "customers")),
}
