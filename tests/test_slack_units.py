"""The Slack front end's pieces on their own: routing, Block Kit, dedupe, logging, clients, setup."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import types
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot import blocks, router, server
from bot import logging as kpilog
from bot.app import Settings, WorkingNotice
from bot.dedupe import TTLSet
from bot.slack_client import api_url, make_client, make_webhook
from metrics.api import ask
from metrics.result import Group
from tests.fake_slack import FakeSlack
from tests.slack_helpers import BOT_TOKEN, QUESTION, load_fixture, signature

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def restore_logging():
    """serve() configures process-wide logging; put it back for the tests after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    kpilog._configured = False


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    url = f"duckdb:///{tmp_path_factory.mktemp('units') / 'metrics.duckdb'}"
    load_fixture(url)
    return url


# ---- router ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("<@UKPIBOT> nps last-quarter", "nps last-quarter"),
        ("<@UKPIBOT|kpibot>   nps  by  industry", "nps by industry"),
        ("nps where plan=&lt;Pro&gt; &amp; co", "nps where plan=<Pro> & co"),
        ("nps in <#C123|general> <https://x.example|link>", "nps in general link"),
        ("`nps` last quarter", "nps last quarter"),
        ("/kpi nps", "nps"),
        ("", ""),
        (None, ""),
    ],
)
def test_clean_text(raw, clean):
    assert router.clean_text(raw, "UKPIBOT") == clean


def test_route_help_list_define(url):
    ctx = router.Context(database_url=url)
    for text in ("", "help", "HELP", "?"):
        reply = router.route(text, ctx)
        assert reply.kind == "info" and reply.command == "help" and "/kpi" in reply.text and not reply.public
    listing = router.route("list", ctx)
    assert listing.command == "list" and "`nps`" in listing.text
    define = router.route("define nps", ctx)
    assert define.kind == "info" and "Net Promoter Score" in define.text
    unknown = router.route("define nsp", ctx)
    assert unknown.kind == "error" and "Did you mean `nps`" in unknown.text
    assert router.route("define", ctx).kind == "error"


def test_route_question_and_user_errors(url):
    ctx = router.Context(database_url=url, user_tz="Europe/Paris")
    reply = router.route(QUESTION, ctx)
    assert reply.kind == "answer" and reply.public
    assert reply.result.value == pytest.approx(20.0) and reply.result.n == 10
    for bad, words in (("nsp 2026-Q3", "Did you mean"), ("nps by colour 2026-Q3", "broken down"),
                       ("nps 2026-13", "month"), ("x" * 600, "under 500")):
        reply = router.route(bad, ctx)
        assert reply.kind == "error" and words in reply.text, (bad, reply.text)
        assert "Traceback" not in reply.text


def test_internal_error_has_an_id_in_the_reply_and_the_log(caplog):
    def broken(*_a, **_k):
        raise ZeroDivisionError("boom")

    with caplog.at_level(logging.ERROR):
        reply = router.route("nps", router.Context(user_id="U1"), ask=broken)
    assert reply.kind == "error" and reply.error_id and f"`{reply.error_id}`" in reply.text
    assert "\n" not in reply.text and "boom" not in reply.text
    [record] = [r for r in caplog.records if r.getMessage() == "internal_error"]
    assert record.fields["error_id"] == reply.error_id and record.exc_info


def test_database_errors_are_shown_plainly():
    from storage.database import DataBusy

    def busy(*_a, **_k):
        raise DataBusy("data is being refreshed, try again in a moment")

    reply = router.route("nps", ask=busy)
    assert reply.kind == "error" and "refreshed" in reply.text and reply.error_id is None


def test_context_today_uses_the_users_time_zone():
    late = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)
    assert str(router.Context(user_tz="Asia/Tokyo", now=late).today()) == "2026-11-24"
    assert str(router.Context(user_tz="America/New_York", now=late).today()) == "2026-11-23"
    assert router.Context(user_tz="Not/AZone", now=late).today() is None
    assert router.Context(now=late).today() is None


def test_schedule_words_go_to_the_schedules_module(monkeypatch):
    seen = {}

    def handle(args, *, channel_id, user_id, user_tz, now):
        seen.update(args=args, channel_id=channel_id, user_id=user_id, user_tz=user_tz, now=now)
        return "Digest #1 scheduled."

    module = types.ModuleType("kpibot_test_schedules")
    module.handle = handle
    monkeypatch.setitem(sys.modules, "kpibot_test_schedules", module)
    monkeypatch.setattr(router, "SCHEDULES_MODULE", "kpibot_test_schedules")
    now = datetime(2026, 11, 23, 9, tzinfo=UTC)
    ctx = router.Context(user_id="U1", channel_id="C1", user_tz="Europe/Paris", now=now)
    reply = router.route("digest nps weekly monday 9:00", ctx)
    assert reply.kind == "info" and reply.command == "digest" and reply.text == "Digest #1 scheduled."
    assert seen == {"args": ["digest", "nps", "weekly", "monday", "9:00"], "channel_id": "C1", "user_id": "U1",
                    "user_tz": "Europe/Paris", "now": now}
    assert router.route("alerts list", ctx).command == "alert"


def test_schedule_words_without_the_module(monkeypatch):
    monkeypatch.setattr(router, "SCHEDULES_MODULE", "bot.no_such_package.commands")
    reply = router.route("alert nps below 0", router.Context())
    assert reply.kind == "info" and "not available" in reply.text


# ---- Block Kit -------------------------------------------------------------------------------


def _limits_ok(blks):
    assert len(blks) <= 50
    for b in blks:
        if b["type"] == "header":
            assert len(b["text"]["text"]) <= 150
        if b["type"] == "section":
            assert len(b["text"]["text"]) <= 3000
        if b["type"] == "context":
            assert 1 <= len(b["elements"]) <= 10


def test_answer_blocks(url):
    result = ask(QUESTION, url=url)
    blks = blocks.answer_blocks(result, chart_note="The chart could not be attached.", asked=blocks.asked_by("U1", "nps"))
    _limits_ok(blks)
    assert blks[0]["type"] == "header" and blks[0]["text"]["text"].startswith("Net Promoter Score — 2026-Q3")
    main = blks[1]["text"]["text"]
    assert main.splitlines()[0] == "*20.0* score"
    assert "▲ +20.0 points vs previous quarter (0.0)" in main
    assert "good" not in main and "bad" not in main  # +20 is inside the margin of error: no verdict
    assert ":warning: n = 10 responses" in main
    flat = json.dumps(blks)
    assert "Formula:" in flat and "Benchmark: good (above 0)" in flat
    assert "The chart could not be attached." in flat and "Asked by <@U1>" in flat
    assert "20.0" in blocks.answer_text(result)


def test_change_text_for_a_bad_move_and_no_previous(url):
    result = ask(QUESTION, url=url)
    worse = replace(result, change=-5.0, change_pct=None, judgement="bad")
    assert blocks.change_text(worse).startswith("▼ −5.0 points") and "bad for this KPI" in blocks.change_text(worse)
    assert blocks.change_text(replace(result, previous=None)) is None


def test_breakdown_table_is_trimmed_to_fit(url):
    result = ask("nps by touchpoint 2026-Q3", url=url)
    table = blocks.table_text(result)
    assert table.startswith("```\n") and "onboarding" in table
    many = [Group(f"segment-{i:03d}-with-a-long-name", float(i), 40, float(i - 1)) for i in range(200)]
    big = replace(result, breakdown=many)
    blks = blocks.answer_blocks(big)
    _limits_ok(blks)
    table = blocks.table_text(big)
    assert "segment-000" in table and "segment-199" not in table and "smaller segments" in table
    assert "segment-199" in blocks.chart_alt_text(big)[:10_000] or len(blocks.chart_alt_text(big)) <= 900


def test_trend_text_and_alt_text(url):
    result = ask("nps weekly 2026-Q3", url=url)
    trend = blocks.trend_text(result)
    assert trend.startswith("Trend by week:") and "`" in trend
    alt = blocks.chart_alt_text(result)
    assert alt.startswith("Chart: line chart of Net Promoter Score by week") and len(alt) <= 900
    bars = blocks.chart_alt_text(ask("nps by touchpoint 2026-Q3", url=url))
    assert "onboarding 40.0" in bars and "support 0.0" in bars
    assert blocks.chart_filename(result).endswith(".png")


def test_sparkline():
    assert blocks.sparkline([0, 5, 10]) == "▁▅█"
    assert blocks.sparkline([3, None, 3]) == "▁ ▁"
    assert blocks.sparkline([None]) == ""


def test_text_blocks_split_long_text():
    text = "\n".join(f"line {i} " + "x" * 90 for i in range(100))
    blks = blocks.text_blocks(text)
    _limits_ok(blks)
    assert len(blks) >= 4
    assert "\n".join(b["text"]["text"] for b in blks) == text
    assert blocks.text_blocks("")[0]["text"]["text"].strip() == ""


# ---- dedupe ----------------------------------------------------------------------------------


def test_ttl_set_expires_and_is_bounded():
    now = [0.0]
    seen = TTLSet(ttl=10, maxsize=3, clock=lambda: now[0])
    assert seen.first_time("a") and not seen.first_time("a")
    now[0] = 9.9
    assert not seen.first_time("a")
    now[0] = 10.1
    assert seen.first_time("a")  # expired, a new delivery
    for key in "bcd":
        assert seen.first_time(key)
    assert len(seen) == 3 and "a" not in seen  # the oldest was evicted
    with pytest.raises(ValueError):
        TTLSet(ttl=0)


def test_ttl_set_is_thread_safe():
    seen = TTLSet()
    wins = []
    barrier = threading.Barrier(20)

    def race():
        barrier.wait()
        wins.append(seen.first_time("Ev1"))

    threads = [threading.Thread(target=race) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1


# ---- logging ---------------------------------------------------------------------------------


def test_redact_masks_tokens_and_secrets(monkeypatch):
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s3cr3t-signing-value")
    text = kpilog.redact(
        "xoxb-123-456-abcDEF xapp-1-A1-xyz token=legacy&x=1 {\"token\": \"abc\"} "
        "Authorization: Bearer xoxp-9 sig s3cr3t-signing-value "
        "https://hooks.slack.com/commands/T1/397/96rGlfmib response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1%2F3%2FzzKEY"
    )
    for secret in ("abcDEF", "A1-xyz", "legacy", '"abc"', "xoxp-9", "s3cr3t", "96rGlfmib", "zzKEY"):
        assert secret not in text
    assert "xoxb-***" in text and "xapp-***" in text


def test_json_lines_carry_fields_and_never_tokens():
    import io

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(kpilog.JsonFormatter())
    logger = logging.getLogger("kpibot.test.json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        kpilog.event(logger, "answer", kpi="nps", ms=12.5, token_used=BOT_TOKEN, skipped=None)
        try:
            raise RuntimeError(f"failed with {BOT_TOKEN}")
        except RuntimeError:
            kpilog.event(logger, "internal_error", level=logging.ERROR, exc_info=True, error_id="abc123")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["event"] == "answer" and first["kpi"] == "nps" and first["ms"] == 12.5
    assert "skipped" not in first and first["level"] == "info"
    assert second["error_id"] == "abc123" and "RuntimeError" in second["exc"]
    assert "testtoken" not in stream.getvalue()


# ---- Web API clients -------------------------------------------------------------------------


def test_clients_have_the_retry_policy(monkeypatch):
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:9/api")
    assert api_url() == "http://127.0.0.1:9/api/"
    monkeypatch.delenv("SLACK_API_URL")
    assert api_url() == "https://slack.com/api/"
    client = make_client("xoxb-x")
    kinds = {type(h) for h in client.retry_handlers}
    assert kinds == {RateLimitErrorRetryHandler, ServerErrorRetryHandler, ConnectionErrorRetryHandler}
    assert {type(h) for h in make_webhook("http://127.0.0.1:9/r").retry_handlers} == kinds
    assert make_client("a").retry_handlers[0] is not make_client("b").retry_handlers[0]


def test_client_honours_retry_after_against_the_fake():
    with FakeSlack(token=BOT_TOKEN) as fake:
        fake.fail("chat.postMessage", status=429, retry_after=1)
        fake.fail("chat.update", status=500, times=2)
        client = make_client(BOT_TOKEN, base_url=fake.api_url)
        started = time.monotonic()
        assert client.chat_postMessage(channel="C1", text="hi")["ok"]
        assert time.monotonic() - started >= 0.95
        assert client.chat_update(channel="C1", ts="1.2", text="hi")["ok"]
        assert [c.status for c in fake.calls("chat.postMessage", ok=None)] == [429, 200]
        assert [c.status for c in fake.calls("chat.update", ok=None)] == [500, 500, 200]


def test_client_retries_connection_errors():
    import socket

    from slack_sdk.errors import SlackClientError

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connection refused
    client = make_client(BOT_TOKEN, base_url=f"http://127.0.0.1:{port}/api/")
    started = time.monotonic()
    with pytest.raises((SlackClientError, OSError)):
        client.auth_test()
    # two retries with backoff 0.3 s and 0.6 s (plus jitter) before giving up (a floor: load only adds)
    assert time.monotonic() - started >= 0.9


# ---- the working notice ----------------------------------------------------------------------


def test_working_notice_fires_only_for_slow_jobs():
    sent = threading.Event()
    fast = WorkingNotice(3600, sent.set)  # the job finishes long before the notice is due
    fast.finish()
    fast._fire()  # a timer that fires anyway, racing the finish, sends nothing
    assert not sent.is_set() and not fast.sent
    slow = WorkingNotice(0.0, sent.set)  # the job is still running when the notice is due
    assert sent.wait(30) and slow.sent
    slow.finish()
    never = WorkingNotice(None, sent.clear)
    never.finish()
    assert sent.is_set() and not never.sent


def test_working_notice_finish_waits_for_a_notice_in_flight():
    order: list[str] = []
    started, release = threading.Event(), threading.Event()

    def slow_send():
        started.set()
        release.wait(30)
        order.append("notice")

    notice = WorkingNotice(0.0, slow_send)
    assert started.wait(30)
    answer = threading.Thread(target=lambda: (notice.finish(), order.append("answer")), daemon=True)
    answer.start()
    answer.join(timeout=0.2)  # not finished while the notice is being sent (a finish that
    assert answer.is_alive() and order == []  # did not wait would be done by now)
    release.set()
    answer.join(timeout=30)
    assert order == ["notice", "answer"]


# ---- settings, serve, manifest, Dockerfile ---------------------------------------------------


def test_settings_choose_the_mode():
    assert Settings.from_env({}).mode() is None
    assert Settings.from_env({"SLACK_BOT_TOKEN": "xoxb-1"}).mode() is None
    assert Settings.from_env({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}).mode() == "http"
    both = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "SLACK_APP_TOKEN": "xapp-1"}
    assert Settings.from_env(both).mode() == "socket"
    assert Settings.from_env({"SLACK_APP_TOKEN": "xapp-1"}).mode() is None
    tuned = Settings.from_env({"KPI_WORKERS": "3", "KPI_WORKING_AFTER": "0.5", "KPI_LISTENER_THREADS": "x"})
    assert tuned.workers == 3 and tuned.working_after == 0.5 and tuned.listener_threads == 32


def test_serve_without_slack_settings_explains_the_setup(monkeypatch, capsys, restore_logging):
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    assert server.serve(port=0) == 2
    err = capsys.readouterr().err
    assert "SLACK_BOT_TOKEN" in err and "SLACK_APP_TOKEN" in err and "SLACK_SIGNING_SECRET" in err
    assert "manifest.yml" in err and "kpibot chat" in err


def test_serve_rejects_a_bot_token_as_app_token(monkeypatch, capsys, restore_logging):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xoxb-1")
    assert server.serve(port=0) == 2
    assert "xapp-" in capsys.readouterr().err


def test_serve_reports_a_bad_token(monkeypatch, capsys, restore_logging):
    with FakeSlack(token="xoxb-the-real-one") as fake:
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-wrong")
        monkeypatch.setenv("SLACK_SIGNING_SECRET", "secret")
        monkeypatch.setenv("SLACK_API_URL", fake.api_url)
        monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
        assert server.serve(port=0) == 1
    err = capsys.readouterr().err
    assert "Could not start" in err and "xoxb-wrong" not in err


def test_http_mode_refuses_to_run_without_a_signing_secret():
    from bot.app import create_bot

    with pytest.raises(ValueError, match="SIGNING_SECRET"):
        create_bot(Settings(bot_token="xoxb-1", token_verification=False))


def test_signature_helper_matches_slacks_documented_example():
    # https://api.slack.com/authentication/verifying-requests-from-slack (the worked example)
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    assert signature(body, "1531420618", "8f742231b10e8888abcd99yyyzzz85a5") == (
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    )


def test_manifest_declares_what_the_app_needs():
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == "/kpi" and command["url"].endswith("/slack/events")
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"chat:write", "commands", "app_mentions:read", "im:history", "files:write", "users:read"} <= scopes
    settings = manifest["settings"]
    assert set(settings["event_subscriptions"]["bot_events"]) == {"app_mention", "message.im", "app_home_opened"}
    assert settings["socket_mode_enabled"] is True and settings["interactivity"]["is_enabled"] is True
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True


def test_manifest_shortcuts_are_the_ones_the_app_handles():
    from bot.listeners.shortcuts import ASK_SHORTCUT, MESSAGE_SHORTCUT

    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    shortcuts = {s["callback_id"]: s for s in manifest["features"]["shortcuts"]}
    assert set(shortcuts) == {ASK_SHORTCUT, MESSAGE_SHORTCUT}
    assert shortcuts[ASK_SHORTCUT]["type"] == "global" and shortcuts[MESSAGE_SHORTCUT]["type"] == "message"
    assert all(len(s["description"]) <= 150 for s in shortcuts.values())
    assert "im:write" in manifest["oauth_config"]["scopes"]["bot"]  # the App Home's re-ask answers in the DM


def test_dockerfile_runs_kpibot_serve_as_non_root():
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("# ") or "FROM python:3.11-slim" in text
    assert "FROM python:3.11-slim" in text and "pip install" in text and "EXPOSE 3000" in text
    user_lines = [line for line in text.splitlines() if line.startswith("USER ")]
    assert user_lines and user_lines[-1].split()[1] not in ("root", "0")
    assert '"kpibot", "serve"' in text
