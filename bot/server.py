"""Running the Slack app: Socket Mode, or HTTP behind uvicorn. ``serve(port)`` is `kpibot serve`.

* ``SLACK_APP_TOKEN`` set → Socket Mode (no public URL needed; outbound WebSocket).
* else ``SLACK_SIGNING_SECRET`` set → HTTP mode: ``POST /slack/events`` (slash commands,
  events and interactivity all use this one URL) and ``GET /healthz``, served by uvicorn on
  ``--port`` / ``PORT`` (default 3000). Bolt's built-in dev server is never used.
* ``SLACK_BOT_TOKEN`` is needed in both.
* Digests and alerts (``bot.schedules.scheduler``) run beside the app in the same process
  and post with the same Web API client (``KPI_SCHEDULES=0`` turns them off).

The Bolt app is synchronous (the metrics engine and matplotlib are). The ASGI endpoint reads
the body on the event loop and hands ``App.dispatch`` to a worker thread, so a request
waiting for its ``ack()`` never blocks the loop (the pitfall of Bolt's sync Starlette
adapter); ``dispatch`` returns as soon as the listener acks, while the answer is computed on
kpibot's work pool. A signed slash command goes one step further: its ack carries nothing,
so the endpoint answers 200 itself once the signature checks out and runs Bolt (which checks
it again) on a dispatch thread afterwards (``KpiBot.dispatch_acked``). Events and
interactivity take the Bolt path, whose ack Slack needs first.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import uvicorn
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot import logging as kpilog
from bot.app import KpiBot, Settings, create_bot
from bot.health import Health, HealthServer, SlackLink, SlackRefused, verify_token
from bot.health import check as health_check

log = kpilog.get_logger("kpibot.server")

EVENTS_PATH = "/slack/events"
MAX_BODY = 1_000_000  # Slack payloads are a few KB; anything this big is not from Slack
DEFAULT_PORT = 3000

SETUP_HELP = """\
kpibot serve needs Slack credentials. Missing: {missing}.

Set up the Slack app once:
  1. https://api.slack.com/apps -> Create New App -> From an app manifest -> paste manifest.yml.
  2. Install it to your workspace and copy the Bot User OAuth Token (xoxb-...):
         export SLACK_BOT_TOKEN=xoxb-...
  3. Choose how Slack reaches kpibot:
     - Socket Mode (no public URL; the manifest's default): Basic Information ->
       App-Level Tokens -> generate one with the connections:write scope:
         export SLACK_APP_TOKEN=xapp-...
     - HTTP mode: Basic Information -> Signing Secret:
         export SLACK_SIGNING_SECRET=...
       set socket_mode_enabled: false in the manifest and point its request URLs at
       https://<your-host>/slack/events (kpibot listens on --port / PORT, default 3000).
  4. Run `kpibot serve` again.

To try the questions without Slack, run `kpibot chat`.
"""


# ---- HTTP mode ---------------------------------------------------------------------------


def build_asgi(bot: KpiBot, *, path: str = EVENTS_PATH, health: Callable[[], Health] | None = None) -> Starlette:
    """The ASGI app: Slack's single request URL plus the health checks (``/healthz``: 503
    while ``health`` says Slack is unreachable; ``/livez``: the process serves)."""
    app = bot.app
    verifier = SignatureVerifier(bot.settings.signing_secret or "")

    async def slack_events(request: Request) -> Response:
        body = await _read_capped(request)
        if body is None:
            kpilog.event(log, "request_too_large", level=30, content_length=request.headers.get("content-length"))
            return JSONResponse({"error": "payload too large"}, status_code=413)
        timestamp = request.headers.get("x-slack-request-timestamp")
        if timestamp is not None and not _is_timestamp(timestamp):
            # Not from Slack; and Bolt's own check would raise on it (a 500 and a traceback).
            # (No timestamp at all goes on: Bolt answers ssl_check pings, and refuses the rest.)
            kpilog.event(log, "rejected_request", level=30, status=401, reason="no valid timestamp", bytes=len(body))
            return JSONResponse({"error": "invalid request"}, status_code=401)
        try:
            bolt_request = to_bolt_request(request, body)
            _check_shape(bolt_request.body)
        except Exception as exc:  # noqa: BLE001 - any unparsable payload is the sender's fault
            signed = _signed(verifier, body, request.headers.get("x-slack-request-timestamp", ""),
                             request.headers.get("x-slack-signature", ""))
            status = 400 if signed else 401
            kpilog.event(log, "malformed_request" if signed else "rejected_request", level=30,
                         status=status, reason=type(exc).__name__, bytes=len(body),
                         content_type=request.headers.get("content-type"))
            return JSONResponse({"error": "malformed payload" if signed else "invalid request"}, status_code=status)
        if _early_ack(bolt_request.body) and _signed(verifier, body, timestamp or "",
                                                     request.headers.get("x-slack-signature", "")):
            bot.dispatch_acked(bolt_request)
            return Response(status_code=200)
        try:
            bolt_response = await run_in_threadpool(app.dispatch, bolt_request)
        except Exception:  # noqa: BLE001 - keep serving; the id ties the 500 to the log line
            error_id = kpilog.new_error_id()
            kpilog.event(log, "dispatch_failed", level=40, exc_info=True, error_id=error_id)
            return JSONResponse({"error": "internal error", "error_id": error_id}, status_code=500)
        if bolt_response.status == 401:
            kpilog.event(log, "rejected_request", level=30, status=401, reason="signature or timestamp",
                         retry_num=request.headers.get("x-slack-retry-num"))
        return to_starlette_response(bolt_response)

    async def healthz(request: Request) -> Response:
        status, body = health_check(health() if health is not None else None, "http")
        return JSONResponse(body, status_code=status)

    async def livez(request: Request) -> Response:
        return JSONResponse({"ok": True, "mode": "http"})

    return Starlette(
        routes=[
            Route(path, slack_events, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET", "HEAD"]),
            Route("/livez", livez, methods=["GET", "HEAD"]),
        ]
    )


def _early_ack(body: dict) -> bool:
    """A signed slash command is acknowledged before Bolt sees it: its ack carries nothing
    (the answer is posted afterwards), and waiting for the listener's ``ack()`` through Bolt's
    runner (which polls every 10 ms, on a thread, under the GIL that answers being computed
    also want) is what made acks slow in a burst."""
    return isinstance(body.get("command"), str) and body.get("ssl_check") is None


_TEXT_FIELDS = ("type", "text", "user", "channel", "ts", "thread_ts", "event_ts", "channel_type", "subtype",
                "bot_id", "event_id", "command", "user_id", "channel_id", "team_id", "response_url", "trigger_id",
                "api_app_id", "enterprise_id")
_ID_OR_OBJECT = ("team", "user", "channel", "enterprise")  # a string id, or an object with one
_OBJECTS = ("event", "view", "message", "previous_message", "container", "authorizations")


def _check_shape(body, depth: int = 0) -> None:
    """Raise ValueError unless the payload has the types Bolt and the listeners rely on
    (Bolt reads e.g. ``body.get("event", {}).get(...)`` unchecked: ``"event": null`` is a 500)."""
    if not isinstance(body, dict):
        raise ValueError("the payload is not an object")
    for key in _OBJECTS:
        if key not in body:
            continue
        value = body[key]
        if key == "authorizations":
            if not isinstance(value, list) or not all(isinstance(a, dict) for a in value):
                raise ValueError("authorizations must be a list of objects")
            for item in value:
                _check_shape(item, depth + 1)
        elif not isinstance(value, dict):
            raise ValueError(f"{key} must be an object")
        elif key == "view" and not isinstance(value.get("type"), str):
            # Bolt reads body["view"]["type"] unchecked on every view payload (a KeyError, a 500)
            raise ValueError("view must have a type")
        elif depth < 3:
            _check_shape(value, depth + 1)
    for key in _TEXT_FIELDS:
        if key in body and body[key] is not None and not isinstance(body[key], str) and key not in _ID_OR_OBJECT:
            raise ValueError(f"{key} must be a string")
    for key in _ID_OR_OBJECT:
        if key in body and body[key] is not None and not isinstance(body[key], str | dict):
            raise ValueError(f"{key} must be an id or an object")


def _is_timestamp(value: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts "²" or "٣", which ``int()`` rejects or reads."""
    return value.isascii() and value.isdigit() and len(value) <= 12


def _signed(verifier: SignatureVerifier, body: bytes, timestamp: str, signature: str) -> bool:
    """Slack's signature check over the raw bytes; never raises (the SDK's decodes the body as
    UTF-8 and parses the timestamp, so a garbage request would otherwise become a 500)."""
    if not _is_timestamp(timestamp) or abs(time.time() - int(timestamp)) > 60 * 5:
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(verifier.signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


async def _read_capped(request: Request, limit: int = MAX_BODY) -> bytes | None:
    """The body, or None once it is known to exceed ``limit`` (never buffering more than that)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class HttpServer:
    """uvicorn serving :func:`build_asgi` in a background thread (tests, embedding)."""

    def __init__(self, bot: KpiBot, host: str = "127.0.0.1", port: int = 0,
                 health: Callable[[], Health] | None = None):
        self.bot = bot
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = host, self.sock.getsockname()[1]
        self.server = uvicorn.Server(_uvicorn_config(build_asgi(bot, health=health), host, self.port))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="kpibot-http", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> HttpServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.bot.close(wait=False)
        self.sock.close()

    def __enter__(self) -> HttpServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _uvicorn_config(asgi, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        asgi,
        host=host,
        port=port,
        log_config=None,  # our JSON lines, not uvicorn's formatter
        access_log=False,  # one structured line per reply instead of one per request
        server_header=False,
        lifespan="off",
        timeout_keep_alive=30,
        timeout_graceful_shutdown=10,
    )


def run_http(bot: KpiBot, host: str, port: int, health: Callable[[], Health] | None = None) -> None:
    kpilog.event(log, "serving", mode="http", host=host, port=port, path=EVENTS_PATH)
    # The event loop acks; answers being computed (charts, result handling) hold the GIL. A
    # shorter switch interval hands it back to the loop sooner, so acks stay fast in a burst.
    sys.setswitchinterval(0.001)
    server = uvicorn.Server(_uvicorn_config(build_asgi(bot, health=health), host, port))
    # uvicorn handles SIGINT/SIGTERM with a graceful shutdown, then re-raises the signal to
    # the handler it found: make that ours, so the answers already acked are finished and
    # the process exits 0 instead of dying by the default handler.
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, _note_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    finally:
        bot.close(wait=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        kpilog.event(log, "stopped", mode="http")


def _note_signal(sig, _frame) -> None:
    kpilog.event(log, "signal", signal=signal.Signals(sig).name)


# ---- Socket Mode -------------------------------------------------------------------------


class SocketModeRunner:
    """Bolt's Socket Mode handler (``slack_sdk``'s built-in WebSocket client, no extra deps).

    The listeners are the same as in HTTP mode; acks travel back over the socket. Once
    connected, the client reconnects by itself; :meth:`connected` is the WebSocket's state.
    """

    def __init__(self, bot: KpiBot, app_token: str):
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        self.bot = bot
        self.handler = SocketModeHandler(bot.app, app_token, concurrency=bot.settings.listener_threads)

    def start(self) -> SocketModeRunner:
        self.handler.client.wss_uri = None  # a retry asks for a fresh URL (the old ticket is spent)
        self.handler.connect()
        return self

    def connected(self) -> bool:
        return self.handler.client.is_connected()

    def stop(self) -> None:
        self.handler.close()
        self.bot.close(wait=True)


def run_socket_mode(bot: KpiBot, runner: SocketModeRunner, health: HealthServer | None) -> None:
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    kpilog.event(log, "serving", mode="socket", health_port=health.port if health else None)
    try:
        stop.wait()
    finally:
        if health is not None:
            health.stop()
        runner.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        kpilog.event(log, "stopped", mode="socket")


# ---- kpibot serve ------------------------------------------------------------------------


#: Seconds an idle DuckDB file stays open in a running bot (``KPI_DUCKDB_LINGER`` overrides);
#: an import in another process asks for the file and gets it as soon as the bot is idle.
SERVE_LINGER = 300.0


def serve(port: int | None = None, *, host: str | None = None) -> int:
    """Run until stopped. Returns the exit code (2 when Slack settings are missing, 1 when
    Slack refuses the token). Slack being unreachable is not a reason to stop: see
    :mod:`bot.health`."""
    kpilog.setup()
    from metrics import pauses
    from storage import database

    settings = Settings.from_env()
    mode = settings.mode()
    if mode is None:
        print(SETUP_HELP.format(missing=", ".join(settings.missing())), file=sys.stderr)
        return 2
    app_token = settings.app_token or ""
    if mode == "socket" and not app_token.startswith("xapp-"):
        print("SLACK_APP_TOKEN must be an app-level token (xapp-...), not a bot token.", file=sys.stderr)
        return 2
    database.keep_warm(SERVE_LINGER)  # serving: a question must not pay for reopening the DuckDB file
    try:
        # no auth.test inside Bolt's constructor (it would raise when Slack is down): the
        # SlackLink below verifies the token, retrying, and hands Bolt the result
        bot = create_bot(replace(settings, token_verification=False))
    except Exception as exc:  # noqa: BLE001 - e.g. a broken policy file: say so and stop
        return _startup_failed(exc)
    pauses.install()  # full garbage collections between answers, not during them
    runner = SocketModeRunner(bot, app_token) if mode == "socket" else None

    def connect() -> None:
        verify_token(bot)
        if runner is not None:
            runner.start()

    link = SlackLink(connect, is_connected=runner.connected if runner is not None else None)
    try:
        if not link.attempt():
            print(f"Slack is unreachable ({link.health().detail}); serving anyway and retrying in the "
                  "background. GET /healthz says when it is back.", file=sys.stderr)
            link.start()
    except SlackRefused as exc:
        bot.close(wait=False)
        return _startup_failed(exc)
    port = port if port is not None else int(os.environ.get("PORT") or DEFAULT_PORT)
    host = host or os.environ.get("HOST") or "0.0.0.0"  # noqa: S104 - a container listens on all interfaces
    schedules = start_schedules(bot)
    try:
        if runner is not None:
            run_socket_mode(bot, runner, _health_server(link, host, port))
        else:
            run_http(bot, host, port, health=link.health)
    finally:
        link.stop()
        if schedules is not None:
            schedules.shutdown(wait=False)
    return 0


def _startup_failed(exc: BaseException) -> int:
    message = kpilog.redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    print(f"Could not start the Slack app: {message}", file=sys.stderr)
    kpilog.event(log, "startup_failed", level=40, error=message)
    return 1


def _health_server(link: SlackLink, host: str, port: int) -> HealthServer | None:
    """Socket Mode's ``/healthz`` (for the Docker health check); without it the app still runs."""
    try:
        return HealthServer(link.health, "socket", host, port).start()
    except OSError as exc:
        kpilog.event(log, "health_server_unavailable", level=30, port=port, error=str(exc)[:200])
        return None


def start_schedules(bot: KpiBot):
    """Digests and alerts (``bot.schedules.scheduler``) beside the app; ``KPI_SCHEDULES=0`` turns them off.

    A scheduler that cannot start is logged and the app serves questions without it.
    """
    if os.environ.get("KPI_SCHEDULES", "1").lower() in ("0", "false", "no", "off"):
        return None
    try:
        from bot.schedules import scheduler
    except ImportError as exc:
        kpilog.event(log, "schedules_unavailable", level=30, error=str(exc)[:200])
        return None
    try:
        return scheduler.start(bot.client, metrics_url=bot.settings.database_url)
    except Exception:  # noqa: BLE001 - questions still work without digests
        error_id = kpilog.new_error_id()
        kpilog.event(log, "schedules_failed_to_start", level=40, exc_info=True, error_id=error_id)
        return None
