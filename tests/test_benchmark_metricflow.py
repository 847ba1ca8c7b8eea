"""The benchmark's MetricFlow peer on a tiny demo company: both tools give the same rows.

Runs only where a MetricFlow virtualenv exists (``KPI_METRICFLOW_PYTHON``, else
``.venv-dbt/bin/python``; see benchmarks/metricflow_peer.py for the install): MetricFlow is
not a kpibot dependency. Every case of the peer must have the same groups (industries,
priorities, months) on both sides and equal values in each.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pytest

from benchmarks.metricflow_peer import CASES, compare
from storage import database
from storage.demo import build_demo

ROOT = Path(__file__).resolve().parent.parent
PYTHON = os.environ.get("KPI_METRICFLOW_PYTHON") or str(ROOT / ".venv-dbt" / "bin" / "python")

pytestmark = pytest.mark.skipif(not Path(PYTHON).exists(),
                                reason=f"no MetricFlow virtualenv at {PYTHON} (not a kpibot dependency)")


def test_metricflow_and_kpibot_agree_on_every_peer_case(tmp_path, capsys):
    url = f"duckdb:///{tmp_path / 'bench.duckdb'}"
    today = date(2025, 11, 23)
    build_demo(database.get_engine(url), seed=7, scale=0.05, today=today)
    try:
        figures = compare(url, today, PYTHON, repeat=1)
    finally:
        database.dispose_all()
    assert "error" not in figures and "skipped" not in figures, figures
    assert [c["question"] for c in figures["cases"]] == [q for q, _, _ in CASES]
    for case in figures["cases"]:
        assert case["compared"] > 0 and case["one_side_only"] == 0, case
        assert case["equal"] == case["compared"], case
    monthly = next(c for c in figures["cases"] if c["question"] == "nps monthly last-24-months")
    assert monthly["compared"] == 24  # every month of the trend, on both sides
    assert "MetricFlow" in capsys.readouterr().out
