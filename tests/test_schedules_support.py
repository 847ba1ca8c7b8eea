"""Fixtures and helpers for the schedules tests (digests, alerts, delivery).

Test modules load this one with ``pytest_plugins`` and ``pytest.mark.usefixtures("schedule_env")``.
Everything runs against real databases (a DuckDB metrics file, a SQLite or PostgreSQL
state database) and the fake Slack Web API on loopback (:mod:`tests.fake_slack`); times are
explicit arguments or a :class:`FixedClock`, so nothing sleeps.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from slack_sdk import WebClient
from sqlalchemy import func, insert, select, text

from bot.schedules.config import Config
from bot.schedules.scheduler import ScheduleService, stop_all
from storage import database, state
from storage.schema import survey_responses
from tests.conftest import _postgres_database
from tests.fake_slack import FakeSlack

TOKEN = "xoxb-test"
_ids = itertools.count(1)

SLACK_METHODS = (
    "chat.postMessage", "chat.update", "files.getUploadURLExternal", "files.completeUploadExternal",
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ---- state databases ------------------------------------------------------------------------------


def fresh_state(kind: str, tmp_path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/state.sqlite"
    url = _postgres_database()  # skips the test where no PostgreSQL server answers
    engine = state.get_state_engine(url)
    names = ", ".join(t.name for t in state.metadata.sorted_tables)
    with engine.begin() as conn:  # ids start at 1 again, as in a new database
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
    return url


@pytest.fixture
def state_url(tmp_path) -> str:
    """A SQLite state database (the default backend)."""
    return fresh_state("sqlite", tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_state_url(request, tmp_path) -> str:
    """The state database on each supported backend."""
    return fresh_state(request.param, tmp_path)


@pytest.fixture
def schedule_env(monkeypatch, tmp_path) -> Iterator[None]:
    """No schedule settings leak in from the environment; schedulers started are stopped.

    The KPI policy is open here (every KPI everywhere): these tests are about scheduling;
    digests and alerts under a restrictive policy are tested in tests/test_reliability.py.
    """
    for name in ("KPI_TIMEZONE", "KPI_GRACE_HOURS", "KPI_ALERT_MIN_SAMPLE", "KPI_RULES_FILE", "KPI_STATE_URL",
                 "KPI_ALERT_INTERVAL_MINUTES", "KPI_RETRY_MINUTES", "KPI_FISCAL_YEAR_START"):
        monkeypatch.delenv(name, raising=False)
    open_policy = tmp_path / "open-policy.toml"
    open_policy.write_text('[sensitivity.money]\nchannels = ["*"]\n')
    monkeypatch.setenv("KPI_POLICY", str(open_policy))
    yield
    stop_all()


# ---- Slack ------------------------------------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=TOKEN) as fake:
        yield fake


def client_for(slack: FakeSlack) -> WebClient:
    # No SDK retry handlers: a failure surfaces at once, so tests need no backoff waits.
    return WebClient(token=TOKEN, base_url=slack.api_url, retry_handlers=[])


@pytest.fixture
def client(slack) -> WebClient:
    return client_for(slack)


def slack_down(slack: FakeSlack, *, status: int = 503, error: str = "service_unavailable") -> list:
    """Every posting method fails until :func:`slack_up`."""
    return [slack.fail(m, status=status, error=error, times=10_000) for m in SLACK_METHODS]


def slack_up(faults: list) -> None:
    for fault in faults:
        fault.times = 0


def posts(slack: FakeSlack, channel: str | None = None) -> list:
    """Top-level messages that reached a channel: plain posts, and file shares with text."""
    def where(c) -> bool:
        target = c.params.get("channel") or c.params.get("channel_id")
        if not target:  # a chart uploaded without a channel, shown by a message's image block
            return False
        return (channel is None or target == channel) and not c.params.get("thread_ts")

    return slack.calls("chat.postMessage", ok=True, where=where) + slack.calls(
        "files.completeUploadExternal", ok=True, where=where
    )


def thread_replies(slack: FakeSlack, ts: str) -> list:
    return slack.calls("chat.postMessage", ok=True, where=lambda c: c.params.get("thread_ts") == ts)


# ---- services -----------------------------------------------------------------------------------------


def config(**overrides) -> Config:
    return replace(Config(), **overrides)


def service(state_url: str, client: WebClient | None, metrics_url: str | None = None, **overrides) -> ScheduleService:
    """A fresh schedule service, as a newly started process would build it."""
    return ScheduleService(client, state_url=state_url, metrics_url=metrics_url, config=config(**overrides))


def count(state_url: str, table) -> int:
    with state.get_state_engine(state_url).connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def deliveries(state_url: str) -> list[dict]:
    with state.get_state_engine(state_url).connect() as conn:
        return [dict(r) for r in conn.execute(select(state.deliveries).order_by(state.deliveries.c.id)).mappings()]


# ---- metrics data ---------------------------------------------------------------------------------------


def add_survey(url: str, day: date, *, survey: str = "nps", scores: list[int], touchpoint: str | None = None) -> None:
    """Responses on ``day``, spread over its UTC hours 08:00-19:59."""
    rows = []
    for i, score in enumerate(scores):
        rows.append({
            "response_id": f"s{next(_ids)}",
            "customer_id": None,
            "responded_at": datetime(day.year, day.month, day.day, 8 + i % 12, (i * 7) % 60),
            "survey": survey,
            "score": score,
            "touchpoint": touchpoint,
        })
    with database.get_engine(url).begin() as conn:
        conn.execute(insert(survey_responses), rows)


def nps_scores(promoters: int, passives: int, detractors: int) -> list[int]:
    return [10] * promoters + [8] * passives + [3] * detractors


def add_nps_days(url: str, first: date, days: int, promoters: int, passives: int, detractors: int, **kw) -> None:
    for k in range(days):
        add_survey(url, first + timedelta(days=k), scores=nps_scores(promoters, passives, detractors), **kw)
