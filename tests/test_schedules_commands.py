"""`/kpi digest …` and `/kpi alert …` (and the same words under `kpibot …`): managing schedules."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from bot import mrkdwn
from bot.schedules import commands
from storage import state
from tests.test_schedules_support import (
    add_nps_days,
    count,
    posts,
    utc,
)

pytest_plugins = ["tests.test_schedules_support"]
pytestmark = pytest.mark.usefixtures("schedule_env")

NOW = utc(2026, 3, 18, 10, 0)  # a Wednesday


def slash(words: str, state_url: str, *, channel: str = "C1", user: str = "U1", tz: str | None = "Europe/Berlin",
          now=NOW, client=None) -> str:
    # as Slack shows it: the reply goes out through bot.mrkdwn.escape (channel links intact)
    return mrkdwn.escape(commands.handle(words.split(), channel_id=channel, user_id=user, user_tz=tz, now=now,
                                         state_url=state_url, client=client))


def rows(state_url: str, table) -> list[dict]:
    with state.get_state_engine(state_url).connect() as conn:
        return [dict(r) for r in conn.execute(select(table)).mappings()]


def test_digest_add_list_remove(state_url):
    reply = slash("digest add weekly mon 09:00 nps csat churn_rate revenue", state_url)
    assert "Digest #1 added" in reply
    assert "every Monday at 09:00 (Europe/Berlin)" in reply
    assert "Time zone: Europe/Berlin, from your Slack profile" in reply
    assert "First one: Mon 23 Mar 09:00 CET" in reply
    [row] = rows(state_url, state.digests)
    assert (row["channel_id"], row["frequency"], row["weekday"], row["at_time"], row["timezone"]) == (
        "C1", "weekly", 0, "09:00", "Europe/Berlin")
    assert row["metrics"] == "nps,csat,churn_rate,revenue"
    assert row["created_by"] == "U1"

    listing = slash("digest list", state_url)
    assert "#1 every Monday at 09:00 (Europe/Berlin)" in listing
    assert "nps, csat, churn_rate, revenue" in listing
    assert "next Mon 23 Mar 09:00 CET" in listing
    assert "No digests" in slash("digest list", state_url, channel="C2")
    assert "#1" in slash("digest list all", state_url, channel="C2")

    assert "removed" in slash("digest remove 1", state_url)
    assert "No digests" in slash("digest list", state_url)
    assert "There is no digest #1" in slash("digest remove 1", state_url)


def test_daily_and_monthly_digests(state_url):
    assert "every day at 07:30 (UTC)" in slash("digest add daily 7:30am nps", state_url, tz="UTC")
    assert "on day 15 of every month at 10:00 (UTC)" in slash("digest add monthly 15th 10:00 revenue mrr", state_url, tz="UTC")
    assert "on the last day of every month at 17:00" in slash("digest add monthly last 17:00 revenue", state_url)
    assert count(state_url, state.digests) == 3


def test_time_zone_defaults(state_url, monkeypatch):
    # the command's own zone wins, then the asker's Slack zone, then KPI_TIMEZONE, then UTC
    slash("digest add daily 09:00 America/New_York nps", state_url, tz="Europe/Berlin")
    slash("digest add daily 09:00 nps", state_url, tz="Asia/Tokyo")
    monkeypatch.setenv("KPI_TIMEZONE", "Europe/Lisbon")
    reply = slash("digest add daily 09:00 nps", state_url, tz=None)
    assert "Europe/Lisbon, the configured default, KPI_TIMEZONE" in reply
    monkeypatch.delenv("KPI_TIMEZONE")
    slash("digest add daily 09:00 nps", state_url, tz=None)
    slash("digest add daily 09:00 nps", state_url, tz="Not/AZone")  # a bad profile zone is ignored
    zones = [r["timezone"] for r in sorted(rows(state_url, state.digests), key=lambda r: r["id"])]
    assert zones == ["America/New_York", "Asia/Tokyo", "Europe/Lisbon", "UTC", "UTC"]


BAD = [
    ("digest add weekly mon 25:00 nps csat", "`25:00` is not a time of day"),
    ("digest add weekly mon 09:61 nps", "`09:61` is not a time of day"),
    ("digest add weekly mon 09:00 npx", "I don't know a KPI called `npx`. Did you mean `nps`?"),
    ("digest add weekly mon 09:00", "Name at least one KPI"),
    ("digest add hourly 09:00 nps", "starts with daily, weekly or monthly"),
    ("digest add monthly 31 09:00 nps", "Day 31 is not in every month"),
    ("digest add weekly mon 09:00 Mars/Olympus nps", "`Mars/Olympus` is not a time zone"),
    ("digest add daily tue 09:00 nps", "A daily digest has no weekday"),
    ("alert add csat above 150%", "`csat` can never be above 150%: it is at most 100%"),
    ("alert add csat below 0", "`csat` can never be below 0%"),
    ("alert add nps above 100", "`nps` can never be above 100"),
    ("alert add nps drops 250 points", "can never drop by more than 200 points"),
    ("alert add csat below 120", "would always be true"),
    ("alert add nps drops 0", "A drop must be bigger than zero"),
    ("alert add npx below 30", "I don't know a KPI called `npx`"),
    ("alert add nps below thirty", "`thirty` is not a number"),
    ("alert add nps below 30%", "`nps` is a score, not a percentage"),
    ("alert add nps below 30 by planet", "can't be broken down by `planet`. Did you mean `plan`?"),
    ("alert add first_response_time above 1 parsec", "I don't understand `parsec`"),
    ("alert add revenue above 5 hours", "`revenue` is a currency, not a duration"),
    ("alert add nps", "Say when to alert"),
    ("alert add nps below 30 for 99 windows", "between 1 and 30"),
    ("alert frobnicate 3", "I don't know `alert frobnicate`"),
]


@pytest.mark.parametrize(("words", "message"), BAD)
def test_bad_commands_store_nothing(state_url, words, message):
    reply = slash(words, state_url)
    assert message in reply
    assert count(state_url, state.digests) == 0
    assert count(state_url, state.alert_rules) == 0


def test_alert_add_list_remove(state_url):
    assert "Alert #1 added in <#C1>: nps below 30 (7-day window)" in slash("alert add nps below 30", state_url)
    reply = slash("alert add csat drops 5 points week-over-week", state_url)
    assert "csat drops 5 pp week-over-week" in reply
    assert "at least 30 responses" in reply and "margin of error" in reply
    reply = slash("alert add first_response_time above 1h by priority", state_url)
    assert "first_response_time above 1 h (7-day window) by priority" in reply
    rules = {r["id"]: r for r in rows(state_url, state.alert_rules)}
    assert (rules[1]["metric"], rules[1]["condition"], rules[1]["threshold"]) == ("nps", "below", 30.0)
    assert (rules[2]["condition"], rules[2]["threshold"], rules[2]["window_days"]) == ("drops", 5.0, 7)
    assert (rules[3]["threshold"], rules[3]["dimension"], rules[3]["owner"]) == (1.0, "priority", "U1")

    listing = slash("alert list", state_url)
    assert "#1 nps below 30" in listing and "#3 first_response_time above 1 h" in listing
    assert "removed" in slash("alert remove 2", state_url)
    assert "#2" not in slash("alert list", state_url)


def test_alert_snooze(state_url):
    slash("alert add nps below 30", state_url)
    reply = slash("alert snooze 1 2d", state_url)
    assert "snoozed until Fri 20 Mar 11:00 CET" in reply  # rule zone: the asker's, Europe/Berlin
    [rule] = rows(state_url, state.alert_rules)
    assert rule["snoozed_until"] == (NOW + timedelta(days=2)).replace(tzinfo=None)
    assert "😴 snoozed until" in slash("alert list", state_url)
    assert "is not a duration" in slash("alert snooze 1 2x", state_url)
    assert "up to 90 days" in slash("alert snooze 1 100d", state_url)
    assert "no longer snoozed" in slash("alert snooze 1 off", state_url)
    [rule] = rows(state_url, state.alert_rules)
    assert rule["snoozed_until"] is None
    assert "until Wed 1 Apr 00:00 CEST" in slash("alert snooze 1 until 2026-04-01", state_url)


def test_items_are_managed_from_their_channel(state_url):
    slash("digest add weekly mon 09:00 nps", state_url, channel="C1")
    slash("alert add nps below 30", state_url, channel="C1")
    assert "posts in <#C1>; manage it from there" in slash("digest remove 1", state_url, channel="C2")
    assert "posts in <#C1>" in slash("alert snooze 1 1d", state_url, channel="C2")
    assert count(state_url, state.digests) == 1


def test_cli_takes_the_same_commands(state_url, monkeypatch, capsys):
    monkeypatch.setenv("KPI_STATE_URL", state_url)
    monkeypatch.setenv("KPI_TIMEZONE", "Europe/Berlin")
    assert commands.cli(["digest", "add", "weekly", "mon", "09:00", "nps", "csat", "--channel", "C9"]) == 0
    out = capsys.readouterr().out
    assert "Digest #1 added" in out and "#C9" in out and "Europe/Berlin" in out and "kpibot digest remove 1" in out
    assert commands.cli(["alert", "add", "nps", "below", "30", "--channel=C9", "--user", "U7"]) == 0
    assert commands.cli(["digest", "list"]) == 0
    assert "#1 every Monday at 09:00 (Europe/Berlin) in #C9" in capsys.readouterr().out
    assert commands.cli(["alert", "list"]) == 0
    assert "#1 nps below 30" in capsys.readouterr().out

    assert commands.cli(["digest", "add", "weekly", "mon", "25:00", "nps", "--channel", "C9"]) == 2
    assert "`25:00` is not a time of day" in capsys.readouterr().err
    assert commands.cli(["digest", "add", "weekly", "mon", "09:00", "nps"]) == 2
    assert "--channel" in capsys.readouterr().err
    assert commands.cli(["digest", "add", "daily", "09:00", "nps", "--channel", "C9", "--tz", "Nowhere/Land"]) == 2
    assert count(state_url, state.digests) == 1

    assert commands.cli(["alert", "snooze", "1", "3h"]) == 0
    assert commands.cli(["alert", "remove", "1"]) == 0
    assert commands.cli(["digest", "remove", "1"]) == 0
    assert count(state_url, state.alert_rules) == 1  # soft-deleted: the delivery log still refers to it
    assert "No alerts" in (commands.cli(["alert", "list"]) or capsys.readouterr().out)


def test_preview_posts_now_marked_as_preview(state_url, duck_url, slack, client, monkeypatch):
    monkeypatch.setenv("KPI_DATABASE_URL", duck_url)
    add_nps_days(duck_url, NOW.date() - timedelta(days=16), 16, 18, 9, 3)
    slash("digest add weekly mon 09:00 nps", state_url)
    reply = slash("digest preview 1", state_url, client=client)
    assert "Posted a preview of digest #1 in <#C1>" in reply
    [post] = posts(slack, "C1")
    assert "PREVIEW" in post.text and "This is a preview" in post.text
    assert "week of 9 Mar 2026" in post.text  # the last complete week as of Wed 18 Mar
    assert "Net Promoter Score*: 50.0" in post.text


RULES = """
timezone: Europe/Berlin
digests:
  - name: exec-weekly
    channel: C5
    schedule: weekly mon 09:00
    kpis: [nps, csat]
    owner: U9
alerts:
  - name: nps-floor
    channel: C5
    rule: nps below 30 by touchpoint
    owner: U9
"""


def test_rules_file(state_url, tmp_path, monkeypatch):
    path = tmp_path / "rules.yml"
    path.write_text(RULES)
    monkeypatch.setenv("KPI_RULES_FILE", str(path))
    listing = slash("digest list", state_url, channel="C5")
    assert "#1 every Monday at 09:00 (Europe/Berlin) in <#C5> — nps, csat" in listing
    assert "from the rules file" in listing
    assert "#1 nps below 30 (7-day window) by touchpoint" in slash("alert list", state_url, channel="C5")
    assert "remove it there" in slash("digest remove 1", state_url, channel="C5")
    assert "remove it there" in slash("alert remove 1", state_url, channel="C5")
    assert "or a kpibot admin can remove or change" in slash("alert snooze 1 1d", state_url, channel="C5")
    assert "snoozed" in slash("alert snooze 1 1d", state_url, channel="C5", user="U9")  # the owner may

    # a broken file changes nothing, and says why
    path.write_text(RULES.replace("nps below 30", "nps below 300"))
    listing = slash("alert list", state_url, channel="C5")
    assert "#1 nps below 30 " in listing
    assert "rules.yml: alerts[0] (nps-floor): `nps` can never be above" not in listing
    assert "rules.yml: alerts[0] (nps-floor)" in listing and "would always be true" in listing

    # an edited entry replaces the old one; a deleted entry goes
    path.write_text(RULES.replace("nps below 30", "nps below 20").replace("kpis: [nps, csat]", "kpis: [nps]"))
    listing = slash("alert list", state_url, channel="C5")
    assert "nps below 20" in listing and "nps below 30" not in listing
    assert "— nps ·" in slash("digest list", state_url, channel="C5")
    path.write_text("digests: []\nalerts: []\n")
    assert "No alerts" in slash("alert list", state_url, channel="C5")
    assert "No digests" in slash("digest list", state_url, channel="C5")


GOOD_ALERTS = [
    ("nps below 30", "nps below 30 (7-day window)"),
    ("nps is below -10 over 14 days", "nps below -10 (14-day window)"),
    ("csat falls below 80% in Europe/Berlin", "csat below 80% (7-day window)"),
    ("csat drops 5 points 3 times in a row", "csat drops 5 pp week-over-week, 3 windows in a row"),
    ("nps drops by 10 points week over week by industry", "nps drops 10 points week-over-week by industry"),
    ("revenue drops 20% vs last month", "revenue drops 20% month-over-month"),
    ("first response time above 90min", "first_response_time above 1.5 h (7-day window)"),
    ("first_response_time above 45 min min 20", "first_response_time above 45 min (7-day window), min 20 responses"),
    ("resolution_time above 2d", "resolution_time above 48 h (7-day window)"),
    ("mrr below 1.5m", "mrr below $1,500,000 (7-day window)"),
    ("nps below 30 min 100 responses", "nps below 30 (7-day window), min 100 responses"),
    ("nps below 30 for 3 days", "nps below 30 (7-day window), 3 windows in a row"),
]


@pytest.mark.parametrize(("words", "stored"), GOOD_ALERTS)
def test_alert_phrasings(state_url, words, stored):
    assert f": {stored}." in slash(f"alert add {words}", state_url)
    [rule] = rows(state_url, state.alert_rules)
    assert rule["text"] == stored
