"""The App Home tab: the user's digests and alerts (edit / remove), their recent questions
(one click asks again, answered in the DM), buttons for a new digest, alert or question, the
catalogue by group with definitions, and how fresh each data source is.

Published with ``views.publish`` from a worker (it reads the state and metrics databases),
never on the listener thread. Button values are ids (a digest, a rule, an audit row), checked
on click against the clicker: nobody re-asks someone else's question.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from bot import mrkdwn
from bot.logging import event as log_event
from bot.logging import get_logger

if TYPE_CHECKING:
    from bot.app import KpiBot

log = get_logger("kpibot.app")

NEW_DIGEST = "home_new_digest"
NEW_ALERT = "home_new_alert"
ASK = "home_ask"
EDIT_DIGEST = "home_digest_edit"
REMOVE_DIGEST = "home_digest_remove"
REMOVE_ALERT = "home_alert_remove"
EDIT_ALERT = "home_alert_edit"
REASK = "home_reask"
SAVE = "home_fav_save"  # a recent question (audit row id) kept as a favourite
FAV_ASK = "home_fav_ask"
FAV_REMOVE = "home_fav_remove"
HOME_ACTIONS = (NEW_DIGEST, NEW_ALERT, ASK, EDIT_DIGEST, REMOVE_DIGEST, REMOVE_ALERT, EDIT_ALERT, REASK, SAVE,
                FAV_ASK, FAV_REMOVE)
RECENT = 5
MAX_BLOCKS = 100


def _section(text: str, accessory: dict[str, Any] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn.escape(text)[:3000]}}
    if accessory:
        block["accessory"] = accessory
    return block


def _button(label: str, action_id: str, value: dict[str, Any] | None = None, *, style: str | None = None,
            confirm: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": label}}
    if value is not None:
        button["value"] = json.dumps(value)
    if style:
        button["style"] = style
    if confirm:
        button["confirm"] = {"title": {"type": "plain_text", "text": "Are you sure?"},
                             "text": {"type": "plain_text", "text": confirm[:300]},
                             "confirm": {"type": "plain_text", "text": "Remove"},
                             "deny": {"type": "plain_text", "text": "Cancel"}, "style": "danger"}
    return button


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text[:150]}}


def recent_questions(user_id: str, limit: int = RECENT) -> list[tuple[int, str]]:
    """(audit row id, question) of the user's latest answered questions, newest first, no repeats."""
    from bot import audit

    if not audit.enabled():
        return []
    t = audit.audit_log
    try:
        with audit.engine_for().connect() as conn:
            rows = conn.execute(select(t.c.id, t.c.question).where(
                t.c.user_id == user_id, t.c.source == "slack", t.c.command == "question",
                t.c.outcome == audit.ANSWERED, t.c.question.is_not(None),
            ).order_by(t.c.id.desc()).limit(50)).all()
    except Exception:  # noqa: BLE001 - the home tab shows without them
        log_event(log, "home_recent_failed", level=30, exc_info=True)
        return []
    seen: set[str] = set()
    out = []
    for row_id, question in rows:
        key = question.strip().lower()
        if key and key not in seen:
            seen.add(key)
            out.append((row_id, question))
    return out[:limit]


def _favourites(user_id: str) -> list[tuple[int, str]]:
    from bot import favourites

    try:
        return favourites.of(user_id)
    except Exception:  # noqa: BLE001 - the home tab shows without them
        log_event(log, "home_favourites_failed", level=30, exc_info=True)
        return []


def question_of(row_id: int, user_id: str) -> str | None:
    """The question behind a re-ask button: only the clicker's own, answered question."""
    from bot import audit

    t = audit.audit_log
    with audit.engine_for().connect() as conn:
        row = conn.execute(select(t.c.user_id, t.c.question, t.c.command).where(t.c.id == row_id)).first()
    if row is None or row.user_id != user_id or row.command != "question" or not row.question:
        return None
    return str(row.question)


def freshness_lines(bot: KpiBot) -> list[str]:
    from metrics import freshness
    from metrics.periods import Settings
    from storage import database

    try:
        found = freshness.by_table(list(freshness.TIME_COLUMNS), database.get_engine(bot.settings.database_url),
                                   Settings.from_env())
    except Exception:  # noqa: BLE001 - e.g. the warehouse is down: say so, show the rest
        log_event(log, "home_freshness_failed", level=30, exc_info=True)
        return ["The data sources cannot be read right now."]
    return [f"• `{table}`: {freshness.through_text(day)}" for table, day in found.items()]


def catalogue_sections() -> list[dict[str, Any]]:
    from metrics.catalogue import CATALOGUE, GROUPS

    by_group: dict[str, list[str]] = {}
    for metric in CATALOGUE.values():
        what = (metric.description or metric.formula).strip()
        by_group.setdefault(metric.group, []).append(f"• *{metric.label}* (`{metric.id}`) — {what[:110]}")
    order = [g for g in GROUPS if g in by_group] + sorted(g for g in by_group if g not in GROUPS)
    return [_section(f"*{group.capitalize()}*\n" + "\n".join(by_group[group])) for group in order]


def home_view(bot: KpiBot, user_id: str) -> dict[str, Any]:
    from bot.schedules import store
    from bot.schedules.alerts import when
    from storage.state import get_state_engine

    now = datetime.now(UTC)
    blocks: list[dict[str, Any]] = [
        _header("kpibot"),
        _section("Ask about a KPI, get digests on a schedule, be told when a KPI crosses a line. "
                 "Everything here can also be typed: `/kpi help`."),
        {"type": "actions", "block_id": "home_new", "elements": [
            _button("Ask a question", ASK, style="primary"), _button("New digest", NEW_DIGEST),
            _button("New alert", NEW_ALERT)]},
        {"type": "divider"},
        _header("Your digests"),
    ]
    try:
        state = get_state_engine()
        digests = [d for d in store.active_digests(state) if d.created_by == user_id]
        rules = [r for r in store.active_rules(state) if r.owner == user_id]
    except Exception:  # noqa: BLE001 - the state database is down: the rest still shows
        log_event(log, "home_schedules_failed", level=30, exc_info=True)
        digests, rules = [], []
        blocks.append(_section("_Your schedules cannot be read right now._"))
    for d in digests[:12]:
        names = ", ".join(d.spec.metrics)
        blocks.append(_section(f"*#{d.id}* {d.spec.schedule_text()} in {mrkdwn.channel(d.channel_id)} — {names}",
                               _button("Edit", EDIT_DIGEST, {"d": d.id})))
        blocks.append({"type": "actions", "elements": [
            _button("Remove", REMOVE_DIGEST, {"d": d.id}, style="danger",
                    confirm=f"Digest #{d.id} stops posting.")]})
    if not digests:
        blocks.append(_section("_None yet: “New digest” above, or `/kpi digest add weekly mon 09:00 nps`._"))
    blocks.append(_header("Your alerts"))
    for r in rules[:12]:
        snoozed = f" · 😴 until {when(r.snoozed_until, r.timezone)}" if r.snoozed_until and r.snoozed(now) else ""
        blocks.append(_section(f"*#{r.id}* {r.text} in {mrkdwn.channel(r.channel_id)}{snoozed}",
                               _button("Edit", EDIT_ALERT, {"a": r.id}) if r.source != "file" else None))
        blocks.append({"type": "actions", "elements": [
            _button("Remove", REMOVE_ALERT, {"a": r.id}, style="danger",
                    confirm=f"Alert #{r.id} stops being checked.")]})
    if not rules:
        blocks.append(_section("_None yet: “New alert” above, or `/kpi alert add nps below 30`._"))
    blocks.append(_header("Favourites"))
    saved = _favourites(user_id)
    for fav_id, question in saved:
        blocks.append(_section(f"⭐ `{question[:200].replace('`', ' ')}`", _button("Ask", FAV_ASK, {"f": fav_id})))
        blocks.append({"type": "actions", "elements": [_button("Unsave", FAV_REMOVE, {"f": fav_id})]})
    if not saved:
        blocks.append(_section("_Save a recent question below to keep it here._"))
    blocks.append(_header("Recent questions"))
    recent = recent_questions(user_id)
    kept = {q.strip().lower() for _, q in saved}
    for row_id, question in recent:
        blocks.append(_section(f"`{question[:200].replace('`', ' ')}`", _button("Ask again", REASK, {"q": row_id})))
        if question.strip().lower() not in kept:
            blocks.append({"type": "actions", "elements": [_button("Save ⭐", SAVE, {"q": row_id})]})
    if not recent:
        blocks.append(_section("_Your questions show here, one click to ask again._"))
    blocks.append({"type": "divider"})
    blocks.append(_header("Data sources"))
    blocks.append(_section("\n".join(freshness_lines(bot))))
    blocks.append(_header("KPIs"))
    room = MAX_BLOCKS - len(blocks)
    blocks.extend(catalogue_sections()[:room])
    return {"type": "home", "blocks": blocks[:MAX_BLOCKS]}


def publish(bot: KpiBot, user_id: str) -> None:
    """views.publish the user's home (from a worker)."""
    from slack_sdk.errors import SlackApiError, SlackClientError

    try:
        bot.client.views_publish(user_id=user_id, view=home_view(bot, user_id))
    except (SlackApiError, SlackClientError, OSError) as exc:
        code = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
        log_event(log, "home_publish_failed", level=30, user=user_id, error=code)


def publish_later(bot: KpiBot, user_id: str) -> None:
    try:
        bot.pool.submit(publish, bot, user_id)
    except RuntimeError:  # shutting down
        pass


def decode(value: str | None, key: str) -> int:
    """The id in a home button's value; ValueError unless it is one we made."""
    data = json.loads(value or "")
    if not isinstance(data, dict) or set(data) != {key}:
        raise ValueError("unexpected keys")
    item = data[key]
    if not isinstance(item, int) or isinstance(item, bool) or not 0 < item < 2**31:
        raise ValueError("bad id")
    return item
