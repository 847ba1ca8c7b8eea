"""Access by the data a question reads, through the real HTTP endpoint and the fake Slack.

Each attack of issue 15 (items 1, 2, 4, 7) as a hostile user would send it: money KPIs,
reports, digests and alerts from public channels, DMs, mentions and group DMs; a policy file
that says nothing about money; a policy revoked while the bot runs; ``list all`` from a public
channel. The database holds the small survey fixture of ``tests.slack_helpers``: a refusal
must come before any SQL reads money, so what is in the tables does not matter.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, event

from storage.sensitivity import MONEY, columns_read, of_column
from tests.slack_helpers import direct_message, load_fixture, mention
from tests.trust_helpers import new_channel, start_app

FINANCE = "C0FINANCE"
CFO = "U0CFO"

#: Every money leak the issue lists, as asked.
MONEY_QUESTIONS = [
    "profit_per_customer 2026-Q3", "avg_customer_value 2026-Q3", "new_mrr 2026-Q3", "net_new_mrr 2026-Q3",
    "churned_mrr by plan 2026-Q3", "nrr 2026-Q3", "grr 2026-Q3", "revenue_churn 2026-Q3", "marketing_roi 2026-Q3",
    "upsell_opportunities 2026-Q3", "upsell_conversion 2026-Q3", "leads 2026-Q3", "leads_per_dollar 2026-Q3",
    "acquisition 2026-Q3", "profitability 2026-Q3", "revenue 2026-Q3",
]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    url = f"duckdb:///{tmp_path_factory.mktemp('policy') / 'metrics.duckdb'}"
    load_fixture(url)
    return url


@contextmanager
def running(db, tmp_path, policy_text: str | None = None, **settings):
    policy = None
    if policy_text is not None:
        policy = tmp_path / "policy.toml"
        policy.write_text(policy_text)
    with pytest.MonkeyPatch.context() as mp, start_app(
        db, mp, state_url=f"sqlite:///{tmp_path / 'state.sqlite'}", policy=str(policy) if policy else None, **settings
    ) as app:
        yield app


@contextmanager
def money_reads(url: str):
    """Statements sent to the metrics database at ``url`` that read a money column (the
    policy's dry run on its own in-memory schema is not the metrics database)."""
    seen: list = []
    lock = threading.Lock()

    def record(conn, clause, *args):
        if conn.engine.url.render_as_string(hide_password=False) != url:
            return
        try:
            cols = columns_read(clause)
        except Exception:  # noqa: BLE001 - DDL, inserts
            return
        if any(MONEY in of_column(c) for c in cols):
            with lock:
                seen.append(clause)

    event.listen(Engine, "before_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_execute", record)


def refused(reply) -> bool:
    return reply.kind == "private" and "KPI policy" in reply.text


def test_every_money_question_is_refused_in_a_public_channel_before_any_sql(db, tmp_path):
    with running(db, tmp_path) as app, money_reads(db) as reads:
        for question in MONEY_QUESTIONS:
            reply = app.ask(question)
            assert refused(reply), (question, str(reply))
            assert "money" in reply.text
        assert reads == []  # refused before any work: no statement read an amount
        assert app.ask("nps 2026-Q3").kind == "answer"  # the rest stays open


def test_predicted_clv_is_refused_before_the_model_is_fitted(db, tmp_path):
    touched: list = []

    def record(conn, clause, *args):
        if conn.engine.url.render_as_string(hide_password=False) == db and "orders" in str(clause):
            touched.append(clause)

    with running(db, tmp_path) as app:
        # an allowed question first: it builds the index of dimension values (product names
        # among them: vocabulary, not the KPI's data), so what follows is the refusal's work alone
        assert app.ask("nps 2026-Q3").kind == "answer"
        event.listen(Engine, "before_execute", record)
        try:
            reply = app.ask("predicted_clv daily last-year")
        finally:
            event.remove(Engine, "before_execute", record)
    assert refused(reply), str(reply)
    assert touched == [], [str(c) for c in touched]  # no order was read, no model fitted


def test_money_is_refused_in_dms_and_mentions_by_default(db, tmp_path):
    with running(db, tmp_path) as app:
        dm = "D0ALICEDM"
        app.send.event(direct_message("new_mrr 2026-Q3", channel=dm, ts="100.1"))
        [line] = app.fake.wait_for("chat.postMessage", where=app.fake.in_channel(dm), timeout=15)
        assert "KPI policy" in line.text and "$" not in line.text
        ch = new_channel()
        app.send.event(mention("<@UKPIBOT> nrr 2026-Q3", channel=ch, ts="200.1"))
        [line] = app.fake.wait_for("chat.postEphemeral", where=app.fake.in_channel(ch), timeout=15)
        assert "KPI policy" in line.text
        assert not app.fake.calls("chat.postMessage", where=app.fake.in_channel(ch))


def test_digest_and_alert_on_money_are_refused_outside_allowed_channels(db, tmp_path):
    with running(db, tmp_path) as app:
        reply = app.ask("digest add daily 09:00 nps new_mrr")
        assert reply.kind == "private" and "can't post `new_mrr`" in reply.text, str(reply)
        reply = app.ask("alert add new_mrr above 1")
        assert reply.kind == "private" and "can't post `new_mrr`" in reply.text, str(reply)
        ch = new_channel()
        assert "added" in app.ask("alert add nps below 10", channel=ch).text


def test_a_policy_file_without_a_money_section_keeps_money_closed(db, tmp_path):
    with running(db, tmp_path, 'admins = ["U0ADMIN"]\n') as app:
        assert refused(app.ask("revenue 2026-Q3", user="U0ADMIN"))
        assert refused(app.ask("new_mrr 2026-Q3", channel="D0ADMINDM", user="U0ADMIN", timeout=15))
        assert app.ask("nps 2026-Q3").kind == "answer"


def test_an_edited_policy_is_applied_to_the_next_question_and_alert(db, tmp_path):
    policy = f'[sensitivity.money]\nchannels = ["{FINANCE}"]\n'
    with running(db, tmp_path, policy) as app:
        assert app.ask("revenue 2026-Q3", channel=FINANCE).kind == "answer"
        path = tmp_path / "policy.toml"
        path.write_text('[sensitivity.money]\nchannels = ["C0OTHER"]\n')  # revoked while running
        assert refused(app.ask("revenue 2026-Q3", channel=FINANCE))
        assert "can't post" in app.ask("alert add revenue above 1", channel=FINANCE).text
        path.write_text(policy)
        assert "added" in app.ask("alert add revenue above 1", channel=FINANCE).text


def test_a_group_dm_shows_money_only_if_every_member_may_see_it(db, tmp_path):
    policy = f'[sensitivity.money]\nusers = ["{CFO}"]\n'
    with running(db, tmp_path, policy) as app:
        app.fake.members["G0MIXED"] = [CFO, "U0BOB", "UKPIBOT"]
        app.fake.members["G0CFOS"] = [CFO, "UKPIBOT"]
        app.fake.members["D0CFOBOB"] = [CFO, "U0BOB"]  # a DM between two people
        app.fake.members["D0CFOBOT"] = [CFO, "UKPIBOT"]

        def ask(channel: str, name: str):
            after = app.last_seq()
            started = time.monotonic()
            _, url = app.send.command("revenue 2026-Q3", channel=channel, user=CFO, channel_name=name)
            return app.wait_reply(channel, url, started, after=after)

        assert refused(ask("G0MIXED", "mpdm-cfo--bob-1"))
        assert refused(ask("D0CFOBOB", "directmessage"))
        app.fake.members["G0UNKNOWN"] = []
        del app.fake.members["G0UNKNOWN"]  # conversations.members fails: closed
        assert refused(ask("G0UNKNOWN", "mpdm-cfo--carol-1"))
        assert ask("G0CFOS", "mpdm-cfo-1").kind == "answer"
        assert ask("D0CFOBOT", "directmessage").kind == "answer"
        assert app.fake.calls("conversations.members")


def test_list_all_from_a_public_channel_hides_finance_rules(db, tmp_path):
    policy = f'[sensitivity.money]\nchannels = ["{FINANCE}"]\n'
    with running(db, tmp_path, policy) as app:
        assert "added" in app.ask("alert add revenue above 12345", channel=FINANCE).text
        assert "added" in app.ask("digest add daily 09:00 mrr", channel=FINANCE).text
        public = new_channel()
        assert "added" in app.ask("alert add nps below 7", channel=public).text
        alerts = app.ask("alert list all", channel=public).text
        digests = app.ask("digest list all", channel=public).text
        assert "12345" not in alerts and "12,345" not in alerts and "revenue" not in alerts
        assert "nps" in alerts
        assert "mrr" not in digests and FINANCE not in digests
        assert "12" in app.ask("alert list all", channel=FINANCE).text
        assert "mrr" in app.ask("digest list all", channel=FINANCE).text


def test_one_user_flooding_gets_told_and_holds_at_most_two_workers(db, tmp_path):
    """A user with two questions in flight is told so at once; their flood never queues more."""
    with running(db, tmp_path, user_in_flight=2, compute_slots=1, workers=4) as app:
        app.bot.compute.acquire()  # every compute slot busy: the flood's questions stay in flight
        held = True
        try:
            sent = [app.send.command("nps 2026-Q3", channel=new_channel(), user="U0FLOOD") for _ in range(2)]
            deadline = time.monotonic() + 10
            while app.bot._in_flight.get("U0FLOOD", 0) < 2:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            for _ in range(3):
                third = app.ask("nps 2026-Q3", user="U0FLOOD")
                assert third.kind == "private" and "You have 2 questions running" in third.text, str(third)
            assert app.bot._in_flight["U0FLOOD"] == 2  # the refused ones hold nothing
            app.bot.compute.release()
            held = False
            other = app.ask("nps 2026-Q3", user="U0OTHER")
            assert other.kind == "answer"
        finally:
            if held:
                app.bot.compute.release()
        for resp, _url in sent:
            assert resp.status == 200
        deadline = time.monotonic() + 15
        while app.bot._in_flight.get("U0FLOOD"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert app.ask("nps 2026-Q3", user="U0FLOOD").kind == "answer"  # done: may ask again
