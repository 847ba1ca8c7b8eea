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
