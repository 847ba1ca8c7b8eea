"""The Slack app end to end, through the real protocol.

The app runs in HTTP mode under uvicorn on an ephemeral loopback port; requests are signed
exactly as Slack signs them; its Web API calls go (via ``SLACK_API_URL``) to
:class:`tests.fake_slack.FakeSlack`, which records them and can answer 429/500. The
answers are computed by the real metrics package on a DuckDB file holding the hand-made
fixture in :mod:`tests.slack_helpers` (NPS 2026-Q3 = 20.0, +20.0 on Q2, n = 10).
Nothing in the SDK or Bolt is patched.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from bot import router
from bot.app import KpiBot, Settings, create_bot
from bot.server import HttpServer, SocketModeRunner
from tests.fake_slack import PNG_MAGIC, FakeSlack, FakeSocketMode
from tests.slack_helpers import (
    BOT_TOKEN,
    EXPECTED_NPS,
    QUESTION,
    SIGNING_SECRET,
    TEAM_ID,
    SlackSender,
    direct_message,
    http_request,
    load_fixture,
    mention,
    percentile,
)
from tests.trust_helpers import use_env
from tests.waiting import wait_until

ACK_LIMIT = 3.0  # Slack's deadline
_channels = itertools.count(1)


@dataclass
class Harness:
    fake: FakeSlack
    bot: KpiBot
    server: HttpServer
    send: SlackSender
    env: dict[str, str | None]


@pytest.fixture(scope="module")
def slack_module(tmp_path_factory):
    url = f"duckdb:///{tmp_path_factory.mktemp('slack') / 'metrics.duckdb'}"
    load_fixture(url)
    env = {
        "KPI_USER_BURST": "1000",  # one user asks every question here: lift the per-user limit (tested below)
        "KPI_POLICY": None,
        "KPI_STATE_URL": f"sqlite:///{tmp_path_factory.mktemp('state') / 'state.sqlite'}",
    }
    with FakeSlack(token=BOT_TOKEN, users={"U0ALICE": "Europe/Paris"}) as fake:
        settings = Settings(
            bot_token=BOT_TOKEN,
            signing_secret=SIGNING_SECRET,
            api_url=fake.api_url,
            database_url=url,
            working_after=1.5,
        )
        with pytest.MonkeyPatch.context() as building:  # read while the bot is built (rate limits, policy)
            use_env(building, env)
            bot = create_bot(settings)
        with HttpServer(bot) as server:
            yield Harness(fake, bot, server, SlackSender(server.url, fake.response_url), env)


@pytest.fixture
def slack(slack_module, monkeypatch):
    """The running app, with its settings in the environment for this test only."""
    use_env(monkeypatch, slack_module.env)
    return slack_module


def channel(prefix: str = "C") -> str:
    return f"{prefix}{next(_channels):04d}TEST"


def not_working(c) -> bool:
    """Not the "Working on it…" notice (in a DM a normal message, sent whenever an answer is slow)."""
    return "Working on it" not in c.text


def posts_in(fake: FakeSlack, ch: str, count: int = 1, timeout: float = 15.0):
    """The first ``count`` messages posted in ``ch``, the working notice left out."""
    in_ch = fake.in_channel(ch)
    return fake.wait_for("chat.postMessage", count=count, where=lambda c: in_ch(c) and not_working(c),
                         timeout=timeout)


def answer_in(h: Harness | FakeSlack, ch: str, timeout: float = 15.0):
    fake = getattr(h, "fake", h)
    [post] = posts_in(fake, ch, timeout=timeout)
    answer_update(fake, post, timeout)  # the text first, then its chart added in place: both done
    return post


def after_answer(fake: FakeSlack, post):
    """Calls in the answer's channel after its chart was added (a click's, not the chart's own)."""
    done = answer_update(fake, post).seq
    in_ch = fake.in_channel(post.params["channel"])
    return lambda c: in_ch(c) and c.seq > done


def responses_for(h: Harness, url: str, count: int = 1, timeout: float = 60.0, *, working: bool = False):
    """What went to a command's ``response_url``; the "Working on it…" notice only if ``working``."""
    key = url.rsplit("/", 1)[1]
    return h.fake.wait_for("response_url", count=count, timeout=timeout,
                           where=lambda c: c.params["key"] == key and (working or not_working(c)))


def has_image(c) -> bool:
    return any(b["type"] == "image" for b in c.blocks)


def chart_update(fake: FakeSlack, post, timeout: float = 15.0):
    """The ``chat.update`` that adds the chart to a posted answer (its text went out first)."""
    return fake.wait_for("chat.update", timeout=timeout, where=lambda c: c.params.get("ts") == post.response["ts"]
                         and c.params.get("channel") == post.response["channel"] and has_image(c))[0]


def chart_of(fake: FakeSlack, post):
    """The image block of an answer and the completed upload it shows (a PNG); for a posted
    answer, the image its chart update added."""
    if post.method == "chat.postMessage":
        post = chart_update(fake, post)
    [image] = [b for b in post.blocks if b["type"] == "image"]
    file_id = image["slack_file"]["id"]
    assert fake.uploads[file_id].startswith(PNG_MAGIC)
    [done] = fake.calls("files.completeUploadExternal", where=lambda c: c.params["files"][0]["id"] == file_id)
    return image, done


def wait_stat(h: Harness, name: str, value: int) -> None:
    wait_until(lambda: h.bot.stats[name] >= value, what=f"stat {name} reaching {value}")


# ---- answers -------------------------------------------------------------------------------


def test_question_answered_with_number_and_png_chart(slack):
    ch = channel()
    resp, _ = slack.send.command(QUESTION, channel=ch)
    assert resp.status == 200 and resp.body == b""
    assert resp.elapsed < ACK_LIMIT

    post = answer_in(slack, ch)
    header = post.blocks[0]
    assert header["type"] == "header"
    assert header["text"]["text"].startswith("Net Promoter Score — 2026-Q3")
    text = post.text
    assert f"*{EXPECTED_NPS}* score" in text  # 100 * (5 - 3) / 10
    assert "▲ +20.0 points vs previous quarter (0.0)" in text  # Q2 = 0.0
    assert "good for this KPI" not in text  # +20 on 10 answers is inside the margin of error
    assert "n = 10 responses" in text
    assert "Formula:" in text and "Benchmark: good (above 0)" in text
    assert "Asked by <@U0ALICE>" in text
    assert "thread_ts" not in post.params or not post.params["thread_ts"]

    # one message: the text first, then the chart added in place (an image block showing the
    # uploaded file, shared nowhere else)
    assert not has_image(post) and "Drawing the chart" in post.text
    update = chart_update(slack.fake, post)
    image, done = chart_of(slack.fake, update)
    assert "channel_id" not in done.params and "channels" not in done.params
    [url_call] = slack.fake.calls("files.getUploadURLExternal", where=lambda c: c.response.get("file_id") == image["slack_file"]["id"])
    assert url_call.params["filename"].endswith(".png")
    assert url_call.params["alt_txt"].startswith("Chart: ") and "Net Promoter Score" in url_call.params["alt_txt"]
    assert image["alt_text"] == url_call.params["alt_txt"]
    assert post.seq < done.seq < update.seq  # posted, uploaded, then shown
    assert "Drawing the chart" not in update.text and f"*{EXPECTED_NPS}* score" in update.text
    actions = post.blocks[-1]
    assert actions["type"] == "actions"
    assert [e.get("action_id") for e in actions["elements"]] == [
        "answer_by", "answer_trend", "answer_yoy", "answer_moved", "answer_digest", "answer_alert"]
    # the user's time zone was looked up, with the bot token, never before the ack
    assert slack.fake.calls("users.info", where=lambda c: c.params.get("user") == "U0ALICE")
    assert all(c.headers["authorization"] == f"Bearer {BOT_TOKEN}" for c in slack.fake.calls("chat.postMessage"))


def test_breakdown_is_an_aligned_table(slack):
    ch = channel()
    slack.send.command(f"nps by touchpoint {QUESTION.split()[1]}", channel=ch)
    post = answer_in(slack, ch)
    table = next(b["text"]["text"] for b in post.blocks if b["type"] == "section" and "```" in b["text"]["text"])
    lines = table.strip("`\n").splitlines()
    assert lines[0].split() == ["touchpoint", "nps", "n", "change"]
    assert lines[1].split()[:3] == ["onboarding", "40.0", "5"]  # 100 * (3 - 1) / 5
    assert lines[2].split()[:3] == ["support", "0.0", "5"]  # 100 * (2 - 2) / 5
    assert len({len(line.rstrip()) for line in lines[:3]}) == 1  # right-aligned columns
    image, _ = chart_of(slack.fake, post)
    assert "by touchpoint" in image["title"]["text"]


def test_mention_is_answered_in_its_thread(slack):
    ch, ts = channel(), "1790001111.000200"
    resp, _ = slack.send.event(mention(f"<@{slack.fake.bot_user_id}> {QUESTION}", channel=ch, ts=ts))
    assert resp.status == 200 and resp.elapsed < ACK_LIMIT
    post = answer_in(slack, ch)
    assert post.params["thread_ts"] == ts
    assert f"*{EXPECTED_NPS}*" in post.text
    chart_of(slack.fake, post)  # in the same message, so in the thread


def test_direct_message_is_answered_in_the_dm(slack):
    ch = channel("D")
    resp, _ = slack.send.event(direct_message(QUESTION, channel=ch, ts="1790002222.000300"))
    assert resp.status == 200
    post = answer_in(slack, ch)
    assert f"*{EXPECTED_NPS}*" in post.text and not post.params.get("thread_ts")
    chart_of(slack.fake, post)
    # our own message echoed back as a message.im event is ignored
    own = direct_message("an answer", channel=ch, ts="1790002222.000400", bot_id=slack.fake.bot_id,
                         user=slack.fake.bot_user_id)
    resp, event_id = slack.send.event(own)
    assert resp.status == 200
    help_resp, _ = slack.send.event(direct_message("help", channel=ch, ts="1790002222.000500"))
    # DM help is a normal message; the echo before it produced nothing
    posts = posts_in(slack.fake, ch, count=2)
    assert "/kpi" in posts[1].text and len(posts) == 2


def test_a_slow_dm_answer_follows_its_working_notice(slack):
    """In a DM the "Working on it…" notice is a normal message, posted first when the answer is
    slow (as under load): the answer is the post after it, not the first one."""
    ch = channel("D")
    slack.bot.settings.working_after = 0.0  # every answer is "slow"
    try:
        slack.send.event(direct_message(QUESTION, channel=ch, ts="1790002222.000600"))
        post = answer_in(slack, ch)
    finally:
        slack.bot.settings.working_after = 1.5
    [notice] = slack.fake.wait_for("chat.postMessage", where=lambda c: slack.fake.in_channel(ch)(c) and not not_working(c))
    assert f"*{EXPECTED_NPS}*" in post.text and notice.seq < post.seq


def test_bad_question_gets_the_core_message_ephemerally(slack):
    ch = channel()
    resp, url = slack.send.command("nsp 2026-Q3", channel=ch)
    assert resp.status == 200
    [reply] = responses_for(slack, url)
    assert reply.params["response_type"] == "ephemeral"
    assert "I don't know a KPI called `nsp`" in reply.text and "Did you mean `nps`" in reply.text
    assert "Traceback" not in reply.text
    assert not slack.fake.calls("chat.postMessage", where=slack.fake.in_channel(ch))


def test_help_list_and_define(slack):
    ch = channel()
    _, help_url = slack.send.command("help", channel=ch)
    _, list_url = slack.send.command("list", channel=ch)
    _, define_url = slack.send.command("define nps", channel=ch)
    _, empty_url = slack.send.command("", channel=ch)
    [help_reply] = responses_for(slack, help_url)
    assert "/kpi" in help_reply.text and "define" in help_reply.text and "mention me" in help_reply.text
    [list_reply] = responses_for(slack, list_url)
    assert "`nps`" in list_reply.text and "`csat`" in list_reply.text
    [define_reply] = responses_for(slack, define_url)
    assert "Net Promoter Score" in define_reply.text and "Formula" in define_reply.text
    [empty_reply] = responses_for(slack, empty_url)
    assert "/kpi" in empty_reply.text
    for reply in (help_reply, list_reply, define_reply, empty_reply):
        assert reply.params["response_type"] == "ephemeral"
    assert not slack.fake.calls("chat.postMessage", where=slack.fake.in_channel(ch))


def test_schedule_words_are_routed(slack):
    ch = channel()
    _, url = slack.send.command("digest help", channel=ch, user="U0SCHEDHELP")
    _, alert_url = slack.send.command("alert help", channel=ch, user="U0SCHEDHELP")
    [reply] = responses_for(slack, url)
    [alert_reply] = responses_for(slack, alert_url)
    for r in (reply, alert_reply):
        assert r.params["response_type"] == "ephemeral" and r.text.strip()
    if router.schedules_module() is not None:
        assert "digest" in reply.text.lower() and "not available" not in reply.text
        assert "alert" in alert_reply.text.lower()
    else:
        assert "not available" in reply.text


# ---- security and robustness ----------------------------------------------------------------


def test_forged_signature_is_rejected(slack):
    ch = channel()
    resp, _ = slack.send.command(QUESTION, channel=ch, secret="not-the-signing-secret")
    assert resp.status == 401
    body = b"token=x&command=%2Fkpi&text=nps"
    assert slack.send.post(body, "application/x-www-form-urlencoded", sign=False).status == 401


def test_stale_timestamp_is_rejected(slack):
    ch = channel()
    resp, _ = slack.send.command(QUESTION, channel=ch, timestamp=int(time.time()) - 6 * 60)
    assert resp.status == 401
    resp, _ = slack.send.event(mention(f"<@UKPIBOT> {QUESTION}", channel=ch, ts="1790003333.000100"),
                               timestamp=int(time.time()) - 6 * 60)
    assert resp.status == 401
    # nothing was answered for either
    ok, _ = slack.send.command(QUESTION, channel=ch)  # a fresh, valid one is
    answer_in(slack, ch)
    assert len(slack.fake.calls("chat.postMessage", where=slack.fake.in_channel(ch))) == 1


def test_malformed_payload_is_a_400_and_the_server_stays_up(slack):
    assert slack.send.post(b"{not json", "application/json").status == 400
    assert slack.send.post(b"payload=%7Bbroken", "application/x-www-form-urlencoded").status == 400
    assert slack.send.post(b"[1, 2]", "application/json").status == 400
    assert slack.send.post(b"{not json", "application/json", sign=False).status == 401
    health = http_request(slack.server.url + "/healthz")
    assert health.status == 200 and health.json()["ok"] is True
    ch = channel()
    slack.send.command(QUESTION, channel=ch)
    answer_in(slack, ch)


def test_url_verification_challenge(slack):
    body = json.dumps({"token": "x", "challenge": "abc123", "type": "url_verification"}).encode()
    resp = slack.send.post(body, "application/json")
    assert resp.status == 200 and resp.json()["challenge"] == "abc123"


def test_retried_event_is_answered_once(slack):
    ch, ts = channel(), "1790004444.000100"
    before = slack.bot.stats["duplicate_events"]
    ev = mention(f"<@UKPIBOT> {QUESTION}", channel=ch, ts=ts)
    first, event_id = slack.send.event(ev)
    retry, _ = slack.send.event(ev, event_id=event_id, retry_num=1)
    assert first.status == 200 and retry.status == 200
    wait_stat(slack, "duplicate_events", before + 1)
    chart_of(slack.fake, answer_in(slack, ch))
    # a later question in the same channel is answered, and still only one answer to the first
    slack.send.event(mention("<@UKPIBOT> nps by touchpoint 2026-Q3", channel=ch, ts="1790004444.000200"))
    posts = slack.fake.wait_for("chat.postMessage", count=2, where=slack.fake.in_channel(ch))
    assert [p.params["thread_ts"] for p in posts].count(ts) == 1


def test_rate_limited_post_is_retried_and_delivered_once(slack):
    ch = channel()
    slack.fake.fail("chat.postMessage", status=429, retry_after=1, when=lambda p: p.get("channel") == ch)
    slack.send.command(QUESTION, channel=ch)
    post = answer_in(slack, ch)
    attempts = slack.fake.calls("chat.postMessage", ok=None, where=slack.fake.in_channel(ch))
    assert [a.status for a in attempts] == [429, 200]
    assert post.at - attempts[0].at >= 0.9  # waited for Retry-After: 1
    assert f"*{EXPECTED_NPS}*" in post.text


def test_server_error_on_post_is_retried(slack):
    ch = channel()
    slack.fake.fail("chat.postMessage", status=500, when=lambda p: p.get("channel") == ch)
    slack.send.command(QUESTION, channel=ch)
    answer_in(slack, ch)
    attempts = slack.fake.calls("chat.postMessage", ok=None, where=slack.fake.in_channel(ch))
    assert [a.status for a in attempts] == [500, 200]


def quiet(h: Harness) -> None:
    """No question of earlier tests still running on the module's shared bot (one may still be
    uploading its chart, and an upload names no channel to tell it apart)."""
    wait_until(lambda: not +h.bot._in_flight, what="the shared bot finishing earlier questions")


def answer_update(fake: FakeSlack, post, timeout: float = 15.0):
    """The ``chat.update`` that finishes a posted answer (chart added, or a note instead)."""
    return fake.wait_for("chat.update", timeout=timeout, where=lambda c: c.params.get("ts") == post.response["ts"]
                         and c.params.get("channel") == post.response["channel"])[0]


def test_answer_text_is_posted_before_the_chart_is_uploaded(slack):
    """What the asker waits for: the number and buttons go out before the chart is drawn and
    uploaded; the chart is then added to that same message."""
    ch = channel()
    slack.send.command(QUESTION, channel=ch)
    post = answer_in(slack, ch)
    assert f"*{EXPECTED_NPS}* score" in post.text and post.blocks[-1]["type"] == "actions"
    assert not has_image(post)
    update = chart_update(slack.fake, post)
    image, done = chart_of(slack.fake, update)
    [url_call] = slack.fake.calls("files.getUploadURLExternal",
                                  where=lambda c: c.response.get("file_id") == image["slack_file"]["id"])
    assert post.seq < url_call.seq < done.seq < update.seq  # text, then the upload, then the chart in place
    assert update.params["channel"] == ch and update.params["ts"] == post.response["ts"]
    assert f"*{EXPECTED_NPS}* score" in update.text and update.blocks[-1]["type"] == "actions"
    assert len(slack.fake.calls("chat.postMessage", where=slack.fake.in_channel(ch))) == 1


def test_a_failed_chart_update_is_retried_without_posting_again(slack):
    ch = channel()
    slack.fake.fail("chat.update", status=500, when=lambda p: p.get("channel") == ch)
    slack.send.command(QUESTION, channel=ch)
    post = answer_in(slack, ch)
    chart_update(slack.fake, post)
    attempts = slack.fake.calls("chat.update", ok=None, where=slack.fake.in_channel(ch))
    assert [a.status for a in attempts] == [500, 200]
    assert len(slack.fake.calls("chat.postMessage", ok=None, where=slack.fake.in_channel(ch))) == 1
    assert len(slack.fake.calls("files.completeUploadExternal", where=lambda c: c.seq > post.seq
                                and c.params["files"][0]["id"] in str(attempts[1].blocks))) == 1


def test_chart_upload_failure_still_delivers_the_text_with_a_note(slack):
    ch = channel()
    quiet(slack)  # uploads carry no channel: the next one must be this answer's
    slack.fake.fail("files.getUploadURLExternal", error="missing_scope")
    slack.send.command(QUESTION, channel=ch)
    post = answer_in(slack, ch)
    assert f"*{EXPECTED_NPS}*" in post.text  # the whole answer went out first
    update = answer_update(slack.fake, post)
    # the module's fake Slack is shared: only this answer's refused upload, between its post and update
    assert slack.fake.calls("files.getUploadURLExternal", ok=False, where=lambda c: post.seq < c.seq < update.seq)
    assert f"*{EXPECTED_NPS}*" in update.text and update.blocks[-1]["type"] == "actions"  # the text stands
    assert "chart could not be attached" in update.text and "files:write" in update.text
    assert "Drawing the chart" not in update.text and not has_image(update)


def test_a_chart_that_cannot_be_drawn_leaves_the_text_with_a_note(slack, monkeypatch):
    from metrics import charts

    def broken(result):
        raise ValueError("no figure today")

    monkeypatch.setattr(charts, "render_png", broken)  # kpibot's own drawing, not Slack's SDK
    ch = channel()
    slack.send.command(QUESTION, channel=ch)
    post = answer_in(slack, ch)
    update = answer_update(slack.fake, post)
    assert f"*{EXPECTED_NPS}* score" in update.text and update.blocks[-1]["type"] == "actions"
    assert "The chart could not be drawn (error id" in update.text and not has_image(update)
    assert "no figure today" not in update.text and "Drawing the chart" not in update.text
    assert not slack.fake.calls("files.getUploadURLExternal", where=lambda c: c.seq > post.seq)


def test_a_chart_slack_is_still_processing_is_shown_once_it_is_ready(slack):
    """Slack may refuse a just-uploaded file in an image block (invalid_blocks): the post is
    tried again; a file that never becomes usable goes to the thread the old way."""
    ch = channel()
    slack.fake.fail("chat.update", error="invalid_blocks", when=lambda p: p.get("channel") == ch)
    slack.send.command(QUESTION, channel=ch)
    post = answer_in(slack, ch)
    update = chart_update(slack.fake, post)
    refused = slack.fake.calls("chat.update", ok=False, where=slack.fake.in_channel(ch))
    assert len(refused) == 1 and post.seq < refused[0].seq < update.seq
    chart_of(slack.fake, update)

    ch = channel()
    slack.fake.fail("chat.update", error="invalid_blocks", times=3, when=lambda p: p.get("channel") == ch)
    slack.send.command(QUESTION, channel=ch)
    post = answer_in(slack, ch)
    [plain] = slack.fake.wait_for("chat.update", where=slack.fake.in_channel(ch))
    assert not has_image(plain) and f"*{EXPECTED_NPS}*" in plain.text and "Drawing the chart" not in plain.text
    assert len(slack.fake.calls("chat.postMessage", where=slack.fake.in_channel(ch))) == 1
    [shared] = slack.fake.wait_for("files.completeUploadExternal", where=slack.fake.in_channel(ch))
    assert slack.fake.uploads[shared.params["files"][0]["id"]].startswith(PNG_MAGIC)
    assert shared.params["thread_ts"] == post.response["ts"]  # in the answer's thread
    slack.bot.__dict__.pop("chart_block_refusals", None)  # the next tests start with none


def test_a_workspace_refusing_chart_images_gets_charts_in_the_thread(slack):
    """After three answers whose image blocks Slack refused, the next ones skip the attempt
    (no 1.5 s of retries each) and put the chart in the answer's thread."""
    slack.bot.__dict__.pop("chart_block_refusals", None)  # refusals counted by earlier tests
    try:
        for _ in range(3):
            ch = channel()
            slack.fake.fail("chat.update", error="invalid_blocks", times=3,
                            when=lambda p, ch=ch: p.get("channel") == ch)
            slack.send.command(QUESTION, channel=ch)
            slack.fake.wait_for("files.completeUploadExternal", where=slack.fake.in_channel(ch))
        ch = channel()
        slack.send.command(QUESTION, channel=ch)
        post = answer_in(slack, ch)
        [shared] = slack.fake.wait_for("files.completeUploadExternal", where=slack.fake.in_channel(ch))
        assert shared.params["thread_ts"] == post.response["ts"]
        assert not slack.fake.calls("chat.update", ok=False, where=slack.fake.in_channel(ch))
        [plain] = slack.fake.calls("chat.update", where=slack.fake.in_channel(ch))
        assert not has_image(plain) and plain.blocks[-1]["type"] == "actions" and "Drawing the chart" not in plain.text
    finally:
        slack.bot.__dict__.pop("chart_block_refusals", None)  # the module's app: back to image blocks


def test_slash_command_where_the_bot_is_not_a_member(slack):
    ch = channel()
    slack.fake.not_member.add(ch)
    _, url = slack.send.command(QUESTION, channel=ch)
    [reply] = responses_for(slack, url)
    assert reply.params["response_type"] == "in_channel"
    assert f"*{EXPECTED_NPS}*" in reply.text and "/invite @kpibot" in reply.text
    assert not slack.fake.calls("files.completeUploadExternal", where=slack.fake.in_channel(ch))


def test_slow_answer_gets_a_working_line_first(slack):
    ch = channel()
    slack.bot.settings.working_after = 0.0
    try:
        _, url = slack.send.command(QUESTION, channel=ch)
        post = answer_in(slack, ch)
    finally:
        slack.bot.settings.working_after = 1.5
    [working] = responses_for(slack, url, working=True)
    assert "Working on it" in working.text and working.params["response_type"] == "ephemeral"
    assert working.seq < post.seq


def test_slash_command_is_acked_before_bolt_runs_its_listener(slack, monkeypatch):
    # Bolt held back entirely: the endpoint has already answered Slack, and the answer
    # follows once Bolt runs. (Through Bolt's own ack path this request would wait.)
    release, original = threading.Event(), slack.bot.app.dispatch

    def held(request):
        release.wait(10)
        return original(request)

    monkeypatch.setattr(slack.bot.app, "dispatch", held)
    ch = channel()
    resp, _ = slack.send.command(QUESTION, channel=ch)
    # (an endpoint waiting for Bolt would still be waiting here: Bolt is held until release)
    assert resp.status == 200 and resp.body == b""
    assert not slack.fake.calls("chat.postMessage", where=slack.fake.in_channel(ch))
    release.set()
    assert f"*{EXPECTED_NPS}*" in answer_in(slack, ch).text
    # a forged one is still refused before anything runs
    forged = slack.send.post(b"command=%2Fkpi&text=nps", "application/x-www-form-urlencoded", sign=False)
    assert forged.status == 401


def test_burst_of_30_commands_all_acked_fast_and_answered(slack):
    channels = [channel("CB") for _ in range(30)]
    with ThreadPoolExecutor(max_workers=30) as pool:
        results = list(pool.map(lambda i: slack.send.command(QUESTION, channel=channels[i], user=f"U0BURST{i}")[0],
                                range(30)))
    acks = [r.elapsed for r in results]
    assert all(r.status == 200 for r in results)
    assert max(acks) < ACK_LIMIT
    posts = slack.fake.wait_for(
        "chat.postMessage", count=30, where=lambda c: c.params.get("channel") in set(channels), timeout=45
    )
    assert {p.params["channel"] for p in posts} == set(channels)
    assert all(f"*{EXPECTED_NPS}*" in p.text for p in posts)
    print(f"\n30-burst ack times: p50={percentile(acks, 50) * 1000:.0f} ms, "
          f"p99={percentile(acks, 99) * 1000:.0f} ms, max={max(acks) * 1000:.0f} ms")


# ---- access policy and rate limits ------------------------------------------------------------


def test_policy_keeps_financial_kpis_out_of_channels(slack):
    ch = channel()
    _, url = slack.send.command("revenue 2026-Q3", channel=ch)
    [reply] = responses_for(slack, url)
    assert reply.params["response_type"] == "ephemeral"
    assert "KPI policy" in reply.text and "`revenue`" in reply.text
    assert not slack.fake.calls("chat.postMessage", where=slack.fake.in_channel(ch))
    assert not slack.fake.calls("files.completeUploadExternal", where=slack.fake.in_channel(ch))


def test_a_user_asking_too_fast_is_told_to_wait(slack, monkeypatch):
    from bot.ratelimit import Limits

    monkeypatch.setenv("KPI_USER_BURST", "2")
    monkeypatch.setenv("KPI_USER_PER_MINUTE", "1")
    saved, slack.bot.limits = slack.bot.limits, Limits()
    try:
        ch = channel()
        keys = {slack.send.command(QUESTION, channel=ch, user="U0EAGER")[1].rsplit("/", 1)[1] for _ in range(3)}
        slack.fake.wait_for("chat.postMessage", count=2, where=slack.fake.in_channel(ch))
        # acked commands reach Bolt through a pool, so any one of the three may be the one too many
        [limited] = slack.fake.wait_for("response_url", where=lambda c: c.params["key"] in keys and not_working(c))
    finally:
        slack.bot.limits = saved
    assert limited.params["response_type"] == "ephemeral" and "try again in" in limited.text
    assert len(slack.fake.calls("chat.postMessage", where=slack.fake.in_channel(ch))) == 2


# ---- `kpibot serve` as a process -------------------------------------------------------------


def test_kpibot_serve_http_mode_in_a_subprocess(slack, tmp_path):
    import os
    import signal
    import socket
    import subprocess
    import sys

    url = f"duckdb:///{tmp_path / 'serve.duckdb'}"
    load_fixture(url)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.fake.api_url,
        "KPI_DATABASE_URL": url,
        "KPI_STATE_URL": f"sqlite:///{tmp_path / 'state.sqlite'}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    env.pop("SLACK_APP_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def up() -> bool:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                return http_request(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200
            except OSError:
                return False

        wait_until(up, timeout=60, what="kpibot serve coming up")
        sender = SlackSender(f"http://127.0.0.1:{port}", slack.fake.response_url)
        ch = channel()
        resp, _ = sender.command(QUESTION, channel=ch)
        assert resp.status == 200
        assert f"*{EXPECTED_NPS}*" in answer_in(slack, ch).text
        assert sender.command(QUESTION, channel=ch, secret="forged")[0].status == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0
    lines = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    assert any(line["event"] == "serving" and line.get("mode") == "http" for line in lines)
    assert any(line["event"] == "reply" and line.get("kpi") == "nps" for line in lines)
    assert BOT_TOKEN not in err.decode() and SIGNING_SECRET not in err.decode()


# ---- Socket Mode -----------------------------------------------------------------------------

APP_TOKEN = "xapp-1-A0KPI-1234-testapptoken"


@pytest.fixture(scope="module")
def socket_slack(tmp_path_factory):
    url = f"duckdb:///{tmp_path_factory.mktemp('socket') / 'metrics.duckdb'}"
    load_fixture(url)
    with FakeSlack(token=BOT_TOKEN, app_token=APP_TOKEN) as fake:
        ws = FakeSocketMode(fake)
        bot = create_bot(Settings(bot_token=BOT_TOKEN, app_token=APP_TOKEN, api_url=fake.api_url, database_url=url))
        runner = SocketModeRunner(bot, APP_TOKEN).start()
        ws.connected()
        try:
            yield fake, ws, bot
        finally:
            runner.stop()
            ws.close()


def test_socket_mode_slash_command_is_acked_over_the_socket_and_answered(socket_slack):
    fake, ws, _ = socket_slack
    ch = channel()
    envelope = ws.send("slash_commands", {
        "token": "x", "team_id": TEAM_ID, "channel_id": ch, "user_id": "U0ALICE", "user_name": "alice",
        "command": "/kpi", "text": QUESTION, "response_url": fake.response_url(), "trigger_id": "1.2.3",
        "api_app_id": "A0KPI", "is_enterprise_install": "false",
    })
    elapsed, ack = ws.wait_ack(envelope)
    assert elapsed < ACK_LIMIT and ack["envelope_id"] == envelope
    post = answer_in(fake, ch)
    assert f"*{EXPECTED_NPS}*" in post.text
    chart_of(fake, post)


def test_socket_mode_retried_event_is_answered_once(socket_slack):
    fake, ws, bot = socket_slack
    ch, ts = channel(), "1790005555.000100"
    before = bot.stats["duplicate_events"]
    payload = {
        "token": "x", "team_id": TEAM_ID, "api_app_id": "A0KPI", "type": "event_callback",
        "event_id": "EvSOCKET0001", "event_time": int(time.time()),
        "event": mention(f"<@{fake.bot_user_id}> {QUESTION}", channel=ch, ts=ts),
        "authorizations": [{"team_id": TEAM_ID, "user_id": fake.bot_user_id, "is_bot": True}],
    }
    first = ws.send("events_api", payload)
    retry = ws.send("events_api", payload, retry_attempt=1)
    assert ws.wait_ack(first)[0] < ACK_LIMIT and ws.wait_ack(retry)[0] < ACK_LIMIT
    wait_stat(SimpleNamespace(bot=bot), "duplicate_events", before + 1)
    post = answer_in(fake, ch)
    assert post.params["thread_ts"] == ts


# ---- clicks on an answer ----------------------------------------------------------------------


def as_held(post) -> dict:
    """The message as Slack holds it (and sends back in a click's payload)."""
    return {"type": "message", "ts": post.response["ts"], "text": post.params.get("text", ""),
            "user": "UKPIBOT", "bot_id": "BKPIBOT", "blocks": post.blocks}


def element(post, action_id: str) -> dict:
    [found] = [e for b in post.blocks if b["type"] == "actions" for e in b["elements"] if e["action_id"] == action_id]
    return found


def test_by_select_replaces_the_answer_in_place_through_the_same_gate(slack):
    ch = channel()
    slack.send.command(QUESTION, channel=ch)
    post = answer_in(slack, ch)
    select = dict(element(post, "answer_by"))
    [option] = [o for o in select["options"] if o["text"]["text"] == "touchpoint"]
    select["selected"] = option
    jobs = slack.bot.stats["jobs"]
    resp = slack.send.click(as_held(post), select, channel=ch, user="U0BOB")
    assert resp.status == 200 and resp.elapsed < ACK_LIMIT
    [update] = slack.fake.wait_for("chat.update", where=after_answer(slack.fake, post))
    assert update.params["ts"] == post.response["ts"]  # the same message, replaced
    table = next(b["text"]["text"] for b in update.blocks if b["type"] == "section" and "```" in b["text"]["text"])
    rows = table.strip("`\n").splitlines()
    assert rows[1].split()[:3] == ["onboarding", "40.0", "5"] and rows[2].split()[:3] == ["support", "0.0", "5"]
    image, _ = chart_of(slack.fake, update)
    assert "by touchpoint" in image["title"]["text"]
    assert "Asked by <@U0BOB> · `/kpi nps 2026-Q3 by touchpoint`" in update.text
    assert slack.bot.stats["jobs"] == jobs + 1  # submitted like a typed question
    assert len(posts_in(slack.fake, ch)) == 1  # nothing new in the channel
    from bot import audit

    def clicked() -> list[dict]:
        audit.flush()  # the row is queued once the reply is out: wait for it
        return [r for r in audit.latest(200) if r["channel_id"] == ch and r["surface"] == "click"]

    wait_until(lambda: clicked(), what="the click's audit row")
    [row] = clicked()
    assert (row["user_id"], row["question"], row["kpi"], row["outcome"]) == (
        "U0BOB", "nps 2026-Q3 by touchpoint", "nps", "answered")


def test_a_click_before_the_chart_arrives_is_not_undone_by_it(slack):
    """The text goes out before the chart: a click on it may finish first. The answer's late
    chart must not put the old answer back over the click's."""
    ch, user = channel(), "U0RACE"
    quiet(slack)  # uploads carry no channel: the next one must be this answer's
    slack.fake.fail("files.getUploadURLExternal", status=429, retry_after=2)  # the answer's upload waits 2 s
    slack.send.command(QUESTION, channel=ch, user=user)
    [post] = posts_in(slack.fake, ch)
    slack.send.click(as_held(post), element(post, "answer_trend"), channel=ch, user=user)
    slack.fake.wait_for("chat.update", where=lambda c: c.params.get("ts") == post.response["ts"]
                        and "Trend by week" in c.text)
    # both jobs done, in whichever order (this test's own user: the module's bot is shared)
    wait_until(lambda: slack.bot._in_flight.get(user, 0) == 0, what="both of the user's jobs finishing")
    updates = slack.fake.calls("chat.update", ok=True, where=lambda c: c.params.get("ts") == post.response["ts"])
    assert updates and "Trend by week" in updates[-1].text  # the click's answer stays
    assert len(slack.fake.calls("chat.postMessage", where=slack.fake.in_channel(ch))) == 1


def test_trend_and_what_moved_it(slack):
    ch = channel()
    slack.send.command(QUESTION, channel=ch)
    post = answer_in(slack, ch)
    slack.send.click(as_held(post), element(post, "answer_trend"), channel=ch)
    [update] = slack.fake.wait_for("chat.update", where=after_answer(slack.fake, post))
    assert update.params["ts"] == post.response["ts"] and "Trend by week" in update.text
    slack.send.click(as_held(post), element(post, "answer_moved"), channel=ch)
    [reply] = slack.fake.wait_for("chat.postMessage", where=lambda c: c.params.get("thread_ts") == post.response["ts"])
    assert reply.params["channel"] == ch and "onboarding" in reply.text and "support" in reply.text


def test_a_click_with_a_value_we_did_not_make_is_refused(slack):
    ch = channel()
    slack.send.command(QUESTION, channel=ch)
    post = answer_in(slack, ch)
    before = slack.bot.stats["bad_actions"]
    for value in ('{"k":"nps","p":"2026-Q3 where 1=1"}', '{"k":"nps","p":"2026-Q3","d":"comment"}',
                  '{"k":"DROP TABLE","p":"2026"}', "nps 2026-Q3"):
        forged = dict(element(post, "answer_trend"), value=value)
        assert slack.send.click(as_held(post), forged, channel=ch).status == 200
    wait_stat(slack, "bad_actions", before + 4)
    refusals = slack.fake.wait_for("response_url", count=4, where=lambda c: "out of date" in c.text)
    assert all(r.params["response_type"] == "ephemeral" and not r.params["replace_original"] for r in refusals)
    assert not slack.fake.calls("chat.update", where=after_answer(slack.fake, post))


def test_a_click_passes_the_policy_like_a_typed_question(slack):
    """Well-formed ids for a KPI the policy keeps out of channels: refused to the clicker only."""
    ch = channel()
    slack.send.command(QUESTION, channel=ch)
    post = answer_in(slack, ch)
    before = slack.bot.stats["policy_refusals"]
    forged = dict(element(post, "answer_trend"), value='{"k":"revenue","p":"2026-Q3"}')
    slack.send.click(as_held(post), forged, channel=ch, user="U0BOB")
    [refusal] = slack.fake.wait_for("chat.postEphemeral", where=lambda c: c.params.get("channel") == ch
                                    and c.params.get("user") == "U0BOB")
    assert "KPI policy" in refusal.text and "`revenue`" in refusal.text
    assert slack.bot.stats["policy_refusals"] == before + 1
    assert not slack.fake.calls("chat.update", where=after_answer(slack.fake, post))


def test_clicks_count_against_the_rate_limit(slack, monkeypatch):
    """A button is a question like any other: a user clicking too fast is told to wait, and the
    message is not changed for the refused click."""
    from bot.ratelimit import Limits

    ch = channel()
    slack.send.command(QUESTION, channel=ch, user="U0CLICKY")
    post = answer_in(slack, ch)
    monkeypatch.setenv("KPI_USER_BURST", "1")
    monkeypatch.setenv("KPI_USER_PER_MINUTE", "1")
    saved, slack.bot.limits = slack.bot.limits, Limits()
    try:
        for action in ("answer_trend", "answer_yoy"):
            slack.send.click(as_held(post), element(post, action), channel=ch, user="U0CLICKY")
        [limited] = slack.fake.wait_for("chat.postEphemeral", where=lambda c: c.params.get("channel") == ch
                                        and c.params.get("user") == "U0CLICKY")
        [update] = slack.fake.wait_for("chat.update", where=after_answer(slack.fake, post))
    finally:
        slack.bot.limits = saved
    assert "try again in" in limited.text
    assert "Trend by week" in update.text  # the first click, answered; the second refused
    assert len(slack.fake.calls("chat.update", where=after_answer(slack.fake, post))) == 1


def test_socket_mode_click_is_acked_over_the_socket_and_updates_the_answer(socket_slack):
    fake, ws, _ = socket_slack
    ch = channel()
    ws.send("slash_commands", {
        "token": "x", "team_id": TEAM_ID, "channel_id": ch, "user_id": "U0ALICE", "user_name": "alice",
        "command": "/kpi", "text": QUESTION, "response_url": fake.response_url(), "trigger_id": "7.8.9",
        "api_app_id": "A0KPI", "is_enterprise_install": "false",
    })
    post = answer_in(fake, ch)
    button = element(post, "answer_yoy")
    envelope = ws.send("interactive", {
        "type": "block_actions", "team": {"id": TEAM_ID}, "user": {"id": "U0ALICE"}, "api_app_id": "A0KPI",
        "container": {"type": "message", "message_ts": post.response["ts"], "channel_id": ch},
        "channel": {"id": ch}, "message": as_held(post), "trigger_id": "7.8.10",
        "response_url": fake.response_url(), "actions": [{**button, "block_id": "answer_actions", "action_ts": "1"}],
    })
    elapsed, _ = ws.wait_ack(envelope)
    assert elapsed < ACK_LIMIT
    [update] = fake.wait_for("chat.update", where=after_answer(fake, post))
    assert update.params["ts"] == post.response["ts"] and "same period last year" in update.text
