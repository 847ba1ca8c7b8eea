"""Portable SQL pieces compiled per dialect, so the engine never writes dialect-only SQL.

Each construct is a SQLAlchemy expression with a compile rule for DuckDB, PostgreSQL and
SQLite, and for the warehouses Trino, Snowflake and BigQuery (the generic rule is
PostgreSQL's). The compiled SQL of representative KPIs is pinned per dialect in
``tests/snapshots/`` (``tests/test_dialects.py``).

Warehouse notes: kpibot stores naive UTC timestamps, which are ``timestamp`` in Trino,
``TIMESTAMP_NTZ`` in Snowflake and ``DATETIME`` in BigQuery, so BigQuery uses the
``DATETIME_*`` functions. Differences are taken in milliseconds (Snowflake's and
BigQuery's ``DATEDIFF``/``DATETIME_DIFF`` count unit boundaries crossed, so whole seconds
would round). Trino's and BigQuery's medians are approximate (``approx_percentile``,
``APPROX_QUANTILES``): neither has an exact median usable as a grouped aggregate.
"""

from __future__ import annotations

from sqlalchemy import DateTime, Float, literal_column
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement


class seconds_between(FunctionElement):  # noqa: N801 - reads like a SQL function
    """Seconds from ``start`` to ``end`` (positive when end is later)."""

    type = Float()
    inherit_cache = True
    name = "seconds_between"


@compiles(seconds_between)
def _seconds_default(element, compiler, **kw):
    end, start = list(element.clauses)
    return f"EXTRACT(EPOCH FROM ({compiler.process(end, **kw)} - {compiler.process(start, **kw)}))"


@compiles(seconds_between, "duckdb")
def _seconds_duckdb(element, compiler, **kw):
    end, start = list(element.clauses)
    return f"(epoch({compiler.process(end, **kw)}) - epoch({compiler.process(start, **kw)}))"


@compiles(seconds_between, "sqlite")
def _seconds_sqlite(element, compiler, **kw):
    end, start = list(element.clauses)
    return f"((julianday({compiler.process(end, **kw)}) - julianday({compiler.process(start, **kw)})) * 86400.0)"


@compiles(seconds_between, "snowflake")
def _seconds_snowflake(element, compiler, **kw):
    end, start = list(element.clauses)
    return f"(DATEDIFF('millisecond', {compiler.process(start, **kw)}, {compiler.process(end, **kw)}) / 1000.0)"


@compiles(seconds_between, "bigquery")
def _seconds_bigquery(element, compiler, **kw):
    end, start = list(element.clauses)
    return f"(DATETIME_DIFF({compiler.process(end, **kw)}, {compiler.process(start, **kw)}, MILLISECOND) / 1000.0)"


@compiles(seconds_between, "trino")
def _seconds_trino(element, compiler, **kw):
    # date_diff on the naive timestamps: to_unixtime() would first give them the session's
    # time zone, and a difference across a DST change would then be off by an hour.
    end, start = list(element.clauses)
    return f"(date_diff('millisecond', {compiler.process(start, **kw)}, {compiler.process(end, **kw)}) / 1E3)"


class median(FunctionElement):  # noqa: N801
    """The median of a numeric expression, computed by the database."""

    type = Float()
    inherit_cache = True
    name = "median"


@compiles(median)
def _median_default(element, compiler, **kw):
    return f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {compiler.process(element.clauses, **kw)})"


@compiles(median, "duckdb")
@compiles(median, "sqlite")
@compiles(median, "snowflake")
def _median_native(element, compiler, **kw):
    # DuckDB and Snowflake have median(); SQLite gets a registered aggregate (storage.database).
    return f"median({compiler.process(element.clauses, **kw)})"


@compiles(median, "bigquery")
def _median_bigquery(element, compiler, **kw):
    # PERCENTILE_CONT is only an analytic (OVER) function in BigQuery; this is an aggregate.
    return f"APPROX_QUANTILES({compiler.process(element.clauses, **kw)}, 2)[OFFSET(1)]"


@compiles(median, "trino")
def _median_trino(element, compiler, **kw):
    return f"approx_percentile({compiler.process(element.clauses, **kw)}, 0.5)"


def hours_between(end: ColumnElement, start: ColumnElement) -> ColumnElement:
    return seconds_between(end, start) / 3600.0


class add_days(FunctionElement):  # noqa: N801
    """``ts`` shifted by a whole number of days (a constant from code, never user text).

    The day count is rendered into the SQL as an integer literal, so it is part of the
    statement's cache key. On SQLite the result is text in SQLAlchemy's DATETIME storage
    format (``YYYY-MM-DD HH:MM:SS.ffffff``), so it compares correctly with stored values.
    """

    type = DateTime()
    inherit_cache = True
    name = "add_days"

    def __init__(self, ts, days: int):
        super().__init__(ts, literal_column(str(int(days))))


@compiles(add_days)
def _add_days_default(element, compiler, **kw):
    ts, days = list(element.clauses)
    return f"({compiler.process(ts, **kw)} + INTERVAL '1 day' * {compiler.process(days, **kw)})"


@compiles(add_days, "duckdb")
def _add_days_duckdb(element, compiler, **kw):
    ts, days = list(element.clauses)
    return f"({compiler.process(ts, **kw)} + to_days(CAST({compiler.process(days, **kw)} AS INTEGER)))"


@compiles(add_days, "sqlite")
def _add_days_sqlite(element, compiler, **kw):
    ts, days = list(element.clauses)
    n = int(compiler.process(days, **kw))
    return f"(strftime('%Y-%m-%d %H:%M:%f', {compiler.process(ts, **kw)}, '{n:+d} days') || '000')"


@compiles(add_days, "snowflake")
def _add_days_warehouse(element, compiler, **kw):
    ts, days = list(element.clauses)
    return f"DATEADD('day', {compiler.process(days, **kw)}, {compiler.process(ts, **kw)})"


@compiles(add_days, "trino")
def _add_days_trino(element, compiler, **kw):
    ts, days = list(element.clauses)
    return f"date_add('day', {compiler.process(days, **kw)}, {compiler.process(ts, **kw)})"


@compiles(add_days, "bigquery")
def _add_days_bigquery(element, compiler, **kw):
    ts, days = list(element.clauses)
    return f"DATETIME_ADD({compiler.process(ts, **kw)}, INTERVAL {compiler.process(days, **kw)} DAY)"
