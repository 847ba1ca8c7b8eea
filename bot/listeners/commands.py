"""``/kpi``: acked at once, deduplicated by ``trigger_id``, queued as a job."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.logging import event as log_event
from bot.logging import get_logger
from bot.router import clean_text

if TYPE_CHECKING:
    from slack_bolt import App

    from bot.app import KpiBot

log = get_logger("kpibot.app")


def register(app: App, bot: KpiBot) -> None:
    from bot.app import Job, _command_channel_type, _host_of

    @app.command("/kpi")
    def on_command(ack, command):
        ack()
        trigger = command.get("trigger_id")
        if trigger and not bot.seen.first_time(f"slash:{trigger}"):
            bot._count("duplicate_commands")  # a replayed request: answered already
            log_event(log, "duplicate_command_dropped", trigger_id=str(trigger)[:64])
            return
        response_url = command.get("response_url")
        if response_url and not bot.settings.response_url_allowed(response_url):
            bot._count("foreign_response_urls")
            log_event(log, "response_url_refused", level=30, host=_host_of(response_url),
                      user=command.get("user_id"), channel=command.get("channel_id"))
            response_url = None  # replies go through the Web API instead
        bot.submit(
            Job(
                surface="slash",
                text=clean_text(command.get("text")),
                user_id=command.get("user_id", ""),
                channel_id=command.get("channel_id", ""),
                team_id=command.get("team_id"),
                response_url=response_url,
                channel_type=_command_channel_type(command),
            )
        )
