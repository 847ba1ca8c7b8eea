"""The HTTP burst: ``n`` concurrent ``/kpi`` commands against the real Slack app.

    python benchmarks/load.py --url duckdb:///data/bench.duckdb --n 50

``kpibot serve`` runs as its own process in HTTP mode (uvicorn, Bolt, the real signature
check), on a loopback port; its Web API calls go to :class:`tests.fake_slack.FakeSlack`
(``SLACK_API_URL``), in this process, which records every post and upload. Each command is
signed exactly as Slack signs it, from its own user in its own channel (so no rate limit
applies), and all ``n`` are released at once by a barrier. Measured: the time until each
HTTP request is answered (the ack; Slack's deadline is 3 s), and the time until every
answer has been posted to its channel with its chart uploaded. The server answers one
warm-up question first, as a running bot would be warm.

The questions are a mix of KPIs, breakdowns and trends with periods fixed relative to
``today`` (the dataset's last day), none of them financial (the default KPI policy keeps
those out of channels).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
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


def command_form(text: str, channel: str, user: str, response_url: str) -> dict[str, str]:
    """The form Slack posts for a slash command."""
    return {
        "token": "legacy-verification-token", "team_id": TEAM_ID, "team_domain": "fake",
        "channel_id": channel, "channel_name": channel.lower(), "user_id": user, "user_name": user.lower(),
        "command": "/kpi", "text": text, "api_app_id": "A0KPI", "is_enterprise_install": "false",
        "response_url": response_url, "trigger_id": f"{channel}.1.abc",
    }


def run_client(host: str, port: int, bodies: list[str]) -> list[dict]:
    """Sends the commands from a process of its own (so neither the fake Slack nor this one
    competes with it for a GIL) and returns, per command, when it was sent (monotonic, which
    is system-wide on Linux), its HTTP status and its ack time in ms."""
    spec = json.dumps({"host": host, "port": port, "bodies": bodies})
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--client"], input=spec,
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"the load client failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


async def _client(spec: dict) -> list[dict]:
    """One asyncio loop, one keep-alive connection per command (opened first, as Slack's are),
    every request written at the same instant; the ack time runs from the write to the end
    of the response."""
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

    async def one(i: int) -> dict:
        reader, writer = conns[i]
        await go.wait()
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

    tasks = [asyncio.create_task(one(i)) for i in range(len(requests))]
    await asyncio.sleep(0.05)  # every task waits on the event
    go.set()
    return list(await asyncio.gather(*tasks))


def burst(url: str, today: date, n: int = 50, *, timeout: float = 300.0) -> dict:
    """Start the app, fire ``n`` signed ``/kpi`` commands at once, wait for every answer.

    Returns the figures: ``ack_p50``/``ack_p99``/``ack_max`` (ms), ``acks_over_deadline``,
    ``answered`` (answers posted in their channel), ``charts`` (charts uploaded),
    ``answer_p50``/``answer_p95`` (s from the burst to each answer) and ``all_answered_s``.
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

            channels = [f"CL{run_id}{i:03d}" for i in range(n)]
            texts = list(itertools.islice(itertools.cycle(mix), n))
            bodies = [
                urlencode(command_form(texts[i], channels[i], f"U0LOAD{i:03d}", fake.response_url()))
                for i in range(n)
            ]
            started = time.monotonic()
            results = run_client("127.0.0.1", server.port, bodies)
            acks = [r["ack_ms"] for r in results]
            statuses = [r["status"] for r in results]
            wanted = set(channels)

            def channel_of(call) -> str | None:
                return call.params.get("channel") or call.params.get("channel_id")

            def in_burst(call) -> bool:
                return channel_of(call) in wanted

            posts, error = [], None
            try:
                posts = fake.wait_for("chat.postMessage", count=n, where=in_burst, timeout=timeout)
            except AssertionError as exc:  # report what arrived instead of failing the benchmark
                error = str(exc).splitlines()[0]
                posts = fake.calls("chat.postMessage", where=in_burst)
            first_post: dict[str, float] = {}
            for call in posts:
                first_post.setdefault(channel_of(call), call.at)
            # the text goes out first; the chart, uploaded without a channel, is then added to the
            # answer by chat.update as an image block
            try:
                fake.wait_for("chat.update", count=len(first_post), timeout=timeout,
                              where=lambda c: in_burst(c) and _shows_chart(c))
            except AssertionError as exc:
                error = error or str(exc).splitlines()[0]
            charts = {channel_of(c) for c in fake.calls("chat.update", where=in_burst) if _shows_chart(c)}
            sent_at = {channels[i]: results[i]["sent"] for i in range(n)}
            answer_s = [first_post[ch] - sent_at[ch] for ch in first_post]
        finally:
            code = server.stop()
    out = {
        "n": n,
        "statuses": sorted(set(statuses)),
        "ack_p50": _pct(acks, 0.5),
        "ack_p99": _pct(acks, 0.99),
        "ack_max": max(acks),
        "acks_over_deadline": sum(a >= ACK_DEADLINE * 1000 for a in acks),
        "answered": len(first_post),
        "charts": len(charts & wanted),
        "answer_p50": _pct(answer_s, 0.5),
        "answer_p95": _pct(answer_s, 0.95),
        "all_answered_s": (max(first_post.values()) - started) if first_post else float("nan"),
        "server_exit": code,
    }
    if error:
        out["error"] = error
    return out


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
        f"HTTP burst: {load['n']} concurrent /kpi commands: ack p50 {load['ack_p50']:.0f} ms, "
        f"p99 {load['ack_p99']:.0f} ms, max {load['ack_max']:.0f} ms "
        f"({load['acks_over_deadline']} over {ACK_DEADLINE:.0f} s); answered {load['answered']}/{load['n']} "
        f"with {load['charts']} charts; answer p50 {load['answer_p50']:.1f} s, p95 {load['answer_p95']:.1f} s, "
        f"all in {load['all_answered_s']:.1f} s"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="duckdb:///data/bench.duckdb")
    ap.add_argument("--today", type=date.fromisoformat, default=date.today(),
                    help="the dataset's today (periods are chosen relative to it)")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        import asyncio

        print(json.dumps(asyncio.run(_client(json.loads(sys.stdin.read())))))
        return 0
    load = burst(args.url, args.today, n=args.n)
    print(describe(load))
    print(json.dumps(load))
    ok = load["answered"] == load["n"] and load["acks_over_deadline"] == 0 and load["statuses"] == [200]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

