"""Events API: @mentions (answered in their thread) and DMs to the bot."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.router import clean_text

if TYPE_CHECKING:
    from slack_bolt import App

    from bot.app import KpiBot


def register(app: App, bot: KpiBot) -> None:
    from bot.app import Job

    @app.event("app_mention")
    def on_mention(body, event, request):
        if not bot._first_delivery(body, request):
            return
        bot.submit(
            Job(
                surface="mention",
                text=clean_text(event.get("text"), bot._bot_user_id_cached()),
                user_id=event.get("user", ""),
                channel_id=event.get("channel", ""),
                team_id=body.get("team_id"),
                thread_ts=event.get("thread_ts") or event.get("ts"),
                event_id=body.get("event_id"),
                channel_type=event.get("channel_type"),
            )
        )

    @app.event("app_home_opened")
    def on_home_opened(body, event, request):
        if event.get("tab") != "home" or not event.get("user") or not bot._first_delivery(body, request):
            return
        from bot import app_home

        app_home.publish_later(bot, str(event["user"]))

    @app.event("message")
    def on_message(body, event, request):
        if event.get("channel_type") != "im" or event.get("subtype") or event.get("bot_id"):
            return
        if not event.get("user"):
            return
        if not bot._first_delivery(body, request):
            return
        bot.submit(
            Job(
                surface="dm",
                text=clean_text(event.get("text"), bot._bot_user_id_cached()),
                user_id=event["user"],
                channel_id=event.get("channel", ""),
                team_id=body.get("team_id"),
                thread_ts=event.get("thread_ts"),
                event_id=body.get("event_id"),
                channel_type="im",
            )
        )
