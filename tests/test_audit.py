"""The audit log: every question from Slack (and every scheduled delivery) leaves one row.

End to end: signed requests to the running HTTP app, replies through the fake Slack Web
API, rows read back from the state database (SQLite here) and printed by `kpibot audit`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, inspect

from bot import audit
from bot.audit import AuditWriter
from bot.cli import main as kpibot
from bot.ratelimit import Limits
from storage import database
from storage.schema import orders
from tests.slack_helpers import BOT_TOKEN, QUESTION, load_fixture
from tests.trust_helpers import new_channel, start_app
from tests.waiting import wait_until

REVENUE = 123_456.78  # the only order in 2026-Q3: `revenue 2026-Q3` is exactly this
FINANCE = "C0FINANCE"


@pytest.fixture(scope="module")
def app_module(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    url = f"duckdb:///{root / 'metrics.duckdb'}"
    load_fixture(url)
    with database.get_engine(url).begin() as conn:
        conn.execute(insert(orders), [{"order_id": "o1", "customer_id": "c1", "ordered_at": datetime(2026, 8, 10, 12),
                                       "amount": REVENUE, "product": "pro", "is_recurring": False}])
    policy = root / "policy.toml"
    policy.write_text(f'admins = ["U0ADMIN"]\n[sensitivity.money]\nchannels = ["{FINANCE}"]\n')
    with start_app(url, state_url=f"sqlite:///{root / 'state.sqlite'}", policy=str(policy),
                   env={"KPI_AUDIT_RETRY_SECONDS": "1"}) as running:
        running.state_path = root / "state.sqlite"
        yield running


@pytest.fixture
def app(app_module, monkeypatch):
    return app_module.entered(monkeypatch)


def rows_for(channel: str, *, wait: bool = True) -> list[dict]:
    """The rows for ``channel`` (the reply is recorded just after it goes out: wait for it)."""

    def rows() -> list[dict]:
        assert audit.flush(30)
        return [r for r in audit.latest(1000) if r["channel_id"] == channel]

    return wait_until(rows, what=f"an audit row for {channel}") if wait else rows()


def the_row(channel: str) -> dict:
    rows = rows_for(channel)
    assert len(rows) == 1, rows
    return rows[0]


def test_answer_refusal_bad_question_and_help_are_each_one_row(app):
    ch = new_channel()
    before, started = datetime.now(UTC).replace(tzinfo=None, microsecond=0), time.monotonic()
    reply = app.ask(QUESTION, channel=ch)
    assert reply.kind == "answer"
    row = the_row(ch)
    after, took_ms = datetime.now(UTC).replace(tzinfo=None), (time.monotonic() - started) * 1000
    assert row["source"] == "slack" and row["surface"] == "slash"
    assert (row["user_id"], row["team_id"], row["command"], row["kpi"]) == ("U0ALICE", "T0KPI", "question", "nps")
    assert row["question"] == QUESTION
    assert row["outcome"] == "answered" and row["allowed"] is True and row["error_id"] is None
    assert 0 < row["elapsed_ms"] <= took_ms  # the bot's own measure, inside the test's
    assert before <= row["at"] <= after  # naive UTC, stamped while the question was handled

    refused = new_channel()
    reply = app.ask("revenue 2026-Q3", channel=refused)
    assert reply.kind == "private" and "KPI policy" in reply.text
    row = the_row(refused)
    assert (row["outcome"], row["allowed"], row["kpi"], row["question"]) == (
        "refused-policy", False, "revenue", "revenue 2026-Q3")
    # the refused value is nowhere: not in the reply, not in any column of the row
    for text in (reply.text, *map(str, row.values())):
        assert "123" not in text and "456" not in text

    allowed = app.ask("revenue 2026-Q3", channel=FINANCE)
    assert allowed.kind == "answer" and "$123,457" in allowed.text
    row = rows_for(FINANCE)[0]
    assert (row["outcome"], row["allowed"], row["kpi"]) == ("answered", True, "revenue")
    assert "123" not in " ".join(map(str, row.values()))  # values are never stored, allowed or not

    bad = new_channel()
    assert app.ask("nsp 2026-Q3", channel=bad).kind == "private"
    row = the_row(bad)
    assert (row["outcome"], row["allowed"], row["error_id"], row["kpi"]) == ("bad-question", True, None, None)

    helped = new_channel()
    app.ask("help", channel=helped)
    assert (the_row(helped)["outcome"], the_row(helped)["command"]) == ("answered", "help")


def test_rate_limited_question_is_recorded_as_refused(app, monkeypatch):
    monkeypatch.setenv("KPI_USER_BURST", "1")
    monkeypatch.setenv("KPI_USER_PER_MINUTE", "1")
    saved, app.bot.limits = app.bot.limits, Limits()
    ch = new_channel()
    try:
        assert app.ask(QUESTION, channel=ch, user="U0HASTY").kind == "answer"
        second = new_channel()
        reply = app.ask(QUESTION, channel=second, user="U0HASTY")
    finally:
        app.bot.limits = saved
    assert reply.kind == "private" and "try again in" in reply.text
    row = the_row(second)
    assert (row["outcome"], row["allowed"], row["command"], row["user_id"]) == (
        "rate-limited", False, "rate_limited", "U0HASTY")


def test_a_crash_is_recorded_with_the_error_id_the_user_saw(app, monkeypatch):
    import bot.app

    real_route = bot.app.route

    def route(text, ctx):
        if text == "boom":
            raise RuntimeError("a bug")
        return real_route(text, ctx)

    monkeypatch.setattr(bot.app, "route", route)
    ch = new_channel()
    reply = app.ask("boom", channel=ch)
    assert reply.kind == "private" and "error id" in reply.text and "Traceback" not in reply.text
    row = the_row(ch)
    assert row["outcome"] == "error" and row["error_id"] and row["error_id"] in reply.text


def test_tokens_in_a_question_are_masked_and_long_text_is_clipped(app):
    ch = new_channel()
    app.ask(f"nps 2026-Q3 {BOT_TOKEN}", channel=ch)
    row = the_row(ch)
    assert BOT_TOKEN not in row["question"] and "xoxb-***" in row["question"]
    long = new_channel()
    reply = app.ask("nps " + "x" * 5000, channel=long)
    assert reply.kind == "private" and "under 500" in reply.text
    row = the_row(long)
    assert row["outcome"] == "bad-question" and len(row["question"]) <= audit.MAX_QUESTION


def test_a_locked_state_database_neither_breaks_nor_slows_answers(app):
    """The state database is held by another writer: answers go out on time, rows follow."""
    holder = sqlite3.connect(str(app.state_path), timeout=1, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    channels = [new_channel() for _ in range(3)]
    try:
        replies = [app.ask(QUESTION, channel=ch) for ch in channels]
        assert all(r.kind == "answer" and r.elapsed < 3.0 for r in replies), [r.elapsed for r in replies]
        assert audit.writer().backlog >= 1  # waiting for the lock, off the answer path
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert all(the_row(ch)["outcome"] == "answered" for ch in channels)


def test_an_unreachable_state_database_is_logged_and_answers_still_go_out(app, monkeypatch, caplog):
    closed = "postgresql+psycopg://postgres@127.0.0.1:9/nowhere"  # port 9: nothing listens
    ch = new_channel()
    dropped = audit.writer().dropped
    with monkeypatch.context() as down, caplog.at_level("WARNING", logger="kpibot.audit"):
        down.setenv("KPI_STATE_URL", closed)
        reply = app.ask(QUESTION, channel=ch)
        assert reply.kind == "answer" and reply.elapsed < 3.0
        # retried for KPI_AUDIT_RETRY_SECONDS, then dropped
        wait_until(lambda: audit.writer().dropped > dropped, what="the row was neither written nor dropped")
    assert any(r.getMessage() == "audit_write_failed" for r in caplog.records)
    # the state database is back: the next question is recorded again
    again = new_channel()
    app.ask(QUESTION, channel=again)
    assert the_row(again)["outcome"] == "answered"
    assert rows_for(ch, wait=False) == []  # the one written while it was down is gone, and was counted


def test_the_table_is_created_on_first_use_in_its_own_metadata(tmp_path):
    from storage import state

    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    assert "audit_log" not in state.metadata.tables
    audit.record(url=url, source="slack", surface="dm", user_id="U1", channel_id="D1", command="question",
                 question="nps", outcome="answered", elapsed_ms=12.345)
    assert audit.flush(60)
    assert "audit_log" in inspect(state.get_state_engine(url)).get_table_names()
    [row] = audit.latest(5, url=url)
    assert (row["surface"], row["outcome"], row["allowed"], row["elapsed_ms"]) == ("dm", "answered", True, 12.3)


def test_audit_log_on_a_postgresql_state_database():
    from tests.conftest import _postgres_database

    url = _postgres_database()  # skipped where no PostgreSQL server answers
    channel = new_channel()
    for outcome in ("answered", "refused-policy", "rate-limited"):
        audit.record(url=url, source="slack", surface="slash", user_id="U1", channel_id=channel,
                     command="question", question=f"nps ({outcome})", outcome=outcome, elapsed_ms=1)
    assert audit.flush(60)
    rows = [r for r in audit.latest(50, url=url) if r["channel_id"] == channel]
    assert [(r["outcome"], r["allowed"]) for r in rows] == [
        ("rate-limited", False), ("refused-policy", False), ("answered", True)]  # newest first


def test_questions_and_deliveries_in_one_batch_are_all_written(tmp_path):
    url = f"sqlite:///{tmp_path / 'mixed.sqlite'}"
    audit.record(url=url, source="slack", surface="slash", team_id="T1", user_id="U1", channel_id="C1",
                 command="question", kpi="nps", question="nps", outcome="answered", elapsed_ms=5)
    audit.record_delivery(url=url, kind="digest", channel_id="C2", ref_id=3, outcome="delivered", kpis=["nps"])
    audit.record(url=url, outcome="error", error_id="abc", detail=object())  # odd values are stored as text
    assert audit.flush(60)
    rows = audit.latest(10, url=url)
    assert [(r["source"], r["surface"], r["outcome"]) for r in reversed(rows)] == [
        ("slack", "slash", "answered"), ("schedule", "digest", "delivered"), ("slack", None, "error")]


def test_record_never_blocks_and_counts_what_it_drops(monkeypatch):
    stuck = AuditWriter(maxsize=2)
    monkeypatch.setattr(stuck, "_ensure_thread", lambda: None)  # a writer that never catches up
    results: list[bool] = []
    # a put that blocked on the full queue would wait forever: nothing drains it
    putter = threading.Thread(target=lambda: results.extend(stuck.put("sqlite://", {"outcome": "answered"})
                                                            for _ in range(5)), daemon=True)
    putter.start()
    putter.join(timeout=30)
    assert not putter.is_alive(), "put() blocked on a full queue"
    assert results == [True, True, False, False, False] and stuck.dropped == 3


def test_kpibot_audit_prints_the_latest_entries(app, capsys):
    channels = [new_channel() for _ in range(3)]  # three entries of its own, whatever ran before
    for ch in channels:
        app.ask("define nps", channel=ch)
        the_row(ch)  # recorded just after the reply went out: wait for it, in order
    assert kpibot(["audit", "--limit", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["when", "(UTC)", "source"]
    assert len(out) == 4  # header + 3 entries, oldest first: the newest is the last line
    assert [ch in line for ch, line in zip(channels, out[1:], strict=True)] == [True] * 3
    assert "answered" in out[-1] and "define nps" in out[-1]
    assert BOT_TOKEN not in "\n".join(out)


def test_kpibot_audit_on_an_unreachable_state_database(monkeypatch, capsys):
    monkeypatch.setenv("KPI_STATE_URL", "postgresql+psycopg://postgres@127.0.0.1:9/nowhere")
    assert kpibot(["audit"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("The audit log (KPI_STATE_URL) could not be read") and "Traceback" not in err
