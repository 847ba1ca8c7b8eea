"""``/kpi digest …`` and ``/kpi alert …`` in Slack, ``kpibot digest …`` / ``kpibot alert …`` in a terminal.

Both front ends call :func:`run_command` with the same words; Slack through :func:`handle`
(the router passes who asked, where, and their time zone), the terminal through :func:`cli`
(``--channel C123``, ``--user U123``, ``--tz Europe/Berlin``). A command either succeeds
completely or stores nothing: every definition is parsed and validated before any write.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from slack_sdk import WebClient
from sqlalchemy import Engine, RowMapping
from sqlalchemy.exc import SQLAlchemyError

from bot import mrkdwn
from bot.logging import event, get_logger
from bot.policy import allows_schedule, may_list
from bot.policy import current as current_policy
from metrics.catalogue import CATALOGUE
from storage.state import get_state_engine

from . import digests as digest_mod
from . import rules_file, scheduler, store
from .alerts import when
from .clock import aware
from .config import Config
from .parse import (
    ALERT_EXAMPLES,
    DIGEST_EXAMPLE,
    CommandError,
    check_zone,
    parse_alert,
    parse_digest,
    parse_until,
)

log = get_logger("kpibot.schedules")

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
MAX_SNOOZE = timedelta(days=90)

DIGEST_HELP = f"""*Digests* — KPIs posted on a schedule in this channel:
• `digest add daily|weekly|monthly [mon…sun | 1-28 | last] HH:MM [Europe/Berlin] <kpi> <kpi>…`
  e.g. {DIGEST_EXAMPLE}. The time zone defaults to yours (from Slack), then KPI_TIMEZONE.
  Each digest reports the last complete day, week or month, compared with the one before.
• `digest list [all]` · `digest remove <id>` · `digest preview <id>` (posts it now, marked as a preview)"""

ALERT_HELP = f"""*Alerts* — told once when a KPI crosses a line, updated while it lasts:
• `alert add <kpi> below|above <value>` — e.g. `nps below 30`, `first_response_time above 1h`
• `alert add <kpi> drops|rises <amount> [points|%] [day-over-day|week-over-week|month-over-month]`
• options: `by <dimension>` (one alert per segment), `over 14d` (window, default 7 days),
  `for 3 windows` (consecutive breaches), `min 50` (responses, survey KPIs; default 30), a time zone
• `alert list [all]` · `alert remove <id>` · `alert snooze <id> 2d|3h|1w|until 2026-04-01|until recovered|off` · `alert ack <id>`
Examples: {ALERT_EXAMPLES}."""


@dataclass
class Ctx:
    channel_id: str | None
    user_id: str | None
    user_tz: str | None
    now: datetime
    surface: str  # slack | cli
    state: Engine
    config: Config
    client: WebClient | None = None

    @property
    def default_tz(self) -> str:
        return check_zone(self.user_tz) or self.config.default_timezone

    def tz_source(self, tz: str) -> str:
        if check_zone(self.user_tz) == tz:
            return "from your Slack profile" if self.surface == "slack" else "from --tz"
        if tz == self.config.default_timezone:
            return "the configured default, KPI_TIMEZONE"
        return "as given"


class Reply(str):
    """The reply text, with the exit code the terminal should use."""

    code: int = EXIT_OK
    reason: str | None = None  # for the audit log: refused-policy | bad-question | error (None: done)

    @classmethod
    def make(cls, text: str, code: int = EXIT_OK) -> Reply:
        reply = cls(text)
        reply.code = code
        return reply


def handle(
    args: list[str],
    *,
    channel_id: str,
    user_id: str,
    user_tz: str | None,
    now: datetime,
    client: WebClient | None = None,
    state_url: str | None = None,
) -> str:
    """A ``/kpi digest …`` or ``/kpi alert …`` command from Slack; returns the (ephemeral) reply."""
    return run_command(args, channel_id=channel_id or None, user_id=user_id or None, user_tz=user_tz,
                       now=now, surface="slack", client=client, state_url=state_url)


def run_command(
    args: list[str],
    *,
    channel_id: str | None,
    user_id: str | None,
    user_tz: str | None,
    now: datetime,
    surface: str,
    client: WebClient | None = None,
    state_url: str | None = None,
) -> Reply:
    reply = _run_command(args, channel_id=channel_id, user_id=user_id, user_tz=user_tz, now=now,
                         surface=surface, client=client, state_url=state_url)
    if reply.code != EXIT_OK and reply.reason is None:  # a failed command is never "answered"
        reply.reason = "bad-question" if reply.code == EXIT_BAD_INPUT else "error"
    return reply


def _run_command(
    args: list[str],
    *,
    channel_id: str | None,
    user_id: str | None,
    user_tz: str | None,
    now: datetime,
    surface: str,
    client: WebClient | None = None,
    state_url: str | None = None,
) -> Reply:
    words = [w for w in args if w]
    if not words or words[0].lower().rstrip("s") not in ("digest", "alert"):
        return Reply.make("Say `digest …` or `alert …`.\n" + DIGEST_HELP + "\n" + ALERT_HELP, EXIT_BAD_INPUT)
    kind = words[0].lower().rstrip("s")
    try:
        config = Config.from_env()
        ctx = Ctx(channel_id, user_id, user_tz, aware(now), surface, get_state_engine(state_url), config, client)
        sub = words[1].lower() if len(words) > 1 else "help"
        rest = words[2:]
        table = DIGEST_COMMANDS if kind == "digest" else ALERT_COMMANDS
        command = table.get(sub)
        if command is None:
            usage = DIGEST_HELP if kind == "digest" else ALERT_HELP
            return Reply.make(f"I don't know `{kind} {sub}`.\n{usage}", EXIT_BAD_INPUT)
        return command(rest, ctx)
    except CommandError as exc:
        reply = Reply.make(str(exc), EXIT_BAD_INPUT)
        reply.reason = getattr(exc, "reason", None)  # "refused-policy" for the audit log
        return reply
    except ValueError as exc:  # configuration (KPI_TIMEZONE, KPI_GRACE_HOURS …)
        return Reply.make(f"kpibot is misconfigured: {exc}", EXIT_FAILED)
    except SQLAlchemyError as exc:
        first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
        event(log, "schedules_db_error", level=40, error=first[:200], command=" ".join(words[:2]))
        # driver text (host, port, file paths) is for the log and the terminal, not for Slack
        why = f" ({first[:160]})" if surface == "cli" else ""
        return Reply.make(f"The schedules database is not answering{why}; nothing was changed.", EXIT_FAILED)


# ---- digests --------------------------------------------------------------------------------------


def _need_channel(ctx: Ctx) -> str:
    if ctx.channel_id:
        return ctx.channel_id
    if ctx.surface == "cli":
        raise CommandError("Say which channel to post in with `--channel C0123456789`.")
    raise CommandError("Use this command in the channel the digest or alert should post to.")


MAX_ID = 2**31 - 1  # the id column is a 32-bit INTEGER on PostgreSQL


def _id(rest: list[str], what: str) -> int:
    if not rest or not re.fullmatch(r"#?[0-9]+", rest[0]):  # ASCII digits: \d also takes "٣"
        raise CommandError(f"Give the {what}'s number, e.g. `{what} remove 3` (see `{what} list`).")
    number = rest[0].lstrip("#")
    if len(number) > 10 or int(number) > MAX_ID:
        raise CommandError(f"There is no {what} #{number[:20]}{'…' if len(number) > 20 else ''} (see `{what} list`).")
    return int(number)


def _kpi_names(ids: tuple[str, ...] | list[str]) -> str:
    return ", ".join(CATALOGUE[i].label if i in CATALOGUE else i for i in ids)


def _check_caps(kind: str, channel: str, ctx: Ctx) -> None:
    """Refuse one more digest or alert rule past ``KPI_MAX_RULES_PER_CHANNEL`` / ``_PER_USER``
    (Slack only). A count then an insert: two adds at the same instant may both pass."""
    if ctx.surface != "slack":
        return
    if kind == "digest":
        items = [(d.channel_id, d.created_by) for d in store.active_digests(ctx.state)]
    else:
        items = [(r.channel_id, r.owner) for r in store.active_rules(ctx.state)]
    cap_c, cap_u = ctx.config.max_per_channel, ctx.config.max_per_user
    what = "digests" if kind == "digest" else "alert rules"
    if sum(1 for c, _ in items if c == channel) >= cap_c:
        raise CommandError(f"This channel already has {cap_c} {what}, the most allowed. "
                           f"Remove one first (`/kpi {kind} list`).")
    if ctx.user_id and sum(1 for _, u in items if u == ctx.user_id) >= cap_u:
        raise CommandError(f"You already have {cap_u} {what}, the most allowed per person. "
                           f"Remove one first (`/kpi {kind} list all`).")


def digest_add(rest: list[str], ctx: Ctx) -> Reply:
    spec = parse_digest(rest, default_tz=ctx.default_tz)
    channel = _need_channel(ctx)
    _check_policy(spec.metrics, channel, ctx)
    _check_caps("digest", channel, ctx)
    digest = store.add_digest(ctx.state, spec, channel_id=channel, created_by=ctx.user_id, now=ctx.now,
                              source=ctx.surface)
    scheduler.notify_changed()
    event(log, "digest_added", digest=digest.id, channel=channel, schedule=spec.command_text(), user=ctx.user_id)
    nxt = digest_mod.next_slot(digest_mod.trigger_for(spec), ctx.now)
    unit = digest_mod.UNIT[spec.frequency]
    return Reply.make(
        f"✅ Digest #{digest.id} added: {spec.schedule_text()} in {mrkdwn.channel(channel)} — {_kpi_names(spec.metrics)}.\n"
        f"Time zone: {spec.timezone}, {ctx.tz_source(spec.timezone)}. "
        f"Each digest reports the last complete {unit} against the {unit} before.\n"
        f"First one: {when(nxt, spec.timezone) if nxt else 'never'}. "
        f"`/kpi digest preview {digest.id}` posts one now; `/kpi digest remove {digest.id}` stops it."
    )


def digest_list(rest: list[str], ctx: Ctx) -> Reply:
    errors = _sync_file(ctx)
    show_all = ctx.surface == "cli" or (rest and rest[0].lower() == "all")
    channel = None if show_all and not (ctx.surface == "cli" and ctx.channel_id) else ctx.channel_id
    items = [d for d in store.active_digests(ctx.state, channel)
             if ctx.surface == "cli" or may_list(d.metrics, None, d.channel_id, ctx.channel_id, ctx.user_id)]
    last = store.last_deliveries(ctx.state, "digest", [d.id for d in items])
    where = "" if channel is None else f" in {mrkdwn.channel(channel)}"
    if not items:
        lines = [f"No digests{where}. Add one with {DIGEST_EXAMPLE}."]
    else:
        lines = [f"*Digests{where}:*"]
        for d in items:
            nxt = digest_mod.next_slot(digest_mod.trigger_for(d.spec), ctx.now)
            line = (
                f"• #{d.id} {d.spec.schedule_text()} in {mrkdwn.channel(d.channel_id)} — {', '.join(d.metrics)}"
                f" · next {when(nxt, d.timezone) if nxt else 'never'}"
            )
            if d.source == "file":
                line += " · from the rules file"
            row = last.get(d.id)
            if row is not None:
                line += "\n   " + _last_line(row, d.timezone)
            lines.append(line)
    lines += [f"⚠️ {e}" for e in errors]
    return Reply.make("\n".join(lines))


def _last_line(row, tz: str) -> str:
    slot = f" (due {when(aware(row['slot']), tz)})" if row["slot"] else ""
    status = row["status"]
    if status == "posted":
        return f"last: posted {when(aware(row['posted_at']), tz)}{slot}"
    if status == "skipped":
        return f"last: skipped{slot}: {row['reason']}"
    if status in ("failed", "claimed", "sending"):
        return f"⚠️ last: {status}{slot}: {row['reason'] or 'in progress'} — retrying"
    return f"⚠️ last: not delivered{slot}: {row['reason']}"


class NotAllowed(CommandError):
    """Refused by the KPI policy (``KPI_POLICY``): a KPI not allowed there, or not the owner."""

    reason = "refused-policy"


def _policy():
    return current_policy()


def _check_policy(kpis, channel: str, ctx: Ctx, dimension: str | None = None) -> None:
    """Digests and alerts obey the KPI policy of the channel they post in (checked again at
    delivery): by the data each KPI reads (bot.policy), the policy file as it is now."""
    refused = [k for k in kpis if not allows_schedule(k, channel, ctx.user_id, dimension)]
    if refused:
        event(log, "policy_refused", kpi=",".join(refused), channel=channel, user=ctx.user_id, dimension=dimension)
        names = ", ".join(f"`{k}`" for k in refused)
        raise NotAllowed(f"I can't post {names} in {mrkdwn.channel(channel)}: it reads data the KPI policy keeps "
                         "to approved channels and people. An admin can allow it in the policy file (`KPI_POLICY`).")


def _may_change(created_by: str | None, ctx: Ctx, what: str, item_id: int) -> None:
    """In Slack, only whoever added it or a listed admin (policy ``admins``) may remove or change it."""
    if ctx.surface != "slack" or (created_by and ctx.user_id == created_by) or _policy().is_admin(ctx.user_id):
        return
    event(log, "change_refused", item=f"{what.lower()}:{item_id}", user=ctx.user_id, owner=created_by)
    who = f"{mrkdwn.user(created_by)}, who added it," if created_by else "whoever added it"
    raise NotAllowed(f"Only {who} or a kpibot admin can remove or change {what.lower()} #{item_id}.")


def _own(item_channel: str, ctx: Ctx, what: str, item_id: int) -> None:
    if ctx.surface == "slack" and ctx.channel_id and item_channel != ctx.channel_id:
        raise CommandError(f"{what} #{item_id} posts in {mrkdwn.channel(item_channel)}; manage it from there.")


def digest_remove(rest: list[str], ctx: Ctx) -> Reply:
    digest_id = _id(rest, "digest")
    digest = store.get_digest(ctx.state, digest_id)
    if digest is None:
        raise CommandError(f"There is no digest #{digest_id}. `/kpi digest list` shows them.")
    _own(digest.channel_id, ctx, "Digest", digest_id)
    if digest.source == "file":
        raise CommandError(f"Digest #{digest_id} comes from the rules file (KPI_RULES_FILE); remove it there.")
    _may_change(digest.created_by, ctx, "Digest", digest_id)
    store.remove_digest(ctx.state, digest_id, ctx.now)
    scheduler.notify_changed()
    event(log, "digest_removed", digest=digest_id, user=ctx.user_id)
    return Reply.make(f"🗑️ Digest #{digest_id} ({digest.spec.schedule_text()}) removed.")


def digest_preview(rest: list[str], ctx: Ctx) -> Reply:
    digest_id = _id(rest, "digest")
    digest = store.get_digest(ctx.state, digest_id)
    if digest is None:
        raise CommandError(f"There is no digest #{digest_id}. `/kpi digest list` shows them.")
    _own(digest.channel_id, ctx, "Digest", digest_id)
    if ctx.surface == "cli" and ctx.client is None and not os.environ.get("SLACK_BOT_TOKEN") \
            and scheduler.running_service() is None:
        return _terminal_preview(digest, ctx)
    service = _service(ctx)
    sent = service.preview(digest_id, ctx.now, requested_by=ctx.user_id)
    if sent.ok:
        return Reply.make(f"👀 Posted a preview of digest #{digest_id} in {mrkdwn.channel(digest.channel_id)}.")
    reason = sent.failure.reason if sent.failure else "unknown error"
    return Reply.make(f"⚠️ The preview of digest #{digest_id} could not be posted: {reason}.", EXIT_FAILED)


def _terminal_preview(digest, ctx: Ctx) -> Reply:
    """No Slack token in a terminal: show the digest here instead of refusing (nothing is
    posted or recorded; the chart is left out)."""
    content = digest_mod.build(digest.id, digest.spec, ctx.now, metrics_url=None, preview=True, with_chart=False)
    return Reply.make(
        f"(Not posted: SLACK_BOT_TOKEN is not set. This is digest #{digest.id} as it would be posted "
        f"in <#{digest.channel_id}> now, without its chart.)\n\n{content.text}"
    )


def _service(ctx: Ctx) -> scheduler.ScheduleService:
    running = scheduler.running_service()
    if running is not None and ctx.client is None and running.state.url == ctx.state.url:
        return running
    client = ctx.client
    if client is None:
        if not os.environ.get("SLACK_BOT_TOKEN"):
            raise CommandError("Set SLACK_BOT_TOKEN so that I can post the preview to Slack.")
        from bot.slack_client import make_client

        client = make_client()
    return scheduler.ScheduleService(client, state=ctx.state, config=ctx.config)


# ---- alerts ---------------------------------------------------------------------------------------


def alert_add(rest: list[str], ctx: Ctx) -> Reply:
    spec = parse_alert(rest, default_tz=ctx.default_tz)
    channel = _need_channel(ctx)
    _check_policy([spec.metric], channel, ctx, spec.dimension)
    _check_caps("alert", channel, ctx)
    metric = CATALOGUE[spec.metric]
    text = spec.describe(metric)
    rule = store.add_rule(ctx.state, spec, text, channel_id=channel, owner=ctx.user_id, now=ctx.now,
                          source=ctx.surface)
    event(log, "alert_added", rule=rule.id, channel=channel, text=text, user=ctx.user_id)
    notes = []
    if metric.survey:
        min_n = spec.min_sample or ctx.config.min_sample
        notes.append(f"it needs at least {min_n} responses in a window")
        if spec.condition in ("drops", "rises"):
            notes.append("and a change bigger than the margin of error")
    if spec.consecutive > 1:
        notes.append(f"it fires after {spec.consecutive} breaching windows in a row")
    extra = f" As a survey KPI, {' '.join(notes)}." if metric.survey else (f" {notes[0].capitalize()}." if notes else "")
    return Reply.make(
        f"✅ Alert #{rule.id} added in {mrkdwn.channel(channel)}: {text}.\n"
        f"Checked every {_minutes(ctx.config)} over the last complete {spec.window_days}-day window "
        f"(days end at midnight {spec.timezone}).{extra} It posts once when it starts, updates that "
        f"message while it lasts, and replies in its thread when it recovers."
    )


def _minutes(config: Config) -> str:
    minutes = int(config.alert_interval.total_seconds() // 60)
    return "hour" if minutes == 60 else f"{minutes} minutes"


def alert_list(rest: list[str], ctx: Ctx) -> Reply:
    errors = _sync_file(ctx)
    show_all = ctx.surface == "cli" or (rest and rest[0].lower() == "all")
    channel = None if show_all and not (ctx.surface == "cli" and ctx.channel_id) else ctx.channel_id
    rules = [r for r in store.active_rules(ctx.state, channel)
             if ctx.surface == "cli" or may_list([r.metric], r.dimension, r.channel_id, ctx.channel_id, ctx.user_id)]
    where = "" if channel is None else f" in {mrkdwn.channel(channel)}"
    if not rules:
        lines = [f"No alerts{where}. Add one, e.g. {ALERT_EXAMPLES}."]
    else:
        lines = [f"*Alerts{where}:*"]
        fires: dict[int, RowMapping] = {}  # rule id -> its latest delivery row
        for kind in ("alert_fire", "alert_followup", "alert_recover", "report"):
            for ref, row in store.last_deliveries(ctx.state, kind, [r.id for r in rules]).items():
                if ref not in fires or row["id"] > fires[ref]["id"]:
                    fires[ref] = row
        for r in rules:
            line = f"• #{r.id} {r.text} in {mrkdwn.channel(r.channel_id)}"
            if r.source == "file":
                line += " · from the rules file"
            if r.snoozed(ctx.now):
                line += f" · 😴 snoozed until {when(r.snoozed_until, r.timezone)}"  # type: ignore[arg-type]  # snoozed: set
            breaching = store.breaching_segments(ctx.state, r.id)
            if breaching:
                segs = ", ".join(s or r.metric for s in breaching[:10])
                line += f" · 🚨 breaching: {segs}"
            last = fires.get(r.id)
            if last is not None and last["status"] not in ("posted", "skipped"):
                line += f"\n   ⚠️ last message {last['status']}: {last['reason'] or 'in progress'}"
            lines.append(line)
    lines += [f"⚠️ {e}" for e in errors]
    return Reply.make("\n".join(lines))


def alert_remove(rest: list[str], ctx: Ctx) -> Reply:
    rule_id = _id(rest, "alert")
    rule = store.get_rule(ctx.state, rule_id)
    if rule is None:
        raise CommandError(f"There is no alert #{rule_id}. `/kpi alert list` shows them.")
    _own(rule.channel_id, ctx, "Alert", rule_id)
    if rule.source == "file":
        raise CommandError(
            f"Alert #{rule_id} comes from the rules file (KPI_RULES_FILE); remove it there, "
            f"or `/kpi alert snooze {rule_id} 1w`."
        )
    _may_change(rule.owner, ctx, "Alert", rule_id)
    store.remove_rule(ctx.state, rule_id, ctx.now)
    event(log, "alert_removed", rule=rule_id, user=ctx.user_id)
    return Reply.make(f"🗑️ Alert #{rule_id} ({rule.text}) removed.")


def alert_snooze(rest: list[str], ctx: Ctx) -> Reply:
    rule_id = _id(rest, "alert")
    rule = store.get_rule(ctx.state, rule_id)
    if rule is None:
        raise CommandError(f"There is no alert #{rule_id}. `/kpi alert list` shows them.")
    _own(rule.channel_id, ctx, "Alert", rule_id)
    _may_change(rule.owner, ctx, "Alert", rule_id)
    words = rest[1:]
    if words and words[0].lower() in ("off", "end", "stop", "cancel", "none"):
        store.snooze_rule(ctx.state, rule_id, None)
        return Reply.make(f"🔔 Alert #{rule_id} is no longer snoozed.")
    if [w.lower() for w in words] in (["until", "recovered"], ["until", "it", "recovers"], ["recovered"]):
        from . import marks

        if not marks.quiet_until_recovered(ctx.state, rule_id, ctx.user_id, ctx.now):
            raise CommandError(f"Alert #{rule_id} is not firing now; there is nothing to quiet until it recovers.")
        event(log, "alert_quiet_until_recovered", rule=rule_id, user=ctx.user_id)
        return Reply.make(f"🔕 Alert #{rule_id} ({rule.text}) stays quiet until it recovers; "
                          "the recovery is still posted.")
    until = parse_until(words, now=ctx.now, tz=rule.timezone)
    if until - ctx.now > MAX_SNOOZE:
        raise CommandError("A snooze can last up to 90 days; remove the alert to stop it for good.")
    store.snooze_rule(ctx.state, rule_id, until)
    event(log, "alert_snoozed", rule=rule_id, until=until.isoformat(), user=ctx.user_id)
    return Reply.make(
        f"😴 Alert #{rule_id} ({rule.text}) snoozed until {when(until, rule.timezone)}. "
        f"It stays quiet until then; `/kpi alert snooze {rule_id} off` ends it early."
    )


def alert_ack(rest: list[str], ctx: Ctx) -> Reply:
    """Say "I'm on it": shown on the alert message; anyone in its channel may."""
    from . import marks

    rule_id = _id(rest, "alert")
    rule = store.get_rule(ctx.state, rule_id)
    if rule is None:
        raise CommandError(f"There is no alert #{rule_id}. `/kpi alert list` shows them.")
    _own(rule.channel_id, ctx, "Alert", rule_id)
    if not marks.acknowledge(ctx.state, rule_id, ctx.user_id, ctx.now):
        raise CommandError(f"Alert #{rule_id} is not firing now; there is nothing to acknowledge.")
    event(log, "alert_acknowledged", rule=rule_id, user=ctx.user_id)
    return Reply.make(f"👀 Alert #{rule_id} acknowledged by {mrkdwn.user(ctx.user_id)}.")


def alert_unsnooze(rest: list[str], ctx: Ctx) -> Reply:
    return alert_snooze([*rest[:1], "off"], ctx)


def _sync_file(ctx: Ctx) -> list[str]:
    if not ctx.config.rules_file:
        return []
    return rules_file.sync(ctx.state, ctx.config.rules_file, now=ctx.now,
                           default_tz=ctx.config.default_timezone).errors


def _help(kind: str):
    return lambda rest, ctx: Reply.make(DIGEST_HELP if kind == "digest" else ALERT_HELP)


DIGEST_COMMANDS = {
    "add": digest_add, "new": digest_add, "create": digest_add,
    "list": digest_list, "ls": digest_list, "show": digest_list,
    "remove": digest_remove, "rm": digest_remove, "delete": digest_remove, "del": digest_remove,
    "preview": digest_preview, "test": digest_preview,
    "help": _help("digest"),
}
ALERT_COMMANDS = {
    "add": alert_add, "new": alert_add, "create": alert_add,
    "list": alert_list, "ls": alert_list, "show": alert_list,
    "remove": alert_remove, "rm": alert_remove, "delete": alert_remove, "del": alert_remove,
    "ack": alert_ack, "acknowledge": alert_ack,
    "snooze": alert_snooze, "mute": alert_snooze, "unsnooze": alert_unsnooze, "unmute": alert_unsnooze,
    "help": _help("alert"),
}


# ---- the terminal ---------------------------------------------------------------------------------

_OPTIONS = {"--channel": "channel", "-c": "channel", "--user": "user", "--owner": "user", "--tz": "tz",
            "--timezone": "tz", "--state-url": "state_url"}


def cli(args: list[str]) -> int:
    """``kpibot digest …`` / ``kpibot alert …``: the Slack commands, with ``--channel C123``."""
    words: list[str] = []
    opts: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if name in _OPTIONS:
            if not eq:
                if i + 1 >= len(args):
                    print(f"{name} needs a value", file=sys.stderr)
                    return EXIT_BAD_INPUT
                value = args[i + 1]
                i += 1
            opts[_OPTIONS[name]] = value
        elif arg in ("-h", "--help"):
            words.append("help")
        else:
            words.append(arg)
        i += 1
    if not logging.getLogger().handlers:  # the reply says it all; no bare log lines in a terminal
        logging.getLogger("kpibot.schedules").addHandler(logging.NullHandler())
    if opts.get("tz") and not check_zone(opts["tz"]):
        print(f"--tz {opts['tz']} is not a time zone (try Europe/Berlin)", file=sys.stderr)
        return EXIT_BAD_INPUT
    reply = run_command(
        words, channel_id=opts.get("channel"), user_id=opts.get("user"), user_tz=opts.get("tz"),
        now=datetime.now(UTC), surface="cli", state_url=opts.get("state_url"),
    )
    stream = sys.stdout if reply.code == EXIT_OK else sys.stderr
    print(terminal_text(reply), file=stream)
    return reply.code


def terminal_text(text: str) -> str:
    """Slack mrkdwn to plain text: <#C1> -> #C1, <@U1> -> @U1, no bold stars."""
    text = mrkdwn.plain(text)
    text = re.sub(r"<#([A-Z0-9]+)(?:\|[^>]*)?>", r"#\1", text)
    text = re.sub(r"<@([A-Z0-9]+)>", r"@\1", text)
    return text.replace("*", "").replace("/kpi ", "kpibot ")
