"""The statements that answer a KPI from kpibot's usage rollup (:mod:`metrics.rollups`).

Every window becomes (window, day) pairs over the calendar of built days, equi-joined to the
rows. A row is a user's first day in a window when the user's previous day of use is before
the window's start, so a window's users are a filtered count (its customers likewise, on the
customer's row of the day). Without a cut that count comes from the per-day table; with one,
the user-days are summed per customer, then per combination of the customers' attribute
values copied into the store (:mod:`metrics.rollup_customers`) — a segment's users are the
sum over its customers, as no user is in two — and every dimension of "what moved it" is one
``GROUPING SETS`` statement over those few rows (a statement per dimension where the store
has no grouping sets: SQLite).
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
    Float,
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
    """(w, lo, day) for every built day of every window's span (numbered from ``first``)."""
    parts = [select(literal(i, Integer).label("w"), literal(lo, Date).label("lo"), literal(hi, Date).label("hi"))
             for i, (lo, hi) in enumerate(spans, first)]
    w = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("w")
    c = calendar
    return (select(w.c.w, w.c.lo, c.c.day)
            .select_from(c.join(w, and_(c.c.day >= w.c.lo, c.c.day < w.c.hi))).subquery("wd"))


def _first(previous, lo):
    """Whether a row is its user's (customer's) first day in the window starting at ``lo``."""
    return or_(previous.is_(None), previous < lo)


def _attributes(tables: dict[str, Table], dims: Sequence[str], filters: Sequence[tuple[str, str]]):
    """Customer keys with the attributes cut by or filtered on (from the customers' copy)."""
    keys, attrs = tables["customer_keys"], tables["attrs"]
    names = list(dict.fromkeys([*dims, *(name for name, _ in filters)]))
    return (select(keys.c.customer_key, *(attrs.c[n] for n in names))
            .select_from(keys.join(attrs, attrs.c.customer_id == keys.c.customer_id)).subquery("customer_attrs"))


def _matches(columns, filters: Sequence[tuple[str, str]]) -> list:
    """Each filter as the source compares it: lower-cased."""
    return [func.lower(columns[name]) == value.lower() for name, value in filters]


def window_segments(spans: Sequence[Span], tables: dict[str, Table], filters: Sequence[tuple[str, str]] = (),
                    dims: Sequence[str] = (), first: int = 0) -> Select:
    """Per window and combination of the customers' ``dims`` values: active users (rows that are
    a user's first day in the window), customers (a customer's first) and core actions — sums
    that add up over any set of combinations, as a user and a customer are in one."""
    pairs = window_days(spans, tables["calendar"], first)
    d = tables["user_days"]
    lo, hi = min(lo for lo, _ in spans), max(hi for _, hi in spans)
    users = func.sum(case((_first(d.c.prev_day, pairs.c.lo), 1), else_=0))
    customers = func.sum(case((_first(d.c.customer_prev, pairs.c.lo), 1), else_=0))
    rows = (select(pairs.c.w, users.label("users"), customers.label("customers"), func.sum(d.c.core).label("core"),
                   func.sum(d.c.sessions).label("sessions"), func.sum(d.c.session_seconds).label("seconds"))
            .select_from(d.join(pairs, pairs.c.day == d.c.day)).where(d.c.day >= lo, d.c.day < hi))
    if not dims and not filters:
        return rows.group_by(pairs.c.w)
    # per customer first (grouping integers), then joined to the customers' attributes
    per = rows.add_columns(d.c.customer_key).group_by(pairs.c.w, d.c.customer_key).subquery("customer_days")
    keyed = _attributes(tables, dims, filters)
    cols = [keyed.c[name] for name in dims]
    return (select(per.c.w, *(c.label(f"s_{k}") for k, c in enumerate(cols)), func.sum(per.c.users).label("users"),
                   func.sum(per.c.customers).label("customers"), func.sum(per.c.core).label("core"),
                   func.sum(per.c.sessions).label("sessions"), func.sum(per.c.seconds).label("seconds"))
            .select_from(per.join(keyed, keyed.c.customer_key == per.c.customer_key, isouter=not filters))
            .where(*_matches(keyed.c, filters)).group_by(per.c.w, *cols))


def window_totals(kind: str, spans: Sequence[Span], tables: dict[str, Table], first: int = 0) -> Select:
    """Per window, with no cut: users, customers and core actions from the per-day table (a few
    hundred rows a day, where the user-days are thousands)."""
    pairs = window_days(spans, tables["calendar"], first)
    f = tables["daily"]
    new = _first(f.c.prev_day, pairs.c.lo)
    users = func.coalesce(func.sum(case((new, f.c.users), else_=0)), 0)
    customers = func.coalesce(func.sum(case((new, f.c.customers), else_=0)), 0)
    stmt = (select(pairs.c.w, *_users(kind, users, customers, func.sum(f.c.core), func.sum(f.c.sessions),
                                      func.sum(f.c.session_seconds)))
            .select_from(f.join(pairs, pairs.c.day == f.c.day))
            .group_by(pairs.c.w))
    counted = _counted(kind, f.c)
    return stmt if counted is None else stmt.having(func.sum(counted) > 0)


def customer_rows(spans: Sequence[Span], tables: dict[str, Table], filters: Sequence[tuple[str, str]],
                  dims: Sequence[str], first: int = 0) -> Select:
    """Inactivity: per window, every customer alive at its end (the span's end), whether idle
    (a customer for the whole span, the inactivity days before the end, and none of its users
    had a day in it: the source counts the events, only "none" matters), and its attributes."""
    pairs = window_days(spans, tables["calendar"], first)
    d, keys, a = tables["user_days"], tables["customer_keys"], tables["attrs"]
    lo, hi = min(lo for lo, _ in spans), max(hi for _, hi in spans)
    # a customer's first day in each window: one row per customer with use in it, no grouping
    recent = (select(pairs.c.w, d.c.customer_key).select_from(d.join(pairs, pairs.c.day == d.c.day))
              .where(d.c.day >= lo, d.c.day < hi, _first(d.c.customer_prev, pairs.c.lo)).subquery("recent_customers"))
    parts = [select(literal(i, Integer).label("w"), literal(datetime.combine(end, time()), DateTime).label("we"),
                    literal(datetime.combine(start, time()), DateTime).label("cut"))
             for i, (start, end) in enumerate(spans, first)]
    w = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("ends")
    alive = and_(a.c.signed_up_at < w.c.we, or_(a.c.churned_at.is_(None), a.c.churned_at >= w.c.we),
                 *_matches(a.c, filters))
    idle = case((and_(a.c.signed_up_at < w.c.cut, recent.c.customer_key.is_(None)), 1), else_=0)
    return (select(w.c.w, idle.label("idle"), *(a.c[name] for name in dims))
            .select_from(a.join(w, alive).outerjoin(keys, keys.c.customer_id == a.c.customer_id)
                         .outerjoin(recent, and_(recent.c.w == w.c.w, recent.c.customer_key == keys.c.customer_key))))


def _segments(kind: str, spans: Sequence[Span], tables: dict[str, Table], filters: Sequence[tuple[str, str]],
              dims: Sequence[str], first: int = 0) -> Select:
    """Per window and combination of ``dims`` values, the sums every aggregate is made of."""
    if kind != "inactive":
        return window_segments(spans, tables, filters, dims, first)
    rows = customer_rows(spans, tables, filters, dims, first).subquery("window_customers")
    cols = [rows.c[name] for name in dims]
    return (select(rows.c.w, *(c.label(f"s_{k}") for k, c in enumerate(cols)), func.count().label("active"),
                   func.sum(rows.c.idle).label("inactive"))
            .group_by(rows.c.w, *cols))


def _grouped(kind: str, seg, dims: Sequence[str] = (), grouping_sets: bool = True, limit: int = 0,
             pairs: bool = False) -> Select:
    """The windows' aggregates over ``seg`` (:func:`_segments` by ``dims``, as a subquery),
    per segment of each of ``dims`` (grouping sets, with ``pairs`` also per segment of every
    two of them; a single one without: ranked by size, at most ``limit`` rows)."""
    counted = _counted(kind, seg.c)
    if kind == "inactive":
        size = func.sum(seg.c.active)
        aggregates = [size.label("active"), func.sum(seg.c.inactive).label("inactive"), size.label("_rows")]
    else:
        size = func.sum(seg.c.users if counted is None else counted)
        aggregates = _users(kind, func.sum(seg.c.users), func.sum(seg.c.customers), func.sum(seg.c.core),
                            func.sum(seg.c.sessions), func.sum(seg.c.seconds))
    base = select(seg.c.w, *aggregates)
    if counted is not None:  # the source has no row for a window or segment without one
        base = base.having(size > 0)
    if not dims:
        return base.group_by(seg.c.w)
    cols = [seg.c[f"s_{k}"] for k in range(len(dims))]
    if len(dims) == 1 and not grouping_sets:
        return base.add_columns(cols[0].label("grp")).group_by(seg.c.w, cols[0]).order_by(size.desc()).limit(limit)
    base = base.add_columns(*(c.label(f"g_{k}") for k, c in enumerate(cols)),
                            *(func.grouping(c).label(f"gg_{k}") for k, c in enumerate(cols)))
    sets = [tuple_(seg.c.w, c) for c in cols]
    if pairs:
        sets += [tuple_(seg.c.w, a, b) for i, a in enumerate(cols) for b in cols[i + 1:]]
    return base.group_by(func.grouping_sets(*sets))


def _counted(kind: str, columns):
    """What the source's rows are, where they are not users: core actions, sessions."""
    name = {"core": "core", "session": "sessions"}.get(kind)
    return None if name is None else columns[name]


def _users(kind: str, users, customers, core, sessions=None, seconds=None) -> list:
    """The measure's aggregates by the names its catalogue entry gives them."""
    if kind == "active":
        return [users.label("users"), customers.label("customers"), users.label("_rows")]
    if kind == "core":
        return [func.coalesce(core, 0).label("n"), func.coalesce(core, 0).label("_rows")]
    if kind == "session":  # the median needs the events: the source gives it (metrics.rollups.serve)
        return [func.coalesce(sessions, 0).label("sessions"), seconds.label("total"),
                cast(null(), Float).label("median"), func.coalesce(sessions, 0).label("_rows")]
    return [func.coalesce(core, 0).label("core"), users.label("users"), users.label("_rows")]


def statement(kind: str, spans: Sequence[Span], tables: dict[str, Table], dims: Sequence[str] = (),
              filters: Sequence[tuple[str, str]] = (), grouping_sets: bool = True) -> Select:
    """Per window (and per segment of each of ``dims``): the measure's aggregates."""
    if kind != "inactive" and not dims and not filters:
        return window_totals(kind, spans, tables)
    seg = _segments(kind, spans, tables, filters, dims).subquery("segments")
    return _grouped(kind, seg, dims, grouping_sets, MAX_SEGMENTS * len(spans))


def with_cuts(kind: str, spans: Sequence[Span], tables: dict[str, Table], dims: Sequence[str],
              filters: Sequence[tuple[str, str]] = ()):
    """Per window the aggregates (``part`` 0) and, for the first two windows (the period and
    the one compared), each of ``dims``' segments and each pair of them (``part`` 1): their
    segments are made once (a materialized CTE), so the breakdown and "what moved it" (its
    cuts and its pair) after the answer cost no second pass over the rows."""
    head = _segments(kind, spans[:2], tables, filters, dims).cte("head_segments").prefix_with("MATERIALIZED")
    blank = [cast(null(), String).label(f"g_{k}") for k in range(len(dims))]
    ones = [literal(1, Integer).label(f"gg_{k}") for k in range(len(dims))]
    parts = [_grouped(kind, head).add_columns(*blank, *ones, literal(0, Integer).label("part")),
             _grouped(kind, head, dims, pairs=True).add_columns(literal(1, Integer).label("part"))]
    if len(spans) > 2:  # the trend's windows: counted alone
        if kind != "inactive" and not filters:
            trend = window_totals(kind, spans[2:], tables, first=2)
        else:
            trend = _grouped(kind, _segments(kind, spans[2:], tables, filters, (), first=2).subquery("tail_segments"))
        parts.append(trend.add_columns(*blank, *ones, literal(0, Integer).label("part")))
    return union_all(*parts)


def _cell(metric: Metric, row: dict[str, Any], utc: Sequence[tuple[datetime, datetime]]) -> Cell:
    measure = metric.measure
    assert isinstance(measure, Measure), f"{metric.id}: a rollup serves measures only"
    ws, we = utc[int(row["w"])]
    values: dict[str, Any] = dict.fromkeys(measure.aggregates)  # one the rollup cannot give (a median): None
    values.update({k: _number(v) for k, v in row.items() if k in measure.aggregates or k == "_rows"})
    values["window_seconds"] = float((we - ws).total_seconds())
    return _finalize(metric, measure, values)


def _number(value):
    """A count as an int (PostgreSQL sums them as Decimal), seconds as the float they are."""
    return value if value is None or isinstance(value, float) else int(value)


@dataclass(frozen=True)
class Plan:
    """How the rollup answers one question: how it reads the rows (``active``: users active in
    each span; ``per_user``: users and core actions; ``core``: core actions; ``inactive``:
    customers without a day in each span), each window's days and UTC bounds, the store's
    tables, the source, and what the rollup and its customers' copy were built from (``version``)."""

    kind: str
    spans: list[Span]
    utc: list[tuple[datetime, datetime]]
    store: Engine
    tables: dict[str, Table]
    source: Engine  # what the rollup was built from: a median reads a bucket of its rows
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
ADDITIVE = ("users", "customers", "core", "n", "sessions", "total", "active", "inactive", "_rows")


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
          explained_by: Callable[[Sequence[tuple[str, str]]], Sequence[str]] = lambda f: (),
          known: dict[str, Any] | None = None) -> dict[Key, Cell]:
    """The KPI's cells, as :func:`metrics.engine.compute` gives them (by ``dimension`` too).
    ``explained_by(filters)``: the dimensions "what moved it" cuts by under those filters;
    without a ``dimension`` or a trend the two windows are cut by each of them (and every pair)
    in the same statement, kept for the breakdown, :func:`cells_by_each` and the pair asked next.
    ``known``: aggregates of the first window computed apart (its median)."""
    dims = tuple(explained_by(filters))

    def whole(r: dict[str, Any]) -> Cell:  # a window's cell, uncut
        return _cell(metric, {**r, **known} if known and int(r["w"]) == 0 else r, plan.utc)

    # not with a trend: its answers are seldom explained (a 2-year trend's two periods are 2
    # years of rows each, which the cuts would read for nothing); the explanation cuts them then
    if dimension is None and dims and len(plan.spans) == 2 and plan.store.dialect.name != "sqlite":
        rows = plan.run(with_cuts(plan.kind, plan.spans, plan.tables, dims, filters))
        head = [r for r in rows if r["part"]]
        _remember(plan.cut_key(metric, filters, dims), _Cuts(dims, _split(metric, head, dims, plan.utc, 2), head))
        return {(int(r["w"]), None): whole(r) for r in rows if not r["part"]}
    if dimension is None:
        rows = plan.run(statement(plan.kind, plan.spans, plan.tables, (), filters))
        return {(int(r["w"]), None): whole(r) for r in rows}
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


def median(plan: Plan, value, at, bucket: Callable) -> float | None:
    """The exact median of ``value`` over the plan's first window, from the source's rows in
    as few buckets as hold it. The rollup counts rows per day and ``bucket(value)`` (an order-
    keeping expression), so the ranks of the middle rows, (n-1)//2 and n//2, fall in known
    buckets with a known count below them; one statement then reads those buckets' rows of the
    window, in order, from that offset: two rows (one where n is odd), averaged as every
    database's median averages them. None when the source no longer holds those rows, or the
    window has none."""
    lo, hi = plan.spans[0]
    t = plan.tables["lengths"]
    counts = plan.run(select(t.c.bucket, func.sum(t.c.sessions).label("n")).where(t.c.day >= lo, t.c.day < hi)
                      .group_by(t.c.bucket).order_by(t.c.bucket))
    total = sum(int(r["n"]) for r in counts)
    if not total:
        return None
    first, last = (total - 1) // 2, total // 2
    below = start = 0
    low = high = None
    for r in counts:
        n = int(r["n"])
        if low is None and below + n > first:
            low, start = r["bucket"], below
        if below + n > last:
            high = r["bucket"]
            break
        below += n
    ws, we = plan.utc[0]
    stmt = (select(value).where(at >= ws, at < we, value.is_not(None), bucket(value) >= low, bucket(value) <= high)
            .order_by(value).limit(last - first + 1).offset(first - start))
    with database.query(plan.source) as conn:
        found = [float(v) for v in conn.execute(stmt).scalars()]
    return (found[0] + found[-1]) / 2 if len(found) == last - first + 1 else None


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
                into[k] = (into.get(k) or 0) + (_number(r[k]) or 0)
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


__all__ = ["Plan", "cells", "cells_by_each", "forget", "median", "statement", "window_days", "window_segments", "window_totals", "with_cuts"]
