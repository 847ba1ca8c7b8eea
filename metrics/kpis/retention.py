"""Revenue retention, MRR movements and inactive customers (seeds 001, 003).

Seed 003: 'We often talk about CRR (customer retention rate) and DRR (Dollar retention rate)',
and 'amount of users inactive for more than 1 month'. Customer churn and retention rates are
in :mod:`metrics.kpis.customers`.

MRR movements compare each customer's MRR at the window's start with their MRR at its end
(the sum of ``mrr`` over their subscriptions active at that instant):

* new: none at the start, some at the end (new or returning customers);
* expansion: more at the end than at the start (end − start);
* contraction: less, but not none, at the end (start − end);
* churned: some at the start, none at the end (start).

So MRR at the end = MRR at the start + new + expansion − contraction − churned.
"""

from __future__ import annotations

from sqlalchemy import and_, case, func, or_, select

from metrics.kpis.common import alive_at, count_if, div, inactive_days, num, sum_if
from metrics.spec import Measure, Metric, Reference, active_at
from storage.schema import customers, subscriptions, usage_events
from storage.sqlfuncs import add_days


def _mrr_by_customer(w):
    """Per window and customer: MRR at the window's start and at its end."""
    s = subscriptions
    at_start = active_at(s, "started_at", "ended_at", w.c.ws)
    at_end = active_at(s, "started_at", "ended_at", w.c.we)
    overlaps = and_(s.c.started_at < w.c.we, or_(s.c.ended_at.is_(None), s.c.ended_at >= w.c.ws))
    return (
        select(
            w.c.w,
            s.c.customer_id,
            func.sum(case((at_start, s.c.mrr), else_=0)).label("mrr_start"),
            func.sum(case((at_end, s.c.mrr), else_=0)).label("mrr_end"),
        )
        .select_from(s.join(w, overlaps))
        .group_by(w.c.w, s.c.customer_id)
        .subquery("mrr_by_customer")
    )


_STARTED = lambda t: t.c.mrr_start > 0  # noqa: E731 - reads like the definition
_ENDED = lambda t: t.c.mrr_end > 0  # noqa: E731

MOVES = {
    "mrr_start": lambda t, w: func.sum(t.c.mrr_start),
    "mrr_end": lambda t, w: func.sum(t.c.mrr_end),
    "new": lambda t, w: sum_if(and_(~_STARTED(t), _ENDED(t)), t.c.mrr_end),
    "expansion": lambda t, w: sum_if(and_(_STARTED(t), t.c.mrr_end > t.c.mrr_start), t.c.mrr_end - t.c.mrr_start),
    "contraction": lambda t, w: sum_if(and_(_ENDED(t), t.c.mrr_end < t.c.mrr_start), t.c.mrr_start - t.c.mrr_end),
    "churned": lambda t, w: sum_if(and_(_STARTED(t), ~_ENDED(t)), t.c.mrr_start),
    "kept": lambda t, w: sum_if(_STARTED(t), t.c.mrr_end),
}
MOVE_EXTRAS = {
    "mrr_start": "MRR at the period's start",
    "mrr_end": "MRR at the period's end",
    "new": "new MRR",
    "expansion": "expansion MRR",
    "contraction": "contraction MRR",
    "churned": "churned MRR",
}
MOVE_UNITS = dict.fromkeys(MOVE_EXTRAS, "currency")


def _moves(value):
    def fin(a) -> dict:
        if a.get("mrr_start") is None:
            return {"value": None}
        extras = {k: num(a, k) for k in MOVE_EXTRAS}
        return {"value": value(a), **extras}

    return fin


def _moves_measure(value) -> Measure:
    return Measure(
        table=_mrr_by_customer,
        join=lambda t, w: t.c.w == w.c.w,
        aggregates=MOVES,
        finalize=_moves(value),
    )


def _movement(key: str, label: str, direction: str, formula: str, synonyms: tuple[str, ...]) -> Metric:
    return Metric(
        id=f"{key}_mrr",
        label=label,
        group="retention",
        unit="currency",
        formula=formula,
        direction=direction,
        synonyms=synonyms,
        tables=("subscriptions",),
        split="sum",
        measure=_moves_measure(lambda a, k=key: num(a, k)),
        extras_doc=MOVE_EXTRAS,
        extras_units=MOVE_UNITS,
    )


def _nrr(a) -> float | None:
    return div(a.get("kept"), a.get("mrr_start"), 100.0)


def _grr(a) -> float | None:
    start = num(a, "mrr_start")
    return div(start - num(a, "contraction") - num(a, "churned"), start, 100.0)


def _revenue_churn(a) -> float | None:
    return div(num(a, "contraction") + num(a, "churned"), a.get("mrr_start"), 100.0)


# ---- inactive customers -------------------------------------------------------------------


def _inactivity(w):
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


def _inactive(a) -> dict:
    active = a.get("active")
    if not active:
        return {"value": None}
    inactive = num(a, "inactive")
    return {"value": inactive, "pct": 100.0 * inactive / active, "days": inactive_days()}


METRICS = [
    _movement(
        "new", "New MRR", "higher",
        "MRR at the period's end of customers who had none at its start",
        ("new mrr", "new recurring revenue", "new business mrr"),
    ),
    _movement(
        "expansion", "Expansion MRR", "higher",
        "sum of (MRR at the end − MRR at the start) over customers whose MRR grew in the period",
        ("expansion", "expansion mrr", "upgrades mrr", "expansion revenue"),
    ),
    _movement(
        "contraction", "Contraction MRR", "lower",
        "sum of (MRR at the start − MRR at the end) over customers whose MRR shrank but did not end in the period",
        ("contraction", "contraction mrr", "downgrades mrr", "downgrades"),
    ),
    _movement(
        "churned", "Churned MRR", "lower",
        "MRR at the period's start of customers who have none at its end",
        ("churned mrr", "lost mrr", "churn mrr", "cancelled mrr"),
    ),
    Metric(
        id="net_new_mrr",
        label="Net new MRR",
        group="retention",
        unit="currency",
        formula="new + expansion − contraction − churned MRR over the period (= MRR at the end − MRR at the start)",
        direction="higher",
        synonyms=("net new mrr", "mrr movements", "mrr growth", "net mrr change"),
        tables=("subscriptions",),
        split="sum",
        measure=_moves_measure(
            lambda a: num(a, "new") + num(a, "expansion") - num(a, "contraction") - num(a, "churned")
        ),
        extras_doc=MOVE_EXTRAS,
        extras_units=MOVE_UNITS,
    ),
    Metric(
        id="nrr",
        label="Net revenue retention",
        group="retention",
        unit="percent",
        formula="MRR at the period's end of customers who had MRR at its start ÷ their MRR at the start × 100 "
        "(= (start + expansion − contraction − churned) ÷ start)",
        direction="higher",
        synonyms=(
            "drr", "dollar retention", "dollar retention rate", "net revenue retention", "net dollar retention",
            "ndr", "net retention", "revenue retention",
        ),
        tables=("subscriptions",),
        measure=_moves_measure(_nrr),
        reference=Reference(100.0, "100%: as much MRR as at the start"),
        description="Seed 003: 'DRR (Dollar retention rate)': how much of the recurring revenue "
        "customers brought at the start they still bring, upgrades included.",
        extras_doc=MOVE_EXTRAS,
        extras_units=MOVE_UNITS,
    ),
    Metric(
        id="grr",
        label="Gross revenue retention",
        group="retention",
        unit="percent",
        formula="(MRR at the start − contraction − churned MRR) ÷ MRR at the start × 100 (expansion not counted)",
        direction="higher",
        synonyms=("gross revenue retention", "gross dollar retention", "gross retention", "gdr"),
        tables=("subscriptions",),
        measure=_moves_measure(_grr),
        extras_doc=MOVE_EXTRAS,
        extras_units=MOVE_UNITS,
    ),
    Metric(
        id="revenue_churn",
        label="Revenue churn rate",
        group="retention",
        unit="percent",
        formula="(churned + contraction MRR) ÷ MRR at the period's start × 100",
        direction="lower",
        synonyms=("revenue churn", "mrr churn", "mrr churn rate", "dollar churn", "gross mrr churn"),
        tables=("subscriptions",),
        measure=_moves_measure(_revenue_churn),
        extras_doc=MOVE_EXTRAS,
        extras_units=MOVE_UNITS,
    ),
    Metric(
        id="inactive_customers",
        label="Inactive customers",
        group="retention",
        unit="count",
        formula="customers active at the period's end, customers for at least N days, with no usage event in the N days "
        "before the end (N = KPI_INACTIVE_DAYS, default 30)",
        direction="lower",
        synonyms=("inactive", "inactive accounts", "dormant customers", "dormant accounts", "inactive users"),
        tables=("customers", "usage_events"),
        snapshot=True,
        split="sum",
        measure=Measure(
            table=_inactivity,
            join=lambda t, w: t.c.w == w.c.w,
            aggregates={
                "active": lambda t, w: func.count(),
                "inactive": lambda t, w: count_if(and_(t.c.eligible == 1, t.c.events == 0)),
            },
            finalize=_inactive,
            n="active",
        ),
        description="Seed 003: 'amount of users inactive for more than 1 month'.",
        extras_doc={"pct": "share of customers active at the end", "days": "days without use that count as inactive"},
        extras_units={"pct": "percent"},
    ),
]
