"""How fresh each source is: the last local day its time column reaches ("data through 22 Nov").

An import that did not run leaves a table that simply stops; without this, a period after
that day reads as zero ("churn 0.0% 🟢"). A KPI is as fresh as the stalest table it reads.
One aggregate statement (a MAX per time column, each an index or zone-map look-up) per answer.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Date, Engine, func, select

from metrics.model import relations
from metrics.periods import Settings, to_utc
from storage import database

#: The columns that say when a row happened, per table: the latest of them is how far a
#: table's data reaches (a customer who churned yesterday makes customers fresh to yesterday).
#: Incidents and defects are left out: they are rare by design, and a quiet month (no
#: outage) is a value, 100% uptime, not missing data.
TIME_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("signed_up_at", "churned_at"),
    "subscriptions": ("started_at", "ended_at"),
    "orders": ("ordered_at",),
    "costs": ("incurred_at",),
    "survey_responses": ("responded_at",),
    "tickets": ("opened_at",),
    "leads": ("created_at",),
    "marketing_spend": ("spent_on",),
    "usage_events": ("occurred_at",),
    "opportunities": ("created_at",),
}


def _local_day(value, settings: Settings) -> date | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite may hand back text for an aggregate of timestamps
        value = datetime.fromisoformat(value) if len(value) > 10 else date.fromisoformat(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC).astimezone(settings.zone).date()
    return value


def by_table(
    tables: tuple[str, ...] | list[str], engine: Engine, settings: Settings, as_of: date | None = None
) -> dict[str, date | None]:
    """The last local day each table has data for (None: the table is empty). With ``as_of``,
    rows dated after it (a cancellation booked for next month) do not count as fresh data."""
    key = (tuple(tables), as_of, settings.timezone, relations.generation(), str(engine.url))
    built = _built.get(key)
    if built is None:
        built = _statement(tables, engine, settings, as_of)
        if len(_built) > 256:
            _built.clear()
        _built[key] = built  # the same statement object next time: its mapped form is cached too
    stmt, names = built
    out: dict[str, date | None] = {name: None for name in tables if relations.time_columns(name, TIME_COLUMNS.get(name, ()), engine)}
    if stmt is None:
        return out
    with database.query(engine) as conn:
        row = conn.execute(stmt).one()  # one round trip, each column its own type
    for name, value in zip(names, row, strict=True):
        day, current = _local_day(value, settings), out[name]
        if day is not None and (current is None or day > current):
            out[name] = day
    return out


_built: dict[tuple, tuple[Any, list[str]]] = {}


def _statement(tables, engine: Engine, settings: Settings, as_of: date | None) -> tuple[Any, list[str]]:
    columns: list[Any] = []
    names: list[str] = []
    for name in tables:
        for column in relations.time_columns(name, TIME_COLUMNS.get(name, ()), engine):
            table = relations.table(name)
            col = table.c[column]
            latest = select(func.max(col))
            if as_of is not None:
                cap = as_of + timedelta(days=1)
                latest = latest.where(col < (cap if isinstance(col.type, Date) else to_utc(cap, settings)))
            columns.append(latest.scalar_subquery().label(f"m{len(columns)}"))
            names.append(name)
    return (select(*columns) if columns else None), names


def data_through(
    tables: tuple[str, ...] | list[str], engine: Engine, settings: Settings, as_of: date | None = None
) -> date | None:
    """The last day all of a KPI's sources have data for: the stalest non-empty one wins
    (an empty table is a source this company does not have, e.g. no costs). None: no data."""
    known = [d for d in by_table(tables, engine, settings, as_of).values() if d is not None]
    return min(known) if known else None


def fully_loaded(through: date | None, end: date) -> bool:
    """Whether data reaches the last day of a window ending (exclusive) at ``end``."""
    return through is not None and through >= end - timedelta(days=1)


def through_text(through: date | None) -> str:
    return "no data loaded yet" if through is None else f"data through {through:%-d %b %Y}"


__all__ = ["TIME_COLUMNS", "by_table", "data_through", "fully_loaded", "through_text"]
