"""Clicks on an alert's buttons: each is the typed command it stands for (``alert ack 3``,
``alert snooze 3 1d``, ``alert snooze 3 until recovered``, ``alert mute 3 90d``), submitted
like a typed one (rate limits, the owner/admin check, the audit log); once it succeeded the
alert message is edited to show its state."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bot import mrkdwn
from bot.schedules import marks

if TYPE_CHECKING:
    from bot.app import KpiBot
    from bot.router import Reply


def command_for(action_id: str, rule_id: int, choice: str | None) -> str:
    if action_id == marks.ACK:
        return f"alert ack {rule_id}"
    if action_id == marks.MUTE:
        return f"alert mute {rule_id} {marks.MUTE_FOR}"
    if choice == "recovered":
        return f"alert snooze {rule_id} until recovered"
    return f"alert snooze {rule_id} {choice}"


def message_updater(bot: KpiBot, rule_id: int, channel: str, ts: str, message: dict[str, Any]):
    """After a successful click: the alert's text block kept, its state line and buttons renewed."""

    def update(_reply: Reply) -> None:
        from bot.schedules import store
        from bot.schedules.alerts import when
        from storage.state import get_state_engine

        engine = get_state_engine()
        rule = store.get_rule(engine, rule_id)
        if rule is None:
            return
        now = datetime.now(UTC)
        line = marks.state_line(rule, marks.get(engine, rule_id, ts), now, when)
        kept = [b for b in (message.get("blocks") or []) if isinstance(b, dict) and b.get("type") == "section"][:1]
        old = (message.get("blocks") or [])
        moved = [e for b in old if isinstance(b, dict) and b.get("type") == "actions"
                 for e in b.get("elements") or [] if e.get("action_id") == "answer_moved"]
        blocks: list[dict[str, Any]] = list(kept)
        if line:
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": mrkdwn.escape(line)}]})
        elements = marks.buttons(rule, moved[0].get("value") if moved else None)
        blocks.append({"type": "actions", "block_id": "alert_actions", "elements": elements})
        bot.client.chat_update(channel=channel, ts=ts, text=message.get("text") or "Alert", blocks=blocks)

    return update
