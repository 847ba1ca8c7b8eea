"""The naive baseline: what a quick script does — load the tables, compute the KPI in pandas.

Run by benchmarks/run.py in its own process (its memory is its own), for the last quarter.
On DuckDB the tables are loaded the fastest way there is (DuckDB → Arrow → pandas), which
flatters the baseline; elsewhere with ``pandas.read_sql_table``. KPIs with a pandas
computation here are timed load + compute; the rest load only their tables (a lower bound
for any pandas version). Prints one JSON line: {kpi: {p50, peak_mb, mode}}.

    python benchmarks/pandas_baseline.py URL TODAY REPEAT KPI,KPI,...
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from metrics.catalogue import CATALOGUE  # noqa: E402
from metrics.periods import Settings, unit_start  # noqa: E402


def last_quarter(today: date) -> tuple[datetime, datetime]:
    s = Settings()
    end = unit_start(today, "quarter", s)
    start = unit_start(end - timedelta(days=1), "quarter", s)
    return datetime.combine(start, datetime.min.time()), datetime.combine(end, datetime.min.time())


def within(df, col, start, end):
    return df[(df[col] >= start) & (df[col] < end)]


def survey(kind):
    def f(t, s, e):
        df = within(t["survey_responses"], "responded_at", s, e)
        return df[df.survey == kind]
    return f


def nps(t, s, e):
    df = survey("nps")(t, s, e)
    return 100 * ((df.score >= 9).mean() - (df.score <= 6).mean())


def active_users(days):
    def f(t, s, e):
        u = t["usage_events"]
        u = u[(u.occurred_at >= e - timedelta(days=days)) & (u.occurred_at < e)]
        return len(u[["customer_id", "user_id"]].drop_duplicates())
    return f


def subs_at(subs, at):
    return subs[(subs.started_at < at) & (subs.ended_at.isna() | (subs.ended_at >= at))]


def mrr_moves(t, s, e):
    """Per customer MRR at the start and at the end, classified (metrics/kpis/data/retention.yml)."""
    subs = t["subscriptions"]
    df = pd.concat(
        [subs_at(subs, s).groupby("customer_id").mrr.sum().rename("a"),
         subs_at(subs, e).groupby("customer_id").mrr.sum().rename("b")], axis=1,
    ).fillna(0.0)
    started, ended = df.a > 0, df.b > 0
    return {
        "start": df.a.sum(),
        "new": df.b[~started & ended].sum(),
        "expansion": (df.b - df.a)[started & (df.b > df.a)].sum(),
        "contraction": (df.a - df.b)[ended & (df.b < df.a)].sum(),
        "churned": df.a[started & ~ended].sum(),
        "kept": df.b[started].sum(),
    }


def move(key):
    return lambda t, s, e: mrr_moves(t, s, e)[key]


def alive(c, at):
    return c[(c.signed_up_at < at) & (c.churned_at.isna() | (c.churned_at >= at))]


COMPUTE = {
    "nps": nps,
    "csat": lambda t, s, e: 100 * (survey("csat")(t, s, e).score >= 4).mean(),
    "ces": lambda t, s, e: survey("ces")(t, s, e).score.mean(),
    "tickets": lambda t, s, e: len(within(t["tickets"], "opened_at", s, e)),
    "first_response_time": lambda t, s, e: (
        (lambda d: ((d.first_response_at - d.opened_at).dt.total_seconds() / 3600).median())(within(t["tickets"], "opened_at", s, e))
    ),
    "resolution_time": lambda t, s, e: (
        (lambda d: ((d.resolved_at - d.opened_at).dt.total_seconds() / 3600).median())(within(t["tickets"], "opened_at", s, e))
    ),
    "backlog": lambda t, s, e: len(
        t["tickets"][(t["tickets"].opened_at < e) & (t["tickets"].resolved_at.isna() | (t["tickets"].resolved_at >= e))]
    ),
    "revenue": lambda t, s, e: within(t["orders"], "ordered_at", s, e).amount.sum(),
    "mrr": lambda t, s, e: t["subscriptions"][
        (t["subscriptions"].started_at < e) & (t["subscriptions"].ended_at.isna() | (t["subscriptions"].ended_at >= e))
    ].mrr.sum(),
    "customers": lambda t, s, e: len(alive(t["customers"], e)),
    "new_customers": lambda t, s, e: len(within(t["customers"], "signed_up_at", s, e)),
    "mau": active_users(30),
    "wau": active_users(7),
    "core_actions": lambda t, s, e: (
        within(t["usage_events"], "occurred_at", s, e).is_core.sum() * 7 / ((e - s).days)
    ),
    "session_time": lambda t, s, e: within(t["usage_events"], "occurred_at", s, e).session_seconds.mean() / 60,
    "paying_customers": lambda t, s, e: int(alive(t["customers"], e).is_paying.sum()),
    "aov": lambda t, s, e: within(t["orders"], "ordered_at", s, e).amount.mean(),
    "new_mrr": move("new"),
    "expansion_mrr": move("expansion"),
    "contraction_mrr": move("contraction"),
    "churned_mrr": move("churned"),
    "net_new_mrr": lambda t, s, e: (
        (lambda m: m["new"] + m["expansion"] - m["contraction"] - m["churned"])(mrr_moves(t, s, e))
    ),
    "nrr": lambda t, s, e: (lambda m: 100 * m["kept"] / m["start"])(mrr_moves(t, s, e)),
    "grr": lambda t, s, e: (
        lambda m: 100 * (m["start"] - m["contraction"] - m["churned"]) / m["start"]
    )(mrr_moves(t, s, e)),
    "revenue_churn": lambda t, s, e: (
        lambda m: 100 * (m["contraction"] + m["churned"]) / m["start"]
    )(mrr_moves(t, s, e)),
    "seats_per_customer": lambda t, s, e: (
        lambda a: a.seats.sum() / a.customer_id.nunique()
    )(subs_at(t["subscriptions"], e).dropna(subset=["seats"])),
    "products_per_customer": lambda t, s, e: (
        lambda a: len(a[["customer_id", "product"]].drop_duplicates()) / a.customer_id.nunique()
    )(subs_at(t["subscriptions"], e)),
    "churn_rate": lambda t, s, e: (
        (lambda a: 100 * (a.churned_at < e).sum() / len(a))(alive(t["customers"], s))
    ),
}


def load(url: str, engine, tables) -> dict:
    if engine is not None:
        return {name: pd.read_sql_table(name, engine) for name in tables}
    con = duckdb.connect(url.split("///", 1)[1], read_only=True)
    try:
        return {name: con.execute(f"SELECT * FROM {name}").df() for name in tables}  # noqa: S608 - catalogue names
    finally:
        con.close()


def main() -> int:
    url, today, repeat, kpis = sys.argv[1], date.fromisoformat(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(",")
    engine = None
    if not url.startswith("duckdb"):
        from sqlalchemy import create_engine

        engine = create_engine(url)
    start, end = last_quarter(today)
    out = {}
    for kpi in kpis:
        metric = CATALOGUE[kpi]
        tables = [t for t in metric.tables]
        timings = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            frames = load(url, engine, tables)
            if kpi in COMPUTE:
                COMPUTE[kpi](frames, start, end)
            timings.append((time.perf_counter() - t0) * 1000)
            del frames
        out[kpi] = {
            "p50": statistics.median(timings),
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "mode": "load+compute" if kpi in COMPUTE else "load only",
        }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
