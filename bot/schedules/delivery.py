"""Exactly-once posting: claim a key in the delivery log, post, record how it went.

Every message kpibot posts on its own is a row in ``deliveries`` with a UNIQUE ``key``
(``digest:3:2026-03-30T07:00:00Z``, ``alert:5::2:fire`` …). The life of a row::

    claimed ──► sending ──► posted
       │           │
       │           └──► failed ──(next tick: compare-and-set back to claimed)──► …
       │                  └──► gave_up (permanent error or past the grace window) ──► reported
       └── stale (the process died before posting) ──► claimed again by a live process
    sending, stale ──► unknown (maybe posted: reported, never re-posted)

Only the process whose INSERT created the row (or whose compare-and-set UPDATE retook it)
posts, so a restart, a retry or a second scheduler never posts a slot twice.

A process killed mid-post leaves its row in ``sending``. Slack's ``chat.postMessage`` has
no idempotency key, so every top-level post carries the delivery key in its message
``metadata`` (``event_type: kpibot_delivery``). After ``Config.stale_sending`` (3 minutes)
the next housekeeping pass looks for that key in the channel's latest messages
(``conversations.history`` with ``include_all_metadata``): found, the row is marked posted;
not found, or the history cannot be read, it is posted again (marked late): at least once,
never silently lost. A file upload (a digest with its chart) cannot carry metadata: if the
process died during one, the retry may post it a second time.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy import Engine, RowMapping, select, update

from bot import audit, mrkdwn
from bot.logging import event, get_logger
from storage import database
from storage.state import deliveries, insert_unique

from .clock import naive_utc

log = get_logger("kpibot.schedules")

#: Errors that the same call will keep getting: no point retrying the same channel.
CHANNEL_ERRORS = {
    "channel_not_found", "not_in_channel", "is_archived", "restricted_action",
    "ekm_access_denied", "team_access_not_granted", "cannot_reply_to_message",
}
PERMANENT_ERRORS = CHANNEL_ERRORS | {
    "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
    "no_permission", "missing_scope", "msg_too_long", "invalid_blocks", "too_many_attachments",
    "file_uploads_disabled", "message_not_found", "cant_update_message", "edit_window_closed",
    "invalid_arguments",
}


#: ``metadata.event_type`` of every top-level scheduled post; ``event_payload.key`` is its delivery key.
METADATA_TYPE = "kpibot_delivery"
HISTORY_LIMIT = 200  # latest messages searched for an interrupted delivery's key

#: Upload errors after which the message is still posted, without its chart.
UPLOAD_ONLY_ERRORS = {"missing_scope", "file_uploads_disabled", "no_permission", "not_allowed_token_type"}


def _blocks(op: Op) -> list[dict[str, Any]]:
    """The text as one escaped section, then the op's buttons (if any)."""
    text = mrkdwn.escape(op.text)
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}]
    if op.actions:
        blocks.append({"type": "actions", "block_id": "alert_actions", "elements": op.actions[:25]})
    return blocks


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Op:
    """One Slack call of a delivery."""

    action: str  # post | update | upload
    channel: str
    text: str
    ts: str | None = None  # the message to update
    thread_ts: str | None = None
    thread_of: int | None = None  # reply in the thread of this earlier op's message
    file: bytes | None = field(default=None, repr=False)
    filename: str | None = None
    title: str | None = None
    # buttons under the text (an alert's Acknowledge / Snooze …); [] : none (clears old ones on
    # an update), None: a plain text message as before
    actions: list[dict[str, Any]] | None = None
    # a post's own Block Kit (escaped already); an image block whose slack_file id is "$chart"
    # shows ``file``, uploaded first without a channel (dropped when there is no file)
    blocks: list[dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("file")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Op:
        return cls(**{k: v for k, v in data.items() if k != "file"})


@dataclass
class Failure:
    reason: str
    permanent: bool = False
    channel_problem: bool = False  # the channel itself cannot be posted to


def explain(exc: BaseException) -> Failure:
    """A short, human reason for a failed delivery, and whether retrying can help."""
    if isinstance(exc, SlackApiError):
        code = exc.response.get("error") if exc.response is not None else None
        status = getattr(exc.response, "status_code", None)
        code = code or f"HTTP {status}"
        text = f"Slack answered `{code}`" + (f" (HTTP {status})" if status and status != 200 else "")
        return Failure(text, code in PERMANENT_ERRORS, code in CHANNEL_ERRORS)
    if isinstance(exc, SlackClientError):
        return Failure(f"Slack request failed: {str(exc)[:160]}")
    if isinstance(exc, database.DatabaseError):
        return Failure(str(exc)[:200])
    if isinstance(exc, OSError):
        return Failure(f"Slack could not be reached ({type(exc).__name__}: {str(exc)[:120]})")
    return Failure(f"{type(exc).__name__}: {str(exc)[:160]}")


@dataclass
class Sent:
    ok: bool
    ts: str | None = None  # the first message posted
    failure: Failure | None = None


class Outbox:
    """Claims, posts and records deliveries for one process."""

    def __init__(self, engine: Engine, client: WebClient | None, *, me: str | None = None):
        self.engine = engine
        self.client = client
        self.me = me or worker_id()

    # ---- claiming -----------------------------------------------------------------------

    def claim(
        self,
        key: str,
        *,
        now: datetime,
        kind: str,
        channel_id: str,
        ref_id: int | None = None,
        segment: str | None = None,
        slot: datetime | None = None,
        owner: str | None = None,
        payload: dict[str, Any] | None = None,
        status: str = "claimed",
        reason: str | None = None,
    ) -> int | None:
        """Insert the key; the delivery id if this process now owns it, else None."""
        now = naive_utc(now)
        values = {
            "key": key,
            "kind": kind,
            "ref_id": ref_id,
            "segment": segment,
            "slot": naive_utc(slot) if slot else None,
            "channel_id": channel_id,
            "owner": owner,
            "status": status,
            "attempts": 0,
            "reason": reason,
            "payload": json.dumps(payload) if payload is not None else None,
            "claimed_by": self.me,
            "claimed_at": now,
            "updated_at": now,
        }
        with self.engine.begin() as conn:
            return insert_unique(conn, deliveries, values)

    def retake(self, row: RowMapping, now: datetime) -> bool:
        """Compare-and-set a failed or abandoned row back to ``claimed`` by this process."""
        now = naive_utc(now)
        with self.engine.begin() as conn:
            done = conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.id == row["id"],
                    deliveries.c.status == row["status"],
                    deliveries.c.attempts == row["attempts"],
                    deliveries.c.claimed_by == row["claimed_by"],
                )
                .values(status="claimed", claimed_by=self.me, claimed_at=now, updated_at=now)
            )
        return done.rowcount == 1

    def existing(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        with self.engine.connect() as conn:
            rows = conn.execute(select(deliveries.c.key).where(deliveries.c.key.in_(list(keys))))
            return {r[0] for r in rows}

    def get(self, delivery_id: int) -> RowMapping:
        with self.engine.connect() as conn:
            return conn.execute(select(deliveries).where(deliveries.c.id == delivery_id)).mappings().one()

    def by_key(self, key: str) -> RowMapping | None:
        with self.engine.connect() as conn:
            return conn.execute(select(deliveries).where(deliveries.c.key == key)).mappings().first()

    # ---- recording ----------------------------------------------------------------------

    def _set(self, delivery_id: int, *, now: datetime, expect: str | None = None, **values) -> bool:
        values["updated_at"] = naive_utc(now)
        stmt = update(deliveries).where(deliveries.c.id == delivery_id)
        if expect is not None:
            stmt = stmt.where(deliveries.c.status == expect, deliveries.c.claimed_by == self.me)
        with self.engine.begin() as conn:
            return conn.execute(stmt.values(**values)).rowcount == 1

    def mark(self, delivery_id: int, status: str, *, now: datetime, expect: str | None = None, **values) -> bool:
        return self._set(delivery_id, now=now, expect=expect, status=status, **values)

    def fail(self, delivery_id: int, failure: Failure, *, now: datetime, give_up: bool = False) -> None:
        """Record a failure before anything was posted (building the message failed)."""
        row = self.get(delivery_id)
        status = "gave_up" if give_up or failure.permanent else "failed"
        self._set(delivery_id, now=now, status=status, reason=failure.reason, attempts=row["attempts"] + 1)
        event(log, "delivery_failed", level=40 if status == "gave_up" else 30, key=row["key"],
              reason=failure.reason, status=status, attempts=row["attempts"] + 1)
        audit.record_delivery(kind=row["kind"], channel_id=row["channel_id"], ref_id=row["ref_id"],
                              outcome=audit.FAILED, user_id=row["owner"], detail=f"{status}: {failure.reason}")

    # ---- posting ------------------------------------------------------------------------

    def send(self, delivery_id: int, ops: list[Op], *, now: datetime) -> Sent:
        """Post ``ops`` for a delivery this process has claimed; record the outcome."""
        if self.client is None:
            raise RuntimeError("no Slack client configured")
        if not self._set(delivery_id, now=now, expect="claimed", status="sending"):
            return Sent(False, failure=Failure("claimed by another process"))
        started = time.monotonic()
        first_ts: str | None = None
        done: list[str | None] = []
        key = self.get(delivery_id)["key"]
        try:
            for op in ops:
                ts = self._call(op, done, key)
                done.append(ts)
                if first_ts is None and op.action in ("post", "upload"):
                    first_ts = ts
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, none escapes silently
            failure = explain(exc)
            row = self.get(delivery_id)
            status = "gave_up" if failure.permanent else "failed"
            self._set(delivery_id, now=now, status=status, reason=failure.reason,
                      attempts=row["attempts"] + 1, message_ts=first_ts)
            event(log, "delivery_failed", level=40 if failure.permanent else 30, key=row["key"],
                  channel=row["channel_id"], reason=failure.reason, status=status,
                  attempts=row["attempts"] + 1)
            audit.record_delivery(kind=row["kind"], channel_id=row["channel_id"], ref_id=row["ref_id"],
                                  outcome=audit.FAILED, user_id=row["owner"], detail=f"{status}: {failure.reason}",
                                  elapsed_ms=(time.monotonic() - started) * 1000)
            return Sent(False, first_ts, failure)
        row = self.get(delivery_id)
        self._set(delivery_id, now=now, status="posted", message_ts=first_ts, posted_at=naive_utc(now),
                  attempts=row["attempts"] + 1)
        event(log, "delivered", key=row["key"], channel=row["channel_id"], ts=first_ts,
              attempts=row["attempts"] + 1)
        audit.record_delivery(kind=row["kind"], channel_id=row["channel_id"], ref_id=row["ref_id"],
                              outcome=audit.DELIVERED, user_id=row["owner"],
                              elapsed_ms=(time.monotonic() - started) * 1000)
        return Sent(True, first_ts)

    def _call(self, op: Op, done: list[str | None], key: str | None = None) -> str | None:
        client = self.client
        assert client is not None
        thread_ts = op.thread_ts
        if op.thread_of is not None:
            thread_ts = done[op.thread_of]
        if op.action == "post":
            # the one place every scheduled message is escaped (digest lines, alert titles, segments)
            kwargs: dict[str, Any] = {"channel": op.channel, "text": mrkdwn.escape(op.text), "unfurl_links": False}
            if op.actions is not None:
                kwargs["blocks"] = _blocks(op)
            if op.blocks is not None:
                kwargs["blocks"] = self._with_chart(op)
            if thread_ts:
                kwargs["thread_ts"] = thread_ts
            elif key:  # found again after a crash mid-post (see the module docstring)
                kwargs["metadata"] = {"event_type": METADATA_TYPE, "event_payload": {"key": key}}
            return self._post(kwargs)["ts"]
        if op.action == "update":
            assert op.ts is not None, "an update names the message it changes"
            blocks = _blocks(op) if op.actions is not None else None
            client.chat_update(channel=op.channel, ts=op.ts, text=mrkdwn.escape(op.text), blocks=blocks)
            return op.ts
        if op.action == "upload":
            try:
                response = client.files_upload_v2(
                    channel=op.channel,
                    file=op.file,
                    filename=op.filename or "chart.png",
                    title=mrkdwn.plain(op.title),
                    initial_comment=mrkdwn.escape(op.text),
                    thread_ts=thread_ts,
                )
            except SlackApiError as exc:
                code = exc.response.get("error") if exc.response is not None else None
                if code not in UPLOAD_ONLY_ERRORS:
                    raise
                # The text matters more than the chart: post it alone, and say why.
                event(log, "chart_not_attached", level=30, channel=op.channel, error=code)
                note = f"\n_(The chart could not be attached: Slack answered `{code}`; the app needs the files:write scope.)_"
                text_only = Op("post", op.channel, op.text + note, thread_ts=thread_ts)
                return self._call(text_only, done, key)
            return _share_ts(response, op.channel)
        raise ValueError(op.action)

    def _with_chart(self, op: Op) -> list[dict[str, Any]]:
        """The op's blocks with its chart uploaded and shown, or without the image if it cannot be."""
        assert self.client is not None and op.blocks is not None
        file_id, note = None, None
        if op.file is not None:
            try:
                done = self.client.files_upload_v2(file=op.file, filename=op.filename or "chart.png",
                                                   title=mrkdwn.plain(op.title))
                files = done.get("files") or []
                file_id = files[0].get("id") if files else None
            except SlackApiError as exc:
                code = exc.response.get("error") if exc.response is not None else None
                if code not in UPLOAD_ONLY_ERRORS:
                    raise
                event(log, "chart_not_attached", level=30, channel=op.channel, error=code)
                note = (f"_(The chart could not be attached: Slack answered `{code}`; "
                        "the app needs the files:write scope.)_")
        out: list[dict[str, Any]] = []
        for block in op.blocks:
            if block.get("type") == "image" and (block.get("slack_file") or {}).get("id") == "$chart":
                if file_id:
                    out.append({**block, "slack_file": {"id": file_id}})
                elif note:
                    out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
                continue
            out.append(block)
        return out

    def _post(self, kwargs: dict[str, Any]):
        """chat.postMessage, waiting briefly while Slack still processes a just-uploaded chart."""
        assert self.client is not None
        pauses = [0.5, 1.0] if any(b.get("type") == "image" for b in kwargs.get("blocks") or []) else []
        while True:
            try:
                return self.client.chat_postMessage(**kwargs)
            except SlackApiError as exc:
                if exc.response.get("error") != "invalid_blocks" or not any(
                        b.get("type") == "image" for b in kwargs.get("blocks") or []):
                    raise
                if not pauses:  # the file never became usable: the message without its picture
                    event(log, "chart_block_refused", level=30, channel=kwargs.get("channel"))
                    kwargs = {**kwargs, "blocks": [b for b in kwargs["blocks"] if b.get("type") != "image"]}
                    continue
                time.sleep(pauses.pop(0))

    def find_posted(self, row: RowMapping) -> str | None:
        """The ts of the message carrying ``row``'s key among its channel's latest messages,
        or None. Raises when the history cannot be read (no scope, Slack down)."""
        assert self.client is not None
        response = self.client.conversations_history(channel=row["channel_id"], limit=HISTORY_LIMIT,
                                                     include_all_metadata=True)
        for message in response.get("messages") or []:
            metadata = message.get("metadata") or {}
            if metadata.get("event_type") == METADATA_TYPE and \
                    (metadata.get("event_payload") or {}).get("key") == row["key"]:
                return message.get("ts")
        return None

    def settle_abandoned(self, row: RowMapping, status: str, *, now: datetime, **values) -> bool:
        """Compare-and-set an abandoned ``sending`` row (nobody else may have settled it)."""
        now = naive_utc(now)
        with self.engine.begin() as conn:
            done = conn.execute(
                update(deliveries)
                .where(deliveries.c.id == row["id"], deliveries.c.status == "sending",
                       deliveries.c.updated_at == row["updated_at"])
                .values(status=status, claimed_by=self.me, updated_at=now, **values)
            )
        return done.rowcount == 1

    # ---- looking for work -----------------------------------------------------------------

    def retryable(self, now: datetime, stale_after: timedelta) -> list[RowMapping]:
        """Failed rows, and claims a dead process left before posting."""
        stale = naive_utc(now - stale_after)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(deliveries)
                .where(
                    (deliveries.c.status == "failed")
                    | ((deliveries.c.status == "claimed") & (deliveries.c.claimed_at < stale))
                )
                .order_by(deliveries.c.id)
            ).mappings()
            return list(rows)

    def abandoned(self, now: datetime, stale_after: timedelta) -> list[RowMapping]:
        """Rows a process was posting when it stopped: they may or may not have arrived."""
        stale = naive_utc(now - stale_after)
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(deliveries).where(deliveries.c.status == "sending", deliveries.c.updated_at < stale)
                ).mappings()
            )

    def unreported(self) -> list[RowMapping]:
        """Deliveries that were given up on and nobody has been told yet."""
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(deliveries)
                    .where(
                        deliveries.c.status.in_(("gave_up", "unknown")),
                        deliveries.c.reported_at.is_(None),
                        deliveries.c.kind != "report",
                    )
                    .order_by(deliveries.c.id)
                ).mappings()
            )


def _share_ts(response, channel: str) -> str | None:
    """The message ts of a file share, when Slack has it ready (it often has not, yet)."""
    files = response.get("files") or []
    for f in files:
        shares = f.get("shares") or {}
        for kind in ("public", "private"):
            for share in (shares.get(kind) or {}).get(channel, []):
                if share.get("ts"):
                    return share["ts"]
    return None


def payload_ops(row: RowMapping) -> tuple[dict[str, Any], list[Op]]:
    data = json.loads(row["payload"] or "{}")
    return data, [Op.from_json(o) for o in data.get("ops", [])]
