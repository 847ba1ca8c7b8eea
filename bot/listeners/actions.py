"""Clicks on buttons and selects (``block_actions``)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slack_bolt import App

    from bot.app import KpiBot


def register(app: App, bot: KpiBot) -> None:
    @app.action(re.compile(".*"))
    def on_action(ack):
        ack()  # no interactive elements yet; answer clicks so Slack shows no error
