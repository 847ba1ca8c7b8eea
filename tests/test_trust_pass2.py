"""Trust, second pass (issue 15): markup from data, the audit log, floods, replays, loose ends.

Every attack goes through the running HTTP app (signed requests, :mod:`tests.trust_helpers`)
against the fake Slack, or through the scheduler's real delivery path to it.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta

import pytest

from bot import audit, mrkdwn
from bot.schedules import store
from bot.schedules.config import Config
from bot.schedules.delivery import Op, Outbox
from bot.schedules.parse import parse_alert
from bot.schedules.scheduler import ScheduleService
from bot.slack_client import make_client
from metrics.catalogue import CATALOGUE
from storage import database, state
from storage.importer import import_file
from tests.slack_helpers import BOT_TOKEN, direct_message
from tests.trust_helpers import new_channel, start_app

EVIL = "<!channel> <https://evil.example/login|Slack session expired, log in again> & <@U0BOSS>"
RAW = ("<!channel>", "<https://evil.example", "<@U0BOSS>")

# NPS by touchpoint, by hand: in 2026-Q2 both touchpoints give 20 tens (NPS 100.0); in 2026-Q3
# the hostile one gives 20 zeros, "support" 20 tens: 20 promoters, 20 detractors of 40 -> 0.0.
# A real drop (n = 40, outside the margin), all from the hostile touchpoint: the
# explanation names it.
SCORES = {("2026-05", EVIL): [10] * 20, ("2026-05", "support"): [10] * 20,
          ("2026-08", EVIL): [0] * 20, ("2026-08", "support"): [10] * 20}


def _hostile_csv(path) -> None:
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["response_id", "customer_id", "responded_at", "survey", "score", "touchpoint", "comment"])
        k = 0
        for (month, touchpoint), scores in SCORES.items():
            for score in scores:
                k += 1
                out.writerow([f"r{k}", f"c{k % 3}", f"{month}-{1 + k % 27:02d} 12:00:00", "nps", score, touchpoint, ""])


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    url = f"duckdb:///{tmp_path / 'metrics.duckdb'}"
    database.get_engine(url)
    path = tmp_path / "survey.csv"
    _hostile_csv(path)
    import_file(database.get_engine(url), "survey_responses", str(path))
    state_url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    with start_app(url, monkeypatch, state_url=state_url) as app:
        app.url, app.state_url = url, state_url
        yield app


def _no_raw_markup(calls) -> None:
    for call in calls:
        for raw in RAW:
            assert raw not in call.text, (call.method, call.text[:500])


def test_data_and_user_text_cannot_write_slack_markup(hostile):
    answer = hostile.ask("nps 2026-Q3")
    assert answer.kind == "answer", answer
    assert "*0.0*" in answer.text and "100.0" in answer.text
    assert "&lt;!channel&gt;" in answer.text, answer.text  # the explanation names the touchpoint, escaped
    breakdown = hostile.ask("nps by touchpoint 2026-Q3")
    assert breakdown.kind == "answer" and "&lt;!channel&gt;" in breakdown.text
    # the asker's own text, echoed under the answer ("Asked by … `/kpi …`"): Slack delivers a
    # typed "<" as "&lt;", which the bot unescapes to read the question
    echo = hostile.ask('nps where touchpoint = "&lt;!here&gt; &lt;@U0BOSS&gt;" 2026-Q3')
    assert echo.kind == "answer", echo
    assert "Asked by <@U0ALICE>" in echo.text  # the bot's own mention still works
    assert "&lt;!here&gt;" in echo.text and "<!here>" not in echo.text
    refused = hostile.ask("nps 2026-Q3 &lt;!here&gt;")  # a private "I understood …" line
    assert refused.kind == "private" and "<!here>" not in refused.text
    _no_raw_markup(hostile.fake.calls())


def test_alert_titles_and_scheduled_posts_are_escaped(hostile):
    client = make_client(BOT_TOKEN, base_url=hostile.fake.api_url)
    engine = state.get_state_engine(hostile.state_url)
    channel = new_channel("CALR")
    spec = parse_alert("nps below 90 by touchpoint over 90d min 1".split(), default_tz="UTC")
    store.add_rule(engine, spec, spec.describe(CATALOGUE["nps"]), channel_id=channel, owner="U0ALICE",
                   now=datetime(2026, 8, 1, tzinfo=UTC))
    svc = ScheduleService(client, state_url=hostile.state_url, metrics_url=hostile.url,
                          config=Config(grace=timedelta(hours=6)))
    svc.evaluate_alerts(datetime(2026, 9, 30, 10, tzinfo=UTC))
    fired = hostile.fake.calls("chat.postMessage", where=hostile.fake.in_channel(channel))
    assert fired and any("&lt;!channel&gt;" in c.text for c in fired), [c.text for c in fired]
    _no_raw_markup(fired)
    # any scheduled text (a digest line, a report) goes through the same last step
    outbox = Outbox(engine, client)
    did = outbox.claim("test:escape", now=datetime(2026, 9, 30, tzinfo=UTC), kind="digest", channel_id=channel)
    assert outbox.send(did, [Op("post", channel, f"*Digest* {EVIL} in {mrkdwn.channel('C0LINK')}")],
                       now=datetime(2026, 9, 30, tzinfo=UTC)).ok
    last = hostile.fake.calls("chat.postMessage", where=hostile.fake.in_channel(channel))[-1]
    assert "&lt;!channel&gt;" in last.text and "&amp;" in last.text and "<#C0LINK>" in last.text
    _no_raw_markup([last])
