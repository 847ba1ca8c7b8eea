"""What data a question will read, known before any of it is read.

A question's sensitivities (money, per_customer: see :mod:`storage.sensitivity`) are derived
from the SQL it runs, not from a label: the KPI (with its extra figures, breakdown and
filters) or report is run once against an empty in-memory copy of the schema, every
statement it sends is recorded, and the columns those statements read decide. That costs a
few milliseconds once per KPI shape (cached), and nothing of the real data is touched, so the
front end can refuse a question before the database or a model fit does any work.

While the real question runs, :func:`reading_only` also guards every statement sent to any
engine: one that would read a sensitivity beyond what was authorized (a code path the empty
run did not take) raises :class:`AccessDenied` instead of running — the check fails closed.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql import selectable
from sqlalchemy.types import NullType

from storage import database, sensitivity
from storage.schema import metadata


class AccessDenied(Exception):
    """The asker may not see this data here; the message is safe to show them."""

    kpi: str | None = None  # what was refused, for the audit log


@dataclass(frozen=True)
class Needs:
    """What answering a question reveals: for the policy to decide on before any work."""

    what: str  # "revenue" (a KPI) or "report:acquisition"
    sensitivities: frozenset[str]
    metric: str | None = None
    report: str | None = None
    group: str | None = None  # the KPI's catalogue group (satisfaction, financial, …)
    dimension: str | None = None


#: Called with what a question needs before any work; raises AccessDenied to refuse it.
Authorize = Callable[[Needs], None]


# ---- derivation: a dry run on an empty schema ------------------------------------------------

@compiles(NullType, "sqlite")
def _typeless(_type, _compiler, **_kw) -> str:
    """A model column of no known type (named like no rule in metrics.model.relations) is a
    typeless column in the dry run's SQLite copy, which SQLite allows, not a DDL error."""
    return ""


_dry_engine: Engine | None = None
_dry_lock = threading.RLock()
_recorded: list | None = None
_derived: dict[tuple, frozenset[str]] = {}


def _engine() -> Engine:
    global _dry_engine
    if _dry_engine is None:
        from storage.database import _sqlite_setup

        engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_setup)
        metadata.create_all(engine)
        tables = {t.name: t for t in metadata.sorted_tables}
        from metrics.model import relations

        model = relations.current()
        if model is not None:  # the model's own sources, and kpibot's tables widened by its dimensions
            for table in model.metadata.sorted_tables:
                if table.name in tables:
                    tables[table.name].drop(engine)
                table.create(engine)
                tables[table.name] = table
        with engine.begin() as conn:
            for table in tables.values():
                conn.execute(table.insert(), [_row(table, i) for i in range(2)])

        @event.listens_for(engine, "before_execute")
        def _record(conn, clause, *args):
            if _recorded is not None:
                _recorded.append(clause)

        _dry_engine = engine
    return _dry_engine


def is_dry_run(engine: Engine) -> bool:
    """Whether ``engine`` is the dry run's stand-in: what runs there derives what a KPI reads,
    so it must read only there (never kpibot's rollup store, before any access check)."""
    return engine is _dry_engine


def forget() -> None:
    """Derive again (a model file was configured: other tables, other KPIs)."""
    global _dry_engine
    with _dry_lock:
        _derived.clear()
        if _dry_engine is not None:
            _dry_engine.dispose()
        _dry_engine = None


def _dry_run(key: tuple, run: Callable[[Engine], object]) -> frozenset[str]:
    """The sensitivities of every statement ``run`` sends; any failure counts as all of them."""
    global _recorded
    hit = _derived.get(key)
    if hit is not None:
        return hit
    with _dry_lock:
        engine = _engine()
        _recorded = []
        token = _allowed.set(None)
        untimed = database._deadline.set(None)  # not the question's work: its deadline does not apply
        try:
            run(engine)
            found = frozenset().union(*(sensitivity.read_by(s) for s in _recorded if _is_query(s)))
        except Exception:  # noqa: BLE001 - what could not be derived is closed, not open
            found = frozenset(sensitivity.REACH)
        finally:
            _recorded = None
            _allowed.reset(token)
            database._deadline.reset(untimed)
        _derived[key] = found
    return found


def _row(table, i: int) -> dict:
    """A made-up row inside the dry-run windows, so that paths taken only when there is data
    (e.g. the profitability ranking) run too; two customers, each with one row of everything."""
    from sqlalchemy import Boolean, Date, DateTime, Float, Integer, Numeric

    from storage.schema import is_money

    day = _windows()[0][0] + timedelta(days=3 + i)
    row: dict = {}
    for column in table.c:
        kind = column.type
        if isinstance(kind, Boolean):
            row[column.name] = bool(i)
        elif isinstance(kind, DateTime):
            row[column.name] = datetime(day.year, day.month, day.day, 12)
        elif isinstance(kind, Date):
            row[column.name] = day
        elif isinstance(kind, (Integer, Float, Numeric)) or is_money(kind) or getattr(kind, "python_type", None) in (int, float):
            row[column.name] = 3 + i
        else:
            choices = column.info.get("choices")
            row[column.name] = choices[0] if choices else ("c1" if column.name == "customer_id" and i == 0 else f"v{i}")
    if "customer_id" in table.c:
        row["customer_id"] = f"c{i}"
    return row


def _windows() -> list[tuple[date, date]]:
    end = date(2000, 2, 1)
    return [(end - timedelta(days=31), end), (end - timedelta(days=62), end - timedelta(days=31))]


def of_metric(metric_id: str, dimension: str | None = None, filters: tuple[str, ...] = ()) -> frozenset[str]:
    """The sensitivities a KPI reads, with its breakdown ``dimension`` and filter columns."""
    from metrics import engine as kpi_engine
    from metrics.catalogue import CATALOGUE
    from metrics.periods import Settings

    metric = CATALOGUE[metric_id]
    pairs = tuple((name, "x") for name in filters)

    def run(engine: Engine) -> None:
        settings = Settings()
        kpi_engine.compute(metric, _windows(), settings, engine, None, pairs)
        if dimension:
            kpi_engine.compute(metric, _windows(), settings, engine, dimension, pairs)

    return _dry_run(("kpi", metric_id, dimension, tuple(sorted(filters))), run)


def of_report(name: str) -> frozenset[str]:
    from metrics import reports
    from metrics.periods import Period, Settings

    start, end = _windows()[0]
    return _dry_run(("report", name), lambda engine: reports.run(name, Period(start, end, "dry run"), engine, Settings()))


def for_metric(metric_id: str, dimension: str | None = None, filters: tuple[str, ...] = ()) -> Needs:
    from metrics.catalogue import CATALOGUE

    return Needs(metric_id, of_metric(metric_id, dimension, filters), metric=metric_id,
                 group=CATALOGUE[metric_id].group, dimension=dimension)


def for_report(name: str) -> Needs:
    return Needs(f"report:{name}", of_report(name), report=name)


# ---- the guard while a question runs -----------------------------------------------------------

_allowed: contextvars.ContextVar[frozenset[str] | None] = contextvars.ContextVar("kpibot_allowed", default=None)


def _is_query(statement) -> bool:
    return isinstance(statement, (selectable.Select, selectable.CompoundSelect))


@event.listens_for(Engine, "before_execute")
def _guard(conn, clause, *args) -> None:
    allowed = _allowed.get()
    if allowed is None or not _is_query(clause):
        return
    extra = sensitivity.read_by(clause) - allowed
    if extra:
        raise AccessDenied(f"that would read {', '.join(sorted(extra))} data, which is not allowed here")


@contextmanager
def reading_only(allowed: frozenset[str]) -> Iterator[None]:
    """Statements run inside may read only these sensitivities (in this thread)."""
    token = _allowed.set(frozenset(allowed))
    try:
        yield
    finally:
        _allowed.reset(token)


@contextmanager
def unguarded() -> Iterator[None]:
    """Statements inside are kpibot's own bookkeeping, never shown to the asker (the answer
    cache's freshness probe): the question's guard does not apply to them."""
    token = _allowed.set(None)
    try:
        yield
    finally:
        _allowed.reset(token)
