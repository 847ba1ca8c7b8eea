"""Shortcuts: the global "Ask kpibot" (a modal: question and channel) and the message shortcut
"Answer with kpibot", which finds a KPI question in a message and answers it in its thread."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bot import modals
from bot.router import clean_text

if TYPE_CHECKING:
    from slack_bolt import App

    from bot.app import KpiBot

ASK_SHORTCUT = "ask_kpibot"
MESSAGE_SHORTCUT = "answer_with_kpibot"
_SENTENCES = re.compile(r"(?<=[.?!])\s+|\n+")


def find_question(text: str) -> str:
    """The first sentence of ``text`` that reads as a KPI question (the parser accepts it), else
    the whole text cleaned (its answer then says what was not understood)."""
    from metrics.errors import QueryError
    from metrics.parser import parse

    cleaned = clean_text(text)
    today = datetime.now(UTC).date()
    for sentence in [s.strip(" ?!.") for s in _SENTENCES.split(cleaned)][:20]:
        if not sentence or len(sentence) > 500:
            continue
        try:
            parse(sentence, today=today)
        except QueryError:
            continue
        except Exception:  # noqa: BLE001 - any other trouble: the whole text goes through the gate
            break
        return sentence
    return cleaned


def register(app: App, bot: KpiBot) -> None:
    from bot.app import Job
    from bot.listeners.actions import open_view

    @app.shortcut(ASK_SHORTCUT)
    def on_ask(ack, body):
        ack()
        open_view(bot, body.get("trigger_id"), modals.ask_view())

    @app.shortcut(MESSAGE_SHORTCUT)
    def on_message_shortcut(ack, body):
        ack()
        message = body.get("message") or {}
        channel = str((body.get("channel") or {}).get("id") or "")
        user = str((body.get("user") or {}).get("id") or "")
        text = str(message.get("text") or "")
        response_url = body.get("response_url")
        if response_url and not bot.settings.response_url_allowed(response_url):
            response_url = None

        def run() -> None:  # parsing reads the catalogue: off the listener thread
            bot.submit(Job(surface="shortcut", text=find_question(text), user_id=user, channel_id=channel,
                           team_id=(body.get("team") or {}).get("id"), response_url=response_url,
                           thread_ts=message.get("thread_ts") or message.get("ts"),
                           channel_type="im" if channel.startswith("D") else None))

        try:
            bot.pool.submit(run)
        except RuntimeError:
            pass
