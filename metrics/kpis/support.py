"""Support KPIs (seed 001 benchmarks: first response under 1 hour, resolution under 24 hours)."""

from __future__ import annotations

from sqlalchemy import and_, func

from metrics.kpis import packaged
from metrics.kpis.common import count_if, div
from metrics.spec import Band, Measure, Metric, in_window
from storage.sqlfuncs import hours_between, median

TICKET_DIMS = ("category", "priority", "channel")


def _median_hours(column: str) -> Measure:
    return Measure(
        table="tickets",
        join=in_window("opened_at"),
        time_column="opened_at",
        aggregates={
            "median": lambda t, w: median(hours_between(t.c[column], t.c.opened_at)),
            "n": lambda t, w: func.count(t.c[column]),
        },
        finalize=lambda a: {"value": None if a.get("median") is None else float(a["median"])},  # type: ignore[arg-type]  # not None: checked
        n="n",
    )


METRICS = [
    Metric(
        id="first_response_time",
        label="First response time",
        group="support",
        unit="hours",
        formula="median hours from opened_at to first_response_at, over tickets opened in the period that got a response",
        direction="lower",
        synonyms=("frt", "first response", "response time", "time to first response"),
        tables=("tickets",),
        dimensions=TICKET_DIMS,
        bands=(Band("good (under 1 hour)", None, 1.0), Band("slow (1 hour or more)", 1.0, None, good=False)),
        measure=_median_hours("first_response_at"),
        description="Seed 001: 'Average first response time: How long on average for support to first reply to a new "
        "inquiry. Benchmark is under one hour.' (The median: one slow ticket does not hide a fast team.)",
    ),
    Metric(
        id="resolution_time",
        label="Resolution time",
        group="support",
        unit="hours",
        formula="median hours from opened_at to resolved_at, over tickets opened in the period that are resolved",
        direction="lower",
        synonyms=("time to resolution", "time to close", "ttr", "resolution", "time to resolve"),
        tables=("tickets",),
        dimensions=TICKET_DIMS,
        bands=(Band("good (under 24 hours)", None, 24.0), Band("slow (24 hours or more)", 24.0, None, good=False)),
        measure=_median_hours("resolved_at"),
        description="Seed 001: 'Average resolution time: The typical time for support tickets to reach an outcome. "
        "Look to resolve most inquiries under 24 hours.'",
    ),
    *packaged.load("support.yml"),  # tickets, backlog: plain aggregations, kept as data
    Metric(
        id="net_resolution_rate",
        label="Net resolution rate",
        group="support",
        unit="percent",
        formula="tickets resolved in the period that were neither reopened nor escalated ÷ tickets resolved in the period × 100",
        direction="higher",
        synonyms=("net resolution", "resolution rate", "clean resolution rate", "resolved without reopening"),
        tables=("tickets",),
        dimensions=TICKET_DIMS,
        split="mean",
        bands=(
            Band("low (under 85%): knowledge gaps", None, 85.0, good=False),
            Band("good (85-90%)", 85.0, 90.0),
            Band("very good (90%+)", 90.0, None),
        ),
        measure=Measure(
            table="tickets",
            join=in_window("resolved_at"),
            time_column="resolved_at",
            aggregates={
                "resolved": lambda t, w: func.count(),
                "clean": lambda t, w: count_if(_clean(t)),
            },
            finalize=lambda a: {"value": div(a.get("clean"), a.get("resolved"), 100.0), "resolved": a.get("resolved")},
            n="resolved",
        ),
        description="Seed 001: 'Net Resolution Rate: Percentage of inquiries resolved without reopening or "
        "escalating the ticket. 85-90%+ is good. Low NRR signals knowledge gaps.'",
    ),
    Metric(
        id="one_touch_resolution",
        label="One-touch resolutions",
        group="support",
        unit="count",
        formula="tickets resolved in the period with exactly one agent reply (share of resolved tickets as an extra)",
        direction="higher",
        synonyms=("one touch resolutions", "one-touch resolutions", "one touch", "first contact resolution", "fcr",
                  "single touch resolution"),
        tables=("tickets",),
        dimensions=TICKET_DIMS,
        split="sum",
        measure=Measure(
            table="tickets",
            join=in_window("resolved_at"),
            time_column="resolved_at",
            aggregates={
                "resolved": lambda t, w: func.count(),
                "one_touch": lambda t, w: count_if(t.c.agent_replies == 1),
            },
            finalize=lambda a: {
                "value": a.get("one_touch"),
                "pct": div(a.get("one_touch"), a.get("resolved"), 100.0),
                "resolved": a.get("resolved"),
            },
        ),
        description="Seed 001: 'Number of one-touch resolutions: Tickets solved with just one reply from "
        "support. This demonstrates efficiency.'",
        extras_doc={"pct": "share of tickets resolved in the period", "resolved": "tickets resolved"},
        extras_units={"pct": "percent", "resolved": "count"},
    ),
]


def _clean(t):
    return and_(t.c.reopened.is_not(True), t.c.escalated.is_not(True))
