"""Soak run: kpibot under steady mixed load with database and Slack faults, all on loopback.

    python benchmarks/soak.py                       # 10 minutes; PostgreSQL if one answers, else DuckDB
    python benchmarks/soak.py --minutes 3 --rate 3  # shorter, 3 commands a second
    python benchmarks/soak.py --db duckdb --json soak.json
    python benchmarks/soak.py --trust                # 30 s: leaks, audit, a flood (benchmarks/trust_soak.py)

What runs, in one process:

* the real Slack app (HTTP mode, uvicorn on 127.0.0.1) with its digests and alerts
  scheduler (APScheduler, real wall-clock cron), answering signed ``/kpi`` commands;
* the fake Slack Web API from ``tests/fake_slack.py`` (loopback), which records every call
  and injects faults;
* a metrics database with the demo company: PostgreSQL (``KPI_TEST_POSTGRES``, default
  postgres@127.0.0.1:5432; a database of the run's own, dropped at the end) reached through
  :class:`tests.faults.TcpProxy`, or a DuckDB file.

The load: a steady stream (``--rate`` per second) of questions from many users and channels
— good ones, financial ones outside the finance channel (refused by the policy), bad ones,
help — plus bursts from one hasty user and in one busy channel (rate limited). At the start,
digests are added through ``/kpi digest add`` for every minute of the run (two per minute)
and four alert rules through ``/kpi alert add``.

The faults, on a one-minute cycle aligned on the clock so that the digests due at each
minute mark are due in the middle of an outage: Slack 429 (Retry-After) and 5xx bursts every
minute; a table locked so queries wait for ``statement_timeout`` every minute (on DuckDB, a
tiny ``KPI_QUERY_TIMEOUT`` instead); on even minutes the database is down (connections reset
and refused) for 12 s across the minute mark and silent ("hung") for 5 s later on; on odd
minutes Slack's posting methods answer 503 for 12 s across the mark and the database drops
for 8 s later on. Halfway through, the whole app and its scheduler are restarted (the
delivery log in the state database is all that carries over). DuckDB runs get the slow-query
faults only.

Afterwards the faults stop and the run drains (at most ``--drain`` seconds) until every
expected delivery is in. The report: commands sent and how each ended, deliveries expected
vs made (duplicates, missing), latencies, peak memory. Exit status 0 when nothing was lost,
nothing duplicated, no internal error reached a user and the app is healthy; else 1.
Every loop is bounded by the clock and stops by itself.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import resource
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_ADMIN_URL = os.environ.get("KPI_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
FINANCE = "C0FINANCE"
GOOD = [
    "nps last-quarter", "csat by plan last-month", "tickets weekly last-quarter", "churn_rate ytd",
    "first_response_time by priority last-month", "nps by industry last-quarter", "feature_adoption last-month",
    "nps trend", "resolution_time last-7-days", "csat last-30-days vs last year", "complaints last-month",
]
FINANCIAL = ["revenue last-quarter", "gross_margin last-month", "cac by acquisition channel last-quarter", "mrr last-month"]
BAD = ["nsp last-quarter", "nps by colour", "revenue 2026-Q9", "tickets since tomorrow", "what is love"]
INFO = ["help", "list", "define nps", "digest list", "alert list"]
ALERTS = ["nps below 90 over 30d min 1", "csat below 95 over 30d min 1", "first_response_time above 1m over 30d",
          "tickets above 1 over 30d"]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))]


@dataclass
class Command:
    n: int
    category: str  # good | financial | finance-ok | bad | info | hasty | busy
    text: str
    user: str
    channel: str
    key: str
    sent_at: float = 0.0
    ack_ms: float | None = None
    status: int | None = None
    outcome: str | None = None  # answered | answered-fallback | refused-policy | rate-limited | bad-question
    #                             | database | internal-error | lost | not-sent
    reply_s: float | None = None
    detail: str = ""  # the text of an unexpected reply, for the report


@dataclass
class Faults:
    log: list[tuple[float, str]] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def note(self, started: float, what: str) -> None:
        self.log.append((time.monotonic() - started, what))
        self.counts[what.split(" ")[0]] += 1


class Soak:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rng = random.Random(args.seed)
        self.tmp = Path(tempfile.mkdtemp(prefix="kpibot-soak-"))
        self.commands: list[Command] = []
        self.faults = Faults()
        self.rss: list[float] = []
        self.restarts = 0
        self.digest_channels: dict[str, datetime] = {}
        self.alert_channels: list[str] = []
        self._lock = threading.Lock()
        self._owners = itertools.count(1)
        self._sending = threading.Event()
        self._sending.set()
        self.pg_name: str | None = None
        self.injector_error: str | None = None
        self.proxy = None
        self.direct = None

    # ---- set-up ---------------------------------------------------------------------------------

    def setup(self) -> None:
        os.environ.update({
            "KPI_STATE_URL": f"sqlite:///{self.tmp / 'state.sqlite'}",
            "KPI_QUERY_TIMEOUT": "3",
            "KPI_ALERT_INTERVAL_MINUTES": "0.25",
            "KPI_RETRY_MINUTES": "0.25",
            "KPI_GRACE_HOURS": "1",
            "KPI_USER_BURST": "5", "KPI_USER_PER_MINUTE": "30",
            "KPI_CHANNEL_BURST": "8", "KPI_CHANNEL_PER_MINUTE": "30",
            "KPI_WORKING_AFTER": "1.5",
            "KPI_LOG_LEVEL": os.environ.get("KPI_LOG_LEVEL", "CRITICAL"),
        })
        policy = self.tmp / "policy.toml"
        policy.write_text(f'admins = ["U0ADMIN"]\n[sensitivity.money]\nchannels = ["{FINANCE}"]\n'
                          f'[sensitivity.per_customer]\nchannels = ["{FINANCE}"]\n')
        os.environ["KPI_POLICY"] = str(policy)
        from bot import logging as kpilog

        kpilog.setup(os.environ["KPI_LOG_LEVEL"], stream=open(self.tmp / "kpibot.log", "a"))  # noqa: SIM115
        self.url = self._metrics_db()
        from tests.fake_slack import FakeSlack
        from tests.slack_helpers import BOT_TOKEN

        self.token = BOT_TOKEN
        self.fake = FakeSlack(token=BOT_TOKEN).start()
        self._start_app()

    def _metrics_db(self) -> str:
        from sqlalchemy import create_engine, text

        from storage import database
        from storage.demo import build_demo

        backend = self.args.db
        if backend in ("auto", "postgresql"):
            try:
                admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
                with admin.connect() as conn:
                    self.pg_name = f"kpibot_soak_{os.getpid()}_{uuid.uuid4().hex[:6]}"
                    conn.execute(text(f'CREATE DATABASE "{self.pg_name}"'))
                self.admin = admin
                backend = "postgresql"
            except Exception as exc:  # noqa: BLE001
                if backend == "postgresql":
                    raise SystemExit(f"PostgreSQL not available at {PG_ADMIN_URL}: {exc}") from exc
                backend = "duckdb"
        self.backend = backend
        if backend == "postgresql":
            from tests.faults import TcpProxy

            server = self.admin.url.set(database=self.pg_name)
            self.proxy = TcpProxy(server.host or "127.0.0.1", server.port or 5432).start()
            url = server.set(host="127.0.0.1", port=self.proxy.port).render_as_string(hide_password=False)
            self.direct = create_engine(server.render_as_string(hide_password=False))
        else:
            url = f"duckdb:///{self.tmp / 'metrics.duckdb'}"
        started = time.perf_counter()
        counts = build_demo(database.get_engine(url), seed=self.args.seed, scale=self.args.scale)
        print(f"metrics database: {backend}, demo company scale {self.args.scale}: {sum(counts.values()):,} rows "
              f"in {time.perf_counter() - started:.1f}s")
        return url

    def _start_app(self) -> None:
        from bot.app import Settings, create_bot
        from bot.server import HttpServer, start_schedules
        from tests.slack_helpers import SIGNING_SECRET, SlackSender

        self.bot = create_bot(Settings(bot_token=self.token, signing_secret=SIGNING_SECRET,
                                       api_url=self.fake.api_url, database_url=self.url))
        self.server = HttpServer(self.bot).start()
        self.scheduler = start_schedules(self.bot)
        self.sender = SlackSender(self.server.url, self.fake.response_url)

    def restart_app(self, started: float) -> None:
        """Stop everything (answers in flight are finished), then start afresh on the same state DB."""
        self._sending.clear()
        try:
            time.sleep(0.2)  # let commands already being sent get their ack
            self.bot.close(wait=True)
            if self.scheduler is not None:
                self.scheduler.shutdown(wait=True)
            self.server.stop()
            from bot.schedules import scheduler as sched_mod

            sched_mod.stop_all()
            self._start_app()
            self.restarts += 1
            self.faults.note(started, "restart of the app and its scheduler")
        finally:
            self._sending.set()

    # ---- schedules ------------------------------------------------------------------------------

    def add_schedules(self, load_end: float) -> None:
        now = datetime.now(UTC)
        first = (now + timedelta(seconds=40)).replace(second=0, microsecond=0) + timedelta(minutes=1)
        last = now + timedelta(seconds=load_end - time.monotonic() - 20)
        slot, i = first, 0
        while slot <= last:
            for kpis in ("nps csat", "tickets first_response_time"):
                channel = f"CDIG{i:03d}"
                reply = self.command_sync(f"digest add daily {slot:%H:%M} UTC {kpis}", channel)
                if "added" not in reply:
                    raise SystemExit(f"could not add a digest: {reply}")
                self.digest_channels[channel] = slot
                i += 1
            slot += timedelta(minutes=1)
        for j, rule in enumerate(ALERTS):
            channel = f"CALR{j:02d}"
            reply = self.command_sync(f"alert add {rule}", channel)
            if "added" not in reply:
                raise SystemExit(f"could not add an alert: {reply}")
            self.alert_channels.append(channel)
        refused = self.command_sync("digest add daily 09:00 UTC revenue", "C0GENERAL")
        assert "KPI policy" in refused, refused
        print(f"schedules: {len(self.digest_channels)} digests due from {first:%H:%M} to {slot - timedelta(minutes=1):%H:%M} "
              f"UTC, {len(self.alert_channels)} alert rules; a revenue digest outside {FINANCE} refused")

    def command_sync(self, text: str, channel: str, user: str | None = None) -> str:
        """A command whose private reply is awaited (set-up only; one owner each, under the user limit)."""
        user = user or f"U0OWN{next(self._owners):03d}"
        resp, url = self.sender.command(text, channel=channel, user=user)
        key = url.rsplit("/", 1)[1]
        [call] = self.fake.wait_for("response_url", where=lambda c: c.params.get("key") == key, timeout=30)
        return call.text

    # ---- the load -----------------------------------------------------------------------------------

    def next_command(self, n: int) -> Command:
        roll = self.rng.random()
        channel, user = f"C{n:06d}", f"U{self.rng.randrange(200):04d}"
        if roll < 0.55:
            category, text = "good", self.rng.choice(GOOD)
        elif roll < 0.65:
            category, text = "financial", self.rng.choice(FINANCIAL)
        elif roll < 0.70:
            category, text, channel = "finance-ok", self.rng.choice(FINANCIAL), FINANCE
            user = f"U{self.rng.randrange(200, 260):04d}"
        elif roll < 0.80:
            category, text = "bad", self.rng.choice(BAD)
        else:
            category, text = "info", self.rng.choice(INFO)
        return Command(n, category, text, user, channel, uuid.uuid4().hex[:12])

    def send(self, cmd: Command) -> None:
        if not self._sending.wait(timeout=30):
            cmd.outcome = "not-sent"
            return
        cmd.sent_at = time.monotonic()
        try:
            resp, _ = self.sender.command(cmd.text, channel=cmd.channel, user=cmd.user, response_key=cmd.key)
            cmd.status, cmd.ack_ms = resp.status, resp.elapsed * 1000
        except OSError:
            cmd.outcome = "not-sent"  # the app was restarting between two requests

    def load(self, seconds: float, started: float) -> None:
        deadline = time.monotonic() + seconds
        counter = itertools.count(1)
        interval = 1.0 / self.args.rate
        next_at = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            last_burst = time.monotonic()
            while time.monotonic() < deadline:
                n = next(counter)
                cmd = self.next_command(n)
                with self._lock:
                    self.commands.append(cmd)
                pool.submit(self.send, cmd)
                if time.monotonic() - last_burst > 20:  # a hasty user, and a busy channel
                    last_burst = time.monotonic()
                    busy = f"CBUSY{n:06d}"
                    for k in range(12):
                        burst = [Command(next(counter), "busy", "csat last-month", f"U9{k:03d}", busy,
                                         uuid.uuid4().hex[:12])]
                        if k < 8:
                            burst.append(Command(next(counter), "hasty", "nps last-quarter", "U0HASTY",
                                                 f"CH{n:06d}{k}", uuid.uuid4().hex[:12]))
                        for extra in burst:
                            with self._lock:
                                self.commands.append(extra)
                            pool.submit(self.send, extra)
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
                if len(self.rss) < (time.monotonic() - started) / 5:
                    self.rss.append(rss_mb())
                    self.fake.uploads.clear()  # the fake's copies of charts and bodies: not the bot's memory
                    for call in self.fake.calls():
                        call.body = b""

    # ---- faults ---------------------------------------------------------------------------------------

    def inject(self, seconds: float, started: float, stop: threading.Event) -> None:
        """The fault cycle, one minute long, until ``seconds`` have passed or ``stop`` is set.

        Cycles are aligned on the clock so that the digests due at each minute mark are due
        in the middle of an outage: of the database on even cycles, of Slack on odd ones.
        """
        deadline = time.monotonic() + seconds
        restart_at = time.monotonic() + seconds / 2
        now = datetime.now(UTC)
        to_mark = 60 - (now.second + now.microsecond / 1e6)  # seconds to the next minute mark
        cycle_start = time.monotonic() + to_mark - 23  # offset 18 of a cycle = 5 s before a mark
        while cycle_start + 8 < time.monotonic():
            cycle_start += 60
        even = [(8, lambda: self.slack_429(started)), (18, lambda: self.db_down(started, 12)),
                (36, lambda: self.slack_5xx(started)),
                (42, lambda: self.db_slow(started, 6)), (52, lambda: self.db_hang(started, 5))]
        odd = [(8, lambda: self.slack_429(started)), (18, lambda: self.slack_outage(started, 12)),
               (36, lambda: self.slack_5xx(started)),
               (42, lambda: self.db_slow(started, 6)), (50, lambda: self.db_down(started, 8))]
        cycle = 0
        while not stop.is_set():
            for offset, action in (even if cycle % 2 == 0 else odd):
                target = cycle_start + offset
                while time.monotonic() < target:
                    if stop.wait(min(0.2, max(0.0, target - time.monotonic()))) or time.monotonic() >= deadline:
                        return
                    if self.restarts == 0 and time.monotonic() >= restart_at:
                        self.restart_app(started)
                action()
            cycle += 1
            cycle_start += 60

    def slack_429(self, started: float) -> None:
        self.fake.fail("chat.postMessage", status=429, retry_after=1, times=3)
        self.faults.note(started, "slack-429 x3 (Retry-After: 1)")

    def slack_5xx(self, started: float) -> None:
        self.fake.fail("chat.postMessage", status=500, times=2)
        self.fake.fail("files.getUploadURLExternal", status=503, times=1)
        self.faults.note(started, "slack-5xx x3")

    def db_down(self, started: float, seconds: float) -> None:
        if self.proxy is None:
            return self.db_slow(started, seconds)
        self.proxy.down()
        self.faults.note(started, f"db-down {seconds:.0f}s (connections reset and refused)")
        threading.Timer(seconds, self.proxy.up).start()

    def db_hang(self, started: float, seconds: float) -> None:
        if self.proxy is None:
            return None
        self.proxy.hang()
        self.faults.note(started, f"db-hang {seconds:.0f}s (server silent)")
        threading.Timer(seconds, self.proxy.up).start()

    def db_slow(self, started: float, seconds: float) -> None:
        if self.direct is not None:
            from sqlalchemy import text

            def hold():
                with self.direct.connect() as conn:
                    with conn.begin():
                        conn.execute(text("LOCK TABLE survey_responses IN ACCESS EXCLUSIVE MODE"))
                        time.sleep(seconds)

            threading.Thread(target=hold, daemon=True).start()
            self.faults.note(started, f"db-slow {seconds:.0f}s (survey_responses locked: statement_timeout)")
        else:
            os.environ["KPI_QUERY_TIMEOUT"] = "0.005"
            threading.Timer(seconds, lambda: os.environ.__setitem__("KPI_QUERY_TIMEOUT", "3")).start()
            self.faults.note(started, f"db-slow {seconds:.0f}s (KPI_QUERY_TIMEOUT=5 ms)")

    def slack_outage(self, started: float, seconds: float) -> None:
        methods = ("chat.postMessage", "chat.update", "files.getUploadURLExternal", "files.completeUploadExternal")
        faults = [self.fake.fail(m, status=503, times=100_000) for m in methods]

        def end():
            for f in faults:
                f.times = 0

        threading.Timer(seconds, end).start()
        self.faults.note(started, f"slack-down {seconds:.0f}s (posting methods answer 503)")

    # ---- results --------------------------------------------------------------------------------------

    def classify(self) -> None:
        """Each command's outcome, from what the fake Slack received."""
        by_key: dict[str, list] = {}
        for call in self.fake.calls("response_url"):
            if "Working on it" not in call.text:
                by_key.setdefault(call.params.get("key"), []).append(call)
        posts: dict[str, list] = {}
        for call in self.fake.calls("chat.postMessage", ok=True):
            posts.setdefault(call.params.get("channel"), []).append(call)
        for cmd in self.commands:
            if cmd.outcome == "not-sent":
                continue
            private = by_key.get(cmd.key, [])
            if private:
                call = private[0]
                cmd.reply_s = call.at - cmd.sent_at
                text = call.text
                if call.params.get("response_type") == "in_channel":
                    cmd.outcome = "answered-fallback"
                elif "error id" in text:
                    cmd.outcome = "internal-error"
                    cmd.detail = text[:200]
                elif "KPI policy" in text:
                    cmd.outcome = "refused-policy"
                elif "try again in" in text:
                    cmd.outcome = "rate-limited"
                elif "database" in text or "took too long" in text or "refreshed" in text:
                    cmd.outcome = "database"
                elif cmd.category == "info":
                    cmd.outcome = "answered"
                else:
                    cmd.outcome = "bad-question"
                continue
            channel_posts = posts.get(cmd.channel, [])
            if cmd.category in ("busy", "finance-ok"):  # shared channels: counted below
                cmd.outcome = "answered?"
            elif channel_posts:
                cmd.outcome, cmd.reply_s = "answered", channel_posts[0].at - cmd.sent_at
            else:
                cmd.outcome = "lost"
        for channel in {c.channel for c in self.commands if c.outcome == "answered?"}:
            shared = [c for c in self.commands if c.channel == channel and c.outcome == "answered?"]
            got = len(posts.get(channel, []))
            for i, cmd in enumerate(sorted(shared, key=lambda c: c.sent_at)):
                cmd.outcome = "answered" if i < got else "lost"

    def deliveries(self) -> dict:
        top = [c for c in self.fake.calls(ok=True)
               if c.method in ("chat.postMessage", "files.completeUploadExternal") and not c.params.get("thread_ts")]

        def per_channel(channels) -> Counter:
            found = Counter()
            for c in top:
                ch = c.params.get("channel") or c.params.get("channel_id")
                if ch in channels and "could not be posted" not in c.text:
                    found[ch] += 1
            return found

        digests = per_channel(set(self.digest_channels))
        alerts = per_channel(set(self.alert_channels))
        reports = [c for c in top if "could not be posted" in c.text]
        late = [c for c in top if "⏰ _Late" in c.text]
        return {
            "digests_expected": len(self.digest_channels),
            "digests_made": sum(min(v, 1) for v in digests.values()),
            "digests_duplicated": sum(v - 1 for v in digests.values() if v > 1),
            "digests_missing": sorted(set(self.digest_channels) - set(digests)),
            "digests_late_marked": len(late),
            "alerts_expected": len(self.alert_channels),
            "alerts_made": sum(min(v, 1) for v in alerts.values()),
            "alerts_duplicated": sum(v - 1 for v in alerts.values() if v > 1),
            "alerts_missing": sorted(set(self.alert_channels) - set(alerts)),
            "failure_reports": len(reports),
        }

    def delivery_log(self) -> dict:
        """From the state database: how the deliveries went (statuses, retried after a failure)."""
        from sqlalchemy import select

        from storage import state

        with state.get_state_engine().connect() as conn:
            rows = conn.execute(select(state.deliveries.c.kind, state.deliveries.c.status,
                                       state.deliveries.c.attempts)).all()
        return {
            "statuses": dict(Counter(f"{k}:{st}" for k, st, _ in rows)),
            "posted_after_a_failed_attempt": sum(1 for _, st, a in rows if st == "posted" and a > 1),
        }

    def drain(self, seconds: float) -> float:
        """Until every expected delivery is in and every command has its reply (bounded)."""
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            d = self.deliveries()
            jobs_done = sum(v for k, v in self.bot.stats.items() if k.startswith("reply_")) >= self.bot.stats["jobs"]
            if d["digests_made"] == d["digests_expected"] and d["alerts_made"] == d["alerts_expected"] and jobs_done:
                time.sleep(3)  # a late duplicate would show up now
                break
            time.sleep(1)
        return time.monotonic() - started

    def report(self, elapsed: float, drained: float) -> dict:
        from bot import audit
        from tests.slack_helpers import http_request

        self.classify()
        outcomes = Counter(c.outcome for c in self.commands)
        sent = [c for c in self.commands if c.outcome != "not-sent"]
        acks = [c.ack_ms for c in sent if c.ack_ms is not None]
        answered = [c.reply_s for c in sent if c.outcome in ("answered", "answered-fallback") and c.reply_s]
        db_lines = [c.reply_s for c in sent if c.outcome == "database" and c.reply_s]
        unexpected = Counter(
            (c.category, c.outcome) for c in sent
            # (the policy is checked before any work, by the data the question reads: a financial
            # question is refused even with the database down)
            if (c.category == "financial" and c.outcome not in ("refused-policy", "rate-limited"))
            or (c.category == "good" and c.outcome not in ("answered", "answered-fallback", "database", "rate-limited"))
        )
        audit.flush(15)
        try:
            rows = audit.latest(1_000_000)
        except Exception:  # noqa: BLE001
            rows = []
        healthy = http_request(self.server.url + "/healthz", timeout=5).status == 200
        d = self.deliveries()
        result = {
            "backend": self.backend,
            "minutes": round(elapsed / 60, 2),
            "drain_seconds": round(drained, 1),
            "commands_sent": len(sent),
            "not_sent_during_restart": outcomes["not-sent"],
            "answered": outcomes["answered"] + outcomes["answered-fallback"],
            "answered_via_response_url_fallback": outcomes["answered-fallback"],
            "refused_by_policy": outcomes["refused-policy"],
            "rate_limited": outcomes["rate-limited"],
            "bad_question_message": outcomes["bad-question"],
            "failed_with_clear_database_message": outcomes["database"],
            "internal_errors": outcomes["internal-error"],
            "lost": outcomes["lost"],
            "unexpected": {f"{k[0]}->{k[1]}": v for k, v in unexpected.items()},
            "internal_error_texts": [f"{c.text!r}: {c.detail}" for c in sent if c.outcome == "internal-error"][:5],
            "ack_ms_p50_p99_max": [round(pct(acks, 50)), round(pct(acks, 99)), round(max(acks, default=0))],
            "answer_s_p50_p95_max": [round(pct(answered, 50), 2), round(pct(answered, 95), 2),
                                     round(max(answered, default=0), 2)],
            "database_line_s_p50_max": [round(pct(db_lines, 50), 2), round(max(db_lines, default=0), 2)],
            **d,
            "faults": dict(self.faults.counts),
            "restarts": self.restarts,
            "audit_rows": len(rows),
            "audit_rows_slack": sum(1 for r in rows if r["source"] == "slack"),
            "audit_rows_schedule": sum(1 for r in rows if r["source"] == "schedule"),
            "audit_dropped": audit.writer().dropped,
            "lost_commands": [
                {"text": c.text, "category": c.category, "channel": c.channel, "user": c.user, "key": c.key,
                 "sent_s": round(c.sent_at - self.started, 1), "ack_status": c.status,
                 "calls": [(x.method, x.status, round(x.at - self.started, 1)) for x in self.fake.calls()
                           if (x.params.get("channel") or x.params.get("channel_id")) == c.channel
                           or x.params.get("key") == c.key]}
                for c in sent if c.outcome == "lost"][:10],
            "rss_mb_1min_half_end_peak": [round(self.rss[min(12, len(self.rss) - 1)]) if self.rss else None,
                                          round(self.rss[len(self.rss) // 2]) if self.rss else None,
                                          round(rss_mb()), round(peak_rss_mb())],
            "deliveries_log": self.delivery_log(),
            "healthy_at_end": healthy,
        }
        result["injector_error"] = self.injector_error
        result["ok"] = bool(
            healthy and self.faults.counts and not self.injector_error and not result["lost"] and not result["internal_errors"] and not unexpected
            and not d["digests_missing"] and not d["alerts_missing"]
            and not d["digests_duplicated"] and not d["alerts_duplicated"]
        )
        return result

    def cleanup(self) -> None:
        for stop in (lambda: self.bot.close(wait=False), lambda: self.scheduler and self.scheduler.shutdown(wait=False),
                     lambda: self.server.stop(), lambda: self.fake.stop(), lambda: self.proxy and self.proxy.close()):
            try:
                stop()
            except Exception:  # noqa: BLE001, S110 - best effort at the end
                pass
        from storage import database

        database.dispose_all()
        if self.direct is not None:
            self.direct.dispose()
        if self.pg_name:
            from sqlalchemy import text

            with self.admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)'))
            self.admin.dispose()


def print_report(r: dict) -> None:
    def line(label, value):
        print(f"  {label:<44} {value}")

    print(f"\nkpibot soak: {r['minutes']} min of load on {r['backend']}, then {r['drain_seconds']} s of drain")
    print("commands")
    line("sent", r["commands_sent"])
    line("answered (of which via response_url fallback)", f"{r['answered']} ({r['answered_via_response_url_fallback']})")
    line("refused by the KPI policy", r["refused_by_policy"])
    line("rate limited (friendly line)", r["rate_limited"])
    line("bad question (clear message)", r["bad_question_message"])
    line("database down/slow (one clear line)", r["failed_with_clear_database_message"])
    line("internal errors shown to users", r["internal_errors"])
    line("lost (no reply at all)", r["lost"])
    line("not sent (app restarting)", r["not_sent_during_restart"])
    for lost in r["lost_commands"]:
        line("  lost", lost)
    if r["unexpected"]:
        line("UNEXPECTED outcomes", r["unexpected"])
    for text in r.get("internal_error_texts", []):
        line("  internal error", text)
    line("ack ms p50 / p99 / max", " / ".join(map(str, r["ack_ms_p50_p99_max"])))
    line("answer s p50 / p95 / max", " / ".join(map(str, r["answer_s_p50_p95_max"])))
    line("database line s p50 / max", " / ".join(map(str, r["database_line_s_p50_max"])))
    print("deliveries")
    line("digests expected / made / duplicated", f"{r['digests_expected']} / {r['digests_made']} / {r['digests_duplicated']}")
    line("  of which carry a 'late' note (retried)", r["digests_late_marked"])
    line("alerts expected / made / duplicated", f"{r['alerts_expected']} / {r['alerts_made']} / {r['alerts_duplicated']}")
    line("missing", r["digests_missing"] + r["alerts_missing"] or "none")
    line("failure reports posted", r["failure_reports"])
    print("faults and process")
    line("faults injected", ", ".join(f"{k} x{v}" for k, v in r["faults"].items()))
    line("restarts", r["restarts"])
    line("audit rows (slack / schedule), dropped",
         f"{r['audit_rows']} ({r['audit_rows_slack']} / {r['audit_rows_schedule']}), {r['audit_dropped']}")
    line("delivery log", r["deliveries_log"]["statuses"])
    line("posted after a failed attempt (retried)", r["deliveries_log"]["posted_after_a_failed_attempt"])
    line("RSS MB at 1 min / half-way / end / peak", " / ".join(map(str, r["rss_mb_1min_half_end_peak"])))
    line("healthy at the end", r["healthy_at_end"])
    print(f"\nresult: {'OK' if r['ok'] else 'FAILED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load (default 10)")
    parser.add_argument("--rate", type=float, default=2.0, help="commands per second (default 2)")
    parser.add_argument("--db", choices=["auto", "postgresql", "duckdb"], default="auto")
    parser.add_argument("--scale", type=float, default=0.2, help="demo company size (default 0.2)")
    parser.add_argument("--drain", type=float, default=180.0, help="most seconds to wait for deliveries at the end")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="also write the report to this file")
    parser.add_argument("--trust", action="store_true",
                        help="the trust soak instead (issue 15: leaks, audit, a flood of refused questions)")
    from benchmarks import trust_soak

    trust_soak.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.trust:
        return trust_soak.run(args)
    if args.minutes < 2:
        parser.error("--minutes must be at least 2 (digests are scheduled on minute marks)")
    soak = Soak(args)
    result = None
    try:
        soak.setup()
        seconds = args.minutes * 60
        started = soak.started = time.monotonic()
        soak.add_schedules(started + seconds)
        stop = threading.Event()
        def inject() -> None:
            try:
                soak.inject(seconds, started, stop)
            except Exception as exc:  # noqa: BLE001 - reported, and the run fails
                soak.injector_error = repr(exc)
                raise

        injector = threading.Thread(target=inject, daemon=True)
        injector.start()
        print(f"load: {args.rate}/s for {args.minutes} min, faults on a one-minute cycle; log in {soak.tmp}/kpibot.log")
        soak.load(seconds, started)
        stop.set()
        injector.join(timeout=30)
        time.sleep(1)
        elapsed = time.monotonic() - started
        drained = soak.drain(args.drain)
        result = soak.report(elapsed, drained)
    finally:
        soak.cleanup()
    print_report(result)
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "fault_log": soak.faults.log}, indent=2, default=str))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
