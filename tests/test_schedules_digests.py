"""Scheduled digests: slots from APScheduler's CronTrigger, DST, content, restarts and catch-up."""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert

from bot.schedules import digests as digest_mod
from bot.schedules import store
from bot.schedules.clock import FixedClock
from bot.schedules.parse import parse_digest
from bot.schedules.scheduler import build_scheduler
from storage import database, state
from storage.schema import customers, orders
from tests.fake_slack import PNG_MAGIC
from tests.test_schedules_support import (
    add_nps_days,
    add_survey,
    deliveries,
    posts,
    service,
    utc,
)

pytest_plugins = ["tests.test_schedules_support"]
pytestmark = pytest.mark.usefixtures("schedule_env")

BERLIN = ZoneInfo("Europe/Berlin")


def add_digest(state_url: str, words: str, *, created: datetime, channel: str = "C1") -> store.Digest:
    spec = parse_digest(words.split(), default_tz="UTC")
    return store.add_digest(state.get_state_engine(state_url), spec, channel_id=channel, created_by="U1", now=created)


# ---- slot maths: the real trigger ------------------------------------------------------------------


def test_weekly_berlin_slots_keep_09_00_local_across_dst():
    spec = parse_digest("weekly mon 09:00 Europe/Berlin nps".split(), default_tz="UTC")
    trigger = digest_mod.trigger_for(spec)
    assert trigger.timezone == BERLIN
    spring = digest_mod.slots_between(trigger, utc(2026, 3, 20), utc(2026, 4, 1))
    # CET = UTC+1 until Sun 29 Mar 2026, CEST = UTC+2 after
    assert [s.astimezone(ZoneInfo("UTC")) for s in spring] == [utc(2026, 3, 23, 8), utc(2026, 3, 30, 7)]
    autumn = digest_mod.slots_between(trigger, utc(2026, 10, 15), utc(2026, 10, 28))
    assert [s.astimezone(ZoneInfo("UTC")) for s in autumn] == [utc(2026, 10, 19, 7), utc(2026, 10, 26, 8)]
    assert all(s.astimezone(BERLIN).hour == 9 for s in spring + autumn)


def test_daily_digest_in_the_repeated_hour_is_posted_once(state_url, duck_url, slack, client):
    # 02:30 happens twice in Berlin on Sun 25 Oct 2026; APScheduler yields both fire times
    d = add_digest(state_url, "daily 02:30 Europe/Berlin nps", created=utc(2026, 10, 20))
    trigger = digest_mod.trigger_for(d.spec)
    both = digest_mod.slots_between(trigger, utc(2026, 10, 24, 23), utc(2026, 10, 25, 2))
    assert [s.astimezone(ZoneInfo("UTC")) for s in both] == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)]
    svc = service(state_url, client, duck_url)
    assert svc.run_due(utc(2026, 10, 25, 0, 30)).posted == ["digest:1:2026-10-25T02:30"]
    assert svc.run_due(utc(2026, 10, 25, 1, 30)).posted == []
    assert len(posts(slack)) == 1


def test_weekly_digest_across_spring_dst_fires_at_09_00_local(state_url, duck_url, slack, client):
    add_nps_days(duck_url, date(2026, 3, 9), 21, 18, 9, 3)
    add_digest(state_url, "weekly mon 09:00 Europe/Berlin nps", created=utc(2026, 3, 16, 12))
    svc = service(state_url, client, duck_url)
    # Mon 23 Mar: CET, 09:00 local = 08:00 UTC
    assert svc.run_due(utc(2026, 3, 23, 7, 59)).posted == []
    assert svc.run_due(utc(2026, 3, 23, 8, 0)).posted == ["digest:1:2026-03-23T09:00"]
    # Mon 30 Mar: CEST, 09:00 local = 07:00 UTC (08:00 UTC would be an hour late)
    assert svc.run_due(utc(2026, 3, 30, 6, 59)).posted == []
    assert svc.run_due(utc(2026, 3, 30, 7, 0)).posted == ["digest:1:2026-03-30T09:00"]
    assert svc.run_due(utc(2026, 3, 30, 8, 0)).posted == []
    first, second = posts(slack, "C1")
    assert "week of 16 Mar 2026" in first.text and "week of 23 Mar 2026" in second.text
    assert "2026-03-23 to 2026-03-29 (Europe/Berlin)" in second.text
    assert "Late" not in first.text + second.text


def test_digest_message_content_and_chart(state_url, duck_url, slack, client):
    # last week (Mon 16 - Sun 22 Mar): NPS 20 on 210 answers, the week before 50: bad
    add_nps_days(duck_url, date(2026, 3, 9), 7, 18, 9, 3)
    add_nps_days(duck_url, date(2026, 3, 16), 7, 12, 12, 6)
    add_survey(duck_url, date(2026, 3, 17), survey="csat", scores=[5, 5, 4, 2])
    with database.get_engine(duck_url).begin() as conn:
        conn.execute(insert(orders), [
            {"order_id": "o1", "customer_id": "c1", "ordered_at": datetime(2026, 3, 10, 12), "amount": 1000.0},
            {"order_id": "o2", "customer_id": "c1", "ordered_at": datetime(2026, 3, 22, 12), "amount": 1500.0},
        ])
        conn.execute(insert(customers), [
            {"customer_id": f"c{i}", "signed_up_at": datetime(2025, 1, 1),
             "churned_at": datetime(2026, 3, 19) if i < 2 else None} for i in range(20)
        ])
        # a sign-up on the week's last day: customers are loaded through Sun 22 Mar
        conn.execute(insert(customers), [{"customer_id": "c-new", "signed_up_at": datetime(2026, 3, 22, 12)}])
    add_digest(state_url, "weekly mon 09:00 Europe/Berlin nps csat churn_rate revenue", created=utc(2026, 3, 1))
    svc = service(state_url, client, duck_url)
    assert svc.run_due(utc(2026, 3, 23, 8)).posted
    [post] = posts(slack, "C1")
    text = post.text  # the fallback text and every block
    assert "📊 *Weekly KPI digest* — week of 16 Mar 2026 (Mon 16 Mar – Sun 22 Mar)" in text
    assert "Period: 2026-03-16 to 2026-03-22 (Europe/Berlin)" in text
    assert "🔴 *Net Promoter Score*: 20.0  ▼ −30.0 points vs previous week (50.0)" in text
    assert "n = 210" in text
    assert "*Customer Satisfaction (CSAT)*: 75.0%" in text and "only 4 responses" in text
    assert "🔴 *Customer churn rate*: 10.0%" in text  # 2 of 20 churned; up from 0: bad
    assert "🟢 *Revenue*: $1,500" in text and "+$500" in text
    assert "Digest #1 · every Monday at 09:00 (Europe/Berlin)" in text
    # one Block Kit message: a line per KPI, "data through", and one small-multiples image
    # (the chart uploaded without a channel, shown by the image block)
    blocks = post.params["blocks"]
    lines = [b["text"]["text"] for b in blocks if b["type"] == "section" and "Net Promoter Score" in b["text"]["text"]]
    assert len(lines) == 1 and len(lines[0].splitlines()) == 4  # nps, csat, churn, revenue: one line each
    assert "Data through" in json.dumps(blocks[1])
    [image] = [b for b in blocks if b["type"] == "image"]
    [upload] = slack.calls("upload")
    assert image["slack_file"]["id"] == upload.params["file_id"]
    assert slack.uploads[upload.params["file_id"]].startswith(PNG_MAGIC)
    [done] = slack.calls("files.completeUploadExternal")
    assert "channel_id" not in done.params and done.seq < post.seq
    assert "Net Promoter Score" in image["alt_text"]


def test_digest_with_no_data_posts_text_only(state_url, duck_url, slack, client):
    add_digest(state_url, "daily 09:00 nps", created=utc(2026, 3, 1))
    assert service(state_url, client, duck_url).run_due(utc(2026, 3, 23, 9)).posted
    [post] = posts(slack, "C1")
    assert post.method == "chat.postMessage" and "no data for this period" in post.text


def test_restart_mid_week_loses_nothing(state_url, duck_url, slack, client):
    add_digest(state_url, "weekly mon 09:00 Europe/Berlin nps", created=utc(2026, 3, 16, 12))
    first = service(state_url, client, duck_url)
    assert first.run_due(utc(2026, 3, 23, 8)).posted
    first.state.dispose()
    state.dispose_all()  # the process is gone

    # Wednesday: a new process rebuilds its jobs from the state tables
    second = service(state_url, client, duck_url)
    scheduler = build_scheduler(second)
    job = scheduler.get_job("digest:1")
    assert job is not None and job.trigger.timezone == BERLIN
    assert job.misfire_grace_time == 6 * 3600
    assert job.trigger.get_next_fire_time(None, utc(2026, 3, 25, 10)) == datetime(2026, 3, 30, 9, tzinfo=BERLIN)
    assert second.run_due(utc(2026, 3, 25, 10)).posted == []  # Monday's is not posted again
    assert second.run_due(utc(2026, 3, 30, 7)).posted == ["digest:1:2026-03-30T09:00"]
    assert len(posts(slack, "C1")) == 2


def test_missed_slot_within_grace_is_caught_up_once(state_url, duck_url, slack, client):
    add_digest(state_url, "weekly mon 09:00 Europe/Berlin nps", created=utc(2026, 3, 16, 12))
    # down from Sun to Mon 11:00 local (10:00 UTC): two hours late, inside the 6 h grace
    svc = service(state_url, client, duck_url)
    assert svc.run_due(utc(2026, 3, 23, 10)).posted == ["digest:1:2026-03-23T09:00"]
    assert svc.run_due(utc(2026, 3, 23, 10, 5)).posted == []
    assert service(state_url, client, duck_url).run_due(utc(2026, 3, 23, 11)).posted == []  # another restart
    [post] = posts(slack, "C1")
    assert "⏰ _Late: this digest was due Mon 23 Mar 09:00 CET; the bot was not running then" in post.text


def test_missed_slot_outside_grace_is_skipped_and_logged(state_url, duck_url, slack, client, caplog):
    add_digest(state_url, "weekly mon 09:00 Europe/Berlin nps", created=utc(2026, 3, 1))
    svc = service(state_url, client, duck_url, grace=timedelta(hours=6))
    with caplog.at_level(logging.WARNING, logger="kpibot.schedules"):
        # back at Mon 23 Mar 16:00 local, 7 h late; the bot was also down for the 16 Mar slot
        out = svc.run_due(utc(2026, 3, 23, 15))
    assert out.posted == [] and posts(slack) == []
    assert out.skipped == ["digest:1:2026-03-02T09:00", "digest:1:2026-03-09T09:00",
                           "digest:1:2026-03-16T09:00", "digest:1:2026-03-23T09:00"]
    last = deliveries(state_url)[-1]
    assert last["status"] == "skipped" and "beyond the 6 h grace window" in last["reason"]
    logged = [r for r in caplog.records if r.msg == "digest_slot_skipped"]
    assert len(logged) == 4 and logged[-1].fields["digest"] == 1
    assert svc.run_due(utc(2026, 3, 23, 16)).skipped == []  # logged once
    assert svc.run_due(utc(2026, 3, 30, 7)).posted == ["digest:1:2026-03-30T09:00"]


def test_only_the_latest_missed_slot_is_posted(state_url, duck_url, slack, client):
    add_digest(state_url, "daily 09:00 nps", created=utc(2026, 3, 1))
    svc = service(state_url, client, duck_url, grace=timedelta(hours=30))
    out = svc.run_due(utc(2026, 3, 23, 10))  # both Sun 22 and Mon 23 09:00 are inside the grace
    assert out.posted == ["digest:1:2026-03-23T09:00"]
    assert "digest:1:2026-03-22T09:00" in out.skipped
    assert len(posts(slack)) == 1


def test_removed_digest_is_not_posted(state_url, duck_url, slack, client):
    d = add_digest(state_url, "daily 09:00 nps", created=utc(2026, 3, 1))
    store.remove_digest(state.get_state_engine(state_url), d.id, utc(2026, 3, 22))
    assert service(state_url, client, duck_url).run_due(utc(2026, 3, 23, 9)).posted == []
    assert posts(slack) == []


def test_monthly_digest_reports_the_last_complete_month(state_url, duck_url, slack, client):
    add_nps_days(duck_url, date(2026, 2, 1), 28, 3, 1, 1)
    add_nps_days(duck_url, date(2026, 3, 1), 31, 2, 1, 2)
    add_digest(state_url, "monthly 1 08:00 nps", created=utc(2026, 2, 15))
    clock = FixedClock(utc(2026, 4, 1, 8))
    svc = service(state_url, client, duck_url)
    svc.clock = clock
    assert svc.run_due().posted == ["digest:1:2026-04-01T08:00"]
    [post] = posts(slack)
    assert "Monthly KPI digest* — March 2026" in post.text
    assert "vs previous month (40.0)" in post.text


def test_digest_whose_data_stopped_says_no_data_not_zero(state_url, duck_url, slack, client):
    # issue 11, item 10: 20 customers since 2025; 2 churn on Tue 10 Mar, then the import stops
    # (nothing after the 10th). Last week (Mon 16 - Sun 22 Mar) would read "churn 0.0%" and
    # "🟢" (down from 10%); it has no data at all.
    with database.get_engine(duck_url).begin() as conn:
        conn.execute(insert(customers), [
            {"customer_id": f"c{i}", "signed_up_at": datetime(2025, 1, 1),
             "churned_at": datetime(2026, 3, 10, 12) if i < 2 else None} for i in range(20)
        ])
    add_digest(state_url, "weekly mon 09:00 UTC churn_rate", created=utc(2026, 3, 1))
    svc = service(state_url, client, duck_url)
    assert svc.run_due(utc(2026, 3, 23, 9)).posted
    [post] = posts(slack, "C1")
    text = post.text
    assert "*Customer churn rate*: no data for this period (data through 10 Mar 2026)" in text
    assert "0.0%" not in text and "🟢" not in text.split("\n\n")[1]
    assert "Data through Tue 10 Mar 2026." in text


def test_digest_line_over_a_partly_loaded_week_is_not_judged(state_url, duck_url, slack, client):
    # customers are loaded through Thu 19 Mar (2 churn that day); the week is Mon 16 - Sun 22.
    # 2 of 20 churned = 10.0%, up from 0 - but Fri to Sun are missing: no 🔴, say why.
    with database.get_engine(duck_url).begin() as conn:
        conn.execute(insert(customers), [
            {"customer_id": f"c{i}", "signed_up_at": datetime(2025, 1, 1),
             "churned_at": datetime(2026, 3, 19, 12) if i < 2 else None} for i in range(20)
        ])
    add_digest(state_url, "weekly mon 09:00 UTC churn_rate", created=utc(2026, 3, 1))
    assert service(state_url, client, duck_url).run_due(utc(2026, 3, 23, 9)).posted
    [post] = posts(slack, "C1")
    text = post.text
    assert "▫️ *Customer churn rate*: 10.0%" in text
    assert "incomplete: data through 19 Mar 2026, not judged" in text and "🔴" not in text.split("\n\n")[1]
