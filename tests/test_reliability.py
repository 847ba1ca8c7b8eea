"""Trust, end to end: faults, the access policy and rate limits, through the real HTTP app.

Everything goes the way Slack would send it (signed requests to the app under uvicorn on
loopback) and comes back through the fake Slack Web API (:mod:`tests.fake_slack`).

* **Database down / hung / slow** — the metrics URL points at a PostgreSQL database created
  for this module, through :class:`tests.faults.TcpProxy`: ``down()`` resets and refuses
  connections (a crashed server), ``hang()`` accepts and never answers, and a lock taken from
  another connection makes queries wait until ``statement_timeout`` (``KPI_QUERY_TIMEOUT``)
  fires. DuckDB gets the same timeout through ``interrupt()``. The user gets one clear line
  within seconds, the process stays up, and answers resume when the database is back.
* **Schedules through an outage** — digests and alerts due while the database (or Slack)
  is down are delivered once it is back, exactly once, also by a freshly started process.
* **Slack faults** — 429 with Retry-After, 5xx, and an outage longer than the retries.
* **Crashes** — a failing handler or listener never takes the process down; malformed
  payloads get a 400 and a log line.
* **Policy** — per channel, per DM, per-customer answers; digests and alerts checked when
  added and at every delivery; only the creator or an admin may remove or change them.
* **Rate limits** — per user and per channel, with a friendly line.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import duckdb
import pytest
from sqlalchemy import create_engine, insert, text

from bot import audit
from bot.ratelimit import Limits
from bot.schedules import store
from bot.schedules.config import Config
from bot.schedules.parse import parse_alert, parse_digest
from bot.schedules.scheduler import ScheduleService
from bot.slack_client import make_client
from metrics import cache as answer_cache
from metrics.catalogue import CATALOGUE
from storage import database, state
from storage.schema import customers, orders, survey_responses
from tests.conftest import PG_ADMIN_URL
from tests.fake_slack import FakeSlack
from tests.faults import TcpProxy
from tests.slack_helpers import BOT_TOKEN, EXPECTED_NPS, QUESTION, load_fixture
from tests.test_schedules_support import add_nps_days, posts, slack_down, slack_up
from tests.trust_helpers import new_channel, start_app, use_env
from tests.waiting import wait_until

QUERY_TIMEOUT = 2.0  # KPI_QUERY_TIMEOUT for the PostgreSQL engine (set before it is created)
CLEAR_WITHIN = 6.0  # "one clear line within a few seconds"


def message(reply) -> str:
    return reply.call.params.get("text") or ""


def assert_one_clear_line(reply, *, within: float = CLEAR_WITHIN, mentions: str = "database") -> None:
    line = message(reply)
    assert reply.kind == "private", reply
    assert reply.elapsed < within, f"took {reply.elapsed:.1f}s: {line}"
    assert "\n" not in line.strip() and len(line) < 300, line
    assert mentions in line, line
    assert "Traceback" not in reply.text and "psycopg" not in reply.text and "sqlalchemy" not in reply.text


# ---- PostgreSQL behind a switchable proxy -----------------------------------------------------


def _pg_admin():
    try:
        engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return engine
    except Exception as exc:  # noqa: BLE001 - any failure means "no server here"
        pytest.skip(f"PostgreSQL not available at {PG_ADMIN_URL}: {str(exc).splitlines()[0]}")


@pytest.fixture(scope="module")
def pg_app(tmp_path_factory):
    """A PostgreSQL database of this module's own, reached only through a TcpProxy."""
    admin = _pg_admin()
    name = f"kpibot_reliability_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    server = admin.url.set(database=name)
    proxy = TcpProxy(server.host or "127.0.0.1", server.port or 5432).start()
    url = server.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    direct = create_engine(server.render_as_string(hide_password=False))
    root = tmp_path_factory.mktemp("pg")
    try:
        timeout = {"KPI_QUERY_TIMEOUT": str(QUERY_TIMEOUT)}  # read when the engine is made, and per query
        with pytest.MonkeyPatch.context() as mp:
            use_env(mp, timeout)
            load_fixture(url)
        with start_app(url, state_url=f"sqlite:///{root / 'state.sqlite'}", env=timeout) as app:
            app.proxy, app.url, app.direct, app.root = proxy, url, direct, root
            yield app
    finally:
        proxy.close()
        database.dispose_all()
        direct.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg(pg_app, monkeypatch):
    """The PostgreSQL app, with its settings (the 2 s query timeout) for this test only."""
    return pg_app.entered(monkeypatch)


def test_database_down_then_back_without_a_restart(pg):
    assert f"*{EXPECTED_NPS}*" in pg.ask(QUESTION).text
    with pg.proxy.outage():
        for _ in range(3):  # every question in the outage gets the same clear line, fast
            assert_one_clear_line(pg.ask(QUESTION), within=3.0)
        assert pg.healthy()
        help_reply = pg.ask("help")  # what needs no database still works
        assert help_reply.kind == "private" and "/kpi" in help_reply.text
    back = pg.ask(QUESTION)
    assert back.kind == "answer" and f"*{EXPECTED_NPS}*" in back.text


def test_database_that_stops_answering_gets_the_connect_timeout(pg):
    database.get_engine(pg.url).dispose()  # new connections: libpq's connect_timeout=3 applies
    with pg.proxy.outage("hang"):
        reply = pg.ask(QUESTION)
        assert_one_clear_line(reply)
        assert reply.elapsed >= 2.5  # it did wait for the server, then gave up
        assert pg.healthy()
    assert pg.ask(QUESTION).kind == "answer"


def test_slow_query_is_stopped_by_statement_timeout(pg):
    holder = pg.direct.connect()
    tx = holder.begin()
    holder.execute(text("LOCK TABLE survey_responses IN ACCESS EXCLUSIVE MODE"))  # SELECTs now wait
    try:
        started = time.monotonic()
        reply = pg.ask(QUESTION)
        assert_one_clear_line(reply, within=QUERY_TIMEOUT + 3)
        assert reply.elapsed >= QUERY_TIMEOUT - 0.2 and "statement timeout" in message(reply)
        working = pg.fake.calls("response_url", where=lambda c: "Working on it" in c.text and c.at > started)
        assert len(working) == 1  # told it was being worked on, then the one clear line
    finally:
        tx.rollback()
        holder.close()
    assert pg.ask(QUESTION).kind == "answer"


def test_server_going_silent_on_a_pooled_connection(pg):
    assert pg.ask(QUESTION).kind == "answer"  # the pool now holds a live connection
    pg.proxy.hang()
    try:
        reply = pg.ask(QUESTION, timeout=QUERY_TIMEOUT + 4)
        assert_one_clear_line(reply)
        assert "stopped answering" in message(reply)
        assert pg.healthy()
    finally:
        pg.proxy.up()
    assert pg.ask(QUESTION).kind == "answer"  # the cut connection was dropped from the pool


def _service(app, client, **overrides) -> ScheduleService:
    """A schedule service as a newly started process would build it."""
    config = Config(grace=timedelta(hours=6), **overrides)
    return ScheduleService(client, state_url=f"sqlite:///{app.root / 'state.sqlite'}", metrics_url=app.url,
                           config=config)


@pytest.fixture
def surveys_through_sep_29(pg):
    """A CSAT answer on Tue 29 Sep: the survey data then reaches the end of the alert's window
    (an alert holds on a window that is not fully loaded). NPS answers are left as they are."""
    row = {"response_id": "fresh-0929", "responded_at": datetime(2026, 9, 29, 12), "survey": "csat", "score": 5}
    with pg.direct.begin() as conn:
        conn.execute(insert(survey_responses), [row])
    yield
    with pg.direct.begin() as conn:
        conn.execute(survey_responses.delete().where(survey_responses.c.response_id == "fresh-0929"))


@pytest.mark.usefixtures("surveys_through_sep_29")
def test_digest_and_alert_due_during_the_outage_are_delivered_once_it_ends(pg):
    client = make_client(BOT_TOKEN, base_url=pg.fake.api_url)  # the bot's own retry policy
    engine = state.get_state_engine(f"sqlite:///{pg.root / 'state.sqlite'}")
    created = datetime(2026, 9, 29, tzinfo=UTC)
    digest_channel, alert_channel = new_channel("CDIG"), new_channel("CALR")
    digest = store.add_digest(engine, parse_digest("daily 09:00 UTC nps".split(), default_tz="UTC"),
                              channel_id=digest_channel, created_by="U0ALICE", now=created)
    spec = parse_alert("nps below 90 over 90d min 5".split(), default_tz="UTC")
    store.add_rule(engine, spec, spec.describe(CATALOGUE["nps"]), channel_id=alert_channel, owner="U0ALICE",
                   now=created)
    slot = datetime(2026, 9, 30, 9, tzinfo=UTC)

    with pg.proxy.outage():
        first = _service(pg, client)
        assert first.run_due(slot + timedelta(minutes=1)).failed == [f"digest:{digest.id}:2026-09-30T09:00"]
        notes = first.evaluate_alerts(slot + timedelta(minutes=1)).notes
        assert any("read failed" in n for n in notes), notes
        assert first.retry_failed(slot + timedelta(minutes=6)).failed  # still down: kept, not lost
        assert not posts(pg.fake, digest_channel) and not posts(pg.fake, alert_channel)
    # the process that saw the outage is gone; a new one starts after the database is back
    del first
    second = _service(pg, client)
    out = second.retry_failed(slot + timedelta(minutes=20))
    assert out.posted == [f"digest:{digest.id}:2026-09-30T09:00"]
    assert second.evaluate_alerts(slot + timedelta(minutes=20)).notes
    [late] = posts(pg.fake, digest_channel)
    assert "⏰ _Late: this digest was due" in late.text and "not answering" in late.text
    [fired] = posts(pg.fake, alert_channel)
    assert "Alert #" in fired.text and "Net Promoter Score" in fired.text
    # nothing more on later passes: exactly once each
    second.tick(slot + timedelta(minutes=40))
    _service(pg, client).tick(slot + timedelta(minutes=45))
    assert len(posts(pg.fake, digest_channel)) == 1 and len(posts(pg.fake, alert_channel)) == 1
    assert audit.flush(60)
    outcomes = [(r["surface"], r["outcome"]) for r in audit.latest(200) if r["channel_id"] == digest_channel]
    assert ("digest", "failed") in outcomes and ("digest", "delivered") in outcomes


# ---- DuckDB: the watchdog's interrupt() --------------------------------------------------------


@pytest.fixture(scope="module")
def big_duck_app(tmp_path_factory):
    """1M customers, each in a region of its own, each with an NPS answer in 2026-Q3: a breakdown
    by region joins 1M rows to 1M and groups them 1M ways (~0.5 s here), behind the running app."""
    root = tmp_path_factory.mktemp("bigduck")
    path = root / "big.duckdb"
    url = f"duckdb:///{path}"
    database.get_engine(url)
    database.dispose_all()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO customers (customer_id, name, signed_up_at, region, is_paying) "
                "SELECT 'c' || i, 'Customer ' || i, TIMESTAMP '2025-01-01', 'region-' || i, true FROM range(1000000) t(i)")
    con.execute(
        "INSERT INTO survey_responses (response_id, customer_id, responded_at, survey, score, touchpoint) "
        "SELECT 'r' || i, 'c' || i, TIMESTAMP '2026-07-01' + INTERVAL (i % 7776000) SECOND, 'nps', "
        "(i * 7) % 11, 'tp' || (i % 50) FROM range(1000000) t(i)"
    )
    con.close()
    with start_app(url, state_url=f"sqlite:///{root / 's.sqlite'}") as app:
        yield app
    database.dispose_all()  # no DuckDB connection outlives its app (they would be reported as leaks at exit)


@pytest.fixture
def big_duck(big_duck_app, monkeypatch):
    return big_duck_app.entered(monkeypatch)


def test_duckdb_query_over_the_timeout_is_interrupted_and_the_next_one_answers(big_duck, monkeypatch):
    question = "nps by region 2026-Q3"
    warm = big_duck.ask(question, timeout=30)
    assert warm.kind == "answer" and "More than 1000 segments" in warm.text
    # (a deadline that passes while the statement is still being compiled, before DuckDB runs it,
    # finds nothing to interrupt: hence a query several times longer than the timeout)
    monkeypatch.setenv("KPI_QUERY_TIMEOUT", "0.1")
    monkeypatch.setenv("KPI_ANSWER_CACHE_MB", "0")  # the same question again must run, not be a look-up
    answer_cache.reset()
    try:
        reply = big_duck.ask(question)
        assert_one_clear_line(reply, within=3.0, mentions="took too long")
        assert big_duck.healthy()
        monkeypatch.setenv("KPI_QUERY_TIMEOUT", "20")
        again = big_duck.ask(question, timeout=30)
        assert again.kind == "answer" and "More than 1000 segments" in again.text
    finally:
        monkeypatch.delenv("KPI_ANSWER_CACHE_MB")
        answer_cache.reset()


# ---- Slack faults --------------------------------------------------------------------------


def duck_metrics(url: str) -> str:
    """The metrics of ``duck_app``: the Slack fixture, one order and three customers."""
    load_fixture(url)
    with database.get_engine(url).begin() as conn:
        conn.execute(insert(orders), [{"order_id": "o1", "customer_id": "c1", "ordered_at": datetime(2026, 8, 10),
                                       "amount": 1000.0, "product": "pro", "is_recurring": False}])
        conn.execute(insert(customers), [{"customer_id": f"c{i}", "name": f"Customer {i}",
                                          "signed_up_at": datetime(2025, 1, 1), "region": "EU"} for i in range(3)])
    return url


@pytest.fixture(scope="module")
def duck_app_module(tmp_path_factory):
    root = tmp_path_factory.mktemp("duckapp")
    url = duck_metrics(f"duckdb:///{root / 'metrics.duckdb'}")
    policy = root / "policy.toml"
    policy.write_text('admins = ["U0ADMIN"]\n[sensitivity.money]\nchannels = ["C0FINANCE"]\nusers = ["U0CFO"]\n'
                      '[sensitivity.per_customer]\nchannels = ["C0FINANCE"]\n')
    with start_app(url, state_url=f"sqlite:///{root / 'state.sqlite'}", policy=str(policy)) as app:
        app.url, app.root, app.policy_path = url, root, policy
        yield app
    database.dispose_all()


@pytest.fixture
def duck_app(duck_app_module, monkeypatch):
    return duck_app_module.entered(monkeypatch)


def test_slack_down_longer_than_the_retries_loses_that_reply_but_not_the_process(duck_app):
    ch = new_channel()
    in_ch = duck_app.fake.in_channel(ch)
    post_down = duck_app.fake.fail("chat.postMessage", status=503, times=10_000, when=lambda p: p.get("channel") == ch)
    # chat.postMessage down for this channel: the slash command's response_url still carries the answer
    resp, url = duck_app.send.command(QUESTION, channel=ch)
    fallback = duck_app.fake.reply_to(url)
    assert fallback.params["response_type"] == "in_channel" and f"*{EXPECTED_NPS}*" in fallback.text
    attempts = duck_app.fake.calls("chat.postMessage", ok=None, where=in_ch)
    assert [a.status for a in attempts] == [503, 503, 503]  # first try + 2 retries with backoff
    assert attempts[-1].at - attempts[0].at >= 0.3 * (1 + 2)  # backoff 0.3 s, then 0.6 s (plus jitter)
    # both ways down: that reply is lost, logged and audited with an error id; the process carries on
    webhook_down = duck_app.fake.fail("response_url", status=503, times=10_000)
    duck_app.send.command(QUESTION, channel=ch)

    def error_rows() -> list[dict]:
        assert audit.flush(30)
        return [r for r in audit.latest(50) if r["channel_id"] == ch and r["outcome"] == "error"]

    [row] = wait_until(error_rows, what="the lost reply's audit row")
    assert row["error_id"] and row["detail"] == "the reply could not be delivered to Slack"
    assert duck_app.healthy()
    post_down.times = webhook_down.times = 0  # Slack is back
    assert duck_app.ask(QUESTION, channel=ch).kind == "answer"


def test_a_report_also_falls_back_to_the_response_url_when_posting_fails(duck_app):
    ch = new_channel()
    fault = duck_app.fake.fail("chat.postMessage", status=503, times=10_000, when=lambda p: p.get("channel") == ch)
    try:
        _, url = duck_app.send.command("complaints 2026-Q3", channel=ch)
        reply = duck_app.fake.reply_to(url)
    finally:
        fault.times = 0
    assert reply.params["response_type"] == "in_channel" and "error id" not in reply.text


def test_digest_through_429_and_a_restart_is_posted_exactly_once(tmp_path, duck_app):
    client = make_client(BOT_TOKEN, base_url=duck_app.fake.api_url)
    state_url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    metrics_url = duck_metrics(f"duckdb:///{tmp_path / 'metrics.duckdb'}")  # its own: it adds answers
    add_nps_days(metrics_url, date(2026, 10, 1), 3, 5, 2, 1)
    ch = new_channel("CDIG")
    digest = store.add_digest(state.get_state_engine(state_url), parse_digest("daily 09:00 UTC nps".split(),
                              default_tz="UTC"), channel_id=ch, created_by="U0ALICE", now=datetime(2026, 10, 1, tzinfo=UTC))
    slot = datetime(2026, 10, 3, 9, tzinfo=UTC)
    svc = ScheduleService(client, state_url=state_url, metrics_url=metrics_url)
    # Slack is down for every post: the delivery is recorded as failed, kept for retry
    down = slack_down(duck_app.fake)
    assert svc.run_due(slot).failed
    slack_up(down)
    # "restart": a new process finds it and retries; Slack rate-limits the first call once
    # (only this digest's upload: the shared bot may still be uploading an earlier test's chart)
    def ours(params: dict) -> bool:
        return str(params.get("filename", "")).startswith(f"kpi-digest-{digest.id}-2026-10-0")

    duck_app.fake.fail("files.getUploadURLExternal", status=429, retry_after=1, when=ours)
    restarted = ScheduleService(client, state_url=state_url, metrics_url=metrics_url)
    assert restarted.retry_failed(slot + timedelta(minutes=5)).posted == [f"digest:{digest.id}:2026-10-03T09:00"]
    limited = duck_app.fake.calls("files.getUploadURLExternal", ok=None, where=lambda c: c.status == 429 and ours(c.params))
    after = [c for c in duck_app.fake.calls("files.getUploadURLExternal", ok=True, where=lambda c: ours(c.params))
             if c.seq > limited[-1].seq]
    assert after and after[0].at - limited[-1].at >= 0.9  # waited for Retry-After: 1
    restarted.tick(slot + timedelta(minutes=10))
    assert len(posts(duck_app.fake, ch)) == 1


# ---- crashes and malformed payloads --------------------------------------------------------------


def test_a_crashing_handler_gets_an_error_id_and_the_process_stays_up(duck_app, monkeypatch):
    import bot.app

    def broken(*_args, **_kwargs):
        raise ZeroDivisionError("a bug in a handler")

    with monkeypatch.context() as patched:
        patched.setattr(bot.app, "route", broken)
        replies = [duck_app.ask(QUESTION) for _ in range(3)]
    for reply in replies:
        assert reply.kind == "private" and "error id" in reply.text
        assert "ZeroDivisionError" not in reply.text and "Traceback" not in reply.text
    assert duck_app.healthy() and duck_app.ask(QUESTION).kind == "answer"


def test_a_crashing_listener_never_takes_the_process_down(duck_app, monkeypatch, caplog):
    class Broken:
        def check(self, user_id, channel_id):
            raise RuntimeError("the listener broke")

    with monkeypatch.context() as patched, caplog.at_level("ERROR"):
        patched.setattr(duck_app.bot, "limits", Broken())  # runs inside the listener, right after ack()
        resp, _ = duck_app.send.command(QUESTION, channel=new_channel())
        # acked at once by the endpoint; the listener runs after the response and its crash is
        # caught and logged (Bolt would answer 404 after 3 s if it raised after ack())
        assert resp.status == 200 and b"listener broke" not in resp.body
        # the listener runs on the dispatch thread, after the 200
        wait_until(lambda: [r for r in caplog.records if r.getMessage() == "submit_failed"], what="submit_failed")
    [line] = [r for r in caplog.records if r.getMessage() == "submit_failed"]
    assert line.fields["error_id"] and line.exc_info
    assert duck_app.healthy() and duck_app.ask(QUESTION).kind == "answer"


def test_malformed_payloads_get_a_400_and_a_log_line(duck_app, caplog):
    with caplog.at_level("WARNING", logger="kpibot.server"):
        assert duck_app.send.post(b"\xff\xfe not utf-8", "application/x-www-form-urlencoded").status == 400
        assert duck_app.send.post(b'{"type": "event_callback", "event": ', "application/json").status == 400
    lines = [r for r in caplog.records if r.getMessage() == "malformed_request"]
    assert len(lines) == 2 and all(r.fields["status"] == 400 for r in lines)
    assert duck_app.healthy()


# ---- the access policy end to end ----------------------------------------------------------------


def test_financial_answers_follow_the_policy_in_channels_and_dms(duck_app):
    refused = duck_app.ask("revenue 2026-Q3")
    assert refused.kind == "private" and "KPI policy" in refused.text and "1,000" not in refused.text
    assert duck_app.ask("revenue 2026-Q3", channel="C0FINANCE").kind == "answer"
    from tests.slack_helpers import direct_message

    for user, allowed in (("U0CFO", True), ("U0BOB", False)):
        dm = new_channel("D")
        duck_app.send.event(direct_message("revenue 2026-Q3", channel=dm, ts=f"{time.time():.6f}", user=user))
        [post] = duck_app.fake.wait_for("chat.postMessage", where=duck_app.fake.in_channel(dm))
        assert ("$1,000" in post.text) == allowed, post.text
        assert ("KPI policy" in post.text) != allowed
    # per-customer answers (the profitability report ranks customers by profit) follow the financial rules
    per_customer = duck_app.ask("profitability 2026-Q3")
    assert per_customer.kind == "private" and "KPI policy" in per_customer.text
    assert "Customer" not in per_customer.text
    assert duck_app.ask("profitability 2026-Q3", channel="C0FINANCE").kind == "answer"


def test_digests_and_alerts_obey_the_policy_when_added(duck_app):
    ch = new_channel()
    refused = duck_app.ask("digest add daily 09:00 UTC nps revenue", channel=ch)
    assert "KPI policy" in refused.text and "`revenue`" in refused.text
    refused = duck_app.ask("alert add revenue below 10", channel=ch)
    assert "KPI policy" in refused.text
    added = duck_app.ask("digest add daily 09:00 UTC nps revenue", channel="C0FINANCE")
    assert "Digest #" in added.text and "added" in added.text
    assert audit.flush(60)
    rows = [r for r in audit.latest(50) if r["channel_id"] == ch and r["command"] in ("digest", "alert")]
    assert rows and all(r["outcome"] == "refused-policy" and r["allowed"] is False for r in rows)


def test_digests_and_alerts_obey_the_policy_at_every_delivery(duck_app, tmp_path, monkeypatch):
    """Added while allowed; the policy is then tightened: nothing restricted goes out."""
    fake = FakeSlack(token=BOT_TOKEN).start()
    try:
        client = make_client(BOT_TOKEN, base_url=fake.api_url)
        state_url = f"sqlite:///{tmp_path / 'state.sqlite'}"
        engine = state.get_state_engine(state_url)
        now = datetime(2026, 10, 1, tzinfo=UTC)
        metrics_url = duck_metrics(f"duckdb:///{tmp_path / 'metrics.duckdb'}")  # its own: it adds answers
        add_nps_days(metrics_url, date(2026, 9, 20), 12, 10, 2, 8)
        mixed = store.add_digest(engine, parse_digest("daily 09:00 UTC nps revenue".split(), default_tz="UTC"),
                                 channel_id="CMIXED", created_by="U0ALICE", now=now)
        money = store.add_digest(engine, parse_digest("daily 09:00 UTC revenue".split(), default_tz="UTC"),
                                 channel_id="CMONEY", created_by="U0ALICE", now=now)
        spec = parse_alert("revenue below 1000000000".split(), default_tz="UTC")
        store.add_rule(engine, spec, "revenue below 1bn", channel_id="CMONEY", owner="U0ALICE", now=now)
        # the policy now in force allows financial KPIs nowhere but C0FINANCE
        slot = datetime(2026, 10, 2, 9, tzinfo=UTC)
        svc = ScheduleService(client, state_url=state_url, metrics_url=metrics_url)
        out = svc.tick(slot)
        [post] = posts(fake, "CMIXED")
        assert "Net Promoter Score" in post.text and "Revenue" not in post.text.split("Not shown")[0]
        assert "Not shown: `revenue` — the KPI policy does not allow it here" in post.text
        assert f"digest:{money.id}:2026-10-02T09:00" in out.failed
        [report] = posts(fake, "CMONEY")  # the only thing said there: why nothing was posted
        assert "could not be posted" in report.text and "KPI policy" in report.text and "$" not in report.text
        assert not fake.calls("chat.postMessage", where=lambda c: "Alert #" in c.text)
        assert mixed.id != money.id
        assert audit.flush(60)
        refused = {(r["surface"], r["channel_id"]) for r in audit.latest(50) if r["outcome"] == "refused-policy"}
        assert {("digest", "CMIXED"), ("digest", "CMONEY"), ("alert", "CMONEY")} <= refused
    finally:
        fake.stop()


def test_only_the_creator_or_an_admin_may_remove_or_change(duck_app):
    ch = new_channel()
    added = duck_app.ask("digest add weekly mon 09:00 UTC nps", channel=ch, user="U0ALICE")
    digest_id = added.text.split("Digest #")[1].split()[0]
    alert = duck_app.ask("alert add nps below 10", channel=ch, user="U0ALICE")
    alert_id = alert.text.split("Alert #")[1].split()[0]
    for words in (f"digest remove {digest_id}", f"alert remove {alert_id}", f"alert snooze {alert_id} 2d"):
        refused = duck_app.ask(words, channel=ch, user="U0MALLORY")
        assert "Only <@U0ALICE>" in refused.text and "admin" in refused.text, refused.text
    assert "snoozed" in duck_app.ask(f"alert snooze {alert_id} 2d", channel=ch, user="U0ALICE").text
    assert "removed" in duck_app.ask(f"alert remove {alert_id}", channel=ch, user="U0ADMIN").text
    assert "removed" in duck_app.ask(f"digest remove {digest_id}", channel=ch, user="U0ALICE").text


# ---- rate limits end to end -------------------------------------------------------------------------


def test_per_user_and_per_channel_rate_limits_answer_with_a_friendly_line(duck_app, monkeypatch):
    monkeypatch.setenv("KPI_USER_BURST", "2")
    monkeypatch.setenv("KPI_USER_PER_MINUTE", "1")
    monkeypatch.setenv("KPI_CHANNEL_BURST", "3")
    monkeypatch.setenv("KPI_CHANNEL_PER_MINUTE", "1")
    saved, duck_app.bot.limits = duck_app.bot.limits, Limits()
    try:
        user_replies = [duck_app.ask(QUESTION, user="U0EAGER") for _ in range(3)]
        busy = new_channel()
        channel_replies = [duck_app.ask(QUESTION, channel=busy, user=f"U0P{i}") for i in range(4)]
    finally:
        duck_app.bot.limits = saved
    assert [r.kind for r in user_replies] == ["answer", "answer", "private"]
    assert "You're asking faster than I can keep up — try again in" in user_replies[2].text
    assert [r.kind for r in channel_replies[:3]] == ["answer"] * 3
    assert "This channel is asking a lot at once — try again in" in channel_replies[3].text
    assert duck_app.ask(QUESTION).kind == "answer"  # others are not affected
