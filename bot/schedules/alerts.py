"""Alert rules: evaluate over the last complete window, fire once, update, recover.

A rule is evaluated over a rolling window of whole days in its time zone, ending at the
last local midnight (default 7 days: "the 7 days to Sunday"); drops and rises compare it
with the same number of days before. Evaluations run often (hourly by default) but the
window only moves once a day, so "N consecutive windows" means N days in a row.

Each rule (and each segment of a ``by <dimension>`` rule) has a state row. The life of an
alert::

    ok ──breach × consecutive──► FIRE: one message in the channel (episode E)
    breaching ──new window, still breaching──► edit that message + a reply in its thread
    breaching ──clearly not breaching──► edit it to "recovered" + a "recovered" reply
    (not enough responses, a change inside the margin of error, or a window whose data is not
     fully loaded yet — data through < the window's last day: hold, say nothing)

Every post is a delivery whose key holds the episode number, so two schedulers evaluating
the same rule at once post one alert between them.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, RowMapping, select, update

from bot import audit
from bot.logging import event, get_logger
from bot.policy import allows_schedule
from metrics import api, freshness, render
from metrics.catalogue import CATALOGUE
from metrics.periods import Period, Settings
from metrics.spec import Metric
from storage import database
from storage.state import alert_rules, alert_states, insert_unique

from . import marks
from .clock import aware, naive_utc
from .config import Config
from .delivery import Op, Outbox, Sent
from .parse import change_text, threshold_text
from .store import Rule

log = get_logger("kpibot.schedules")

MAX_SEGMENTS = 200  # a "by" rule watches at most this many segments (the largest)
GROUP_LINES = 25  # segments listed in a grouped alert message (the rest are counted)


# ---- windows and readings ------------------------------------------------------------------------


def windows_for(rule: Rule, now: datetime) -> tuple[Period, Period]:
    """The last complete window (whole local days up to today's midnight) and the one before."""
    today = aware(now).astimezone(ZoneInfo(rule.timezone)).date()
    days = timedelta(days=rule.window_days)
    start = today - days
    current = Period(start, today, window_label(start, today), "day")
    before = Period(start - days, start, window_label(start - days, start), "day")
    return current, before


def window_label(start: date, end: date) -> str:
    last = end - timedelta(days=1)
    if start == last:
        return f"{last:%a %-d %b %Y}"
    return f"{(end - start).days} days to {last:%a %-d %b %Y}"


@dataclass(frozen=True)
class Reading:
    segment: str  # "" for the whole KPI
    value: float | None = None
    n: int | None = None
    moe: float | None = None
    prev_value: float | None = None
    prev_n: int | None = None
    prev_moe: float | None = None
    through: date | None = None  # the last day the KPI's data reaches
    loaded: bool = True  # False: the data ends before the window does; nothing was read


@dataclass(frozen=True)
class Verdict:
    kind: str  # breach, ok, unknown
    reading: Reading
    why: str = ""
    change: float | None = None  # in the KPI's unit (or percent, for relative rules)
    noise: float | None = None  # combined margin of error of the change


def read(rule: Rule, metric: Metric, current: Period, before: Period, metrics_url: str | None) -> dict[str, Reading]:
    """One query for both windows (and every segment): values, sample sizes, margins of error.
    A window the data does not fully cover is not read at all: {"": Reading with only
    ``through``}, which :func:`judge` holds on (an import that has not run is not a drop)."""
    settings = replace(Settings.from_env(), timezone=rule.timezone)
    engine = database.get_engine(metrics_url)
    through = freshness.data_through(metric.tables, engine, settings, current.end - timedelta(days=1))
    if through is not None and not freshness.fully_loaded(through, current.end):
        return {"": Reading("", through=through, loaded=False)}
    cells = api.cells(  # the one query path: an unchanged check over unchanged data is a look-up
        metric.id,
        [(current.start, current.end), (before.start, before.end)],
        settings,
        url=metrics_url,
        dimension=rule.dimension,
    )
    segments = {group for (_, group) in cells}
    out: dict[str, Reading] = {}
    for group in segments:
        now_cell = cells.get((0, group))
        prev_cell = cells.get((1, group))
        key = group or ""
        out[key] = Reading(
            segment=key,
            value=now_cell.value if now_cell else None,
            n=now_cell.n if now_cell else None,
            moe=now_cell.moe if now_cell else None,
            prev_value=prev_cell.value if prev_cell else None,
            prev_n=prev_cell.n if prev_cell else None,
            prev_moe=prev_cell.moe if prev_cell else None,
            through=through,
        )
    return out


def min_sample_for(rule: Rule, metric: Metric, config: Config) -> int:
    if rule.min_sample is not None:
        return rule.min_sample
    return config.min_sample if metric.survey else 0


def judge(rule: Rule, metric: Metric, reading: Reading, min_n: int) -> Verdict:
    """Is this window a breach, clearly fine, or too uncertain to say?"""
    value, x = reading.value, rule.threshold
    if not reading.loaded:
        return Verdict("unknown", reading, f"the window is not fully loaded ({freshness.through_text(reading.through)})")
    if value is None:
        return Verdict("unknown", reading, "no data in the window")
    if min_n and (reading.n or 0) < min_n:
        return Verdict("unknown", reading, f"only {reading.n or 0} responses in the window (needs {min_n})")
    if rule.condition == "below":
        return Verdict("breach" if value < x else "ok", reading)
    if rule.condition == "above":
        return Verdict("breach" if value > x else "ok", reading)
    prev = reading.prev_value
    if prev is None:
        return Verdict("unknown", reading, "no data in the window before to compare with")
    if min_n and (reading.prev_n or 0) < min_n:
        return Verdict(
            "unknown", reading, f"only {reading.prev_n or 0} responses in the window before (needs {min_n})"
        )
    change = value - prev
    if rule.relative:
        if prev == 0:
            return Verdict("unknown", reading, "the window before was zero: no percent change")
        size = 100.0 * change / abs(prev)
    else:
        size = change
    moved = -size if rule.condition == "drops" else size
    noise = None
    if reading.moe is not None and reading.prev_moe is not None:
        noise = math.sqrt(reading.moe**2 + reading.prev_moe**2)
    if moved >= x:
        if noise is not None and abs(change) <= noise:
            return Verdict(
                "unknown", reading, f"the change is within the margin of error (±{noise:.1f})", size, noise
            )
        return Verdict("breach", reading, "", size, noise)
    return Verdict("ok", reading, "", size, noise)


# ---- words ------------------------------------------------------------------------------------------


def subject(rule: Rule, metric: Metric, segment: str) -> str:
    if rule.dimension and segment:
        return f"{metric.label} for {rule.dimension} = {segment}"
    return metric.label


def condition_text(rule: Rule, metric: Metric) -> str:
    if rule.condition in ("above", "below"):
        return f"{rule.condition} {threshold_text(metric, rule.threshold)}"
    verb = "dropped" if rule.condition == "drops" else "rose"
    if rule.relative:
        size = f"{rule.threshold:g}%"
    else:
        size = change_text(metric, rule.threshold)
    return f"{verb} by {size} or more vs the {rule.window_days} days before"


def reading_text(rule: Rule, metric: Metric, verdict: Verdict, current: Period) -> str:
    r = verdict.reading
    text = f"{render.format_value(metric, r.value)}"
    details = []
    if r.n is not None and metric.survey:
        details.append(f"n = {r.n:,}" + (f", ±{r.moe:.1f}" if r.moe is not None else ""))
    if details:
        text += f" ({'; '.join(details)})"
    text += f" over the {current.label} ({rule.timezone})"
    if rule.condition in ("drops", "rises") and r.prev_value is not None and verdict.change is not None:
        change = (
            f"{verdict.change:+.1f}%" if rule.relative else render.format_change(metric, r.value - r.prev_value)  # type: ignore[operator]  # a change: both values
        )
        text += f", vs {render.format_value(metric, r.prev_value)} before: {change}"
        if verdict.noise is not None:
            text += f" (beyond the ±{verdict.noise:.1f} margin of error)"
    if r.through is not None:
        text += f" · {freshness.through_text(r.through)}"
    return text


def when(moment: datetime, tz: str) -> str:
    return f"{aware(moment).astimezone(ZoneInfo(tz)):%a %-d %b %H:%M %Z}"


def segment_key(segment: str) -> str:
    if len(segment) <= 60 and ":" not in segment:
        return segment
    return "h" + hashlib.sha1(segment.encode()).hexdigest()[:16]  # noqa: S324 - a key, not security


# ---- the state machine ------------------------------------------------------------------------------


class AlertRunner:
    def __init__(self, state: Engine, outbox: Outbox, config: Config, metrics_url: str | None):
        self.state = state
        self.outbox = outbox
        self.config = config
        self.metrics_url = metrics_url

    def evaluate(self, rule: Rule, now: datetime) -> list[str]:
        """Evaluate one rule; returns what happened per segment (for logs and tests)."""
        if rule.snoozed(now):
            return ["snoozed"]
        metric = CATALOGUE.get(rule.metric)
        if metric is None:
            event(log, "alert_unknown_kpi", level=30, rule=rule.id, kpi=rule.metric)
            return ["unknown kpi"]
        if not allows_schedule(rule.metric, rule.channel_id, rule.owner, rule.dimension):
            # checked at every evaluation: the policy may have changed since the rule was added
            event(log, "policy_refused", level=30, rule=rule.id, kpi=rule.metric, channel=rule.channel_id)
            audit.record_delivery(kind="alert", channel_id=rule.channel_id, ref_id=rule.id, kpis=[rule.metric],
                                  outcome=audit.REFUSED_POLICY, user_id=rule.owner,
                                  detail="the KPI policy does not allow this KPI in this channel")
            return ["refused by the KPI policy"]
        current, before = windows_for(rule, now)
        try:
            readings = read(rule, metric, current, before, self.metrics_url)
        except database.DatabaseError as exc:
            event(log, "alert_read_failed", level=30, rule=rule.id, reason=str(exc))
            return [f"read failed: {exc}"]
        if not readings.get("", Reading("")).loaded:
            why = f"the window is not fully loaded ({freshness.through_text(readings[''].through)})"
            event(log, "alert_hold", rule=rule.id, why=why)
            return [f"{rule.id}/-: hold ({why})"]
        states = self._states(rule.id)
        if rule.dimension:
            largest = sorted(readings.values(), key=lambda r: (-(r.n or 0), r.segment))[:MAX_SEGMENTS]
            segments = {r.segment for r in largest} | {s for s, st in states.items() if st["status"] == "breaching"}
            if len(readings) > MAX_SEGMENTS:
                event(log, "alert_segments_capped", level=30, rule=rule.id, segments=len(readings),
                      evaluated=MAX_SEGMENTS)
        else:
            segments = {""}
        min_n = min_sample_for(rule, metric, self.config)
        outcomes = []
        # a "by" rule: the segments that start breaching now share ONE message (not one each)
        pending: list[tuple[str, int, Verdict, int]] | None = [] if rule.dimension else None
        for segment in sorted(segments):
            reading = readings.get(segment) or Reading(segment)
            verdict = judge(rule, metric, reading, min_n)
            outcomes.append(self._step(rule, metric, segment, verdict, current, states.get(segment), now, pending))
        if pending:
            outcomes.append(self._fire_group(rule, metric, current, pending, now))
        return outcomes

    def close_removed(self, now: datetime) -> list[str]:
        """Alerts still open when their rule was removed: say so on the alert message, once."""
        with self.state.connect() as conn:
            rows = conn.execute(
                select(alert_states, alert_rules.c.text, alert_rules.c.owner)
                .join(alert_rules, alert_rules.c.id == alert_states.c.rule_id)
                .where(alert_states.c.status == "breaching", alert_rules.c.removed_at.is_not(None))
            ).mappings().all()
        out = []
        edited: set[tuple[str, str]] = set()  # a grouped message is shared by its segments: edit it once
        for st in rows:
            rule_id, segment, episode = st["rule_id"], st["segment"], st["episode"]
            closed = self._update(rule_id, segment, alert_states.c.episode == episode,
                                  alert_states.c.status == "breaching", status="closed",
                                  updated_at=naive_utc(now))
            if not closed or not st["message_ts"] or (st["channel_id"], st["message_ts"]) in edited:
                continue
            edited.add((st["channel_id"], st["message_ts"]))
            text = f"⏹️ *Alert #{rule_id} removed* ({st['text']}) — no more updates here."
            ops = [Op("update", st["channel_id"], text, ts=st["message_ts"])]
            key = f"alert:{rule_id}:{segment_key(segment)}:{episode}:closed"
            did = self.outbox.claim(key, now=now, slot=now, kind="alert_closed", ref_id=rule_id, segment=segment,
                                    channel_id=st["channel_id"], owner=st["owner"],
                                    payload={"episode": episode, "ops": [o.to_json() for o in ops]})
            if did is not None:
                self.outbox.send(did, ops, now=now)
                out.append(f"{rule_id}/{segment or '-'}: closed (rule removed)")
        return out

    # ---- state rows -------------------------------------------------------------------------

    def _states(self, rule_id: int) -> dict[str, RowMapping]:
        with self.state.connect() as conn:
            rows = conn.execute(select(alert_states).where(alert_states.c.rule_id == rule_id)).mappings()
            return {r["segment"]: r for r in rows}

    def _state(self, rule_id: int, segment: str, now: datetime) -> RowMapping:
        where = (alert_states.c.rule_id == rule_id) & (alert_states.c.segment == segment)
        with self.state.begin() as conn:
            insert_unique(conn, alert_states, {
                "rule_id": rule_id, "segment": segment, "status": "ok", "episode": 0, "streak": 0,
                "updated_at": naive_utc(now),
            })
            return conn.execute(select(alert_states).where(where)).mappings().one()

    def _update(self, rule_id: int, segment: str, *conditions, **values) -> bool:
        stmt = update(alert_states).where(
            alert_states.c.rule_id == rule_id, alert_states.c.segment == segment, *conditions
        )
        with self.state.begin() as conn:
            return conn.execute(stmt.values(**values)).rowcount == 1

    # ---- one evaluation of one segment -----------------------------------------------------------

    def _step(self, rule: Rule, metric: Metric, segment: str, verdict: Verdict, current: Period,
              known: RowMapping | None, now: datetime, pending: list | None = None) -> str:
        label = f"{rule.id}/{segment or '-'}"
        r = verdict.reading
        # Quiet segments that never breached keep no state row (a "by" rule may have hundreds).
        if known is None and verdict.kind != "breach":
            if verdict.kind == "unknown":
                event(log, "alert_hold", rule=rule.id, segment=segment, why=verdict.why)
                return f"{label}: hold ({verdict.why})"
            return f"{label}: ok"
        state = known if known is not None else self._state(rule.id, segment, now)
        self._update(rule.id, segment, checked_at=naive_utc(now), last_value=r.value, last_n=r.n,
                     updated_at=naive_utc(now))
        if verdict.kind == "unknown":
            event(log, "alert_hold", rule=rule.id, segment=segment, why=verdict.why)
            return f"{label}: hold ({verdict.why})"
        if verdict.kind == "ok":
            if state["streak"] or state["streak_window"] is not None:
                self._update(rule.id, segment, streak=0, streak_window=None)
            if state["status"] == "breaching":
                return f"{label}: " + self._recover(rule, metric, segment, verdict, current, state, now)
            return f"{label}: ok"
        # a breach: count this window once, however often it is evaluated
        if state["status"] == "closed":  # a rule removed and restored from the rules file
            self._update(rule.id, segment, alert_states.c.status == "closed", status="ok")
        self._update(
            rule.id, segment,
            (alert_states.c.streak_window.is_(None)) | (alert_states.c.streak_window != current.end),
            streak=alert_states.c.streak + 1, streak_window=current.end,
        )
        state = self._state(rule.id, segment, now)
        if state["status"] == "ok":
            if state["streak"] < rule.consecutive:
                return f"{label}: breach {state['streak']}/{rule.consecutive}"
            return f"{label}: " + self._fire(rule, metric, segment, verdict, current, state, now, pending)
        if state["notified_window"] is None or state["notified_window"] < current.end:
            return f"{label}: " + self._follow_up(rule, metric, segment, verdict, current, state, now)
        return f"{label}: still breaching"

    def _key(self, rule: Rule, segment: str, episode: int, what: str) -> str:
        return f"alert:{rule.id}:{segment_key(segment)}:{episode}:{what}"

    def main_text(self, rule: Rule, metric: Metric, segment: str, verdict: Verdict, current: Period,
                  since: datetime, now: datetime, *, first: bool) -> str:
        head = f"🚨 *Alert #{rule.id}: {subject(rule, metric, segment)} {condition_text(rule, metric)}*"
        lines = [head]
        lines.append(("Now " if first else "Latest: ") + reading_text(rule, metric, verdict, current) + ".")
        status = f"Breaching since {when(since, rule.timezone)}"
        if not first:
            days = (aware(now) - aware(since)).days
            status += f" ({days + 1} days)" if days else ""
            status += f" · last checked {when(now, rule.timezone)}"
        lines.append(f"{status} · updates in the thread · `/kpi alert snooze {rule.id} 2d` to quiet it")
        return "\n".join(lines)

    def _fire(self, rule, metric, segment, verdict, current, state, now, pending=None) -> str:
        episode = state["episode"] + 1
        text = self.main_text(rule, metric, segment, verdict, current, now, now, first=True)
        ops = [Op("post", rule.channel_id, text, actions=self.buttons(rule, current))]
        key = self._key(rule, segment, episode, "fire")
        did = self.outbox.claim(
            key, now=now, slot=now, kind="alert_fire", ref_id=rule.id, segment=segment, channel_id=rule.channel_id,
            owner=rule.owner, payload={"episode": episode, "window": current.end.isoformat(),
                                       "ops": [o.to_json() for o in ops]},
        )
        if did is None:
            return "fire claimed elsewhere"
        moved = self._update(
            rule.id, segment, alert_states.c.episode == episode - 1, alert_states.c.status == "ok",
            status="breaching", episode=episode, breach_started_at=naive_utc(now), message_ts=None,
            channel_id=rule.channel_id, notified_window=current.end, updated_at=naive_utc(now),
        )
        if not moved:
            self.outbox.mark(did, "skipped", now=now, reason="the alert state moved on in another process",
                             reported_at=naive_utc(now))
            return "fire superseded"
        event(log, "alert_fired", rule=rule.id, segment=segment, episode=episode, value=verdict.reading.value)
        if pending is not None:  # posted with the other segments by _fire_group
            pending.append((segment, episode, verdict, did))
            return "fired (grouped)"
        sent = self.outbox.send(did, ops, now=now)
        self.after_fire(rule.id, segment, episode, sent)
        return "fired" if sent.ok else f"fire failed ({sent.failure.reason if sent.failure else '?'})"

    def group_text(self, rule: Rule, metric: Metric, current: Period, fired: list[tuple[str, Verdict]]) -> str:
        head = (f"🚨 *Alert #{rule.id}: {metric.label} {condition_text(rule, metric)}* in {len(fired)} "
                f"{'segment' if len(fired) == 1 else 'segments'} by {rule.dimension}")
        lines = [head]
        for segment, verdict in fired[:GROUP_LINES]:
            lines.append(f"• {rule.dimension} = {segment}: {reading_text(rule, metric, verdict, current)}")
        if len(fired) > GROUP_LINES:
            lines.append(f"…and {len(fired) - GROUP_LINES} more (`/kpi alert list` shows every breaching segment)")
        lines.append(f"Updates in the thread · `/kpi alert snooze {rule.id} 2d` to quiet it")
        return "\n".join(lines)

    def _fire_group(self, rule: Rule, metric: Metric, current: Period, pending: list, now: datetime) -> str:
        """One message for every segment of a ``by`` rule that started breaching in this pass.

        Each segment keeps its own state and its own claimed ``fire`` row (so two schedulers
        still fire a segment once); the message is one more delivery, ``alert_group``, whose
        retries set every segment's message ts. The per-segment rows are closed as skipped
        once the group is handed to the outbox (a crash before that leaves them to be
        retried one by one: at least once)."""
        fired = [(segment, verdict) for segment, _, verdict, _ in pending]
        ops = [Op("post", rule.channel_id, self.group_text(rule, metric, current, fired),
                  actions=self.buttons(rule, current))]
        members = [[segment, episode] for segment, episode, _, _ in pending]
        digest = hashlib.sha1(repr(members).encode(), usedforsecurity=False).hexdigest()[:12]
        key = f"alert:{rule.id}:group:{current.end.isoformat()}:{digest}"
        gid = self.outbox.claim(key, now=now, slot=now, kind="alert_group", ref_id=rule.id,
                                channel_id=rule.channel_id, owner=rule.owner,
                                payload={"segments": members, "window": current.end.isoformat(),
                                         "ops": [o.to_json() for o in ops]})
        if gid is None:
            return f"{rule.id}: group claimed elsewhere"
        for _, _, _, did in pending:
            self.outbox.mark(did, "skipped", now=now, reason=f"posted in the grouped message {key}",
                             reported_at=naive_utc(now))
        sent = self.outbox.send(gid, ops, now=now)
        self.after_group(rule.id, members, sent)
        return f"{rule.id}: grouped alert for {len(pending)} segments " + (
            "posted" if sent.ok else f"failed ({sent.failure.reason if sent.failure else '?'})")

    def after_group(self, rule_id: int, members: list, sent: Sent) -> None:
        for segment, episode in members:
            self.after_fire(rule_id, segment, episode, sent)

    def after_fire(self, rule_id: int, segment: str, episode: int, sent: Sent) -> None:
        if sent.ok and sent.ts:
            self._update(rule_id, segment, alert_states.c.episode == episode, message_ts=sent.ts)

    def _follow_up(self, rule, metric, segment, verdict, current, state, now) -> str:
        if not state["message_ts"]:
            return "still breaching (the alert message is not posted yet; its retry carries the news)"
        episode = state["episode"]
        ts = state["message_ts"]
        channel = state["channel_id"] or rule.channel_id
        since = aware(state["breach_started_at"]) if state["breach_started_at"] else now
        main = self.main_text(rule, metric, segment, verdict, current, since, now, first=False)
        mark = marks.get(self.state, rule.id, ts)
        if mark.quiet_by:  # "snooze until recovered": no news in the thread until it does
            return "still breaching (quiet until it recovers)"
        line = marks.state_line(rule, mark, now, when)
        main += f"\n{line}" if line else ""
        reply = (
            f"Still {condition_text(rule, metric)}: {reading_text(rule, metric, verdict, current)}."
        )
        ops = [Op("update", channel, main, ts=ts, actions=self.buttons(rule, current)),
               Op("post", channel, reply, thread_ts=ts)]
        if rule.dimension:  # the message is the group's: say it in its thread only
            ops = [Op("post", channel, f"{subject(rule, metric, segment)}: {reply}", thread_ts=ts)]
        key = self._key(rule, segment, episode, f"followup:{current.end.isoformat()}")
        did = self.outbox.claim(
            key, now=now, slot=now, kind="alert_followup", ref_id=rule.id, segment=segment, channel_id=channel,
            owner=rule.owner, payload={"episode": episode, "window": current.end.isoformat(),
                                       "ops": [o.to_json() for o in ops]},
        )
        if did is None:
            return "follow-up claimed elsewhere"
        self._update(rule.id, segment, alert_states.c.episode == episode, notified_window=current.end)
        sent = self.outbox.send(did, ops, now=now)
        return "followed up" if sent.ok else f"follow-up failed ({sent.failure.reason if sent.failure else '?'})"

    def _recover(self, rule, metric, segment, verdict, current, state, now) -> str:
        episode = state["episode"]
        channel = state["channel_id"] or rule.channel_id
        since = aware(state["breach_started_at"]) if state["breach_started_at"] else now
        span = f"from {when(since, rule.timezone)} to {when(now, rule.timezone)}"
        back = reading_text(rule, metric, verdict, current)
        title = f"{subject(rule, metric, segment)} {condition_text(rule, metric)}"
        ts = state["message_ts"]
        if ts:
            ops = [
                Op("update", channel, f"✅ *Recovered — Alert #{rule.id}: ~{title}~*\n"
                                      f"Back to {back}.\nIt lasted {span}.", ts=ts, actions=[]),
                Op("post", channel, f"✅ Recovered: {back}. No longer {condition_text(rule, metric)}.",
                   thread_ts=ts),
            ]
            if rule.dimension:  # the message is the group's: say it in its thread only
                ops = [Op("post", channel, f"✅ Recovered — {title}: {back}. It lasted {span}.", thread_ts=ts)]
        else:
            fire = self.outbox.by_key(self._key(rule, segment, episode, "fire"))
            why = f" (the alert could not be posted at the time: {fire['reason']})" if fire and fire["reason"] else ""
            ops = [Op("post", channel, f"✅ *Alert #{rule.id} recovered: {title}* — it was breaching {span}{why}. "
                                       f"Now {back}.")]
            if fire is not None and fire["status"] in ("failed", "claimed"):
                self.outbox.mark(fire["id"], "gave_up", now=now, reason=(fire["reason"] or "") +
                                 "; superseded by the recovery message", reported_at=naive_utc(now))
        key = self._key(rule, segment, episode, "recover")
        did = self.outbox.claim(
            key, now=now, slot=now, kind="alert_recover", ref_id=rule.id, segment=segment, channel_id=channel,
            owner=rule.owner, payload={"episode": episode, "ops": [o.to_json() for o in ops]},
        )
        if did is None:
            return "recovery claimed elsewhere"
        self._update(
            rule.id, segment, alert_states.c.episode == episode, alert_states.c.status == "breaching",
            status="ok", streak=0, streak_window=None, updated_at=naive_utc(now),
        )
        event(log, "alert_recovered", rule=rule.id, segment=segment, episode=episode)
        sent = self.outbox.send(did, ops, now=now)
        return "recovered" if sent.ok else f"recovery failed ({sent.failure.reason if sent.failure else '?'})"

    @staticmethod
    def buttons(rule: Rule, current: Period) -> list[dict]:
        """Acknowledge, Snooze…, Mute rule, What moved it (the window, by the KPI's first cut)."""
        from bot.answer_actions import AskState, period_token

        moved = AskState(rule.metric, period_token(current.start, current.end, "day"), rule.dimension).encode()
        return marks.buttons(rule, moved)

    def current_state(self, rule_id: int, segment: str) -> RowMapping | None:
        with self.state.connect() as conn:
            return conn.execute(
                select(alert_states).where(alert_states.c.rule_id == rule_id, alert_states.c.segment == segment)
            ).mappings().first()
