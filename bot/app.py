"""The Bolt app: `/kpi`, @mentions and DMs, acknowledged at once and answered in the background.

Flow of every request::

    Slack ──► Bolt (signature check, cached auth) ──► listener: ack() + enqueue ──► 200 to Slack
    (a signed slash command over HTTP gets its 200 from bot.server first; Bolt then runs the
    same listener on a dispatch thread, and its ack goes nowhere)
                                                           │
                                 work pool (KPI_WORKERS) ▼
                users.info (tz) → router.route → metrics.api.ask → Block Kit → chat.postMessage
                                                 → charts.render_png → files_upload_v2

* Nothing slow runs before the ack: listeners only ack, dedupe and enqueue; there is no
  global middleware of ours. Bolt's own authorization uses the ``auth.test`` result taken
  once at start-up (``token_verification_enabled``), so it makes no call per request.
* Bolt's listener pool (``KPI_LISTENER_THREADS``, 32) only runs those quick listeners, so
  a burst is acked even while every worker is busy; answers queue for the work pool
  (``KPI_WORKERS``, 8), of which ``KPI_COMPUTE_SLOTS`` (CPU count - 1, at most 4)
  run SQL and charts at once: chart drawing holds the GIL, so more such threads only fight
  over it and slow the acks (measured: 30-burst ack p50 40 ms with 1 slot on 2 cores, 80-165
  ms with 2, same total answer time).
* A job still running after ``KPI_WORKING_AFTER`` seconds (1.5) from arrival first sends
  the asker an ephemeral "Working on it…".
* Retried Events API deliveries are dropped by ``event_id`` (:mod:`bot.dedupe`).
* Slash-command answers go to the channel with ``chat.postMessage`` (if the bot is not a
  member, through the ``response_url`` as an in-channel reply instead); help and errors are
  ephemeral. Mentions are answered in their thread, DMs in the DM.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot import audit, blocks
from bot.answer_delivery import PendingChart
from bot.dedupe import Deduper, make_deduper
from bot.logging import event as log_event
from bot.logging import get_logger, new_error_id
from bot.router import Context, Reply, internal_error, is_instant, route
from bot.slack_client import make_client, make_webhook
from metrics import pauses
from metrics.cache import computing, computing_in
from metrics.result import Result
from storage import database

log = get_logger("kpibot.app")

WITHHELD = ("I can't share this answer right now: every answer about restricted KPIs is recorded in the "
            "audit log first, and the log cannot be written at the moment. The team has been alerted; "
            "please try again later.")
NOT_MEMBER_ERRORS = {"not_in_channel", "channel_not_found", "is_archived", "restricted_action"}


def _env_float(env, name: str, default: float) -> float:
    try:
        return float(env.get(name, default))
    except ValueError:
        return default


def _env_int(env, name: str, default: int) -> int:
    try:
        return max(1, int(env.get(name, default)))
    except ValueError:
        return default


def _default_compute_slots() -> int:
    """One core left for acks: charts are GIL-bound, so more threads add latency, not speed."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


@dataclass
class Settings:
    """Everything the Slack front end is configured with; :meth:`from_env` reads the env vars."""

    bot_token: str | None = None
    signing_secret: str | None = None
    app_token: str | None = None
    api_url: str | None = None  # SLACK_API_URL
    database_url: str | None = None  # KPI_DATABASE_URL (None: the metrics default)
    model: str | None = None  # KPI_MODEL: the model file or folder (default ./kpibot.yml when present)
    dbt_project: str | None = None  # KPI_DBT_PROJECT: a dbt project (its semantic manifest), merged with the model
    working_after: float = 1.5  # seconds before "Working on it…"
    workers: int = 8  # concurrent jobs (Slack calls, uploads: mostly waiting on the network)
    compute_slots: int = field(default_factory=lambda: _default_compute_slots())  # SQL + chart at once
    listener_threads: int = 32  # Bolt listener pool (acks)
    dedupe_ttl: float = 600.0
    post_retry_seconds: float = 10.0  # KPI_POST_RETRY_SECONDS: budget for re-posting an answer Slack refused
    tz_ttl: float = 3600.0
    token_verification: bool = True  # auth.test once at start-up
    enforce_policy: bool = True  # bot.policy: which KPIs may be shown where (KPI_POLICY)
    rate_limits: bool = True  # bot.ratelimit: per-user and per-channel question limits
    user_in_flight: int = 2  # KPI_USER_IN_FLIGHT: questions one user may have queued or running at once
    question_timeout: float | None = None  # KPI_QUESTION_TIMEOUT: one deadline for all of a question's work
    # hosts a slash command's response_url may point at (besides SLACK_API_URL's host:port)
    response_url_hosts: tuple[str, ...] = ("hooks.slack.com",)

    @classmethod
    def from_env(cls, env=None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            bot_token=env.get("SLACK_BOT_TOKEN") or None,
            signing_secret=env.get("SLACK_SIGNING_SECRET") or None,
            app_token=env.get("SLACK_APP_TOKEN") or None,
            api_url=env.get("SLACK_API_URL") or None,
            database_url=env.get("KPI_DATABASE_URL") or None,
            model=_model_path(env),
            dbt_project=(env.get("KPI_DBT_PROJECT") or "").strip() or None,
            working_after=_env_float(env, "KPI_WORKING_AFTER", 1.5),
            workers=_env_int(env, "KPI_WORKERS", 8),
            compute_slots=_env_int(env, "KPI_COMPUTE_SLOTS", _default_compute_slots()),
            listener_threads=_env_int(env, "KPI_LISTENER_THREADS", 32),
            dedupe_ttl=_env_float(env, "KPI_DEDUPE_TTL", 600.0),
            user_in_flight=_env_int(env, "KPI_USER_IN_FLIGHT", 2),
            question_timeout=_env_float(env, "KPI_QUESTION_TIMEOUT", 0.0) or None,
            post_retry_seconds=_env_float(env, "KPI_POST_RETRY_SECONDS", 10.0),
            response_url_hosts=tuple(
                h.strip().lower() for h in (env.get("KPI_RESPONSE_URL_HOSTS") or "hooks.slack.com").split(",")
                if h.strip()
            ),
        )

    def response_url_allowed(self, url: str | None) -> bool:
        """Only Slack's own hosts get a reply: ``https://hooks.slack.com/…`` (and any host in
        ``KPI_RESPONSE_URL_HOSTS``, over https), or exactly the scheme, host and port of
        ``SLACK_API_URL`` (a proxy or the tests' fake Slack). A forged ``response_url`` would
        otherwise receive the answer, and make the bot call any address it names."""
        if not url:
            return False
        try:
            parts = urlsplit(url)
            netloc = (parts.hostname or "", parts.port)
        except ValueError:
            return False
        if parts.scheme == "https" and parts.port in (None, 443) and netloc[0] in self.response_url_hosts:
            return True
        if self.api_url:
            base = urlsplit(self.api_url)
            return (parts.scheme, netloc) == (base.scheme, (base.hostname or "", base.port))
        return False

    def mode(self) -> str | None:
        """``socket`` when an app-level token is set, else ``http`` with a signing secret."""
        if not self.bot_token:
            return None
        if self.app_token:
            return "socket"
        if self.signing_secret:
            return "http"
        return None

    def missing(self) -> list[str]:
        out = []
        if not self.bot_token:
            out.append("SLACK_BOT_TOKEN")
        if not self.app_token and not self.signing_secret:
            out.append("SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode)")
        return out


@dataclass
class Job:
    """One question to answer, with where and how to reply."""

    surface: str  # slash | mention | dm
    text: str
    user_id: str
    channel_id: str
    team_id: str | None = None
    response_url: str | None = None
    thread_ts: str | None = None
    event_id: str | None = None
    received: float = field(default_factory=time.monotonic)
    limited: str | None = None  # set when a rate limit refused it: the message to send
    in_flight: bool = False  # counted in its user's questions in flight
    channel_type: str | None = None  # im | mpim | channel | group (events), from channel_name for commands
    restricted: bool = False  # the policy governs what it reads: audited before it is posted
    update_ts: str | None = None  # a click on an answer: the message its new answer replaces
    after: Callable[[Reply], None] | None = None  # a click: what to change once it succeeded
    follow_up: bool = False  # the second half of one gated action (an edit's removal): not limited again
    posted_ts: str | None = None  # the answer's text is out (its chart follows by chat.update)
    posted_channel: str | None = None


class WorkingNotice:
    """Sends "Working on it…" once if the job is not finished ``after`` seconds from creation.

    ``finish()`` waits for a notice that is being sent, so the notice never lands after the
    answer.
    """

    def __init__(self, after: float | None, send: Callable[[], None]):
        self._send = send
        self._lock = threading.Lock()
        self._done = False
        self.sent = False
        self._timer: threading.Timer | None = None
        if after is not None and after >= 0:
            self._timer = threading.Timer(after, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.sent = True
            try:
                self._send()
            except Exception:  # noqa: BLE001 - a failed courtesy line must not stop the answer
                log_event(log, "working_notice_failed", level=30, exc_info=True)

    def finish(self) -> None:
        with self._lock:
            self._done = True
            if self._timer is not None:
                self._timer.cancel()


class _QuietBoltStartup(logging.Filter):
    """Bolt warns that SLACK_BOT_TOKEN is unused when a client is given: it is the client's token."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("As you gave `client` as well")


class KpiBot:
    """The listeners, the work pool and the delivery of replies; ``.app`` is the Bolt app."""

    def __init__(self, settings: Settings, *, client: WebClient | None = None, deduper: Deduper | None = None):
        self.settings = settings
        self.client = client or make_client(settings.bot_token or "", base_url=settings.api_url)
        self.seen: Deduper = deduper or make_deduper(settings.dedupe_ttl)
        self.stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()
        self._tz: dict[str, tuple[str | None, float]] = {}
        self._tz_lock = threading.Lock()
        self._members: dict[str, tuple[frozenset[str], float]] = {}
        self._identity: dict | None = None
        self._identity_lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="kpibot-work")
        # "try again in …" needs no query: it must not queue behind answers that wait for compute
        self.quick = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kpibot-quick")
        # CPU-bound steps hold the GIL; more of them at once than cores only slows the acks.
        self.compute = threading.BoundedSemaphore(settings.compute_slots)
        self.policy = _load_policy() if settings.enforce_policy else None  # a broken file stops the start
        self.limits = _load_limits() if settings.rate_limits else None
        self.listener_pool = ThreadPoolExecutor(
            max_workers=settings.listener_threads, thread_name_prefix="kpibot-listener"
        )
        # slash commands the HTTP endpoint has already acknowledged, dispatched through Bolt here
        self.dispatcher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kpibot-dispatch")
        bolt_logger = get_logger("kpibot.bolt")
        if not any(isinstance(f, _QuietBoltStartup) for f in bolt_logger.filters):
            bolt_logger.addFilter(_QuietBoltStartup())
        self.app = App(
            name="kpibot",
            client=self.client,
            signing_secret=settings.signing_secret or "",
            token_verification_enabled=settings.token_verification,
            request_verification_enabled=True,
            process_before_response=False,
            listener_executor=self.listener_pool,
            logger=bolt_logger,
        )
        self._register(self.app)

    # ---- listeners (run before / right after the ack: keep them tiny) ----------------------

    def _register(self, app: App) -> None:
        """Every route, by kind, as in Slack's bolt-python template (:mod:`bot.listeners`)."""
        from bot.listeners import register

        register(app, self)

    def _first_delivery(self, body: dict, request) -> bool:
        event_id = body.get("event_id")
        retry = None
        if request is not None:
            retry = (request.headers.get("x-slack-retry-num") or [None])[0]
        if event_id and not self.seen.first_time(f"event:{event_id}"):
            self._count("duplicate_events")
            log_event(log, "duplicate_event_dropped", event_id=event_id, retry_num=retry,
                  retry_reason=(request.headers.get("x-slack-retry-reason") or [None])[0] if request else None)
            return False
        return True

    def submit(self, job: Job) -> None:
        try:
            self._count("jobs")
            if self.limits is not None and not job.follow_up:  # in arrival order, in memory: cheap enough for here
                job.limited = self.limits.check(job.user_id, job.channel_id)
            if not job.limited and not job.follow_up and not is_instant(job.text):
                job.limited = self._enter(job)
            after = None if job.limited else self.settings.working_after
            notice = WorkingNotice(after, lambda: self.send_working(job))
            try:
                (self.quick if job.limited else self.pool).submit(self._run, job, notice)
            except RuntimeError:  # the pool is shut down: the process is stopping
                notice.finish()
                log_event(log, "job_rejected_shutting_down", level=30, surface=job.surface)
        except Exception:  # noqa: BLE001 - raised after ack(), Bolt would drop the ack and answer 404 in 3 s
            log_event(log, "submit_failed", level=40, exc_info=True, error_id=new_error_id(),
                      surface=job.surface, channel=job.channel_id)

    # ---- the work ------------------------------------------------------------------------

    def _enter(self, job: Job) -> str | None:
        """Count the job in its user's questions in flight, or say why not: one user cannot
        queue more than ``user_in_flight`` and so cannot hold every worker and compute slot."""
        with self._stats_lock:
            running = self._in_flight[job.user_id]
            if running >= self.settings.user_in_flight:
                self.stats["in_flight_refused"] += 1
                return (f"You have {running} questions running — I'll answer those first; "
                        "ask again when one is done.")
            self._in_flight[job.user_id] = running + 1
            job.in_flight = True
        return None

    def _leave(self, job: Job) -> None:
        if not job.in_flight:
            return
        with self._stats_lock:
            job.in_flight = False
            self._in_flight[job.user_id] -= 1
            if self._in_flight[job.user_id] <= 0:
                del self._in_flight[job.user_id]

    def _run(self, job: Job, notice: WorkingNotice) -> None:
        try:
            self._answer(job, notice)
        finally:
            self._leave(job)
            pauses.tidy()  # the reply is out: a quiet moment for a due garbage collection

    def _answer(self, job: Job, notice: WorkingNotice) -> None:
        started = time.monotonic()
        queued_ms = (started - job.received) * 1000
        png: bytes | None = None
        chart_note: str | None = None
        chart: PendingChart | None = None  # an answer's chart, drawn after its text is posted
        kpi: str | None = None  # for the audit log, also when the policy refuses the answer
        try:
            if job.limited:
                self._count("rate_limited")
                reply = Reply("error", job.limited, command="rate_limited")
            else:
                ctx = Context(
                    user_id=job.user_id,
                    channel_id=job.channel_id,
                    user_tz=self.user_tz(job.user_id),
                    now=datetime.now(UTC),
                    database_url=self.settings.database_url,
                    client=self.client,
                    authorize=self._authorizer(job),
                )
                timeout = self.settings.question_timeout or database.query_timeout_seconds()
                # the compute slot is taken for what the answer cache cannot answer (metrics.cache)
                with computing_in(self.compute), database.deadline(max(0.0, timeout - (time.monotonic() - job.received))):
                    reply = route(job.text, ctx)
                    kpi = reply.kpi
                    if reply.kind == "answer" and reply.result is not None:
                        kpi = reply.result.metric.id
                        chart = PendingChart(functools.partial(self._draw_in_slot, reply.result))
                    elif reply.kind == "answer" and reply.report is not None:
                        kpi = f"report:{reply.report.name}"
                        with computing():
                            png, chart_note = self._draw_report(reply.report)
        except Exception:  # noqa: BLE001 - route never raises; this guards the glue around it
            reply = internal_error(surface=job.surface, user=job.user_id, channel=job.channel_id)
        finally:
            notice.finish()
        computed_ms = (time.monotonic() - started) * 1000
        audited: int | None = None  # the row written before a restricted answer is posted
        if reply.kind == "answer" and job.restricted:
            audited = audit.write_before(surface=job.surface, text=job.text, user_id=job.user_id,
                                         channel_id=job.channel_id, team_id=job.team_id, kpi=kpi,
                                         command=reply.command)
            if audited is None:  # no audit row, no answer: withheld, /healthz is unhealthy
                self._count("withheld_unaudited")
                log_event(log, "answer_withheld", level=40, reason="audit log not writable", kpi=kpi,
                          user=job.user_id, channel=job.channel_id)
                reply, png, chart = Reply("error", WITHHELD, command=reply.command, reason="error"), None, None
        outcome, delivery_error_id = self._deliver_retrying(job, reply, png, chart_note, chart)
        if job.after is not None and reply.kind != "error" and reply.reason is None:
            try:  # e.g. an alert message showing "Acknowledged by …"
                job.after(reply)
            except Exception:  # noqa: BLE001 - the reply went out; the message keeps its old state
                log_event(log, "after_click_failed", level=40, exc_info=True, error_id=new_error_id())
        self._count(f"reply_{reply.kind}")
        log_event(
            log,
            "reply",
            surface=job.surface,
            command=reply.command,
            kind=reply.kind,
            kpi=reply.result.metric.id if reply.result else None,
            user=job.user_id,
            channel=job.channel_id,
            text=job.text[:200],
            queued_ms=round(queued_ms, 1),
            computed_ms=round(computed_ms, 1),
            total_ms=round((time.monotonic() - job.received) * 1000, 1),
            working_notice=notice.sent or None,
            outcome=outcome,
            error_id=reply.error_id,
        )
        if audited is not None:  # its row exists already: correct it only if the post failed
            if delivery_error_id:
                audit.amend(audited, outcome=audit.ERROR, error_id=delivery_error_id,
                            detail="the reply could not be delivered to Slack",
                            elapsed_ms=(time.monotonic() - job.received) * 1000)
            return
        audit.record_question(  # queued, written by the audit thread: never slows the reply
            surface=job.surface, text=job.text, user_id=job.user_id, channel_id=job.channel_id,
            team_id=job.team_id, reply=reply, kpi=kpi, limited=bool(job.limited),
            elapsed_ms=(time.monotonic() - job.received) * 1000, delivery_error_id=delivery_error_id,
        )

    def _deliver_retrying(self, job: Job, reply: Reply, png: bytes | None, chart_note: str | None,
                          chart: PendingChart | None = None) -> tuple[str, str | None]:
        """Deliver; while Slack fails for a moment (5xx, 429, no connection), try again within
        ``post_retry_seconds`` (the client's own retries cover only ~2 s); then tell the asker."""
        deadline = time.monotonic() + self.settings.post_retry_seconds
        pause = 0.5
        while True:
            try:
                return self.deliver(job, reply, png, chart_note, chart), None
            except Exception as exc:  # noqa: BLE001
                transient = _transient(exc)
                if transient and time.monotonic() + pause < deadline:
                    self._count("delivery_retries")
                    log_event(log, "delivery_retry", level=30, surface=job.surface, channel=job.channel_id,
                              error=_slack_error(exc), pause=pause)
                    time.sleep(pause)
                    pause = min(pause * 2, 4.0)
                    continue
                if job.posted_ts is not None:  # the answer's text is out; only its chart is missing
                    log_event(log, "chart_update_failed", level=30, channel=job.channel_id, error=_slack_error(exc))
                    return "chart_failed", None
                error_id = new_error_id()
                log_event(log, "delivery_failed", level=40, exc_info=True, error_id=error_id,
                          surface=job.surface, channel=job.channel_id, error=_slack_error(exc))
                if reply.kind == "answer":  # the asker would otherwise wait for nothing
                    try:
                        self.send_private(job, f"Sorry, Slack did not accept my answer ({_slack_error(exc)}); "
                                               f"please ask again in a minute (error id `{error_id}`).")
                    except Exception:  # noqa: BLE001 - Slack is down for this too: the log has it
                        log_event(log, "delivery_failure_not_reported", level=40, error_id=error_id)
                return "delivery_failed", error_id

    def _authorizer(self, job: Job):
        """The policy check a question passes before any work (None: policy not enforced)."""
        if not self.settings.enforce_policy:
            return None

        def authorize(needs) -> None:
            from bot.policy import current, refusal
            from metrics.access import AccessDenied

            policy = current()
            if not policy.rules_for(needs):
                return
            job.restricted = True
            place = self.place(job)
            if policy.allows(needs, place):
                return
            self._count("policy_refusals")
            log_event(log, "policy_refused", kpi=needs.what, user=job.user_id, channel=job.channel_id,
                      place=place.kind, sensitivities=",".join(sorted(needs.sensitivities)), dimension=needs.dimension)
            denied = AccessDenied(refusal(needs, place))
            denied.kpi = needs.what
            raise denied

        return authorize

    def place(self, job: Job):
        """Where the answer would be seen. A DM or group DM is private only to its members:
        ``conversations.members`` says who they are (the bot not counted); if that fails the
        place has no known members and restricted data stays out."""
        from bot.policy import Place

        kind = job.channel_type
        if job.surface == "dm":
            return Place(job.channel_id, "im", frozenset({job.user_id}))  # message.im: a DM with the bot
        if kind not in ("im", "mpim") and not job.channel_id.startswith("D"):
            return Place(job.channel_id)
        kind = kind if kind in ("im", "mpim") else "im"
        return Place(job.channel_id, kind, self.members(job.channel_id))

    def members(self, channel_id: str) -> frozenset[str]:
        """The people in a DM or group DM (cached briefly; their membership cannot change)."""
        now = time.monotonic()
        with self._tz_lock:
            hit = self._members.get(channel_id)
            if hit and hit[1] > now:
                return hit[0]
        bot_user = (self.identity() or {}).get("user_id")
        people: set[str] = set()
        try:
            cursor = None
            for _ in range(20):  # a group DM has at most 9 people: one page, in practice
                page = self.client.conversations_members(channel=channel_id, limit=200, cursor=cursor)
                people.update(page.get("members") or [])
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    break
        except (SlackApiError, SlackClientError, OSError) as exc:
            code = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
            log_event(log, "conversations_members_failed", level=30, channel=channel_id, error=code)
            return frozenset()
        found = frozenset(people - {bot_user})
        with self._tz_lock:
            if len(self._members) > 10_000:
                self._members.clear()
            self._members[channel_id] = (found, now + 300.0)
        return found

    def _draw_report(self, report) -> tuple[bytes | None, str | None]:
        from metrics import reports

        try:
            return reports.render_png(report), None
        except Exception:  # noqa: BLE001 - the text still goes out without the picture
            error_id = new_error_id()
            log_event(log, "chart_failed", level=40, exc_info=True, error_id=error_id, kpi=f"report:{report.name}")
            return None, f"The chart could not be drawn (error id `{error_id}`)."

    def _draw_in_slot(self, result: Result) -> tuple[bytes | None, str | None]:
        """Drawing is CPU work: it takes a compute slot like the query did (not for a chart
        the answer cache holds)."""
        with computing_in(self.compute):
            return self._draw(result)

    def _draw(self, result: Result) -> tuple[bytes | None, str | None]:
        from metrics import charts

        try:
            return charts.render_png(result), None
        except Exception:  # noqa: BLE001 - the numbers still go out without the picture
            error_id = new_error_id()
            log_event(log, "chart_failed", level=40, exc_info=True, error_id=error_id, kpi=result.metric.id)
            return None, f"The chart could not be drawn (error id `{error_id}`)."

    # ---- delivery ------------------------------------------------------------------------

    def deliver(self, job: Job, reply: Reply, png: bytes | None, chart_note: str | None,
                chart: PendingChart | None = None) -> str:
        if reply.kind == "answer" and reply.result is not None:
            return self.send_answer(job, reply.result, png, chart_note, chart)
        if reply.kind == "answer" and reply.report is not None:
            return self.send_report(job, reply.report, png, chart_note)
        self.send_private(job, reply.text)
        return "ok"

    def send_working(self, job: Job) -> None:
        self.send_private(job, blocks.working_text(), with_blocks=False)

    def send_private(self, job: Job, text: str, *, with_blocks: bool = True) -> None:
        """Only the asker sees it (help, errors, "working on it"); in a DM a normal message."""
        body_blocks = blocks.text_blocks(text) if with_blocks else None
        if job.surface == "slash" and job.response_url:
            resp = make_webhook(job.response_url).send(
                text=blocks.fallback(text), blocks=body_blocks, response_type="ephemeral", replace_original=False
            )
            if resp.status_code == 200:
                return
            log_event(log, "response_url_failed", level=30, status=resp.status_code, body=str(resp.body)[:200])
        if job.surface == "dm":
            self.client.chat_postMessage(channel=job.channel_id, text=blocks.fallback(text), blocks=body_blocks,
                                         thread_ts=job.thread_ts)
            return
        self.client.chat_postEphemeral(
            channel=job.channel_id, user=job.user_id, text=blocks.fallback(text), blocks=body_blocks,
            thread_ts=job.thread_ts,
        )

    def send_answer(self, job: Job, result: Result, png: bytes | None, chart_note: str | None,
                    chart: PendingChart | None = None) -> str:
        """One message, text first, then the chart and its buttons (:mod:`bot.answer_delivery`)."""
        from bot.answer_delivery import send_answer

        return send_answer(self, job, result, png, chart_note, chart)

    def send_report(self, job: Job, report, png: bytes | None, chart_note: str | None) -> str:
        """A cross-silo report: its text in the channel (or thread), then its chart."""
        from metrics import reports

        text = reports.render_text(report)
        if chart_note:
            text += f"\n_{chart_note}_"
        try:
            posted = self.client.chat_postMessage(
                channel=job.channel_id, thread_ts=job.thread_ts, text=blocks.fallback(text),
                blocks=blocks.text_blocks(text), unfurl_links=False, unfurl_media=False,
            )
        except SlackApiError as exc:
            if job.surface != "slash" or not job.response_url:
                raise
            # as for answers: not a member, or chat.postMessage failing, the response_url still works
            log_event(log, "post_fallback_response_url", level=30, error=exc.response.get("error"), channel=job.channel_id)
            resp = make_webhook(job.response_url).send(text=blocks.fallback(text), blocks=blocks.text_blocks(text),
                                                       response_type="in_channel", replace_original=False)
            if resp.status_code != 200:
                raise RuntimeError(f"response_url answered {resp.status_code}") from exc
            return "response_url"
        if png is None:
            return "ok"
        channel = posted.get("channel") or job.channel_id
        try:
            self.client.files_upload_v2(
                channel=channel, thread_ts=job.thread_ts, file=png, filename=f"kpibot-{report.name}.png",
                title=report.question, alt_txt=f"Chart for the {report.name} report, {report.period}",
            )
            return "ok"
        except (SlackApiError, SlackClientError, OSError) as exc:
            code = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
            log_event(log, "chart_upload_failed", level=30, error=code, channel=channel, kpi=f"report:{report.name}")
            self.client.chat_update(channel=channel, ts=str(posted.get("ts")), text=blocks.fallback(text),
                                    blocks=blocks.text_blocks(text + f"\n_{self._upload_failure_note(code)}_"))
            return "chart_failed"

    def _upload_failure_note(self, code: str | None) -> str:
        if code in NOT_MEMBER_ERRORS:
            return self._not_member_note()
        if code in ("missing_scope", "not_allowed_token_type", "no_permission"):
            return "The chart could not be attached: the app lacks the `files:write` permission (reinstall it with manifest.yml)."
        if code == "ratelimited":
            return "The chart could not be attached: Slack is rate limiting uploads right now; ask again in a minute."
        return f"The chart could not be attached ({code or 'upload failed'})."

    def _not_member_note(self) -> str:
        name = (self.identity() or {}).get("user") or "kpibot"
        return (
            f"The chart could not be attached because I'm not a member of this channel. "
            f"Invite me with `/invite @{name}` to get charts here."
        )

    # ---- Slack look-ups (cached; only ever called from workers) --------------------------

    def identity(self) -> dict | None:
        """``auth.test`` of the bot token, once."""
        with self._identity_lock:
            if self._identity is None:
                try:
                    self._identity = dict(self.client.auth_test().data)  # type: ignore[arg-type]  # JSON, not bytes
                except (SlackApiError, SlackClientError, OSError):
                    log_event(log, "auth_test_failed", level=30, exc_info=True)
                    return None
            return self._identity

    def _bot_user_id_cached(self) -> str | None:
        return (self._identity or {}).get("user_id")

    def user_tz(self, user_id: str | None) -> str | None:
        """The user's IANA time zone from ``users.info`` (needs ``users:read``), cached."""
        if not user_id:
            return None
        now = time.monotonic()
        with self._tz_lock:
            hit = self._tz.get(user_id)
            if hit and hit[1] > now:
                return hit[0]
        tz = None
        try:
            tz = (self.client.users_info(user=user_id).get("user") or {}).get("tz")
        except (SlackApiError, SlackClientError, OSError) as exc:
            code = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
            log_event(log, "users_info_failed", level=30, user=user_id, error=code)
        with self._tz_lock:
            if len(self._tz) > 10_000:
                self._tz.clear()
            self._tz[user_id] = (tz, now + (self.settings.tz_ttl if tz else 60.0))
        return tz

    def _count(self, name: str) -> None:
        with self._stats_lock:
            self.stats[name] += 1

    def dispatch_acked(self, request) -> None:
        """Run an already acknowledged slash command through Bolt (middleware, listener) off the
        request path; Bolt's own ack response is discarded, the answer follows as usual."""

        def run() -> None:
            try:
                response = self.app.dispatch(request)
                if response.status != 200:
                    log_event(log, "early_acked_dispatch_refused", level=30, status=response.status)
            except Exception:  # noqa: BLE001 - the request is acked: log it, never raise into the pool
                log_event(log, "dispatch_failed", level=40, exc_info=True, error_id=new_error_id())

        try:
            self.dispatcher.submit(run)
        except RuntimeError:  # shutting down
            log_event(log, "job_rejected_shutting_down", level=30, surface="slash")

    def close(self, wait: bool = True) -> None:
        """Stop taking jobs; with ``wait``, finish the answers in flight."""
        if wait:  # answers in flight end now (their queries are interrupted), not when their SQL does
            database.interrupt_all()
        try:  # in the order work flows: early-acked requests → listeners → answers
            self.dispatcher.shutdown(wait=wait, cancel_futures=not wait)
            self.listener_pool.shutdown(wait=wait, cancel_futures=not wait)
            self.pool.shutdown(wait=wait, cancel_futures=not wait)
            self.quick.shutdown(wait=wait, cancel_futures=not wait)
        finally:
            if wait:  # drained: queries are allowed again (another app in this process, the CLI)
                database.resume_queries()


def _slack_error(exc: BaseException) -> str:
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", None)
        return str(exc.response.get("error") or f"HTTP {status}")[:60]
    return type(exc).__name__


def _transient(exc: BaseException) -> bool:
    """Worth posting again: Slack answered 5xx or 429, or could not be reached."""
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 200) or 200
        return status >= 500 or status == 429 or exc.response.get("error") in ("ratelimited", "internal_error",
                                                                               "fatal_error", "service_unavailable")
    return isinstance(exc, SlackClientError | OSError)


def _host_of(url: str) -> str | None:
    try:
        return (urlsplit(url).hostname or "")[:100]
    except ValueError:
        return None


def _load_policy():
    """The KPI policy (``KPI_POLICY`` or the default); a broken file stops the start-up."""
    try:
        from bot.policy import load_policy
    except ImportError:
        log_event(log, "policy_unavailable", level=30)
        return None
    return load_policy()


def _command_channel_type(command: dict) -> str | None:
    """A slash command's kind of conversation, from Slack's ``channel_name``."""
    name = command.get("channel_name") or ""
    if name == "directmessage":
        return "im"
    if name.startswith("mpdm-"):
        return "mpim"
    return None


def _load_limits():
    try:
        from bot.ratelimit import Limits
    except ImportError:
        log_event(log, "rate_limits_unavailable", level=30)
        return None
    return Limits()


def _model_path(env) -> str | None:
    from metrics.model import model_path

    return model_path(env)


def create_bot(settings: Settings | None = None, *, client: WebClient | None = None) -> KpiBot:
    settings = settings or Settings.from_env()
    if settings.model or settings.dbt_project:
        from metrics import model

        loaded = model.read(settings.model, settings.dbt_project)
        for error in loaded.errors:  # a bad entry is left out; the rest of the model answers
            log.warning("model file: %s", error)
        model.configure(loaded, settings.database_url)
    if not settings.app_token and not settings.signing_secret:
        raise ValueError("HTTP mode needs SLACK_SIGNING_SECRET: unsigned requests must never be accepted")
    bot = KpiBot(settings, client=client)
    # Reuse the auth.test Bolt made at start-up (token verification) instead of a second call.
    for middleware in getattr(bot.app, "_middleware_list", []):
        result = getattr(middleware, "auth_test_result", None)
        if result is not None:
            bot._identity = dict(result.data)
    return bot


def create_app(settings: Settings | None = None, *, client: WebClient | None = None) -> App:
    """The Bolt :class:`App` with kpibot's listeners (see :class:`KpiBot` for the rest)."""
    return create_bot(settings, client=client).app
