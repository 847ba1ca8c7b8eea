"""Load a CSV or Parquet file into one of the canonical tables: all rows or none.

``import_file(engine, "tickets", "tickets.csv")`` checks the header and every row against
:mod:`storage.schema` and, only if everything is valid, writes the rows in one transaction.
Rows whose key (``table.info["key"]``) already exists are updated rather than duplicated.

Checks
    * header: every required column (``nullable=False`` without a server default) present,
      no unknown or repeated columns (names match case-insensitively, spaces trimmed);
    * per value: required values present; whole numbers, numbers, amounts of money (below
      10 trillion; stored exactly, rounded to the cent half away from zero), booleans
      (true/false, 1/0, yes/no), ISO 8601 timestamps (a date or a date-time, with optional
      ``Z`` or ``+hh:mm`` offset, stored as naive UTC), ISO dates (``YYYY-MM-DD``), allowed
      values (``info["choices"]``, case-insensitive), survey scores inside
      :data:`~storage.schema.SURVEY_SCALES` for their survey;
    * per file: rows with the wrong number of fields, and (tables with a primary key) the
      same key twice in one file.

Any problem fails the whole import with :class:`ImportFailed`, whose text lists them as
``FILE:ROW: column: what is wrong`` (ROW is the line number in a CSV, the header being line
1; in a Parquet file it is the 1-based row number), the first 20 followed by
"… and N more problems".

Large files stream: the file is read in chunks of ``chunk_rows``, each chunk is checked with
vectorised pandas operations and bulk-loaded (:mod:`storage.bulk`) into a temporary staging
table; after the last chunk, the staging table is merged into the target with one
``INSERT ... SELECT`` (``ON CONFLICT (key) DO UPDATE`` for tables with a primary key;
delete-matching-keys-then-insert for key-only tables such as ``usage_events``). All of this is
one transaction, so a problem in the last chunk still leaves the table untouched.

For key-only tables the file's rows *replace* every stored row with a matching key (rows with
equal keys inside one file are all kept), so importing the same file twice is idempotent.
Only columns present in the file are written: on update, other columns keep their values; on
insert, they get their defaults.

No SQL is built from user text: table and column names come from the schema metadata,
values travel as bulk data or bound parameters.
"""

from __future__ import annotations

import re
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    Table,
    and_,
    exists,
    func,
    select,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.expression import ColumnElement

from storage.bulk import BUSY_WAIT, MONEY_ARROW, MONEY_LIMIT, insert_rows, money_array
from storage.database import DatabaseError, analyze, connect, data_changed, require_owned
from storage.schema import SURVEY_SCALES, TABLES, is_money

__all__ = ["CHUNK_ROWS", "MAX_SHOWN", "ImportFailed", "ImportReport", "import_file"]

CHUNK_ROWS = 100_000
MAX_SHOWN = 20

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")
_INT_RE = r"[+-]?\d+(?:\.0*)?"
_DATE_RE = r"\d{4}-\d{2}-\d{2}"
_INT32 = 2**31 - 1
_PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
_BAD_LINE_RE = re.compile(r"Skipping line (\d+): expected (\d+) fields, saw (\d+)")
#: How far past the import's clock an event may lie: a day, for a date written in a zone
#: ahead of UTC. A planned end (a contract's agreed end date) may lie up to five years ahead.
FUTURE_SLACK = timedelta(days=1)
PLANNED_AHEAD = timedelta(days=5 * 366)
NOTHING_IMPORTED = "Nothing was imported: fix these and import the file again."


class ImportFailed(Exception):  # noqa: N818 - the name the CLI and bot catch
    """The file was not imported. ``problems`` holds the first :data:`MAX_SHOWN` problem lines,
    ``total`` how many problems were found in all; ``str()`` is the report to show."""

    def __init__(self, problems: list[str], total: int | None = None) -> None:
        self.problems = list(problems)
        self.total = max(total if total is not None else len(self.problems), len(self.problems))
        super().__init__(self.problems)

    def __str__(self) -> str:
        shown = self.problems[:MAX_SHOWN]
        lines = list(shown)
        more = self.total - len(shown)
        if more > 0:
            lines.append(f"… and {more:,} more problem{'s' if more != 1 else ''}")
        lines.append(NOTHING_IMPORTED)
        return "\n".join(lines)


@dataclass(frozen=True)
class ImportReport:
    table: str
    path: str
    rows: int  # rows in the file, all written
    inserted: int  # rows whose key was new
    updated: int  # stored rows that the file's rows replaced
    seconds: float

    def __str__(self) -> str:
        noun = "row" if self.rows == 1 else "rows"
        return (
            f"{self.path}: imported {self.rows:,} {noun} into {self.table} "
            f"({self.inserted:,} new, {self.updated:,} updated)"
        )


# --------------------------------------------------------------------------------------------
# Column rules


@dataclass(frozen=True)
class _Rule:
    name: str
    kind: str  # str, int, float, money, bool, ts, date
    required: bool  # an empty value is a problem
    fill: object  # the value an empty cell gets when the column cannot be NULL (else None)
    choices: tuple[str, ...] | None
    after: str | None = None  # a column of the same row this one cannot precede
    planned: bool = False  # may lie in the future (up to PLANNED_AHEAD)


def _kind(sql_type) -> str:
    if isinstance(sql_type, Boolean):
        return "bool"
    if isinstance(sql_type, DateTime):
        return "ts"
    if isinstance(sql_type, Date):
        return "date"
    if isinstance(sql_type, Integer):
        return "int"
    if is_money(sql_type):
        return "money"
    if isinstance(sql_type, Float | Numeric):
        return "float"
    return "str"


def _rules(table: Table) -> dict[str, _Rule]:
    rules = {}
    for col in table.columns:
        defaulted = col.server_default is not None
        fill = None
        if not col.nullable and defaulted and col.default is not None and col.default.is_scalar:
            fill = col.default.arg  # type: ignore[attr-defined]  # is_scalar: a ScalarElementColumnDefault
        rules[col.name] = _Rule(
            name=col.name,
            kind=_kind(col.type),
            required=not col.nullable and fill is None,
            fill=fill,
            choices=tuple(col.info["choices"]) if "choices" in col.info else None,
            after=col.info.get("after"),
            planned=bool(col.info.get("planned")),
        )
    return rules


def required_columns(table: Table) -> list[str]:
    """Columns a file must have: ``nullable=False`` and no server default."""
    return [c.name for c in table.columns if not c.nullable and c.server_default is None]


def _show(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "…")


# --------------------------------------------------------------------------------------------
# Problem collection: count all, keep the first MAX_SHOWN in file order.


class _Problems:
    def __init__(self, label: str) -> None:
        self.label = label
        self.total = 0
        self.kept: list[tuple[int, int, str]] = []
        self._pending: list[tuple[int, int, str]] = []

    def __bool__(self) -> bool:
        return self.total > 0

    def add(self, line: int | None, order: int, message: str) -> None:
        self.total += 1
        where = f"{self.label}:{line}" if line is not None else self.label
        self._pending.append((line or 0, order, f"{where}: {message}"))
        self.flush()

    def add_mask(
        self,
        mask: np.ndarray,
        lines: np.ndarray,
        order: int,
        column: str,
        describe: Callable[[int], str],
    ) -> None:
        idx = np.flatnonzero(mask)
        if not idx.size:
            return
        self.total += int(idx.size)
        for pos in idx[:MAX_SHOWN]:
            line = int(lines[pos])
            self._pending.append(
                (line, order, f"{self.label}:{line}: {column}: {describe(int(pos))}")
            )

    def flush(self) -> None:
        if self._pending:
            self.kept = sorted(self.kept + self._pending)[:MAX_SHOWN]
            self._pending = []

    def fail(self) -> ImportFailed:
        self.flush()
        return ImportFailed([m for _, _, m in self.kept], self.total)


# --------------------------------------------------------------------------------------------
# Reading: chunks of strings ("" for empty) with their line numbers.


@dataclass
class _Chunk:
    frame: pd.DataFrame  # one str column per file column, "" where empty
    lines: np.ndarray  # the line (CSV) or row (Parquet) number of each frame row


def _is_parquet(path: Path) -> bool:
    if path.suffix.lower() in _PARQUET_SUFFIXES:
        return True
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"PAR1"
    except OSError:
        return False


class _CsvReader:
    """Streams a CSV file; the first record is the header. Rows with a wrong number of
    fields are reported, not raised, and line numbers account for them, for quoted values
    spanning lines and for blank lines (which are skipped)."""

    def __init__(self, path: Path, label: str, chunk_rows: int, problems: _Problems) -> None:
        self.path, self.label, self.chunk_rows, self.problems = path, label, chunk_rows, problems
        self.header: list[str] = []
        self._skipped: list[int] = []
        self._next_line = 2  # the line the next data record starts on, before skipped lines

    def _bad_lines(self, caught: list[warnings.WarningMessage]) -> None:
        for w in caught:
            for line, want, saw in _BAD_LINE_RE.findall(str(w.message)):
                self._skipped.append(int(line))
                self.problems.add(
                    int(line), -1, f"expected {want} fields like the header, found {saw}"
                )
        caught.clear()

    def chunks(self) -> Iterator[_Chunk]:
        reader = pd.read_csv(
            self.path,
            header=None,
            dtype=str,
            keep_default_na=False,
            na_values=[],
            skip_blank_lines=False,
            chunksize=self.chunk_rows,
            encoding="utf-8-sig",
            on_bad_lines="warn",
            index_col=False,
        )
        first = True
        with warnings.catch_warnings(record=True) as caught, reader:
            warnings.simplefilter("always")
            for frame in reader:
                self._bad_lines(caught)
                if first:
                    first = False
                    header_row = frame.iloc[0]
                    self.header = ["" if pd.isna(v) else str(v) for v in header_row.tolist()]
                    self._next_line += sum(h.count("\n") for h in self.header)
                    frame = frame.iloc[1:]
                    yield _Chunk(frame=pd.DataFrame(), lines=np.empty(0, np.int64))  # header ready
                frame = frame.fillna("")
                yield _Chunk(frame=frame, lines=self._lines(frame))
            self._bad_lines(caught)

    def _lines(self, frame: pd.DataFrame) -> np.ndarray:
        n = len(frame)
        extra = np.zeros(n, np.int64)
        for col in frame.columns:
            extra += frame[col].str.count("\n").to_numpy(dtype=np.int64, na_value=0)
        starts = np.empty(n, np.int64)
        if n:
            starts[0] = 0
            np.cumsum(extra[:-1] + 1, out=starts[1:])
        lines = self._next_line + starts
        self._next_line += int(n + extra.sum())
        for skipped in sorted(self._skipped)[:1000]:  # lines the parser dropped sit between rows
            lines += lines >= skipped
        return lines


class _ParquetReader:
    def __init__(self, path: Path, label: str, chunk_rows: int, problems: _Problems) -> None:
        self.path, self.label, self.chunk_rows, self.problems = path, label, chunk_rows, problems
        self.header: list[str] = []

    def chunks(self) -> Iterator[_Chunk]:
        pf = pq.ParquetFile(self.path)
        self.header = list(pf.schema_arrow.names)
        yield _Chunk(frame=pd.DataFrame(), lines=np.empty(0, np.int64))
        row = 1
        for batch in pf.iter_batches(batch_size=self.chunk_rows):
            columns = {}
            for i, name in enumerate(batch.schema.names):
                columns[str(i)] = self._as_text(name, batch.column(i))
            frame = pa.table(columns).to_pandas().fillna("") if columns else pd.DataFrame()
            frame.columns = range(len(frame.columns))
            lines = np.arange(row, row + batch.num_rows, dtype=np.int64)
            row += batch.num_rows
            yield _Chunk(frame=frame, lines=lines)

    def _as_text(self, name: str, array: pa.Array) -> pa.Array:
        if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
            return array
        try:
            if pa.types.is_timestamp(array.type) and array.type.tz:
                array = array.cast(pa.timestamp(array.type.unit))  # instants are UTC already
            return array.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ImportFailed(
                [f"{self.label}: {name}: unsupported Parquet type {array.type}"]
            ) from exc


# --------------------------------------------------------------------------------------------
# Checking one chunk: vectorised per column; returns Arrow columns ready for staging.


def _check_column(
    rule: _Rule,
    vals: pd.Series,
    empty: np.ndarray,
    lines: np.ndarray,
    order: int,
    problems: _Problems,
    latest: datetime | None = None,
) -> tuple[pa.Array, np.ndarray]:
    """The column (stripped text) as Arrow values, and a mask of the rows with a problem.
    ``latest``: the last naive UTC time a timestamp or date may hold."""
    bad = np.zeros(len(vals), bool)
    name = rule.name

    def report(mask: np.ndarray, describe: Callable[[int], str]) -> None:
        nonlocal bad
        problems.add_mask(mask, lines, order, name, describe)
        bad |= mask

    if rule.required:
        report(empty, lambda p: "missing value (required)")
    present = ~empty
    kind = rule.kind
    if kind == "str":
        if rule.choices:
            low = vals.str.lower()
            allowed = ", ".join(rule.choices)
            outside = present & ~low.isin(rule.choices).to_numpy(dtype=bool)
            report(outside, lambda p: f"{_show(vals.iloc[p])} is not one of {allowed}")
            vals = low
        else:
            nul = vals.str.contains("\x00", regex=False).to_numpy(dtype=bool, na_value=False)
            report(nul, lambda p: "contains a NUL character")
        array = pa.array(vals.mask(empty), type=pa.string(), from_pandas=True)
    elif kind in ("int", "float", "money"):
        num = pd.to_numeric(vals.mask(empty), errors="coerce").to_numpy(
            dtype=float, na_value=np.nan
        )
        if kind == "int":
            shape = vals.str.fullmatch(_INT_RE).to_numpy(dtype=bool, na_value=False)
            report(present & ~shape, lambda p: f"not a whole number: {_show(vals.iloc[p])}")
            with np.errstate(invalid="ignore"):
                out = shape & ~(np.abs(num) <= _INT32)
            report(out, lambda p: f"whole number out of range: {_show(vals.iloc[p])}")
            num = np.where(bad, np.nan, num)
            array = pa.array(num, from_pandas=True).cast(pa.int64(), safe=False)
        else:
            report(present & ~np.isfinite(num), lambda p: f"not a number: {_show(vals.iloc[p])}")
            if kind == "money":
                with np.errstate(invalid="ignore"):
                    huge = present & np.isfinite(num) & ~(np.abs(num) < MONEY_LIMIT)
                report(huge, lambda p: f"amount out of range (at most 10 trillion): {_show(vals.iloc[p])}")
            array = pa.array(np.where(bad | empty, np.nan, num), from_pandas=True)
            if kind == "money":
                array = _money(vals.mask(bad | empty), array)
    elif kind == "bool":
        low = vals.str.lower()
        is_true = low.isin(_TRUE).to_numpy(dtype=bool)
        is_false = low.isin(_FALSE).to_numpy(dtype=bool)
        report(
            present & ~is_true & ~is_false,
            lambda p: f"not a boolean (true/false, 1/0, yes/no): {_show(vals.iloc[p])}",
        )
        array = pa.array(is_true, mask=empty)
    elif kind == "ts":
        parsed = pd.to_datetime(vals.mask(empty), format="ISO8601", utc=True, errors="coerce")
        invalid = present & parsed.isna().to_numpy(dtype=bool)
        report(invalid, lambda p: f"not an ISO 8601 date or date-time: {_show(vals.iloc[p])}")
        naive = parsed.dt.tz_localize(None)
        _report_future(report, naive, present & ~invalid, latest, rule, vals)
        array = pa.array(naive, from_pandas=True).cast(pa.timestamp("us"), safe=False)
    else:  # date
        shape = vals.str.fullmatch(_DATE_RE).to_numpy(dtype=bool, na_value=False)
        parsed = pd.to_datetime(vals.where(shape), format="%Y-%m-%d", errors="coerce")
        invalid = present & parsed.isna().to_numpy(dtype=bool)
        report(invalid, lambda p: f"not an ISO 8601 date (YYYY-MM-DD): {_show(vals.iloc[p])}")
        _report_future(report, parsed, present & ~invalid, latest, rule, vals)
        array = pa.array(parsed, from_pandas=True).cast(pa.date32(), safe=False)
    if rule.fill is not None and empty.any():
        array = pc.fill_null(array, pa.scalar(rule.fill).cast(array.type))
    return array, bad


def _report_future(report, when: pd.Series, ok: np.ndarray, latest: datetime | None, rule: _Rule, vals) -> None:
    if latest is None:
        return
    ahead = ok & (when > pd.Timestamp(latest)).to_numpy(dtype=bool, na_value=False)
    if rule.planned:
        report(ahead, lambda p: f"{_show(vals.iloc[p])} is more than 5 years in the future")
    else:
        report(ahead, lambda p: f"{_show(vals.iloc[p])} is in the future (after {latest:%Y-%m-%d})")


def _check_order(
    arrays: dict[str, pa.Array],
    bads: dict[str, np.ndarray],
    texts: dict[str, pd.Series],
    rules: dict[str, _Rule],
    lines: np.ndarray,
    order: dict[str, int],
    problems: _Problems,
) -> None:
    """A time that cannot precede another of the same row (churned_at after signed_up_at)."""
    for name, rule in rules.items():
        first = rule.after
        if name not in arrays or not first or first not in arrays:
            continue
        later, earlier = arrays[name], arrays[first]
        ok = ~bads[name] & ~bads[first]
        with np.errstate(invalid="ignore"):
            before = pc.fill_null(pc.less(later, earlier), False).to_numpy(zero_copy_only=False)
        mask = ok & before

        def describe(p: int, name: str = name, first: str = first) -> str:
            return f"{_show(texts[name].iloc[p])} is before {first} ({_show(texts[first].iloc[p])})"

        problems.add_mask(mask, lines, order[name], name, describe)
        bads[name] |= mask


def _money(texts: pd.Series, numbers: pa.Array) -> pa.Array:
    """Checked amounts as ``decimal128(18, 2)``, rounded to the cent half away from zero, from
    their text (exact: "12.345" is 12.35), or from the float (``numbers``) for the rare text
    Arrow's decimal parser does not take (more than 10 decimals)."""
    try:
        exact = pc.cast(pa.array(texts, type=pa.string(), from_pandas=True), pa.decimal128(38, 10))
        return pc.round(exact, ndigits=2, round_mode="half_towards_infinity").cast(MONEY_ARROW)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return money_array(numbers)


def _check_survey_scale(
    arrays: dict[str, pa.Array],
    bads: dict[str, np.ndarray],
    lines: np.ndarray,
    order: int,
    problems: _Problems,
) -> None:
    survey, score = arrays["survey"], arrays["score"]
    ok = (
        ~bads["survey"]
        & ~bads["score"]
        & survey.is_valid().to_numpy(zero_copy_only=False)
        & score.is_valid().to_numpy(zero_copy_only=False)
    )
    kinds = np.asarray(survey.to_numpy(zero_copy_only=False), dtype=object)
    values = score.to_numpy(zero_copy_only=False)
    lo = np.full(len(kinds), -np.inf)
    hi = np.full(len(kinds), np.inf)
    for kind, (low, high) in SURVEY_SCALES.items():
        hit = kinds == kind
        lo[hit], hi[hit] = low, high
    with np.errstate(invalid="ignore"):
        outside = ok & ((values < lo) | (values > hi))

    def describe(p: int) -> str:
        low, high = SURVEY_SCALES[kinds[p]]
        return f"{int(values[p])} is outside the {kinds[p]} scale {low}-{high}"

    problems.add_mask(outside, lines, order, "score", describe)
    bads["score"] |= outside


def _check_chunk(
    chunk: _Chunk,
    columns: list[str],
    rules: dict[str, _Rule],
    order: dict[str, int],
    problems: _Problems,
    now: datetime | None = None,
) -> pa.Table | None:
    frame = chunk.frame
    if frame.empty:
        return None
    texts = [frame[i].str.strip() for i in range(len(columns))]
    empties = [(t == "").to_numpy(dtype=bool) for t in texts]
    blank = np.logical_and.reduce(empties)  # blank lines (or only commas) are skipped
    lines = chunk.lines
    if blank.any():
        keep = ~blank
        if not keep.any():
            return None
        texts = [t[keep] for t in texts]
        empties = [e[keep] for e in empties]
        lines = lines[keep]
    arrays: dict[str, pa.Array] = {}
    bads: dict[str, np.ndarray] = {}
    for i, name in enumerate(columns):
        rule = rules[name]
        latest = None
        if now is not None and rule.kind in ("ts", "date"):
            latest = now + (PLANNED_AHEAD if rule.planned else FUTURE_SLACK)
        arrays[name], bads[name] = _check_column(
            rule, texts[i], empties[i], lines, order[name], problems, latest
        )
    _check_order(arrays, bads, dict(zip(columns, texts, strict=True)), rules, lines, order, problems)
    if "survey" in arrays and "score" in arrays and rules["survey"].choices:
        _check_survey_scale(arrays, bads, lines, order["score"], problems)
    problems.flush()
    if problems:
        return None
    arrays["_row"] = pa.array(lines, pa.int64())
    return pa.table(arrays)


# --------------------------------------------------------------------------------------------
# The import


def _header_problems(header: list[str], table: Table, problems: _Problems) -> list[str]:
    """Normalised column names, after reporting what is wrong with the header."""
    names = [h.strip().lower() for h in header]
    known = [c.name for c in table.columns]
    listing = ", ".join(known)
    seen: set[str] = set()
    listed = False
    for pos, name in enumerate(names, start=1):
        if not name:
            problems.add(1, pos, f"column {pos} has no name")
        elif name in seen:
            problems.add(1, pos, f"{name}: column appears twice in the header")
        elif name not in known:
            hint = ""
            if len(names) == 1 and any(sep in header[0] for sep in (";", "\t", "|")):
                hint = "; the file must be comma-separated"
            known_list = "" if listed else f" ({table.name} has: {listing})"
            listed = True
            problems.add(1, pos, f"{name}: unknown column{known_list}{hint}")
        seen.add(name)
    for name in required_columns(table):
        if name not in names:
            problems.add(
                1,
                len(names) + known.index(name) + 1,
                f"{name}: required column missing from the header (required: {', '.join(required_columns(table))})",
            )
    return names


def _stage_table(table: Table, columns: list[str]) -> Table:
    name = f"kpibot_stage_{table.name}_{uuid.uuid4().hex[:8]}"
    cols = [Column(n, table.c[n].type) for n in columns] + [Column("_row", Integer)]
    return Table(name, MetaData(), *cols, prefixes=["TEMPORARY"])


def _match(target: Table, stage: Table, key: tuple[str, ...]):
    conds: list[ColumnElement[bool]] = []
    for k in key:
        if k not in stage.c:
            conds.append(target.c[k].is_(None))
        elif target.c[k].nullable:
            conds.append(target.c[k].is_not_distinct_from(stage.c[k]))
        else:
            conds.append(target.c[k] == stage.c[k])
    return and_(*conds)


def _duplicate_keys(conn, stage: Table, key: tuple[str, ...], problems: _Problems) -> None:
    cols = [stage.c[k] for k in key]
    groups = (
        select(
            *cols,
            func.min(stage.c._row).label("first"),
            func.max(stage.c._row).label("last"),
            func.count().label("n"),
        )
        .group_by(*cols)
        .having(func.count() > 1)
    )
    extra = conn.scalar(select(func.sum(groups.subquery().c.n - 1)))
    if not extra:
        return
    shown = conn.execute(groups.order_by(func.max(stage.c._row)).limit(MAX_SHOWN)).all()
    problems.total += int(extra) - len(shown)
    for row in shown:
        value = ", ".join(str(v) for v in row[: len(key)])
        problems.add(row.last, 0, f"{', '.join(key)}: same key as line {row.first} ({value})")


def _merge(conn, target: Table, stage: Table, columns: list[str]) -> tuple[int, int]:
    """Upsert the staged rows into ``target``; returns (inserted, updated)."""
    key = tuple(target.info["key"])
    dialect = conn.dialect.name
    rows = conn.scalar(select(func.count()).select_from(stage)) or 0
    source = select(*(stage.c[n] for n in columns))
    has_pk = bool(target.primary_key.columns) and {
        c.name for c in target.primary_key.columns
    } == set(key)
    match = _match(target, stage, key)
    if has_pk and dialect in ("duckdb", "postgresql", "sqlite"):
        updated = (
            conn.scalar(select(func.count()).select_from(stage).where(exists().where(match))) or 0
        )
        if not updated:
            conn.execute(target.insert().from_select(columns, source, include_defaults=False))
            return rows, 0
        changes = [n for n in columns if n not in key]
        if dialect == "duckdb":
            # DuckDB's ON CONFLICT DO UPDATE takes ~40 s per million updated rows; an UPDATE
            # of the non-key columns plus an anti-joined INSERT does the same in seconds.
            if changes:
                conn.execute(target.update().values({n: stage.c[n] for n in changes}).where(match))
            new = source.where(~exists().where(match))
            conn.execute(target.insert().from_select(columns, new, include_defaults=False))
            return rows - updated, updated
        make = sqlite_insert if dialect == "sqlite" else pg_insert
        stmt = make(target).from_select(columns, source.where(true()), include_defaults=False)
        updates = {n: stmt.excluded[n] for n in changes}
        if updates:
            stmt = stmt.on_conflict_do_update(index_elements=list(key), set_=updates)
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(key))
        conn.execute(stmt)
        return rows - updated, updated
    # Key-only tables (and other dialects): the file's rows replace stored rows with their keys.
    if dialect == "sqlite":
        Index(f"{stage.name}_key", *(stage.c[k] for k in key if k in stage.c)).create(conn)
    replaced = (
        conn.scalar(select(func.count()).select_from(target).where(exists().where(match))) or 0
    )
    if replaced:
        conn.execute(target.delete().where(exists().where(match)))
    conn.execute(target.insert().from_select(columns, source, include_defaults=False))
    updated = min(replaced, rows)
    return rows - updated, updated


def import_file(
    engine: Engine,
    table: str,
    path: str | Path,
    *,
    chunk_rows: int = CHUNK_ROWS,
    now: datetime | None = None,
) -> ImportReport:
    """Import ``path`` (CSV, or Parquet by suffix/magic bytes) into ``table``, all or nothing.

    Raises :class:`ImportFailed` describing every problem (nothing is written), or
    :class:`storage.database.DatabaseError` when the database cannot be reached (its text then
    ends "nothing was imported"). ``now`` (naive UTC; default the clock) is what "in the
    future" is measured from.
    """
    started = time.perf_counter()
    require_owned(engine, "kpibot import")  # never into a database kpibot did not create
    if now is None:
        now = datetime.now(UTC).replace(tzinfo=None)
    label = str(path)
    target = TABLES.get(table)
    if target is None:
        raise ImportFailed([f"unknown table {table!r}; valid tables: {', '.join(sorted(TABLES))}"])
    file = Path(path)
    if not file.is_file():
        reason = "is a directory" if file.is_dir() else "no such file"
        raise ImportFailed([f"{label}: {reason}"])
    problems = _Problems(label)
    reader_cls = _ParquetReader if _is_parquet(file) else _CsvReader
    reader = reader_cls(file, label, chunk_rows, problems)
    rules = _rules(target)
    order = {c.name: i for i, c in enumerate(target.columns)}

    try:
        return _import(engine, target, file, label, reader, rules, order, problems, now, started)
    except DatabaseError as exc:  # the transaction was rolled back (or never began)
        raise type(exc)(f"{exc}; nothing was imported") from exc


def _import(engine, target, file, label, reader, rules, order, problems, now, started) -> ImportReport:
    table = target.name
    staging: list[Table] = []
    with connect(engine, wait=BUSY_WAIT) as conn:
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":  # the per-query limit is for questions
                    conn.execute(text("SET LOCAL statement_timeout = 0"))
                inserted, updated = _load(conn, target, reader, rules, order, problems, staging, now)
        except ImportFailed:
            raise
        except UnicodeDecodeError as exc:
            raise ImportFailed(
                [
                    f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8 CSV"
                ]
            ) from exc
        except pd.errors.EmptyDataError as exc:
            raise ImportFailed(
                [f"{label}: the file is empty; the first line must name the columns"]
            ) from exc
        except pd.errors.ParserError as exc:
            raise ImportFailed([_parser_message(label, exc)]) from exc
        except (pa.ArrowException, OSError) as exc:
            kind = "Parquet" if isinstance(reader, _ParquetReader) else "CSV"
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ImportFailed([f"{label}: not a readable {kind} file ({first[:200]})"]) from exc
        finally:
            for stage in staging:
                _drop_quietly(conn, stage)
    analyze(engine, [target])
    data_changed(engine)
    return ImportReport(
        table=table,
        path=label,
        rows=inserted + updated,
        inserted=inserted,
        updated=updated,
        seconds=time.perf_counter() - started,
    )


def _parser_message(label: str, exc: Exception) -> str:
    msg = str(exc).strip()
    found = re.search(r"EOF inside string starting at row (\d+)", msg)
    if found:
        return f"{label}:{int(found.group(1)) + 1}: a quoted value is never closed"
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg)
    if found:
        want, line, saw = found.groups()
        return f"{label}:{line}: expected {want} fields like the header, found {saw}"
    return f"{label}: not a readable CSV file ({msg.splitlines()[0][:200] if msg else type(exc).__name__})"


def _load(
    conn, target: Table, reader, rules, order, problems: _Problems, staging: list[Table], now: datetime
) -> tuple[int, int]:
    chunks = reader.chunks()
    next(chunks, None)  # the header is known once the first chunk has been read
    if not reader.header:
        raise ImportFailed(
            [f"{reader.label}: the file is empty; the first line must name the columns"]
        )
    before = problems.total
    columns = _header_problems(reader.header, target, problems)
    if problems.total > before:
        raise problems.fail()
    stage = _stage_table(target, columns)
    staging.append(stage)
    stage.create(conn)
    staged = 0
    for chunk in chunks:
        data = _check_chunk(chunk, columns, rules, order, problems, now)
        if data is not None and not problems:
            staged += insert_rows(conn, stage, data)
    problems.flush()
    if problems:
        raise problems.fail()
    if not staged:
        return 0, 0
    key = tuple(target.info["key"])
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"ANALYZE {conn.dialect.identifier_preparer.quote(stage.name)}"))
    if target.primary_key.columns:
        _duplicate_keys(conn, stage, key, problems)
        if problems:
            raise problems.fail()
    result = _merge(conn, target, stage, columns)
    stage.drop(conn)
    staging.remove(stage)
    return result


def _drop_quietly(conn, stage: Table) -> None:
    """After a failed import: a rolled-back transaction took the staging table with it on
    DuckDB and PostgreSQL, but SQLite creates temporary tables outside the transaction."""
    try:
        with conn.begin():
            conn.execute(
                text(f"DROP TABLE IF EXISTS {conn.dialect.identifier_preparer.quote(stage.name)}")
            )
    except Exception:  # noqa: BLE001 - best effort: temporary tables die with the connection
        pass
