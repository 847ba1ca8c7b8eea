"""The importer refuses times that contradict each other or lie in the future, and every
failure says that nothing was imported. The clock is passed in (``now``)."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import func, select

from storage import database
from storage.importer import ImportFailed, import_file
from storage.schema import TABLES

NOW = datetime(2026, 12, 1, 12, 0)


def _write(tmp_path, name: str, *lines: str) -> str:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _count(url: str, table: str) -> int:
    with database.get_engine(url).connect() as conn:
        return conn.scalar(select(func.count()).select_from(TABLES[table]))


def _fail(url: str, table: str, path: str) -> str:
    with pytest.raises(ImportFailed) as caught:
        import_file(database.get_engine(url), table, path, now=NOW)
    return str(caught.value)


def test_churn_before_sign_up_is_refused_and_nothing_is_imported(db_url, tmp_path):
    path = _write(
        tmp_path, "customers.csv",
        "customer_id,signed_up_at,churned_at",
        "c1,2025-03-01,2025-03-01",  # the same day: allowed
        "c2,2025-03-01,2024-01-01",
    )
    text = _fail(db_url, "customers", path)
    assert text.splitlines() == [
        f"{path}:3: churned_at: '2024-01-01' is before signed_up_at ('2025-03-01')",
        "Nothing was imported: fix these and import the file again.",
    ]
    assert _count(db_url, "customers") == 0


def test_other_pairs_of_times_are_checked_too(duck_url, tmp_path):
    path = _write(
        tmp_path, "tickets.csv",
        "ticket_id,opened_at,first_response_at,resolved_at",
        "t1,2026-03-01T10:00:00Z,2026-03-01T09:00:00Z,2026-03-02T00:00:00Z",
        "t2,2026-03-01T10:00:00Z,,2026-02-28T00:00:00Z",
    )
    assert _fail(duck_url, "tickets", path).splitlines()[:2] == [
        f"{path}:2: first_response_at: '2026-03-01T09:00:00Z' is before opened_at ('2026-03-01T10:00:00Z')",
        f"{path}:3: resolved_at: '2026-02-28T00:00:00Z' is before opened_at ('2026-03-01T10:00:00Z')",
    ]


def test_events_in_the_future_are_refused(db_url, tmp_path):
    path = _write(
        tmp_path, "orders.csv",
        "order_id,customer_id,ordered_at,amount",
        "o1,c1,2026-12-02T06:00:00Z,10.00",  # within a day of the clock: a zone ahead of UTC
        "o2,c1,2031-03-01,10.00",  # years ahead: a typo
    )
    text = _fail(db_url, "orders", path)
    assert text.splitlines()[0] == f"{path}:3: ordered_at: '2031-03-01' is in the future (after 2026-12-02)"
    assert text.splitlines()[-1] == "Nothing was imported: fix these and import the file again."
    assert _count(db_url, "orders") == 0


def test_dates_in_the_future_are_refused(duck_url, tmp_path):
    path = _write(tmp_path, "spend.csv", "spent_on,channel,amount", "2027-01-05,paid_search,100")
    assert f"{path}:2: spent_on: '2027-01-05' is in the future" in _fail(duck_url, "marketing_spend", path)


def test_a_planned_end_may_lie_ahead_but_not_years_ahead(duck_url, tmp_path):
    ok = _write(tmp_path, "ok.csv", "customer_id,signed_up_at,churned_at", "c1,2025-03-01,2027-06-30")
    import_file(database.get_engine(duck_url), "customers", ok, now=NOW)  # a notice of churn at term end
    assert _count(duck_url, "customers") == 1
    bad = _write(tmp_path, "bad.csv", "customer_id,signed_up_at,churned_at", "c2,2025-03-01,2205-06-30")
    assert f"{bad}:2: churned_at: '2205-06-30' is more than 5 years in the future" in _fail(duck_url, "customers", bad)


def test_every_kind_of_failure_says_nothing_was_imported(duck_url, tmp_path):
    missing = str(tmp_path / "nope.csv")
    assert _fail(duck_url, "orders", missing).endswith("Nothing was imported: fix these and import the file again.")
    header = _write(tmp_path, "h.csv", "order_id,customer_id")
    assert _fail(duck_url, "orders", header).endswith("Nothing was imported: fix these and import the file again.")
