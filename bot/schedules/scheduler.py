"""The schedule service, and the APScheduler wiring that triggers it in production.

:class:`ScheduleService` holds all the logic and takes explicit times, so tests drive it
with ``run_due(now)``, ``evaluate_alerts(now)``, ``retry_failed(now)`` or ``tick(now)``
and never sleep. :func:`start` builds a ``BackgroundScheduler`` around it for
``kpibot serve``:

* one job per digest, from a :class:`CronTrigger` with the digest's ZoneInfo;
* an ``alerts`` job (every ``KPI_ALERT_INTERVAL_MINUTES``, default 60);
* a ``housekeeping`` job (every ``KPI_RETRY_MINUTES``, default 5): re-read digests and
  the rules file (another process, e.g. ``kpibot digest add``, may have changed them),
  retry failed deliveries, report the ones given up on, and post any slot still due;
* a catch-up run at start: slots missed while the bot was down are posted (late) within
  the grace window, and skipped and logged beyond it.

APScheduler keeps its jobs in memory only (``MemoryJobStore``): its job stores must not be
shared between processes, and everything it needs is rebuilt from kpibot's own tables. The
exactly-once guarantee does not depend on APScheduler at all; it is the UNIQUE key in the
delivery log, so any number of processes may run the same jobs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from slack_sdk import WebClient
from sqlalchemy import Engine, RowMapping

from bot import audit, mrkdwn
from bot.logging import event, get_logger
from bot.policy import allows_schedule
from storage.state import get_state_engine

from . import digests as digest_mod
from . import rules_file, store
from .alerts import AlertRunner, when
from .clock import Clock, SystemClock, aware, naive_utc
from .config import Config
from .delivery import CHANNEL_ERRORS, Failure, Op, Outbox, Sent, explain, payload_ops

log = get_logger("kpibot.schedules")

REPORT_FOR = timedelta(days=7)  # how long a failure report itself is retried


@dataclass
class Outcome:
    """What one call did, for logs, replies and tests."""

    posted: list[str] = field(default_factory=list)  # delivery keys
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def merge(self, other: Outcome) -> Outcome:
        self.posted += other.posted
        self.failed += other.failed
        self.skipped += other.skipped
        self.notes += other.notes
        return self


class ScheduleService:
    """Digests, alerts and the delivery log for one process."""

    def __init__(
        self,
        client: WebClient | None,
        *,
        clock: Clock | None = None,
        state_url: str | None = None,
        metrics_url: str | None = None,
        config: Config | None = None,
        state: Engine | None = None,
        me: str | None = None,
    ):
        self.client = client
        self.clock = clock or SystemClock()
        self.config = config or Config.from_env()
        self.state = state or get_state_engine(state_url)
        self.metrics_url = metrics_url
        self.outbox = Outbox(self.state, client, me=me)
        self.alerts = AlertRunner(self.state, self.outbox, self.config, metrics_url)
        self._lock = threading.Lock()  # one housekeeping pass at a time in this process

    def _now(self, now: datetime | None) -> datetime:
        return aware(now or self.clock.now())

    # ---- digests --------------------------------------------------------------------------------

    def run_due(self, now: datetime | None = None) -> Outcome:
        """Post every digest slot that is due and not yet delivered (also the start-up catch-up)."""
        now = self._now(now)
        out = Outcome()
        for digest in store.active_digests(self.state):
            out.merge(self._run_digest(digest, now))
        out.merge(self.report_given_up(now))
        return out

    def run_digest(self, digest: store.Digest | int, now: datetime | None = None) -> Outcome:
        """One digest (its APScheduler job): the latest due slot is posted (late, within the
        grace window); older missed slots, or ones beyond the grace window, are recorded as
        skipped and logged."""
        now = self._now(now)
        out = self._run_digest(digest, now)
        return out.merge(self.report_given_up(now))

    def _run_digest(self, digest: store.Digest | int, now: datetime) -> Outcome:
        out = Outcome()
        if isinstance(digest, int):
            found = store.get_digest(self.state, digest)
            if found is None:
                return out
            digest = found
        spec = digest.spec
        trigger = digest_mod.trigger_for(spec)
        start = max(digest.created_at, now - self.config.lookback)
        slots = digest_mod.slots_between(trigger, start, now)
        if not slots:
            return out
        keys = {digest_mod.slot_key(digest.id, s, spec.timezone): s for s in slots}
        done = self.outbox.existing(list(keys))
        latest_key = digest_mod.slot_key(digest.id, slots[-1], spec.timezone)
        for key, slot in keys.items():
            if key in done:
                continue
            late = now - slot
            if key == latest_key and late <= self.config.grace:
                out.merge(self._deliver_slot(digest, slot, key, now))
                continue
            if late > self.config.grace:
                reason = (
                    f"missed by {_hours(late)} (the bot was not running); beyond the "
                    f"{_hours(self.config.grace)} grace window, so not posted"
                )
            else:
                reason = "missed, and a later slot of the same digest is due: only the latest is posted"
            if self.outbox.claim(
                key, now=now, kind="digest", ref_id=digest.id, slot=slot, channel_id=digest.channel_id,
                owner=digest.created_by, status="skipped", reason=reason,
            ):
                event(log, "digest_slot_skipped", level=30, digest=digest.id, slot=slot.isoformat(), reason=reason)
                out.skipped.append(key)
        return out

    def _deliver_slot(self, digest: store.Digest, slot: datetime, key: str, now: datetime) -> Outcome:
        did = self.outbox.claim(
            key, now=now, kind="digest", ref_id=digest.id, slot=slot, channel_id=digest.channel_id,
            owner=digest.created_by,
        )
        if did is None:
            return Outcome(notes=[f"{key}: claimed by another process"])
        notice = None
        if now - slot > self.config.late_after:
            notice = (
                f"⏰ _Late: this digest was due {when(slot, digest.timezone)}; the bot was not running then, "
                f"so it is posted now ({when(now, digest.timezone)})._"
            )
        return self._post_digest(did, key, digest, slot, now, notice=notice)

    def _post_digest(self, did: int, key: str, digest: store.Digest, slot: datetime, now: datetime, *,
                     notice: str | None = None, preview: bool = False, channel: str | None = None) -> Outcome:
        target = channel or digest.channel_id
        try:
            # The KPI policy of the channel, checked again at every delivery (it may have changed).
            refused = [m for m in digest.spec.metrics if not allows_schedule(m, target, digest.created_by)]
            if refused:
                event(log, "policy_refused", level=30, digest=digest.id, kpi=",".join(refused), channel=target)
                audit.record_delivery(kind="preview" if preview else "digest", channel_id=target, ref_id=digest.id,
                                      outcome=audit.REFUSED_POLICY, kpis=refused, user_id=digest.created_by,
                                      detail="the KPI policy does not allow these KPIs in this channel")
            allowed = tuple(m for m in digest.spec.metrics if m not in refused)
            if not allowed:
                failure = Failure(f"the KPI policy (KPI_POLICY) does not allow {', '.join(refused)} in this channel",
                                  permanent=True)
                self.outbox.fail(did, failure, now=now)
                return Outcome(failed=[key], notes=[failure.reason])
            if refused:
                left_out = f"_Not shown: {', '.join(f'`{m}`' for m in refused)} — the KPI policy does not allow it here._"
                notice = f"{notice}\n{left_out}" if notice else left_out
            content = digest_mod.build(digest.id, replace(digest.spec, metrics=allowed), slot,
                                       metrics_url=self.metrics_url, notice=notice, preview=preview)
        except Exception as exc:  # noqa: BLE001 - recorded and retried, never lost
            failure = explain(exc)
            self.outbox.fail(did, failure, now=now)
            return Outcome(failed=[key], notes=[failure.reason])
        name = f"kpi-digest-{digest.id}-{content.period.start.isoformat()}.png"
        # one Block Kit message; the chart (uploaded without a channel) shown in its image block
        ops = [Op("post", target, content.text, file=content.chart, filename=name, blocks=content.blocks,
                  title=f"KPI digest #{digest.id}: {content.period.label}")]
        sent = self.outbox.send(did, ops, now=now)
        return self._outcome(key, sent)

    def preview(self, digest_id: int, now: datetime | None = None, *, requested_by: str | None = None) -> Sent:
        """Post a digest now, marked as a preview, in its channel."""
        now = self._now(now)
        digest = store.get_digest(self.state, digest_id)
        if digest is None:
            return Sent(False, failure=Failure(f"there is no digest #{digest_id}", permanent=True))
        key = f"preview:{digest.id}:{now.strftime('%Y%m%dT%H%M%S.%f')}:{self.outbox.me}"
        did = self.outbox.claim(key, now=now, kind="preview", ref_id=digest.id, slot=now,
                                channel_id=digest.channel_id, owner=requested_by or digest.created_by)
        assert did is not None
        self._post_digest(did, key, digest, now, now, preview=True)
        row = self.outbox.get(did)
        if row["status"] == "posted":
            return Sent(True, row["message_ts"])
        self.report_given_up(now)
        return Sent(False, failure=Failure(row["reason"] or "unknown error", row["status"] == "gave_up"))

    # ---- alerts ---------------------------------------------------------------------------------

    def evaluate_alerts(self, now: datetime | None = None) -> Outcome:
        now = self._now(now)
        out = Outcome()
        for rule in store.active_rules(self.state):
            try:
                out.notes += self.alerts.evaluate(rule, now)
            except Exception as exc:  # noqa: BLE001 - one bad rule must not stop the others
                event(log, "alert_evaluation_failed", level=40, rule=rule.id, error=str(exc)[:200],
                      exc_info=exc)
                out.notes.append(f"{rule.id}: evaluation failed: {exc}")
        out.notes += self.alerts.close_removed(now)
        self.report_given_up(now)
        return out

    # ---- failures -------------------------------------------------------------------------------

    def retry_failed(self, now: datetime | None = None) -> Outcome:
        """Retry failed deliveries (and claims a dead process left); give up past their window."""
        now = self._now(now)
        out = Outcome()
        for row in self.outbox.abandoned(now, self.config.stale_sending):
            self._recover_abandoned(row, now)
        for row in self.outbox.retryable(now, self.config.stale_claim):
            out.merge(self._retry(row, now))
        self.report_given_up(now)
        return out

    def _recover_abandoned(self, row: RowMapping, now: datetime) -> None:
        """A post a stopped process left mid-call: posted already (its key is in the channel),
        or posted again by the retry below: at least once (see :mod:`.delivery`)."""
        try:
            ts = self.outbox.find_posted(row)
        except Exception as exc:  # noqa: BLE001 - cannot tell: post again rather than lose it
            ts = None
            event(log, "delivery_history_unreadable", level=30, key=row["key"], error=explain(exc).reason)
        if ts:
            if self.outbox.settle_abandoned(row, "posted", now=now, message_ts=ts, posted_at=naive_utc(now),
                                            reported_at=naive_utc(now), attempts=row["attempts"] + 1):
                event(log, "delivery_found_posted", key=row["key"], ts=ts)
                data = payload_ops(row)[0]
                sent = Sent(True, ts)
                if row["kind"] == "alert_fire":
                    self.alerts.after_fire(row["ref_id"], row["segment"] or "", data.get("episode", 0), sent)
                elif row["kind"] == "alert_group":
                    self.alerts.after_group(row["ref_id"], data.get("segments") or [], sent)
            return
        if self.outbox.settle_abandoned(row, "failed", now=now, attempts=row["attempts"] + 1,
                                        reason="the bot stopped while posting this, and it is not in the channel"):
            event(log, "delivery_interrupted", level=30, key=row["key"])

    def _retry(self, row: RowMapping, now: datetime) -> Outcome:
        key, kind = row["key"], row["kind"]
        first_try = aware(row["slot"] or row["claimed_at"])
        reason = row["reason"] or "the process posting it stopped"
        deadline = REPORT_FOR if kind in ("report", "alert_recover", "alert_fire", "alert_group") else self.config.grace
        # Take the row first (compare-and-set): whatever happens next is this process's alone.
        if not self.outbox.retake(row, now):
            return Outcome(notes=[f"{key}: retried by another process"])
        if now - first_try > deadline:
            self.outbox.mark(row["id"], "gave_up", now=now, reason=f"{reason}; gave up after {_hours(now - first_try)}")
            event(log, "delivery_gave_up", level=40, key=key, reason=reason)
            return Outcome(failed=[key])
        superseded = self._superseded(row)
        if superseded:
            self.outbox.mark(row["id"], "gave_up", now=now, reason=f"{reason}; {superseded}",
                             reported_at=naive_utc(now))
            return Outcome(skipped=[key])
        event(log, "delivery_retry", key=key, attempts=row["attempts"], reason=reason)
        if kind in ("digest", "preview"):
            digest = store.get_digest(self.state, row["ref_id"], include_removed=True)
            if digest is None or (digest.removed_at is not None and kind == "digest"):
                self.outbox.mark(row["id"], "gave_up", now=now, reason="the digest was removed",
                                 reported_at=naive_utc(now))
                return Outcome(skipped=[key])
            slot = aware(row["slot"])
            notice = None
            if kind == "digest":
                notice = (
                    f"⏰ _Late: this digest was due {when(slot, digest.timezone)}; posting it failed "
                    f"({reason}), so it is posted now ({when(now, digest.timezone)})._"
                )
            result = self._post_digest(row["id"], key, digest, slot, now, notice=notice, preview=kind == "preview",
                                       channel=row["channel_id"])
            if result.posted:
                self.outbox.mark(row["id"], "posted", now=now, reported_at=naive_utc(now))
            return result
        data, ops = payload_ops(row)
        rule = store.get_rule(self.state, row["ref_id"], include_removed=True) if kind.startswith("alert") else None
        note = f"_(Posted late: the first attempt at {when(first_try, rule.timezone if rule else 'UTC')} failed — {reason}.)_"
        for op in ops:
            if op.action in ("post", "upload") and op.thread_of is None:
                op.text = f"{op.text}\n{note}"
                break
        sent = self.outbox.send(row["id"], ops, now=now)
        if sent.ok:
            self.outbox.mark(row["id"], "posted", now=now, reported_at=naive_utc(now))
        if kind == "alert_fire":
            self.alerts.after_fire(row["ref_id"], row["segment"] or "", data.get("episode", 0), sent)
        elif kind == "alert_group":
            self.alerts.after_group(row["ref_id"], data.get("segments") or [], sent)
        return self._outcome(key, sent)

    def _superseded(self, row: RowMapping) -> str | None:
        """An alert post that no longer says anything true, so retrying it would mislead."""
        if row["kind"] not in ("alert_fire", "alert_followup"):
            return None
        data = payload_ops(row)[0]
        current = self.alerts.current_state(row["ref_id"], row["segment"] or "")
        if current is None:
            return "the alert state is gone"
        if current["episode"] != data.get("episode") or current["status"] != "breaching":
            return "the alert has ended since; its last message says so"
        if row["kind"] == "alert_followup":
            notified = current["notified_window"]
            if notified is not None and notified.isoformat() > data.get("window", ""):
                return "a newer update has been posted"
        return None

    def report_given_up(self, now: datetime | None = None) -> Outcome:
        """Tell the channel (or, if the channel is the problem, the owner) about each delivery
        that was given up on; the report is itself a delivery, retried until Slack takes it."""
        now = self._now(now)
        out = Outcome()
        for row in self.outbox.unreported():
            out.merge(self._report(row, now))
        return out

    def _report(self, row: RowMapping, now: datetime) -> Outcome:
        reason = row["reason"] or "unknown error"
        channel_problem = any(code in reason for code in CHANNEL_ERRORS)
        target = row["owner"] if channel_problem else row["channel_id"]
        if not target:
            self.outbox.mark(row["id"], row["status"], now=now, reported_at=naive_utc(now),
                             reason=f"{reason}; nobody to tell (no owner), see the log")
            event(log, "delivery_failure_unreported", level=40, key=row["key"], reason=reason)
            return Outcome(notes=[f"{row['key']}: nobody to tell"])
        text = self._report_text(row, reason, channel_problem)
        ops = [Op("post", target, text)]
        did = self.outbox.claim(
            f"report:{row['id']}", now=now, kind="report", ref_id=row["ref_id"], channel_id=target,
            owner=row["owner"], slot=now, payload={"about": row["id"], "ops": [o.to_json() for o in ops]},
        )
        self.outbox.mark(row["id"], row["status"], now=now, reported_at=naive_utc(now))
        if did is None:
            return Outcome()
        return self._outcome(f"report:{row['id']}", self.outbox.send(did, ops, now=now))

    def _report_text(self, row: RowMapping, reason: str, channel_problem: bool) -> str:
        where = f" in {mrkdwn.channel(row['channel_id'])}" if channel_problem else ""
        maybe = row["status"] == "unknown"
        verb = "may not have been posted" if maybe else "could not be posted"
        if row["kind"] in ("digest", "preview"):
            digest = store.get_digest(self.state, row["ref_id"], include_removed=True)
            tz = digest.timezone if digest else "UTC"
            what = f"KPI digest #{row['ref_id']}" + (
                f" due {when(aware(row['slot']), tz)}" if row["kind"] == "digest" and row["slot"] else " (preview)"
            )
            hint = f" `/kpi digest preview {row['ref_id']}` posts it now."
        else:
            rule = store.get_rule(self.state, row["ref_id"], include_removed=True)
            what = f"An alert message for rule #{row['ref_id']}" + (f" ({rule.text})" if rule else "")
            hint = " `/kpi alert list` shows where it stands."
        fix = ""
        if "not_in_channel" in reason:
            fix = " Invite me to the channel with `/invite @kpibot`."
        elif "is_archived" in reason or "channel_not_found" in reason:
            fix = " The channel is gone or archived: remove the schedule or add it again elsewhere."
        return f"⚠️ {what}{where} {verb}: {reason}.{fix}{hint}"

    def _outcome(self, key: str, sent: Sent) -> Outcome:
        if sent.ok:
            return Outcome(posted=[key])
        return Outcome(failed=[key], notes=[sent.failure.reason if sent.failure else "failed"])

    # ---- everything at once -----------------------------------------------------------------------

    def sync_rules_file(self, now: datetime | None = None) -> list[str]:
        if not self.config.rules_file:
            return []
        return rules_file.sync(self.state, self.config.rules_file, now=self._now(now),
                               default_tz=self.config.default_timezone).errors

    def housekeeping(self, now: datetime | None = None) -> Outcome:
        now = self._now(now)
        with self._lock:
            out = Outcome()
            self.sync_rules_file(now)
            out.merge(self.retry_failed(now))
            out.merge(self.run_due(now))
            return out

    def tick(self, now: datetime | None = None) -> Outcome:
        """Everything due at ``now``: digests, alerts, retries and reports."""
        now = self._now(now)
        out = self.housekeeping(now)
        out.merge(self.evaluate_alerts(now))
        return out


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    if hours < 1:
        return f"{round(delta.total_seconds() / 60)} min"
    if hours < 48:
        return f"{hours:.1f} h".replace(".0 h", " h")
    return f"{hours / 24:.1f} days".replace(".0 days", " days")


# ---- APScheduler ---------------------------------------------------------------------------------

_running: list[tuple[ScheduleService, BackgroundScheduler]] = []
_running_lock = threading.Lock()


def digest_job_id(digest: store.Digest) -> str:
    return f"digest:{digest.id}"


def sync_jobs(service: ScheduleService, scheduler: BackgroundScheduler) -> None:
    """Make the scheduler's digest jobs match the digests table (added, removed)."""
    wanted = {digest_job_id(d): d for d in store.active_digests(service.state)}
    for job in scheduler.get_jobs():
        if job.id.startswith("digest:") and job.id not in wanted:
            job.remove()
            event(log, "digest_job_removed", job=job.id)
    grace = int(service.config.grace.total_seconds())
    for job_id, digest in wanted.items():
        if scheduler.get_job(job_id) is not None:
            continue
        scheduler.add_job(
            service.run_digest,
            trigger=digest_mod.trigger_for(digest.spec),
            args=[digest.id],
            id=job_id,
            name=f"digest {digest.id}: {digest.spec.schedule_text()}",
            misfire_grace_time=grace,
            coalesce=True,
            max_instances=1,
        )
        event(log, "digest_job_added", job=job_id, schedule=digest.spec.schedule_text())


def build_scheduler(service: ScheduleService) -> BackgroundScheduler:
    """A scheduler (not started) with every job built from the state tables."""
    config = service.config
    scheduler = BackgroundScheduler(
        jobstores={"default": MemoryJobStore()},
        executors={"default": ThreadPoolExecutor(4)},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": int(config.grace.total_seconds()),
        },
        timezone=UTC,
    )
    service.sync_rules_file()
    sync_jobs(service, scheduler)
    now = datetime.now(UTC)  # APScheduler runs on wall-clock time; the service asks its own clock
    scheduler.add_job(
        service.evaluate_alerts,
        IntervalTrigger(seconds=config.alert_interval.total_seconds(), timezone=UTC),
        id="alerts",
        name="evaluate alert rules",
        next_run_time=now + timedelta(seconds=30),
        misfire_grace_time=int(config.alert_interval.total_seconds()),
    )

    def housekeeping() -> None:
        service.housekeeping()
        sync_jobs(service, scheduler)

    scheduler.add_job(
        housekeeping,
        IntervalTrigger(seconds=config.housekeeping_interval.total_seconds(), timezone=UTC),
        id="housekeeping",
        name="retry failed deliveries, re-read schedules",
        misfire_grace_time=int(config.housekeeping_interval.total_seconds()),
    )
    scheduler.add_job(service.run_due, "date", run_date=now, id="catch-up", name="catch up on missed slots",
                      misfire_grace_time=int(config.grace.total_seconds()))
    return scheduler


def start(
    client: WebClient,
    *,
    clock: Clock | None = None,
    state_url: str | None = None,
    metrics_url: str | None = None,
    config: Config | None = None,
    paused: bool = False,
) -> BackgroundScheduler:
    """Start digests and alerts in the background; returns the running scheduler.

    ``scheduler.kpibot`` is the :class:`ScheduleService`; stop with ``scheduler.shutdown()``.
    """
    service = ScheduleService(client, clock=clock, state_url=state_url, metrics_url=metrics_url, config=config)
    scheduler = build_scheduler(service)
    scheduler.kpibot = service  # type: ignore[attr-defined]
    scheduler.start(paused=paused)
    with _running_lock:
        _running.append((service, scheduler))
    event(log, "scheduler_started", digests=len(store.active_digests(service.state)),
          rules=len(store.active_rules(service.state)),
          grace_hours=service.config.grace.total_seconds() / 3600, worker=service.outbox.me)
    return scheduler


def running_service() -> ScheduleService | None:
    """The schedule service started in this process, if any (commands post previews with it)."""
    with _running_lock:
        for service, scheduler in reversed(_running):
            if scheduler.running:
                return service
    return None


def notify_changed() -> None:
    """Digests were added or removed in this process: update the running jobs now."""
    with _running_lock:
        running = [(s, sch) for s, sch in _running if sch.running]
    for service, scheduler in running:
        try:
            sync_jobs(service, scheduler)
        except Exception as exc:  # noqa: BLE001 - housekeeping will catch up within minutes
            event(log, "sync_jobs_failed", level=30, error=str(exc)[:200])


def stop_all() -> None:
    with _running_lock:
        running = list(_running)
        _running.clear()
    for _, scheduler in running:
        if scheduler.running:
            scheduler.shutdown(wait=False)


__all__ = ["ScheduleService", "Outcome", "start", "build_scheduler", "sync_jobs", "running_service",
           "notify_changed", "stop_all"]
