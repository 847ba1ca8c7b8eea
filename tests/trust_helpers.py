"""The running Slack app for the trust tests (reliability, fuzz, injection, audit).

:func:`start_app` starts the real HTTP app under uvicorn on loopback, its Web API calls
going to :class:`tests.fake_slack.FakeSlack`; :meth:`App.ask` sends a signed ``/kpi``
command and waits for whatever the asker gets back: an answer in the channel, or a private
line through the ``response_url`` (the "Working on it…" courtesy line is skipped).
"""

from __future__ import annotations

import itertools
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from bot.app import KpiBot, Settings, create_bot
from bot.server import HttpServer
from tests.fake_slack import Call, FakeSlack
from tests.slack_helpers import BOT_TOKEN, SIGNING_SECRET, SlackSender, http_request
from tests.waiting import wait_until

_channels = itertools.count(1)


def new_channel(prefix: str = "C") -> str:
    return f"{prefix}{next(_channels):05d}TRUST"


@dataclass
class Reply:
    kind: str  # answer | private
    text: str
    call: Call
    elapsed: float  # seconds from sending the command to this reply

    def __str__(self) -> str:
        return f"{self.kind}: {self.text[:300]}"


@dataclass
class App:
    fake: FakeSlack
    bot: KpiBot
    server: HttpServer
    send: SlackSender
    env: dict[str, str | None] = field(default_factory=dict)  # the settings it runs with

    def entered(self, monkeypatch: Any) -> App:
        """This app, with its settings in the environment until ``monkeypatch`` is undone, once
        the questions of earlier tests on it are done (a question counts against its asker's
        in-flight limit until its chart is posted, which may be after that test ended)."""
        use_env(monkeypatch, self.env)
        wait_until(lambda: not +self.bot._in_flight, what="the shared bot finishing earlier questions")
        return self

    def ask(self, text: str, *, channel: str | None = None, user: str = "U0ALICE", timeout: float = 15.0) -> Reply:
        channel = channel or new_channel()
        after = self.last_seq()
        started = time.monotonic()
        resp, url = self.send.command(text, channel=channel, user=user)
        assert resp.status == 200, (resp.status, resp.body[:200])
        return self.wait_reply(channel, url, started, timeout, after=after)

    def last_seq(self) -> int:
        return max((c.seq for c in self.fake.calls()), default=0)

    def wait_reply(self, channel: str, response_url: str, started: float, timeout: float = 15.0, *,
                   after: int = 0) -> Reply:
        """The first reply recorded after call number ``after``: a post in ``channel`` or a private line."""
        key = response_url.rsplit("/", 1)[1]
        deadline = started + timeout
        in_channel = self.fake.in_channel(channel)
        while True:
            posts = self.fake.calls("chat.postMessage", ok=True, where=lambda c: c.seq > after and in_channel(c))
            if posts:
                return Reply("answer", posts[0].text, posts[0], posts[0].at - started)
            private = [
                c for c in self.fake.calls("response_url", where=lambda c: c.params.get("key") == key)
                if "Working on it" not in c.text
            ]
            if private:
                return Reply("private", private[0].text, private[0], private[0].at - started)
            if time.monotonic() > deadline:
                raise AssertionError(f"no reply to {channel} within {timeout}s; recorded: "
                                     f"{[(c.method, c.status) for c in self.fake.calls()][-20:]}")
            time.sleep(0.02)

    def healthy(self) -> bool:
        try:
            resp = http_request(self.server.url + "/healthz", timeout=3)
        except OSError:
            return False
        return resp.status == 200 and resp.json().get("ok") is True and self.server.thread.is_alive()


def use_env(monkeypatch: Any, env: dict[str, str | None]) -> None:
    """Applies ``env`` (``None``: unset) through ``monkeypatch``, so that it is undone after."""
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


@contextmanager
def start_app(database_url: str, monkeypatch: Any = None, *, state_url: str, policy: str | None = None,
              user_burst: int = 100_000, env: dict[str, str | None] | None = None, **settings: Any):
    """The app on ``database_url`` with its own FakeSlack.

    Its settings (``env`` plus the state URL, policy and rate limits) are in the environment
    while it is built, then undone: a module-scoped app must not hold them between tests
    (the conftest guard fails a test that leaves ``os.environ`` changed). Each test using it
    puts them back with :meth:`App.entered` and its own ``monkeypatch``. With ``monkeypatch``
    given (a function-scoped app) they stay until that monkeypatch is undone.
    """
    env = {
        "KPI_USER_BURST": str(user_burst),
        "KPI_CHANNEL_BURST": str(max(user_burst, 30)),
        "KPI_STATE_URL": state_url,
        "KPI_POLICY": policy,
        **(env or {}),
    }
    with FakeSlack(token=BOT_TOKEN, users={"U0ALICE": "UTC"}) as fake:
        with pytest.MonkeyPatch.context() as building:
            use_env(monkeypatch or building, env)
            bot = create_bot(Settings(bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET, api_url=fake.api_url,
                                      database_url=database_url, **{"working_after": 1.5, **settings}))
        with HttpServer(bot) as server:
            yield App(fake, bot, server, SlackSender(server.url, fake.response_url), env)
