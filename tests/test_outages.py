"""Overlapping outages are down time once (the union of their intervals), on every engine."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from sqlalchemy import insert

from metrics.api import ask
from storage import database
from storage.schema import incidents

AS_OF = date(2026, 12, 15)

OUTAGES = [
    # id, started, ended, severity, kind
    ("A", "2026-11-20T10:00", "2026-11-20T11:00", "sev1", "outage"),
    ("B", "2026-11-20T10:30", "2026-11-20T11:30", "sev2", "outage"),  # 30 min past A's end
    ("C", "2026-11-20T10:40", "2026-11-20T10:50", "sev2", "outage"),  # inside A and B: 0 more
    ("D", "2026-11-20T12:00", "2026-11-20T12:20", "sev1", "degradation"),  # not downtime
    ("E", "2026-11-20T13:00", "2026-11-20T13:10", "sev3", None),  # alone: 10 min
]


@pytest.fixture
def outages(db_url):
    rows = [
        {"incident_id": i, "started_at": datetime.fromisoformat(s), "ended_at": datetime.fromisoformat(e),
         "severity": sev, "kind": kind}
        for i, s, e, sev, kind in OUTAGES
    ]
    with database.get_engine(db_url).begin() as conn:
        conn.execute(insert(incidents), rows)
    return db_url


def test_overlapping_outages_count_once(outages):
    down = ask("downtime 2026-11 by severity", as_of=AS_OF, url=outages)
    # 10:00-11:30 (A, B, C merged) = 90 min, plus E 10 min; the plain sum would be 140
    assert down.value == pytest.approx(100.0)
    assert down.extras["incidents"] == 4  # A, B, C, E
    assert down.extras["longest"] == pytest.approx(60.0)  # A and B, 60 min each
    # overlap credited to the outage that started first: A 60, B 30, C 0, E 10
    assert {g.group: g.value for g in down.breakdown} == {
        "sev1": pytest.approx(60.0), "sev2": pytest.approx(30.0), "sev3": pytest.approx(10.0)
    }
    up = ask("uptime 2026-11", as_of=AS_OF, url=outages)
    assert up.value == pytest.approx(100 * (1 - 100 / (30 * 1440)))
    assert up.extras["downtime_minutes"] == pytest.approx(100.0)


def test_an_outage_straddling_windows_is_merged_within_each(outages):
    with database.get_engine(outages).begin() as conn:
        conn.execute(insert(incidents), [
            {"incident_id": "F", "started_at": datetime(2026, 10, 31, 23, 0), "ended_at": datetime(2026, 11, 1, 1, 0),
             "severity": "sev1", "kind": "outage"},
            {"incident_id": "G", "started_at": datetime(2026, 10, 31, 23, 30), "ended_at": datetime(2026, 11, 1, 0, 30),
             "severity": "sev2", "kind": "outage"},
        ])
    # October: F 23:00-24:00 and G 23:30-24:00 overlap: 60 min; November: F 0:00-1:00 covers G: 60 + 100
    assert ask("downtime 2026-10", as_of=AS_OF, url=outages).value == pytest.approx(60.0)
    assert ask("downtime 2026-11", as_of=AS_OF, url=outages).value == pytest.approx(160.0)
