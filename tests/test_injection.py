"""No SQL from user text: hostile strings in every place a user can type, on every backend.

The strings go through the Slack path (signed ``/kpi`` commands to the running app) as a
KPI word, a period, a dimension, a filter name and value, and digest and alert arguments,
and into the metrics database as CSV values. Every statement any engine sends is captured
with SQLAlchemy's ``before_cursor_execute``: a hostile string may appear among the bound
parameters, never in the statement text. Afterwards every table is intact, and each
question either answered with the value bound as a filter or got a clear message.
"""

from __future__ import annotations

import csv
import threading
from contextlib import ExitStack
from datetime import datetime

import pytest
from sqlalchemy import Engine, event, func, insert, inspect, select

from bot import audit
from storage import database, state
from storage.importer import import_file
from storage.schema import customers, metadata, survey_responses
from tests.conftest import BACKENDS, fresh_url, postgres_database
from tests.slack_helpers import EXPECTED_NPS, load_fixture
from tests.trust_helpers import new_channel, start_app

#: Each is distinctive enough that finding it in a statement can only mean it was pasted in.
PAYLOADS = [
    "'; DROP TABLE customers; --",
    '" OR 1=1 --',
    "x' OR '1'='1",
    "Robert'); DELETE FROM survey_responses; --",
    "ünïcødé☃ ' ＇ʼ marker",
    "back\\slash\\' marker",
    "100%_off marker",
    "%",
    "_",
    "\\",
]
#: Short ones cannot be told apart from SQL syntax (``%`` in a format, ``_`` in a name): for
#: those the test checks the answer (nothing matched) rather than the statement text.
DISTINCTIVE = [p for p in PAYLOADS if len(p) > 3]


class Statements:
    """Every statement sent by any engine while active, with its parameters."""

    def __init__(self):
        self.seen: list[tuple[str, object]] = []
        self._lock = threading.Lock()

    def __call__(self, conn, cursor, statement, parameters, context, executemany):
        with self._lock:
            self.seen.append((statement, parameters))

    def texts(self) -> list[str]:
        with self._lock:
            return [s for s, _ in self.seen]

    def params(self) -> str:
        with self._lock:
            return repr([p for _, p in self.seen])

    def __enter__(self):
        event.listen(Engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc):
        event.remove(Engine, "before_cursor_execute", self)


def counts(url: str) -> dict[str, int]:
    engine = database.get_engine(url)
    with engine.connect() as conn:
        names = set(inspect(conn).get_table_names())
        assert set(metadata.tables) <= names, f"tables missing: {set(metadata.tables) - names}"
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in metadata.sorted_tables}


def state_counts(url: str) -> dict[str, int]:
    engine = state.get_state_engine(url)
    with engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in state.metadata.sorted_tables}


@pytest.fixture(scope="module", params=BACKENDS)
def app_module(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"inject-{request.param}")
    with ExitStack() as stack:
        # PostgreSQL (skipped where no server answers): a database of its own, which no other test empties
        own = stack.enter_context(postgres_database("kpibot_inject")) if request.param == "postgresql" else None
        url = fresh_url(request.param, root, postgres=own)
        database.get_engine(url)
        load_fixture(url)
        state_url = f"sqlite:///{root / 'state.sqlite'}"
        running = stack.enter_context(start_app(url, state_url=state_url))
        running.url, running.state_url, running.root = url, state_url, root
        yield running


@pytest.fixture
def app(app_module, monkeypatch):
    return app_module.entered(monkeypatch)


def _places(payload: str) -> list[str]:
    """Every place a user can type, in one question each."""
    quoted = payload.replace('"', "")  # inside a quoted filter value (a quote would end it)
    return [
        payload,  # as the KPI
        f"nps {payload}",  # as the period
        f"nps 2026-Q3 vs {payload}",  # as the comparison period
        f"nps by {payload} 2026-Q3",  # as the dimension
        f"nps where {payload}=Retail 2026-Q3",  # as the filter name
        f'nps where touchpoint = "{quoted}" 2026-Q3',  # as the filter value (on the KPI's own table)
        f'nps where industry = "{quoted}" 2026-Q3',  # as a customer attribute (through the join)
        f'nps where region="{quoted}" 2026-Q3',  # name="value" in one word
        f"nps where region={payload.split()[0]} 2026-Q3",  # unquoted
        f"define {payload}",
        f"digest add daily 09:00 {payload}",
        f"digest add weekly {payload} 09:00 nps",
        f"digest remove {payload}",
        f"digest preview {payload}",
        f"alert add nps below {payload}",
        f"alert add nps below 30 by {payload}",
        f"alert add {payload} above 3",
        f"alert snooze 1 {payload}",
        f"alert remove {payload}",
    ]


def test_hostile_text_everywhere_is_bound_or_refused_never_sql(app):
    before, before_state = counts(app.url), state_counts(app.state_url)
    replies = []
    with Statements() as sql:
        for payload in PAYLOADS:
            for text in _places(payload):
                replies.append((text, app.ask(text, channel=new_channel())))
        assert audit.flush(60)
    assert counts(app.url) == before and state_counts(app.state_url) == before_state  # all tables intact
    statements = sql.texts()
    assert len(statements) > 50
    for payload in DISTINCTIVE:
        for statement in statements:
            assert payload not in statement, f"{payload!r} reached SQL text: {statement[:300]}"
    params = sql.params()
    # the filter values did reach the database: as parameters
    assert "'; drop table customers; --" in params.lower() and "100%_off marker" in params.lower()
    for text, reply in replies:
        assert "Traceback" not in reply.text and "error id" not in reply.text, (text, reply.text)
        if " where touchpoint = " in text or " where industry = " in text:
            # bound as a value: nothing matches it (a wildcard or OR 1=1 would have matched all ten)
            assert reply.kind == "answer", (text, reply.text)
            assert "No data for this period" in reply.text and f"*{EXPECTED_NPS}*" not in reply.text, text
        elif text.startswith(("digest", "alert", "define")):
            assert reply.kind == "private" and reply.text.strip(), (text, reply.text)
            assert "added" not in reply.text, (text, reply.text)  # nothing scheduled from hostile words
        elif reply.kind == "answer":  # a value that was bound, matching nothing
            assert "No data for this period" in reply.text and f"*{EXPECTED_NPS}*" not in reply.text, text
        else:
            assert reply.text.strip(), text  # a clear message


def test_hostile_csv_values_are_stored_as_data_and_match_only_themselves(app):
    """It adds rows to the module's database: they are removed after, whatever happens (the
    hostile-text test expects no customer in a hostile industry)."""
    try:
        _hostile_csv(app)
    finally:
        with database.get_engine(app.url).begin() as conn:
            conn.execute(survey_responses.delete().where(survey_responses.c.response_id == "evil-r"))
            conn.execute(customers.delete().where(customers.c.customer_id.like("evil%")))
        database.data_changed(database.get_engine(app.url))  # the value index forgets their industries


def _hostile_csv(app) -> None:
    path = app.root / "customers.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["customer_id", "name", "signed_up_at", "industry", "region"])
        for i, payload in enumerate(PAYLOADS):
            writer.writerow([f"evil{i}", payload, "2025-01-01", payload, payload])
    before = counts(app.url)
    with Statements() as sql:
        report = import_file(database.get_engine(app.url), "customers", str(path))
    assert report.rows == len(PAYLOADS)
    for payload in DISTINCTIVE:
        assert not [s for s in sql.texts() if payload in s], payload
    after = counts(app.url)
    assert after["customers"] == before["customers"] + len(PAYLOADS)
    assert {k: v for k, v in after.items() if k != "customers"} == {k: v for k, v in before.items() if k != "customers"}
    with database.get_engine(app.url).connect() as conn:
        stored = dict(conn.execute(select(customers.c.customer_id, customers.c.industry)
                                   .where(customers.c.customer_id.like("evil%"))).all())
    assert stored == {f"evil{i}": p for i, p in enumerate(PAYLOADS)}  # byte for byte
    # one survey answer from the customer whose industry is the DROP TABLE string
    with database.get_engine(app.url).begin() as conn:
        conn.execute(insert(survey_responses), [{"response_id": "evil-r", "customer_id": "evil0",
                                                 "responded_at": datetime(2026, 8, 1, 12), "survey": "nps",
                                                 "score": 10, "touchpoint": "support"}])
    with Statements() as sql:
        hit = app.ask('nps where industry = "\'; DROP TABLE customers; --" 2026-Q3')
    assert hit.kind == "answer" and "*100.0*" in hit.text and "n = 1 response" in hit.text, hit.text
    assert not [s for s in sql.texts() if "DROP TABLE" in s]
    assert counts(app.url)["customers"] == after["customers"]
