"""The benchmark script end to end at a tiny scale: it builds, reuses, measures and summarises.

A few KPIs on a temporary DuckDB file (the demo company at scale 0.05), two timed runs
each, no pandas baseline; once without and once with the HTTP burst (6 commands from 3 users against
``kpibot serve`` and the fake Slack). The full-size run is documented in docs/benchmark.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "run.py"
KPIS = "nps,first_response_time,mau"


def run_benchmark(url: str, *extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KPI_", "SLACK_"))}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--url", url, "--scale", "0.05", "--today", "2025-11-23",
         "--only", KPIS, "--repeat", "2", "--no-pandas", *extra],
        capture_output=True, text=True, timeout=900, cwd=ROOT, env=env,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def bench_url(tmp_path_factory) -> str:
    return f"duckdb:///{tmp_path_factory.mktemp('bench')}/bench.duckdb"


@pytest.fixture(scope="module")
def first_run(bench_url) -> str:
    """The first run on a new file, whichever test asks first: it builds the dataset."""
    return run_benchmark(bench_url, "--no-load")


def test_benchmark_builds_measures_and_summarises(first_run):
    out = first_run
    assert "building the dataset" in out
    summary = [line for line in out.splitlines() if line.startswith("SUMMARY: ")]
    assert len(summary) == 1, out
    assert re.search(r"SUMMARY: \d+ KPI×period cases; worst p95 \d+ ms .*median ratio to raw SQL [\d.]+x", summary[0])
    for kpi in KPIS.split(","):
        assert re.search(rf"^{kpi}\s+2y-monthly\s+[\d.]+", out, re.M), kpi
    assert re.search(r"^nps\s+by-industry\s+[\d.]+", out, re.M)
    assert "charts: p50" in out and "peak RSS of the kpibot process" in out
    assert re.search(r"^machine now: a Python loop \d+ ms, a DuckDB aggregation \d+ ms", out, re.M)
    assert "HTTP burst" not in out


def test_benchmark_reuses_the_data_and_runs_the_http_burst(bench_url, first_run):
    # after first_run: the data is there; two questions each from three people over one second
    out = run_benchmark(bench_url, "--load-n", "6", "--load-users", "3", "--load-spread", "1")
    assert "reusing the dataset" in out and "building the dataset" not in out
    burst = next(line for line in out.splitlines() if line.startswith("HTTP burst: "))
    assert "6 /kpi commands from 3 users in 1 channels over 1 s" in burst and "(0 over 3 s)" in burst
    assert "answered 6/6 (6 answers with 6 charts, 0 refused by a limit, 0 errors)" in burst
    summary = next(line for line in out.splitlines() if line.startswith("SUMMARY: "))
    assert "burst of 6:" in summary and "answered 6/6 (0 refused by a limit)" in summary
