"""Fast bulk inserts of columnar data into the metrics database, the best way per dialect.

Used by the importer (to fill its staging table) and by the demo company. Data arrives as
a :class:`pyarrow.Table` (or a pandas DataFrame, or a mapping of column name to array) and
is cast to the target table's column types first, so every backend stores the same values:
timestamps naive UTC at microsecond precision, dates as dates, booleans as booleans, money
(:data:`storage.schema.MONEY`) as ``decimal128(18, 2)``, rounded to the cent.

* DuckDB: the Arrow table is registered on the raw DuckDB connection and copied with one
  ``INSERT INTO t SELECT ... FROM frame`` (zero-copy scan, vectorised).
* PostgreSQL: ``COPY t FROM STDIN (FORMAT csv)`` through psycopg 3, fed CSV written by Arrow.
* SQLite: ``executemany`` on the raw sqlite3 connection, with timestamps rendered in the
  exact text format SQLAlchemy uses, so rows compare and parse like ORM-written ones.
* Anything else: SQLAlchemy ``executemany`` in batches.

Everything runs on the caller's :class:`~sqlalchemy.engine.Connection`, inside its
transaction: roll it back and the rows are gone. Table and column names come only from
SQLAlchemy ``Table`` metadata (quoted by the dialect), never from user text.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from sqlalchemy import Boolean, Date, DateTime, Float, Integer, Numeric, Table
from sqlalchemy.engine import Connection

from storage.schema import is_money

__all__ = ["BUSY_WAIT", "arrow_schema", "arrow_type", "insert_rows", "to_arrow"]

#: Seconds a writer (import, demo) waits for a DuckDB file another process holds; the bot
#: releases it after a short idle time (``KPI_DUCKDB_LINGER``).
BUSY_WAIT = 60.0
#: Rows per batch for the row-at-a-time paths (PostgreSQL COPY buffers, SQLite executemany).
BATCH_ROWS = 100_000
#: How SQLAlchemy's SQLite dialect stores DATETIME values (text that sorts chronologically).
SQLITE_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # Arrow's %S carries the microseconds: 05.000123

_counter = itertools.count()
MONEY_ARROW = pa.decimal128(18, 2)
#: Largest money amount accepted: below it a double still tells every cent apart.
MONEY_LIMIT = 1e13


def cents(values: np.ndarray) -> np.ndarray:
    """Amounts (float) as whole cents, rounded half away from zero like ``NUMERIC(18, 2)``."""
    scaled = np.asarray(values, dtype=np.float64) * 100.0
    return np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)


def money_array(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Any numeric Arrow array as ``decimal128(18, 2)``, each value rounded to the cent.

    Built from whole cents: a decimal's storage is its unscaled integer, so cents as
    ``decimal128(19, 0)`` re-typed with scale 2 are the amounts, with no float in between."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_decimal(array.type):
        if array.type == MONEY_ARROW:
            return array
        array = array.cast(pa.string()).cast(pa.float64())  # exact text, nearest double
    values = array.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    whole = np.nan_to_num(cents(values), nan=0.0).astype(np.int64)
    unscaled = pa.array(whole, mask=~np.asarray(array.is_valid())).cast(pa.decimal128(19, 0))
    return pa.Array.from_buffers(MONEY_ARROW, len(unscaled), unscaled.buffers(), unscaled.null_count)


def arrow_type(sql_type: Any) -> pa.DataType:
    """The Arrow type a SQLAlchemy column type is loaded as."""
    if isinstance(sql_type, Boolean):
        return pa.bool_()
    if isinstance(sql_type, DateTime):
        return pa.timestamp("us")
    if isinstance(sql_type, Date):
        return pa.date32()
    if isinstance(sql_type, Integer):
        return pa.int64()
    if is_money(sql_type):
        return MONEY_ARROW
    if isinstance(sql_type, Float | Numeric):
        return pa.float64()
    return pa.string()


def arrow_schema(table: Table, columns: Sequence[str] | None = None) -> pa.Schema:
    names = list(columns) if columns is not None else [c.name for c in table.columns]
    return pa.schema([pa.field(n, arrow_type(table.c[n].type)) for n in names])


def _cast(array: pa.Array | pa.ChunkedArray, target: pa.DataType) -> pa.Array | pa.ChunkedArray:
    if array.type == target:
        return array
    if target == MONEY_ARROW:
        return money_array(array)
    if pa.types.is_timestamp(array.type) and pa.types.is_timestamp(target) and array.type.tz:
        # Arrow keeps instants in UTC; dropping the zone leaves naive UTC wall time.
        array = array.cast(pa.timestamp(array.type.unit), safe=False)
    return array.cast(target, safe=False)


def _series_to_arrow(series: pd.Series, target: pa.DataType) -> pa.Array:
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    if pa.types.is_boolean(target) and series.dtype == object:
        series = series.astype("boolean")
    return _cast(pa.array(series, from_pandas=True), target)


def to_arrow(
    table: Table,
    data: pa.Table | pd.DataFrame | Mapping[str, Any],
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """``data`` as an Arrow table with exactly ``columns`` (default: those in ``data`` that
    the table has, in table order) cast to the table's types."""
    if isinstance(data, pd.DataFrame):
        present = list(data.columns)
    elif isinstance(data, pa.Table):
        present = data.column_names
    else:
        present = list(data)
    if columns is None:
        columns = [c.name for c in table.columns if c.name in present]
    schema = arrow_schema(table, columns)
    arrays = []
    for field in schema:
        if isinstance(data, pd.DataFrame):
            arrays.append(_series_to_arrow(data[field.name], field.type))
        elif isinstance(data, pa.Table):
            arrays.append(_cast(data.column(field.name), field.type))
        else:
            value = data[field.name]
            if isinstance(value, pd.Series):
                arrays.append(_series_to_arrow(value, field.type))
            elif isinstance(value, pa.Array | pa.ChunkedArray):
                arrays.append(_cast(value, field.type))
            else:
                arrays.append(
                    _cast(
                        pa.array(np.asarray(value) if not isinstance(value, list) else value),
                        field.type,
                    )
                )
    return pa.Table.from_arrays(arrays, schema=schema)


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def insert_rows(
    conn: Connection,
    table: Table,
    data: pa.Table | pd.DataFrame | Mapping[str, Any],
    *,
    columns: Sequence[str] | None = None,
) -> int:
    """Append ``data`` to ``table`` on ``conn`` (inside its transaction); returns the row count.

    ``table`` may be any SQLAlchemy ``Table`` that exists on the connection (a temporary
    staging table too). Columns the data lacks get their database defaults.
    """
    frame = to_arrow(table, data, columns)
    if frame.num_rows == 0:
        return 0
    dialect = conn.dialect.name
    if dialect == "duckdb":
        _insert_duckdb(conn, table, frame)
    elif dialect == "postgresql" and conn.dialect.driver == "psycopg":
        _insert_postgres(conn, table, frame)
    elif dialect == "sqlite":
        _insert_sqlite(conn, table, frame)
    else:
        for batch in frame.to_batches(max_chunksize=BATCH_ROWS):
            conn.execute(table.insert(), batch.to_pylist())
    return frame.num_rows


def _column_list(conn: Connection, frame: pa.Table) -> str:
    return ", ".join(_quote(conn, n) for n in frame.column_names)


def _insert_duckdb(conn: Connection, table: Table, frame: pa.Table) -> None:
    raw: Any = conn.connection.driver_connection  # the driver's own connection (checked out: never None)
    view = f"kpibot_bulk_{next(_counter)}"
    cols = _column_list(conn, frame)
    # Names: the target comes from metadata, the view is ours; values travel as Arrow data.
    sql = f"INSERT INTO {_quote(conn, table.name)} ({cols}) SELECT {cols} FROM {view}"  # noqa: S608
    raw.register(view, frame)
    try:
        raw.execute(sql)
    finally:
        raw.unregister(view)


def _insert_postgres(conn: Connection, table: Table, frame: pa.Table) -> None:
    raw: Any = conn.connection.driver_connection  # the driver's own connection (checked out: never None)
    sql = f"COPY {_quote(conn, table.name)} ({_column_list(conn, frame)}) FROM STDIN (FORMAT csv)"
    # Every non-null value is quoted, so '' stays an empty string and only nulls are NULL.
    options = pa_csv.WriteOptions(include_header=False, quoting_style="all_valid")
    with raw.cursor() as cur, cur.copy(sql) as copy:
        for batch in frame.to_batches(max_chunksize=BATCH_ROWS):
            buffer = io.BytesIO()
            pa_csv.write_csv(batch, buffer, write_options=options)
            copy.write(buffer.getbuffer())


def _sqlite_values(array: pa.Array) -> list:
    if pa.types.is_timestamp(array.type):
        return pc.strftime(array, format=SQLITE_DATETIME_FORMAT).to_pylist()
    if pa.types.is_date(array.type):
        return array.cast(pa.string()).to_pylist()
    if pa.types.is_decimal(array.type):
        # sqlite3 binds no Decimal: the nearest double, parsed from the decimal text (Arrow's
        # decimal-to-float cast multiplies by 0.01 and can miss it: 1234567.8900000001)
        return array.cast(pa.string()).cast(pa.float64()).to_pylist()
    return array.to_pylist()


def _insert_sqlite(conn: Connection, table: Table, frame: pa.Table) -> None:
    raw: Any = conn.connection.driver_connection  # the driver's own connection (checked out: never None)
    marks = ", ".join("?" for _ in frame.column_names)
    sql = f"INSERT INTO {_quote(conn, table.name)} ({_column_list(conn, frame)}) VALUES ({marks})"  # noqa: S608
    cur = raw.cursor()
    try:
        for batch in frame.to_batches(max_chunksize=BATCH_ROWS):
            cur.executemany(sql, zip(*(_sqlite_values(col) for col in batch.columns), strict=True))
    finally:
        cur.close()
