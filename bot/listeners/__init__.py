"""Bolt listeners by kind, as in Slack's bolt-python starter template: each module has a
``register(app, bot)`` adding its routes. Listeners stay tiny (ack, validate, hand over to
``bot``): nothing slow runs before the ack."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.listeners import actions, commands, events, shortcuts, views
from bot.logging import event as log_event
from bot.logging import get_logger, new_error_id

if TYPE_CHECKING:
    from slack_bolt import App

    from bot.app import KpiBot

log = get_logger("kpibot.app")


def register(app: App, bot: KpiBot) -> None:
    for module in (commands, events, actions, views, shortcuts):
        module.register(app, bot)

    @app.error
    def on_error(error, body):
        error_id = new_error_id()
        log_event(log, "listener_error", level=40, error_id=error_id,
                  exc_info=(type(error), error, error.__traceback__),
                  type=body.get("type") if isinstance(body, dict) else None)
