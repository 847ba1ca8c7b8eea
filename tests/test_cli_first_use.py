"""What a first user trips on in the terminal (issue 11): `ask list`, a missing or empty
database, `audit --limit 0`, `digest preview` without a Slack token.

`kpibot` runs in-process (``bot.cli.main``) from a temporary folder, against databases in
temporary folders.
"""

from __future__ import annotations

import io

import pytest

from bot import audit
from bot.cli import main as kpibot
from storage import database
from tests.slack_helpers import EXPECTED_NPS, QUESTION, load_fixture


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A fresh folder as the working directory, no database configured, state in tmp."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KPI_DATABASE_URL", raising=False)
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    monkeypatch.setenv("KPI_STATE_URL", f"sqlite:///{tmp_path / 'state.sqlite'}")
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    return tmp_path


@pytest.fixture
def nps_url(here) -> str:
    url = f"duckdb:///{here / 'nps.duckdb'}"
    load_fixture(url)
    return url


# ---- ask list / help / define ---------------------------------------------------------------


def test_ask_list_lists_the_kpis_instead_of_guessing_one(here, capsys):
    assert kpibot(["ask", "list"]) == 0
    out, err = capsys.readouterr()
    assert "`nps`" in out and "`churn_rate`" in out and "`revenue`" in out
    assert "Did you mean" not in out + err and "new_customers`, `churned_mrr" not in out + err


def test_ask_define_and_help_answer_like_slack(here, capsys):
    assert kpibot(["ask", "define nps"]) == 0
    assert "Net Promoter Score (`nps`)" in capsys.readouterr().out
    assert kpibot(["ask", "help"]) == 0
    assert "kpibot ask nps by industry last-quarter" in capsys.readouterr().out
    assert kpibot(["ask", "define"]) == 2
    assert 'kpibot ask "define nps"' in capsys.readouterr().err


# ---- no database here, or an empty one ------------------------------------------------------


def test_ask_from_a_folder_without_a_database_says_so_and_creates_nothing(here, capsys):
    assert kpibot(["ask", "nps last quarter"]) == 3
    err = capsys.readouterr().err
    assert f"There is no kpibot database at {here / 'data' / 'kpibot.duckdb'}" in err
    assert "kpibot demo" in err and "kpibot import" in err
    assert not (here / "data").exists()  # it used to create an empty database and answer "no data"


def test_chat_from_a_folder_without_a_database_says_so(here, capsys):
    assert kpibot(["chat"]) == 3
    assert "There is no kpibot database" in capsys.readouterr().err
    assert not (here / "data").exists()


def test_ask_on_an_empty_database_says_it_is_empty(here, capsys):
    url = f"sqlite:///{here / 'empty.sqlite'}"
    database.get_engine(url)  # the tables, no rows
    assert kpibot(["--url", url, "ask", QUESTION]) == 3
    err = capsys.readouterr().err
    assert "The database is empty" in err and "kpibot import" in err and "kpibot demo" in err


def test_chat_on_an_empty_database_says_it_is_empty(here, capsys, monkeypatch):
    url = f"sqlite:///{here / 'empty-chat.sqlite'}"
    database.get_engine(url)
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{QUESTION}\nquit\n"))
    assert kpibot(["--url", url, "chat"]) == 0
    assert "The database is empty" in capsys.readouterr().out


def test_a_database_with_data_still_answers_no_data_where_there_is_none(nps_url, capsys):
    """The empty-database hint is not a blanket refusal: here only 2026-Q1 has no answers."""
    assert kpibot(["--url", nps_url, "ask", QUESTION]) == 0
    assert EXPECTED_NPS in capsys.readouterr().out
    assert kpibot(["--url", nps_url, "ask", "nps 2026-Q1"]) == 0
    out, err = capsys.readouterr()
    assert "empty" not in out + err and "no data" in out.lower()


# ---- audit --limit 0 ------------------------------------------------------------------------


def test_audit_limit_zero_prints_nothing(here, capsys):
    url = f"sqlite:///{here / 'state.sqlite'}"
    for n in range(2):
        audit.record(url=url, source="cli", command="question", question=f"nps {n}", outcome="answered", elapsed_ms=1)
    assert audit.flush(60)
    assert kpibot(["audit", "--limit", "0"]) == 0
    assert capsys.readouterr().out == ""
    assert kpibot(["audit", "--limit", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "nps 1" in out[1]  # header + the newest one
    with pytest.raises(SystemExit):
        kpibot(["audit", "--limit", "-1"])


# ---- digest preview without a Slack token ---------------------------------------------------


def test_digest_preview_without_a_token_shows_the_digest_in_the_terminal(nps_url, monkeypatch, capsys):
    monkeypatch.setenv("KPI_DATABASE_URL", nps_url)
    assert kpibot(["digest", "add", "weekly", "nps", "--channel", "C0TEAM"]) == 0
    capsys.readouterr()
    assert kpibot(["digest", "preview", "1", "--channel", "C0TEAM"]) == 0
    out = capsys.readouterr().out
    assert "Not posted: SLACK_BOT_TOKEN is not set" in out
    assert "Weekly KPI digest" in out and "Net Promoter Score" in out and "#C0TEAM" in out


def test_terminal_text_drops_emphasis_but_keeps_a_formulas_operators():
    from bot.cli import _plain

    assert _plain("*Net revenue* — (revenue - refunds) * 100 / revenue") == "Net revenue — (revenue - refunds) * 100 / revenue"
    assert _plain("_Data through 22 Nov_") == "Data through 22 Nov"
