"""The HTTP burst: ``n`` signed ``/kpi`` commands from ``users`` people against the real Slack app.

    python benchmarks/load.py --url duckdb:///data/bench.duckdb            # 200 from 50 users over 5 s
    python benchmarks/load.py --url duckdb:///data/bench.duckdb --n 50 --users 50 --spread 0

``kpibot serve`` runs as its own process in HTTP mode (uvicorn, Bolt, the real signature
check), on a loopback port; its Web API calls go to :class:`tests.fake_slack.FakeSlack`
(``SLACK_API_URL``), in this process, which records every post and upload. Each command is
signed exactly as Slack signs it. The default is issue 13's burst: 200 questions from 50
users (four each) in 10 channels, sent at an even pace over 5 s by a client in a process of
its own (``--spread 0``: all at the same instant, one per user and channel as the earlier
burst did). The server answers one warm-up question first, as a running bot would be warm.

Measured: the ack of each HTTP request (from writing it to reading the whole response;
Slack's deadline is 3 s), and the replies. A command is *answered* when the asker got a
reply meant for it: the answer posted in the channel, or a private reply through its
``response_url`` (a rate-limit or "you have questions running" refusal, saying when to ask
again, or an error) — "Working on it…" notices do not count. The time to the last reply and
to the last chart (added to an answer in place) are reported, with the counts of answers,
refusals and errors.

The questions are a mix of KPIs, breakdowns and trends with periods fixed relative to
``today`` (the dataset's last day), none of them financial (the default KPI policy keeps
those out of channels).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fake_slack import FakeSlack  # noqa: E402
from tests.slack_helpers import (  # noqa: E402
    BOT_TOKEN,
    SIGNING_SECRET,
    TEAM_ID,
    SlackSender,
    http_request,
    signed_headers,
)

__all__ = ["burst", "describe", "end_to_end", "questions"]

ACK_DEADLINE = 3.0  # seconds: Slack shows the user an error past this


def questions(today: date) -> list[str]:
    """A realistic mix: plain values, breakdowns and trends over fixed periods."""
    last_month_start = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    month = f"{last_month_start:%Y-%m}"
    q = (today.month - 1) // 3  # this quarter, 0-based
    year = today.year if q else today.year - 1
    quarter = f"{year}-Q{q if q else 4}"
    return [
        f"nps {quarter}",
        f"csat by touchpoint {month}",
        f"tickets by priority {month}",
        f"first_response_time {quarter}",
        f"churn_rate {quarter}",
        f"mau {month}",
        "nps monthly last-12-months",
        f"backlog {month}",
        f"new_customers by industry {quarter}",
        f"lead_conversion {quarter}",
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def _shows_chart(call) -> bool:
    blocks = call.params.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    return any(isinstance(b, dict) and b.get("type") == "image" for b in blocks)


class Server:
    """``python -m bot.cli serve`` in HTTP mode, pointed at the fake Slack."""

    def __init__(self, url: str, fake: FakeSlack, workdir: str, extra_env: dict[str, str] | None = None):
        self.port = _free_port()
        self.log = Path(workdir) / "server.log"
        env = {
            **os.environ,
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": fake.api_url,
            "KPI_DATABASE_URL": url,
            "KPI_STATE_URL": f"sqlite:///{workdir}/state.sqlite",
            "KPI_LOG_LEVEL": "WARNING",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            **(extra_env or {}),
        }
        env.pop("SLACK_APP_TOKEN", None)  # HTTP mode, not Socket Mode
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve"], cwd=ROOT, env=env,
            stdout=self._log_file, stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kpibot serve exited ({self.proc.returncode}): {self.tail()}")
            try:
                if http_request(self.url + "/healthz", timeout=1.0).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"kpibot serve did not start in {timeout:.0f}s: {self.tail()}")

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log_file.close()
        return self.proc.returncode


def command_form(text: str, channel: str, user: str, response_url: str, trigger: str | None = None) -> dict[str, str]:
    """The form Slack posts for a slash command (``trigger``: what makes its ``trigger_id``
    unique, as Slack's is per invocation; kpibot drops a repeated one as a retry)."""
    return {
        "token": "legacy-verification-token", "team_id": TEAM_ID, "team_domain": "fake",
        "channel_id": channel, "channel_name": channel.lower(), "user_id": user, "user_name": user.lower(),
        "command": "/kpi", "text": text, "api_app_id": "A0KPI", "is_enterprise_install": "false",
        "response_url": response_url, "trigger_id": f"{channel}.{trigger or 1}.abc",
    }


def run_client(host: str, port: int, bodies: list[str], at: list[float] | None = None) -> list[dict]:
    """Sends the commands from a process of its own (so neither the fake Slack nor this one
    competes with it for a GIL), each ``at`` its offset in seconds, and returns, per command,
    when it was sent (monotonic, which is system-wide on Linux), its HTTP status and its ack
    time in ms."""
    spec = json.dumps({"host": host, "port": port, "bodies": bodies, "at": at})
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--client"], input=spec,
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"the load client failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


async def _client(spec: dict) -> list[dict]:
    """One asyncio loop, one keep-alive connection per command (opened first, as Slack's are),
    each request written ``at`` its offset (s) from the start (all at once by default); the
    ack time runs from the write to the end of the response."""
    import asyncio

    host, port = spec["host"], spec["port"]
    requests = []
    for body in spec["bodies"]:
        data = body.encode()
        headers = {"Host": f"{host}:{port}", "Content-Type": "application/x-www-form-urlencoded",
                   "Content-Length": str(len(data)), "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
                   **signed_headers(data)}
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        requests.append(f"POST /slack/events HTTP/1.1\r\n{head}\r\n".encode() + data)
    conns = [await asyncio.open_connection(host, port) for _ in requests]
    go = asyncio.Event()

    offsets = spec.get("at") or [0.0] * len(requests)

    async def one(i: int) -> dict:
        reader, writer = conns[i]
        await go.wait()
        if offsets[i] > 0:
            await asyncio.sleep(max(0.0, start[0] + offsets[i] - time.monotonic()))
        sent = time.monotonic()
        writer.write(requests[i])
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length:
            await reader.readexactly(length)
        elapsed = (time.monotonic() - sent) * 1000
        writer.close()
        return {"sent": sent, "status": status, "ack_ms": elapsed}

    start = [0.0]
    tasks = [asyncio.create_task(one(i)) for i in range(len(requests))]
    await asyncio.sleep(0.05)  # every task waits on the event
    start[0] = time.monotonic()
    go.set()
    return list(await asyncio.gather(*tasks))


@dataclass(frozen=True)
class Command:
    """One ``/kpi`` of the burst: who asks what, where, when (s from the start)."""

    text: str
    user: str
    channel: str
    at: float
    key: str  # its response_url's key: private replies to it are found by it


def plan(mix: list[str], n: int, users: int, channels: int, spread: float, run_id: str) -> list[Command]:
    """``n`` commands at an even pace over ``spread`` seconds, from ``users`` people taking
    turns (so each asks ``n / users`` questions, that far apart), person ``u`` in channel
    ``u % channels``; each person asks the mix in another order."""
    users, channels = max(1, min(users, n)), max(1, min(channels, users))
    out = []
    for i in range(n):
        u, turn = i % users, i // users
        out.append(Command(text=mix[(u + turn * 3) % len(mix)], user=f"U0LOAD{u:03d}",
                           channel=f"CL{run_id}{u % channels:03d}", at=spread * i / n,
                           key=f"{run_id.lower()}r{i:04d}"))
    return out


def burst(url: str, today: date, n: int = 200, *, users: int = 50, channels: int = 10, spread: float = 5.0,
          timeout: float = 300.0) -> dict:
    """Start the app, send the ``n`` signed ``/kpi`` commands of :func:`plan`, wait for a reply
    to each (see the module docstring for what counts).

    Returns the figures: ``ack_p50``/``ack_p99``/``ack_max`` (ms), ``acks_over_deadline``,
    ``answered`` (commands that got a reply), ``answers`` (posted in a channel), ``refused``
    (a rate-limit or in-flight reply), ``errors``, ``charts`` (answers given their chart),
    ``answer_p50``/``answer_p95`` (s from each command to its reply), ``all_answered_s`` (from
    the first command to the last reply) and ``all_charts_s``.
    """
    mix = questions(today)
    run_id = f"{os.getpid():x}{int(time.time()) % 100000:x}".upper()
    with tempfile.TemporaryDirectory(prefix="kpibot-load-") as workdir, FakeSlack(token=BOT_TOKEN) as fake:
        server = Server(url, fake, workdir)
        try:
            server.wait_ready()
            send = SlackSender(server.url, fake.response_url)
            # warm-up: imports, the first connection, matplotlib's font cache
            warm = f"CWARM{run_id}"
            send.command(mix[0], channel=warm, user="U0WARM")
            fake.wait_for("chat.postMessage", where=fake.in_channel(warm), timeout=timeout)

            commands = plan(mix, n, users, channels, spread, run_id)
            bodies = [urlencode(command_form(c.text, c.channel, c.user, fake.response_url(c.key), c.key))
                  for c in commands]
            started = time.monotonic()
            results = run_client("127.0.0.1", server.port, bodies, [c.at for c in commands])
            replies, charts, error = _await_replies(fake, commands, timeout)
        finally:
            code = server.stop()
    acks = [r["ack_ms"] for r in results]
    sent = [r["sent"] for r in results]
    answer_s = [at - sent[i] for i, (_, at) in sorted(replies.items())]
    kinds = [kind for kind, _ in replies.values()]
    first = min(sent) if sent else started
    out = {
        "n": n, "users": users, "channels": channels, "spread_s": spread,
        "statuses": sorted({r["status"] for r in results}),
        "ack_p50": _pct(acks, 0.5),
        "ack_p99": _pct(acks, 0.99),
        "ack_max": max(acks),
        "acks_over_deadline": sum(a >= ACK_DEADLINE * 1000 for a in acks),
        "answered": len(replies),
        "answers": kinds.count("answer"),
        "refused": kinds.count("refused"),
        "errors": kinds.count("error"),
        "charts": len(charts),
        "answer_p50": _pct(answer_s, 0.5),
        "answer_p95": _pct(answer_s, 0.95),
        "all_answered_s": (max(at for _, at in replies.values()) - first) if replies else float("nan"),
        "all_charts_s": (max(charts.values()) - first) if charts else float("nan"),
        "server_exit": code,
    }
    if error:
        out["error"] = error
    return out


#: the replies of bot.ratelimit (a user's and a channel's rate) and of the in-flight limit
REFUSALS = ("You're asking faster", "This channel is asking a lot", "questions running")


def _await_replies(fake: FakeSlack, commands: list[Command], timeout: float
                   ) -> tuple[dict[int, tuple[str, float]], dict[int, float], str | None]:
    """Waits until every command has its reply (an answer in its channel, credited to its
    asker and question, or a private reply through its ``response_url``) and every answer
    its chart; returns, per command index, the reply's kind and time, the time of each
    answer's chart, and what was still missing at ``timeout``."""
    by_key = {c.key: i for i, c in enumerate(commands)}
    wanted = {(c.channel, mrkdwn_user(c.user), c.text): i for i, c in enumerate(commands)}

    def whose(call) -> int | None:
        if call.method == "response_url":
            found = by_key.get(call.params.get("key"))
            return None if found is None or "Working on it" in call.text else found
        channel = call.params.get("channel") or call.params.get("channel_id")
        text = call.text
        for (ch, user, question), i in wanted.items():
            if ch == channel and user in text and f"/kpi {question}`" in text:
                return i
        return None

    def state() -> tuple[dict[int, tuple[str, float]], dict[int, float]]:
        replies: dict[int, tuple[str, float]] = {}
        charts: dict[int, float] = {}
        for call in fake.calls(ok=None):
            if call.method not in ("chat.postMessage", "response_url", "chat.update") or (i := whose(call)) is None:
                continue
            if call.method == "chat.update":
                if _shows_chart(call):
                    charts.setdefault(i, call.at)
                continue
            kind = "answer" if call.method == "chat.postMessage" else (
                "refused" if any(r in call.text for r in REFUSALS) else "error")
            replies.setdefault(i, (kind, call.at))
        return replies, charts

    deadline = time.monotonic() + timeout
    while True:
        replies, charts = state()
        answers = sum(kind == "answer" for kind, _ in replies.values())
        if len(replies) == len(commands) and len(charts) >= answers:
            return replies, charts, None
        if time.monotonic() > deadline:
            return replies, charts, (f"after {timeout:.0f} s: {len(commands) - len(replies)} commands without a reply, "
                                     f"{answers - len(charts)} answers without their chart")
        time.sleep(0.2)


def mrkdwn_user(user_id: str) -> str:
    return f"<@{user_id}>"


def end_to_end(url: str, texts: list[str], repeat: int = 3, *, cached: bool = False,
               timeout: float = 300.0) -> dict:
    """What a person waits for: each question as a signed ``/kpi`` to the running app, one at
    a time (each from its own user in its own channel: no rate limit), timed from writing the
    request to the fake Slack receiving the answer's ``chat.postMessage`` (its text and buttons;
    the chart follows: drawn, uploaded, then added by ``chat.update``, timed as ``chart_p50/p95``). The server keeps its connection the
    way ``kpibot serve`` does. ``cached=False`` runs the server with the answer cache off, so
    every round computes; ``cached=True`` leaves it on and times the rounds after the first.

    Returns per question its times (s) and the p50/p95 over every question and round."""
    run_id = f"{os.getpid():x}{int(time.time()) % 100000:x}".upper()
    env = {} if cached else {"KPI_ANSWER_CACHE_MB": "0"}
    per: dict[str, list[float]] = {text: [] for text in texts}
    charted: list[float] = []  # to the chat.update that adds the chart
    with tempfile.TemporaryDirectory(prefix="kpibot-e2e-") as workdir, FakeSlack(token=BOT_TOKEN) as fake:
        server = Server(url, fake, workdir, env)
        try:
            server.wait_ready()
            send = SlackSender(server.url, fake.response_url)
            if not cached:  # warm-up: imports, the first connection, matplotlib's font cache
                send.command(texts[0], channel=f"CW{run_id}", user="U0EWARM")
                fake.wait_for("chat.postMessage", where=fake.in_channel(f"CW{run_id}"), timeout=timeout)
            k = 0
            for round_ in range(repeat + (1 if cached else 0)):
                for text in texts:
                    k += 1
                    channel, user = f"CE{run_id}{k:04d}", f"U0E{k:04d}"
                    sent = time.monotonic()
                    send.command(text, channel=channel, user=user)
                    post = fake.wait_for("chat.postMessage", where=fake.in_channel(channel), timeout=timeout)[0]
                    update = fake.wait_for("chat.update", where=fake.in_channel(channel), timeout=timeout)[0]
                    if round_ or not cached:  # with the cache on, the first round fills it
                        per[text].append(post.at - sent)
                        charted.append(update.at - sent)
        finally:
            server.stop()
    every = [t for times in per.values() for t in times]
    return {"per_question": per, "p50": _pct(every, 0.5), "p95": _pct(every, 0.95), "max": max(every),
            "chart_p50": _pct(charted, 0.5), "chart_p95": _pct(charted, 0.95), "cached": cached, "rounds": repeat}


def describe(load: dict) -> str:
    return (
        f"HTTP burst: {load['n']} /kpi commands from {load['users']} users in {load['channels']} channels "
        f"over {load['spread_s']:g} s: ack p50 {load['ack_p50']:.0f} ms, "
        f"p99 {load['ack_p99']:.0f} ms, max {load['ack_max']:.0f} ms "
        f"({load['acks_over_deadline']} over {ACK_DEADLINE:.0f} s); answered {load['answered']}/{load['n']} "
        f"({load['answers']} answers with {load['charts']} charts, {load['refused']} refused by a limit, "
        f"{load['errors']} errors); reply p50 {load['answer_p50']:.1f} s, p95 {load['answer_p95']:.1f} s; "
        f"last reply {load['all_answered_s']:.1f} s and last chart {load['all_charts_s']:.1f} s after the first command"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="duckdb:///data/bench.duckdb")
    ap.add_argument("--today", type=date.fromisoformat, default=date.today(),
                    help="the dataset's today (periods are chosen relative to it)")
    ap.add_argument("--n", type=int, default=200, help="commands in the burst")
    ap.add_argument("--users", type=int, default=50, help="people sending them (taking turns)")
    ap.add_argument("--channels", type=int, default=10, help="channels they are in")
    ap.add_argument("--spread", type=float, default=5.0, help="seconds over which they are sent (0: at once)")
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        import asyncio

        print(json.dumps(asyncio.run(_client(json.loads(sys.stdin.read())))))
        return 0
    load = burst(args.url, args.today, n=args.n, users=args.users, channels=args.channels, spread=args.spread)
    print(describe(load))
    print(json.dumps(load))
    ok = load["answered"] == load["n"] and load["acks_over_deadline"] == 0 and load["statuses"] == [200]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

