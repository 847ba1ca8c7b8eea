"""The answer path around the engine: reports, explanations, and the `kpibot` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date

import pytest

from bot.app import Settings, create_bot
from bot.server import HttpServer
from metrics import reports
from metrics.api import answer
from tests import fixtures
from tests.fake_slack import PNG_MAGIC, FakeSlack
from tests.slack_helpers import BOT_TOKEN, SIGNING_SECRET, SlackSender

AS_OF = date(2026, 11, 23)


@pytest.fixture
def company(duck_url):
    fixtures.load(duck_url)
    return duck_url


def test_reports_are_routed_before_the_kpi_parser(company):
    report = answer("complaints 2026-Q3", as_of=AS_OF, url=company)
    assert isinstance(report, reports.ComplaintsReport)
    # Q3 tickets: t1 billing, t2 and t3 bug -> bug leads by volume with 2
    assert report.by_volume[0].category == "bug" and report.by_volume[0].tickets == 2
    assert "What creates unhappy customers?" in reports.render_text(report)


def test_no_explanation_for_a_change_that_may_be_noise(company):
    # NPS Q3 vs Q2 (+20) rests on 10 answers: flagged as a small sample, so not "explained"
    result = answer("nps 2026-Q3", as_of=AS_OF, url=company)
    assert result.change == pytest.approx(20.0)
    assert result.explanation is None


def test_explanation_names_the_segment_for_a_real_change(company):
    # revenue Jul 1 - Sep 20 (the orders end on Sep 20) = 250 (c1 200, c2 50) vs the 82 days
    # before (Apr 10 - Jun 30) = 80 (c3, Retail): +170, of which Retail +120
    result = answer("revenue 2026-07-01 to 2026-09-20", as_of=AS_OF, url=company)
    assert result.change == pytest.approx(170.0)
    assert result.explanation is not None and "%" in result.explanation


def kpibot(*args, url: str, check=False, **kw):
    """The CLI in its own process. This process lets go of the DuckDB file first (its engine
    would otherwise hold the lock until idle) and the child waits for a lock as long as a
    loaded machine may need."""
    from storage import database

    database.dispose_all()
    env = {**os.environ, "KPI_DATABASE_URL": url, "KPI_BUSY_WAIT": "60"}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args], capture_output=True, text=True, env=env, timeout=120, **kw
    )


def test_cli_ask_json_and_chart(company, tmp_path):
    chart = tmp_path / "nps.png"
    done = kpibot("ask", "nps by industry last-quarter", "--as-of", "2026-11-23", "--json", "--chart", str(chart), url=company)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["metric"] == "nps" and data["unit"] == "score"
    assert data["period"]["start"] == "2026-07-01" and data["period"]["end"] == "2026-10-01"
    assert data["value"] == pytest.approx(20.0) and data["n"] == 10
    assert data["previous"]["start"] == "2026-04-01" and data["previous"]["value"] == pytest.approx(0.0)
    assert data["change"] == pytest.approx(20.0)
    assert {g["group"]: g["value"] for g in data["breakdown"]} == {"Retail": pytest.approx(60.0), "Software": pytest.approx(-20.0)}
    assert chart.read_bytes().startswith(PNG_MAGIC)
    assert "Traceback" not in done.stderr


def test_cli_bad_question_exits_2_with_a_suggestion(company):
    done = kpibot("ask", "nsp last quarter", url=company)
    assert done.returncode == 2
    assert "Did you mean `nps`" in done.stderr and "Traceback" not in done.stderr


def test_cli_text_answer_reads_like_slack(company):
    done = kpibot("ask", "churn last-quarter", "--as-of", "2026-11-23", url=company)
    assert done.returncode == 0
    assert "Customer churn rate — last quarter, 2026-Q3" in done.stdout
    assert "50.0%" in done.stdout and "vs previous quarter (33.3%) — bad" in done.stdout


def test_cli_import_refuses_a_bad_file(duck_url, tmp_path):
    bad = tmp_path / "t.csv"
    bad.write_text("ticket_id,opened_at\nt1,2026-01-01\nt2,not-a-date\n")
    done = kpibot("import", "tickets", str(bad), url=duck_url)
    assert done.returncode == 1
    assert f"{bad}:3: opened_at:" in done.stderr


def test_cli_metrics_lists_every_kpi(duck_url):
    from metrics.catalogue import CATALOGUE

    done = kpibot("metrics", url=duck_url)
    assert done.returncode == 0
    for metric_id in CATALOGUE:
        assert f"  {metric_id} " in done.stdout


def test_report_in_slack_posts_text_and_chart(company, tmp_path, monkeypatch):
    monkeypatch.setenv("KPI_STATE_URL", f"sqlite:///{tmp_path}/state.sqlite")
    monkeypatch.delenv("KPI_POLICY", raising=False)
    with FakeSlack(token=BOT_TOKEN, users={"U0ALICE": "UTC"}) as fake:
        bot = create_bot(Settings(bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET, api_url=fake.api_url, database_url=company))
        with HttpServer(bot) as server:
            send = SlackSender(server.url, fake.response_url)
            resp, _ = send.command("before churn 2026-Q3", channel="C0REPORTS")
            assert resp.status == 200
            [post] = fake.wait_for("chat.postMessage", where=fake.in_channel("C0REPORTS"), timeout=15)
            assert "What happens when customers want to leave?" in post.text
            [done] = fake.wait_for("files.completeUploadExternal", where=fake.in_channel("C0REPORTS"), timeout=15)
            assert fake.uploads[done.params["files"][0]["id"]].startswith(PNG_MAGIC)
            # profitability is per-customer money: refused in a channel by the default policy
            resp, url = send.command("profitability 2026-Q3", channel="C0REPORTS")
            refusal = fake.reply_to(url)
            assert "can't share the `profitability` report" in json.dumps(refusal.params)
