"""Clicks on buttons and selects (``block_actions``).

An answer's buttons re-ask through :meth:`KpiBot.submit`, the path a typed question takes
(rate limits, questions in flight, the policy gate, the audit log); their values are checked
by :func:`bot.answer_actions.decode` first and a value we did not make is refused.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from slack_sdk.errors import SlackApiError, SlackClientError

from bot import alert_clicks, app_home, modals
from bot import answer_actions as aa
from bot.logging import event as log_event
from bot.logging import get_logger
from bot.schedules import marks

if TYPE_CHECKING:
    from slack_bolt import App

    from bot.app import KpiBot

log = get_logger("kpibot.app")
REFUSED = "That button is out of date or not one of mine; ask again with `/kpi`."


def click_context(bot: KpiBot, body: dict) -> dict:
    """Who clicked, where, on which message (ids only), and a response_url we may use."""
    container = body.get("container") or {}
    message = body.get("message") or {}
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id") or ""
    response_url = body.get("response_url")
    if response_url and not bot.settings.response_url_allowed(response_url):
        response_url = None
    return {
        "user_id": (body.get("user") or {}).get("id") or "",
        "channel_id": channel,
        "team_id": (body.get("team") or {}).get("id"),
        "message_ts": message.get("ts") or container.get("message_ts"),
        "thread_ts": message.get("thread_ts"),
        "ephemeral": bool(container.get("is_ephemeral")),
        "response_url": response_url,
        "trigger_id": body.get("trigger_id"),
    }


def open_view(bot: KpiBot, trigger_id: str | None, view: dict) -> None:
    """views.open within the trigger's 3 seconds; a failure is logged (the click did nothing)."""
    if not trigger_id:
        return
    try:
        bot.client.views_open(trigger_id=trigger_id, view=view)
    except (SlackApiError, SlackClientError, OSError) as exc:
        code = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
        log_event(log, "views_open_failed", level=30, error=code)


def _value(action: dict, *, select: str) -> str | None:
    """What was clicked: the chosen option of the ``select`` menu, else the button's value."""
    if action.get("action_id") == select:
        return (action.get("selected_option") or {}).get("value")
    return action.get("value")


def register(app: App, bot: KpiBot) -> None:
    from bot.app import Job

    @app.action(re.compile(f"^({'|'.join((aa.BY, aa.TREND, aa.YOY, aa.MOVED))})$"))
    def on_answer_click(ack, body, action, respond):
        ack()
        where = click_context(bot, body)
        action_id = action.get("action_id")
        value = _value(action, select=aa.BY)
        try:
            state = aa.decode(value)
        except aa.BadAction as exc:
            bot._count("bad_actions")
            log_event(log, "action_refused", level=30, action=action_id, reason=str(exc), user=where["user_id"])
            if where["response_url"]:
                respond(text=REFUSED, response_type="ephemeral", replace_original=False)
            return
        in_place = action_id in aa.IN_PLACE and where["message_ts"] and not where["ephemeral"]
        thread = None
        if action_id == aa.MOVED:
            thread = where["thread_ts"] or where["message_ts"]
        dim = None
        if action_id == aa.MOVED:
            dims = aa.dimensions(state.kpi)
            dim = state.dimension or (dims[0] if dims else None)
        bot.submit(Job(
            surface="click",
            text=state.question(action_id, dim),
            user_id=where["user_id"],
            channel_id=where["channel_id"],
            team_id=where["team_id"],
            response_url=where["response_url"],
            thread_ts=thread if not in_place else where["thread_ts"],
            update_ts=where["message_ts"] if in_place else None,
            channel_type="im" if where["channel_id"].startswith("D") else None,
        ))

    @app.action(re.compile(f"^({aa.DIGEST}|{aa.ALERT})$"))
    def on_schedule_click(ack, body, action, respond):
        """"add to a digest" / "alert me when…": the form, filled in with this answer's KPI."""
        ack()
        where = click_context(bot, body)
        try:
            state = aa.decode(action.get("value"))
        except aa.BadAction as exc:
            bot._count("bad_actions")
            log_event(log, "action_refused", level=30, action=action.get("action_id"), reason=str(exc))
            if where["response_url"]:
                respond(text=REFUSED, response_type="ephemeral", replace_original=False)
            return
        tz = bot.user_tz(where["user_id"]) or "UTC"
        if action.get("action_id") == aa.DIGEST:
            view = modals.digest_view(kpis=[state.kpi], channel=where["channel_id"], tz=tz)
        else:
            view = modals.alert_view(kpi=state.kpi, channel=where["channel_id"], tz=tz)
        open_view(bot, where["trigger_id"], view)

    @app.action(re.compile(f"^({'|'.join(marks.ALERT_ACTIONS)})$"))
    def on_alert_click(ack, body, action, respond):
        ack()
        where = click_context(bot, body)
        action_id = action.get("action_id")
        value = _value(action, select=marks.SNOOZE)
        try:
            rule_id, choice = marks.decode(value)
            if action_id == marks.SNOOZE and choice is None:
                raise ValueError("no snooze length")
        except ValueError as exc:
            bot._count("bad_actions")
            log_event(log, "action_refused", level=30, action=action_id, reason=str(exc), user=where["user_id"])
            if where["response_url"]:
                respond(text=REFUSED, response_type="ephemeral", replace_original=False)
            return
        after = None
        if where["message_ts"]:
            after = alert_clicks.message_updater(bot, rule_id, where["channel_id"], where["message_ts"],
                                                 body.get("message") or {})
        bot.submit(Job(
            surface="click",
            text=alert_clicks.command_for(action_id, rule_id, choice),
            user_id=where["user_id"],
            channel_id=where["channel_id"],
            team_id=where["team_id"],
            after=after,
        ))

    @app.action(re.compile(f"^({'|'.join(app_home.HOME_ACTIONS)})$"))
    def on_home_click(ack, body, action, client):
        """The App Home's buttons: forms open at once (the trigger lasts 3 s); removals and
        re-asks are the typed commands / questions, submitted through the same gate."""
        ack()
        where = click_context(bot, body)
        user, action_id = where["user_id"], action.get("action_id")
        if action_id == app_home.ASK:
            open_view(bot, where["trigger_id"], modals.ask_view())
            return
        if action_id in (app_home.NEW_DIGEST, app_home.NEW_ALERT):
            tz = bot.user_tz(user) or "UTC"
            view = (modals.digest_view(kpis=[], channel=None, tz=tz) if action_id == app_home.NEW_DIGEST
                    else modals.alert_view(kpi=None, channel=None, tz=tz))
            open_view(bot, where["trigger_id"], view)
            return
        key = {app_home.REMOVE_ALERT: "a", app_home.EDIT_ALERT: "a", app_home.REASK: "q", app_home.SAVE: "q",
               app_home.FAV_ASK: "f", app_home.FAV_REMOVE: "f"}.get(action_id, "d")
        try:
            item = app_home.decode(action.get("value"), key)
        except ValueError as exc:
            bot._count("bad_actions")
            log_event(log, "action_refused", level=30, action=action_id, reason=str(exc), user=user)
            return
        from bot.schedules import store
        from storage.state import get_state_engine

        def republish(_reply) -> None:
            app_home.publish(bot, user)

        if action_id in (app_home.REASK, app_home.SAVE, app_home.FAV_ASK, app_home.FAV_REMOVE):
            bot.pool.submit(on_question, action_id, item, user)
            return
        if action_id == app_home.EDIT_ALERT:
            rule = store.get_rule(get_state_engine(), item)
            if rule is None or rule.owner != user or rule.source == "file":  # the edit removes the old one
                return
            threshold = f"{rule.threshold:g}" + ("%" if rule.relative else "")
            open_view(bot, where["trigger_id"], modals.alert_view(
                kpi=rule.metric, channel=rule.channel_id, tz=rule.timezone, rule_id=rule.id,
                condition=rule.condition, threshold=threshold, window=rule.window_days,
                keep={"by": rule.dimension, "for": rule.consecutive, "min": rule.min_sample}))
            return
        if action_id == app_home.REMOVE_ALERT:
            rule = store.get_rule(get_state_engine(), item)
            if rule is not None:
                bot.submit(Job(surface="home", text=f"alert remove {item}", user_id=user,
                               channel_id=rule.channel_id, after=republish))
            return
        digest = store.get_digest(get_state_engine(), item)
        if digest is None:
            return
        if action_id == app_home.REMOVE_DIGEST:
            bot.submit(Job(surface="home", text=f"digest remove {item}", user_id=user,
                           channel_id=digest.channel_id, after=republish))
            return
        if digest.created_by != user:  # the edit removes the old one: only its owner may
            return
        spec = digest.spec
        day = (modals.DAYS[spec.weekday or 0] if spec.frequency == "weekly"
               else spec.day_of_month or "1" if spec.frequency == "monthly" else "mon")
        open_view(bot, where["trigger_id"], modals.digest_view(
            kpis=list(spec.metrics), channel=digest.channel_id, tz=spec.timezone, digest_id=digest.id,
            frequency=spec.frequency, day=day, at_time=spec.at_time))

    def on_question(action_id: str, item: int, user: str) -> None:
        """Recent questions and favourites (a worker: these read the state database)."""
        from bot import favourites

        if action_id == app_home.FAV_REMOVE:
            favourites.remove(item, user)
            app_home.publish(bot, user)
            return
        if action_id == app_home.FAV_ASK:
            question = favourites.question(item, user)
        else:
            question = app_home.question_of(item, user)
        if question is None:  # not theirs, or gone
            return
        if action_id == app_home.SAVE:
            favourites.add(user, question)
            app_home.publish(bot, user)
            return
        reask(question, user)

    def reask(question: str, user: str) -> None:
        """A recent or favourite question asked again, answered in the user's DM with the bot."""
        try:
            dm = bot.client.conversations_open(users=user)["channel"]["id"]
        except (SlackApiError, SlackClientError, OSError, KeyError, TypeError):
            log_event(log, "conversations_open_failed", level=30, user=user)
            return
        bot.submit(Job(surface="dm", text=question, user_id=user, channel_id=dm, channel_type="im"))

    @app.action(re.compile(".*"))
    def on_action(ack):
        ack()  # anything else (links, pickers we read only on submit): acknowledged, nothing to do
