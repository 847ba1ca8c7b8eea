"""The engine writes portable SQL: representative KPI statements compiled per dialect.

Five statements stand for the shapes the catalogue uses (a survey KPI, a median of times, a
snapshot, a breakdown by a customer dimension with a filter, a monthly trend). Their SQL is
pinned per dialect in ``tests/snapshots/dialects/<dialect>/<case>.sql``, so a change to the
compiled SQL shows up in review; ``KPI_UPDATE_SNAPSHOTS=1 pytest tests/test_dialects.py``
rewrites the files. PostgreSQL, DuckDB and SQLite also run them for real on the same demo
data and must agree. Trino, Snowflake and BigQuery are compile-only, and skipped when their
SQLAlchemy dialect (``trino``, ``snowflake-sqlalchemy``, ``sqlalchemy-bigquery``) is not
installed. Every catalogue entry is also compiled for every dialect and checked for
functions that only another database has.
"""

from __future__ import annotations

import importlib
import os
import re
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy.engine.url import make_url

from metrics.catalogue import CATALOGUE, dimensions_for
from metrics.engine import compile_measure, compute
from metrics.periods import Settings
from metrics.spec import Measure
from storage import database
from storage.demo import build_demo

SNAPSHOTS = Path(__file__).parent / "snapshots" / "dialects"
UPDATE = os.environ.get("KPI_UPDATE_SNAPSHOTS") == "1"
TODAY = date(2025, 11, 23)
SETTINGS = Settings()

Q3 = (date(2025, 7, 1), date(2025, 10, 1))
Q2 = (date(2025, 4, 1), date(2025, 7, 1))
MONTHS = [(date(2025, m, 1), date(2025, m + 1, 1)) for m in (7, 8, 9)] + [
    (date(2025, m, 1), date(2025, m + 1, 1)) for m in (4, 5, 6)
]

#: case -> (KPI, windows, dimension, filters)
CASES = {
    "survey_nps": ("nps", [Q3, Q2], None, ()),
    "median_first_response_time": ("first_response_time", [Q3, Q2], None, ()),
    "snapshot_mrr": ("mrr", [Q3, Q2], None, ()),
    "breakdown_tickets_by_industry_in_emea": ("tickets", [Q3, Q2], "industry", (("region", "EMEA"),)),
    "trend_mau_monthly": ("mau", [Q3, Q2, *MONTHS], None, ()),
}

#: dialect -> the module that provides it (None: kpibot's own dependencies)
DIALECTS = {
    "postgresql": None,
    "duckdb": None,
    "sqlite": None,
    "trino": "trino.sqlalchemy",
    "snowflake": "snowflake.sqlalchemy",
    "bigquery": "sqlalchemy_bigquery",
}
PACKAGES = {"trino": "trino", "snowflake": "snowflake-sqlalchemy", "bigquery": "sqlalchemy-bigquery"}

#: SQL that only some databases understand: (pattern, the dialects allowed to use it).
ONLY = [
    (r"\bepoch\(", {"duckdb"}),
    (r"\bto_days\(", {"duckdb"}),
    (r"\bjulianday\(", {"sqlite"}),
    (r"\bstrftime\(", {"sqlite"}),
    (r"\bmedian\(", {"duckdb", "sqlite", "snowflake"}),
    (r"EXTRACT\(EPOCH", {"postgresql"}),
    (r"WITHIN GROUP", {"postgresql"}),
    (r"INTERVAL '1 day'", {"postgresql"}),
    (r"\bDATEDIFF\(|\bDATEADD\(", {"snowflake"}),
    (r"\bDATETIME_(DIFF|ADD)\(|APPROX_QUANTILES", {"bigquery"}),
    (r"\bdate_diff\(|\bdate_add\(|\bapprox_percentile\(", {"trino"}),
]


def dialect_for(name: str):
    module = DIALECTS[name]
    if module:
        pytest.importorskip(module, reason=f"{PACKAGES[name]} is not installed (compile-only dialect)")
    return make_url(f"{name}://").get_dialect()()


def statement(case: str):
    kpi, windows, dimension, filters = CASES[case]
    metric = CATALOGUE[kpi]
    return compile_measure(metric, metric.measure, windows, SETTINGS, dimension, filters)


def normalise(sql: str) -> str:
    return "\n".join(line.rstrip() for line in sql.strip().splitlines()) + "\n"


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_compiled_sql_matches_the_snapshot(dialect_name, case):
    sql = normalise(str(statement(case).compile(dialect=dialect_for(dialect_name))))
    path = SNAPSHOTS / dialect_name / f"{case}.sql"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sql)
    assert path.exists(), f"no snapshot {path}; run KPI_UPDATE_SNAPSHOTS=1 pytest {__file__}"
    assert sql == path.read_text(), (
        f"the {dialect_name} SQL of {case} changed; if that is intended, run "
        f"KPI_UPDATE_SNAPSHOTS=1 pytest tests/test_dialects.py and review the diff"
    )


def _all_statements():
    """Every catalogue measure: plain, as a trend, and by a customer dimension with a filter."""
    for kpi, metric in CATALOGUE.items():
        if not isinstance(metric.measure, Measure):
            continue  # Derived: made of these; Custom: a model with SQL of its own
        yield kpi, compile_measure(metric, metric.measure, [Q3, Q2, *MONTHS], SETTINGS)
        dims = dimensions_for(metric)
        if "region" in dims:
            yield f"{kpi} by region", compile_measure(
                metric, metric.measure, [Q3, Q2], SETTINGS, "region", (("industry", "Retail"),)
            )


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_no_kpi_uses_sql_of_another_database(dialect_name):
    dialect = dialect_for(dialect_name)
    problems = []
    for name, stmt in _all_statements():
        sql = str(stmt.compile(dialect=dialect))
        for pattern, allowed in ONLY:
            if dialect_name not in allowed and re.search(pattern, sql):
                problems.append(f"{name}: {pattern}")
    assert not problems, f"{dialect_name} SQL uses other databases' functions: {problems}"


def test_warehouse_rules_are_the_documented_ones():
    """The pieces of storage.sqlfuncs each warehouse gets (when its dialect is installed)."""
    expected = {
        "trino": ("date_diff('millisecond', ", "approx_percentile(", "date_add('day', -30, "),
        "snowflake": ("DATEDIFF('millisecond', ", "median(", "DATEADD('day', -30, "),
        "bigquery": ("DATETIME_DIFF(", "APPROX_QUANTILES(", "DATETIME_ADD("),
    }
    ran = 0
    for name, pieces in expected.items():
        if DIALECTS[name] and importlib.util.find_spec(DIALECTS[name].split(".")[0]) is None:
            continue
        dialect = make_url(f"{name}://").get_dialect()()
        sql = "".join(
            str(statement(case).compile(dialect=dialect))
            for case in ("median_first_response_time", "trend_mau_monthly")
        )
        for piece in pieces:
            assert piece in sql, (name, piece)
        ran += 1
    if not ran:
        pytest.skip("no warehouse dialect installed")


# ---- run for real: PostgreSQL, DuckDB and SQLite agree ------------------------------------


def _values(url: str) -> dict:
    engine = database.get_engine(url)
    out = {}
    for case, (kpi, windows, dimension, filters) in CASES.items():
        cells = compute(CATALOGUE[kpi], windows, SETTINGS, engine, dimension, filters)
        out[case] = {key: cell.value for key, cell in cells.items()}
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    url = f"duckdb:///{tmp_path_factory.mktemp('dialects')}/reference.duckdb"
    build_demo(database.get_engine(url), seed=3, scale=0.05, today=TODAY)
    return _values(url)


def test_representative_statements_run_and_agree(db_url, reference):
    build_demo(database.get_engine(db_url), seed=3, scale=0.05, today=TODAY)
    values = _values(db_url)
    for case, expected in reference.items():
        got = values[case]
        assert set(got) == set(expected), case
        assert any(v is not None for v in got.values()), f"{case}: no value at all"
        for key, value in expected.items():
            if value is None:
                assert got[key] is None, (case, key)
            else:
                assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-6), (case, key)
