"""Trust soak (issue 15): money never leaks, every restricted answer is audited first, and a
flood of expensive refused questions does not slow anyone else down.

    python benchmarks/soak.py --trust                    # 30 s of load (the default)
    python benchmarks/soak.py --trust --seconds 120 --flood-rate 20 --json trust.json
    python benchmarks/soak.py --trust --state postgresql  # audit log and dedupe keys in PostgreSQL

One process, all on loopback: the real Slack app (HTTP mode, uvicorn) with the policy
``money`` and ``per_customer`` allowed in ``C0FINANCE`` only (and ``money`` to the CFO in a DM
with the bot), the fake Slack Web API of ``tests/fake_slack.py``, a DuckDB demo company.
Rate limits are opened wide, so every flood question reaches the policy check (the per-user
in-flight cap still applies). At once, for ``--seconds``:

* **flood**: one user sends ``--flood-rate`` expensive money questions a second from public
  channels (``predicted_clv daily last-year``, ``ltv_cac daily last-year`` …): all refused;
* **ordinary**: other users ask ordinary questions (``--rate`` a second, each in a channel of
  its own); the wait is from sending the command to its answer being posted;
* **attacks**: money asked every other way the issue lists — slash commands in public
  channels, DMs from someone the policy does not name, mentions in threads, a group DM with
  the CFO and someone else (by slash command and by mention), ``digest add`` and
  ``alert add`` on money, ``alert list all`` / ``digest list all`` from a public channel;
* **finance**: money asked where it is allowed (``C0FINANCE``, the CFO's DM): answered.

Counted from what the fake Slack received:

* **leaks**: anything sent to a place the policy does not allow money in that shows an amount
  (``$``), a finance rule (its channel or threshold), or posts an answer to a money question;
* **unaudited restricted answers**: at the moment the fake receives each post of a
  restricted answer, its audit row must already be in the state database (the row written
  before posting); and at the end, as many such rows as posts;
* **ordinary wait** p50 / p95 / p99 / max (target: p99 < 2 s).

Exit status 0 when there are no leaks, no unaudited answers, no lost replies and p99 < 2 s.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FINANCE = "C0FINANCE"
CFO = "U0CFO"
CFO_DM = "D0CFODM"
MIXED_MPIM = "G0CFOBOB"
ALLOWED = {FINANCE, CFO_DM}  # the only places money may be shown
FINANCE_THRESHOLD = "12345"

EXPENSIVE = ["predicted_clv daily last-year", "ltv_cac daily last-year", "revenue daily last-year",
             "profit_per_customer daily last-year", "acquisition last-year", "marketing_roi weekly last-year",
             "avg_customer_value by plan last-year", "new_mrr daily last-year"]
MONEY = ["revenue last-quarter", "mrr last-month", "new_mrr last-quarter", "net_new_mrr last-quarter",
         "churned_mrr by plan last-quarter", "nrr last-quarter", "grr last-quarter", "revenue_churn last-quarter",
         "marketing_roi last-quarter", "upsell_opportunities last-quarter", "leads last-quarter",
         "leads_per_dollar last-quarter", "profit_per_customer last-quarter", "acquisition last-quarter"]
MONEY_KPIS = ["revenue", "mrr", "new_mrr", "nrr", "marketing_roi", "profit_per_customer"]
ORDINARY = ["nps last-quarter", "csat last-month", "tickets last-month", "nps by plan last-quarter",
            "first_response_time last-month", "complaints last-month"]
ATTACKS = ["slash", "dm", "thread", "mpim-slash", "mpim-mention", "digest-add", "alert-add", "list-all"]
PRIVATE_MARKERS = ("KPI policy", "can't post", "questions running", "Working on it")


@dataclass
class Sent:
    kind: str  # flood | ordinary | attack:<how> | finance
    text: str
    place: str  # the channel (or DM, group DM) the reply belongs to
    key: str | None  # the response_url key of a slash command
    sent_at: float
    status: int | None = None


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, -(-len(ordered) * q // 100) - 1))]


class TrustSoak:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rng = random.Random(args.seed)
        self.tmp = Path(tempfile.mkdtemp(prefix="kpibot-trust-soak-"))
        self.sent: list[Sent] = []
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.finance_turn = itertools.count()  # the finance channel and the CFO's DM in turn
        self.unaudited_at_post: list[str] = []
        self.restricted_posts: Counter[str] = Counter()

    # ---- set-up -----------------------------------------------------------------------------

    def setup(self) -> None:
        self.state_url = self._state_db()
        policy = self.tmp / "policy.toml"
        policy.write_text(f'[sensitivity.money]\nchannels = ["{FINANCE}"]\nusers = ["{CFO}"]\n'
                          f'[sensitivity.per_customer]\nchannels = ["{FINANCE}"]\n')
        os.environ.update({
            "KPI_STATE_URL": self.state_url, "KPI_POLICY": str(policy),
            "KPI_USER_BURST": "100000", "KPI_USER_PER_MINUTE": "100000",
            "KPI_CHANNEL_BURST": "100000", "KPI_CHANNEL_PER_MINUTE": "100000",
            "KPI_LOG_LEVEL": os.environ.get("KPI_LOG_LEVEL", "CRITICAL"),
        })
        os.environ.pop("KPI_REDIS_URL", None)
        from bot import logging as kpilog
        from storage import database
        from storage.demo import build_demo

        kpilog.setup(os.environ["KPI_LOG_LEVEL"], stream=open(self.tmp / "kpibot.log", "a"))  # noqa: SIM115
        self.url = f"duckdb:///{self.tmp / 'metrics.duckdb'}"
        started = time.perf_counter()
        rows = build_demo(database.get_engine(self.url), seed=self.args.seed, scale=self.args.scale)
        print(f"metrics database: duckdb, demo company scale {self.args.scale}: {sum(rows.values()):,} rows "
              f"in {time.perf_counter() - started:.1f}s")

        from bot.app import Settings, create_bot
        from bot.server import HttpServer
        from tests.fake_slack import FakeSlack
        from tests.slack_helpers import BOT_TOKEN, SIGNING_SECRET, SlackSender

        self.fake = FakeSlack(token=BOT_TOKEN).start()
        self.fake.members[MIXED_MPIM] = [CFO, "U0BOB", "UKPIBOT"]
        self.fake.members[CFO_DM] = [CFO, "UKPIBOT"]
        self.fake.fail("chat.postMessage", when=self._audited_first, times=10**9)  # a probe, never a fault
        self.bot = create_bot(Settings(bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET,
                                       api_url=self.fake.api_url, database_url=self.url))
        self.server = HttpServer(self.bot).start()
        self.sender = SlackSender(self.server.url, self.fake.response_url)
        # finance's own rules, which a public channel's "list all" must not show
        for text in (f"alert add revenue above {FINANCE_THRESHOLD}", "digest add daily 09:00 mrr"):
            reply = self._sync(text, FINANCE, CFO)
            if "added" not in reply:
                raise SystemExit(f"could not add a finance rule: {reply}")

    def _state_db(self) -> str:
        """SQLite in the run's directory, or a PostgreSQL database of the run's own (dropped at the end)."""
        self.pg_state: str | None = None
        if self.args.state != "postgresql":
            return f"sqlite:///{self.tmp / 'state.sqlite'}"
        from sqlalchemy import create_engine, text

        admin_url = os.environ.get("KPI_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
        self.pg_state = f"kpibot_trust_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.pg_state}"'))
        admin.dispose()
        self.admin_url = admin_url
        return admin_url.rsplit("/", 1)[0] + "/" + self.pg_state

    def _audited_first(self, params: dict[str, Any]) -> bool:
        """Runs inside the fake as each chat.postMessage arrives: a restricted answer's audit row
        must already be written. Always False: a probe, not a fault."""
        channel = params.get("channel")
        text = str(params.get("text") or "")
        if channel not in ALLOWED or any(m in text for m in PRIVATE_MARKERS):
            return False
        from sqlalchemy import func, select

        from bot import audit

        log = audit.audit_log
        with audit.engine_for(self.state_url).connect() as conn:
            rows = conn.execute(select(func.count()).select_from(log).where(
                log.c.channel_id == channel, log.c.detail == "written before posting")).scalar_one()
        with self.lock:
            self.restricted_posts[channel] += 1
            if rows < self.restricted_posts[channel]:
                self.unaudited_at_post.append(f"{channel}: {text[:80]}")
        return False

    def _sync(self, text: str, channel: str, user: str) -> str:
        resp, url = self.sender.command(text, channel=channel, user=user)
        key = url.rsplit("/", 1)[1]
        try:
            [call] = self.fake.wait_for("response_url", timeout=60, where=lambda c: c.params.get("key") == key
                                        and "Working on it" not in c.text)
        except AssertionError:
            raise SystemExit(f"FAILED at set-up: no reply to `/kpi {text}` within 60 s") from None
        return call.text

    # ---- the load -----------------------------------------------------------------------------

    def _slash(self, kind: str, text: str, channel: str, user: str, channel_name: str | None = None) -> None:
        key = uuid.uuid4().hex[:12]
        item = Sent(kind, text, channel, key, time.monotonic())
        with self.lock:
            self.sent.append(item)
        resp, _ = self.sender.command(text, channel=channel, user=user, response_key=key, channel_name=channel_name)
        item.status = resp.status

    def _event(self, kind: str, text: str, event: dict) -> None:
        item = Sent(kind, text, event["channel"], None, time.monotonic())
        with self.lock:
            self.sent.append(item)
        resp, _ = self.sender.event(event)
        item.status = resp.status

    def flood(self, pool: ThreadPoolExecutor) -> None:
        n = next(self.ids)
        pool.submit(self._slash, "flood", self.rng.choice(EXPENSIVE), f"CFLOOD{n:06d}", "U0FLOOD")

    def ordinary(self, pool: ThreadPoolExecutor) -> None:
        n = next(self.ids)
        pool.submit(self._slash, "ordinary", self.rng.choice(ORDINARY), f"CORD{n:06d}", f"U1{n % 40:03d}")

    def finance(self, pool: ThreadPoolExecutor) -> None:
        from tests.slack_helpers import direct_message

        n = next(self.ids)
        text = self.rng.choice(MONEY)
        if next(self.finance_turn) % 2 == 0:
            pool.submit(self._slash, "finance", text, FINANCE, f"U2{n % 5:03d}")
        else:
            pool.submit(self._event, "finance", text,
                        direct_message(text, channel=CFO_DM, ts=f"{1_800_000_000 + n}.000100", user=CFO))

    def attack(self, pool: ThreadPoolExecutor, how: str) -> None:
        from tests.slack_helpers import direct_message, mention

        n = next(self.ids)
        user, ts = f"U3{n % 20:03d}", f"{1_800_000_000 + n}.000200"
        money, kpi = self.rng.choice(MONEY), self.rng.choice(MONEY_KPIS)
        kind = f"attack:{how}"
        if how == "slash":
            pool.submit(self._slash, kind, money, f"CATK{n:06d}", user)
        elif how == "dm":
            pool.submit(self._event, kind, money, direct_message(money, channel=f"DATK{n:06d}", ts=ts, user=user))
        elif how == "thread":
            pool.submit(self._event, kind, money, mention(f"<@UKPIBOT> {money}", channel=f"CATK{n:06d}", ts=ts,
                                                          thread_ts=f"{1_800_000_000 + n}.000100", user=user))
        elif how == "mpim-slash":  # each in a group DM of its own, with the CFO and Bob
            channel = f"GATK{n:06d}"
            self.fake.members[channel] = [CFO, "U0BOB", "UKPIBOT"]
            pool.submit(self._slash, kind, money, channel, CFO, f"mpdm-cfo--bob-{n}")
        elif how == "mpim-mention":
            channel = f"GATK{n:06d}"
            self.fake.members[channel] = [CFO, "U0BOB", "UKPIBOT"]
            event = {**mention(f"<@UKPIBOT> {money}", channel=channel, ts=ts, user=CFO), "channel_type": "mpim"}
            pool.submit(self._event, kind, money, event)
        elif how == "digest-add":
            pool.submit(self._slash, kind, f"digest add daily 09:00 nps {kpi}", f"CATK{n:06d}", user)
        elif how == "alert-add":
            pool.submit(self._slash, kind, f"alert add {kpi} above 1", f"CATK{n:06d}", user)
        else:
            pool.submit(self._slash, kind, self.rng.choice(["alert list all", "digest list all"]), f"CATK{n:06d}", user)

    def load(self) -> float:
        """Every stream on its own clock, for ``--seconds``; returns the seconds it ran."""
        args = self.args
        streams = [(args.flood_rate, self.flood), (args.rate, self.ordinary), (args.attack_rate, None),
                   (args.finance_rate, self.finance)]
        attacks = itertools.cycle(ATTACKS)
        started = time.monotonic()
        next_at = [started] * len(streams)
        with ThreadPoolExecutor(max_workers=24) as pool:
            while time.monotonic() - started < args.seconds:
                i = min(range(len(streams)), key=lambda k: next_at[k])
                time.sleep(max(0.0, next_at[i] - time.monotonic()))
                rate, fire = streams[i]
                if fire is None:
                    self.attack(pool, next(attacks))
                else:
                    fire(pool)
                next_at[i] += 1.0 / rate
        return time.monotonic() - started

    def drain(self, seconds: float) -> None:
        """Until every command and event has its reply (bounded by ``seconds``)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            done = sum(v for k, v in self.bot.stats.items() if k.startswith("reply_"))
            if done >= self.bot.stats["jobs"] and not self.bot._in_flight:
                break
            time.sleep(0.2)
        time.sleep(1.0)  # a late post would show up now

    # ---- the report -----------------------------------------------------------------------------

    def report(self, elapsed: float) -> dict:
        from sqlalchemy import func, select

        from bot import audit

        by_key: dict[str, list] = {}
        by_place: dict[str, list] = {}
        for call in self.fake.calls():
            if call.method == "response_url":
                by_key.setdefault(call.params.get("key"), []).append(call)
            else:
                place = call.params.get("channel") or call.params.get("channel_id")
                if place:
                    by_place.setdefault(place, []).append(call)

        leaks: list[str] = []
        outcomes: Counter[str] = Counter()
        waits: list[float] = []
        flood_replies: list[float] = []
        for item in self.sent:
            calls = [c for c in by_key.get(item.key or "", []) if "Working on it" not in c.text] + [
                c for c in by_place.get(item.place, []) if c.method != "conversations.members"
                and "Working on it" not in c.text]
            if item.place in ALLOWED:
                continue  # shared places: counted as a whole below
            if item.status != 200:
                outcomes[f"{item.kind}: HTTP {item.status}"] += 1
                continue
            if not calls:
                outcomes[f"{item.kind}: lost"] += 1
                continue
            first = min(calls, key=lambda c: c.at)
            if item.kind == "ordinary":
                posts = [c for c in calls if c.method == "chat.postMessage" and c.ok]
                if posts:
                    waits.append(posts[0].at - item.sent_at)
                    outcomes["ordinary: answered"] += 1
                else:
                    outcomes["ordinary: not answered"] += 1
                continue
            for call in calls:  # a money question, asked where money may not be shown
                text = call.text
                public = (call.method in ("chat.postMessage", "chat.update", "files.completeUploadExternal")
                          and not any(m in text for m in PRIVATE_MARKERS)) \
                    or call.params.get("response_type") == "in_channel"
                shown = "$" in text or FINANCE in text or FINANCE_THRESHOLD in text or "12,345" in text
                if shown or (public and not item.kind.startswith("attack:list")):
                    leaks.append(f"{item.kind} {item.text!r} in {item.place}: {call.method} {text[:120]!r}")
            if item.kind == "flood":
                flood_replies.append(first.at - item.sent_at)
            said = first.text
            outcomes[f"{item.kind}: " + ("refused (policy)" if "KPI policy" in said or "can't post" in said
                                         else "refused (in flight)" if "questions running" in said
                                         else "listed" if item.kind == "attack:list-all" else "other")] += 1
        # the places money may be shown: every answer there audited first, as many rows as posts
        with audit.engine_for(self.state_url).connect() as conn:
            log = audit.audit_log
            rows = dict(conn.execute(select(log.c.channel_id, func.count()).where(
                log.c.detail == "written before posting").group_by(log.c.channel_id)).all())
        finance_sent = Counter(i.place for i in self.sent if i.place in ALLOWED and i.kind == "finance")
        answered = {p: self.restricted_posts[p] for p in ALLOWED}
        unaudited = len(self.unaudited_at_post) + sum(max(0, answered[p] - rows.get(p, 0)) for p in ALLOWED)
        ordinary = outcomes["ordinary: answered"]
        result = {
            "seconds": round(elapsed, 1), "state": self.args.state,
            "flood_rate": self.args.flood_rate, "ordinary_rate": self.args.rate,
            "sent": dict(Counter(i.kind.split(":")[0] for i in self.sent)),
            "outcomes": dict(sorted(outcomes.items())),
            "leaks": len(leaks), "leak_examples": leaks[:5],
            "restricted_answers_posted": answered, "restricted_asked": dict(finance_sent),
            "audit_rows_written_before_posting": rows,
            "unaudited_restricted_answers": unaudited, "unaudited_examples": self.unaudited_at_post[:5],
            "ordinary_answered": ordinary,
            "ordinary_wait_s_p50_p95_p99_max": [round(pct(waits, q), 2) for q in (50, 95, 99)]
            + [round(max(waits, default=float("nan")), 2)],
            "flood_reply_s_p50_p99": [round(pct(flood_replies, q), 2) for q in (50, 99)],
            "policy_refusals": self.bot.stats["policy_refusals"],
            "in_flight_refusals": self.bot.stats["in_flight_refused"],
        }
        lost = sum(v for k, v in outcomes.items() if k.endswith(("lost", "not answered")) or "HTTP" in k)
        p99 = result["ordinary_wait_s_p50_p95_p99_max"][2]
        result["ok"] = bool(not leaks and not unaudited and not lost and ordinary and p99 < 2.0
                            and all(answered[p] for p in ALLOWED))
        return result

    def cleanup(self) -> None:
        for stop in (lambda: self.bot.close(wait=False), lambda: self.server.stop(), lambda: self.fake.stop()):
            try:
                stop()
            except Exception:  # noqa: BLE001, S110 - best effort at the end
                pass
        from storage import database, state

        database.dispose_all()
        state.dispose_all()
        if getattr(self, "pg_state", None):
            from sqlalchemy import create_engine, text

            admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.pg_state}" WITH (FORCE)'))
            admin.dispose()


def print_report(r: dict) -> None:
    def line(label: str, value: Any) -> None:
        print(f"  {label:<46} {value}")

    print(f"\nkpibot trust soak: {r['seconds']} s, state database {r['state']}, one user flooding {r['flood_rate']}/s expensive refused "
          f"questions, {r['ordinary_rate']}/s ordinary questions")
    line("sent", r["sent"])
    for k, v in r["outcomes"].items():
        line(k, v)
    line("LEAKS (money where the policy does not allow it)", r["leaks"])
    for example in r["leak_examples"]:
        line("  leak", example)
    line("restricted answers posted (finance, CFO DM)", r["restricted_answers_posted"])
    line("audit rows written before posting", r["audit_rows_written_before_posting"])
    line("UNAUDITED restricted answers", r["unaudited_restricted_answers"])
    for example in r["unaudited_examples"]:
        line("  unaudited", example)
    line("ordinary answered", r["ordinary_answered"])
    line("ordinary wait s p50 / p95 / p99 / max", " / ".join(map(str, r["ordinary_wait_s_p50_p95_p99_max"])))
    line("flood reply s p50 / p99", " / ".join(map(str, r["flood_reply_s_p50_p99"])))
    line("policy refusals / in-flight refusals", f"{r['policy_refusals']} / {r['in_flight_refusals']}")
    print(f"\nresult: {'OK' if r['ok'] else 'FAILED'} (0 leaks, 0 unaudited, nothing lost, ordinary p99 < 2 s)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the trust load (default 30)")
    parser.add_argument("--flood-rate", type=float, default=10.0, help="flooding user's questions a second (10)")
    parser.add_argument("--attack-rate", type=float, default=3.0, help="money attacks a second (3)")
    parser.add_argument("--finance-rate", type=float, default=0.5, help="allowed money questions a second (0.5)")
    parser.add_argument("--state", choices=["sqlite", "postgresql"], default="sqlite",
                        help="the state database (audit log, dedupe keys): SQLite file or a PostgreSQL database")
    parser.add_argument("--trust-drain", type=float, default=60.0, help="most seconds to wait for replies (60)")


def run(args: argparse.Namespace) -> int:
    soak = TrustSoak(args)
    try:
        soak.setup()
        print(f"load: {args.seconds:g} s; log in {soak.tmp}/kpibot.log")
        elapsed = soak.load()
        soak.drain(args.trust_drain)
        result = soak.report(elapsed)
    finally:
        soak.cleanup()
    print_report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0 if result["ok"] else 1
