"""A small company touching every table, whose KPIs the tests compute by hand.

As of 2026-11-23 (UTC): last quarter = 2026-Q3 = [Jul 1, Oct 1), 92 days; the quarter
before = Q2 = [Apr 1, Jul 1). The expected values and their arithmetic are in the tests
(tests/test_kpis_*.py); the comments here say what each row is for.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import insert

from metrics.api import ask
from storage import database
from storage.schema import (
    costs,
    customers,
    defects,
    incidents,
    leads,
    marketing_spend,
    opportunities,
    orders,
    subscriptions,
    survey_responses,
    tickets,
    usage_events,
)

AS_OF = date(2026, 11, 23)


def dt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


CUSTOMERS = [
    # id, name, signed_up_at, churned_at, industry, size_band, region, plan, channel, paying
    ("k1", "Acme", "2025-01-01", None, "Retail", "Enterprise", "EMEA", "Growth", "paid_search", True),
    ("k2", "Beta", "2025-06-01", None, "Software", "SMB", "NA", "Starter", "organic", True),
    ("k3", "Core", "2026-01-15", "2026-08-16", "Retail", "SMB", "EMEA", "Starter", "paid_search", True),  # churns in Q3
    ("k4", "Dyna", "2026-07-10", None, "Software", "Enterprise", "NA", "Growth", "events", True),  # new in Q3
    ("k5", "Echo", "2026-08-20", None, "Retail", "SMB", "EMEA", "Free", "paid_search", False),  # new, free
    ("k6", "Flux", "2024-03-01", "2026-05-10", "Software", "SMB", "NA", "Starter", "events", True),  # churns in Q2
    ("k7", "Gala", "2026-10-05", None, "Retail", "SMB", "EMEA", "Starter", "events", True),  # new in October
]

SUBSCRIPTIONS = [
    # id, customer, started, ended, mrr, seats, product
    ("s1", "k1", "2025-01-01", None, 100.0, 10, "core"),
    ("s2", "k1", "2026-08-01", None, 50.0, None, "analytics"),  # k1 expands in Q3
    ("s3", "k2", "2025-06-01", "2026-09-01", 80.0, 5, "core"),  # k2 contracts: 80 -> 60 on Sep 1
    ("s4", "k2", "2026-09-01", None, 60.0, 3, "core"),
    ("s5", "k2", "2025-06-01", None, 20.0, None, "api"),
    ("s6", "k3", "2026-01-15", "2026-08-16", 40.0, 2, "core"),  # k3 churns
    ("s7", "k4", "2026-07-10", None, 120.0, 20, "core"),  # k4 is new
    ("s8", "k6", "2024-03-01", "2026-05-10", 30.0, 1, "core"),
    ("s9", "k7", "2026-10-05", None, 25.0, 2, "core"),
]

ORDERS = [
    # id, customer, ordered_at, amount, recurring, product
    ("o1", "k1", "2026-07-15T10:00", 300.0, True, "core"),
    ("o2", "k1", "2026-08-15T10:00", 300.0, True, "core"),
    ("o3", "k1", "2026-09-15T10:00", 200.0, False, "analytics"),
    ("o4", "k2", "2026-07-20T10:00", 100.0, True, "core"),
    ("o5", "k3", "2026-08-01T10:00", 40.0, True, "core"),
    ("o6", "k4", "2026-08-10T10:00", 480.0, False, "core"),
    ("o7", "k2", "2026-05-05T10:00", 100.0, True, "core"),  # Q2
    ("o8", "k5", "2026-10-10T10:00", 50.0, False, "core"),  # October
]

COSTS = [
    # customer, incurred_at, amount, category
    ("k1", "2026-07-31T00:00", 150.0, "support"),
    ("k1", "2026-08-31T00:00", 150.0, "support"),
    ("k2", "2026-08-15T00:00", 300.0, "support"),
    ("k3", "2026-08-01T00:00", 100.0, "onboarding"),
    ("k5", "2026-09-10T00:00", 70.0, "onboarding"),
    ("k2", "2026-05-15T00:00", 50.0, "support"),  # Q2
]

SPEND = [
    # spent_on, channel, amount
    ("2026-07-01", "paid_search", 400.0),
    ("2026-08-01", "paid_search", 400.0),
    ("2026-09-30", "events", 300.0),
    ("2026-10-01", "events", 999.0),  # the day after Q3
    ("2026-06-30", "paid_search", 111.0),  # the day before Q3
]

LEADS = [
    # id, created, source, mql, sql, converted, customer, potential
    ("L1", "2026-07-01T10:00", "paid_search", "2026-07-03T10:00", "2026-07-11T10:00", "2026-08-20T10:00", "k5", 1000.0),
    ("L2", "2026-07-05T10:00", "paid_search", "2026-07-15T10:00", None, None, None, 500.0),
    ("L3", "2026-07-06T10:00", "events", "2026-07-07T10:00", "2026-07-09T10:00", "2026-07-10T10:00", "k4", 3000.0),
    ("L4", "2026-08-01T10:00", "events", None, None, None, None, None),
    ("L5", "2026-09-10T10:00", "organic", "2026-09-12T10:00", "2026-09-20T10:00", None, None, 200.0),
    ("L6", "2026-06-20T10:00", "paid_search", "2026-07-02T10:00", "2026-07-20T10:00", "2026-09-30T10:00", None, 800.0),
    ("L7", "2026-10-02T10:00", "organic", None, None, None, None, 100.0),
]

USAGE = [
    # customer, user, occurred_at, action, is_core, session_seconds
    ("k1", "u1", "2026-09-28T10:00", "report", True, 600.0),
    ("k1", "u2", "2026-09-25T10:00", "export", False, 300.0),
    ("k1", "u1", "2026-09-10T10:00", "report", True, None),
    ("k2", "u1", "2026-09-05T10:00", "report", True, 1200.0),  # same user id as k1's u1: another user
    ("k2", "u3", "2026-07-15T10:00", "export", False, 60.0),
    ("k4", "u9", "2026-08-15T10:00", "dashboard", True, 900.0),
    ("k4", "u9", "2026-09-30T23:00", "dashboard", True, None),
    ("k5", "u5", "2026-07-25T10:00", "report", True, 120.0),
    ("k1", "u1", "2026-10-01T00:00", "report", True, None),  # the first instant after Q3
    ("k3", "u4", "2026-07-20T10:00", "report", True, 300.0),
    ("k3", "u4", "2026-06-01T10:00", "report", True, None),  # k3's busier past (before churn)
    ("k3", "u4", "2026-06-05T10:00", "export", False, None),
    ("k3", "u4", "2026-06-20T10:00", "report", True, None),
]

TICKETS = [
    # id, customer, opened, first response, resolved, reopened, escalated, agent replies, category, priority
    ("T1", "k1", "2026-07-02T09:00", "2026-07-02T09:30", "2026-07-02T12:00", False, False, 1, "billing", "high"),
    ("T2", "k2", "2026-07-20T09:00", "2026-07-20T10:00", "2026-07-21T09:00", True, False, 3, "bug", "normal"),
    ("T3", "k2", "2026-08-03T09:00", "2026-08-03T11:00", "2026-08-04T09:00", False, True, 2, "bug", "normal"),
    ("T4", "k3", "2026-08-05T09:00", "2026-08-05T09:15", "2026-08-05T10:00", False, False, 1, "bug", "high"),
    ("T5", "k3", "2026-08-10T09:00", None, None, False, False, None, "bug", "normal"),
    ("T6", "k2", "2026-09-29T09:00", "2026-09-29T09:20", "2026-10-02T09:00", False, False, 1, "billing", "low"),
    ("T7", "k4", "2026-06-29T09:00", "2026-06-29T10:00", "2026-07-01T09:00", False, False, 2, "onboarding", "low"),
]

SURVEYS = [
    # id, customer, responded_at, survey, score, touchpoint
    ("R1", "k1", "2026-07-10T10:00", "nps", 10, "product"),
    ("R2", "k1", "2026-08-10T10:00", "nps", 9, "product"),
    ("R3", "k2", "2026-08-20T10:00", "nps", 3, "support"),
    ("R4", "k3", "2026-08-12T10:00", "nps", 2, "support"),
    ("R5", "k4", "2026-09-01T10:00", "nps", 10, "onboarding"),
    ("R6", "k5", "2026-09-05T10:00", "nps", 7, "onboarding"),
    ("R7", "k4", "2026-09-20T10:00", "nps", 6, "product"),
    ("R8", None, "2026-09-25T10:00", "nps", 8, "website"),  # anonymous
    ("Q1", "k1", "2026-05-05T10:00", "nps", 9, "product"),  # Q2
    ("Q2", "k2", "2026-06-05T10:00", "nps", 10, "product"),
    ("Q3", "k6", "2026-05-01T10:00", "nps", 4, "support"),
    ("C1", "k1", "2026-07-03T10:00", "csat", 5, "support"),
    ("C2", "k2", "2026-08-04T10:00", "csat", 2, "Support"),  # touchpoints match case-insensitively
    ("C3", "k3", "2026-08-06T10:00", "csat", 1, "support"),
    ("C4", "k4", "2026-08-01T10:00", "csat", 4, "onboarding"),
    ("C5", "k5", "2026-09-02T10:00", "csat", 5, "onboarding"),
    ("P1", "k1", "2026-08-16T10:00", "ppr", 5, "checkout"),
    ("P2", "k4", "2026-08-11T10:00", "ppr", 4, "checkout"),
    ("P3", "k5", "2026-08-21T10:00", "ppr", 2, "delivery"),
]

INCIDENTS = [
    # id, started, ended, severity, kind
    ("I1", "2026-06-30T23:00", "2026-07-01T01:00", "sev1", "outage"),  # straddles Q2/Q3: 60 min in each
    ("I2", "2026-08-10T10:00", "2026-08-10T10:30", "sev2", "outage"),
    ("I3", "2026-09-01T00:00", "2026-09-01T05:00", "sev3", "degradation"),  # not downtime
    ("I4", "2026-09-30T23:00", None, "sev1", None),  # still open: counts to the window's end
]

DEFECTS = [
    # id, opened, resolved, severity
    ("D1", "2026-07-05T00:00", "2026-07-06T00:00", "critical"),
    ("D2", "2026-08-01T00:00", "2026-08-04T00:00", "minor"),
    ("D3", "2026-09-20T00:00", None, "major"),
    ("D4", "2026-06-25T00:00", "2026-07-01T12:00", "minor"),  # opened in Q2, resolved in Q3
]

OPPORTUNITIES = [
    # id, customer, created, kind, product, amount, won, lost
    ("O1", "k1", "2026-07-05T00:00", "cross-sell", "analytics", 50.0, "2026-07-30T00:00", None),
    ("O2", "k2", "2026-07-10T00:00", "upsell", "core", 30.0, None, "2026-08-15T00:00"),
    ("O3", "k4", "2026-08-20T00:00", "cross-sell", "api", 40.0, "2026-09-10T00:00", None),
    ("O4", "k2", "2026-09-15T00:00", "upsell", "core", 20.0, None, None),  # still open
    ("O5", "k1", "2026-06-01T00:00", "upsell", "core", 70.0, None, "2026-07-02T00:00"),  # created Q2, lost Q3
]


def load(url: str) -> None:
    engine = database.get_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(customers),
            [
                {
                    "customer_id": cid, "name": name, "signed_up_at": dt(signed), "churned_at": dt(churned),
                    "industry": industry, "size_band": size, "region": region, "plan": plan,
                    "acquisition_channel": channel, "is_paying": paying,
                }
                for cid, name, signed, churned, industry, size, region, plan, channel, paying in CUSTOMERS
            ],
        )
        conn.execute(
            insert(subscriptions),
            [
                {
                    "subscription_id": sid, "customer_id": cid, "started_at": dt(start), "ended_at": dt(end),
                    "mrr": mrr, "seats": seats, "product": product,
                }
                for sid, cid, start, end, mrr, seats, product in SUBSCRIPTIONS
            ],
        )
        conn.execute(
            insert(orders),
            [
                {"order_id": oid, "customer_id": cid, "ordered_at": dt(at), "amount": amount,
                 "is_recurring": recurring, "product": product}
                for oid, cid, at, amount, recurring, product in ORDERS
            ],
        )
        conn.execute(
            insert(costs),
            [
                {"customer_id": cid, "incurred_at": dt(at), "amount": amount, "category": category}
                for cid, at, amount, category in COSTS
            ],
        )
        conn.execute(
            insert(marketing_spend),
            [{"spent_on": date.fromisoformat(d), "channel": ch, "amount": a} for d, ch, a in SPEND],
        )
        conn.execute(
            insert(leads),
            [
                {
                    "lead_id": lid, "created_at": dt(created), "source": source, "mql_at": dt(mql),
                    "sql_at": dt(sql), "converted_at": dt(conv), "customer_id": cid, "potential_value": pot,
                }
                for lid, created, source, mql, sql, conv, cid, pot in LEADS
            ],
        )
        conn.execute(
            insert(usage_events),
            [
                {"customer_id": cid, "user_id": uid, "occurred_at": dt(at), "action": action,
                 "is_core": core, "session_seconds": secs}
                for cid, uid, at, action, core, secs in USAGE
            ],
        )
        conn.execute(
            insert(tickets),
            [
                {
                    "ticket_id": tid, "customer_id": cid, "opened_at": dt(opened),
                    "first_response_at": dt(first), "resolved_at": dt(resolved), "reopened": reopened,
                    "escalated": escalated, "agent_replies": replies, "category": category,
                    "priority": priority, "channel": "email",
                }
                for tid, cid, opened, first, resolved, reopened, escalated, replies, category, priority in TICKETS
            ],
        )
        conn.execute(
            insert(survey_responses),
            [
                {"response_id": rid, "customer_id": cid, "responded_at": dt(at), "survey": kind,
                 "score": score, "touchpoint": touchpoint, "comment": None}
                for rid, cid, at, kind, score, touchpoint in SURVEYS
            ],
        )
        conn.execute(
            insert(incidents),
            [
                {"incident_id": iid, "started_at": dt(start), "ended_at": dt(end), "severity": sev, "kind": kind}
                for iid, start, end, sev, kind in INCIDENTS
            ],
        )
        conn.execute(
            insert(defects),
            [
                {"defect_id": did, "opened_at": dt(opened), "resolved_at": dt(resolved), "severity": sev}
                for did, opened, resolved, sev in DEFECTS
            ],
        )
        conn.execute(
            insert(opportunities),
            [
                {
                    "opportunity_id": oid, "customer_id": cid, "created_at": dt(created), "kind": kind,
                    "product": product, "amount": amount, "won_at": dt(won), "lost_at": dt(lost),
                }
                for oid, cid, created, kind, product, amount, won, lost in OPPORTUNITIES
            ],
        )


def q(url, text):
    return ask(text, as_of=AS_OF, url=url)


def groups(result):
    return {g.group: g.value for g in result.breakdown}
