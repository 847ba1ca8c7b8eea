"""Product reliability (seed 003, '1/ Product Technical Performance Metrics').

'Defects: number of new defects, the average time to solve one (in both cases segment &
qualified by criticality). Down time: frequency, length, impact.'

Downtime counts incidents of kind ``outage`` (or of no kind); a ``degradation`` is not
downtime. An incident is clipped to the window it overlaps; one still open runs to the
window's end. Time when several outages overlap is down time once (the union of the
intervals, gaps-and-islands in SQL): it is credited to the outage that started first, so a
breakdown by severity still adds up to the total.
"""

from __future__ import annotations

from sqlalchemy import and_, case, func, or_, select

from metrics.kpis import packaged
from metrics.kpis.common import num, window_seconds
from metrics.spec import Measure, Metric, Reference
from storage.schema import incidents
from storage.sqlfuncs import seconds_between

INCIDENT_DIMS = ("severity", "kind")


def _is_outage(i):
    return or_(i.c.kind.is_(None), func.lower(i.c.kind) == "outage")


def _outages(w):
    """Per window: its outages clipped to it, or one empty row when it had none, so that a
    window without outages reads 0 minutes down (100% up) rather than "no data". ``tracked``
    is 0 when the incidents table is empty: then there is nothing to say.

    ``down_seconds`` is the part of an outage no earlier one covers: outages in start order,
    ``covered_to`` the latest end among those before (a window function), so summing it
    counts overlapping time once (the 2026-11-20 demo outages: 421.78 minutes, not 445.02).
    ``length_seconds`` is the outage's own clipped length, for the longest."""
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


OUTAGE_AGGS = {
    "down": lambda t, w: func.coalesce(func.sum(t.c.down_seconds), 0.0),
    "incidents": lambda t, w: func.count(t.c.incident_id),
    "longest": lambda t, w: func.max(t.c.length_seconds),
    "tracked": lambda t, w: func.max(t.c.tracked),
    "window_seconds": window_seconds,
}


def _downtime(a) -> dict:
    if not a.get("tracked"):
        return {"value": None}
    longest = a.get("longest")
    return {
        "value": num(a, "down") / 60.0,
        "incidents": a.get("incidents"),
        "longest": None if longest is None else float(longest) / 60.0,
    }


def _uptime(a) -> dict:
    if not a.get("tracked") or not a.get("window_seconds"):
        return {"value": None}
    down = num(a, "down")
    return {
        "value": 100.0 * max(0.0, 1.0 - down / float(a["window_seconds"])),
        "downtime_minutes": down / 60.0,
        "incidents": a.get("incidents"),
    }


def _outage_measure(finalize) -> Measure:
    return Measure(
        table=_outages,
        join=lambda t, w: t.c.w == w.c.w,
        aggregates=OUTAGE_AGGS,
        finalize=finalize,
        customer_key=None,
    )


METRICS = [
    *packaged.load("reliability.yml"),  # defects, defect_resolution_time: data
    Metric(
        id="downtime",
        label="Downtime",
        group="reliability",
        unit="minutes",
        formula="minutes of outage (incidents of kind outage) within the period, overlapping outages counted "
        "once; number of outages and the longest (minutes) as extras",
        direction="lower",
        synonyms=("down time", "outages", "outage minutes", "outage time"),
        tables=("incidents",),
        dimensions=INCIDENT_DIMS,
        customer_dimensions=False,
        split="sum",
        measure=_outage_measure(_downtime),
        description="Seed 003: 'Down time: frecuency, lenght, impact.'",
        extras_doc={"incidents": "outages overlapping the period", "longest": "longest outage in the period"},
        extras_units={"incidents": "count", "longest": "minutes"},
    ),
    Metric(
        id="uptime",
        label="Uptime",
        group="reliability",
        unit="percent",
        formula="100 × (1 − minutes of outage in the period ÷ minutes in the period), overlapping outages "
        "counted once",
        direction="higher",
        synonyms=("availability", "up time", "service availability", "uptime percent"),
        tables=("incidents",),
        dimensions=INCIDENT_DIMS,
        customer_dimensions=False,
        measure=_outage_measure(_uptime),
        reference=Reference(99.9, "objective 99.9%"),
        extras_doc={"downtime_minutes": "downtime", "incidents": "outages"},
        extras_units={"downtime_minutes": "minutes", "incidents": "count"},
    ),
]
