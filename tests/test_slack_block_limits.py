"""Every Block Kit surface kpibot builds, checked against Slack's limits by slack_sdk's own
models (``validate_json`` raises on too many blocks, elements, options, or characters)."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot import answer_actions, app_home, blocks, modals
from bot.schedules import marks
from bot.schedules.store import Rule
from metrics import api
from tests.slack_helpers import load_fixture


def check_blocks(items: list[dict]) -> None:
    assert 0 < len(items) <= 50
    for block in Block.parse_all(items):
        block.validate_json()


def check_view(view: dict) -> None:
    View(**view).validate_json()


@pytest.fixture
def fixture_url(tmp_path):
    url = f"duckdb:///{tmp_path / 'metrics.duckdb'}"
    load_fixture(url)
    return url


@pytest.mark.parametrize("question", ["nps 2026-Q3", "nps by touchpoint 2026-Q3", "nps 2026-Q3 trend"])
def test_answer_blocks_fit(fixture_url, question):
    result = api.ask(question, as_of=date(2026, 11, 1), url=fixture_url)
    image = answer_actions.image_block("F0123456789", blocks.chart_alt_text(result), blocks.chart_title(result))
    actions = answer_actions.actions_block(result)
    assert actions is not None and len(actions["elements"]) <= 25
    check_blocks(blocks.answer_blocks(result, image=image, actions=actions, asked="Asked by <@U1>"))


def test_forms_fit():
    check_view(modals.digest_view(kpis=["nps", "csat"], channel="C0TEAM", tz="Europe/Paris", digest_id=3))
    check_view(modals.digest_view(kpis=[], channel=None, tz="UTC"))
    check_view(modals.alert_view(kpi="nps", channel="C0TEAM", tz="UTC"))
    check_view(modals.ask_view("nps last quarter"))
    groups = modals.kpi_option_groups()
    assert len(groups) <= 100 and all(len(g["options"]) <= 100 for g in groups)


def test_alert_buttons_fit():
    from datetime import UTC, datetime

    rule = Rule(id=7, channel_id="C1", owner="U1", metric="nps", dimension=None, condition="below", threshold=30.0,
                relative=False, window_days=7, consecutive=1, min_sample=None, timezone="UTC", text="nps below 30",
                snoozed_until=None, created_at=datetime(2026, 1, 1, tzinfo=UTC), removed_at=None, source="slack",
                source_key=None)
    moved = answer_actions.AskState("nps", "2026-04-08..2026-04-14").encode()
    check_blocks([{"type": "section", "text": {"type": "mrkdwn", "text": "alert"}},
                  {"type": "actions", "elements": marks.buttons(rule, moved)}])


def test_home_fits(fixture_url, tmp_path, monkeypatch):
    monkeypatch.setenv("KPI_STATE_URL", f"sqlite:///{tmp_path / 'state.sqlite'}")
    view = app_home.home_view(SimpleNamespace(settings=SimpleNamespace(database_url=fixture_url)), "U0ALICE")
    assert len(view["blocks"]) <= 100
    check_view(view)
