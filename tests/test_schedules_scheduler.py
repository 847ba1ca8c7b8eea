"""The production wiring: APScheduler jobs built from the state tables, in memory only."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.schedules import commands, scheduler
from bot.schedules.clock import FixedClock
from tests.test_schedules_support import (
    add_nps_days,
    config,
    posts,
    utc,
)

pytest_plugins = ["tests.test_schedules_support"]
pytestmark = pytest.mark.usefixtures("schedule_env")


def slash(words: str, state_url: str, now: datetime, channel: str = "C1") -> str:
    return commands.handle(words.split(), channel_id=channel, user_id="U1", user_tz="Europe/Berlin", now=now,
                           state_url=state_url)


def test_start_builds_jobs_from_the_state_tables(state_url, client):
    slash("digest add weekly mon 09:00 nps", state_url, utc(2026, 3, 18))
    slash("digest add daily 07:30 America/New_York csat", state_url, utc(2026, 3, 18))
    sched = scheduler.start(client, clock=FixedClock(utc(2026, 3, 18, 12)), state_url=state_url,
                            config=config(), paused=True)
    try:
        assert isinstance(sched._jobstores["default"], MemoryJobStore)
        jobs = {job.id: job for job in sched.get_jobs()}
        assert set(jobs) == {"digest:1", "digest:2", "alerts", "housekeeping", "catch-up"}
        weekly = jobs["digest:1"]
        assert isinstance(weekly.trigger, CronTrigger) and weekly.trigger.timezone == ZoneInfo("Europe/Berlin")
        assert weekly.misfire_grace_time == 6 * 3600 and weekly.coalesce and weekly.max_instances == 1
        assert weekly.trigger.get_next_fire_time(None, utc(2026, 3, 24)) == datetime(
            2026, 3, 30, 9, tzinfo=ZoneInfo("Europe/Berlin"))
        assert jobs["digest:2"].trigger.timezone == ZoneInfo("America/New_York")
        assert isinstance(jobs["alerts"].trigger, IntervalTrigger)
        assert jobs["alerts"].trigger.interval.total_seconds() == 3600
        assert jobs["alerts"].misfire_grace_time == 3600
        assert all(job.misfire_grace_time for job in jobs.values())

        # commands in the same process update the running jobs at once
        assert scheduler.running_service() is sched.kpibot
        slash("digest add monthly 1 08:00 revenue", state_url, utc(2026, 3, 18))
        assert sched.get_job("digest:3") is not None
        slash("digest remove 1", state_url, utc(2026, 3, 18))
        assert sched.get_job("digest:1") is None
    finally:
        sched.shutdown(wait=False)


def test_jobs_added_by_another_process_are_picked_up(state_url, client):
    sched = scheduler.start(client, state_url=state_url, config=config(), paused=True)
    try:
        assert [j.id for j in sched.get_jobs() if j.id.startswith("digest:")] == []
        # e.g. `kpibot digest add …` in a terminal: another process, so no notification
        from bot.schedules import store
        from bot.schedules.parse import parse_digest

        spec = parse_digest("daily 09:00 nps".split(), default_tz="UTC")
        store.add_digest(sched.kpibot.state, spec, channel_id="C1", created_by=None, now=utc(2026, 3, 18))
        sched.get_job("housekeeping").func()
        assert sched.get_job("digest:1") is not None
    finally:
        sched.shutdown(wait=False)


def test_two_apscheduler_instances_on_one_state_db_post_a_slot_once(any_state_url, duck_url, slack, client):
    slash("digest add weekly mon 09:00 nps", any_state_url, utc(2026, 3, 18))
    clock = FixedClock(utc(2026, 3, 23, 8))  # the slot: Mon 09:00 CET
    first = scheduler.start(client, clock=clock, state_url=any_state_url, metrics_url=duck_url, config=config(),
                            paused=True)
    second = scheduler.start(client, clock=clock, state_url=any_state_url, metrics_url=duck_url, config=config(),
                             paused=True)
    try:
        for sched in (first, second):  # both fire their job for the slot
            job = sched.get_job("digest:1")
            job.func(*job.args)
        assert len(posts(slack, "C1")) == 1
    finally:
        first.shutdown(wait=False)
        second.shutdown(wait=False)


def test_catch_up_runs_on_start(state_url, duck_url, slack, client):
    add_nps_days(duck_url, date(2026, 3, 9), 14, 3, 1, 1)
    slash("digest add weekly mon 09:00 nps", state_url, utc(2026, 3, 18))
    # the bot comes up at Mon 11:00 Berlin, two hours after the slot: within the grace window
    sched = scheduler.start(client, clock=FixedClock(utc(2026, 3, 23, 10)), state_url=state_url,
                            metrics_url=duck_url, config=config())
    try:
        [post] = slack.wait_for("chat.postMessage", where=lambda c: not c.params.get("thread_ts"), timeout=30)
        assert "Late: this digest was due Mon 23 Mar 09:00 CET" in post.text
    finally:
        sched.shutdown(wait=True)
    assert len(posts(slack, "C1")) == 1


def test_rules_file_is_read_at_start(state_url, client, tmp_path, monkeypatch):
    path = tmp_path / "rules.yml"
    path.write_text("digests:\n  - channel: C7\n    schedule: daily 06:00 Asia/Tokyo\n    kpis: [nps]\n")
    monkeypatch.setenv("KPI_RULES_FILE", str(path))
    from bot.schedules.config import Config

    sched = scheduler.start(client, state_url=state_url, config=Config.from_env(), paused=True)
    try:
        job = sched.get_job("digest:1")
        assert job is not None and job.trigger.timezone == ZoneInfo("Asia/Tokyo")
    finally:
        sched.shutdown(wait=False)
