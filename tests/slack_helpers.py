"""Helpers for driving the Slack app as Slack does: signed requests and a tiny metrics DB.

``SlackSender`` signs every request exactly like Slack (``v0=`` + HMAC-SHA256 of
``v0:{timestamp}:{body}`` with the signing secret, in ``X-Slack-Signature`` and
``X-Slack-Request-Timestamp``) and times how long the app takes to answer (the ack).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import itertools
import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from sqlalchemy import insert

from storage import database
from storage.schema import survey_responses

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-1111-2222-testtoken"
TEAM_ID = "T0KPI"

# ---- the metrics fixture ---------------------------------------------------------------
#
# NPS answers in 2026-Q3 (Jul-Sep), by touchpoint:
#   onboarding: 10, 10, 9, 8, 3 -> 3 promoters, 1 detractor  -> 100 * (3 - 1) / 5 = 40.0
#   support:     9, 10, 7, 6, 5 -> 2 promoters, 2 detractors -> 100 * (2 - 2) / 5 =  0.0
#   all ten:                       5 promoters, 3 detractors -> 100 * (5 - 3) / 10 = 20.0
# NPS answers in 2026-Q2 (the previous quarter):
#   onboarding: 10, 6 -> 0.0;  support: 9, 6 -> 0.0;  all four: 2 - 2 -> 0.0
# So `nps 2026-Q3` = 20.0, up 20.0 points on Q2 (good: higher is better), n = 10.
NPS_Q3 = {"onboarding": [10, 10, 9, 8, 3], "support": [9, 10, 7, 6, 5]}
NPS_Q2 = {"onboarding": [10, 6], "support": [9, 6]}
QUESTION = "nps 2026-Q3"
EXPECTED_NPS = "20.0"


def load_fixture(url: str) -> None:
    """Fill a fresh metrics database at ``url`` with the survey answers above."""
    engine = database.get_engine(url)
    rows = []
    counter = itertools.count()
    for quarter_start, answers in (("2026-07", NPS_Q3), ("2026-04", NPS_Q2)):
        year, month = map(int, quarter_start.split("-"))
        for touchpoint, scores in answers.items():
            for score in scores:
                k = next(counter)
                rows.append(
                    {
                        "response_id": f"r{k}",
                        "customer_id": f"c{k % 3}",
                        "responded_at": datetime(year, month + k % 3, 1 + k % 27, 12, 0),
                        "survey": "nps",
                        "score": score,
                        "touchpoint": touchpoint,
                        "comment": None,
                    }
                )
    with engine.begin() as conn:
        conn.execute(insert(survey_responses), rows)


# ---- signed requests ---------------------------------------------------------------------


def signature(body: bytes, timestamp: str, secret: str = SIGNING_SECRET) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(body: bytes, *, timestamp: int | None = None, secret: str = SIGNING_SECRET) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature(body, ts, secret)}


@dataclass
class Response:
    status: int
    body: bytes
    elapsed: float  # seconds from sending to the whole answer read

    def json(self) -> Any:
        return json.loads(self.body)


def http_request(url: str, method: str = "GET", body: bytes = b"", headers: dict[str, str] | None = None,
                 timeout: float = 60.0) -> Response:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        started = time.perf_counter()
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, data, time.perf_counter() - started)
    finally:
        conn.close()


class SlackSender:
    """Sends slash commands and events to the app at ``base_url`` the way Slack does."""

    def __init__(self, base_url: str, response_url_maker, secret: str = SIGNING_SECRET, path: str = "/slack/events"):
        self.url = base_url.rstrip("/") + path
        self.response_url = response_url_maker
        self.secret = secret
        self._ids = itertools.count(1)

    def post(self, body: bytes, content_type: str, *, timestamp: int | None = None, secret: str | None = None,
             extra: dict[str, str] | None = None, sign: bool = True) -> Response:
        headers = {"Content-Type": content_type}
        if sign:
            headers.update(signed_headers(body, timestamp=timestamp, secret=secret or self.secret))
        headers.update(extra or {})
        return http_request(self.url, "POST", body, headers)

    def command(self, text: str, *, channel: str = "C0GENERAL", user: str = "U0ALICE", command: str = "/kpi",
                response_key: str | None = None, channel_name: str | None = None,
                response_url: str | None = None, **kwargs) -> tuple[Response, str]:
        """A slash command; returns the HTTP response and the ``response_url`` it carried.
        ``channel_name`` as Slack sends it: ``directmessage``, ``mpdm-…`` for a group DM."""
        response_url = response_url or self.response_url(response_key)
        form = {
            "token": "legacy-verification-token",
            "team_id": TEAM_ID,
            "team_domain": "fake",
            "channel_id": channel,
            "channel_name": channel_name or channel.lower(),
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": "A0KPI",
            "is_enterprise_install": "false",
            "response_url": response_url,
            # unique like Slack's: the bot answers a trigger_id (and an event_id) once, in a
            # store that outlives one app (the state database, Redis)
            "trigger_id": f"{next(self._ids)}.{uuid.uuid4().hex[:12]}",
        }
        body = urlencode(form).encode()
        return self.post(body, "application/x-www-form-urlencoded", **kwargs), response_url

    def event(self, event: dict[str, Any], *, event_id: str | None = None, retry_num: int | None = None,
              **kwargs) -> tuple[Response, str]:
        """An Events API delivery (``event_callback``); returns the response and the event id."""
        event_id = event_id or f"Ev{next(self._ids):08d}{uuid.uuid4().hex[:8].upper()}"
        envelope = {
            "token": "legacy-verification-token",
            "team_id": TEAM_ID,
            "api_app_id": "A0KPI",
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM_ID, "user_id": "UKPIBOT", "is_bot": True, "enterprise_id": None,
                                "is_enterprise_install": False}],
            "is_ext_shared_channel": False,
        }
        extra = dict(kwargs.pop("extra", None) or {})
        if retry_num:
            extra.update({"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"})
        body = json.dumps(envelope).encode()
        return self.post(body, "application/json", extra=extra, **kwargs), event_id


    def interactive(self, payload: dict[str, Any], **kwargs) -> Response:
        """An interactivity request (``block_actions``, ``view_submission``, ``shortcut``,
        ``message_action``): form-encoded ``payload=<json>``, signed, as Slack sends it."""
        payload = {"team": {"id": TEAM_ID, "domain": "fake"}, "api_app_id": "A0KPI", "token": "legacy-verification-token",
                   "is_enterprise_install": False, **payload}
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return self.post(body, "application/x-www-form-urlencoded", **kwargs)

    def click(self, message: dict[str, Any], action: dict[str, Any], *, channel: str, user: str = "U0ALICE",
              **kwargs) -> Response:
        """A click on ``action`` (one element of ``message``'s blocks) in the message Slack holds."""
        element = dict(action)
        if element.get("type") == "static_select":
            element["selected_option"] = element.pop("selected")
            element.pop("options", None)
        element.update(block_id=action.get("block_id", "answer_actions"), action_ts=f"{time.time():.6f}")
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "team_id": TEAM_ID},
            "container": {"type": "message", "message_ts": message["ts"], "channel_id": channel,
                          "is_ephemeral": False},
            "trigger_id": f"{next(self._ids)}.{uuid.uuid4().hex[:12]}",
            "channel": {"id": channel, "name": channel.lower()},
            "message": message,
            "response_url": self.response_url(None),
            "actions": [element],
        }
        return self.interactive(payload, **kwargs)


def mention(text: str, *, channel: str, ts: str, user: str = "U0ALICE", thread_ts: str | None = None) -> dict:
    event = {"type": "app_mention", "user": user, "text": text, "ts": ts, "channel": channel, "event_ts": ts,
             "team": TEAM_ID}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def direct_message(text: str, *, channel: str, ts: str, user: str = "U0ALICE", **extra) -> dict:
    return {"type": "message", "channel_type": "im", "user": user, "text": text, "ts": ts, "channel": channel,
            "event_ts": ts, "team": TEAM_ID, **extra}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]
