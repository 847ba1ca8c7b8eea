"""Whether kpibot can reach Slack, for `kpibot serve`'s start-up and its health check.

A container that exits when Slack (or the network) blips at start-up restarts in a loop, so
`serve` only gives up on answers that will never change (a wrong or revoked token). Anything
else (no route, DNS, a 5xx, a rate limit) leaves it serving: :class:`SlackLink` retries in
the background with exponential backoff and jitter (``KPI_SLACK_RETRY_SECONDS``, 2 s,
doubling to 60 s) and recovers by itself; meanwhile ``GET /healthz`` answers 503
``Slack unreachable: …``. In Socket Mode the health also follows the WebSocket: once
connected, the SDK's client reconnects by itself, and ``/healthz`` is 503 while it is down.
``GET /livez`` is 200 as long as the process serves (for a liveness probe that must not
restart it over a Slack outage).

Beside Slack, a registry of problems: any part of the bot reports one under a name
(``audit``: audit rows cannot be written, so restricted answers are withheld) and clears it
when it is over; ``/healthz`` is 503 with the list while any is open (:func:`check`).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import logging as kpilog

log = kpilog.get_logger("kpibot.health")

_lock = threading.Lock()
_problems: dict[str, tuple[str, float]] = {}  # name -> (what, since: time.time())


def report(name: str, detail: str) -> None:
    """Open (or keep open) problem ``name``; ``detail`` is a short line safe to show an operator."""
    with _lock:
        since = _problems.get(name, (detail, time.time()))[1]
        _problems[name] = (detail[:200], since)


def clear(name: str) -> None:
    with _lock:
        _problems.pop(name, None)


def problems() -> dict[str, dict[str, object]]:
    """The open problems: name -> {"detail", "since"} (epoch seconds)."""
    with _lock:
        return {name: {"detail": d, "since": round(s, 3)} for name, (d, s) in _problems.items()}


def check(state: Health | None, mode: str) -> tuple[int, dict]:
    """``/healthz``: the HTTP status and body from the Slack link (None: not tracked) and the
    open problems."""
    body: dict = state.payload(mode) if state is not None else {"ok": True, "mode": mode}
    open_problems = problems()
    if open_problems:
        body["ok"] = False
        body["problems"] = open_problems
    return (200 if body["ok"] else 503), body


#: ``auth.test`` errors no retry can fix: the token itself is wrong.
FATAL_ERRORS = frozenset({
    "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
    "not_allowed_token_type", "invalid_token",
})


class SlackRefused(Exception):
    """Slack answered and refused the token: retrying cannot help."""


class SlackUnreachable(Exception):
    """Slack could not be reached or answered with a passing error: retry later."""


@dataclass(frozen=True)
class Health:
    ok: bool
    slack: str  # "connected" | "unreachable" | "connecting"
    detail: str | None = None
    attempts: int = 0

    def payload(self, mode: str) -> dict:
        out: dict = {"ok": self.ok, "mode": mode, "slack": self.slack}
        if not self.ok:
            out["error"] = f"Slack unreachable: {self.detail}" if self.detail else "Slack unreachable"
            out["attempts"] = self.attempts
        return out


def verify_token(bot) -> None:
    """``auth.test`` once (no SDK retries: :class:`SlackLink` backs off itself); on success
    Bolt's authorization and the bot's identity use the result, so no request pays for it."""
    client = WebClient(token=bot.client.token, base_url=bot.client.base_url, timeout=10)
    try:
        result = client.auth_test()
    except SlackApiError as exc:
        code = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        if code in FATAL_ERRORS:
            raise SlackRefused(f"Slack refused SLACK_BOT_TOKEN ({code})") from None
        raise SlackUnreachable(code or f"HTTP {exc.response.status_code}") from None
    except Exception as exc:  # noqa: BLE001 - URLError, timeouts, resets: all "not reachable"
        reason = getattr(exc, "reason", None) or exc
        raise SlackUnreachable(kpilog.redact(f"{type(exc).__name__}: {reason}")[:200]) from None
    for middleware in getattr(bot.app, "_middleware_list", []):
        if hasattr(middleware, "auth_test_result"):  # Bolt's SingleTeamAuthorization
            middleware.auth_test_result = result
    bot._identity = dict(result.data) if isinstance(result.data, dict) else {}


class SlackLink:
    """Connects with ``connect()`` and, while that fails, keeps retrying in a thread.

    ``connect`` raises :class:`SlackRefused` (give up), or anything else (retry later).
    ``is_connected`` (Socket Mode: the WebSocket) is asked once connected.
    """

    def __init__(self, connect: Callable[[], None], *, is_connected: Callable[[], bool] | None = None,
                 first_retry: float | None = None, max_retry: float = 60.0):
        self._connect = connect
        self._is_connected = is_connected
        self.first_retry = first_retry if first_retry is not None else _env_seconds("KPI_SLACK_RETRY_SECONDS", 2.0)
        self.max_retry = max(max_retry, self.first_retry)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._connected = False
        self._detail: str | None = None
        self._attempts = 0
        self._thread: threading.Thread | None = None

    def attempt(self) -> bool:
        """One try; True when connected. Raises :class:`SlackRefused`."""
        with self._lock:
            self._attempts += 1
        try:
            self._connect()
        except SlackRefused:
            raise
        except Exception as exc:  # noqa: BLE001 - every other failure is worth a retry
            detail = str(exc) or type(exc).__name__
            with self._lock:
                self._connected, self._detail = False, kpilog.redact(detail)[:200]
            kpilog.event(log, "slack_unreachable", level=30, error=self._detail, attempt=self._attempts)
            return False
        with self._lock:
            self._connected, self._detail = True, None
        kpilog.event(log, "slack_connected", attempt=self._attempts)
        return True

    def start(self) -> SlackLink:
        """Retry in the background until connected (or :meth:`stop`)."""
        if not self.connected and self._thread is None:
            self._thread = threading.Thread(target=self._retry, name="kpibot-slack-link", daemon=True)
            self._thread.start()
        return self

    def _retry(self) -> None:
        delay = self.first_retry
        while not self._stop.wait(delay * random.uniform(1.0, 1.5)):  # noqa: S311 - spreading retries
            try:
                if self.attempt():
                    return
            except SlackRefused as exc:  # the token was revoked while we waited: say so, keep serving health
                with self._lock:
                    self._detail = str(exc)
                kpilog.event(log, "slack_refused", level=40, error=str(exc))
                return
            delay = min(self.max_retry, delay * 2)

    def stop(self) -> None:
        self._stop.set()

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

    def health(self) -> Health:
        with self._lock:
            connected, detail, attempts = self._connected, self._detail, self._attempts
        if connected and self._is_connected is not None and not self._is_connected():
            return Health(False, "unreachable", "the Socket Mode connection is down; reconnecting", attempts)
        if connected:
            return Health(True, "connected", None, attempts)
        return Health(False, "unreachable" if attempts else "connecting", detail, attempts)


def _env_seconds(name: str, default: float) -> float:
    try:
        return max(0.01, float(os.environ.get(name, default)))
    except ValueError:
        return default


# ---- a health endpoint beside Socket Mode (HTTP mode serves it from its own app) ----------


class HealthServer:
    """``GET /healthz`` and ``/livez`` on ``host:port`` from a stdlib thread (Socket Mode has
    no HTTP server of its own, and the Docker health check needs something to ask)."""

    def __init__(self, health: Callable[[], Health], mode: str, host: str, port: int):
        def answer(handler: BaseHTTPRequestHandler, with_body: bool) -> None:
            path = handler.path.split("?", 1)[0]
            if path == "/livez":
                status, body = 200, {"ok": True, "mode": mode}
            elif path == "/healthz":
                status, body = check(health(), mode)
            else:
                status, body = 404, {"error": "not found"}
            data = json.dumps(body).encode()
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            if with_body:
                handler.wfile.write(data)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                answer(self, True)

            def do_HEAD(self):  # noqa: N802
                answer(self, False)

            def log_message(self, *args) -> None:  # a probe every few seconds is not news
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="kpibot-health", daemon=True)

    def start(self) -> HealthServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

