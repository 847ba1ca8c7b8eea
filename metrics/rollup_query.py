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

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import (
    Date,
    DateTime,
    Engine,
    Integer,
    Select,
    String,
    Table,
    and_,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    tuple_,
    union_all,
)

from metrics.engine import MAX_SEGMENTS, Cell, Key, _finalize, _group
from metrics.spec import Measure, Metric
from storage import database

Span = tuple[date, date]


def window_days(spans: Sequence[Span], calendar: Table, first: int = 0):
    """(w, day) for every built day of every window's span (numbered from ``first``)."""
    parts = [select(literal(i, Integer).label("w"), literal(lo, Date).label("lo"), literal(hi, Date).label("hi"))
             for i, (lo, hi) in enumerate(spans, first)]
    w = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("w")
    c = calendar
    return select(w.c.w, c.c.day).select_from(c.join(w, and_(c.c.day >= w.c.lo, c.c.day < w.c.hi))).subquery("wd")


def _matching(keys: Table, attrs: Table, filters: Sequence[tuple[str, str]]):
    """Customer keys whose attributes match every filter (as the source compares: lower-cased)."""
    return (select(keys.c.customer_key)
            .select_from(keys.join(attrs, attrs.c.customer_id == keys.c.customer_id))
            .where(*(func.lower(attrs.c[name]) == value.lower() for name, value in filters)))


def window_users(spans: Sequence[Span], tables: dict[str, Table], filters: Sequence[tuple[str, str]] = (),
                 first: int = 0) -> Select:
    """Per window, one row per active user (user key, customer key, core actions)."""
    pairs = window_days(spans, tables["calendar"], first)
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
            .group_by(pairs.c.w, d.c.user_key, d.c.customer_key))


def customer_rows(spans: Sequence[Span], tables: dict[str, Table], filters: Sequence[tuple[str, str]],
                  dims: Sequence[str], first: int = 0) -> Select:
    """Inactivity: per window, every customer alive at its end (the span's end), whether idle
    (a customer for the whole span, the inactivity days before the end, and none of its users
    had a day in it: the source counts the events, only "none" matters), and its attributes."""
    pairs = window_days(spans, tables["calendar"], first)
    d, keys, a = tables["user_days"], tables["customer_keys"], tables["attrs"]
    lo, hi = min(lo for lo, _ in spans), max(hi for _, hi in spans)
    recent = (select(pairs.c.w, d.c.customer_key).select_from(d.join(pairs, pairs.c.day == d.c.day))
              .where(d.c.day >= lo, d.c.day < hi).group_by(pairs.c.w, d.c.customer_key).subquery("recent_customers"))
    parts = [select(literal(i, Integer).label("w"), literal(datetime.combine(end, time()), DateTime).label("we"),
                    literal(datetime.combine(start, time()), DateTime).label("cut"))
             for i, (start, end) in enumerate(spans, first)]
    w = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("ends")
    alive = and_(a.c.signed_up_at < w.c.we, or_(a.c.churned_at.is_(None), a.c.churned_at >= w.c.we),
                 *(func.lower(a.c[name]) == value.lower() for name, value in filters))
    idle = case((and_(a.c.signed_up_at < w.c.cut, recent.c.customer_key.is_(None)), 1), else_=0)
    return (select(w.c.w, idle.label("idle"), *(a.c[name] for name in dims))
            .select_from(a.join(w, alive).outerjoin(keys, keys.c.customer_id == a.c.customer_id)
                         .outerjoin(recent, and_(recent.c.w == w.c.w, recent.c.customer_key == keys.c.customer_key))))


def _rows(kind: str, spans: Sequence[Span], tables: dict[str, Table], filters: Sequence[tuple[str, str]],
          dims: Sequence[str], first: int = 0) -> Select:
    if kind == "inactive":
        return customer_rows(spans, tables, filters, dims, first)
    return window_users(spans, tables, filters, first)


def _grouped(kind: str, rows, tables: dict[str, Table], dims: Sequence[str] = (), grouping_sets: bool = True,
             limit: int = 0, pairs: bool = False) -> Select:
    """The windows' aggregates over ``rows`` (:func:`window_users` or :func:`customer_rows`),
    per segment of each of ``dims`` (grouping sets, with ``pairs`` also per segment of every
    two of them; a single one without: ranked by size, at most ``limit`` rows)."""
    size: Any
    if kind == "inactive":
        r = source = rows
        size = func.count()
        aggregates = [size.label("active"), func.sum(r.c.idle).label("inactive"), size.label("_rows")]
        cols = [r.c[d] for d in dims]
    elif not dims:
        r = source = rows
        size = func.count()
        aggregates = _users(kind, size, func.count(r.c.customer_key.distinct()), func.sum(r.c.core))
    else:  # a user is one customer's: a segment's users are the sum of its customers'
        r = (select(rows.c.w, rows.c.customer_key, func.count().label("users"), func.sum(rows.c.core).label("core"))
             .group_by(rows.c.w, rows.c.customer_key).subquery("customer_users"))
        keys, attrs = tables["customer_keys"], tables["attrs"]
        keyed = (select(keys.c.customer_key, *(attrs.c[d] for d in dims))
                 .select_from(keys.join(attrs, attrs.c.customer_id == keys.c.customer_id)).subquery("customer_attrs"))
        source = r.outerjoin(keyed, keyed.c.customer_key == r.c.customer_key)
        size = func.sum(r.c.users)
        aggregates = _users(kind, size, func.count(), func.sum(r.c.core))
        cols = [keyed.c[d] for d in dims]
    base = select(r.c.w, *aggregates).select_from(source)
    if not dims:
        return base.group_by(r.c.w)
    if len(dims) == 1 and not grouping_sets:
        return base.add_columns(cols[0].label("grp")).group_by(r.c.w, cols[0]).order_by(size.desc()).limit(limit)
    base = base.add_columns(*(c.label(f"g_{k}") for k, c in enumerate(cols)),
                            *(func.grouping(c).label(f"gg_{k}") for k, c in enumerate(cols)))
    sets = [tuple_(r.c.w, c) for c in cols]
    if pairs:
        sets += [tuple_(r.c.w, a, b) for i, a in enumerate(cols) for b in cols[i + 1:]]
    return base.group_by(func.grouping_sets(*sets))


def _users(kind: str, users, customers, core) -> list:
    if kind == "active":
        return [users.label("users"), customers.label("customers"), users.label("_rows")]
    return [func.coalesce(core, 0).label("core"), users.label("users"), users.label("_rows")]


def statement(kind: str, spans: Sequence[Span], tables: dict[str, Table], dims: Sequence[str] = (),
              filters: Sequence[tuple[str, str]] = (), grouping_sets: bool = True) -> Select:
    """Per window (and per segment of each of ``dims``): the measure's aggregates."""
    rows = _rows(kind, spans, tables, filters, dims).subquery("window_rows")
    return _grouped(kind, rows, tables, dims, grouping_sets, MAX_SEGMENTS * len(spans))


def with_cuts(kind: str, spans: Sequence[Span], tables: dict[str, Table], dims: Sequence[str],
              filters: Sequence[tuple[str, str]] = ()):
    """Per window the aggregates (``part`` 0) and, for the first two windows (the period and
    the one compared), each of ``dims``' segments and each pair of them (``part`` 1): their
    rows are made once (a materialized CTE), so the breakdown and "what moved it" (its cuts
    and its pair) after the answer cost no second pass over them."""
    head = _rows(kind, spans[:2], tables, filters, dims).cte("head_rows").prefix_with("MATERIALIZED")
    blank = [cast(null(), String).label(f"g_{k}") for k in range(len(dims))]
    ones = [literal(1, Integer).label(f"gg_{k}") for k in range(len(dims))]
    parts = [_grouped(kind, head, tables).add_columns(*blank, *ones, literal(0, Integer).label("part")),
             _grouped(kind, head, tables, dims, pairs=True).add_columns(literal(1, Integer).label("part"))]
    if len(spans) > 2:  # the trend's windows: counted alone
        tail = _rows(kind, spans[2:], tables, filters, (), first=2).subquery("tail_rows")
        parts.append(_grouped(kind, tail, tables).add_columns(*blank, *ones, literal(0, Integer).label("part")))
    return union_all(*parts)


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
    each span), each window's days and UTC bounds, the store's tables, and what the rollup
    and its customers' copy were built from (``version``)."""

    kind: str
    spans: list[Span]
    utc: list[tuple[datetime, datetime]]
    store: Engine
    tables: dict[str, Table]
    version: tuple = ()

    def run(self, stmt) -> list[dict[str, Any]]:
        with database.query(self.store) as conn:
            return [dict(r) for r in conn.execute(stmt).mappings().all()]  # fetchall: one call, not one per row

    def cut_key(self, metric: Metric, filters: Sequence[tuple[str, str]], dims: Sequence[str]) -> tuple:
        """What "what moved it" for this plan's first two windows depends on."""
        return (metric.id, self.kind, self.version, tuple(self.spans[:2]), tuple(self.utc[:2]), tuple(filters),
                tuple(dims), self.store.url.render_as_string(hide_password=True))


@dataclass(frozen=True)
class _Cuts:
    """An answer's first two windows cut by each dimension (cells) and every pair (raw rows)."""

    dims: tuple[str, ...]
    single: dict[str, dict[Key, Cell]]
    rows: list[dict[str, Any]]


_cuts: OrderedDict[tuple, _Cuts] = OrderedDict()  # the latest answers' cuts, for their breakdown and explanation
_cuts_lock = threading.Lock()
#: Aggregates the rollup's statements give that add up over disjoint sets of customers.
ADDITIVE = ("users", "customers", "core", "active", "inactive", "_rows")


def _remember(key: tuple, cuts: _Cuts) -> None:
    with _cuts_lock:
        _cuts[key] = cuts
        _cuts.move_to_end(key)
        while len(_cuts) > 32:
            _cuts.popitem(last=False)


def _kept(metric: Metric, plan: Plan, filters: Sequence[tuple[str, str]], dims: Sequence[str]) -> _Cuts | None:
    if len(plan.spans) != 2 or not dims:
        return None
    with _cuts_lock:
        return _cuts.get(plan.cut_key(metric, filters, dims))


def cells(metric: Metric, plan: Plan, dimension: str | None = None, filters: Sequence[tuple[str, str]] = (),
          explained_by: Callable[[Sequence[tuple[str, str]]], Sequence[str]] = lambda f: ()) -> dict[Key, Cell]:
    """The KPI's cells, as :func:`metrics.engine.compute` gives them (by ``dimension`` too).
    ``explained_by(filters)``: the dimensions "what moved it" cuts by under those filters;
    without a ``dimension`` or a trend the two windows are cut by each of them (and every pair)
    in the same statement, kept for the breakdown, :func:`cells_by_each` and the pair asked next."""
    dims = tuple(explained_by(filters))
    # not with a trend: its answers are seldom explained (a 2-year trend's two periods are 2
    # years of rows each, which the cuts would read for nothing); the explanation cuts them then
    if dimension is None and dims and len(plan.spans) == 2 and plan.store.dialect.name != "sqlite":
        rows = plan.run(with_cuts(plan.kind, plan.spans, plan.tables, dims, filters))
        head = [r for r in rows if r["part"]]
        _remember(plan.cut_key(metric, filters, dims), _Cuts(dims, _split(metric, head, dims, plan.utc, 2), head))
        return {(int(r["w"]), None): _cell(metric, r, plan.utc) for r in rows if not r["part"]}
    if dimension is None:
        rows = plan.run(statement(plan.kind, plan.spans, plan.tables, (), filters))
        return {(int(r["w"]), None): _cell(metric, r, plan.utc) for r in rows}
    kept = _kept(metric, plan, filters, dims)
    if kept is not None and dimension in kept.dims:  # the answer's breakdown
        return kept.single[dimension]
    if filters:  # the explanation's pair: a segment of one dimension cut by another
        kept = _kept(metric, plan, filters[:-1], explained_by(filters[:-1]))
        name, value = filters[-1]
        if kept is not None and {dimension, name} <= set(kept.dims) and dimension != name:
            return _pair(metric, kept, dimension, name, value, plan.utc)
    rows = plan.run(statement(plan.kind, plan.spans, plan.tables, (dimension,), filters, grouping_sets=False))
    return {(int(r["w"]), _group(r["grp"])): _cell(metric, r, plan.utc) for r in rows}


def _pair(metric: Metric, kept: _Cuts, dimension: str, name: str, value: str, utc) -> dict[Key, Cell]:
    """Cut by ``dimension`` where ``name`` is ``value`` (compared lower-cased, as the source
    filters), from the kept pair: the matching segments' aggregates add up (disjoint customers)."""
    i, j = kept.dims.index(dimension), kept.dims.index(name)
    grouped: dict[tuple[int, Any], dict[str, Any]] = {}
    for r in _only(kept.rows, kept.dims, (i, j)):
        if r[f"g_{j}"] is None or str(r[f"g_{j}"]).lower() != value.lower():
            continue
        into = grouped.setdefault((int(r["w"]), r[f"g_{i}"]), {"w": r["w"]})
        for k in ADDITIVE:
            if k in r:
                into[k] = (into.get(k) or 0) + int(r[k] or 0)
    ranked = sorted(grouped.items(), key=lambda kv: -kv[1]["_rows"])[: MAX_SEGMENTS * 2]
    return {(w, _group(g)): _cell(metric, row, utc) for (w, g), row in ranked}


def _only(rows: list[dict[str, Any]], dims: Sequence[str], grouped: tuple[int, ...]) -> list[dict[str, Any]]:
    """The rows of the grouping set by exactly the dimensions ``grouped`` (their GROUPING() is 0)."""
    return [r for r in rows if all(bool(r[f"gg_{k}"]) == (k not in grouped) for k in range(len(dims)))]


def cells_by_each(metric: Metric, plan: Plan, dims: Sequence[str],
                  filters: Sequence[tuple[str, str]] = ()) -> dict[str, dict[Key, Cell]]:
    """Per dimension, what :func:`cells` gives for it: kept from the answer's own statement,
    else one statement where the store has grouping sets."""
    kept = _kept(metric, plan, filters, dims)
    if kept is not None:
        return kept.single
    if plan.store.dialect.name == "sqlite":
        return {d: cells(metric, plan, d, filters) for d in dims}
    return _split(metric, plan.run(statement(plan.kind, plan.spans, plan.tables, dims, filters)), dims, plan.utc,
                  len(plan.spans))


def _split(metric: Metric, rows: list[dict[str, Any]], dims: Sequence[str], utc, windows: int) -> dict[str, dict[Key, Cell]]:
    """Each dimension's grouping set, largest segments first, as :func:`metrics.scan.by_each` keys them."""
    out: dict[str, dict[Key, Cell]] = {}
    for k, name in enumerate(dims):
        mine = sorted(_only(rows, dims, (k,)), key=lambda r: -int(r["_rows"] or 0))
        out[name] = {(int(r["w"]), _group(r[f"g_{k}"])): _cell(metric, r, utc) for r in mine[: MAX_SEGMENTS * windows]}
    return out


def forget() -> None:
    with _cuts_lock:
        _cuts.clear()


__all__ = ["Plan", "cells", "cells_by_each", "forget", "statement", "window_days", "window_users", "with_cuts"]
