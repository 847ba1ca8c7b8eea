"""The statements that answer a KPI from kpibot's usage rollup (:mod:`metrics.rollups`).

Every window becomes (window, day) pairs over the calendar of built days, equi-joined to the
user-day rows. A user belongs to one customer, so per window the users are grouped once, then
counted per customer; a segment of customers (industry, plan …) is the sum over its customers
(distinct users stay exact: no user is in two customers), joined to the customers' attributes
copied into the store (:mod:`metrics.rollup_customers`). Every dimension of "what moved it" is
one ``GROUPING SETS`` statement over those per-customer rows (a statement per dimension where
the store has no grouping sets: SQLite).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, Engine, Integer, Table, and_, func, literal, select, tuple_, union_all

from metrics.engine import MAX_SEGMENTS, Cell, Key, _finalize, _group
from metrics.spec import Measure, Metric
from storage import database

Span = tuple[date, date]


def window_days(spans: Sequence[Span], calendar: Table):
    """(w, day) for every built day of every window's span."""
    parts = [select(literal(i, Integer).label("w"), literal(lo, Date).label("lo"), literal(hi, Date).label("hi"))
             for i, (lo, hi) in enumerate(spans)]
    w = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("w")
    c = calendar
    return select(w.c.w, c.c.day).select_from(c.join(w, and_(c.c.day >= w.c.lo, c.c.day < w.c.hi))).subquery("wd")


def _matching(keys: Table, attrs: Table, filters: Sequence[tuple[str, str]]):
    """Customer keys whose attributes match every filter (as the source compares: lower-cased)."""
    return (select(keys.c.customer_key)
            .select_from(keys.join(attrs, attrs.c.customer_id == keys.c.customer_id))
            .where(*(func.lower(attrs.c[name]) == value.lower() for name, value in filters)))


def window_users(spans: Sequence[Span], tables: dict[str, Table], filters: Sequence[tuple[str, str]] = ()):
    """Per window, one row per active user (user key, customer key, core actions)."""
    pairs = window_days(spans, tables["calendar"])
    d = tables["user_days"]
    lo, hi = min(lo for lo, _ in spans), max(hi for _, hi in spans)
    where = [d.c.day >= lo, d.c.day < hi]
    if filters:
        where.append(d.c.customer_key.in_(_matching(tables["customer_keys"], tables["attrs"], filters)))
    # users per window first (a grouping DuckDB can spill to disk), then counted: DISTINCT
    # aggregates over 50 windows × a million users would have to fit in memory
    return (select(pairs.c.w, d.c.user_key, d.c.customer_key, func.sum(d.c.core).label("core"))
            .select_from(d.join(pairs, pairs.c.day == d.c.day))
            .where(*where)
            .group_by(pairs.c.w, d.c.user_key, d.c.customer_key)
            .subquery("window_users"))


def _aggregates(kind: str, users, customers, core) -> list:
    if kind == "active":
        return [users.label("users"), customers.label("customers"), users.label("_rows")]
    return [func.coalesce(core, 0).label("core"), users.label("users"), users.label("_rows")]


def statement(kind: str, spans: Sequence[Span], tables: dict[str, Table], dims: Sequence[str] = (),
              filters: Sequence[tuple[str, str]] = (), grouping_sets: bool = True):
    """Per window (and per segment of each of ``dims``): the measure's aggregates."""
    u = window_users(spans, tables, filters)
    if not dims:
        return select(u.c.w, *_aggregates(kind, func.count(), func.count(u.c.customer_key.distinct()),
                                          func.sum(u.c.core))).group_by(u.c.w)
    per_customer = (select(u.c.w, u.c.customer_key, func.count().label("users"), func.sum(u.c.core).label("core"))
                    .group_by(u.c.w, u.c.customer_key).subquery("customer_users"))
    keys, attrs = tables["customer_keys"], tables["attrs"]
    keyed = (select(keys.c.customer_key, *(attrs.c[d] for d in dims))
             .select_from(keys.join(attrs, attrs.c.customer_id == keys.c.customer_id)).subquery("customer_attrs"))
    pc = per_customer
    source = pc.outerjoin(keyed, keyed.c.customer_key == pc.c.customer_key)
    columns = [pc.c.w, *_aggregates(kind, func.sum(pc.c.users), func.count(), func.sum(pc.c.core))]
    cols = [keyed.c[d] for d in dims]
    if len(dims) == 1 and not grouping_sets:
        return (select(*columns, cols[0].label("grp")).select_from(source).group_by(pc.c.w, cols[0])
                .order_by(func.sum(pc.c.users).desc()).limit(MAX_SEGMENTS * len(spans)))
    columns += [c.label(f"g_{k}") for k, c in enumerate(cols)]
    columns += [func.grouping(c).label(f"gg_{k}") for k, c in enumerate(cols)]
    return select(*columns).select_from(source).group_by(func.grouping_sets(*(tuple_(pc.c.w, c) for c in cols)))


def _cell(metric: Metric, row: dict[str, Any], utc: Sequence[tuple[datetime, datetime]]) -> Cell:
    measure = metric.measure
    assert isinstance(measure, Measure), f"{metric.id}: a rollup serves measures only"
    ws, we = utc[int(row["w"])]
    values: dict[str, Any] = {k: (int(v) if v is not None else v) for k, v in row.items() if k in measure.aggregates or k == "_rows"}
    values["window_seconds"] = float((we - ws).total_seconds())
    return _finalize(metric, measure, values)


def _run(store: Engine, stmt) -> list[dict[str, Any]]:
    with database.query(store) as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]


def cells(metric: Metric, kind: str, spans: Sequence[Span], utc, store: Engine, tables: dict[str, Table],
          dimension: str | None = None, filters: Sequence[tuple[str, str]] = ()) -> dict[Key, Cell]:
    """The KPI's cells, as :func:`metrics.engine.compute` gives them (by ``dimension`` too)."""
    if dimension is None:
        return {(int(r["w"]), None): _cell(metric, r, utc) for r in _run(store, statement(kind, spans, tables, (), filters))}
    rows = _run(store, statement(kind, spans, tables, (dimension,), filters, grouping_sets=False))
    return {(int(r["w"]), _group(r["grp"])): _cell(metric, r, utc) for r in rows}


def cells_by_each(metric: Metric, kind: str, spans: Sequence[Span], utc, store: Engine, tables: dict[str, Table],
                  dims: Sequence[str], filters: Sequence[tuple[str, str]] = ()) -> dict[str, dict[Key, Cell]]:
    """Per dimension, what :func:`cells` gives for it: one statement where the store has grouping sets."""
    if store.dialect.name == "sqlite":
        return {d: cells(metric, kind, spans, utc, store, tables, d, filters) for d in dims}
    rows = _run(store, statement(kind, spans, tables, dims, filters))
    out: dict[str, dict[Key, Cell]] = {}
    for k, name in enumerate(dims):
        mine = sorted((r for r in rows if not r[f"gg_{k}"]), key=lambda r: -int(r["_rows"] or 0))
        out[name] = {(int(r["w"]), _group(r[f"g_{k}"])): _cell(metric, r, utc) for r in mine[: MAX_SEGMENTS * len(spans)]}
    return out


__all__ = ["cells", "cells_by_each", "statement", "window_days", "window_users"]
