"""kpibot's answers to the dbt_shop metrics equal MetricFlow's own, month by month.

Runs only where dbt (dbt-core + dbt-duckdb) and MetricFlow's CLI (`mf`, dbt-metricflow) are on
the PATH: they are not kpibot dependencies. `dbt build` makes the project's DuckDB file (seeds,
views), `mf query` computes each metric per month of Q1 2026, and kpibot, pointed at the same
file and project, must give the same numbers (its ratios declared with `meta.scale: 100` are
percentages; MetricFlow's are fractions). Where MetricFlow has no value because a ratio's
numerator or a conversion has no rows, kpibot says 0 of a non-empty denominator (or no data):
the README's dbt section says so. A cumulative metric is compared at each month's last day.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest

from metrics import model
from metrics.api import ask
from storage import database

SHOP = Path(__file__).parent / "data" / "dbt_shop"
MONTHS = {"2026-01-01": "january 2026", "2026-02-01": "february 2026", "2026-03-01": "march 2026"}
# metric id -> kpibot value per MetricFlow value
SCALE = {"survey_nps": 1, "promoter_share": 100, "invoiced_amount": 1, "paid_invoices": 1, "accounts_opened": 1,
         "trial_to_paid": 100, "average_invoice": 1, "void_invoice_share": 100, "average_rating": 1,
         "invoices_count": 1, "survey_responses_count": 1, "early_invoicing": 1}

pytestmark = pytest.mark.skipif(shutil.which("dbt") is None or shutil.which("mf") is None,
                                reason="dbt and MetricFlow (mf) are not on the PATH (not kpibot dependencies)")


def _run(args: list[str], project: Path, env: dict[str, str]) -> None:
    done = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]


def test_kpibot_equals_metricflow_month_by_month(tmp_path):
    project = tmp_path / "dbt_shop"
    shutil.copytree(SHOP, project, ignore=shutil.ignore_patterns("target", "logs", ".user.yml"))
    db = tmp_path / "shop.duckdb"
    env = {**os.environ, "DBT_SHOP_DUCKDB": str(db), "DBT_PROFILES_DIR": str(project),
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}
    _run(["dbt", "build", "--log-path", str(tmp_path / "logs")], project, env)
    out = tmp_path / "mf.csv"
    _run(["mf", "query", "--metrics", ",".join(SCALE), "--group-by", "metric_time__month",
          "--start-time", "2026-01-01", "--end-time", "2026-03-31", "--csv", str(out)], project, env)
    with open(out, newline="", encoding="utf-8") as f:
        rows = {r["metric_time__month"][:10]: r for r in csv.DictReader(f)}
    assert set(rows) == set(MONTHS)
    # a cumulative metric: kpibot's level at a month's end is MetricFlow's running total on its last day
    ends = tmp_path / "mf_ends.csv"
    _run(["mf", "query", "--metrics", "total_accounts", "--group-by", "metric_time__day", "--where",
          "{{ TimeDimension('metric_time', 'day') }} in ('2026-01-31', '2026-02-28', '2026-03-31')",
          "--csv", str(ends)], project, env)
    with open(ends, newline="", encoding="utf-8") as f:
        totals = {r["metric_time__day"][:7] + "-01": float(r["total_accounts"]) for r in csv.DictReader(f)}
    assert set(totals) == set(MONTHS)

    url = f"duckdb:///{db}"
    loaded = model.read(None, project)
    try:
        model.configure(loaded, url)
        compared = 0
        for month, words in MONTHS.items():
            for metric, scale in SCALE.items():
                ours = ask(f"{metric} {words}", as_of=date(2026, 4, 15), url=url).value
                theirs = rows[month][metric]
                if theirs == "":
                    assert ours in (None, 0), (metric, month, ours)
                    continue
                assert ours == pytest.approx(float(theirs) * scale, abs=1e-9), (metric, month)
                compared += 1
        assert compared >= 25
        for month, words in MONTHS.items():
            assert ask(f"total_accounts {words}", as_of=date(2026, 4, 15), url=url).value == totals[month]
    finally:
        model.configure(None)
        database.dispose_all()
