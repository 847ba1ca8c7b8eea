"""Engagement and product usage (seeds 001, 003).

Seed 003: 'Total amount of customers, total amount of core actions per week, traffic …
Weekly active users, amount of core tasks done per user per month (i.e. purchase) … Average
session time'. Seed 001: 'Feature adoption & activation … Usage frequency and depth'.

A user is (customer_id, user_id): user ids need only be unique within their customer.
Active users are counted from a per-window table of users (grouped in the database).
"""

from __future__ import annotations

from sqlalchemy import Integer, and_, case, func, literal, select, true, union_all

from metrics.kpis import packaged
from metrics.kpis.common import div, per_month, window_seconds
from metrics.spec import Measure, Metric
from storage.schema import usage_events
from storage.sqlfuncs import add_days


def _users(days: int | None):
    """Per window, one row per user (customer_id, user_id) with an event in it — or, with
    ``days``, in the ``days`` before its end — and their core events. Grouping on the two
    columns is cheaper than counting distinct concatenated keys."""

    def core(ue):
        return func.sum(case((ue.c.is_core == true(), 1), else_=0)).label("core")

    def in_windows(w, bucket):
        # each event tagged with its window by a pruned scan, then grouped: no range join
        ue = bucket(usage_events, "occurred_at")
        return (
            select(ue.c._w.label("w"), ue.c.customer_id, ue.c.user_id, core(ue))
            .where(ue.c._w.is_not(None))
            .group_by(ue.c._w, ue.c.customer_id, ue.c.user_id)
            .subquery("active_users")
        )

    def before_end(w):
        ue = usage_events
        inside = and_(ue.c.occurred_at >= add_days(w.c.we, -days), ue.c.occurred_at < w.c.we)
        return (
            select(w.c.w, ue.c.customer_id, ue.c.user_id, core(ue))
            .select_from(ue.join(w, inside))
            .group_by(w.c.w, ue.c.customer_id, ue.c.user_id)
            .subquery("active_users")
        )

    return in_windows if days is None else before_end


def _active_users(days: int) -> Measure:
    """Distinct users with an event in the ``days`` before the window's end."""
    return Measure(
        table=_users(days),
        join=lambda t, w: t.c.w == w.c.w,
        aggregates={
            "users": lambda t, w: func.count(),
            "customers": lambda t, w: func.count(t.c.customer_id.distinct()),
        },
        finalize=lambda a: {"value": a.get("users"), "customers": a.get("customers")},
    )


def _adoption(w, bucket):
    """Per window, two kinds of rows: every (active customer, action seen) pair with used = 0,
    and every pair that happened with used = 1. Grouped by action, the first count is all
    active customers (the denominator) and the second those who used it; no join on the pairs."""
    ue = bucket(usage_events, "occurred_at")
    used = (
        select(ue.c._w.label("w"), ue.c.customer_id, ue.c.action)
        .where(ue.c._w.is_not(None))
        .group_by(ue.c._w, ue.c.customer_id, ue.c.action)
        .cte("used_actions")
    )
    active = select(used.c.w, used.c.customer_id).group_by(used.c.w, used.c.customer_id).subquery("active_customers")
    actions = select(used.c.w, used.c.action).group_by(used.c.w, used.c.action).subquery("seen_actions")
    every_pair = select(active.c.w, active.c.customer_id, actions.c.action, literal(0, Integer).label("used")).select_from(
        active.join(actions, actions.c.w == active.c.w)
    )
    pairs_used = select(used.c.w, used.c.customer_id, used.c.action, literal(1, Integer).label("used"))
    return union_all(every_pair, pairs_used).subquery("adoption")


METRICS = [
    Metric(
        id="wau",
        label="Weekly active users",
        group="engagement",
        unit="count",
        formula="distinct users with any usage event in the 7 days before the period's end",
        direction="higher",
        synonyms=("weekly active users", "weekly actives", "active users per week"),
        tables=("usage_events",),
        snapshot=True,
        split="sum",
        measure=_active_users(7),
        description="Seed 003: 'Engagement / Existing customers: Weekly active users'.",
        extras_doc={"customers": "distinct customers of those users"},
    ),
    Metric(
        id="mau",
        label="Monthly active users",
        group="engagement",
        unit="count",
        formula="distinct users with any usage event in the 30 days before the period's end",
        direction="higher",
        synonyms=("monthly active users", "monthly actives", "active users per month"),
        tables=("usage_events",),
        snapshot=True,
        split="sum",
        measure=_active_users(30),
        extras_doc={"customers": "distinct customers of those users"},
    ),
    *packaged.load("engagement.yml", "core_actions"),  # a weekly count: data
    Metric(
        id="core_actions_per_user",
        label="Core actions per user per month",
        group="engagement",
        unit="count",
        formula="core usage events in the period ÷ users active in the period ÷ (days in the period ÷ 30.4375)",
        direction="higher",
        synonyms=("core actions per user", "core tasks per user", "actions per user", "core actions per user per month"),
        tables=("usage_events",),
        split="mean",
        measure=Measure(
            table=_users(None),
            join=lambda t, w: t.c.w == w.c.w,
            aggregates={
                "core": lambda t, w: func.sum(t.c.core),
                "users": lambda t, w: func.count(),
                "window_seconds": window_seconds,
            },
            finalize=lambda a: {"value": per_month(div(a.get("core"), a.get("users")), a), "users": a.get("users")},
            n="users",
        ),
        description="Seed 003: 'amount of core tasks done per user per month (i.e. purchase)'.",
    ),
    *packaged.load("engagement.yml", "session_time"),  # a mean with its median: data
    Metric(
        id="feature_adoption",
        label="Feature adoption",
        group="engagement",
        unit="percent",
        formula="customers active in the period who used an action ÷ customers active in the period × 100; by action: "
        "that action's adoption; overall: the mean over the actions used in the period",
        direction="higher",
        synonyms=("adoption", "feature usage", "feature adoption rate", "activation"),
        tables=("usage_events",),
        dimensions=("action",),
        split="mean",
        measure=Measure(
            table=_adoption,
            join=lambda t, w: t.c.w == w.c.w,
            aggregates={
                "pairs": lambda t, w: func.sum(1 - t.c.used),
                "used": lambda t, w: func.sum(t.c.used),
            },
            finalize=lambda a: {"value": div(a.get("used"), a.get("pairs"), 100.0), "pairs": a.get("pairs")},
            n="pairs",
        ),
        description="Seed 001: 'Feature adoption & activation'. Ask `feature_adoption by action`.",
        extras_doc={"pairs": "active customers × actions used in the period"},
    ),
]
