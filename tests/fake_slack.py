"""A fake Slack Web API on loopback, for end-to-end tests of anything that talks to Slack.

It speaks enough of the real protocol for ``slack_sdk`` to work unmodified: point a client
at :attr:`FakeSlack.api_url` (``SLACK_API_URL``) and every call is answered and recorded.

Served:

* ``POST /api/<method>``: ``auth.test``, ``users.info`` (tz from :attr:`FakeSlack.users`),
  ``chat.postMessage``, ``chat.postEphemeral``, ``chat.update``, ``chat.delete``,
  ``conversations.open``, ``conversations.history`` (the posts it has taken, with their
  ``metadata``), ``files.getUploadURLExternal``, ``files.completeUploadExternal`` (with or
  without a channel), ``views.open`` / ``push`` / ``update`` / ``publish``; an image block's
  ``slack_file`` must name a completed PNG upload (else ``invalid_blocks``, as Slack);
  other methods answer ``{"ok": false, "error": "unknown_method"}``. Bodies may be form or
  JSON encoded, as the SDK sends them; the bearer token is checked when ``token`` is given.
* ``POST /upload/<file_id>``: step 2 of ``files_upload_v2`` (raw bytes, kept in
  :attr:`FakeSlack.uploads`).
* ``POST /response/<key>``: ``response_url`` posts (recorded as method ``response_url``;
  make a URL with :meth:`FakeSlack.response_url`).

Socket Mode: :class:`FakeSocketMode` adds the WebSocket that ``apps.connections.open``
hands out, pushes envelopes to the SDK's client and records its acks.

Faults: :meth:`FakeSlack.fail` makes the next matching call(s) answer an HTTP status (429
with ``Retry-After``, 500 …) or ``ok: false`` with an error code. Channels in
:attr:`FakeSlack.not_member` answer ``not_in_channel`` to posts and file shares.

Waiting: :meth:`FakeSlack.wait_for` blocks on a condition variable until enough matching
calls are recorded (or raises after ``timeout``), so tests never sleep a fixed time.

Usage::

    from tests.fake_slack import FakeSlack

    with FakeSlack(token="xoxb-test") as slack:
        client = WebClient(token="xoxb-test", base_url=slack.api_url)
        client.chat_postMessage(channel="C1", text="hi")
        [call] = slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "C1")

or take the ``fake_slack`` fixture (``from tests.fake_slack import fake_slack`` in a test
module or conftest makes it available).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class Call:
    """One request the fake received, and what it answered."""

    method: str  # "chat.postMessage", "upload", "response_url", …
    path: str
    params: dict[str, Any]
    headers: dict[str, str]
    body: bytes
    status: int
    response: Any
    at: float  # time.monotonic() when it was answered
    seq: int

    @property
    def ok(self) -> bool:
        if self.status != 200:
            return False
        return self.response.get("ok", False) if isinstance(self.response, dict) else True

    @property
    def text(self) -> str:
        """Every human-readable string in the call (text, blocks, attachments), one per line."""
        out: list[str] = []
        for key in ("text", "blocks", "attachments", "initial_comment", "view"):
            _strings(self.params.get(key), out)
        return "\n".join(out)

    @property
    def blocks(self) -> list[dict]:
        value = self.params.get("blocks") or []
        return value if isinstance(value, list) else []


def _strings(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            if k not in ("type", "emoji", "verbatim", "block_id", "action_id", "value"):
                _strings(v, out)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)


@dataclass
class Fault:
    method: str
    status: int = 200
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    when: Callable[[dict[str, Any]], bool] | None = None
    used: int = 0


class FakeSlack:
    """The fake server; use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(
        self,
        *,
        token: str | None = None,
        host: str = "127.0.0.1",
        team_id: str = "T0KPI",
        bot_user_id: str = "UKPIBOT",
        bot_id: str = "BKPIBOT",
        bot_name: str = "kpibot",
        users: dict[str, str] | None = None,
        default_tz: str = "UTC",
        app_token: str | None = None,
    ):
        self.token = token
        self.app_token = app_token
        self.socket_mode: FakeSocketMode | None = None  # set by FakeSocketMode(fake)
        self.team_id, self.bot_user_id, self.bot_id, self.bot_name = team_id, bot_user_id, bot_id, bot_name
        self.users: dict[str, str] = dict(users or {})  # user id -> IANA tz
        self.default_tz = default_tz
        self.not_member: set[str] = set()
        self.members: dict[str, list[str]] = {}  # conversation id -> member ids (conversations.members)
        self.uploads: dict[str, bytes] = {}
        self.pending_files: dict[str, dict[str, Any]] = {}
        self.completed: set[str] = set()  # uploads completed (files.completeUploadExternal)
        self.not_ready: set[str] = set()  # file ids an image block may not show yet
        self._calls: list[Call] = []
        self._faults: list[Fault] = []
        self._cond = threading.Condition()
        self._seq = itertools.count(1)
        self._ts = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._server = ThreadingHTTPServer((host, 0), self._handler_class())
        self._server.daemon_threads = True
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-slack", daemon=True)

    # ---- lifecycle ---------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """What ``SLACK_API_URL`` / ``WebClient(base_url=…)`` should be."""
        return f"{self.base_url}/api/"

    def response_url(self, key: str | None = None) -> str:
        return f"{self.base_url}/response/{key or uuid.uuid4().hex[:12]}"

    def start(self) -> FakeSlack:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget calls, faults, uploads and memberships (between tests sharing one fake)."""
        with self._cond:
            self._calls.clear()
            self._faults.clear()
            self.uploads.clear()
            self.pending_files.clear()
            self.completed.clear()
            self.not_ready.clear()
            self.not_member.clear()

    # ---- faults ------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        *,
        status: int = 200,
        error: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
        when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> Fault:
        """Answer the next ``times`` calls of ``method`` (matching ``when(params)``) with a fault.

        ``status=429, retry_after=1``: rate limited; ``status=500``: server error;
        ``error="not_in_channel"``: HTTP 200 with ``ok: false``.
        """
        if status == 429 and retry_after is None:
            retry_after = 1
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        if status == 200 and error is None:
            error = "fatal_error"
        fault = Fault(method, status=status, error=error, headers=headers, times=times, when=when)
        with self._cond:
            self._faults.append(fault)
        return fault

    def _take_fault(self, method: str, params: dict[str, Any]) -> Fault | None:
        with self._cond:
            for fault in self._faults:
                if fault.method == method and fault.used < fault.times and (fault.when is None or fault.when(params)):
                    fault.used += 1
                    return fault
        return None

    # ---- inspection --------------------------------------------------------------------

    def calls(
        self,
        method: str | None = None,
        *,
        ok: bool | None = None,
        where: Callable[[Call], bool] | None = None,
    ) -> list[Call]:
        with self._cond:
            found = list(self._calls)
        return [
            c
            for c in found
            if (method is None or c.method == method)
            and (ok is None or c.ok == ok)
            and (where is None or where(c))
        ]

    def reply_to(self, response_url: str, timeout: float = 60.0) -> Call:
        """The first reply through a command's ``response_url`` other than the "Working on it…"
        notice, which a loaded machine sends first whenever an answer takes over 1.5 s."""
        key = response_url.rsplit("/", 1)[1]
        return self.wait_for("response_url", timeout=timeout,
                             where=lambda c: c.params.get("key") == key and "Working on it" not in c.text)[0]

    def wait_for(
        self,
        method: str | None = None,
        *,
        count: int = 1,
        ok: bool | None = True,
        where: Callable[[Call], bool] | None = None,
        timeout: float = 60.0,
    ) -> list[Call]:
        """Block until at least ``count`` matching calls are recorded; return them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self.calls(method, ok=ok, where=where)
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(c.method, c.status, c.params.get("channel") or c.params.get("channel_id")) for c in self._calls]
                    raise AssertionError(
                        f"waited {timeout}s for {count} x {method or 'any call'}; found {len(found)}. "
                        f"Recorded: {seen[-30:]}"
                    )
                self._cond.wait(left)

    def in_channel(self, channel: str) -> Callable[[Call], bool]:
        """A ``where`` matching calls aimed at ``channel``."""
        return lambda c: (c.params.get("channel") or c.params.get("channel_id")) == channel

    # ---- the HTTP side -----------------------------------------------------------------

    def _record(self, method, path, params, headers, body, status, response) -> Call:
        with self._cond:
            call = Call(method, path, params, headers, body, status, response, time.monotonic(), next(self._seq))
            self._calls.append(call)
            self._cond.notify_all()
        return call

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - quiet
                pass

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fake._dispatch(self, urlsplit(self.path), body)

            def do_GET(self):  # noqa: N802
                fake._dispatch(self, urlsplit(self.path), b"")

        return Handler

    def _dispatch(self, handler: BaseHTTPRequestHandler, url, body: bytes) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        path = url.path
        if path.startswith("/api/"):
            method = path[len("/api/"):]
            params = _parse(body, headers.get("content-type", ""), url.query)
        elif path.startswith("/upload/"):
            method, params = "upload", {"file_id": path.rsplit("/", 1)[1], "bytes": len(body)}
        elif path.startswith("/response/"):
            method = "response_url"
            params = _parse(body, headers.get("content-type", "application/json"), "")
            params["key"] = path.rsplit("/", 1)[1]
        else:
            self._record("unknown", path, {}, headers, body, 404, None)
            self._send(handler, 404, {"ok": False, "error": "not_found"}, {})
            return
        fault = self._take_fault(method, params)
        if fault is not None:
            if fault.status != 200:
                response: Any = {"ok": False, "error": fault.error or "ratelimited"} if method not in ("upload", "response_url") else "error"
                self._record(method, path, params, headers, body, fault.status, response)
                self._send(handler, fault.status, response, fault.headers)
                return
            response = {"ok": False, "error": fault.error}
            self._record(method, path, params, headers, body, 200, response)
            self._send(handler, 200, response, fault.headers)
            return
        expected = self.app_token if method == "apps.connections.open" else self.token
        if method not in ("upload", "response_url") and expected is not None:
            if headers.get("authorization") != f"Bearer {expected}" and params.get("token") != expected:
                response = {"ok": False, "error": "invalid_auth"}
                self._record(method, path, params, headers, body, 200, response)
                self._send(handler, 200, response, {})
                return
        status, response = self._answer(method, params, body)
        # recorded before the answer goes out: whoever got the answer finds the record
        self._record(method, path, params, headers, body, status, response)
        self._send(handler, status, response, {})

    def _send(self, handler, status: int, response: Any, headers: dict[str, str]) -> None:
        payload = response.encode() if isinstance(response, str) else json.dumps(response).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "text/plain" if isinstance(response, str) else "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        for k, v in headers.items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(payload)

    def _next_ts(self) -> str:
        return f"{1_790_000_000 + next(self._ts)}.000100"

    def _answer(self, method: str, p: dict[str, Any], body: bytes) -> tuple[int, Any]:
        channel = p.get("channel") or p.get("channel_id")
        if method == "auth.test":
            return 200, {
                "ok": True, "url": "https://fake.slack.test/", "team": "Fake", "user": self.bot_name,
                "team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": self.bot_id, "is_enterprise_install": False,
            }
        if method == "users.info":
            user = p.get("user", "")
            tz = self.users.get(user, self.default_tz)
            return 200, {"ok": True, "user": {"id": user, "name": user.lower(), "tz": tz, "tz_offset": 0, "is_bot": False}}
        if method in ("chat.postMessage", "chat.postEphemeral", "chat.update") and not self._files_ready(p):
            return 200, {"ok": False, "error": "invalid_blocks", "errors": ["invalid slack file"]}
        if method.startswith("views."):
            return self._view(method, p)
        if method in ("chat.postMessage", "chat.postEphemeral"):
            if not channel:
                return 200, {"ok": False, "error": "channel_not_found"}
            if channel in self.not_member:
                return 200, {"ok": False, "error": "not_in_channel"}
            if not p.get("text") and not p.get("blocks"):
                return 200, {"ok": False, "error": "no_text"}
            ts = self._next_ts()
            if method == "chat.postEphemeral":
                return 200, {"ok": True, "message_ts": ts}
            message = {"type": "message", "text": p.get("text", ""), "user": self.bot_user_id, "bot_id": self.bot_id, "ts": ts}
            if p.get("thread_ts"):
                message["thread_ts"] = p["thread_ts"]
            return 200, {"ok": True, "channel": channel, "ts": ts, "message": message}
        if method == "chat.update":
            if not channel or not p.get("ts"):
                return 200, {"ok": False, "error": "message_not_found"}
            return 200, {"ok": True, "channel": channel, "ts": p["ts"], "text": p.get("text", "")}
        if method == "chat.delete":
            return 200, {"ok": True, "channel": channel, "ts": p.get("ts")}
        if method == "apps.connections.open":
            if self.socket_mode is None:
                return 200, {"ok": False, "error": "socket_mode_not_enabled"}
            return 200, {"ok": True, "url": self.socket_mode.url}
        if method == "conversations.members":
            if channel not in self.members:
                return 200, {"ok": False, "error": "channel_not_found"}
            return 200, {"ok": True, "members": list(self.members[channel]), "response_metadata": {"next_cursor": ""}}
        if method == "conversations.open":
            return 200, {"ok": True, "channel": {"id": "D" + str(p.get("users", "U"))[1:]}}
        if method == "files.getUploadURLExternal":
            if not p.get("filename") or not str(p.get("length", "")).isdigit():
                return 200, {"ok": False, "error": "invalid_arguments"}
            file_id = f"F{next(self._file_ids):08d}"
            with self._cond:
                self.pending_files[file_id] = {"filename": p["filename"], "length": int(p["length"]), "alt_txt": p.get("alt_txt")}
            return 200, {"ok": True, "upload_url": f"{self.base_url}/upload/{file_id}", "file_id": file_id}
        if method == "upload":
            file_id = p["file_id"]
            if file_id not in self.pending_files:
                return 404, "unknown upload"
            with self._cond:
                self.uploads[file_id] = body
            return 200, f"OK - {len(body)}"
        if method == "files.completeUploadExternal":
            files = p.get("files") or []
            if isinstance(files, str):
                files = json.loads(files)
            if not files or any(f.get("id") not in self.uploads for f in files):
                return 200, {"ok": False, "error": "file_not_found"}
            if channel in self.not_member:
                return 200, {"ok": False, "error": "not_in_channel"}
            with self._cond:
                self.completed.update(f["id"] for f in files if self.uploads[f["id"]].startswith(PNG_MAGIC))
            out = [
                {"id": f["id"], "title": f.get("title"), "name": self.pending_files[f["id"]]["filename"],
                 "mimetype": "image/png" if self.uploads[f["id"]].startswith(PNG_MAGIC) else "application/octet-stream",
                 "size": len(self.uploads[f["id"]])}
                for f in files
            ]
            return 200, {"ok": True, "files": out}
        if method == "conversations.history":
            return 200, {"ok": True, "messages": self._history(channel, p), "has_more": False}
        if method == "response_url":
            return 200, "ok"
        return 200, {"ok": False, "error": "unknown_method"}

    def _files_ready(self, p: dict[str, Any]) -> bool:
        """An image block's ``slack_file`` must name a file whose upload was completed (and is a
        PNG), as Slack checks; ``not_ready`` holds ids Slack is "still processing"."""
        blocks = p.get("blocks")
        if isinstance(blocks, str):
            try:
                blocks = json.loads(blocks)
            except ValueError:
                return True
        for block in blocks or []:
            if isinstance(block, dict) and block.get("type") == "image" and "slack_file" in block:
                file_id = (block["slack_file"] or {}).get("id")
                if file_id not in self.completed or file_id in self.not_ready:
                    return False
                if not block.get("alt_text"):
                    return False
        return True

    def _view(self, method: str, p: dict[str, Any]) -> tuple[int, Any]:
        """``views.open`` / ``push`` (a ``trigger_id``), ``views.update`` (a ``view_id``),
        ``views.publish`` (a ``user_id``): the view is kept and returned with an id."""
        view = p.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
            return 200, {"ok": False, "error": "invalid_arguments"}
        if len(view.get("blocks") or []) > 100:
            return 200, {"ok": False, "error": "invalid_blocks"}
        if method in ("views.open", "views.push") and not p.get("trigger_id"):
            return 200, {"ok": False, "error": "invalid_trigger_id"}
        if method == "views.publish" and not p.get("user_id"):
            return 200, {"ok": False, "error": "invalid_arguments"}
        if method == "views.update" and not (p.get("view_id") or p.get("external_id")):
            return 200, {"ok": False, "error": "not_found"}
        view_id = p.get("view_id") or f"V{next(self._file_ids):08d}"
        return 200, {"ok": True, "view": {**view, "id": view_id, "state": {"values": {}}}}

    def _history(self, channel: str | None, p: dict[str, Any]) -> list[dict[str, Any]]:
        """Top-level messages posted to ``channel`` (newest first), with their metadata when
        ``include_all_metadata`` is asked for, as Slack's ``conversations.history`` returns them."""
        oldest = float(p.get("oldest") or 0)
        with_metadata = str(p.get("include_all_metadata", "")).lower() in ("1", "true")
        out = []
        for c in self.calls("chat.postMessage", ok=True, where=lambda c: c.params.get("channel") == channel):
            if c.params.get("thread_ts") or float(c.response["ts"]) < oldest:
                continue
            message = {"type": "message", "ts": c.response["ts"], "text": c.params.get("text", ""),
                       "bot_id": self.bot_id}
            metadata = c.params.get("metadata")
            if isinstance(metadata, str):
                metadata = json.loads(metadata)
            if with_metadata and metadata:
                message["metadata"] = metadata
            out.append(message)
        return list(reversed(out))[: int(p.get("limit") or 100)]


class FakeSocketMode:
    """Slack's Socket Mode WebSocket on loopback, attached to a :class:`FakeSlack`.

    ``apps.connections.open`` (with the app token) hands out :attr:`url`; the SDK's built-in
    client connects (plain ``ws://``: it uses TLS only on port 443). :meth:`send` pushes an
    envelope (``slash_commands``, ``events_api``, ``interactive``) and returns its
    ``envelope_id``; :meth:`wait_ack` waits for the client's acknowledgement. Pings are
    answered with pongs.
    """

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, slack: FakeSlack):
        import socket

        self.slack = slack
        slack.socket_mode = self
        self._listener = socket.create_server((slack.host, 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"ws://{slack.host}:{self.port}/link/?ticket=fake"
        self._conn = None
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self.acks: dict[str, tuple[float, dict[str, Any]]] = {}  # envelope_id -> (time, message)
        self.sent: dict[str, float] = {}
        self._ids = itertools.count(1)
        self._closed = False
        threading.Thread(target=self._accept, name="fake-socket-mode", daemon=True).start()

    def connected(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._conn is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no Socket Mode client connected")
                self._cond.wait(left)

    def send(self, kind: str, payload: dict[str, Any], *, retry_attempt: int = 0,
             accepts_response_payload: bool | None = None, envelope_id: str | None = None) -> str:
        envelope_id = envelope_id or f"env-{next(self._ids):06d}"
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api" if accepts_response_payload is None
            else accepts_response_payload,
        }
        if kind == "events_api":
            envelope.update(retry_attempt=retry_attempt, retry_reason="timeout" if retry_attempt else "")
        self.connected()
        with self._cond:
            self.sent.setdefault(envelope_id, time.monotonic())
        self._frame(0x1, json.dumps(envelope).encode())
        return envelope_id

    def wait_ack(self, envelope_id: str, timeout: float = 60.0) -> tuple[float, dict[str, Any]]:
        """(seconds from send to ack, the ack message)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while envelope_id not in self.acks:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no ack for {envelope_id}")
                self._cond.wait(left)
            at, message = self.acks[envelope_id]
            return at - self.sent[envelope_id], message

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass

    # ---- the protocol (RFC 6455, just what the SDK uses) -------------------------------

    def _accept(self) -> None:
        import base64
        import hashlib

        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(1024)
                if not chunk:
                    break
                request += chunk
            key = ""
            for line in request.decode("latin-1").split("\r\n"):
                if line.lower().startswith("sec-websocket-key:"):
                    key = line.split(":", 1)[1].strip()
            accept = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()  # noqa: S324
            conn.sendall(
                ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode()
            )
            with self._cond:
                self._conn = conn
                self._cond.notify_all()
            self._frame(0x1, json.dumps({"type": "hello", "num_connections": 1}).encode())
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _frame(self, opcode: int, data: bytes) -> None:
        import struct

        n = len(data)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([n])
        elif n < 65536:
            head += bytes([126]) + struct.pack("!H", n)
        else:
            head += bytes([127]) + struct.pack("!Q", n)
        with self._send_lock:
            self._conn.sendall(head + data)

    def _read(self, conn) -> None:
        import struct

        def exactly(n: int) -> bytes:
            buf = b""
            while len(buf) < n:
                chunk = conn.recv(n - len(buf))
                if not chunk:
                    raise ConnectionError
                buf += chunk
            return buf

        try:
            while True:
                b1, b2 = exactly(2)
                opcode, masked, n = b1 & 0x0F, b2 & 0x80, b2 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", exactly(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", exactly(8))[0]
                mask = exactly(4) if masked else b"\0\0\0\0"
                data = bytes(c ^ mask[i % 4] for i, c in enumerate(exactly(n)))
                if opcode == 0x9:
                    self._frame(0xA, data)
                elif opcode == 0x8:
                    return
                elif opcode == 0x1:
                    message = json.loads(data)
                    if "envelope_id" in message:
                        with self._cond:
                            self.acks.setdefault(message["envelope_id"], (time.monotonic(), message))
                            self._cond.notify_all()
        except (ConnectionError, OSError, ValueError):
            return


def _parse(body: bytes, content_type: str, query: str) -> dict[str, Any]:
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    if not body:
        return params
    if "json" in content_type:
        data = json.loads(body)
        if isinstance(data, dict):
            params.update(data)
        return params
    if "multipart/form-data" in content_type:
        return params  # files.upload v1; not used by files_upload_v2
    for key, value in parse_qsl(body.decode("utf-8"), keep_blank_values=True):
        if key in ("blocks", "attachments", "files", "view") and value[:1] in "[{":
            try:
                params[key] = json.loads(value)
                continue
            except ValueError:
                pass
        params[key] = value
    return params


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A started :class:`FakeSlack` (token ``xoxb-test``), stopped after the test."""
    with FakeSlack(token="xoxb-test") as slack:
        yield slack
