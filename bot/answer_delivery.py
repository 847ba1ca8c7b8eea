"""An answer as one message: number, change, context, the chart (an image block showing the
uploaded PNG) and the buttons; a click on them replaces that message or answers in its thread.

The text goes out first (``chat.postMessage`` with the buttons and a "drawing the chart" line),
then the chart is drawn, uploaded and added to the same message by ``chat.update``: the asker
reads the number without waiting 60-330 ms for matplotlib and the upload. A click (which
replaces its message in one ``chat.update``) and the ``response_url`` fallback (a channel the bot
is not in: nothing to update) keep the old order, chart first.

The chart is uploaded first with ``files_upload_v2`` and no channel (bytes; the file is the
bot's and shared nowhere), then the message shows it with ``{"type": "image", "slack_file":
{"id": …}}``, so it can later be replaced by ``chat.update``. Slack may refuse a file it has
not finished processing (``invalid_blocks``, "invalid slack file"): the post is tried again
twice, then sent without the picture and the chart shared in the thread the old way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from slack_sdk.errors import SlackApiError, SlackClientError

from bot import answer_actions, blocks
from bot.logging import event as log_event
from bot.logging import get_logger
from bot.slack_client import make_webhook
from metrics.result import Result

if TYPE_CHECKING:
    from bot.app import Job, KpiBot

log = get_logger("kpibot.app")
NOT_READY_PAUSES = (0.5, 1.0)
THREAD_MODE_AFTER = 3  # refusals in a row after which charts go to the thread for a while
THREAD_MODE_SECONDS = 600.0
CHART_COMING = "Drawing the chart…"


class PendingChart:
    """The chart drawn on first use, then kept (with its upload), so a retried delivery
    neither draws nor uploads twice."""

    def __init__(self, draw: Callable[[], tuple[bytes | None, str | None]]) -> None:
        self._draw = draw
        self._drawn: tuple[bytes | None, str | None] | None = None
        self.file_id: str | None = None

    def get(self) -> tuple[bytes | None, str | None]:
        if self._drawn is None:
            self._drawn = self._draw()
        return self._drawn


class _BlockRefusals:
    """A workspace that never shows channel-less uploads in image blocks (some refuse them
    as "invalid slack file") should not cost every answer 1.5 s of retries: after a few
    refusals in a row, charts go straight to the thread for ten minutes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_a_row = 0
        self.until = 0.0

    def thread_mode(self) -> bool:
        with self.lock:
            return time.monotonic() < self.until

    def refused(self) -> None:
        with self.lock:
            self.in_a_row += 1
            if self.in_a_row >= THREAD_MODE_AFTER:
                self.until, self.in_a_row = time.monotonic() + THREAD_MODE_SECONDS, 0

    def shown(self) -> None:
        with self.lock:
            self.in_a_row = 0


def _refusals(bot: KpiBot) -> _BlockRefusals:
    """One count per app (per workspace connection), kept on the bot."""
    return bot.__dict__.setdefault("chart_block_refusals", _BlockRefusals())


def _replaced(bot: KpiBot) -> dict[tuple[str, str], bool]:
    """Answers a click has replaced: a chart still on its way must not undo the click."""
    seen = bot.__dict__.setdefault("answers_replaced", {})
    if len(seen) > 10_000:
        seen.clear()
    return seen


def upload_chart(bot: KpiBot, result: Result, png: bytes) -> tuple[str | None, str | None]:
    """(file id, None) or (None, Slack's error code)."""
    try:
        done = bot.client.files_upload_v2(file=png, filename=blocks.chart_filename(result),
                                          title=blocks.chart_title(result), alt_txt=blocks.chart_alt_text(result))
    except (SlackApiError, SlackClientError, OSError) as exc:
        code = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
        log_event(log, "chart_upload_failed", level=30, error=code, kpi=result.metric.id)
        return None, code
    files = done.get("files") or ([done.get("file")] if done.get("file") else [])
    return (files[0].get("id"), None) if files else (None, "no_file")


def send_answer(bot: KpiBot, job: Job, result: Result, png: bytes | None, chart_note: str | None,
                chart: PendingChart | None = None) -> str:
    if chart is not None and not job.update_ts:
        return _text_first(bot, job, result, chart)
    if chart is not None:  # a click replaces its message once, chart included
        png, chart_note = chart.get()
    asked = blocks.asked_by(job.user_id, job.text) if job.surface in ("slash", "click", "shortcut") else None
    actions = answer_actions.actions_block(result)
    image = None
    in_thread = png is not None and not job.update_ts and _refusals(bot).thread_mode()
    if png is not None and not in_thread:
        file_id, code = upload_chart(bot, result, png)
        if file_id:
            image = answer_actions.image_block(file_id, blocks.chart_alt_text(result), blocks.chart_title(result))
        else:
            chart_note = bot._upload_failure_note(code)

    def message(with_image: bool, note: str | None) -> dict:
        return {"text": blocks.answer_text(result, chart_note=note),
                "blocks": blocks.answer_blocks(result, chart_note=note, asked=asked,
                                               image=image if with_image else None, actions=actions)}

    if job.update_ts:  # a click: the answer replaces the message it came from
        _replaced(bot)[(job.channel_id, job.update_ts)] = True
        try:
            bot.client.chat_update(channel=job.channel_id, ts=job.update_ts, **message(True, chart_note))
            return "updated"
        except SlackApiError as exc:
            if not job.response_url:
                raise
            log_event(log, "chat_update_failed", level=30, error=exc.response.get("error"), channel=job.channel_id)
            resp = make_webhook(job.response_url).send(replace_original=True, **message(True, chart_note))
            if resp.status_code != 200:
                raise RuntimeError(f"response_url answered {resp.status_code}") from exc
            return "response_url"
    try:
        posted = _post_waiting_for_file(bot, job, message(True, chart_note), image is not None)
    except SlackApiError as exc:
        code = exc.response.get("error")
        if code == "invalid_blocks" and image is not None:  # the file never became usable
            _refusals(bot).refused()
            log_event(log, "chart_block_refused", level=30, channel=job.channel_id, kpi=result.metric.id)
            plain = bot.client.chat_postMessage(channel=job.channel_id, thread_ts=job.thread_ts, unfurl_links=False,
                                                unfurl_media=False, **message(False, chart_note))
            _share_in_channel(bot, job, result, png, job.thread_ts or plain.get("ts"))
            return "chart_in_thread"
        if job.surface not in ("slash", "shortcut") or not job.response_url:
            raise
        note = bot._not_member_note() if code in blocks_not_member() else chart_note
        return _via_response_url(job, message(True, note), code, exc)
    if in_thread:  # the workspace refuses chart images for now: the chart follows in the thread
        _share_in_channel(bot, job, result, png, job.thread_ts or posted.get("ts"))
        return "chart_in_thread"
    if image is not None:
        _refusals(bot).shown()
    return "ok" if png is None or image is not None else "chart_failed"


def _via_response_url(job: Job, body: dict, code: str | None, exc: Exception) -> str:
    """Not a member (or a DM between people): reply in the channel via the response_url."""
    log_event(log, "post_fallback_response_url", level=30, error=code, channel=job.channel_id)
    resp = make_webhook(str(job.response_url)).send(response_type="in_channel", replace_original=False, **body)
    if resp.status_code != 200:
        raise RuntimeError(f"response_url answered {resp.status_code}") from exc
    return "response_url"


def _text_first(bot: KpiBot, job: Job, result: Result, chart: PendingChart) -> str:
    """Post the answer without its chart, then draw, upload and add the chart in place. A retry
    (``job.posted_ts`` set) only finishes the update: the text is never posted twice."""
    asked = blocks.asked_by(job.user_id, job.text) if job.surface in ("slash", "click", "shortcut") else None
    actions = answer_actions.actions_block(result)

    def message(image: dict | None, note: str | None) -> dict:
        return {"text": blocks.answer_text(result, chart_note=note),
                "blocks": blocks.answer_blocks(result, chart_note=note, asked=asked, image=image, actions=actions)}

    if job.posted_ts is None:
        try:
            posted = bot.client.chat_postMessage(channel=job.channel_id, thread_ts=job.thread_ts, unfurl_links=False,
                                                 unfurl_media=False, **message(None, CHART_COMING))
        except SlackApiError as exc:
            code = exc.response.get("error")
            if job.surface not in ("slash", "shortcut") or not job.response_url:
                raise
            png, note = chart.get()  # nothing to update later: the old order, chart first
            image, upload_error = None, None
            if png is not None:
                file_id, upload_error = upload_chart(bot, result, png)
                if file_id:
                    image = answer_actions.image_block(file_id, blocks.chart_alt_text(result),
                                                       blocks.chart_title(result))
            if code in blocks_not_member():
                note = bot._not_member_note()
            elif png is not None and image is None:
                note = bot._upload_failure_note(upload_error)
            return _via_response_url(job, message(image, note), code, exc)
        job.posted_ts, job.posted_channel = str(posted.get("ts")), str(posted.get("channel") or job.channel_id)
    channel, ts = str(job.posted_channel), str(job.posted_ts)

    def update(image: dict | None, note: str | None) -> None:
        if _replaced(bot).get((channel, ts)):
            return  # a click replaced this answer meanwhile: its old chart is not wanted
        bot.client.chat_update(channel=channel, ts=ts, **message(image, note))

    png, note = chart.get()
    if png is None:
        update(None, note)
        return "chart_failed"
    if _refusals(bot).thread_mode():  # the workspace refuses chart images for now: the chart goes to the thread
        update(None, None)
        _share_in_channel(bot, job, result, png, job.thread_ts or ts)
        return "chart_in_thread"
    if chart.file_id is None:
        file_id, code = upload_chart(bot, result, png)
        if not file_id:
            update(None, bot._upload_failure_note(code))
            return "chart_failed"
        chart.file_id = file_id
    image = answer_actions.image_block(chart.file_id, blocks.chart_alt_text(result), blocks.chart_title(result))
    pauses = list(NOT_READY_PAUSES)
    while True:
        try:
            update(image, None)
            break
        except SlackApiError as exc:
            if exc.response.get("error") != "invalid_blocks":
                raise
            if pauses:
                time.sleep(pauses.pop(0))  # Slack is still processing the upload
                continue
            _refusals(bot).refused()
            log_event(log, "chart_block_refused", level=30, channel=job.channel_id, kpi=result.metric.id)
            update(None, None)
            _share_in_channel(bot, job, result, png, job.thread_ts or ts)
            return "chart_in_thread"
    _refusals(bot).shown()
    return "ok"


def blocks_not_member() -> set[str]:
    from bot.app import NOT_MEMBER_ERRORS

    return NOT_MEMBER_ERRORS


def _post_waiting_for_file(bot: KpiBot, job: Job, body: dict, has_image: bool):
    pauses = list(NOT_READY_PAUSES) if has_image else []
    while True:
        try:
            return bot.client.chat_postMessage(channel=job.channel_id, thread_ts=job.thread_ts,
                                               unfurl_links=False, unfurl_media=False, **body)
        except SlackApiError as exc:
            if exc.response.get("error") != "invalid_blocks" or not pauses:
                raise
            time.sleep(pauses.pop(0))  # Slack is still processing the upload


def _share_in_channel(bot: KpiBot, job: Job, result: Result, png: bytes | None, thread_ts: str | None) -> None:
    """The chart as a file in the answer's thread (when an image block cannot show it)."""
    if png is None:
        return
    try:
        bot.client.files_upload_v2(channel=job.channel_id, thread_ts=thread_ts, file=png,
                                   filename=blocks.chart_filename(result), title=blocks.chart_title(result),
                                   alt_txt=blocks.chart_alt_text(result))
    except (SlackApiError, SlackClientError, OSError) as exc:
        code = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
        log_event(log, "chart_upload_failed", level=30, error=code, channel=job.channel_id, kpi=result.metric.id)
