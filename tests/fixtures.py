"""A tiny company whose KPIs are computed by hand in the tests (as_of 2026-11-23, UTC).

Last quarter = 2026-Q3 (Jul 1 - Sep 30); the quarter before = Q2.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert

from storage import database
from storage.schema import customers, orders, subscriptions, survey_responses, tickets

AS_OF = "2026-11-23"


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


CUSTOMERS = [
    # id, signed_up_at, churned_at, industry, plan, is_paying
    ("c1", "2025-01-10", None, "Retail", "Growth", True),
    ("c2", "2026-08-15", None, "Software", "Starter", True),
    ("c3", "2025-03-01", "2026-08-01", "Retail", "Growth", True),
    ("c4", "2025-06-01", "2026-05-01", "Software", "Starter", False),
    ("c5", "2026-10-05", None, "Retail", "Enterprise", True),
]

# NPS in Q3: c1 answers 10,10,9,8,7 (3 promoters, 0 detractors) -> +60
#            c2 answers 6,3,0,9,10  (2 promoters, 3 detractors) -> -20
#            all ten: 5 promoters, 3 detractors -> 100 * (5 - 3) / 10 = 20
# NPS in Q2: 10 and 5 -> 1 promoter, 1 detractor -> 0
NPS_Q3 = [("c1", s) for s in (10, 10, 9, 8, 7)] + [("c2", s) for s in (6, 3, 0, 9, 10)]
NPS_Q2 = [("c1", 10), ("c3", 5)]
CSAT_Q3 = [5, 4, 3, 5]  # 3 of 4 score 4-5 -> 75 %
CES_Q3 = [7, 5, 6]  # mean 6


def load(url: str) -> None:
    engine = database.get_engine(url)
    rows = []
    for i, (cid, signed, churned, industry, plan, paying) in enumerate(CUSTOMERS):
        rows.append(
            {
                "customer_id": cid,
                "name": f"Customer {i}",
                "signed_up_at": dt(signed),
                "churned_at": dt(churned) if churned else None,
                "industry": industry,
                "plan": plan,
                "region": "EMEA",
                "size_band": "SMB",
                "acquisition_channel": "organic",
                "is_paying": paying,
            }
        )
    surveys = []
    for k, (cid, score) in enumerate(NPS_Q3):
        surveys.append(_resp(f"n3-{k}", cid, f"2026-0{7 + k % 3}-1{k % 9}T12:00:00", "nps", score, "product"))
    for k, (cid, score) in enumerate(NPS_Q2):
        surveys.append(_resp(f"n2-{k}", cid, "2026-05-10T08:00:00", "nps", score, "product"))
    for k, score in enumerate(CSAT_Q3):
        surveys.append(_resp(f"cs-{k}", "c1", "2026-08-02T08:00:00", "csat", score, "support"))
    for k, score in enumerate(CES_Q3):
        surveys.append(_resp(f"ce-{k}", "c2", "2026-09-02T08:00:00", "ces", score, "support"))
    # A response just outside Q3 (Oct 1 00:00) must not count.
    surveys.append(_resp("edge", "c1", "2026-10-01T00:00:00", "nps", 0, "product"))
    order_rows = [
        ("o1", "c1", "2026-07-05", 100.0, True),
        ("o2", "c1", "2026-08-05", 100.0, True),
        ("o3", "c2", "2026-09-20", 50.0, False),
        ("o4", "c3", "2026-06-01", 80.0, True),
    ]
    subs = [
        ("s1", "c1", "2025-01-10", None, 100.0, 5),
        ("s2", "c3", "2025-03-01", "2026-08-01", 40.0, 2),
        ("s3", "c2", "2026-08-15", None, 60.0, 3),
    ]
    ticket_rows = [
        # opened, first response, resolved, category, priority
        ("t1", "c1", "2026-07-01T10:00", "2026-07-01T10:30", "2026-07-02T10:00", "billing", "high"),
        ("t2", "c2", "2026-08-01T09:00", "2026-08-01T11:00", "2026-08-01T13:00", "bug", "normal"),
        ("t3", "c2", "2026-09-29T12:00", "2026-09-29T13:00", None, "bug", "normal"),
        ("t0", "c3", "2026-06-30T12:00", "2026-06-30T12:10", "2026-07-03T12:00", "bug", "low"),
    ]
    with engine.begin() as conn:
        conn.execute(insert(customers), rows)
        conn.execute(insert(survey_responses), surveys)
        conn.execute(
            insert(orders),
            [
                {"order_id": o, "customer_id": c, "ordered_at": dt(d), "amount": a, "is_recurring": r}
                for o, c, d, a, r in order_rows
            ],
        )
        conn.execute(
            insert(subscriptions),
            [
                {
                    "subscription_id": s,
                    "customer_id": c,
                    "started_at": dt(a),
                    "ended_at": dt(e) if e else None,
                    "mrr": m,
                    "seats": seats,
                    "product": "core",
                }
                for s, c, a, e, m, seats in subs
            ],
        )
        conn.execute(
            insert(tickets),
            [
                {
                    "ticket_id": t,
                    "customer_id": c,
                    "opened_at": dt(o),
                    "first_response_at": dt(f) if f else None,
                    "resolved_at": dt(r) if r else None,
                    "category": cat,
                    "priority": pr,
                    "channel": "email",
                    "reopened": False,
                    "agent_replies": 1,
                }
                for t, c, o, f, r, cat, pr in ticket_rows
            ],
        )


def _resp(rid, cid, when, survey, score, touchpoint):
    return {
        "response_id": rid,
        "customer_id": cid,
        "responded_at": dt(when),
        "survey": survey,
        "score": score,
        "touchpoint": touchpoint,
        "comment": None,
    }
