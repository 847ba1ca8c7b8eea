"""One deadline for all of a question's work: every statement on every engine, and model fits.

The statements here never finish on their own (a recursive count to 10¹²), so only the
deadline can stop them; what is asserted is the outcome (stopped, with the user's line), never
how long it took.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sqlalchemy import text

from metrics import clv_model
from storage import database

ENDLESS = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000000) "
           "SELECT count(*) FROM n")


def _endless(url: str) -> None:
    with database.query(database.get_engine(url)) as conn:
        conn.execute(text(ENDLESS)).all()


def test_the_question_deadline_stops_a_statement_on_every_engine(db_url, monkeypatch):
    monkeypatch.setenv("KPI_QUERY_TIMEOUT", "600")  # the per-statement timeout would never fire
    with database.deadline(0.3), pytest.raises(database.DatabaseError, match="took too long"):
        _endless(db_url)


def test_the_deadline_is_shared_by_every_statement_of_the_question(db_url, monkeypatch):
    monkeypatch.setenv("KPI_QUERY_TIMEOUT", "600")
    engine = database.get_engine(db_url)
    with database.deadline(0.0), pytest.raises(database.DatabaseError, match="took too long"):
        with database.query(engine) as conn:  # the budget is spent: refused before it starts
            conn.execute(text("SELECT 1")).all()


def test_model_fitting_stops_at_the_deadline():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, 200)
    t_x = np.where(x > 0, rng.uniform(1, 50, 200), 0)
    big_t = np.full(200, 60.0)
    clv_model.fit_bgnbd(x, t_x, big_t)  # fits without a deadline
    with database.deadline(0.0), pytest.raises(database.DatabaseError, match="took too long"):
        clv_model.fit_bgnbd(x, t_x, big_t)


def test_interrupt_all_stops_running_queries_for_a_prompt_shutdown(db_url, monkeypatch):
    monkeypatch.setenv("KPI_QUERY_TIMEOUT", "600")
    outcome: list = []
    started = threading.Event()

    def run() -> None:
        try:
            started.set()
            _endless(db_url)
        except database.DatabaseError as exc:
            outcome.append(str(exc))

    worker = threading.Thread(target=run)
    worker.start()
    started.wait(5)
    try:
        while worker.is_alive() and not database._active:
            worker.join(0.01)
        while worker.is_alive():
            database.interrupt_all()  # again, in case the statement had not begun yet
            worker.join(0.05)
    finally:
        database.resume_queries()
    assert outcome and "took too long" in outcome[0]


def test_sigterm_stops_kpibot_serve_promptly_with_a_query_running(tmp_path):
    """A question blocked in PostgreSQL (its table locked, a 600 s statement timeout) must not
    hold the shutdown: SIGTERM interrupts it and the process exits (issue 15: it hung > 30 s)."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    from tests.conftest import fresh_url
    from tests.fake_slack import FakeSlack
    from tests.slack_helpers import (
        BOT_TOKEN,
        QUESTION,
        SIGNING_SECRET,
        SlackSender,
        http_request,
        load_fixture,
    )

    url = fresh_url("postgresql", tmp_path)
    load_fixture(url)
    holder = database.get_engine(url).connect()
    tx = holder.begin()
    holder.execute(text("LOCK TABLE survey_responses IN ACCESS EXCLUSIVE MODE"))  # SELECTs now wait
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with FakeSlack(token=BOT_TOKEN) as fake:
        env = {**os.environ, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
               "SLACK_API_URL": fake.api_url, "KPI_DATABASE_URL": url, "KPI_QUERY_TIMEOUT": "600",
               "KPI_STATE_URL": f"sqlite:///{tmp_path / 'state.sqlite'}", "HOST": "127.0.0.1", "PORT": str(port)}
        env.pop("SLACK_APP_TOKEN", None)
        env.pop("KPI_POLICY", None)
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], cwd=Path(__file__).resolve().parent.parent,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            waiting, asked = 0, False
            deadline = time.monotonic() + 30
            while waiting == 0:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "the question never reached the database"
                try:
                    if not asked and http_request(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200:
                        SlackSender(f"http://127.0.0.1:{port}", fake.response_url).command(QUESTION)
                        asked = True
                except OSError:
                    pass
                with database.get_engine(url).connect() as conn:  # the bot's SELECT, waiting for the lock
                    waiting = conn.execute(text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query ILIKE '%survey_responses%' AND pid <> pg_backend_pid()")).scalar()
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=20)  # bounded wait for the exit (the query could hold it 600 s)
                stopped = True
            except subprocess.TimeoutExpired:
                stopped = False
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
            tx.rollback()
            holder.close()
    assert stopped, "kpibot serve did not stop on SIGTERM while a query was running"
