"""Exactly once, and never silently lost: the delivery log under races, restarts and outages."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pytest
from sqlalchemy import update

from bot.schedules import commands, store
from bot.schedules.delivery import Op, Outbox
from bot.schedules.parse import parse_digest
from storage import state
from tests.test_schedules_support import (
    add_nps_days,
    deliveries,
    posts,
    service,
    slack_down,
    slack_up,
    utc,
)

pytest_plugins = ["tests.test_schedules_support"]
pytestmark = pytest.mark.usefixtures("schedule_env")

SLOT = utc(2026, 3, 23, 8)  # Mon 23 Mar 09:00 Berlin


def weekly_digest(state_url: str, channel: str = "C1", owner: str | None = "U1") -> store.Digest:
    spec = parse_digest("weekly mon 09:00 Europe/Berlin nps".split(), default_tz="UTC")
    return store.add_digest(state.get_state_engine(state_url), spec, channel_id=channel, created_by=owner,
                            now=utc(2026, 3, 22))


def test_thread_race_on_a_claim_has_one_winner(any_state_url):
    engine = state.get_state_engine(any_state_url)
    outboxes = [Outbox(engine, None, me=f"worker-{i}") for i in range(12)]
    start = threading.Barrier(len(outboxes))
    won: list[int | None] = [None] * len(outboxes)

    def claim(i: int) -> None:
        start.wait()
        won[i] = outboxes[i].claim("digest:1:2026-03-23T09:00", now=SLOT, kind="digest", channel_id="C1")

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(outboxes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len([w for w in won if w is not None]) == 1
    assert len(deliveries(any_state_url)) == 1


def test_two_schedulers_on_one_state_db_post_once(any_state_url, duck_url, slack, client):
    weekly_digest(any_state_url)
    add_nps_days(duck_url, date(2026, 3, 9), 14, 3, 1, 1)
    a = service(any_state_url, client, duck_url)
    b = service(any_state_url, client, duck_url)
    assert a.outbox.me != b.outbox.me
    # one after the other ...
    assert a.run_due(SLOT).posted == ["digest:1:2026-03-23T09:00"]
    assert b.run_due(SLOT).posted == []
    # ... and at the same instant, in threads, for the next slot
    nxt = utc(2026, 3, 30, 7)
    results = {}
    barrier = threading.Barrier(2)

    def run(name, svc):
        barrier.wait()
        results[name] = svc.run_due(nxt).posted

    threads = [threading.Thread(target=run, args=(n, s)) for n, s in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results["a"] + results["b"]) == ["digest:1:2026-03-30T09:00"]
    assert len(posts(slack, "C1")) == 2
    assert {d["status"] for d in deliveries(any_state_url)} == {"posted"}


def test_failed_delivery_is_retried_and_reported_when_slack_is_back(state_url, duck_url, slack, client):
    weekly_digest(state_url)
    svc = service(state_url, client, duck_url)
    down = slack_down(slack)
    out = svc.run_due(SLOT)
    assert out.failed == ["digest:1:2026-03-23T09:00"] and posts(slack) == []
    [row] = deliveries(state_url)
    assert row["status"] == "failed" and "service_unavailable" in row["reason"] and row["attempts"] == 1
    listing = commands.handle(["digest", "list"], channel_id="C1", user_id="U1", user_tz=None, now=SLOT,
                              state_url=state_url)
    assert "⚠️ last: failed" in listing and "service_unavailable" in listing and "retrying" in listing

    assert svc.retry_failed(SLOT + timedelta(minutes=5)).failed  # still down: still failed, kept
    assert svc.run_due(SLOT + timedelta(minutes=5)).posted == []  # not claimed twice either
    slack_up(down)
    out = svc.retry_failed(SLOT + timedelta(minutes=10))
    assert out.posted == ["digest:1:2026-03-23T09:00"]
    [post] = posts(slack, "C1")
    assert "⏰ _Late: this digest was due Mon 23 Mar 09:00 CET; posting it failed" in post.text
    assert "service_unavailable" in post.text
    [row] = deliveries(state_url)
    assert row["status"] == "posted" and row["attempts"] == 3 and row["reported_at"] is not None
    assert svc.retry_failed(SLOT + timedelta(minutes=15)).posted == []


def test_delivery_failing_past_the_grace_window_is_reported_in_the_channel(state_url, duck_url, slack, client):
    weekly_digest(state_url)
    svc = service(state_url, client, duck_url, grace=timedelta(hours=6))
    down = slack_down(slack)
    svc.run_due(SLOT)
    svc.retry_failed(SLOT + timedelta(hours=3))
    out = svc.retry_failed(SLOT + timedelta(hours=7))  # give up; the report cannot get through yet
    assert out.failed
    rows = {r["kind"]: r for r in deliveries(state_url)}
    assert rows["digest"]["status"] == "gave_up"
    assert rows["report"]["status"] == "failed"
    slack_up(down)
    svc.retry_failed(SLOT + timedelta(hours=8))
    [report] = posts(slack, "C1")
    assert "⚠️ KPI digest #1 due Mon 23 Mar 09:00 CET could not be posted" in report.text
    assert "service_unavailable" in report.text and "/kpi digest preview 1" in report.text
    assert {r["kind"]: r["status"] for r in deliveries(state_url)} == {"digest": "gave_up", "report": "posted"}
    svc.retry_failed(SLOT + timedelta(hours=9))
    assert len(posts(slack)) == 1  # reported once


def test_channel_error_is_reported_to_the_owner(state_url, duck_url, slack, client):
    weekly_digest(state_url, channel="C404", owner="U1")
    slack.not_member.add("C404")
    svc = service(state_url, client, duck_url)
    svc.run_due(SLOT)
    [dm] = posts(slack, "U1")
    assert "KPI digest #1 due Mon 23 Mar 09:00 CET in <#C404> could not be posted" in dm.text
    assert "not_in_channel" in dm.text and "/invite @kpibot" in dm.text
    assert {r["kind"]: r["status"] for r in deliveries(state_url)} == {"digest": "gave_up", "report": "posted"}
    svc.retry_failed(SLOT + timedelta(minutes=5))
    assert len(slack.calls("chat.postMessage", where=slack.in_channel("C404"))) == 1  # no retry against a wall


def test_metrics_database_outage_is_retried(state_url, duck_url, slack, client):
    weekly_digest(state_url)
    svc = service(state_url, client, "postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert svc.run_due(SLOT).failed
    [row] = deliveries(state_url)
    assert row["status"] == "failed" and "not answering" in row["reason"]
    svc.metrics_url = duck_url  # the database is back
    assert svc.retry_failed(SLOT + timedelta(minutes=5)).posted == ["digest:1:2026-03-23T09:00"]


def test_claim_left_by_a_dead_process_is_taken_over(state_url, duck_url, slack, client):
    weekly_digest(state_url)
    engine = state.get_state_engine(state_url)
    dead = Outbox(engine, None, me="dead-host:1")
    assert dead.claim("digest:1:2026-03-23T09:00", now=SLOT, kind="digest", ref_id=1, slot=SLOT, channel_id="C1")
    svc = service(state_url, client, duck_url)
    assert svc.run_due(SLOT + timedelta(minutes=1)).posted == []  # claimed: not ours to post
    assert svc.retry_failed(SLOT + timedelta(minutes=5)).posted == []  # not stale yet
    assert svc.retry_failed(SLOT + timedelta(minutes=20)).posted == ["digest:1:2026-03-23T09:00"]
    assert len(posts(slack, "C1")) == 1


def test_post_interrupted_mid_call_is_posted_again_when_it_is_not_in_the_channel(state_url, duck_url, slack,
                                                                                 client):
    weekly_digest(state_url)
    engine = state.get_state_engine(state_url)
    dead = Outbox(engine, None, me="dead-host:1")
    did = dead.claim("digest:1:2026-03-23T09:00", now=SLOT, kind="digest", ref_id=1, slot=SLOT, channel_id="C1",
                     owner="U1")
    with engine.begin() as conn:  # it died while telling Slack; Slack never got it
        conn.execute(update(state.deliveries).where(state.deliveries.c.id == did).values(status="sending"))
    svc = service(state_url, client, duck_url)
    assert svc.retry_failed(SLOT + timedelta(minutes=2)).posted == []  # may still be in flight
    assert svc.retry_failed(SLOT + timedelta(minutes=5)).posted == ["digest:1:2026-03-23T09:00"]
    [late] = posts(slack, "C1")  # at least once: the digest, marked late
    assert "⏰ _Late: this digest was due" in late.text and "stopped while posting" in late.text
    assert {r["kind"]: r["status"] for r in deliveries(state_url)} == {"digest": "posted"}


def test_post_interrupted_after_slack_took_it_is_not_posted_twice(state_url, duck_url, slack, client):
    weekly_digest(state_url)
    engine = state.get_state_engine(state_url)
    dying = Outbox(engine, client, me="dying-host:1")
    key = "digest:1:2026-03-23T09:00"
    did = dying.claim(key, now=SLOT, kind="digest", ref_id=1, slot=SLOT, channel_id="C1", owner="U1")
    assert dying.send(did, [Op("post", "C1", "the digest")], now=SLOT).ok
    with engine.begin() as conn:  # Slack took it; the process died before recording that
        conn.execute(update(state.deliveries).where(state.deliveries.c.id == did).values(status="sending"))
    svc = service(state_url, client, duck_url)
    svc.retry_failed(SLOT + timedelta(minutes=5))
    svc.retry_failed(SLOT + timedelta(minutes=10))
    [only] = posts(slack, "C1")
    assert only.text == "the digest"
    [row] = deliveries(state_url)
    assert row["status"] == "posted" and row["message_ts"] == only.response["ts"]


def test_digest_without_upload_permission_is_posted_without_its_chart(state_url, duck_url, slack, client):
    weekly_digest(state_url)
    add_nps_days(duck_url, date(2026, 3, 9), 14, 3, 1, 1)
    slack.fail("files.getUploadURLExternal", error="missing_scope", times=5)
    assert service(state_url, client, duck_url).run_due(SLOT).posted == ["digest:1:2026-03-23T09:00"]
    [post] = posts(slack, "C1")
    assert post.method == "chat.postMessage" and "Weekly KPI digest" in post.text
    assert "The chart could not be attached: Slack answered `missing_scope`" in post.text
