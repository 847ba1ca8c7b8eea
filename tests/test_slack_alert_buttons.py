"""Alert buttons end to end: an alert fired by the scheduler carries Acknowledge / Snooze… /
Mute rule / What moved it; signed clicks go to the running app over HTTP, the fake Slack
records what the app changed. Real DuckDB metrics, real SQLite state."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from bot.app import Settings, create_bot
from bot.schedules import commands, marks
from bot.server import HttpServer
from tests.slack_helpers import SIGNING_SECRET, SlackSender
from tests.test_schedules_support import TOKEN, add_nps_days, posts, service, thread_replies, utc

pytest_plugins = ["tests.test_schedules_support"]
pytestmark = pytest.mark.usefixtures("schedule_env")

BAD = (10, 13, 7)  # 30 answers a day: NPS 100 * (10 - 7) / 30 = 10


@pytest.fixture
def fired(state_url, duck_url, slack, client, monkeypatch):
    """Alert #1 (NPS below 30, owner U1) fired in C1; the app running against the same state."""
    monkeypatch.setenv("KPI_STATE_URL", state_url)
    reply = commands.handle(["alert", "add", "nps", "below", "30"], channel_id="C1", user_id="U1", user_tz="UTC",
                            now=utc(2026, 4, 15, 10), state_url=state_url)
    assert "added" in reply
    add_nps_days(duck_url, date(2026, 4, 1), 15, *BAD)  # through 15 Apr: the next day's window is loaded too
    assert service(state_url, client, duck_url).evaluate_alerts(utc(2026, 4, 15, 10)).notes == ["1/-: fired"]
    [alert] = posts(slack, "C1")
    bot = create_bot(Settings(bot_token=TOKEN, signing_secret=SIGNING_SECRET, api_url=slack.api_url,
                              database_url=duck_url))
    with HttpServer(bot) as server:
        yield alert, SlackSender(server.url, slack.response_url), bot
    bot.close()


def held(post) -> dict:
    return {"type": "message", "ts": post.response["ts"], "text": post.params["text"], "bot_id": "BKPIBOT",
            "blocks": post.params["blocks"]}


def element(blocks: list, action_id: str) -> dict:
    [found] = [e for b in blocks if b["type"] == "actions" for e in b["elements"] if e["action_id"] == action_id]
    return found


def test_alert_carries_its_buttons(fired):
    alert, _, _ = fired
    blocks = alert.params["blocks"]
    assert blocks[0]["type"] == "section" and "Alert #1" in blocks[0]["text"]["text"]
    ids = [e["action_id"] for e in blocks[1]["elements"]]
    assert ids == ["alert_ack", "alert_snooze", "alert_mute", "answer_moved"]
    snooze = element(blocks, "alert_snooze")
    assert [o["text"]["text"] for o in snooze["options"]] == ["1 hour", "1 day", "1 week", "until it recovers", "end the snooze"]
    moved = json.loads(element(blocks, "answer_moved")["value"])
    assert moved == {"k": "nps", "p": "2026-04-08..2026-04-14"}  # the rule's 7-day window


def test_acknowledge_shows_who(fired, slack):
    alert, send, _ = fired
    resp = send.click(held(alert), element(alert.params["blocks"], "alert_ack"), channel="C1", user="U0BOB")
    assert resp.status == 200
    [edit] = slack.wait_for("chat.update", where=lambda c: c.params["ts"] == alert.response["ts"])
    assert "👀 Acknowledged by <@U0BOB>" in edit.text
    assert edit.blocks[0] == alert.params["blocks"][0]  # the alert itself unchanged
    assert [e["action_id"] for e in edit.blocks[-1]["elements"]][:3] == ["alert_ack", "alert_snooze", "alert_mute"]


def test_snooze_a_day_by_the_owner_and_refused_to_others(fired, slack, state_url):
    alert, send, _ = fired
    snooze = dict(element(alert.params["blocks"], "alert_snooze"))
    snooze["selected"] = snooze["options"][1]  # 1 day
    send.click(held(alert), snooze, channel="C1", user="U0BOB")  # not the owner
    [refused] = slack.wait_for("chat.postEphemeral", where=lambda c: c.params["user"] == "U0BOB")
    assert "Only <@U1>, who added it, or a kpibot admin" in refused.text
    assert not slack.calls("chat.update")
    clicked = datetime.now(UTC).replace(microsecond=0)
    send.click(held(alert), snooze, channel="C1", user="U1")
    [edit] = slack.wait_for("chat.update", where=lambda c: c.params["ts"] == alert.response["ts"])
    answered = datetime.now(UTC)
    assert "😴 Snoozed until" in edit.text
    from bot.schedules import store
    from storage.state import get_state_engine

    rule = store.get_rule(get_state_engine(state_url), 1)
    assert rule is not None and rule.snoozed_until is not None
    assert clicked + timedelta(days=1) <= rule.snoozed_until <= answered + timedelta(days=1)  # a day from the click


def test_snooze_until_recovered_keeps_the_thread_quiet(fired, slack, state_url, duck_url, client):
    alert, send, _ = fired
    snooze = dict(element(alert.params["blocks"], "alert_snooze"))
    snooze["selected"] = snooze["options"][3]
    send.click(held(alert), snooze, channel="C1", user="U1")
    [edit] = slack.wait_for("chat.update", where=lambda c: c.params["ts"] == alert.response["ts"])
    assert "🔕 Quiet until it recovers (<@U1>)" in edit.text
    svc = service(state_url, client, duck_url)
    assert svc.evaluate_alerts(utc(2026, 4, 16, 10)).notes == ["1/-: still breaching (quiet until it recovers)"]
    assert thread_replies(slack, alert.response["ts"]) == []


def test_forged_or_foreign_alert_clicks_are_refused(fired, slack):
    alert, send, bot = fired
    before = bot.stats["bad_actions"]
    for value in ('{"r": "1; drop"}', '{"r": 1, "x": 2}', "1"):
        send.click(held(alert), dict(element(alert.params["blocks"], "alert_ack"), value=value), channel="C1")
    slack.wait_for("response_url", count=3, where=lambda c: "out of date" in c.text)
    assert bot.stats["bad_actions"] == before + 3
    # a real rule id clicked from another channel: the command's own check refuses it
    send.click(held(alert), element(alert.params["blocks"], "alert_ack"), channel="C2", user="U1")
    [refused] = slack.wait_for("chat.postEphemeral", where=lambda c: c.params["channel"] == "C2")
    assert "manage it from there" in refused.text
    assert not slack.calls("chat.update")


def test_mute_and_what_moved_it(fired, slack):
    alert, send, _ = fired
    send.click(held(alert), element(alert.params["blocks"], "alert_mute"), channel="C1", user="U1")
    [edit] = slack.wait_for("chat.update", where=lambda c: c.params["ts"] == alert.response["ts"])
    assert "😴 Snoozed until" in edit.text
    unmute = dict(element(alert.params["blocks"], "alert_snooze"))
    unmute["selected"] = unmute["options"][4]  # end the snooze
    send.click(held(alert), unmute, channel="C1", user="U1")
    [_, lifted] = slack.wait_for("chat.update", count=2, where=lambda c: c.params["ts"] == alert.response["ts"])
    assert "Snoozed" not in lifted.text
    send.click(held(alert), element(alert.params["blocks"], "answer_moved"), channel="C1", user="U1")
    [reply] = slack.wait_for("chat.postMessage", where=lambda c: c.params.get("thread_ts") == alert.response["ts"])
    assert "Net Promoter Score" in reply.text
    assert marks.SNOOZE_CHOICES  # (imported for the names above)
