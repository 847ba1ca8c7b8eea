"""Hostile and odd input: bounded fuzz runs against the running app, and unbounded requests.

* The HTTP endpoint (the real app under uvicorn on loopback): random bytes, wrong content
  types, truncated JSON, random forms, valid signatures over garbage, bad or stale
  signatures. No response is a 500 or carries a traceback, nothing unsigned is ever
  accepted, every reply that reaches Slack is clean, and the process is alive after it.
* The whole question path (parser, engine, SQL, rendering, charts) on a demo company:
  grammar-shaped questions with random values never end in an internal error.
* Unbounded input through the Slack path: a 100 kB command, a 10-year daily trend, a
  breakdown over 100,000 segments, a body over 1 MB (413, refused before it is read).

The parser alone and the CSV importer have their own fuzz tests (tests/test_parser.py,
tests/test_import.py).
"""

from __future__ import annotations

import json
import socket
import time
import tracemalloc
import uuid
from datetime import UTC, date, datetime
from urllib.parse import urlencode

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import blocks, router
from bot.server import MAX_BODY
from metrics import catalogue, charts
from metrics.api import ask
from metrics.result import Result
from storage import database
from storage.demo import build_demo
from tests.slack_helpers import QUESTION, TEAM_ID, load_fixture, signed_headers
from tests.trust_helpers import new_channel, start_app
from tests.waiting import wait_until

# `app` is function-scoped only to put the app's settings in the environment for the test
# (the same for every example), so hypothesis's check against such fixtures does not apply
APP_CHECKS = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=APP_CHECKS)


@pytest.fixture(scope="module")
def app_module(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    url = f"duckdb:///{root / 'metrics.duckdb'}"
    load_fixture(url)
    with start_app(url, state_url=f"sqlite:///{root / 'state.sqlite'}") as running:
        yield running


@pytest.fixture
def app(app_module, monkeypatch):
    return app_module.entered(monkeypatch)


# ---- the HTTP endpoint ---------------------------------------------------------------------------

ENVELOPE = json.dumps({
    "token": "x", "team_id": TEAM_ID, "api_app_id": "A0KPI", "type": "event_callback", "event_id": "Ev0FUZZ",
    "event_time": 1_790_000_000,
    "event": {"type": "app_mention", "user": "U0FUZZ", "text": "<@UKPIBOT> nps", "ts": "1.2", "channel": "C0FUZZ"},
})
SLASH = {"team_id": TEAM_ID, "channel_id": "C0FUZZ", "user_id": "U0FUZZ", "command": "/kpi", "text": "nps",
         "response_url": "http://127.0.0.1:9/response/x", "trigger_id": "1.2.3", "api_app_id": "A0KPI"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


def _form(fields: dict) -> bytes:
    return urlencode(fields).encode("utf-8", "surrogatepass")


bodies = st.one_of(
    st.binary(max_size=2048),
    st.text(max_size=512).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.integers(0, len(ENVELOPE) - 1).map(lambda n: ENVELOPE[:n].encode()),  # truncated JSON
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["type", "event", "event_id", "challenge", "team_id", "command"]), json_values,
                    max_size=5).map(lambda d: json.dumps(d).encode()),
    st.dictionaries(st.sampled_from(list(SLASH) + ["payload", "ssl_check"]), st.text(max_size=80), max_size=8)
    .map(lambda d: _form({**SLASH, **d})),  # slash commands with odd fields and random text
    json_values.map(lambda v: _form({"payload": json.dumps(v)})),  # interactivity payloads
)
content_types = st.sampled_from([
    "application/json", "application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x",
    "", "application/json; charset=latin-1", "application/x-www-form-urlencoded; charset=utf-16", "\x7f/garbage",
])
signings = st.sampled_from(["valid", "valid", "valid", "wrong-secret", "missing", "stale", "bad-timestamp"])


def _headers(body: bytes, content_type: str, signing: str) -> dict[str, str]:
    headers = {"Content-Type": content_type} if content_type else {}
    if signing == "valid":
        headers.update(signed_headers(body))
    elif signing == "wrong-secret":
        headers.update(signed_headers(body, secret="not-the-secret"))
    elif signing == "stale":
        headers.update(signed_headers(body, timestamp=int(time.time()) - 3600))
    elif signing == "bad-timestamp":
        headers.update({"X-Slack-Request-Timestamp": "yesterday", "X-Slack-Signature": "v0=00"})
    return headers


@FUZZ
@given(body=bodies, content_type=content_types, signing=signings)
def test_random_requests_never_crash_the_app_or_leak_a_traceback(app, body, content_type, signing):
    from tests.slack_helpers import http_request

    resp = http_request(app.send.url, "POST", body, _headers(body, content_type, signing))
    assert resp.status in (200, 400, 401, 404, 413), (resp.status, resp.body[:300])
    if signing != "valid":
        assert resp.status == 401, "a request not signed by Slack was not refused"
    for marker in (b"Traceback", b"Error:", b'File "'):
        assert marker not in resp.body


question_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(["nps", "by", "touchpoint", "2026-Q3", "vs", "yoy", "where", "=", "daily", "trend",
                              "digest", "alert", "add", "remove", "define", "list", "help", "<@UKPIBOT>", "&amp;",
                              "<#C1|x>", "`", "'; DROP TABLE customers; --", "\u202e", "🙂", "\x00"]), max_size=10)
    .map(" ".join),
)


@settings(max_examples=120, deadline=None, suppress_health_check=APP_CHECKS)
@given(text=question_text, extra=st.dictionaries(st.sampled_from(["user_name", "channel_name", "team_domain",
                                                                  "enterprise_id", "is_enterprise_install"]),
                                                 st.text(max_size=30), max_size=3))
def test_signed_commands_with_random_text_are_acked(app, text, extra):
    """Valid Slack requests with odd text: acked at once; the answers are checked below."""
    form = {**SLASH, **extra, "text": text, "channel_id": new_channel("CF"), "response_url": app.fake.response_url(),
            "trigger_id": f"1.{uuid.uuid4().hex}"}  # each command is new: a repeated trigger_id is a replay
    body = _form(form)
    resp = app.send.post(body, "application/x-www-form-urlencoded")
    assert resp.status == 200 and resp.body == b"" and resp.elapsed < 3


def test_after_the_fuzz_the_process_is_up_and_every_reply_was_clean(app):
    if app.bot.stats["jobs"] < 50:  # run alone: do the bounded fuzz runs first
        test_random_requests_never_crash_the_app_or_leak_a_traceback(app)
        test_signed_commands_with_random_text_are_acked(app)
    wait_until(lambda: sum(v for k, v in app.bot.stats.items() if k.startswith("reply_")) >= app.bot.stats["jobs"],
               timeout=120, what="every job replied")
    assert app.healthy()
    said = [c.text for c in app.fake.calls() if c.method in ("chat.postMessage", "chat.postEphemeral", "response_url")]
    assert app.bot.stats["jobs"] > 50 and said  # the fuzz did reach the question path
    for text in said:
        assert "Traceback" not in text and "Exception" not in text and 'File "' not in text
        assert "something went wrong on my side" not in text, text  # no internal error from any input
    ch = new_channel()
    assert app.ask(QUESTION, channel=ch).kind == "answer"


def test_a_body_over_the_cap_is_refused_with_413(app):
    from tests.slack_helpers import http_request

    body = b"text=" + b"x" * (MAX_BODY + 10)
    resp = http_request(app.send.url, "POST", body, {"Content-Type": "application/x-www-form-urlencoded",
                                                     **signed_headers(body)})
    assert resp.status == 413 and resp.json() == {"error": "payload too large"}
    assert app.healthy()


def test_a_huge_declared_body_is_refused_before_it_is_sent(app):
    """Content-Length: 5 GB and then nothing: answered 413 at once, not after reading (or waiting).
    The body never comes, so a server that waited for it would never say 413 (recv would time out)."""
    host, port = app.server.host, app.server.port
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(
            b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000000000\r\n\r\n{"
        )
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 413")
    assert app.healthy()


# ---- the whole question path on a demo company ---------------------------------------------------


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    url = f"duckdb:///{tmp_path_factory.mktemp('demo') / 'demo.duckdb'}"
    build_demo(database.get_engine(url), seed=11, scale=0.05, today=date(2026, 11, 23))
    return url


def _dimension_words() -> list[str]:
    words = {d for m in catalogue.CATALOGUE.values() for d in catalogue.dimensions_for(m)}
    return sorted(words | {"size band", "channel", "segment", "custmer", "x"})


METRIC_WORDS = sorted(catalogue.CATALOGUE) + ["net promoter score", "churn", "time to close", "complaints",
                                                "profitability", "acquisition", "nsp", "revenu", ""]
PERIODS = ["", "last-quarter", "this year", "2026-Q3", "last 7 days", "ytd", "since 2026-01-01",
           "2025-01-01 to 2025-03-31", "yesterday", "2026-02-30", "9999-Q4", "last 0 days", "last 100000 days",
           "0000-01", "Q5 2026", "last-3-months", "2026-10", "today"]
filter_values = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=15) | st.sampled_from(
    ["Retail", "'; DROP TABLE customers; --", '" OR 1=1 --', "%", "_", "\\", "ünïcødé", "a b", "=", '"'])


@st.composite
def questions(draw) -> str:
    parts = [draw(st.sampled_from(METRIC_WORDS)), draw(st.sampled_from(PERIODS))]
    if draw(st.booleans()):
        parts.append("by " + draw(st.sampled_from(_dimension_words())))
    if draw(st.booleans()):
        value = draw(filter_values)
        quoted = f'"{value}"' if draw(st.booleans()) else value
        parts.append(f"where {draw(st.sampled_from(_dimension_words()))}={quoted}")
    parts.append(draw(st.sampled_from(["", "vs last year", "yoy", "vs 2025-Q1", "vs", "vs last-week"])))
    parts.append(draw(st.sampled_from(["", "daily", "weekly", "monthly", "trend", "by month", "over time"])))
    parts.append(draw(st.sampled_from(["", "?", "please", "what was", "show me the"])))
    return " ".join(p for p in draw(st.permutations(parts)) if p)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=questions())
def test_any_question_is_answered_or_refused_in_words_never_an_internal_error(demo_url, text):
    reply = router.route(text, router.Context(database_url=demo_url, now=datetime(2026, 11, 23, 12, tzinfo=UTC)))
    assert reply.error_id is None, f"internal error for {text!r}: {reply.text}"
    assert reply.kind in ("answer", "error", "info")
    if reply.kind == "error":
        assert reply.text and "Traceback" not in reply.text and len(reply.text) < 2000
        assert reply.reason == "bad-question", (text, reply.text)  # the database is up: only the question is wrong
    elif reply.result is not None:
        assert blocks.answer_blocks(reply.result) and blocks.answer_text(reply.result)
        charts.render_png(reply.result)


# ---- unbounded input, through the Slack path ----------------------------------------------------


def test_a_100_kb_command_is_refused_with_a_message(app):
    reply = app.ask("nps " + "x" * 100_000)
    assert reply.kind == "private" and "please keep it under 500" in reply.text


def test_a_ten_year_daily_trend_is_refused_with_a_message(app):
    reply = app.ask("nps daily 2016-01-01 to 2026-01-01")
    assert reply.kind == "private" and "points; the most I draw is 400" in reply.text


@pytest.fixture(scope="module")
def wide_module(tmp_path_factory):
    """100,000 customers, each in a region of its own, each with one NPS answer in 2026-Q3."""
    root = tmp_path_factory.mktemp("wide")
    path = root / "wide.duckdb"
    url = f"duckdb:///{path}"
    database.get_engine(url)
    database.dispose_all()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO customers (customer_id, name, signed_up_at, region, is_paying) "
                "SELECT 'c' || i, 'Customer ' || i, TIMESTAMP '2025-01-01', 'region-' || i, true "
                "FROM range(100000) t(i)")
    con.execute("INSERT INTO survey_responses (response_id, customer_id, responded_at, survey, score) "
                "SELECT 'r' || i, 'c' || i, TIMESTAMP '2026-07-01' + INTERVAL (i * 60) SECOND, 'nps', i % 11 "
                "FROM range(100000) t(i)")
    con.close()
    with start_app(url, state_url=f"sqlite:///{root / 's.sqlite'}") as running:
        running.url = url
        yield running


@pytest.fixture
def wide(wide_module, monkeypatch):
    return wide_module.entered(monkeypatch)


def test_a_breakdown_over_100k_segments_is_capped_with_a_note_and_in_bounded_memory(wide):
    reply = wide.ask("nps by region 2026-Q3", timeout=60)
    assert reply.kind == "answer", reply
    assert "More than 1000 segments: only the largest are counted here." in reply.text
    assert "smaller segments" in reply.text
    table = next(b["text"]["text"] for b in reply.call.blocks if b["type"] == "section" and "```" in b["text"]["text"])
    assert len(table.splitlines()) <= 40  # a capped table, not 100,000 lines
    assert len(json.dumps(reply.call.params)) < 40_000  # and a message Slack accepts
    # what Python holds for it stays small: the database aggregates, at most 1000 segments per window come back
    tracemalloc.start()
    try:
        result = ask("nps by region 2026-Q3", url=wide.url, as_of=date(2026, 11, 1))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(result, Result) and len(result.breakdown) <= 25 and result.breakdown_truncated > 0
    assert peak < 50 * 2**20, f"peak {peak / 2**20:.1f} MiB"
