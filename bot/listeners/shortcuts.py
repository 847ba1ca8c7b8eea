"""Global and message shortcuts."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slack_bolt import App

    from bot.app import KpiBot


def register(app: App, bot: KpiBot) -> None:
    """None yet."""
