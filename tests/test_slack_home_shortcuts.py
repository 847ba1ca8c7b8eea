"""App Home and shortcuts end to end: signed app_home_opened, block_actions, shortcut,
message_action and view_submission payloads through the running app's HTTP endpoint; what
reached the fake Slack (views.publish / views.open / posts) is checked."""

from __future__ import annotations

import json
import time

import pytest

from bot import audit
from bot.schedules import store
from tests.slack_helpers import EXPECTED_NPS, QUESTION, TEAM_ID
from tests.test_slack_modals import app, submit  # noqa: F401 - the fixture
from tests.waiting import wait_until

pytest_plugins = ["tests.test_schedules_support"]
pytestmark = pytest.mark.usefixtures("schedule_env")


def home_opened(send, user: str = "U0ALICE"):
    return send.event({"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": "home",
                       "event_ts": f"{time.time():.6f}"})[0]


def home_click(send, action_id: str, value: dict | None = None, user: str = "U0ALICE"):
    element = {"type": "button", "action_id": action_id, "block_id": "home", "action_ts": "1.2"}
    if value is not None:
        element["value"] = json.dumps(value)
    return send.interactive({"type": "block_actions", "user": {"id": user, "team_id": TEAM_ID},
                             "container": {"type": "view", "view_id": "VHOME"}, "trigger_id": "9.9.home",
                             "view": {"id": "VHOME", "type": "home"}, "actions": [element]})


def answered_row_written(user: str = "U0ALICE") -> None:
    """The answer's audit row is queued once its reply is handed over, which is after Slack saw
    the post: wait until the audit thread has written it (the Home reads recent questions there)."""

    def written() -> bool:
        audit.flush()
        return any(r["user_id"] == user and r["question"] == QUESTION for r in audit.latest(50))

    wait_until(written, what="the answer's audit row")


def button(blocks: list, action_id: str) -> dict:
    found = [b.get("accessory") for b in blocks if (b.get("accessory") or {}).get("action_id") == action_id]
    found += [e for b in blocks if b["type"] == "actions" for e in b["elements"] if e["action_id"] == action_id]
    return found[0]


def test_home_shows_schedules_recent_questions_catalogue_and_freshness(app):  # noqa: F811
    fake, send, state = app
    send.command("digest add weekly mon 09:00 UTC nps", channel="C0TEAM")
    fake.wait_for("response_url", where=lambda c: "Digest #1 added" in c.text)
    send.command(QUESTION, channel="C0TEAM")
    fake.wait_for("chat.update", where=lambda c: f"*{EXPECTED_NPS}*" in c.text)  # the answer, chart added
    answered_row_written()
    assert home_opened(send).status == 200
    [home] = fake.wait_for("views.publish")
    assert home.params["user_id"] == "U0ALICE"
    view = home.params["view"]
    assert view["type"] == "home" and len(view["blocks"]) <= 100
    text = home.text
    assert "*#1* every Monday at 09:00 (UTC) in <#C0TEAM> — nps" in text
    assert json.loads(button(view["blocks"], "home_digest_edit")["value"]) == {"d": 1}
    assert "`nps 2026-Q3`" in text
    assert "`survey_responses`: data through 9 Sep 2026" in text  # the fixture's last answer
    assert "`orders`: no data loaded yet" in text
    assert "*Satisfaction*" in text and "*Net Promoter Score* (`nps`)" in text

    # "Ask again": answered in the DM, through the same path as a typed question
    reask = json.loads(button(view["blocks"], "home_reask")["value"])
    home_click(send, "home_reask", reask)
    [dm] = fake.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "D0ALICE")
    assert f"*{EXPECTED_NPS}*" in dm.text
    # somebody else's question is not theirs to re-ask
    home_click(send, "home_reask", reask, user="U0MALLORY")
    home_click(send, "home_reask", {"q": "1 or 1=1"})
    home_opened(send, "U0MALLORY")
    fake.wait_for("views.publish", where=lambda c: c.params["user_id"] == "U0MALLORY")
    assert not fake.calls("conversations.open", where=lambda c: c.params.get("users") == "U0MALLORY")

    # Remove: the typed command's path (owner check, audit), then the home is published again
    home_click(send, "home_digest_remove", {"d": 1})
    fake.wait_for("chat.postEphemeral", where=lambda c: "Digest #1" in c.text and "removed" in c.text)
    fake.wait_for("views.publish", count=2, where=lambda c: c.params["user_id"] == "U0ALICE")
    assert store.active_digests(state) == []


def test_edit_from_home_opens_the_form_filled_in(app):  # noqa: F811
    fake, send, _ = app
    send.command("digest add monthly last 08:30 Europe/Paris nps csat", channel="C0TEAM")
    fake.wait_for("response_url", where=lambda c: "Digest #1 added" in c.text)
    home_click(send, "home_digest_edit", {"d": 1}, user="U0BOB")  # not the owner: nothing opens
    home_click(send, "home_digest_edit", {"d": 1})
    [opened] = fake.wait_for("views.open")
    view = opened.params["view"]
    fields = {b["block_id"]: b["element"] for b in view["blocks"]}
    assert json.loads(view["private_metadata"]) == {"id": 1}
    assert [o["value"] for o in fields["kpis"]["initial_options"]] == ["nps", "csat"]
    assert fields["frequency"]["initial_option"]["value"] == "monthly"
    assert fields["day"]["initial_option"]["value"] == "last"
    assert fields["time"]["initial_time"] == "08:30" and fields["tz"]["initial_value"] == "Europe/Paris"
    assert len(fake.calls("views.open")) == 1


def test_global_shortcut_asks_in_a_modal(app):  # noqa: F811
    fake, send, _ = app
    resp = send.interactive({"type": "shortcut", "callback_id": "ask_kpibot", "trigger_id": "5.5.ask",
                             "user": {"id": "U0ALICE", "team_id": TEAM_ID}, "action_ts": "1.1"})
    assert resp.status == 200
    [opened] = fake.wait_for("views.open")
    view = opened.params["view"]
    assert view["callback_id"] == "ask_modal"
    empty = submit(send, view, {"question": {"question": {"type": "plain_text_input", "value": "  "}},
                                "channel": {"channel": {"type": "conversations_select",
                                                        "selected_conversation": "C0ASK"}}})
    assert empty.json()["errors"] == {"question": "Type a question, e.g. nps last quarter."}
    submit(send, view, {"question": {"question": {"type": "plain_text_input", "value": QUESTION}},
                        "channel": {"channel": {"type": "conversations_select", "selected_conversation": "C0ASK"}}})
    [post] = fake.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "C0ASK")
    assert f"*{EXPECTED_NPS}*" in post.text and "Asked by <@U0ALICE>" in post.text


def test_message_shortcut_answers_the_question_found_in_a_message(app):  # noqa: F811
    fake, send, _ = app
    message = {"type": "message", "user": "U0BOB", "ts": "1790000100.000200",
               "text": "Morning all! How is our nps for 2026-Q3? Somebody said it dropped."}
    resp = send.interactive({"type": "message_action", "callback_id": "answer_with_kpibot", "trigger_id": "6.6.msg",
                             "user": {"id": "U0ALICE", "team_id": TEAM_ID},
                             "channel": {"id": "C0CHAT", "name": "chat"}, "message": message,
                             "message_ts": message["ts"], "response_url": fake.response_url(),
                             "action_ts": "1.1"})
    assert resp.status == 200
    [post] = fake.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "C0CHAT")
    assert post.params["thread_ts"] == message["ts"]
    assert f"*{EXPECTED_NPS}*" in post.text and "`/kpi How is our nps for 2026-Q3`" in post.text


def test_editing_an_alert_from_home_keeps_what_the_form_does_not_show(app):  # noqa: F811
    fake, send, state = app
    send.command("alert add first_response_time above 2 by priority for 3 windows", channel="C0OPS")
    fake.wait_for("response_url", where=lambda c: "Alert #1 added" in c.text)
    home_click(send, "home_alert_edit", {"a": 1})
    [opened] = fake.wait_for("views.open")
    view = opened.params["view"]
    fields = {b["block_id"]: b["element"] for b in view["blocks"]}
    assert view["callback_id"] == "alert_modal" and view["title"]["text"] == "Edit alert"
    assert fields["kpi"]["initial_option"]["value"] == "first_response_time"
    assert fields["condition"]["initial_option"]["value"] == "above"
    assert fields["threshold"]["initial_value"] == "2" and fields["window"]["initial_option"]["value"] == "7"
    values = {
        "kpi": {"kpi": {"type": "static_select", "selected_option": {"value": "first_response_time"}}},
        "condition": {"condition": {"type": "static_select", "selected_option": {"value": "above"}}},
        "threshold": {"threshold": {"type": "plain_text_input", "value": "1.5"}},
        "window": {"window": {"type": "static_select", "selected_option": {"value": "14"}}},
        "channel": {"channel": {"type": "conversations_select", "selected_conversation": "C0OPS"}},
    }
    submit(send, view, values)
    fake.wait_for("chat.postEphemeral", where=lambda c: "Alert #1" in c.text and "removed" in c.text)
    [rule] = store.active_rules(state)
    assert (rule.id, rule.threshold, rule.window_days, rule.dimension, rule.consecutive) == (2, 1.5, 14, "priority", 3)


def test_message_shortcut_where_the_bot_is_not_a_member_answers_through_its_response_url(app):  # noqa: F811
    fake, send, _ = app
    fake.not_member.add("C0PRIVATE")
    url = fake.response_url()
    send.interactive({"type": "message_action", "callback_id": "answer_with_kpibot", "trigger_id": "6.7.msg",
                      "user": {"id": "U0ALICE", "team_id": TEAM_ID}, "channel": {"id": "C0PRIVATE", "name": "p"},
                      "message": {"type": "message", "user": "U0BOB", "ts": "1790000200.000100", "text": QUESTION},
                      "response_url": url, "action_ts": "1.1"})
    reply = fake.reply_to(url)
    assert reply.params["response_type"] == "in_channel" and f"*{EXPECTED_NPS}*" in reply.text


def test_save_a_recent_question_as_a_favourite_and_ask_it(app):  # noqa: F811
    fake, send, _ = app
    send.command(QUESTION, channel="C0TEAM")
    fake.wait_for("chat.update", where=lambda c: f"*{EXPECTED_NPS}*" in c.text)  # the answer, chart added
    answered_row_written()
    home_opened(send)
    [home] = fake.wait_for("views.publish")
    save = json.loads(button(home.params["view"]["blocks"], "home_fav_save")["value"])
    home_click(send, "home_fav_save", save, user="U0MALLORY")  # not theirs: nothing saved
    home_click(send, "home_fav_save", save)
    [_, saved] = fake.wait_for("views.publish", count=2, where=lambda c: c.params["user_id"] == "U0ALICE")
    assert "⭐ `nps 2026-Q3`" in saved.text
    assert not [b for b in saved.params["view"]["blocks"] if b["type"] == "actions"
                and b["elements"][0]["action_id"] == "home_fav_save"]  # saved: no second Save button
    fav = json.loads(button(saved.params["view"]["blocks"], "home_fav_ask")["value"])
    home_click(send, "home_fav_ask", fav, user="U0MALLORY")
    home_click(send, "home_fav_ask", fav)
    [dm] = fake.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == "D0ALICE")
    assert f"*{EXPECTED_NPS}*" in dm.text
    home_click(send, "home_fav_remove", fav)
    [*_, last] = fake.wait_for("views.publish", count=3, where=lambda c: c.params["user_id"] == "U0ALICE")
    assert "⭐ `nps 2026-Q3`" not in last.text and "Save ⭐" in last.text  # back among the recent ones
    assert not fake.calls("conversations.open", where=lambda c: c.params.get("users") == "U0MALLORY")
