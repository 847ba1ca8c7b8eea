"""Acknowledged / quiet-until-recovered marks on alert messages, and the state line and
buttons every alert message carries (so a click and the next scheduled edit agree)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select, update

from bot import mrkdwn
from storage.state import alert_marks, alert_states, insert_unique_key

from .clock import aware, naive_utc
from .store import Rule

ACK = "alert_ack"
SNOOZE = "alert_snooze"
MUTE = "alert_mute"
SNOOZE_CHOICES = {"1h": "1 hour", "1d": "1 day", "1w": "1 week", "recovered": "until it recovers",
                  "off": "end the snooze"}
MUTE_FOR = "90d"  # the longest snooze: muting is a snooze that lasts until someone lifts it
ALERT_ACTIONS = (ACK, SNOOZE, MUTE)


@dataclass(frozen=True)
class Mark:
    acked_by: str | None = None
    acked_at: datetime | None = None
    quiet_by: str | None = None


def breaching_messages(engine: Engine, rule_id: int) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(select(alert_states.c.message_ts).where(
            alert_states.c.rule_id == rule_id, alert_states.c.status == "breaching",
            alert_states.c.message_ts.is_not(None))).all()
    return sorted({r[0] for r in rows})


def _upsert(engine: Engine, rule_id: int, ts: str, **values) -> None:
    with engine.begin() as conn:
        if not insert_unique_key(conn, alert_marks, {"rule_id": rule_id, "message_ts": ts, **values}):
            conn.execute(update(alert_marks).where(alert_marks.c.rule_id == rule_id,
                                                   alert_marks.c.message_ts == ts).values(**values))


def acknowledge(engine: Engine, rule_id: int, user: str | None, now: datetime) -> int:
    """Mark every open message of the rule acknowledged by ``user``; how many."""
    found = breaching_messages(engine, rule_id)
    for ts in found:
        _upsert(engine, rule_id, ts, acked_by=user, acked_at=naive_utc(now))
    return len(found)


def quiet_until_recovered(engine: Engine, rule_id: int, user: str | None, now: datetime) -> int:
    found = breaching_messages(engine, rule_id)
    for ts in found:
        _upsert(engine, rule_id, ts, quiet_by=user, quiet_at=naive_utc(now))
    return len(found)


def get(engine: Engine, rule_id: int, ts: str | None) -> Mark:
    if not ts:
        return Mark()
    with engine.connect() as conn:
        row = conn.execute(select(alert_marks).where(alert_marks.c.rule_id == rule_id,
                                                     alert_marks.c.message_ts == ts)).mappings().first()
    if row is None:
        return Mark()
    return Mark(row["acked_by"], aware(row["acked_at"]) if row["acked_at"] else None, row["quiet_by"])


def state_line(rule: Rule, mark: Mark, now: datetime, when) -> str | None:
    """``👀 Acknowledged by @ann · 😴 Snoozed until …`` (None: nobody did anything yet)."""
    parts = []
    if mark.acked_by:
        parts.append(f"👀 Acknowledged by {mrkdwn.user(mark.acked_by)}")
    if rule.snoozed(now):
        parts.append(f"😴 Snoozed until {when(rule.snoozed_until, rule.timezone)}")
    if mark.quiet_by:
        parts.append(f"🔕 Quiet until it recovers ({mrkdwn.user(mark.quiet_by)})")
    return " · ".join(parts) or None


def buttons(rule: Rule, moved_value: str | None = None) -> list[dict[str, Any]]:
    """The elements of an alert's actions block; values are the rule id (checked on click)."""
    value = json.dumps({"r": rule.id})
    out: list[dict[str, Any]] = [
        {"type": "button", "action_id": ACK, "text": {"type": "plain_text", "text": "Acknowledge"}, "value": value},
        {"type": "static_select", "action_id": SNOOZE, "placeholder": {"type": "plain_text", "text": "Snooze…"},
         "options": [{"text": {"type": "plain_text", "text": label},
                      "value": json.dumps({"r": rule.id, "for": key})} for key, label in SNOOZE_CHOICES.items()]},
        {"type": "button", "action_id": MUTE, "text": {"type": "plain_text", "text": "Mute rule"}, "value": value,
         "confirm": {"title": {"type": "plain_text", "text": "Mute this alert?"},
                     "text": {"type": "plain_text", "text": "It stays quiet for 90 days, or until someone "
                              f"unmutes it (/kpi alert unmute {rule.id})."},
                     "confirm": {"type": "plain_text", "text": "Mute"},
                     "deny": {"type": "plain_text", "text": "Cancel"}}},
    ]
    if moved_value:
        out.append({"type": "button", "action_id": "answer_moved", "value": moved_value,
                    "text": {"type": "plain_text", "text": "What moved it"}})
    return out


def decode(value: str | None) -> tuple[int, str | None]:
    """(rule id, snooze choice) from a click; ValueError unless it is one we made."""
    data = json.loads(value or "")
    if not isinstance(data, dict) or set(data) - {"r", "for"}:
        raise ValueError("unexpected keys")
    rule_id, choice = data.get("r"), data.get("for")
    if not isinstance(rule_id, int) or isinstance(rule_id, bool) or not 0 < rule_id < 2**31:
        raise ValueError("bad rule id")
    if choice is not None and choice not in SNOOZE_CHOICES:
        raise ValueError("bad snooze")
    return rule_id, choice
