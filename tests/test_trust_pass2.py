"""Trust, second pass (issue 15): markup from data, the audit log, floods, replays, loose ends.

Every attack goes through the running HTTP app (signed requests, :mod:`tests.trust_helpers`)
against the fake Slack, or through the scheduler's real delivery path to it.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
import redis
from sqlalchemy import insert

from bot import audit, health, mrkdwn
from bot.app import Settings
from bot.dedupe import make_deduper
from bot.schedules import store
from bot.schedules.config import Config
from bot.schedules.delivery import Op, Outbox
from bot.schedules.parse import parse_alert
from bot.schedules.scheduler import ScheduleService
from bot.slack_client import make_client
from metrics.catalogue import CATALOGUE
from storage import database, state
from storage.importer import import_file
from storage.schema import survey_responses
from tests.fake_slack import FakeSlack
from tests.slack_helpers import (
    BOT_TOKEN,
    QUESTION,
    direct_message,
    http_request,
    load_fixture,
    mention,
    signed_headers,
)
from tests.trust_helpers import new_channel, start_app

REDIS_URL = "redis://127.0.0.1:6379/0"

EVIL = "<!channel> <https://evil.example/login|Slack session expired, log in again> & <@U0BOSS>"
RAW = ("<!channel>", "<https://evil.example", "<@U0BOSS>")

# NPS by touchpoint, by hand: in 2026-Q2 both touchpoints give 20 tens (NPS 100.0); in 2026-Q3
# the hostile one gives 20 zeros, "support" 20 tens: 20 promoters, 20 detractors of 40 -> 0.0.
# A real drop (n = 40, outside the margin), all from the hostile touchpoint: the
# explanation names it. One more of each on 30 September (21 and 21 of 42: still 0.0) loads the
# quarter to its last day, so the drop is judged and explained (and an alert evaluated on
# 1 October reads a fully loaded window).
SCORES = {("2026-05", EVIL): [10] * 20, ("2026-05", "support"): [10] * 20,
          ("2026-08", EVIL): [0] * 20, ("2026-08", "support"): [10] * 20}
LAST_DAY = (("2026-09-30", EVIL, 0), ("2026-09-30", "support", 10))


def _hostile_csv(path) -> None:
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["response_id", "customer_id", "responded_at", "survey", "score", "touchpoint", "comment"])
        k = 0
        for (month, touchpoint), scores in SCORES.items():
            for score in scores:
                k += 1
                out.writerow([f"r{k}", f"c{k % 3}", f"{month}-{1 + k % 27:02d} 12:00:00", "nps", score, touchpoint, ""])
        for day, touchpoint, score in LAST_DAY:
            k += 1
            out.writerow([f"r{k}", f"c{k % 3}", f"{day} 12:00:00", "nps", score, touchpoint, ""])


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    url = f"duckdb:///{tmp_path / 'metrics.duckdb'}"
    database.get_engine(url)
    path = tmp_path / "survey.csv"
    _hostile_csv(path)
    import_file(database.get_engine(url), "survey_responses", str(path))
    state_url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    with start_app(url, monkeypatch, state_url=state_url) as app:
        app.url, app.state_url = url, state_url
        yield app


def _parsed(call) -> str:
    """The strings of a call Slack reads as mrkdwn: ``plain_text`` objects (the header) are
    shown as typed, never parsed for mentions or links, so they are left out."""
    out: list[str] = []

    def walk(value) -> None:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, dict) and value.get("type") != "plain_text":
            for k, v in value.items():
                if k not in ("type", "block_id", "action_id"):
                    walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for key in ("text", "blocks", "attachments", "initial_comment"):
        walk(call.params.get(key))
    return "\n".join(out)


def _no_raw_markup(calls) -> None:
    for call in calls:
        for raw in RAW:
            assert raw not in _parsed(call), (call.method, _parsed(call)[:500])


def test_data_and_user_text_cannot_write_slack_markup(hostile):
    answer = hostile.ask("nps 2026-Q3")
    assert answer.kind == "answer", answer
    assert "*0.0*" in answer.text and "100.0" in answer.text
    assert "&lt;!channel&gt;" in answer.text, answer.text  # the explanation names the touchpoint, escaped
    breakdown = hostile.ask("nps by touchpoint 2026-Q3")
    assert breakdown.kind == "answer" and "&lt;!channel&gt;" in breakdown.text
    # the asker's own text, echoed under the answer ("Asked by … `/kpi …`"): Slack delivers a
    # typed "<" as "&lt;", which the bot unescapes to read the question
    echo = hostile.ask('nps where touchpoint = "&lt;!here&gt; &lt;@U0BOSS&gt;" 2026-Q3')
    assert echo.kind == "answer", echo
    assert "Asked by <@U0ALICE>" in echo.text  # the bot's own mention still works
    assert "&lt;!here&gt;" in echo.text and "<!here>" not in _parsed(echo.call)
    refused = hostile.ask("nps 2026-Q3 &lt;!here&gt;")  # a private "I understood …" line
    assert refused.kind == "private" and "<!here>" not in refused.text
    _no_raw_markup(hostile.fake.calls())


def test_alert_titles_and_scheduled_posts_are_escaped(hostile):
    client = make_client(BOT_TOKEN, base_url=hostile.fake.api_url)
    engine = state.get_state_engine(hostile.state_url)
    channel = new_channel("CALR")
    spec = parse_alert("nps below 90 by touchpoint over 90d min 1".split(), default_tz="UTC")
    store.add_rule(engine, spec, spec.describe(CATALOGUE["nps"]), channel_id=channel, owner="U0ALICE",
                   now=datetime(2026, 8, 1, tzinfo=UTC))
    svc = ScheduleService(client, state_url=hostile.state_url, metrics_url=hostile.url,
                          config=Config(grace=timedelta(hours=6)))
    svc.evaluate_alerts(datetime(2026, 10, 1, 10, tzinfo=UTC))
    fired = hostile.fake.calls("chat.postMessage", where=hostile.fake.in_channel(channel))
    assert fired and any("&lt;!channel&gt;" in c.text for c in fired), [c.text for c in fired]
    _no_raw_markup(fired)
    # any scheduled text (a digest line, a report) goes through the same last step
    outbox = Outbox(engine, client)
    did = outbox.claim("test:escape", now=datetime(2026, 9, 30, tzinfo=UTC), kind="digest", channel_id=channel)
    assert outbox.send(did, [Op("post", channel, f"*Digest* {EVIL} in {mrkdwn.channel('C0LINK')}")],
                       now=datetime(2026, 9, 30, tzinfo=UTC)).ok
    last = hostile.fake.calls("chat.postMessage", where=hostile.fake.in_channel(channel))[-1]
    assert "&lt;!channel&gt;" in last.text and "&amp;" in last.text and "<#C0LINK>" in last.text
    _no_raw_markup([last])


# ---- replays, retries across replicas, response_url ----------------------------------------------


def wait_until(condition, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def nps_url(tmp_path):
    url = f"duckdb:///{tmp_path / 'metrics.duckdb'}"
    load_fixture(url)
    return url


def _answers(apps, channel: str) -> list:
    return [c for a in apps for c in a.fake.calls("chat.postMessage", ok=True, where=a.fake.in_channel(channel))]


def test_a_replayed_slash_command_is_answered_once(nps_url, tmp_path, monkeypatch):
    with start_app(nps_url, monkeypatch, state_url=f"sqlite:///{tmp_path / 'state.sqlite'}") as app:
        channel = new_channel()
        form = {"team_id": "T0KPI", "channel_id": channel, "user_id": "U0ALICE", "command": "/kpi",
                "text": QUESTION, "api_app_id": "A0KPI", "response_url": app.fake.response_url(),
                "trigger_id": f"7.{uuid.uuid4().hex}"}
        body = urlencode(form).encode()
        headers = signed_headers(body)  # the very same signed request, captured and sent again
        for _ in range(2):
            resp = http_request(app.send.url, "POST", body, {"Content-Type": "application/x-www-form-urlencoded",
                                                              **headers})
            assert resp.status == 200
        wait_until(lambda: len(_answers([app], channel)) >= 1 and app.bot.stats["duplicate_commands"] >= 1,
                   what="one answer and one dropped replay")
        assert len(_answers([app], channel)) == 1


@pytest.mark.parametrize("store", ["state-database", "redis"])
def test_a_retried_event_is_answered_once_across_replicas(store, nps_url, tmp_path, monkeypatch):
    if store == "redis":
        monkeypatch.setenv("KPI_REDIS_URL", REDIS_URL)
        monkeypatch.setenv("KPI_REDIS_PREFIX", f"kpibot-test:{uuid.uuid4().hex}:")
        try:
            redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
        except redis.RedisError:
            pytest.skip("no Redis at 127.0.0.1:6379")
    else:
        monkeypatch.delenv("KPI_REDIS_URL", raising=False)
    state_url = f"sqlite:///{tmp_path / 'state.sqlite'}"  # one state database for both replicas
    with start_app(nps_url, monkeypatch, state_url=state_url) as one, \
            start_app(nps_url, monkeypatch, state_url=state_url) as two:
        channel = new_channel()
        event = mention(f"<@UKPIBOT> {QUESTION}", channel=channel, ts="1790000001.000100")
        resp, event_id = one.send.event(event)
        assert resp.status == 200
        # Slack did not see the ack in time: the retry lands on the other replica
        resp, _ = two.send.event(event, event_id=event_id, retry_num=1)
        assert resp.status == 200
        wait_until(lambda: len(_answers([one, two], channel)) >= 1
                   and one.bot.stats["duplicate_events"] + two.bot.stats["duplicate_events"] >= 1,
                   what="one answer and one dropped retry")
        assert len(_answers([one, two], channel)) == 1


def test_a_response_url_to_a_foreign_host_is_never_called(nps_url, tmp_path, monkeypatch):
    with FakeSlack() as attacker, \
            start_app(nps_url, monkeypatch, state_url=f"sqlite:///{tmp_path / 'state.sqlite'}") as app:
        channel = new_channel()
        # same host as the real (fake) Slack, another port: still not Slack
        resp, _ = app.send.command("help", channel=channel, response_url=attacker.response_url("steal"))
        assert resp.status == 200
        [private] = app.fake.wait_for("chat.postEphemeral", where=app.fake.in_channel(channel))
        assert "/kpi" in private.text  # the help went to the asker through the Web API
        resp, _ = app.send.command(QUESTION, channel=channel, response_url="https://evil.example/hooks")
        app.fake.wait_for("chat.postMessage", where=app.fake.in_channel(channel))
        assert attacker.calls() == []
        assert app.bot.stats["foreign_response_urls"] == 2
    assert Settings(response_url_hosts=("hooks.slack.com",)).response_url_allowed(
        "https://hooks.slack.com/commands/T0/1/abc")
    assert not Settings().response_url_allowed("http://hooks.slack.com/commands/T0/1/abc")
    assert not Settings().response_url_allowed("https://hooks.slack.com.evil.example/x")


# ---- the audit log cannot be skipped --------------------------------------------------------------

POLICY = """
[sensitivity.money]
channels = ["{channel}"]
"""


@pytest.fixture
def no_health_problems():
    health.clear("audit")
    yield
    health.clear("audit")


def _policy(tmp_path, channel: str) -> str:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY.format(channel=channel))
    return str(path)


def test_a_restricted_answer_is_audited_before_it_is_posted(nps_url, tmp_path, monkeypatch, no_health_problems):
    finance = new_channel("CFIN")
    state_url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    with start_app(nps_url, monkeypatch, state_url=state_url, policy=_policy(tmp_path, finance)) as app:
        # at the moment Slack receives the post, the row must already be in the database
        at_post: list[bool] = []

        def row_exists(params) -> bool:
            if params.get("channel") == finance:
                at_post.append(any(r["channel_id"] == finance for r in audit.latest(20, url=state_url)))
            return False  # a probe, not a fault

        app.fake.fail("chat.postMessage", when=row_exists, times=1000)
        reply = app.ask("mrr 2026-Q3", channel=finance)
        assert reply.kind == "answer", reply
        assert at_post == [True]
        assert audit.flush(60)
        rows = [r for r in audit.latest(20, url=state_url) if r["channel_id"] == finance]
        assert [(r["kpi"], r["outcome"], r["question"]) for r in rows] == [("mrr", "answered", "mrr 2026-Q3")]


def test_no_audit_row_no_restricted_answer_and_healthz_says_so(nps_url, tmp_path, monkeypatch, no_health_problems):
    finance = new_channel("CFIN")
    path = tmp_path / "state.sqlite"
    writable = f"sqlite:///{path}"
    audit.engine_for(writable)  # the tables exist; then the database turns read-only
    make_deduper(env={"KPI_STATE_URL": writable})
    state.dispose_all()
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    monkeypatch.setenv("KPI_AUDIT_RETRY_SECONDS", "0")  # the queued rows are given up at once
    with start_app(nps_url, monkeypatch, state_url=read_only, policy=_policy(tmp_path, finance)) as app:
        assert app.healthy()
        refused = app.ask("mrr 2026-Q3", channel=finance)
        assert refused.kind == "private" and "audit log" in refused.text, refused
        assert not app.fake.calls("chat.postMessage", where=app.fake.in_channel(finance))
        resp = http_request(app.server.url + "/healthz")
        assert resp.status == 503 and "audit" in resp.json()["problems"]
        # an ordinary KPI is not restricted: it still goes out
        assert app.ask(QUESTION).kind == "answer"
        assert audit.flush(60)
    state.dispose_all()


def test_audit_output_cannot_be_forged_and_failed_commands_are_not_answered(nps_url, tmp_path, monkeypatch):
    state_url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    forged = "nps \x1b[2K\r2026-12-01 09:00:00  slack/slash  C0X  U0CEO  answered  revenue \u202e"
    with start_app(nps_url, monkeypatch, state_url=state_url) as app:
        app.ask(forged)
        huge = app.ask("digest remove 99999999999999999999999")
        assert huge.kind == "private" and "There is no digest #99999999999999999999" in huge.text, huge
        assert "went wrong" not in huge.text
        assert audit.flush(60)
        out = io.StringIO()
        assert audit.print_latest(10, url=state_url, stream=out) == 0
    text = out.getvalue()
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text
    assert "nps \\x1b[2K 2026-12-01" in text and "\\u202e" in text  # visible, on one row
    rows = {r["question"]: r for r in audit.latest(10, url=state_url)}
    assert rows["digest remove 99999999999999999999999"]["outcome"] == "bad-question"


# ---- Slack failing for a moment -----------------------------------------------------------------


def _dm(app, channel: str) -> None:
    resp, _ = app.send.event(direct_message(QUESTION, channel=channel, ts="1790000002.000100"))
    assert resp.status == 200


def test_a_dm_answer_survives_slack_failing_for_a_few_seconds(nps_url, tmp_path, monkeypatch):
    with start_app(nps_url, monkeypatch, state_url=f"sqlite:///{tmp_path / 'state.sqlite'}") as app:
        dm = new_channel("D")
        # more failures in a row than the client's own retries (3 attempts, ~2 s) cover
        app.fake.fail("chat.postMessage", status=500, times=4, when=lambda p: p.get("channel") == dm)
        _dm(app, dm)
        [answer] = app.fake.wait_for("chat.postMessage", ok=True, where=app.fake.in_channel(dm))
        assert "20.0" in answer.text
        assert app.bot.stats["delivery_retries"] >= 1


def test_an_answer_slack_keeps_refusing_is_reported_not_dropped(nps_url, tmp_path, monkeypatch):
    with start_app(nps_url, monkeypatch, state_url=f"sqlite:///{tmp_path / 'state.sqlite'}",
                   post_retry_seconds=1.0) as app:
        dm = new_channel("D")
        app.fake.fail("chat.postMessage", status=500, times=10_000,
                      when=lambda p: p.get("channel") == dm and "Net Promoter" in str(p.get("text")))
        _dm(app, dm)
        [told] = app.fake.wait_for("chat.postMessage", ok=True, where=app.fake.in_channel(dm), timeout=30)
        assert "Slack did not accept my answer" in told.text and "error id" in told.text


# ---- no 500, no traceback, no driver text ---------------------------------------------------------


def test_malformed_timestamps_and_view_payloads_are_refused_not_500(nps_url, tmp_path, monkeypatch):
    with start_app(nps_url, monkeypatch, state_url=f"sqlite:///{tmp_path / 'state.sqlite'}") as app:
        form = b"command=%2Fkpi&text=nps&channel_id=C1&user_id=U1"
        for stamp in ("\xb2", "\xb9\xb3", "1e9", "-1"):  # "²".isdigit() is True in Python
            for body, kind in ((form, "application/x-www-form-urlencoded"),
                               (b'{"type":"event_callback","event":{}}', "application/json")):
                resp = app.send.post(body, kind, sign=False,
                                     extra={"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": "v0=00"})
                assert resp.status == 401, (stamp, resp.status, resp.body[:100])
        views = [
            {"type": "view_submission", "team": {"id": "T0KPI"}, "user": {"id": "U1"}, "api_app_id": "A0KPI",
             "view": {"id": "V1", "callback_id": "x", "state": {"values": {}}}},  # no view.type
            {"type": "view_submission", "team": {"id": "T0KPI"}, "user": {"id": "U1"}, "api_app_id": "A0KPI",
             "view": {"id": "V1", "type": "modal", "callback_id": "x", "state": {"values": {}}}},
            {"type": "view_closed", "team": {"id": "T0KPI"}, "user": {"id": "U1"}, "api_app_id": "A0KPI",
             "view": {"id": "V1", "type": "modal", "callback_id": "x"}},
        ]
        statuses = [app.send.post(urlencode({"payload": json.dumps(v)}).encode(),
                                  "application/x-www-form-urlencoded").status for v in views]
        assert statuses == [400, 200, 200]
        assert app.healthy() and app.ask(QUESTION).kind == "answer"


def test_database_driver_text_never_reaches_users(tmp_path, monkeypatch, no_health_problems):
    nowhere = "postgresql+psycopg://kpibot@127.0.0.1:9/nowhere"  # port 9: nothing listens
    with start_app(nowhere, monkeypatch, state_url=f"sqlite:///{tmp_path / 'state.sqlite'}") as app:
        reply = app.ask(QUESTION)
    assert reply.kind == "private" and "not answering" in reply.text, reply
    for leak in ("127.0.0.1", "port 9", "psycopg", "connection", "nowhere", "kpibot@"):
        assert leak not in reply.text, reply.text


# ---- floods ----------------------------------------------------------------------------------------


def test_rules_are_capped_per_user_and_per_channel(nps_url, tmp_path, monkeypatch):
    monkeypatch.setenv("KPI_MAX_RULES_PER_CHANNEL", "3")
    monkeypatch.setenv("KPI_MAX_RULES_PER_USER", "2")
    state_url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    with start_app(nps_url, monkeypatch, state_url=state_url) as app:
        channel, other = new_channel(), new_channel()
        for n in (10, 20):
            assert "added" in app.ask(f"alert add nps below {n}", channel=channel, user="U0ALICE").text
        refused = app.ask("alert add nps below 30", channel=other, user="U0ALICE")
        assert refused.kind == "private" and "You already have 2 alert rules" in refused.text, refused
        assert "added" in app.ask("alert add nps below 40", channel=channel, user="U0BOB").text
        refused = app.ask("alert add nps below 50", channel=channel, user="U0CAROL")
        assert "This channel already has 3 alert rules" in refused.text, refused
        assert "added" in app.ask("digest add daily 09:00 nps", channel=channel, user="U0ALICE").text
    rules = store.active_rules(state.get_state_engine(state_url))
    assert sorted((r.channel_id == channel, r.owner) for r in rules) == [
        (True, "U0ALICE"), (True, "U0ALICE"), (True, "U0BOB")]


def test_a_by_alert_posts_one_grouped_message(nps_url, tmp_path, monkeypatch):
    monkeypatch.delenv("KPI_POLICY", raising=False)
    state_url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    engine = state.get_state_engine(state_url)
    channel = new_channel("CALR")
    spec = parse_alert("nps below 90 by touchpoint over 90d min 1".split(), default_tz="UTC")
    store.add_rule(engine, spec, spec.describe(CATALOGUE["nps"]), channel_id=channel, owner="U0ALICE",
                   now=datetime(2026, 8, 1, tzinfo=UTC))
    with FakeSlack(token=BOT_TOKEN) as fake:
        svc = ScheduleService(make_client(BOT_TOKEN, base_url=fake.api_url), state_url=state_url,
                              metrics_url=nps_url, config=Config(grace=timedelta(hours=6)))
        # both touchpoints of tests.slack_helpers score far below 90 over the summer; a 0 from each
        # on 30 September and 1 October loads the windows that end on those days
        with database.get_engine(nps_url).begin() as conn:
            conn.execute(insert(survey_responses), [
                {"response_id": f"late-{when:%m%d}-{tp}", "customer_id": "c0", "responded_at": when,
                 "survey": "nps", "score": 0, "touchpoint": tp}
                for when in (datetime(2026, 9, 30, 1), datetime(2026, 10, 1, 1)) for tp in ("onboarding", "support")])
        svc.evaluate_alerts(datetime(2026, 10, 1, 10, tzinfo=UTC))
        in_channel = fake.calls("chat.postMessage", where=lambda c: c.params.get("channel") == channel
                                and not c.params.get("thread_ts"))
        assert len(in_channel) == 1, [c.text for c in in_channel]
        text = in_channel[0].text
        assert "in 2 segments by touchpoint" in text
        assert "• touchpoint = onboarding: " in text and "• touchpoint = support: " in text
        # the next window: still breaching, said in the thread only, nothing new in the channel
        svc.evaluate_alerts(datetime(2026, 10, 2, 10, tzinfo=UTC))
        top = fake.calls("chat.postMessage", where=lambda c: c.params.get("channel") == channel
                         and not c.params.get("thread_ts"))
        assert len(top) == 1
        assert not fake.calls("chat.update")
