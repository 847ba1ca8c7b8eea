"""kpibot's own daily usage rollup (metrics/rollups.py): the same answers as the source, only
when fresh, and an interrupted build leaves the previous one in use.

Fixture: tests/kpi_fixtures.py (hand-computed in tests/test_kpis_funnel_engagement.py): in
2026-Q3, WAU 3 (2 customers), MAU 4, 7 core actions by 7 active users; and in
tests/test_kpis_customers.py: 1 inactive customer of 4 on Oct 1 (k5), 2 of 3 on Jul 1 (k1, k2).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from contextlib import nullcontext
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from metrics import access, api, cache, rollup_query, rollups
from storage import database
from storage.schema import customers, usage_events
from tests import kpi_fixtures
from tests.conftest import postgres_database
from tests.kpi_fixtures import dt
from tests.statements import sent_statements

AS_OF = date(2026, 11, 23)
M = 30.4375
QUESTIONS = ("last-quarter", "2026-Q3", "ytd", "monthly last-12-months", "weekly last-8-weeks", "last-month",
             "2026-09-15 to 2026-10-10")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.delenv("KPI_ROLLUPS", raising=False)
    monkeypatch.delenv("KPI_ROLLUP_URL", raising=False)
    cache.reset()
    yield
    rollups.dispose()
    cache.reset()


@pytest.fixture
def company(db_url, monkeypatch, tmp_path):
    if not db_url.startswith(("duckdb", "sqlite")):  # a server database: kpibot's store is configured
        monkeypatch.setenv("KPI_ROLLUP_URL", f"duckdb:///{tmp_path}/rollups.duckdb")
    kpi_fixtures.load(db_url)
    return db_url


def rolled(statement: str) -> bool:
    """Whether a statement reads the rollup (its user-days, its customers' actions, or their per-day tables)."""
    return any(t in statement for t in ("kpibot_user_days", "kpibot_daily_firsts", "kpibot_customer_actions",
                                        "kpibot_daily_pairs"))


def store_reads(url):
    """Statements sent to the rollup store inside."""
    return sent_statements(rollups._store(rollups.store_url(database.get_engine(url))))


def source_answer(url, text, monkeypatch):
    monkeypatch.setenv("KPI_ROLLUPS", "0")
    try:
        with cache.bypassed():
            return api.ask(text, as_of=AS_OF, url=url)
    finally:
        monkeypatch.delenv("KPI_ROLLUPS")


def rollup_answer(url, text):
    with cache.bypassed(), store_reads(url) as sent:
        result = api.ask(text, as_of=AS_OF, url=url)
    return result, sent


def same(a, b) -> bool:
    return (a.value, a.n, a.extras, a.previous.value, [(p.start, p.value, p.n) for p in a.series],
            [(p.start, p.value) for p in a.previous_series], a.notes, a.judgement) == \
           (b.value, b.n, b.extras, b.previous.value, [(p.start, p.value, p.n) for p in b.series],
            [(p.start, p.value) for p in b.previous_series], b.notes, b.judgement)


def test_rollup_answers_equal_source_answers(company, monkeypatch):
    engine = database.get_engine(company)
    assert rollups.refresh(engine) is not None
    hand = {("wau", "last-quarter"): 3, ("mau", "last-quarter"): 4,
            ("core_actions_per_user", "last-quarter"): pytest.approx(7 / 7 * M / 92),
            ("inactive_customers", "last-quarter"): 1,  # k5: a customer since Aug 20, no use in September
            ("core_actions", "last-quarter"): pytest.approx(7 / (92 / 7)),  # 7 core actions in 92 days, per week
            # 7 sessions with a length in Q3: 60, 120, 300, 300, 600, 900, 1200 s (mean 3480 / 7 s)
            ("session_time", "last-quarter"): pytest.approx(3480 / 7 / 60)}
    for kpi in rollups.SERVED:
        for period in QUESTIONS:
            text = f"{kpi} {period}"
            source = source_answer(company, text, monkeypatch)
            served, sent = rollup_answer(company, text)
            # built through Oct 1 (the last event): Q3 and the quarter before come from it, the
            # rest reaches past it, to Nov 23, so the source answers
            assert any(rolled(s) for s in sent) == (period in ("last-quarter", "2026-Q3")), text
            assert same(served, source), text
            if (kpi, period) in hand:
                assert served.value == hand[(kpi, period)], text
    wau, _ = rollup_answer(company, "wau last-quarter")
    assert wau.extras["customers"] == 2
    session, sent = rollup_answer(company, "session_time last-quarter")  # its median: 300 s
    assert session.extras["median"] == 5.0 and session.extras["sessions"] == 7 and any(rolled(s) for s in sent)


# (day, session seconds) after the fixture's last event (Oct 1): the 10-second buckets of the
# two middle sessions of Oct 2-3 differ (14.5 s, 25 s); Oct 4's middle two tie (20 s)
LENGTHS = [("2026-10-02T08:00", 47.0), ("2026-10-02T09:00", 5.0), ("2026-10-02T23:59", 14.5),
           ("2026-10-03T00:00", 25.0), ("2026-10-03T10:00", 12.0), ("2026-10-03T11:00", 31.0),
           ("2026-10-04T10:00", 20.0), ("2026-10-04T11:00", 21.0), ("2026-10-04T12:00", 20.0),
           ("2026-10-04T13:00", 3.0), ("2026-10-04T14:00", None)]


@pytest.mark.parametrize(("period", "sessions", "median"), [
    ("2026-10-02 to 2026-10-03", 6, (14.5 + 25) / 2),  # 5, 12, 14.5 | 25, 31, 47
    ("2026-10-02 to 2026-10-02", 3, 14.5),  # 5, 14.5, 47
    ("2026-10-04 to 2026-10-04", 4, 20.0),  # 3, 20, 20, 21
    ("2026-10-02 to 2026-10-04", 10, 20.0),  # 3, 5, 12, 14.5, 20 | 20, 21, 25, 31, 47
])
def test_the_median_session_reads_only_the_bucket_it_falls_in(company, monkeypatch, period, sessions, median):
    engine = database.get_engine(company)
    with engine.begin() as conn:
        conn.execute(insert(usage_events), [{"customer_id": "k1", "user_id": "u1", "occurred_at": dt(at),
                                             "action": "report", "is_core": False, "session_seconds": secs}
                                            for at, secs in LENGTHS])
    assert rollups.refresh(engine) is not None
    text = f"session_time {period}"
    source = source_answer(company, text, monkeypatch)
    with sent_statements(engine) as from_source:
        served, sent = rollup_answer(company, text)
    assert any(rolled(s) for s in sent) and same(served, source)
    assert served.extras["sessions"] == sessions and served.extras["median"] == pytest.approx(median / 60)
    # the session lengths read: none for the mean, one statement for the median, no median() over them all
    events = [s for s in from_source if "session_seconds" in s]
    assert len(events) == 1 and "median" not in events[0].lower() and "LIMIT" in events[0].upper()


CUTS = ("by region last-quarter", "by industry last-quarter", "by plan 2026-Q3", "by size_band 2026-09",
        "monthly 2026-Q2 to 2026-Q3 by acquisition_channel", "last-quarter where region=EMEA",
        "by plan last-quarter where region=NA", "weekly 2026-Q3 where industry=retail")  # inside the watermark


def breakdown(result) -> dict:
    return {g.group: (g.value, g.n, g.previous) for g in result.breakdown}


def test_breakdowns_and_filters_by_customer_attributes_come_from_the_rollup(company, monkeypatch):
    rollups.refresh(database.get_engine(company))
    # by hand (tests/kpi_fixtures.py): Q3's WAU are k1/u1, k1/u2 (EMEA) and k4/u9 (NA); MAU adds
    # k2/u1 (NA); Q2's MAU is k3/u4 alone (EMEA, Retail, SMB, Starter)
    wau, sent = rollup_answer(company, "wau by region last-quarter")
    assert sent and {g.group: g.value for g in wau.breakdown} == {"EMEA": 2, "NA": 1} and wau.value == 3
    mau, sent = rollup_answer(company, "mau by industry last-quarter")
    assert sent and {g.group: (g.value, g.previous) for g in mau.breakdown} == {"Retail": (2, 1), "Software": (2, None)}
    emea, sent = rollup_answer(company, "mau last-quarter where region=EMEA")
    assert sent and emea.value == 2 and emea.extras["customers"] == 1 and emea.previous.value == 1
    na, sent = rollup_answer(company, "mau by plan last-quarter where region=na")
    assert sent and {g.group: g.value for g in na.breakdown} == {"Starter": 1, "Growth": 1}
    # core actions per user in Q3, by plan: Growth k1/u1 (2), k1/u2 (0), k4/u9 (2): 4 ÷ 3 users;
    # Starter k2/u1 (1), k2/u3 (0), k3/u4 (1): 2 ÷ 3; Free k5/u5 (1): 1 ÷ 1 (per 92 days)
    cap, sent = rollup_answer(company, "core_actions_per_user by plan last-quarter")
    assert sent and {g.group: (g.value, g.n) for g in cap.breakdown} == {
        "Growth": (pytest.approx(4 / 3 * M / 92), 3), "Starter": (pytest.approx(2 / 3 * M / 92), 3),
        "Free": (pytest.approx(M / 92), 1)}
    for kpi in rollups.SERVED:
        for cut in CUTS:
            text = f"{kpi} {cut}"
            source = source_answer(company, text, monkeypatch)
            served, sent = rollup_answer(company, text)
            assert any(rolled(s) for s in sent), text
            assert same(served, source) and breakdown(served) == breakdown(source), text


def test_inactive_customers_come_from_the_rollup(company, monkeypatch):
    engine = database.get_engine(company)
    rollups.refresh(engine)
    # by hand: on Oct 1 k1 and k5 (EMEA) and k2 and k4 (NA) are customers; only k5 (since
    # Aug 20) had no use in September. On Jul 1: k1 (EMEA) and k2 (NA) had none in June, k3 (EMEA) had
    result, sent = rollup_answer(company, "inactive_customers by region last-quarter")
    assert any(rolled(s) for s in sent) and result.value == 1 and result.extras["pct"] == 25.0
    assert {g.group: (g.value, g.previous) for g in result.breakdown} == {"EMEA": (1, 1), "NA": (0, 1)}
    assert result.previous.value == 2
    monkeypatch.setenv("KPI_INACTIVE_DAYS", "20")  # [Sep 11, Oct 1): k2 (Sep 5) and k5 had none
    result, sent = rollup_answer(company, "inactive_customers last-quarter")
    assert any(rolled(s) for s in sent) and result.value == 2 and result.extras["days"] == 20
    assert same(result, source_answer(company, "inactive_customers last-quarter", monkeypatch))
    monkeypatch.delenv("KPI_INACTIVE_DAYS")
    with engine.begin() as conn:  # k5 churned on Sep 15: the customers' copy is stale, the source answers
        conn.execute(update(customers).where(customers.c.customer_id == "k5").values(churned_at=dt("2026-09-15T00:00")))
    database.data_changed(engine)
    result, sent = rollup_answer(company, "inactive_customers last-quarter")
    assert result.value == 0 and not any("kpibot_customers" in s for s in sent)  # k1, k2, k4 all used it


@pytest.mark.parametrize(("question", "series"), [
    # by hand, 30 days before each month's end. Aug 1: k1-k4 customers, k1 none in July (k4 new
    # since Jul 10: not a customer for the whole span). Sep 1: k1, k2, k4, k5; k1 and k2 none in
    # August. Oct 1: k5 none in September.
    ("inactive_customers monthly 2026-Q3", [1, 2, 1]),
    # EMEA: k1 and k3 on Aug 1 (k1 idle), k1 and k5 on Sep 1 (k1) and on Oct 1 (k5)
    ("inactive_customers monthly 2026-Q3 where region=EMEA", [1, 1, 1]),
])
def test_an_inactivity_trend_from_the_rollup(company, monkeypatch, question, series):
    """Each month's end of a trend, by hand, and the same as the source. k4 (a customer since
    Jul 10) is given a day of use on Jul 20: in the span, but not a customer for all of it, so
    it is neither idle nor counted among those who used it."""
    engine = database.get_engine(company)
    with engine.begin() as conn:
        conn.execute(insert(usage_events), [{"customer_id": "k4", "user_id": "u9", "occurred_at": dt("2026-07-20T10:00"),
                                             "action": "dashboard", "is_core": True, "session_seconds": 100.0}])
    database.data_changed(engine)
    rollups.refresh(engine)
    served, sent = rollup_answer(company, question)
    assert any(rolled(s) for s in sent), question
    assert [p.value for p in served.series] == series
    assert same(served, source_answer(company, question, monkeypatch)), question


def source_groupings(url, table):
    """Statements sent to the source database inside that group ``table``'s rows (the data
    version's probe of its latest row is not one)."""
    return sent_statements(url, lambda statement: table in statement and "GROUP BY" in statement.upper())


def test_what_moved_it_comes_from_the_rollup(company, monkeypatch):
    """MAU rose 1 -> 4 from Q2 to Q3 (by hand): by size band Enterprise went 0 -> 3 (k1/u1,
    k1/u2, k4/u9) and SMB 1 -> 1; by plan Growth 0 -> 3 too, but size band is tried first and
    cutting Enterprise by plan names the same users (not narrower): Enterprise explains 100%."""
    from metrics import explain

    engine = database.get_engine(company)
    rollups.refresh(engine)
    monkeypatch.setenv("KPI_ROLLUPS", "0")
    with cache.bypassed():
        source = api.answer("mau last-quarter", as_of=AS_OF, url=company)
    monkeypatch.delenv("KPI_ROLLUPS")
    with cache.bypassed(), source_groupings(company, "usage_events") as events_read, store_reads(company) as sent:
        served = api.answer("mau last-quarter", as_of=AS_OF, url=company)
    assert served.explanation == source.explanation
    assert served.explanation is not None and "Enterprise size band explains 100% of the rise" in served.explanation
    # the answer's statement cut its two periods by every attribute and every pair of them too
    assert not events_read and [("GROUPING SETS" in s.upper()) for s in sent if rolled(s)] == [True]
    rollup_query.forget()  # "what moved it" on its own: every attribute in one statement, then the pair
    with source_groupings(company, "usage_events") as events_read, store_reads(company) as sent:
        found = explain.find(served, engine, api.Settings.from_env())
    assert found is not None and (found.dimension, found.segment, found.amount) == ("size_band", "Enterprise", 3)
    assert not events_read and [("GROUPING SETS" in s.upper()) for s in sent if rolled(s)] == [True, False]


def test_what_moved_core_actions_cuts_by_action_at_the_source_and_by_attributes_in_the_rollup(company, monkeypatch):
    """Core actions are also cut by action, which the rollup does not hold: "what moved it"
    takes the action from the source and the customers' attributes from the rollup, and says
    what the source alone says. By hand: 2 core actions in Q2 (k3/u4, June), 7 in Q3."""
    from metrics import explain

    engine = database.get_engine(company)
    rollups.refresh(engine)
    monkeypatch.setenv("KPI_ROLLUPS", "0")
    with cache.bypassed():
        source = api.answer("core_actions last-quarter", as_of=AS_OF, url=company)
        alone = explain.find(source, engine, api.Settings.from_env())
    monkeypatch.delenv("KPI_ROLLUPS")
    assert source.value == pytest.approx(7 / (92 / 7)) and source.previous.value == pytest.approx(2 / (91 / 7))
    with cache.bypassed(), source_groupings(company, "usage_events") as events_read, store_reads(company) as sent:
        found = explain.find(source, engine, api.Settings.from_env())
    assert found == alone and found is not None
    cuts = [s for s in events_read if "GROUPING SETS" in s.upper() or "GROUP BY" in s.upper()]
    assert cuts and all("industry" not in s for s in cuts)  # the source cut by action alone
    assert any("GROUPING SETS" in s.upper() for s in sent if rolled(s))  # the attributes: in the rollup


ADOPTION = ("by action last-quarter", "last-quarter where action=REPORT", "by industry last-quarter where action=export",
            "by action last-quarter where region=EMEA", "by action monthly 2026-Q2 to 2026-Q3",
            "by plan 2026-Q3 where action=dashboard", "monthly 2026-Q2 to 2026-Q3 where region=na")


def test_feature_adoption_comes_from_the_customers_actions(company, monkeypatch):
    """By hand, 2026-Q3: customers k1-k5 active (5), actions report, export and dashboard seen
    (3): 15 pairs, 7 used (k1 report and export, k2 report and export, k3 report, k4 dashboard,
    k5 report), 46.7%; by action: report 4 of 5, export 2 of 5, dashboard 1 of 5; in EMEA (k1,
    k3, k5): 9 pairs, 4 used. Cut by action and filtered on it too, as the source says, without
    grouping an event."""
    engine = database.get_engine(company)
    rollups.refresh(engine)
    source_answer(company, "feature_adoption last-quarter where region=EMEA", monkeypatch)  # reads the values filtered on
    with source_groupings(company, "usage_events") as events_read:
        served, sent = rollup_answer(company, "feature_adoption last-quarter")
        by_action, _ = rollup_answer(company, "feature_adoption by action last-quarter")
        emea, _ = rollup_answer(company, "feature_adoption last-quarter where region=EMEA")
    assert not events_read and any("kpibot_daily_pairs" in s for s in sent)
    assert served.value == pytest.approx(7 / 15 * 100) and served.extras["pairs"] == 15
    assert {g.group: g.value for g in by_action.breakdown} == {
        "report": pytest.approx(80), "export": pytest.approx(40), "dashboard": pytest.approx(20)}
    assert emea.value == pytest.approx(4 / 9 * 100)
    for question in ADOPTION:
        text = f"feature_adoption {question}"
        source = source_answer(company, text, monkeypatch)
        with source_groupings(company, "usage_events") as events_read:
            served, sent = rollup_answer(company, text)
        assert not events_read and any(rolled(s) for s in sent), text
        assert same(served, source) and breakdown(served) == breakdown(source), text


def test_explanations_equal_the_source_s(company, monkeypatch):
    rollups.refresh(database.get_engine(company))
    explained = 0
    for kpi in rollups.SERVED:
        for period in ("last-quarter", "2026-09", "last-quarter where region=EMEA", "monthly 2026-Q2 to 2026-Q3",
                       "2026-08-15 to 2026-09-30"):
            text = f"{kpi} {period}"
            monkeypatch.setenv("KPI_ROLLUPS", "0")
            with cache.bypassed():
                source = api.answer(text, as_of=AS_OF, url=company)
            monkeypatch.delenv("KPI_ROLLUPS")
            with cache.bypassed(), store_reads(company) as sent:
                served = api.answer(text, as_of=AS_OF, url=company)
            assert any(rolled(s) for s in sent), text
            assert served.explanation == source.explanation, text
            explained += served.explanation is not None
    assert explained >= 10  # 12 of the 20 answers are judged good or bad, so explained


def test_cuts_kept_from_the_answer_equal_the_source_s(company, monkeypatch):
    """The breakdown and the explanation's pair taken from the answer's own statement (the
    kept cuts) equal the source's cells, case-insensitive filters included."""
    from metrics.catalogue import CATALOGUE
    from metrics.engine import compute
    from metrics.periods import Settings

    engine = database.get_engine(company)
    rollups.refresh(engine)
    settings = Settings.from_env()
    windows = [(date(2026, 7, 1), date(2026, 10, 1)), (date(2026, 4, 1), date(2026, 7, 1))]
    found = 0

    def cells(metric, dimension, filters):
        # a segment's median session (an extra no breakdown shows) needs the events: the
        # rollup leaves it out; the answer's own median is checked in the tests above
        return {k: (c.value, c.n, {e: v for e, v in (c.extras or {}).items() if e != "median"}, c.rows)
                for k, c in compute(metric, windows, settings, engine, dimension, filters).items()}

    # core_actions is also cut by action, which the user-days do not hold: its answer keeps no
    # cuts; nor does feature_adoption's (its cuts are statements of their own: rollup_adoption)
    for kpi in (k for k in rollups.SERVED if k not in ("core_actions", "feature_adoption")):
        metric = CATALOGUE[kpi]
        for dimension, filters in (("plan", (("size_band", "enterprise"),)), ("region", (("industry", "RETAIL"),)),
                                   ("industry", ()), ("acquisition_channel", (("plan", "Starter"),))):
            monkeypatch.setenv("KPI_ROLLUPS", "0")
            source = cells(metric, dimension, filters)
            monkeypatch.delenv("KPI_ROLLUPS")
            rollup_query.forget()
            with store_reads(company) as sent:
                compute(metric, windows, settings, engine)  # the answer: its statement keeps the cuts
                kept = cells(metric, dimension, filters)
            assert [s for s in sent if rolled(s)] and sum(rolled(s) for s in sent) == 1
            assert kept == source, (kpi, dimension, filters)
            found += bool(source)
    assert found >= 14  # of 16: WAU has no Starter customer in either period's last week


def test_changed_customers_are_never_served_stale(company, monkeypatch):
    engine = database.get_engine(company)
    rollups.refresh(engine)
    with engine.begin() as conn:  # k4 moves to EMEA: its copy in the store is now stale
        conn.execute(update(customers).where(customers.c.customer_id == "k4").values(region="EMEA"))
    database.data_changed(engine)
    result, sent = rollup_answer(company, "wau by region last-quarter")
    assert {g.group: g.value for g in result.breakdown} == {"EMEA": 3}  # by hand: all three in EMEA now
    assert not any("kpibot_customers" in s for s in sent)
    total, sent = rollup_answer(company, "wau last-quarter")  # no customer attribute: still the rollup
    assert total.value == 3 and any(rolled(s) for s in sent)
    rollups.refresh(engine)  # the customers changed: copied again
    result, sent = rollup_answer(company, "wau by region last-quarter")
    assert {g.group: g.value for g in result.breakdown} == {"EMEA": 3} and any("kpibot_customers" in s for s in sent)


def test_status_says_whether_the_customers_copy_is_used(company, capsys):
    from bot import cli

    engine = database.get_engine(company)
    assert cli.main(["--url", company, "rollups", "refresh"]) == 0
    assert "customer attributes: 7 customers (industry, size_band, region, plan, acquisition_channel); fresh" \
        in capsys.readouterr().out
    with engine.begin() as conn:
        conn.execute(update(customers).where(customers.c.customer_id == "k7").values(plan="Growth"))
    assert cli.main(["--url", company, "rollups", "status"]) == 0
    assert "customer attributes: 7 customers (industry, size_band, region, plan, acquisition_channel); STALE" \
        in capsys.readouterr().out


# as earlier kpibots left it: without previous days, session lengths, or customers' actions
@pytest.mark.parametrize("missing", ["daily", "lengths", "daily_pairs"])
def test_a_rollup_of_an_earlier_layout_is_not_used_until_built_again(company, capsys, missing):
    from bot import cli

    engine = database.get_engine(company)
    assert cli.main(["--url", company, "rollups", "refresh"]) == 0
    with rollups._store(rollups.store_url(engine)).begin() as conn:
        getattr(rollups, missing).drop(conn)
    rollups.dispose()  # a new process
    capsys.readouterr()
    assert cli.main(["--url", company, "rollups", "status"]) == 0
    assert "built by an earlier kpibot and is not used" in capsys.readouterr().out
    served, sent = rollup_answer(company, "mau last-quarter")
    assert served.value == 4 and not any(rolled(s) for s in sent)  # by hand: the source's 4
    assert cli.main(["--url", company, "rollups", "refresh"]) == 0 and not rollups.is_outdated(engine)
    served, sent = rollup_answer(company, "mau last-quarter")
    assert served.value == 4 and any(rolled(s) for s in sent)


def test_the_answer_cache_keys_rollup_answers_by_what_the_asker_may_see(company):
    rollups.refresh(database.get_engine(company))
    text = "mau by region last-quarter"
    api.answer(text, as_of=AS_OF, url=company)  # unguarded (the CLI): cached

    def refuse(needs):
        raise access.AccessDenied("not here")

    access.forget()  # what the KPI reads is derived afresh (a dry run), as in a new process
    with store_reads(company) as sent, pytest.raises(access.AccessDenied):
        api.answer(text, as_of=AS_OF, url=company, authorize=refuse)
    assert not sent  # refused before any work, the rollup's included (its dry run never reads the store)

    def allow(needs):
        pass

    with store_reads(company) as sent:
        guarded = api.answer(text, as_of=AS_OF, url=company, authorize=allow)
    assert any(rolled(s) for s in sent)  # its own entry, computed under its own guard
    assert {g.group: g.value for g in guarded.breakdown} == {"EMEA": 2, "NA": 2}
    with store_reads(company) as sent:
        again = api.answer(text, as_of=AS_OF, url=company, authorize=allow)
    assert not sent and again.breakdown == guarded.breakdown


def test_a_stale_rollup_is_never_used(company, monkeypatch):
    engine = database.get_engine(company)
    rollups.refresh(engine)
    # an import adds a September event (k5/u7 was not active then): the rollup no longer holds
    # every event before its watermark
    with engine.begin() as conn:
        conn.execute(insert(usage_events), [{"customer_id": "k5", "user_id": "u77", "occurred_at": dt("2026-09-20T10:00"),
                                             "action": "report", "is_core": True, "session_seconds": None}])
    database.data_changed(engine)
    result, sent = rollup_answer(company, "mau last-quarter")
    assert result.value == 5 and not any(rolled(s) for s in sent)  # by hand: 4 + u77
    assert result.value == source_answer(company, "mau last-quarter", monkeypatch).value
    rollups.refresh(engine)  # old events changed: the refresh builds it all again
    result, sent = rollup_answer(company, "mau last-quarter")
    assert result.value == 5 and any(rolled(s) for s in sent)


def test_windows_past_the_watermark_read_the_source(company, monkeypatch):
    engine = database.get_engine(company)
    rollups.refresh(engine)
    found = rollups.status(engine)
    assert found is not None
    after = found.built_through.isoformat()
    result, sent = rollup_answer(company, f"mau {after} to {after}")
    assert not any(rolled(s) for s in sent)


def test_an_incremental_refresh_reads_only_new_days(company):
    engine = database.get_engine(company)
    first = rollups.refresh(engine)
    assert first is not None
    with engine.begin() as conn:
        conn.execute(insert(usage_events), [{"customer_id": "k1", "user_id": "u1", "occurred_at": dt("2026-11-22T09:00"),
                                             "action": "report", "is_core": True, "session_seconds": 60.0}])
    chunks: list[date] = []
    again = rollups.refresh(engine, on_chunk=lambda day, rows: chunks.append(day))
    assert again is not None and again.built_through == date(2026, 11, 23)
    # from the last built day (re-read, it may have been partial) on, a month a chunk; nothing older
    start = first.built_through - timedelta(days=1)
    assert chunks[0] == min(rollups._next_month(start), date(2026, 11, 23)) and chunks[-1] == date(2026, 11, 23)
    assert len(chunks) == len({(start.year, start.month), (2026, 11)})


def test_previous_days_are_carried_across_an_incremental_refresh(company, monkeypatch):
    """A user's (and customer's) previous day of use is what makes a window count it once; an
    incremental refresh must find it among the days built before."""
    engine = database.get_engine(company)
    built = rollups.refresh(engine)
    assert built is not None and built.built_through == date(2026, 10, 2)  # the last event: Oct 1
    with engine.begin() as conn:
        conn.execute(insert(usage_events), [
            {"customer_id": c, "user_id": u, "occurred_at": dt(at), "action": "report", "is_core": True,
             "session_seconds": None}
            for c, u, at in (("k1", "u1", "2026-10-03T09:00"), ("k1", "u2", "2026-10-03T11:00"),
                             ("k2", "u1", "2026-10-05T09:00"), ("k1", "u1", "2026-10-06T09:00"))
        ])
    database.data_changed(engine)
    built = rollups.refresh(engine)
    assert built is not None and built.built_through == date(2026, 10, 7)
    store = rollups._store(rollups.store_url(engine))
    d, k = rollups.user_days, rollups.user_keys
    with store.connect() as conn:
        rows = conn.execute(select(d.c.day, k.c.customer_id, k.c.user_id, d.c.prev_day, d.c.customer_prev)
                            .join(k, k.c.user_key == d.c.user_key).where(d.c.day >= date(2026, 9, 28))).all()
    # by hand from tests/kpi_fixtures.py: k1/u1 Sep 10, 28; k1/u2 Sep 25; k2/u1 Sep 5; k4/u9 Sep 30.
    # On Oct 3 k1 has two users: its previous day goes on the row of the lesser key (u1), the
    # other row carries its own day
    assert {(str(r.day)[:10], r.customer_id, r.user_id): (str(r.prev_day)[:10], str(r.customer_prev)[:10]) for r in rows} == {
        ("2026-09-28", "k1", "u1"): ("2026-09-10", "2026-09-25"),
        ("2026-09-30", "k4", "u9"): ("2026-08-15", "2026-08-15"),
        ("2026-10-01", "k1", "u1"): ("2026-09-28", "2026-09-28"),
        ("2026-10-03", "k1", "u1"): ("2026-10-01", "2026-10-01"),
        ("2026-10-03", "k1", "u2"): ("2026-09-25", "2026-10-03"),
        ("2026-10-05", "k2", "u1"): ("2026-09-05", "2026-09-05"),
        ("2026-10-06", "k1", "u1"): ("2026-10-03", "2026-10-03"),
    }
    # the 30 days to Oct 7: k1/u1 (five days), k1/u2, k2/u1 (Oct 5; Sep 5 is before), k4/u9 —
    # 4 users of 3 customers; the 7 days: the same 4 (k4/u9 on Sep 30)
    for text, users in (("mau 2026-10-01 to 2026-10-06", 4), ("wau 2026-10-01 to 2026-10-06", 4)):
        served, sent = rollup_answer(company, text)
        assert any(rolled(s) for s in sent) and (served.value, served.extras["customers"]) == (users, 3), text
        assert same(served, source_answer(company, text, monkeypatch)), text
    # core actions Oct 1-6: u1 on Oct 1, 3, 6, u2 on Oct 3, k2/u1 on Oct 5 = 5 by 3 users, over 6 days
    served, sent = rollup_answer(company, "core_actions_per_user 2026-10-01 to 2026-10-06")
    assert any(rolled(s) for s in sent) and served.value == pytest.approx(5 / 3 * M / 6)


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_the_store_may_be_a_server_database_or_sqlite(kind, tmp_path, monkeypatch):
    """``KPI_ROLLUP_URL`` on another engine than the default DuckDB file: the same statements
    (previous days by window functions, the per-day table, cuts) give the source's answers."""
    url = f"duckdb:///{tmp_path}/m.duckdb"
    kpi_fixtures.load(url)
    where = postgres_database("kpibot_store") if kind == "postgresql" else nullcontext(f"sqlite:///{tmp_path}/store.sqlite")
    with where as store:
        monkeypatch.setenv("KPI_ROLLUP_URL", store)
        try:
            assert rollups.refresh(database.get_engine(url)) is not None
            for text in ("mau last-quarter", "wau by region last-quarter", "core_actions_per_user monthly 2026-Q2 to 2026-Q3",
                         "inactive_customers last-quarter", "mau last-quarter where region=EMEA"):
                served, sent = rollup_answer(url, text)
                source = source_answer(url, text, monkeypatch)
                assert any(rolled(s) for s in sent), text
                assert same(served, source) and breakdown(served) == breakdown(source), text
            # by hand (tests/kpi_fixtures.py): Q3's MAU k1/u1, k1/u2, k2/u1, k4/u9
            assert rollup_answer(url, "mau last-quarter")[0].value == 4
        finally:
            rollups.dispose()


INTERRUPT = textwrap.dedent(
    """
    import os, signal, sys
    from metrics import rollups
    from storage import database

    def die(day, rows):
        os.kill(os.getpid(), signal.SIGKILL)  # killed mid-build, after its first month

    rollups.refresh(database.get_engine(sys.argv[1]), on_chunk=die)
    """
)


def test_an_interrupted_build_leaves_the_previous_rollup_in_use(tmp_path, monkeypatch):
    url = f"duckdb:///{tmp_path}/m.duckdb"
    kpi_fixtures.load(url)
    engine = database.get_engine(url)
    before = rollups.refresh(engine)
    assert before is not None
    with engine.begin() as conn:  # two new months of events: the next build has two chunks
        conn.execute(insert(usage_events), [
            {"customer_id": "k1", "user_id": "u1", "occurred_at": dt(at), "action": "report", "is_core": True,
             "session_seconds": None}
            for at in ("2026-12-05T10:00", "2027-01-05T10:00")
        ])
    database.dispose_all()
    rollups.dispose()
    done = subprocess.run([sys.executable, "-c", INTERRUPT, url], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == -9, done.stderr[-2000:]
    after = rollups.status(engine)
    assert after is not None and after.built_through > before.built_through  # its first month went in whole
    assert after.built_through < date(2027, 1, 6)  # the second never did
    # windows inside the watermark still come from the rollup, and equal the source
    served, sent = rollup_answer(url, "mau last-quarter")
    assert sent and served.value == 4
    assert served.value == source_answer(url, "mau last-quarter", monkeypatch).value
