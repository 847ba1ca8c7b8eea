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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import (
    Date,
    DateTime,
    Engine,
    Integer,
    Table,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    tuple_,
    union_all,
)

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


@dataclass(frozen=True)
class _Rows:
    """What a statement groups: its rows, their window column, the measure's aggregates, each
    dimension's column, and the size a segment is ranked by."""

    source: Any
    w: Any
    aggregates: list
    column: Callable[[str], Any]
    size: Any


def _keyed(tables: dict[str, Table], dims: Sequence[str]):
    keys, attrs = tables["customer_keys"], tables["attrs"]
    return (select(keys.c.customer_key, *(attrs.c[d] for d in dims))
            .select_from(keys.join(attrs, attrs.c.customer_id == keys.c.customer_id)).subquery("customer_attrs"))


def _users(kind: str, spans: Sequence[Span], tables: dict[str, Table], dims: Sequence[str],
           filters: Sequence[tuple[str, str]]) -> _Rows:
    """Active users (``active``) or their core actions (``per_user``): per window the users,
    then (cut by customer attributes) per customer, joined to the customers' attributes."""
    u = window_users(spans, tables, filters)

    def aggregates(users, customers, core) -> list:
        if kind == "active":
            return [users.label("users"), customers.label("customers"), users.label("_rows")]
        return [func.coalesce(core, 0).label("core"), users.label("users"), users.label("_rows")]

    if not dims:
        return _Rows(u, u.c.w, aggregates(func.count(), func.count(u.c.customer_key.distinct()), func.sum(u.c.core)),
                     lambda d: None, func.count())
    pc = (select(u.c.w, u.c.customer_key, func.count().label("users"), func.sum(u.c.core).label("core"))
          .group_by(u.c.w, u.c.customer_key).subquery("customer_users"))
    keyed = _keyed(tables, dims)
    return _Rows(pc.outerjoin(keyed, keyed.c.customer_key == pc.c.customer_key), pc.c.w,
                 aggregates(func.sum(pc.c.users), func.count(), func.sum(pc.c.core)), lambda d: keyed.c[d],
                 func.sum(pc.c.users))


def _inactive(spans: Sequence[Span], tables: dict[str, Table], filters: Sequence[tuple[str, str]]) -> _Rows:
    """Per window, every customer alive at its end (the span's end), whether a customer for
    the whole span (the inactivity days before the end), and whether any of its users had a
    day in the span (the source counts the events; only "none" matters)."""
    pairs = window_days(spans, tables["calendar"])
    d, keys, a = tables["user_days"], tables["customer_keys"], tables["attrs"]
    lo, hi = min(lo for lo, _ in spans), max(hi for _, hi in spans)
    recent = (select(pairs.c.w, d.c.customer_key).select_from(d.join(pairs, pairs.c.day == d.c.day))
              .where(d.c.day >= lo, d.c.day < hi).group_by(pairs.c.w, d.c.customer_key).subquery("recent_customers"))
    parts = [select(literal(i, Integer).label("w"), literal(datetime.combine(end, time()), DateTime).label("we"),
                    literal(datetime.combine(start, time()), DateTime).label("cut"))
             for i, (start, end) in enumerate(spans)]
    w = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("ends")
    alive = and_(a.c.signed_up_at < w.c.we, or_(a.c.churned_at.is_(None), a.c.churned_at >= w.c.we),
                 *(func.lower(a.c[name]) == value.lower() for name, value in filters))
    source = (a.join(w, alive).outerjoin(keys, keys.c.customer_id == a.c.customer_id)
              .outerjoin(recent, and_(recent.c.w == w.c.w, recent.c.customer_key == keys.c.customer_key)))
    idle = and_(a.c.signed_up_at < w.c.cut, recent.c.customer_key.is_(None))
    return _Rows(source, w.c.w, [func.count().label("active"), func.sum(case((idle, 1), else_=0)).label("inactive"),
                                 func.count().label("_rows")], lambda name: a.c[name], func.count())


def statement(kind: str, spans: Sequence[Span], tables: dict[str, Table], dims: Sequence[str] = (),
              filters: Sequence[tuple[str, str]] = (), grouping_sets: bool = True):
    """Per window (and per segment of each of ``dims``): the measure's aggregates."""
    rows = _inactive(spans, tables, filters) if kind == "inactive" else _users(kind, spans, tables, dims, filters)
    columns = [rows.w, *rows.aggregates]
    base = select(*columns).select_from(rows.source)
    if not dims:
        return base.group_by(rows.w)
    cols = [rows.column(d) for d in dims]
    if len(dims) == 1 and not grouping_sets:
        return (base.add_columns(cols[0].label("grp")).group_by(rows.w, cols[0])
                .order_by(rows.size.desc()).limit(MAX_SEGMENTS * len(spans)))
    base = base.add_columns(*(c.label(f"g_{k}") for k, c in enumerate(cols)),
                            *(func.grouping(c).label(f"gg_{k}") for k, c in enumerate(cols)))
    return base.group_by(func.grouping_sets(*(tuple_(rows.w, c) for c in cols)))


def _cell(metric: Metric, row: dict[str, Any], utc: Sequence[tuple[datetime, datetime]]) -> Cell:
    measure = metric.measure
    assert isinstance(measure, Measure), f"{metric.id}: a rollup serves measures only"
    ws, we = utc[int(row["w"])]
    values: dict[str, Any] = {k: (int(v) if v is not None else v) for k, v in row.items() if k in measure.aggregates or k == "_rows"}
    values["window_seconds"] = float((we - ws).total_seconds())
    return _finalize(metric, measure, values)


@dataclass(frozen=True)
class Plan:
    """How the rollup answers one question: how it reads the rows (``active``: users active in
    each span; ``per_user``: users and core actions; ``inactive``: customers without a day in
    each span), each window's days and UTC bounds, and the store's tables."""

    kind: str
    spans: list[Span]
    utc: list[tuple[datetime, datetime]]
    store: Engine
    tables: dict[str, Table]

    def run(self, stmt) -> list[dict[str, Any]]:
        with database.query(self.store) as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]


def cells(metric: Metric, plan: Plan, dimension: str | None = None,
          filters: Sequence[tuple[str, str]] = ()) -> dict[Key, Cell]:
    """The KPI's cells, as :func:`metrics.engine.compute` gives them (by ``dimension`` too)."""
    if dimension is None:
        rows = plan.run(statement(plan.kind, plan.spans, plan.tables, (), filters))
        return {(int(r["w"]), None): _cell(metric, r, plan.utc) for r in rows}
    rows = plan.run(statement(plan.kind, plan.spans, plan.tables, (dimension,), filters, grouping_sets=False))
    return {(int(r["w"]), _group(r["grp"])): _cell(metric, r, plan.utc) for r in rows}


def cells_by_each(metric: Metric, plan: Plan, dims: Sequence[str],
                  filters: Sequence[tuple[str, str]] = ()) -> dict[str, dict[Key, Cell]]:
    """Per dimension, what :func:`cells` gives for it: one statement where the store has grouping sets."""
    if plan.store.dialect.name == "sqlite":
        return {d: cells(metric, plan, d, filters) for d in dims}
    rows = plan.run(statement(plan.kind, plan.spans, plan.tables, dims, filters))
    out: dict[str, dict[Key, Cell]] = {}
    for k, name in enumerate(dims):
        mine = sorted((r for r in rows if not r[f"gg_{k}"]), key=lambda r: -int(r["_rows"] or 0))
        out[name] = {(int(r["w"]), _group(r[f"g_{k}"])): _cell(metric, r, plan.utc)
                     for r in mine[: MAX_SEGMENTS * len(plan.spans)]}
    return out


__all__ = ["Plan", "cells", "cells_by_each", "statement", "window_days", "window_users"]
