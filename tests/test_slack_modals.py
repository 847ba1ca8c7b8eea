"""Digest and alert forms end to end: a click on an answer opens the form (views.open), a
signed view_submission comes back through the running app's HTTP endpoint, field errors are
answered in the ack (``response_action: errors``), a valid form becomes the typed command it
stands for (saved in the real SQLite state, confirmed to the user in the channel)."""

from __future__ import annotations

import json

import pytest

from bot.app import Settings, create_bot
from bot.schedules import store
from bot.server import HttpServer
from storage.state import get_state_engine
from tests.fake_slack import FakeSlack
from tests.slack_helpers import BOT_TOKEN, QUESTION, SIGNING_SECRET, SlackSender, load_fixture

pytest_plugins = ["tests.test_schedules_support"]
pytestmark = pytest.mark.usefixtures("schedule_env")


@pytest.fixture
def app(tmp_path, state_url, monkeypatch):
    url = f"duckdb:///{tmp_path / 'metrics.duckdb'}"
    load_fixture(url)
    monkeypatch.setenv("KPI_STATE_URL", state_url)
    with FakeSlack(token=BOT_TOKEN, users={"U0ALICE": "Europe/Paris"}) as fake:
        bot = create_bot(Settings(bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET, api_url=fake.api_url,
                                  database_url=url))
        with HttpServer(bot) as server:
            yield fake, SlackSender(server.url, fake.response_url), get_state_engine(state_url)
        bot.close()


def submit(send: SlackSender, view: dict, values: dict, user: str = "U0ALICE"):
    """A view_submission of ``view`` (as views.open received it) with the fields filled in."""
    submitted = {**view, "id": "V0FORM", "state": {"values": values}}
    return send.interactive({"type": "view_submission", "user": {"id": user, "team_id": "T0KPI"},
                             "trigger_id": "1.2.submit", "view": submitted})


def digest_values(*, channel="C0TEAM", kpis=("nps",), frequency="weekly", day="mon", time="09:00",
                  tz="Europe/Paris") -> dict:
    return {
        "channel": {"channel": {"type": "conversations_select", "selected_conversation": channel}},
        "kpis": {"kpis": {"type": "multi_static_select", "selected_options": [{"value": k} for k in kpis]}},
        "frequency": {"frequency": {"type": "static_select", "selected_option": {"value": frequency}}},
        "day": {"day": {"type": "static_select", "selected_option": {"value": day} if day else None}},
        "time": {"time": {"type": "timepicker", "selected_time": time}},
        "tz": {"tz": {"type": "plain_text_input", "value": tz}},
    }


def open_form(fake: FakeSlack, send: SlackSender, action_id: str, ch: str) -> dict:
    send.command(QUESTION, channel=ch)
    [post] = fake.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == ch
                           and "Working" not in c.text)
    message = {"type": "message", "ts": post.response["ts"], "text": post.params["text"], "blocks": post.blocks}
    [button] = [e for b in post.blocks if b["type"] == "actions" for e in b["elements"] if e["action_id"] == action_id]
    assert send.click(message, button, channel=ch).status == 200
    [opened] = fake.wait_for("views.open")
    assert opened.params["trigger_id"]
    return opened.params["view"]


def test_add_to_a_digest_opens_the_form_filled_in_and_saves_it(app):
    fake, send, state = app
    view = open_form(fake, send, "answer_digest", "C0TEAM")
    assert view["callback_id"] == "digest_modal"
    blocks = {b["block_id"]: b for b in view["blocks"]}
    assert [o["value"] for o in blocks["kpis"]["element"]["initial_options"]] == ["nps"]
    assert blocks["channel"]["element"]["initial_conversation"] == "C0TEAM"
    assert blocks["tz"]["element"]["initial_value"] == "Europe/Paris"  # the user's, from users.info
    groups = blocks["kpis"]["element"]["option_groups"]
    assert all(len(g["options"]) <= 100 for g in groups) and len(view["blocks"]) <= 100

    resp = submit(send, view, digest_values(kpis=("nps", "csat")))
    assert resp.status == 200 and resp.body in (b"", b"{}")  # closed
    [done] = fake.wait_for("chat.postEphemeral", where=lambda c: c.params.get("channel") == "C0TEAM")
    assert "Digest #1 added: every Monday at 09:00 (Europe/Paris)" in done.text
    [digest] = store.active_digests(state)
    assert (digest.channel_id, digest.created_by, digest.spec.metrics) == ("C0TEAM", "U0ALICE", ("nps", "csat"))


def test_a_bad_form_gets_field_errors_and_saves_nothing(app):
    fake, send, state = app
    view = open_form(fake, send, "answer_digest", "C0TEAM")
    resp = submit(send, view, digest_values(kpis=(), day=None, tz="Mars/Olympus", time="25:00"))
    assert resp.status == 200
    answer = resp.json()
    assert answer["response_action"] == "errors"
    assert set(answer["errors"]) == {"kpis", "day", "tz", "time"}
    assert answer["errors"]["day"] == "A weekly digest needs a weekday."
    forged = submit(send, view, digest_values(kpis=("nps; drop table digests",)))
    assert forged.json()["errors"]["kpis"].startswith("One of these is not a KPI")
    assert store.active_digests(state) == []


def test_editing_a_digest_replaces_it(app):
    fake, send, state = app
    view = open_form(fake, send, "answer_digest", "C0TEAM")
    submit(send, view, digest_values())
    fake.wait_for("chat.postEphemeral", where=lambda c: "Digest #1 added" in c.text)
    edit = {**view, "private_metadata": json.dumps({"id": 1})}
    submit(send, edit, digest_values(frequency="monthly", day="last", time="08:30"))
    fake.wait_for("chat.postEphemeral", where=lambda c: "Digest #1" in c.text and "removed" in c.text)
    [digest] = store.active_digests(state)
    assert digest.id == 2 and digest.spec.frequency == "monthly" and digest.spec.day_of_month == "last"
    assert digest.spec.at_time == "08:30"


def test_alert_me_when_opens_the_alert_form(app):
    fake, send, state = app
    view = open_form(fake, send, "answer_alert", "C0OPS")
    assert view["callback_id"] == "alert_modal"
    blocks = {b["block_id"]: b for b in view["blocks"]}
    assert blocks["kpi"]["element"]["initial_option"]["value"] == "nps"

    def values(threshold: str, condition: str = "below") -> dict:
        return {
            "kpi": {"kpi": {"type": "static_select", "selected_option": {"value": "nps"}}},
            "condition": {"condition": {"type": "static_select", "selected_option": {"value": condition}}},
            "threshold": {"threshold": {"type": "plain_text_input", "value": threshold}},
            "window": {"window": {"type": "static_select", "selected_option": {"value": "14"}}},
            "channel": {"channel": {"type": "conversations_select", "selected_conversation": "C0OPS"}},
        }

    bad = submit(send, view, values("thirty")).json()
    assert bad == {"response_action": "errors", "errors": {"threshold": "Give a number, e.g. 30, 5% or 1h."}}
    unit = submit(send, view, values("10%", "drops")).json()  # the typed command's own check
    assert "not a percentage" in unit["errors"]["threshold"]
    assert submit(send, view, values("30")).status == 200
    fake.wait_for("chat.postEphemeral", where=lambda c: "Alert #1 added" in c.text)
    [rule] = store.active_rules(state)
    assert (rule.metric, rule.condition, rule.threshold, rule.window_days, rule.channel_id, rule.owner) == (
        "nps", "below", 30.0, 14, "C0OPS", "U0ALICE")
    assert rule.timezone == "Europe/Paris"
