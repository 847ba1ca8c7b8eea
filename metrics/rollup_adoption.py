"""Feature adoption from kpibot's usage rollup (:mod:`metrics.rollups`): pairs, not events.

``feature_adoption`` is every (active customer, action seen) pair of a period and those used
(the catalogue's ``pairs`` summary): from the source, each statement groups the period's
events per customer and action, then joins every active customer to every action seen. The
rollup keeps one row per (UTC day, customer, action) with that pair's previous day of use
(``kpibot_customer_actions``) and the actions of each day (``kpibot_day_actions``), so:

* a period's used pairs are a filtered count (a pair is used in a window on the one day in it
  whose previous day is before the window), per customer, then per segment of customers;
* its active customers are the customers with a row in it, and its actions those of its days;
* the pairs are active customers × actions seen, so they are counted, not joined: a segment
  of customers has its customers × the period's actions (the actions seen by all customers,
  as the source joins the customers after the pairs are made), an action has all active
  customers (of the segment filtered on).

The cells equal :func:`metrics.engine.compute`'s from the source, row counts included (every
pair plus the used ones), as ``tests/test_rollups.py`` checks for every period and cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, case, func, select, tuple_

from metrics.engine import MAX_SEGMENTS, Cell, Key, _group
from metrics.rollup_query import Plan, _attributes, _cell, _first, _matches, window_days
from metrics.spec import Metric

#: The KPI's own column the rollup holds (its pairs' item), besides the customers' attributes.
ITEM = "action"
#: How a missing action is stored (a key column cannot be compared as NULL); read back as None.
NULL_ACTION = "\x01"


def _action(value: Any) -> Any:
    return None if value == NULL_ACTION else value


def _own(filters: Sequence[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[str]]:
    """The customers' filters, and the values the action is filtered on (lower-cased)."""
    return [(n, v) for n, v in filters if n != ITEM], [v.lower() for n, v in filters if n == ITEM]


def _items(plan: Plan) -> dict[int, list[Any]]:
    """Per window, the actions seen in it (by any customer)."""
    pairs = window_days(plan.spans, plan.tables["calendar"])
    d = plan.tables["day_actions"]
    rows = plan.run(select(pairs.c.w, d.c.action).select_from(d.join(pairs, pairs.c.day == d.c.day))
                    .group_by(pairs.c.w, d.c.action))
    out: dict[int, list[Any]] = {}
    for r in rows:
        out.setdefault(int(r["w"]), []).append(_action(r["action"]))
    return out


def _within(plan: Plan, table) -> list:
    """The rows of the windows' days only (a filter on the table itself, which prunes its scan)."""
    return [table.c.day >= min(lo for lo, _ in plan.spans), table.c.day < max(hi for _, hi in plan.spans)]


def _chosen(column, wanted: list[str]) -> list:
    """The condition that ``column`` is an action filtered on (none without a filter)."""
    return [func.lower(column).in_(wanted)] if wanted else []


def _customers(plan: Plan, wanted: list[str], theirs: list[tuple[str, str]], dims: Sequence[str]) -> list[dict[str, Any]]:
    """Per window, and per window and segment of each of the customers' ``dims``: active
    customers and used pairs. The pairs are added up per customer first (integer keys), then
    joined to the customers' attributes once for every dimension (grouping sets; a statement
    a dimension where the store has none: SQLite). Each row says its dimension (``dim``)."""
    if not dims and not theirs:
        return _totals(plan, wanted)
    pairs = window_days(plan.spans, plan.tables["calendar"])
    a = plan.tables["actions"]
    used = and_(_first(a.c.prev_day, pairs.c.lo), *_chosen(a.c.action, wanted))
    per = (select(pairs.c.w, a.c.customer_key, func.sum(case((used, 1), else_=0)).label("used"))
           .select_from(a.join(pairs, pairs.c.day == a.c.day)).where(*_within(plan, a))
           .group_by(pairs.c.w, a.c.customer_key).subquery("customer_pairs"))
    measures = [func.count().label("customers"), func.sum(per.c.used).label("used")]
    keyed = _attributes(plan.tables, dims, theirs)
    source = per.join(keyed, keyed.c.customer_key == per.c.customer_key, isouter=not theirs)
    where = _matches(keyed.c, theirs)
    if plan.store.dialect.name == "sqlite" or not dims:
        out = [{**r, "dim": None} for r in plan.run(select(per.c.w, *measures).select_from(source).where(*where)
                                                    .group_by(per.c.w))]
        for d in dims:
            stmt = select(per.c.w, keyed.c[d].label("grp"), *measures).select_from(source).where(*where)
            out += [{**r, "dim": d} for r in plan.run(stmt.group_by(per.c.w, keyed.c[d]))]
        return out
    cols = [keyed.c[d] for d in dims]
    stmt = (select(per.c.w, *measures, *(c.label(f"g_{k}") for k, c in enumerate(cols)),
                   *(func.grouping(c).label(f"gg_{k}") for k, c in enumerate(cols)))
            .select_from(source).where(*where)
            .group_by(func.grouping_sets(tuple_(per.c.w), *(tuple_(per.c.w, c) for c in cols))))
    out = []
    for r in plan.run(stmt):
        k = next((k for k in range(len(dims)) if not r[f"gg_{k}"]), None)
        out.append({"w": r["w"], "customers": r["customers"], "used": r["used"], "dim": None if k is None else dims[k],
                    "grp": None if k is None else r[f"g_{k}"]})
    return out


def _totals(plan: Plan, wanted: list[str]) -> list[dict[str, Any]]:
    """Per window, uncut: active customers (customers' first days, from the per-day table of
    the user-days) and used pairs (from the per-day table of pairs): a few rows a day."""
    pairs = window_days(plan.spans, plan.tables["calendar"])
    f, t = plan.tables["daily"], plan.tables["daily_pairs"]
    customers = plan.run(select(pairs.c.w, func.sum(case((_first(f.c.prev_day, pairs.c.lo), f.c.customers), else_=0))
                                .label("customers")).select_from(f.join(pairs, pairs.c.day == f.c.day)).group_by(pairs.c.w))
    used = {int(r["w"]): int(r["used"] or 0) for r in plan.run(
        select(pairs.c.w, func.sum(case((_first(t.c.prev_day, pairs.c.lo), t.c.pairs), else_=0)).label("used"))
        .select_from(t.join(pairs, pairs.c.day == t.c.day))
        .where(*_chosen(t.c.action, wanted)).group_by(pairs.c.w))}
    return [{"w": r["w"], "customers": r["customers"], "used": used.get(int(r["w"]), 0), "dim": None}
            for r in customers if r["customers"]]


def _by_action(plan: Plan, wanted: list[str], theirs: list[tuple[str, str]]) -> dict[tuple[int, Any], int]:
    """Per window and action: the pairs used (by the customers filtered on; by all from the
    per-day table of pairs)."""
    pairs = window_days(plan.spans, plan.tables["calendar"])
    if theirs:  # the pairs' rows of the customers filtered on, one each
        t = plan.tables["actions"]
        keyed = _attributes(plan.tables, [], theirs)
        count: Any = 1
        source = t.join(pairs, pairs.c.day == t.c.day).join(keyed, keyed.c.customer_key == t.c.customer_key)
        where = [*_within(plan, t), *_matches(keyed.c, theirs)]
    else:  # the per-day table of pairs
        t = plan.tables["daily_pairs"]
        source, where, count = t.join(pairs, pairs.c.day == t.c.day), [], t.c.pairs
    used = func.sum(case((_first(t.c.prev_day, pairs.c.lo), count), else_=0)).label("used")
    rows = plan.run(select(pairs.c.w, t.c.action, used).select_from(source).where(*where, *_chosen(t.c.action, wanted))
                    .group_by(pairs.c.w, t.c.action))
    return {(int(r["w"]), _action(r["action"])): int(r["used"] or 0) for r in rows}


def cells(metric: Metric, plan: Plan, dimension: str | None = None,
          filters: Sequence[tuple[str, str]] = ()) -> dict[Key, Cell]:
    """The KPI's cells (by ``dimension``: the action or a customer attribute), as
    :func:`metrics.engine.compute` gives them from the source."""
    return cells_by_each(metric, plan, [dimension], filters)[dimension]


def cells_by_each(metric: Metric, plan: Plan, dimensions: Sequence[str | None],
                  filters: Sequence[tuple[str, str]] = ()) -> dict[str | None, dict[Key, Cell]]:
    """Per dimension (None: uncut), the cells :func:`cells` gives for it, in two to three
    statements for them all (the actions seen; the customers, cut by every attribute; the
    pairs used per action), "what moved it" included."""
    theirs, wanted = _own(filters)
    items = _items(plan)
    seen = {w: [i for i in found if not wanted or (i is not None and i.lower() in wanted)] for w, found in items.items()}
    attrs = [d for d in dimensions if d is not None and d != ITEM]
    found: dict[str | None, list[dict[str, Any]]] = {d: [] for d in dimensions}
    customers = _customers(plan, wanted, theirs, attrs)
    for r in customers:
        if r["dim"] in found:
            w = int(r["w"])
            n, u = int(r["customers"]) * len(seen.get(w, ())), int(r["used"] or 0)
            found[r["dim"]].append({"w": w, "grp": r.get("grp"), "pairs": n, "used": u, "_rows": n + u})
    if ITEM in dimensions:
        active = {int(r["w"]): int(r["customers"]) for r in customers if r["dim"] is None}
        used = _by_action(plan, wanted, theirs)
        for w, actions in seen.items():
            for action in actions:
                n, u = active.get(w, 0), used.get((w, action), 0)
                found[ITEM].append({"w": w, "grp": action, "pairs": n, "used": u, "_rows": n + u})
    out: dict[str | None, dict[Key, Cell]] = {}
    for d, rows in found.items():
        rows = [r for r in rows if r["_rows"]]  # the source has no row for a window or segment without a pair
        if d is None:
            out[d] = {(r["w"], None): _cell(metric, r, plan.utc) for r in rows}
            continue
        rows.sort(key=lambda r: -r["_rows"])
        out[d] = {(r["w"], _group(r["grp"])): _cell(metric, r, plan.utc) for r in rows[: MAX_SEGMENTS * len(plan.spans)]}
    return out


__all__ = ["ITEM", "NULL_ACTION", "cells", "cells_by_each"]
