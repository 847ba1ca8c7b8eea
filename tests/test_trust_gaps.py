"""Issue 15, the attacks the first passes left without an HTTP test of their own.

Each one is sent as a hostile user would, signed, to the running HTTP app, against the fake
Slack (:mod:`tests.trust_helpers`): a replay of one slash command on two replicas, money in a
thread and in a group DM reached by a mention, schedule commands that fail or are refused,
a flood of ``by`` alerts, and one deadline for a whole question.
"""

from __future__ import annotations

import time
import uuid
from contextlib import ExitStack
from urllib.parse import urlencode

import pytest
import redis
from sqlalchemy import text

from bot import audit, health
from bot.dedupe import make_deduper
from bot.schedules import store
from storage import state
from tests.conftest import postgres_database
from tests.slack_helpers import QUESTION, http_request, load_fixture, mention, signed_headers
from tests.trust_helpers import new_channel, start_app

REDIS_URL = "redis://127.0.0.1:6379/0"
CFO = "U0CFO"


@pytest.fixture
def nps_url(tmp_path):
    url = f"duckdb:///{tmp_path / 'metrics.duckdb'}"
    load_fixture(url)
    return url


def _wait(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.parametrize("store_kind", ["state-database", "postgresql", "redis"])
def test_a_replayed_slash_command_is_answered_once_across_replicas(store_kind, nps_url, tmp_path, monkeypatch):
    """Attack 7: the same signed request (same trigger_id), captured and sent to each replica;
    the shared store is a SQLite or PostgreSQL state database, or Redis."""
    if store_kind == "redis":
        try:
            redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
        except redis.RedisError:
            pytest.skip("no Redis at 127.0.0.1:6379")
        monkeypatch.setenv("KPI_REDIS_URL", REDIS_URL)
        monkeypatch.setenv("KPI_REDIS_PREFIX", f"kpibot-test:{uuid.uuid4().hex}:")
    else:
        monkeypatch.delenv("KPI_REDIS_URL", raising=False)
    with ExitStack() as stack:
        state_url = (stack.enter_context(postgres_database("kpibot_replay")) if store_kind == "postgresql"
                     else f"sqlite:///{tmp_path / 'state.sqlite'}")
        stack.callback(state.dispose_all)
        one = stack.enter_context(start_app(nps_url, monkeypatch, state_url=state_url))
        two = stack.enter_context(start_app(nps_url, monkeypatch, state_url=state_url))
        channel = new_channel()
        form = {"team_id": "T0KPI", "channel_id": channel, "user_id": "U0ALICE", "command": "/kpi",
                "text": QUESTION, "api_app_id": "A0KPI", "response_url": one.fake.response_url(),
                "trigger_id": f"9.{uuid.uuid4().hex}"}
        body = urlencode(form).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", **signed_headers(body)}
        for app in (one, two):
            assert http_request(app.send.url, "POST", body, headers).status == 200

        def answers() -> list:
            return [c for a in (one, two)
                    for c in a.fake.calls("chat.postMessage", ok=True, where=a.fake.in_channel(channel))]

        _wait(lambda: answers() and one.bot.stats["duplicate_commands"] + two.bot.stats["duplicate_commands"] >= 1,
              "one answer and one dropped replay")
        assert len(answers()) == 1


def _policy(tmp_path, text: str) -> str:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return str(path)


def test_money_by_mention_in_a_thread_or_a_group_dm_stays_out(nps_url, tmp_path, monkeypatch):
    """Attacks 1 and 7: a mention in a thread of a public channel; a mention in a group DM with
    someone the policy does not allow (the event may say ``mpim``, or nothing at all)."""
    policy = _policy(tmp_path, f'[sensitivity.money]\nusers = ["{CFO}"]\n')
    with start_app(nps_url, monkeypatch, state_url=f"sqlite:///{tmp_path / 'state.sqlite'}", policy=policy) as app:
        app.fake.members["G0MIXEDMP"] = [CFO, "U0BOB", "UKPIBOT"]
        public = new_channel()
        app.send.event(mention("<@UKPIBOT> new_mrr 2026-Q3", channel=public, ts="300.2", thread_ts="300.1",
                               user=CFO))
        [line] = app.fake.wait_for("chat.postEphemeral", where=app.fake.in_channel(public), timeout=60)
        assert "KPI policy" in line.text and line.params.get("thread_ts") == "300.1"
        event = mention("<@UKPIBOT> revenue 2026-Q3", channel="G0MIXEDMP", ts="400.1", user=CFO)
        app.send.event({**event, "channel_type": "mpim"})
        app.send.event(mention("<@UKPIBOT> mrr 2026-Q3", channel="G0MIXEDMP", ts="400.2", user=CFO))
        lines = app.fake.wait_for("chat.postEphemeral", where=app.fake.in_channel("G0MIXEDMP"), count=2,
                                  timeout=60)
        assert all("KPI policy" in c.text for c in lines), [c.text for c in lines]
        for channel in (public, "G0MIXEDMP"):
            assert not app.fake.calls("chat.postMessage", where=app.fake.in_channel(channel))
        # the CFO alone with the bot: allowed (the policy is not simply closed)
        app.fake.members["G0CFOONLY"] = [CFO, "UKPIBOT"]
        app.send.event({**mention("<@UKPIBOT> revenue 2026-Q3", channel="G0CFOONLY", ts="500.1", user=CFO),
                        "channel_type": "mpim"})
        [answer] = app.fake.wait_for("chat.postMessage", where=app.fake.in_channel("G0CFOONLY"), timeout=60)
        assert "KPI policy" not in answer.text


def test_failed_and_refused_schedule_commands_are_audited_as_such(nps_url, tmp_path, monkeypatch):
    """Attack 5: a schedule command that failed is never "answered" in the audit log."""
    monkeypatch.setenv("KPI_MAX_RULES_PER_USER", "1")
    state_url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    with start_app(nps_url, monkeypatch, state_url=state_url) as app:
        channel = new_channel()
        asks = {
            "alert add new_mrr above 1": "refused-policy",
            "digest add daily 09:00 nps new_mrr": "refused-policy",
            "digest add daily 25:00 nps": "bad-question",
            "alert add nps sideways 3": "bad-question",
            "alert remove 99999999999999999999999": "bad-question",
            "alert add nps below 10": "answered",
            "alert add nps below 20": None,  # past the user's cap: refused, whichever way it is worded
        }
        for text in asks:
            reply = app.ask(text, channel=channel)
            assert reply.kind == "private" and "went wrong" not in reply.text, (text, str(reply))
        assert audit.flush(60)
        rows = {r["question"]: r["outcome"] for r in audit.latest(50, url=state_url)}
    for text, outcome in asks.items():
        if outcome is not None:
            assert rows[text] == outcome, (text, rows[text])
    assert rows["alert add nps below 20"] != "answered"


def test_a_flood_of_by_alerts_is_capped(nps_url, tmp_path, monkeypatch):
    """Attack 6: 20 x ``alert add … by touchpoint`` from one user keep only the user's cap."""
    monkeypatch.delenv("KPI_MAX_RULES_PER_USER", raising=False)
    monkeypatch.delenv("KPI_MAX_RULES_PER_CHANNEL", raising=False)
    state_url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    with start_app(nps_url, monkeypatch, state_url=state_url) as app:
        channel = new_channel()
        replies = [app.ask(f"alert add nps below {90 - k} by touchpoint over 30d", channel=channel)
                   for k in range(20)]
        added = [r for r in replies if "added" in r.text]
        assert len(added) == 10  # KPI_MAX_RULES_PER_USER's default
        assert "You already have 10 alert rules" in replies[-1].text
        assert not app.fake.calls("chat.postMessage", where=app.fake.in_channel(channel))  # adding posts nothing
    assert len(store.active_rules(state.get_state_engine(state_url))) == 10


def test_one_deadline_covers_the_whole_question_through_http(nps_url, tmp_path, monkeypatch):
    """Attack 2: the question's deadline, not a per-statement timeout, bounds its work: with the
    budget spent, the asker gets the clear line (no traceback) and the next question is answered."""
    monkeypatch.setenv("KPI_QUERY_TIMEOUT", "600")
    with start_app(nps_url, monkeypatch, state_url=f"sqlite:///{tmp_path / 'state.sqlite'}",
                   question_timeout=1e-6) as app:
        reply = app.ask(QUESTION)
        assert reply.kind == "private" and "took too long" in reply.text, str(reply)
        assert "Traceback" not in reply.text and "error id" not in reply.text
        app.bot.settings.question_timeout = 60.0
        assert app.ask(QUESTION).kind == "answer"


DISK_FULL = """
CREATE FUNCTION kpibot_test_disk_full() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'could not extend file "base/16384/24576": No space left on device'
    USING ERRCODE = 'disk_full', HINT = 'Check free disk space.';
END $$ LANGUAGE plpgsql;
CREATE TRIGGER disk_full BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION kpibot_test_disk_full();
"""


def test_a_full_disk_withholds_the_restricted_answer_and_healthz_says_so(nps_url, tmp_path, monkeypatch):
    """Attack 5, disk full: PostgreSQL answers the audit INSERT with its real ``disk_full``
    error (SQLSTATE 53100, raised here by a trigger); the restricted answer is withheld."""
    finance = new_channel("CFIN")
    health.clear("audit")
    monkeypatch.setenv("KPI_AUDIT_RETRY_SECONDS", "0")
    with postgres_database("kpibot_full") as state_url:
        audit.engine_for(state_url)  # the tables exist; then the disk fills up
        make_deduper(env={"KPI_STATE_URL": state_url})
        with state.get_state_engine(state_url).begin() as conn:
            conn.execute(text(DISK_FULL))
        policy = _policy(tmp_path, f'[sensitivity.money]\nchannels = ["{finance}"]\n')
        try:
            with start_app(nps_url, monkeypatch, state_url=state_url, policy=policy) as app:
                refused = app.ask("mrr 2026-Q3", channel=finance, timeout=60)
                assert refused.kind == "private" and "audit log" in refused.text, str(refused)
                assert "space" not in refused.text and "53100" not in refused.text
                assert not app.fake.calls("chat.postMessage", where=app.fake.in_channel(finance))
                resp = http_request(app.server.url + "/healthz")
                assert resp.status == 503 and "audit" in resp.json()["problems"]
                assert app.ask(QUESTION, timeout=60).kind == "answer"  # not restricted: still answered
        finally:
            health.clear("audit")
            state.dispose_all()
