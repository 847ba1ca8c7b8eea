"""`kpibot serve` started while Slack is unreachable: it stays up, says so, and recovers by itself.

The process is the real `kpibot serve`; Slack is the fake Web API (and its Socket Mode
WebSocket) behind a loopback TCP proxy that refuses connections until the test lets them
through (:class:`tests.faults.TcpProxy`). Every wait is on a condition (a health answer,
a recorded call, an ack), with a deadline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.fake_slack import FakeSlack, FakeSocketMode
from tests.faults import TcpProxy
from tests.slack_helpers import (
    BOT_TOKEN,
    EXPECTED_NPS,
    QUESTION,
    SIGNING_SECRET,
    TEAM_ID,
    SlackSender,
    http_request,
    load_fixture,
)

ROOT = Path(__file__).resolve().parent.parent
APP_TOKEN = "xapp-1-A0KPI-1234-testapptoken"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _health(port: int, path: str = "/healthz") -> tuple[int, dict] | None:
    try:
        resp = http_request(f"http://127.0.0.1:{port}{path}", timeout=2)
    except OSError:
        return None
    return resp.status, resp.json()


def _wait(proc: subprocess.Popen, what: str, probe: Callable[[], object], timeout: float = 30.0):
    """``probe()`` until it returns something truthy; fail if the process exits first."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"kpibot serve exited ({proc.returncode}) while waiting for {what}"
        found = probe()
        if found:
            return found
        assert time.monotonic() < deadline, f"waited {timeout}s for {what}"
        time.sleep(0.05)  # a polling interval, not a fixed wait: the loop ends on the condition


@contextmanager
def serving(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[subprocess.Popen, list[str]]]:
    url = f"duckdb:///{tmp_path / 'metrics.duckdb'}"
    load_fixture(url)
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "KPI_"))}
    full.update(
        KPI_DATABASE_URL=url, KPI_STATE_URL=f"sqlite:///{tmp_path / 'state.sqlite'}",
        KPI_SCHEDULES="0", KPI_AUDIT="0", KPI_SLACK_RETRY_SECONDS="0.1", HOST="127.0.0.1",
        MPLCONFIGDIR=str(tmp_path / "mpl"), PYTHONPATH=str(ROOT), **env,  # this checkout's package
    )
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], cwd=tmp_path, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err: list[str] = []
    try:
        yield proc, err
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, raw = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, raw = proc.communicate()
        err.append(raw.decode())


def docker_healthcheck(port: int, **container_env: str) -> int:
    """The exit code of the Dockerfile's own HEALTHCHECK command, run against ``port`` with
    the container's environment."""
    text = (ROOT / "Dockerfile").read_text()
    found = re.search(r'^\s*CMD python -c "(.+)"\s*$', text.split("HEALTHCHECK", 1)[1], re.M)
    assert found, "no HEALTHCHECK CMD in the Dockerfile"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "KPI_"))}
    done = subprocess.run([sys.executable, "-c", found.group(1)], env={**env, **container_env, "PORT": str(port)},
                          capture_output=True, timeout=60)
    return done.returncode


def _unreachable(port: int):
    found = _health(port)
    return found if found and found[0] == 503 else None


def _healthy(port: int):
    found = _health(port)
    return found if found and found[0] == 200 else None


def test_http_mode_serves_while_slack_is_down_and_recovers_by_itself(tmp_path):
    port = _free_port()
    with FakeSlack(token=BOT_TOKEN) as fake, TcpProxy(fake.host, fake.port) as proxy:
        proxy.down()  # Slack's API refuses every connection
        env = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "PORT": str(port),
               "SLACK_API_URL": f"http://127.0.0.1:{proxy.port}/api/"}
        with serving(env, tmp_path) as (proc, err):
            status, body = _wait(proc, "a 503 health answer", lambda: _unreachable(port))
            assert body["ok"] is False and body["slack"] == "unreachable"
            assert body["error"].startswith("Slack unreachable")
            assert _health(port, "/livez") == (200, {"ok": True, "mode": "http"})
            assert not fake.calls("auth.test")  # nothing got through the proxy

            proxy.up()
            status, body = _wait(proc, "a healthy answer after Slack came back", lambda: _healthy(port))
            assert body == {"ok": True, "mode": "http", "slack": "connected"}
            fake.wait_for("auth.test")

            channel = "C0RECOVER"
            resp, _ = SlackSender(f"http://127.0.0.1:{port}", fake.response_url).command(QUESTION, channel=channel)
            assert resp.status == 200
            [post] = fake.wait_for("chat.postMessage", where=fake.in_channel(channel), timeout=30)
            assert f"*{EXPECTED_NPS}*" in post.text
    assert proc.returncode == 0
    assert "Slack is unreachable" in err[0] and BOT_TOKEN not in err[0]
    events = [json.loads(line)["event"] for line in err[0].splitlines() if line.startswith("{")]
    assert "slack_unreachable" in events and "slack_connected" in events


def test_a_refused_token_still_stops_serve(tmp_path):
    """Retrying cannot fix a wrong token: that one exits (1) with a clear line, as before."""
    with FakeSlack(token="xoxb-the-real-one") as fake:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "KPI_"))}
        env.update(SLACK_BOT_TOKEN="xoxb-wrong", SLACK_SIGNING_SECRET="s", SLACK_API_URL=fake.api_url,
                   KPI_SCHEDULES="0", KPI_STATE_URL=f"sqlite:///{tmp_path / 'state.sqlite'}",
                   PORT=str(_free_port()), HOST="127.0.0.1", PYTHONPATH=str(ROOT))
        done = subprocess.run([sys.executable, "-m", "bot.cli", "serve"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Could not start the Slack app" in done.stderr and "invalid_auth" in done.stderr
    assert "xoxb-wrong" not in done.stderr


def test_socket_mode_health_follows_slack_and_the_websocket(tmp_path):
    port = _free_port()
    with FakeSlack(token=BOT_TOKEN, app_token=APP_TOKEN) as fake, TcpProxy(fake.host, fake.port) as proxy:
        ws = FakeSocketMode(fake)
        proxy.down()
        env = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN, "PORT": str(port),
               "SLACK_API_URL": f"http://127.0.0.1:{proxy.port}/api/"}
        try:
            with serving(env, tmp_path) as (proc, err):
                status, body = _wait(proc, "a 503 health answer", lambda: _unreachable(port))
                assert body["mode"] == "socket" and body["error"].startswith("Slack unreachable")
                assert docker_healthcheck(port, SLACK_APP_TOKEN=APP_TOKEN) != 0  # the container shows as unhealthy

                proxy.up()
                ws.connected(timeout=30)
                status, body = _wait(proc, "a healthy answer", lambda: _healthy(port))
                assert body == {"ok": True, "mode": "socket", "slack": "connected"}
                assert docker_healthcheck(port, SLACK_APP_TOKEN=APP_TOKEN) == 0
                envelope = ws.send("slash_commands", {
                    "token": "x", "team_id": TEAM_ID, "channel_id": "C0SOCKET", "user_id": "U0ALICE",
                    "user_name": "alice", "command": "/kpi", "text": QUESTION,
                    "response_url": fake.response_url(), "trigger_id": "1.2.3", "api_app_id": "A0KPI",
                    "is_enterprise_install": "false",
                })
                ws.wait_ack(envelope, timeout=30)
                [post] = fake.wait_for("chat.postMessage", where=fake.in_channel("C0SOCKET"), timeout=30)
                assert f"*{EXPECTED_NPS}*" in post.text

                # the WebSocket goes away (and cannot be reopened): the health check says so
                proxy.down()
                ws.close()
                status, body = _wait(proc, "a 503 once the socket dropped", lambda: _unreachable(port))
                assert "Socket Mode connection is down" in body["error"]
                assert docker_healthcheck(port, SLACK_APP_TOKEN=APP_TOKEN) != 0

                # Slack is back: the SDK's client reconnects by itself, and the health follows
                ws = FakeSocketMode(fake)
                proxy.up()
                ws.connected(timeout=30)
                _wait(proc, "a healthy answer after the reconnect", lambda: _healthy(port))
        finally:
            ws.close()
    assert proc.returncode == 0
