"""A dbt metric asked in Slack, through the real protocol (signed /kpi requests to the running
app, its Web API calls to tests/fake_slack.py): KPI_DBT_PROJECT's metrics are answered like
built-in KPIs, and a money metric is under the same access policy as kpibot's revenue."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import create_engine

from bot.app import Settings, create_bot
from bot.server import HttpServer
from metrics import model
from tests.fake_slack import FakeSlack
from tests.slack_helpers import BOT_TOKEN, SIGNING_SECRET, SlackSender
from tests.test_model_dbt_e2e import SHOP, _load
from tests.trust_helpers import use_env

_channels = itertools.count(1)


@pytest.fixture
def shop_bot(tmp_path, monkeypatch):
    url = f"duckdb:///{tmp_path / 'shop.duckdb'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        _load(conn)
    engine.dispose()
    env = {"KPI_USER_BURST": "1000", "KPI_POLICY": None, "KPI_MODEL": None,
           "KPI_STATE_URL": f"sqlite:///{tmp_path / 'state.sqlite'}"}
    use_env(monkeypatch, env)
    with FakeSlack(token=BOT_TOKEN, users={"U0ALICE": "Europe/Paris"}) as fake:
        settings = Settings(bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET, api_url=fake.api_url,
                            database_url=url, dbt_project=str(SHOP))
        try:
            bot = create_bot(settings)
            with HttpServer(bot) as server:
                yield fake, SlackSender(server.url, fake.response_url)
        finally:
            model.configure(None)


def _answer(fake: FakeSlack, send: SlackSender, question: str):
    ch = f"C{next(_channels):04d}DBT"
    resp, _ = send.command(question, channel=ch)
    assert resp.status == 200
    in_ch = fake.in_channel(ch)
    [post] = fake.wait_for("chat.postMessage", count=1, timeout=30,
                           where=lambda c: in_ch(c) and "Working on it" not in c.text)
    return post


def test_a_dbt_metric_is_answered_in_slack(shop_bot):
    fake, send = shop_bot
    post = _answer(fake, send, "shop nps march 2026")
    assert post.blocks[0]["text"]["text"].startswith("Survey NPS — March 2026")
    assert "*33.3*" in post.text  # March: 9, 6, 10 -> (2 - 1) × 100 / 3
    assert "-50.0" in post.text  # February: 3, 7 -> (0 - 1) × 100 / 2


def _refusal(fake: FakeSlack, send: SlackSender, question: str) -> str:
    """The private reply to a question the policy refuses in a channel (posted nowhere)."""
    ch = f"C{next(_channels):04d}DBT"
    _, url = send.command(question, channel=ch)
    reply = fake.reply_to(url)
    assert not fake.calls("chat.postMessage", where=fake.in_channel(ch))
    return reply.text


def test_a_dbt_money_metric_gets_the_verdict_revenue_gets(shop_bot):
    """Default policy: money KPIs are not shown in channels; the dbt one (meta unit currency)
    is money like kpibot's revenue, and the refusal names it."""
    fake, send = shop_bot
    revenue = _refusal(fake, send, "revenue march 2026")
    invoiced = _refusal(fake, send, "invoiced amount march 2026")
    assert invoiced == revenue.replace("`revenue`", "`invoiced_amount`")
    # a ratio over the money column reads money too
    assert "`average_invoice`" in _refusal(fake, send, "average paid invoice march 2026")
