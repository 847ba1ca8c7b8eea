"""MetricFlow as a peer: the cases both can express, timed on the same DuckDB data, rows side by side.

    .venv/bin/python benchmarks/run.py --metricflow .venv-dbt/bin/python      # as part of the benchmark
    .venv/bin/python benchmarks/metricflow_peer.py --python .venv-dbt/bin/python --url duckdb:///data/bench.duckdb

MetricFlow is not a kpibot dependency and wants its own virtualenv (dbt-core pins what kpibot
also uses); in this repository's environment::

    python3 -m venv .venv-dbt && .venv-dbt/bin/pip install -r tests/dbt-requirements.txt   (what .ci/run does)

(dbt-core 1.12 needs ``dbt-core-experimental-parser``, whose build downloads a binary from
GitHub: it does not install where only PyPI is reachable.)

The dbt project ``benchmarks/metricflow/`` describes kpibot's own tables (NPS, tickets, new
customers, revenue; industry through the customer entity) in MetricFlow's vocabulary; its
models are never built, so MetricFlow's SQL reads the very tables kpibot reads. Per case,
kpibot's ``api.ask`` (the number alone: no explanation, no chart, no answer cache, the same
work MetricFlow does) and MetricFlow's ``MetricFlowEngine.query`` (its Python API in a
long-lived process: ``mf query`` would add seconds of dbt start-up to each) are timed after a
warm-up, each on its own DuckDB connection with the same memory limit, and their values are
compared. This file runs under both interpreters: :func:`_driver` (MetricFlow's side) uses
only the standard library and MetricFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = Path(__file__).resolve().parent / "metricflow"

#: kpibot's question (its period resolved against the dataset's today) -> MetricFlow's metric
#: and group-by; each kpibot KPI here is defined the same way in benchmarks/metricflow/models
CASES = [
    ("nps last-quarter", "nps", None),
    ("nps by industry last-quarter", "nps", "customer__industry"),
    ("nps monthly last-24-months", "nps", "metric_time__month"),
    ("tickets last-quarter", "tickets", None),
    ("tickets by priority last-quarter", "tickets", "ticket__priority"),
    ("tickets monthly last-24-months", "tickets", "metric_time__month"),
    ("new_customers by industry last-quarter", "new_customers", "customer__industry"),
    ("revenue last-quarter", "revenue", None),
    ("revenue monthly last-24-months", "revenue", "metric_time__month"),
]


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


# ---- kpibot's side (kpibot's virtualenv) ---------------------------------------------------


def _kpibot_rows(result, group_by: str | None) -> dict[str, float | None]:
    if group_by is None:
        return {"": result.value}
    if group_by == "metric_time__month":
        return {p.start.isoformat(): p.value for p in result.series}
    return {g.group: g.value for g in result.breakdown}


def kpibot_side(url: str, today, repeat: int) -> list[dict]:
    from metrics import api
    from metrics import cache as answer_cache
    from metrics.periods import Settings

    settings = Settings.from_env()
    out = []
    for question, metric, group_by in CASES:
        def ask(question=question):
            with answer_cache.bypassed():
                return api.ask(question, as_of=today, url=url, settings=settings)

        result = ask()  # warm-up
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            result = ask()
            times.append((time.perf_counter() - t0) * 1000)
        start = result.series[0].start if group_by == "metric_time__month" and result.series else result.period.start
        out.append({"question": question, "metric": metric, "group_by": group_by, "start": start.isoformat(),
                    "end": result.period.end.isoformat(), "p50": statistics.median(times), "p95": _pct(times, 0.95),
                    "rows": _kpibot_rows(result, group_by)})
    return out


def metricflow_side(python: str, database: str, cases: list[dict], repeat: int) -> dict:
    """Runs :func:`_driver` under MetricFlow's interpreter; its JSON answer."""
    spec = {"project": str(PROJECT), "database": database, "repeat": repeat,
            "cases": [{k: c[k] for k in ("question", "metric", "group_by", "start", "end")} for c in cases]}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run([python, str(Path(__file__).resolve()), "--driver"], input=json.dumps(spec),
                          capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        return {"error": (done.stdout + done.stderr)[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


def compare(url: str, today, python: str | None, repeat: int = 5) -> dict:
    """Both sides, then the table; returns the figures (``{"skipped": why}`` without MetricFlow)."""
    from sqlalchemy.engine import make_url

    from storage import database

    if not python or not Path(python).exists():
        print(f"\nMetricFlow peer skipped: no MetricFlow interpreter ({python or 'none given'}; see "
              "benchmarks/metricflow_peer.py for the install)")
        return {"skipped": "no MetricFlow interpreter"}
    parsed = make_url(url)
    if parsed.get_backend_name() != "duckdb" or not parsed.database:
        print("\nMetricFlow peer skipped: it runs on the DuckDB benchmark file only")
        return {"skipped": "not DuckDB"}
    ours = kpibot_side(url, today, repeat)
    database.dispose_all()  # MetricFlow opens the file read-only: kpibot must let go of it
    theirs = metricflow_side(python, str(Path(parsed.database).resolve()), ours, repeat)
    if "error" in theirs:
        print(f"\nMetricFlow peer failed: {theirs['error']}")
        return {"error": theirs["error"], "kpibot": ours}
    print(f"\nMetricFlow {theirs.get('version', '?')} as a peer (same DuckDB file; the number alone, "
          f"p50 / p95 of {repeat} after a warm-up; kpibot: api.ask without answer cache; MetricFlow: its Python API):")
    print(f"{'case':<40} {'kpibot p50':>10} {'p95':>7} {'MF p50':>9} {'p95':>7} {'MF/kpibot':>9}  values")
    rows = []
    for mine, peer in zip(ours, theirs["cases"], strict=True):
        keys = [k for k in mine["rows"] if k in peer["rows"]]
        agree = sum(_same(mine["rows"][k], peer["rows"][k]) for k in keys)
        shown = "; ".join(f"{k or 'value'}: {_fmt(mine['rows'][k])} vs {_fmt(peer['rows'][k])}" for k in keys[:3])
        only = len(set(mine["rows"]) ^ set(peer["rows"]))
        verdict = f"{agree}/{len(keys)} equal" + (f", {only} rows on one side only" if only else "")
        ratio = peer["p50"] / mine["p50"] if mine["p50"] else float("nan")
        print(f"{mine['question']:<40} {mine['p50']:>10.1f} {mine['p95']:>7.1f} {peer['p50']:>9.1f} {peer['p95']:>7.1f} "
              f"{ratio:>8.2f}x  {verdict} ({shown}{' …' if len(keys) > 3 else ''})")
        rows.append({"question": mine["question"], "kpibot_p50": mine["p50"], "kpibot_p95": mine["p95"],
                     "metricflow_p50": peer["p50"], "metricflow_p95": peer["p95"], "equal": agree,
                     "compared": len(keys), "one_side_only": only, "kpibot": mine["rows"], "metricflow": peer["rows"]})
    return {"version": theirs.get("version"), "cases": rows}


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:,.2f}"


# ---- MetricFlow's side (its own virtualenv; standard library and MetricFlow only) ----------


def _driver(spec: dict) -> dict:
    import logging

    logging.disable(logging.WARNING)
    from dbt_metricflow.cli.cli_configuration import CLIConfiguration
    from metricflow.engine.metricflow_engine import MetricFlowQueryRequest

    work = Path(tempfile.mkdtemp(prefix="kpibot-mf-"))
    try:
        project = work / "project"
        shutil.copytree(spec["project"], project)
        os.environ.update(KPI_BENCH_DUCKDB=spec["database"], DBT_PROFILES_DIR=str(project),
                          DBT_SEND_ANONYMOUS_USAGE_STATS="false", DO_NOT_TRACK="1")
        os.chdir(project)
        from dbt.cli.main import dbtRunner

        parsed = dbtRunner().invoke(["parse", "--quiet", "--log-path", str(work / "logs")])  # target/semantic_manifest.json
        if not parsed.success:
            raise RuntimeError(f"dbt parse failed: {parsed.exception}")
        cfg = CLIConfiguration()
        cfg.setup(dbt_profiles_path=project, dbt_project_path=project, configure_file_logging=False)
        out = []
        for case in spec["cases"]:
            day = "{{ TimeDimension('metric_time', 'day') }}"
            request = MetricFlowQueryRequest.create(
                metric_names=[case["metric"]],
                group_by_names=[case["group_by"]] if case["group_by"] else None,
                where_constraints=[f"{day} >= '{case['start']}' and {day} < '{case['end']}'"],
            )
            result = cfg.mf.query(mf_request=request)  # warm-up (and the query's plan)
            times = []
            for _ in range(spec["repeat"]):
                t0 = time.perf_counter()
                result = cfg.mf.query(mf_request=request)
                times.append((time.perf_counter() - t0) * 1000)
            table = result.result_df
            names = list(table.column_names)
            rows: dict[str, float | None] = {}
            for row in table.rows:
                record = dict(zip(names, row, strict=True))
                value = record[case["metric"]]
                key = record.get(case["group_by"], "") if case["group_by"] else ""
                if case["group_by"] == "metric_time__month":
                    key = str(key)[:10]
                rows[str(key) if key is not None else "None"] = None if value is None else float(value)
            out.append({"question": case["question"], "p50": statistics.median(times), "p95": _pct(times, 0.95),
                        "rows": rows})
        from importlib.metadata import version

        return {"version": version("metricflow"), "cases": out}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--python", default=str(ROOT / ".venv-dbt" / "bin" / "python"), help="MetricFlow's interpreter")
    ap.add_argument("--url", default="duckdb:///data/bench.duckdb")
    ap.add_argument("--today", help="the dataset's today (default: the day after its last usage event)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if args.driver:
        print(json.dumps(_driver(json.loads(sys.stdin.read()))))
        return 0
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from datetime import date

    from benchmarks.run import dataset_today
    from storage import database

    os.environ.setdefault("KPI_DUCKDB_MEMORY", "256MB")
    today = date.fromisoformat(args.today) if args.today else dataset_today(database.get_engine(args.url))[0]  # type: ignore[index]
    figures = compare(args.url, today, args.python, args.repeat)
    return 1 if "error" in figures else 0


if __name__ == "__main__":
    sys.exit(main())
