"""Four customers whose NPS drop from 2026-Q2 to 2026-Q3 sits in one corner: EMEA Enterprise.

Industry, plan and channel are the same for everyone (one segment explains nothing), so the
dimensions that matter are size_band and region. The arithmetic is in tests/test_kpis_explain.py.
"""

from __future__ import annotations

from sqlalchemy import insert

from storage import database
from storage.schema import customers, survey_responses, tickets
from tests.kpi_fixtures import dt

CUSTOMERS = [
    # id, size_band, region
    ("x1", "Enterprise", "EMEA"),
    ("x2", "Enterprise", "NA"),
    ("x3", "SMB", "EMEA"),
    ("x4", "SMB", "NA"),
]

NPS = {
    # customer: (Q2 answers, Q3 answers)
    "x1": ((10, 10, 10, 10), (3, 4, 5, 10)),
    "x2": ((10, 10, 8, 8), (10, 10, 8, 8)),
    "x3": ((9, 8, 8, 8), (9, 8, 8, 6)),
    "x4": ((9, 9, 6, 8), (9, 9, 6, 8)),
}

TICKETS = [
    # customer, opened, category
    ("x1", "2026-05-02T10:00", "bug"),
    ("x2", "2026-05-03T10:00", "billing"),
    *[("x1", f"2026-08-0{d}T10:00", "bug") for d in range(1, 6)],
    ("x2", "2026-08-10T10:00", "billing"),
    ("x3", "2026-08-11T10:00", "bug"),
]


def load(url: str) -> None:
    engine = database.get_engine(url)
    responses = []
    for cid, (q2, q3) in NPS.items():
        for quarter, month, scores in (("q2", "05", q2), ("q3", "08", q3)):
            for k, score in enumerate(scores):
                responses.append(
                    {
                        "response_id": f"{cid}-{quarter}-{k}", "customer_id": cid,
                        "responded_at": dt(f"2026-{month}-1{k}T10:00"), "survey": "nps", "score": score,
                        "touchpoint": "product", "comment": None,
                    }
                )
    with engine.begin() as conn:
        conn.execute(
            insert(customers),
            [
                {
                    "customer_id": cid, "name": cid.upper(), "signed_up_at": dt("2025-01-01"), "churned_at": None,
                    "industry": "Retail", "size_band": size, "region": region, "plan": "Growth",
                    "acquisition_channel": "organic", "is_paying": True,
                }
                for cid, size, region in CUSTOMERS
            ],
        )
        conn.execute(insert(survey_responses), responses)
        conn.execute(
            insert(tickets),
            [
                {
                    "ticket_id": f"t{k}", "customer_id": cid, "opened_at": dt(opened), "category": category,
                    "priority": "normal", "channel": "email", "reopened": False, "escalated": False,
                }
                for k, (cid, opened, category) in enumerate(TICKETS)
            ],
        )


def load_judged(url: str) -> None:
    """:func:`load` with every survey answer given three times (48 a quarter: enough to judge,
    and the change of -43.75 is outside the margins of error, ±17.3 and ±23.4 combined to
    ±29.1), so NPS is still 50 in 2026-Q2 and 6.25 in 2026-Q3 with the same explanation; plus
    a survey answer and a ticket on 20 Nov, outside both quarters, so that the data reaches
    past Q3 and the change is judged (and explained). Tickets: 2 -> 7."""
    load(url)
    with database.get_engine(url).begin() as conn:
        again = [{**dict(r), "response_id": f"{r.response_id}-{copy}"}
                 for r in conn.execute(survey_responses.select()).mappings() for copy in (2, 3)]
        late = {**again[0], "response_id": "late", "responded_at": dt("2026-11-20T10:00")}
        conn.execute(insert(survey_responses), [*again, late])
        conn.execute(insert(tickets), [{"ticket_id": "t100", "customer_id": "x4", "opened_at": dt("2026-11-20T10:00"),
                                        "category": "billing", "priority": "normal", "channel": "email",
                                        "reopened": False, "escalated": False}])
