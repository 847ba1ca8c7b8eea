"""A mapped source against kpibot's own tables: the same data, other names (issue 14's speed goal).

    .venv/bin/python benchmarks/model_views.py                  # DuckDB, demo scale 3
    .venv/bin/python benchmarks/model_views.py --scale 10 --repeat 7
    .venv/bin/python benchmarks/model_views.py --url postgresql+psycopg://postgres@127.0.0.1/bench_model

The demo company is built into a fresh database; then views with the team's names
(``team.accounts.created_at``, ``team.invoices.total`` …: renames only, so that the
comparison is of the mapping, not of arithmetic in the views) are created over its tables,
and a model file maps kpibot's logical tables onto those views. Each question is asked
through ``metrics.api.ask`` end to end, alternately over kpibot's own tables and through the
model, ``--repeat`` rounds after a warm-up of each; the p50 of both and their ratio are
printed, and one ``SUMMARY:`` line with the worst and the median ratio (goal: ≤ 1.1x).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from metrics import api, model  # noqa: E402
from metrics.model import relations  # noqa: E402
from metrics.model.document import parse  # noqa: E402
from metrics.model.load import load_model  # noqa: E402
from storage import database  # noqa: E402
from storage.demo import build_demo  # noqa: E402

VIEWS = [
    "CREATE VIEW team.accounts AS SELECT customer_id AS id, signed_up_at AS created_at, churned_at AS closed_at, "
    "industry AS vertical, size_band, region, plan AS plan_name, acquisition_channel, is_paying FROM customers",
    "CREATE VIEW team.invoices AS SELECT order_id AS id, customer_id AS account_id, ordered_at AS issued_at, "
    "amount AS total, product, is_recurring FROM orders",
    "CREATE VIEW team.plans AS SELECT subscription_id AS id, customer_id AS account_id, started_at AS since, "
    "ended_at AS until, mrr AS monthly, seats, product FROM subscriptions",
    "CREATE VIEW team.answers AS SELECT response_id AS id, customer_id AS account_id, responded_at AS submitted_at, "
    "survey AS kind, score AS rating, touchpoint, comment FROM survey_responses",
]

MODEL = """\
version: 1
sources:
  customers:
    relation: team.accounts
    columns: {customer_id: id, signed_up_at: created_at, churned_at: closed_at, industry: vertical,
              size_band: size_band, region: region, plan: plan_name, acquisition_channel: acquisition_channel,
              is_paying: is_paying}
  orders:
    relation: team.invoices
    columns: {order_id: id, customer_id: account_id, ordered_at: issued_at,
              amount: total, product: product, is_recurring: is_recurring}
  subscriptions:
    relation: team.plans
    columns: {subscription_id: id, customer_id: account_id, started_at: since, ended_at: until,
              mrr: monthly, seats: seats, product: product}
  survey_responses:
    relation: team.answers
    columns: {response_id: id, customer_id: account_id, responded_at: submitted_at, survey: kind,
              score: rating, touchpoint: touchpoint, comment: comment}
"""

QUESTIONS = [
    "nps last-quarter", "nps by industry last-quarter", "nps monthly last-24-months",
    "csat last-quarter", "churn rate last-quarter", "churn rate by plan last-quarter",
    "revenue last-quarter", "revenue monthly last-24-months", "revenue by region last-quarter",
    "mrr last-quarter", "customers last-quarter", "aov last-quarter",
]


def _timed(question: str, url: str, today: date) -> float:
    started = time.perf_counter()
    api.ask(question, as_of=today, url=url)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an empty database (default: a DuckDB file in a temporary folder)")
    parser.add_argument("--scale", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    url = args.url or f"duckdb:///{Path(tempfile.mkdtemp(prefix='kpibot-bench-model-')) / 'bench.duckdb'}"
    today = date.today() - timedelta(days=1)
    engine = database.get_engine(url)
    build_demo(engine, scale=args.scale, today=today)
    database.dispose_all()
    raw = create_engine(url)
    with raw.begin() as conn:
        conn.execute(text("CREATE SCHEMA IF NOT EXISTS team"))
        for sql in VIEWS:
            conn.execute(text(sql))
    raw.dispose()
    doc, errors = parse(MODEL, "bench.yml")
    assert doc is not None and not errors
    mapped = load_model([("bench.yml", doc)])
    assert not mapped.errors, mapped.errors
    model.configure(mapped, url)
    print(f"{'question':<36} {'own p50 ms':>10} {'model p50':>10} {'ratio':>6}")
    ratios = []
    for question in QUESTIONS:
        own: list[float] = []
        via: list[float] = []
        for i in range(args.repeat + 1):
            relations.activate(None)  # only the mapping changes: the same catalogue, the same caches
            a = _timed(question, url, today)
            relations.activate(mapped.relations, url)
            b = _timed(question, url, today)
            if i:  # the first round warms caches (statements, value index, DuckDB's buffers)
                own.append(a)
                via.append(b)
        p_own, p_via = statistics.median(own) * 1000, statistics.median(via) * 1000
        ratios.append(p_via / p_own)
        print(f"{question:<36} {p_own:>10.1f} {p_via:>10.1f} {p_via / p_own:>5.2f}x")
    model.configure(None)
    print(f"SUMMARY: model vs own tables, p50 ratio median {statistics.median(ratios):.2f}x, "
          f"worst {max(ratios):.2f}x over {len(ratios)} questions (goal <= 1.1x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
