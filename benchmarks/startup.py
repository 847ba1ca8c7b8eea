"""How long `kpibot` takes to start: p50/p95 of `kpibot --help` and of a cold `kpibot ask`.

Each run is a new process (a cold start, as a person at a terminal gets; the OS file cache
is warm after the first). The question is answered from the demo company in a temporary
DuckDB file (built once at ``--scale``), or from ``--url``.

    .venv/bin/python benchmarks/startup.py            # 10 runs each
    .venv/bin/python benchmarks/startup.py -n 30 --question "churn_rate last quarter"

Targets (issue 11, on an idle machine): `--help` < 0.3 s, a cold `ask` < 1.5 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def kpibot_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m bot.cli``."""
    script = Path(sys.executable).parent / "kpibot"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run, in seconds: on a machine shared with
    other work the CPU time is what an idle machine's wall time would be, about."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=10)
    parser.add_argument("--question", default="nps last quarter")
    parser.add_argument("--url", help="metrics database (default: a demo company in a temporary folder)")
    parser.add_argument("--scale", type=float, default=1.0, help="demo company scale (default 1)")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="kpibot-startup-"))
    try:
        # without PYTHONDONTWRITEBYTECODE: the warm-up writes kpibot's bytecode, as installing
        # the wheel does (else every start compiles ~50 modules from source, ~0.5 s of CPU)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("KPI_", "SLACK_")) and k != "PYTHONDONTWRITEBYTECODE"}
        env.update(KPI_DATABASE_URL=args.url or f"duckdb:///{tmp / 'demo.duckdb'}",
                   KPI_STATE_URL=f"sqlite:///{tmp / 'state.sqlite'}", MPLCONFIGDIR=str(tmp / "mpl"))
        kpibot = kpibot_command()
        if not args.url:
            print(f"building the demo company (scale {args.scale}) …", flush=True)
            subprocess.run([*kpibot, "demo", "--scale", str(args.scale)], env=env, cwd=tmp, check=True,
                           capture_output=True)
        cases = {"kpibot --help": [*kpibot, "--help"], f'kpibot ask "{args.question}"': [*kpibot, "ask", args.question]}
        for cmd in cases.values():  # one warm-up each: bytecode compiled, files in the OS cache
            timed(cmd, env, tmp)
        times: dict[str, list[float]] = {name: [] for name in cases}
        cpu: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):  # interleaved, so a burst of load hits both alike
            for name, cmd in cases.items():
                wall, used = timed(cmd, env, tmp)
                times[name].append(wall)
                cpu[name].append(used)
        print(f"{args.runs} cold starts each, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        for name, values in times.items():
            print(f"  {name:<40} p50 {statistics.median(values) * 1000:6.0f} ms   "
                  f"p95 {pct(values, 0.95) * 1000:6.0f} ms   CPU p50 {statistics.median(cpu[name]) * 1000:6.0f} ms")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
