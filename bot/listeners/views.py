"""Modal submissions and closes (``view_submission``, ``view_closed``).

A form is checked field by field before it closes (``response_action: errors``); a valid one
becomes the typed command it stands for and is submitted like one (:mod:`bot.modals`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bot import modals
from bot.logging import event as log_event
from bot.logging import get_logger

if TYPE_CHECKING:
    from slack_bolt import App

    from bot.app import KpiBot

log = get_logger("kpibot.app")


def _user(body: dict) -> str:
    return str((body.get("user") or {}).get("id") or "")


def register(app: App, bot: KpiBot) -> None:
    from bot.app import Job

    def submit_command(body: dict, sub: modals.Submission, after=None) -> None:
        assert sub.command is not None and sub.channel is not None
        from bot import app_home

        def done(reply) -> None:  # saved: the edit's old digest goes, the App Home shows the new one
            if after is not None:
                after(reply)
            app_home.publish_later(bot, _user(body))

        bot.submit(Job(surface="modal", text=sub.command, user_id=_user(body), channel_id=sub.channel,
                       team_id=(body.get("team") or {}).get("id"), after=done,
                       channel_type="im" if sub.channel.startswith("D") else None))

    def save(ack, body: dict, sub: modals.Submission, kind: str, old_id, find) -> None:
        """A digest or alert form: errors back into the form, else the typed command. An edit
        saves the new one first and then removes the old (there is no typed edit command)."""
        if sub.errors:
            ack(response_action="errors", errors=sub.errors)
            return
        ack()
        after = None
        if old_id is not None:

            def after(_reply) -> None:
                from storage.state import get_state_engine

                old = find(get_state_engine(), old_id)
                if old is not None:
                    bot.submit(Job(surface="modal", text=f"{kind} remove {old_id}", user_id=_user(body),
                                   channel_id=old.channel_id, follow_up=True))
        submit_command(body, sub, after)

    @app.view(modals.DIGEST_VIEW)
    def on_digest(ack, body, view):
        from bot.schedules import store

        sub = modals.read_digest(view, "UTC")
        save(ack, body, sub, "digest", sub.digest_id, store.get_digest)

    @app.view(modals.ALERT_VIEW)
    def on_alert(ack, body, view):
        from bot.schedules import store

        sub = modals.read_alert(view, "UTC")
        save(ack, body, sub, "alert", sub.replaces, store.get_rule)

    @app.view(modals.ASK_VIEW)
    def on_ask(ack, body, view):
        sub = modals.read_ask(view)
        if sub.errors:
            ack(response_action="errors", errors=sub.errors)
            return
        ack()
        from bot.router import clean_text

        channel = str(sub.channel)
        bot.submit(Job(surface="shortcut", text=clean_text(sub.command), user_id=_user(body), channel_id=channel,
                       team_id=(body.get("team") or {}).get("id"),
                       channel_type="im" if channel.startswith("D") else None))

    @app.view(re.compile(".*"))
    def on_view(ack, view):
        log_event(log, "unknown_view", level=30, callback_id=str((view or {}).get("callback_id"))[:64])
        ack()  # a view we did not make: closed without error

    @app.view_closed(re.compile(".*"))
    def on_view_closed(ack):
        ack()
