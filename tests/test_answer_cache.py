"""The answer cache (metrics/cache.py) through the one query path (metrics/api.py).

Fixture: tests/kpi_fixtures_explain.py (arithmetic in tests/test_kpis_explain.py) with every
survey answer given three times (48 a quarter: enough to judge, and the change of -43.75 is
outside the margins of error, ±17.3 and ±23.4 combined to ±29.1), so NPS is still 50 in 2026-Q2
and 6.25 in 2026-Q3 with the same explanation; plus a survey answer and a ticket on 20 Nov,
outside both quarters, so that the data reaches past Q3 and the change is judged (and
explained). Tickets: 2 -> 7.
Whether an answer came from the cache is read from the statements the database was sent,
never from timings.
"""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from metrics import access, api, cache
from metrics.periods import Period, Settings
from metrics.query import Query
from storage import database
from storage.importer import import_file
from tests import kpi_fixtures_explain
from tests.statements import sent_statements

AS_OF = date(2026, 11, 23)
EXPLAINED = (
    "Net Promoter Score fell 43.8 points vs previous quarter; EMEA region, Enterprise size band "
    "explains 86% of the drop (Net Promoter Score there went from 100.0 to -50.0)."
)
QUESTION = "nps last-quarter"


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    for name in ("KPI_ANSWER_CACHE_MB", "KPI_ANSWER_CACHE_ENTRIES", "KPI_ANSWER_CACHE_TTL"):
        monkeypatch.delenv(name, raising=False)
    cache.reset()
    yield
    cache.reset()


@pytest.fixture
def dip(db_url):
    kpi_fixtures_explain.load_judged(db_url)
    return db_url


def counting(url):
    """Every statement sent to the metrics database inside."""
    return sent_statements(url)


def probe_cost(url) -> int:
    """Statements a look-up itself sends: none for a file database, the freshness watermark
    (one statement) for a server database."""
    with counting(url) as sent:
        cache.data_version(database.get_engine(url), ("tickets", "customers"), Settings())
    return len(sent)


def same(a, b) -> bool:
    return dataclasses.replace(a, elapsed_ms=0.0) == dataclasses.replace(b, elapsed_ms=0.0)


def test_a_repeated_question_is_served_from_the_cache(dip):
    with counting(dip) as first:
        one = api.answer(QUESTION, as_of=AS_OF, url=dip)
    with counting(dip) as second:
        two = api.answer(QUESTION, as_of=AS_OF, url=dip)
    assert one.value == pytest.approx(6.25) and one.explanation == EXPLAINED
    assert len(first) > 3  # the answer, its freshness and the explanation's scans
    assert len(second) == probe_cost(dip)
    assert two.value == pytest.approx(6.25) and two.explanation == EXPLAINED
    assert cache.answers().stats.hits == 1


def test_a_cached_answer_is_a_copy(dip):
    one = api.answer(QUESTION, as_of=AS_OF, url=dip)
    one.notes.append("changed by a front end")
    one.explanation = None
    two = api.answer(QUESTION, as_of=AS_OF, url=dip)
    assert two.explanation == EXPLAINED and "changed by a front end" not in two.notes


def test_an_import_invalidates_the_answer(dip, tmp_path):
    assert api.answer("tickets last-quarter", as_of=AS_OF, url=dip).value == 7
    path = tmp_path / "tickets.csv"
    path.write_text(
        "ticket_id,customer_id,opened_at,category,priority,channel\n"
        "t99,x4,2026-09-01T10:00,billing,normal,email\n"
    )
    import_file(database.get_engine(dip), "tickets", path)
    with counting(dip) as sent:
        assert api.answer("tickets last-quarter", as_of=AS_OF, url=dip).value == 8
    assert len(sent) > probe_cost(dip)


def test_a_write_from_elsewhere_invalidates_a_file_database(tmp_path):
    """Another process (``kpibot import``) cannot bump this one's generation: the file's
    stamp changes instead. Simulated with a second engine on the same file."""
    from sqlalchemy import create_engine, insert

    from storage.schema import tickets
    from tests.kpi_fixtures import dt

    url = f"duckdb:///{tmp_path}/other.duckdb"
    kpi_fixtures_explain.load_judged(url)
    assert api.answer("tickets last-quarter", as_of=AS_OF, url=url).value == 7
    database.dispose_all()  # release the file, as the linger does when idle
    other = create_engine(url)
    with other.begin() as conn:
        conn.execute(insert(tickets), [{"ticket_id": "t98", "customer_id": "x4", "opened_at": dt("2026-09-02T10:00"),
                                        "category": "bug", "priority": "normal", "channel": "email",
                                        "reopened": False, "escalated": False}])
    other.dispose()
    assert api.answer("tickets last-quarter", as_of=AS_OF, url=url).value == 8


def test_a_policy_scope_never_shares_an_entry(dip):
    api.answer(QUESTION, as_of=AS_OF, url=dip)  # unguarded (the CLI): cached

    def refuse(needs):
        raise access.AccessDenied("not here")

    with counting(dip) as sent, pytest.raises(access.AccessDenied):
        api.answer(QUESTION, as_of=AS_OF, url=dip, authorize=refuse)
    assert sent == []  # refused before any work: the cached answer is never handed out

    seen: list[frozenset[str]] = []

    def allow(needs):
        seen.append(needs.sensitivities)

    with counting(dip) as sent:
        guarded = api.answer(QUESTION, as_of=AS_OF, url=dip, authorize=allow)
    assert len(sent) > probe_cost(dip)  # its own entry, computed under its own guard
    assert guarded.value == pytest.approx(6.25) and guarded.explanation == EXPLAINED
    with counting(dip) as sent:
        api.answer(QUESTION, as_of=AS_OF, url=dip, authorize=allow)
    assert len(sent) == probe_cost(dip) and len(seen) == 2  # asked every time, then served


def test_cached_answers_equal_uncached_ones(dip):
    for text in ("nps last-quarter", "tickets last-quarter", "nps by region last-quarter",
                 "tickets monthly last-6-months", "nps last-quarter where region=EMEA"):
        api.answer(text, as_of=AS_OF, url=dip)
        cached = api.answer(text, as_of=AS_OF, url=dip)
        with cache.bypassed():
            fresh = api.answer(text, as_of=AS_OF, url=dip)
        assert same(cached, fresh), text
    assert cache.answers().stats.hits == 5


def test_digests_and_alerts_share_the_cache(dip):
    q3, q2 = Period(date(2026, 7, 1), date(2026, 10, 1), "Q3"), Period(date(2026, 4, 1), date(2026, 7, 1), "Q2")
    query = Query(metric="tickets", period=q3, compare=q2, text="digest tickets")
    assert api.run(query, url=dip).value == 7
    with counting(dip) as sent:
        assert api.run(query, url=dip).value == 7
    assert len(sent) == probe_cost(dip)
    windows = [(q3.start, q3.end), (q2.start, q2.end)]
    cells = api.cells("tickets", windows, Settings(), url=dip, dimension="region")
    with counting(dip) as sent:
        again = api.cells("tickets", windows, Settings(), url=dip, dimension="region")
    assert len(sent) == probe_cost(dip) and again == cells
    assert {k: c.value for k, c in cells.items()} == {(0, "EMEA"): 6, (0, "NA"): 1, (1, "EMEA"): 1, (1, "NA"): 1}


def test_off_when_sized_zero(dip, monkeypatch):
    monkeypatch.setenv("KPI_ANSWER_CACHE_MB", "0")
    cache.reset()
    api.answer("tickets last-quarter", as_of=AS_OF, url=dip)
    with counting(dip) as sent:
        api.answer("tickets last-quarter", as_of=AS_OF, url=dip)
    assert len(sent) > 1


def test_bounded_by_entries_and_bytes():
    lru = cache.AnswerCache(entries=2, max_bytes=10_000)
    lru.put(("a",), "x")
    lru.put(("b",), "y")
    assert lru.get(("a",)) == "x"  # a is now the most recent
    lru.put(("c",), "z")
    assert lru.get(("b",)) is None and lru.get(("a",)) == "x" and lru.get(("c",)) == "z"
    lru.put(("big",), "w" * 9_000)
    assert lru.bytes <= 10_000 and lru.get(("big",)) is not None
    assert lru.get(("a",)) is None  # evicted to make room
    lru.put(("huge",), "h" * 20_000)  # larger than the whole cache: not kept
    assert lru.get(("huge",)) is None and lru.stats.evictions >= 2


def test_the_chart_of_a_cached_answer_is_drawn_once(duck_url):
    from metrics import charts

    kpi_fixtures_explain.load_judged(duck_url)
    png = charts.render_png(api.answer("tickets monthly last-6-months", as_of=AS_OF, url=duck_url))
    hits = cache.answers().stats.hits
    again = charts.render_png(api.answer("tickets monthly last-6-months", as_of=AS_OF, url=duck_url))
    assert png and again == png
    assert cache.answers().stats.hits == hits + 2  # the answer, then its chart
    with cache.bypassed():
        assert charts.render_png(api.answer("tickets monthly last-6-months", as_of=AS_OF, url=duck_url)) == png
