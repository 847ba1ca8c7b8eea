"""Modal submissions and closes (``view_submission``, ``view_closed``)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slack_bolt import App

    from bot.app import KpiBot


def register(app: App, bot: KpiBot) -> None:
    @app.view(re.compile(".*"))
    def on_view(ack):
        ack()  # no modals yet; a submission (signed, so Slack's) is closed without error

    @app.view_closed(re.compile(".*"))
    def on_view_closed(ack):
        ack()
