""""What moved it" from one grouped scan (metrics/scan.py) equals the query per dimension.

On the hand-computed company (tests/kpi_fixtures.py) every KPI the explanation can split is
cut by every candidate dimension both ways, and the cells must be the same; on the
explanation fixture (tests/kpi_fixtures_explain.py) the sentences must be the same.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import event

from metrics import explain, scan
from metrics.api import ask
from metrics.cache import bypassed as cache_bypassed
from metrics.catalogue import CATALOGUE, dimensions_for
from metrics.engine import compute
from metrics.periods import Settings
from metrics.spec import Measure
from storage import database
from tests import kpi_fixtures, kpi_fixtures_explain

AS_OF = date(2026, 11, 23)
Q3, Q2 = (date(2026, 7, 1), date(2026, 10, 1)), (date(2026, 4, 1), date(2026, 7, 1))
SPLIT = sorted(k for k, m in CATALOGUE.items() if m.split in ("sum", "mean") and isinstance(m.measure, Measure))


@pytest.fixture
def company(db_url):
    kpi_fixtures.load(db_url)
    return db_url


@pytest.fixture
def dip(db_url):
    kpi_fixtures_explain.load(db_url)
    return db_url


def close(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return a == pytest.approx(b, rel=1e-9, abs=1e-9)


def test_every_split_kpi_every_dimension(company):
    engine = database.get_engine(company)
    assert SPLIT  # the catalogue has KPIs the explanation splits
    for kpi in SPLIT:
        metric = CATALOGUE[kpi]
        dims = list(dimensions_for(metric))
        scans = scan.by_each(metric, [Q3, Q2], Settings(), engine, dims)
        if engine.dialect.name == "sqlite":
            assert scans is None  # no GROUPING SETS: the caller groups per dimension
            continue
        assert scans is not None and set(scans) == set(dims), kpi
        for dim in dims:
            old = compute(metric, [Q3, Q2], Settings(), engine, dim)
            new = scans[dim]
            assert set(new) == set(old), (kpi, dim)
            for key, cell in old.items():
                got = new[key]
                assert close(got.value, cell.value) and got.n == cell.n and got.rows == cell.rows, (kpi, dim, key)
                assert close(got.moe, cell.moe), (kpi, dim, key)


def test_with_a_filter(company):
    engine = database.get_engine(company)
    metric = CATALOGUE["tickets"]
    dims = [d for d in dimensions_for(metric) if d != "region"]
    scans = scan.by_each(metric, [Q3, Q2], Settings(), engine, dims, (("region", "EMEA"),))
    if scans is None:
        assert engine.dialect.name == "sqlite"
        return
    for dim in dims:
        old = compute(metric, [Q3, Q2], Settings(), engine, dim, (("region", "EMEA"),))
        assert {k: c.value for k, c in scans[dim].items()} == {k: c.value for k, c in old.items()}, dim


@pytest.mark.parametrize("text", ["nps last-quarter", "nps last-quarter where region=EMEA", "tickets last-quarter",
                                  "csat last-quarter"])
def test_same_explanation_both_ways(dip, text):
    engine = database.get_engine(dip)
    result = ask(text, as_of=AS_OF, url=dip)
    one = explain.find(result, engine, Settings())
    old = explain.find(result, engine, Settings(), one_scan=False)
    assert one == old


def test_one_scan_sends_one_statement_per_cut(dip):
    """NPS Q3 vs Q2: its own column (touchpoint) in one statement, every customer attribute
    in another, then the pair (EMEA by size): 3, where the query per dimension sent one per
    candidate dimension and the pair."""
    engine = database.get_engine(dip)
    result = ask("nps last-quarter", as_of=AS_OF, url=dip)
    sent: list[str] = []

    def record(conn, cursor, statement, *args):
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        explain.find(result, engine, Settings())
    finally:
        event.remove(engine, "before_cursor_execute", record)
    candidates = dimensions_for(CATALOGUE["nps"])
    assert "touchpoint" in candidates and "touchpoint" in CATALOGUE["nps"].dimensions and len(candidates) > 3
    assert len(sent) == (len(candidates) + 1 if engine.dialect.name == "sqlite" else 3)


def test_an_explained_breakdown_is_cut_from_the_explanations_scan(db_url):
    """Asked by region, NPS Q3 vs Q2 (50 → 6.25, a real drop: load_judged) is cut from the one
    scan of every candidate dimension: the same breakdown and explanation as cutting by
    region alone, with the explanation then sending only the pair (EMEA by size) instead of
    the scan again."""
    from metrics import api
    from metrics.engine import run

    kpi_fixtures_explain.load_judged(db_url)
    dip = db_url
    engine = database.get_engine(dip)
    settings = Settings()
    query = api._parse("nps last-quarter by region", AS_OF, dip, settings)
    sent: list[str] = []

    def record(conn, cursor, statement, *args):
        sent.append(statement)

    alone = run(query, engine=engine, settings=settings)
    wide = run(query, engine=engine, settings=settings, every_cut=True)
    assert wide.judgement in ("good", "bad") and wide.breakdown == alone.breakdown and alone.cuts is None
    event.listen(engine, "before_cursor_execute", record)
    try:
        found = [explain.find(alone, engine, settings)]
        after_alone = len(sent)
        found.append(explain.find(wide, engine, settings))
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert found[0] == found[1] and found[0] is not None and found[0].parent is not None
    if engine.dialect.name == "sqlite":  # no grouping sets: nothing to share
        assert wide.cuts is None
    else:
        assert set(wide.cuts) == set(explain.candidates(CATALOGUE["nps"], ()))
        assert len(sent) - after_alone == 1  # the pair only; alone: its own column, the attributes, the pair
    answered = api.answer("nps last-quarter by region", as_of=AS_OF, url=dip)
    assert answered.explanation == explain.sentence(alone, found[0]) and answered.cuts is None


def test_a_scan_the_asker_may_not_read_leaves_the_breakdown_unexplained(db_url, monkeypatch):
    """A candidate dimension the asker may not read (a team's column marked sensitive) makes
    the guard refuse the scan: the breakdown is then cut alone and the answer stands,
    unexplained, as before the breakdown came from the scan."""
    from metrics import access, api

    kpi_fixtures_explain.load_judged(db_url)
    plain = api.answer("nps last-quarter by region", as_of=AS_OF, url=db_url, explain=False)

    def refused(*args, **kwargs):
        raise access.AccessDenied("that would read per_customer data, which is not allowed here")

    monkeypatch.setattr(explain, "one_scan_of", refused)
    with cache_bypassed():
        guarded = api.answer("nps last-quarter by region", as_of=AS_OF, url=db_url)
    assert guarded.breakdown == plain.breakdown and guarded.judgement in ("good", "bad")
    assert guarded.explanation is None and guarded.cuts is None
