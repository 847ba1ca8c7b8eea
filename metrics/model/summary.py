"""A metric's rows summarized per window and entity first (``summarize:``), or as every
(entity, item) pair beside the pairs held (``pairs:``); the metric's ``aggregates`` then run
over those rows.

* ``summarize: {name:, by: [customer_id, user_id], columns: {core: {agg: count, filter: …}}}``:
  per window, the source's rows in it (by ``time``, ``in_window`` or, cumulative, ``start``;
  ``filter`` applied) grouped by the ``by`` keys, with the named aggregate ``columns`` (a
  column's filter may name ``period_start``/``period_end`` unless rows are picked by
  ``time``). Without columns the rows are the distinct keys. So "users active in the 7 days
  before the end" is ``count`` over users, and each customer's MRR at the window's start and
  end is two filtered sums, compared by the metric's own filtered sums.
* ``pairs: {name:, entity:, item:, flag:, population:, names:}``: per window, every (entity, item)
  pair with ``flag`` 0 — entities from ``population`` (a source and its ``in_window``), else
  those holding any item, items those held by anyone — and each pair held with ``flag`` 1 (by
  a population entity). Summed per item, the first count is the population, the second the
  holders: feature adoption, add-on penetration.

Both are written as the hand-built entries were (a grouped select joined to the windows, or
over the table's rows bucketed into windows), so a KPI moved to data sends the same
statement; the rows keep their keys (``customer_id``), so customer dimensions cut them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, and_, cast, distinct, func, literal, null, select, union_all
from sqlalchemy.types import NullType

from metrics.model import sqlexpr

SUMMARY_KEYS = ("name", "by", "columns")
COLUMN_KEYS = ("agg", "expr", "filter")
PAIR_KEYS = ("name", "entity", "item", "flag", "population", "names")
PART_NAMES = ("held", "entities", "items")  # the pairs' inner subqueries
WEIGHT = "_n"  # counted pairs: how many items an entity's row stands for (metrics.spec.Counted)
POPULATION_KEYS = ("source", "in_window", "filter")


@dataclass(frozen=True)
class Rows:
    """Which rows of ``source`` belong to each window: ``time`` (a plain range: the engine's
    buckets, no range join), ``in_window`` (a condition on the window's bounds) or ``start``
    (cumulative: rows that exist by the end)."""

    source: str
    how: str  # time | in_window | start
    at: str  # the time or start column, or the in_window condition
    dates: bool = False
    filter: str | None = None


def _select(rows: Rows, table: Callable[[str], Any], w, bucket, pick: Callable[[Any], list]):
    """``(select, window column, rows' table)``: the window index and ``pick(t)`` over the
    rows of each window; the caller groups it."""
    t = table(rows.source)
    if rows.how == "time":
        t = bucket(t, rows.at, rows.dates)
        stmt = select(t.c._w.label("w"), *pick(t)).where(t.c._w.is_not(None))
        at = t.c._w
    else:
        inside = sqlexpr.build(rows.at, t, window=w) if rows.how == "in_window" else \
            t.c[rows.at] < (w.c.de if rows.dates else w.c.we)
        stmt = select(w.c.w, *pick(t)).select_from(t.join(w, inside))
        at = w.c.w
    if rows.filter:
        stmt = stmt.where(sqlexpr.build(rows.filter, t))
    return stmt, at, t


def _keys(spec: Any, columns: list[str], invalid, node) -> dict[str, str]:
    """``by``: a list of columns, or a mapping of key name -> a column or SQL."""
    if isinstance(spec, list) and spec and all(isinstance(k, str) for k in spec):
        keys = {k: k for k in spec}
    elif isinstance(spec, Mapping) and spec and all(isinstance(v, str) for v in spec.values()):
        keys = {str(k): v for k, v in spec.items()}
    else:
        raise invalid("summarize: `by` lists the columns to group by (or maps names to columns or SQL)", node, "by")
    for name, expr in keys.items():
        if not name.isidentifier() or name == "w":
            raise invalid(f"summarize: `{name}` is not a key name (a word, not `w`)", node, "by")
        problem = sqlexpr.check(expr, columns)
        bad = sqlexpr.unknown(expr, columns) if not problem else None
        if problem or bad:
            raise invalid(f"summarize: by `{name}`: " + (problem[0] if problem else
                          f"unknown column `{bad}` of the source{_close(bad, columns)}"), node, "by")
    return keys


def _close(word: Any, names) -> str:
    from metrics.model.load import close

    return close(word, names)


def _known(word: Any, keys: tuple[str, ...]) -> str:
    """`` (did you mean `by`?)`` for a misspelt key, else the keys there are."""
    return _close(word, keys) or f" ({', '.join(keys)})"


def _key(t, name: str, expr: str):
    found = t.c[expr] if expr in t.c else sqlexpr.build(expr, t)
    return found if expr == name else found.label(name)


def _named(spec: Any, kind: str, whose: str, shape: str, known: Any, default_name: str, invalid) -> str:
    """The entry's ``kind`` mapping checked for unknown keys, and its name in the SQL."""
    if not isinstance(spec, Mapping):
        raise invalid(f"{kind}: {shape}", spec, None)
    bad = [k for k in spec if k not in known]
    if bad:
        raise invalid(f"{kind}: unknown key `{bad[0]}`{_known(bad[0], known)}", spec, bad[0])
    name = spec.get("name", default_name)
    if not isinstance(name, str) or not name.isidentifier():
        raise invalid(f"{kind}: `name` ({whose} name in the SQL) must be a word", spec, "name")
    return name


def summarize(spec: Any, default_name: str, rows: Rows, table: Callable[[str], Any], column: Callable[[Mapping, Any], Any],
              windows, invalid) -> tuple[str, Callable[[Any, Any], Any], Any]:
    """``(name, build(w, bucket), check)``: the summary's name, a function building it per
    window and the same over a stand-in of the windows (``windows``), whose columns the
    metric's aggregates are checked against. ``column(spec, node)`` compiles one summary
    column (an aggregate ``(t, w) -> SQL``); ``invalid(message, node, key)`` makes the load
    error naming file and line."""
    name = _named(spec, "summarize", "the summary's", "{name:, by: [columns], columns: {name: {agg:, expr:, filter:}}}",
                  SUMMARY_KEYS, default_name, invalid)
    source_columns = list(table(rows.source).c.keys())
    keys = _keys(spec.get("by"), source_columns, invalid, spec)
    given = spec.get("columns") or {}
    if not isinstance(given, Mapping):
        raise invalid("summarize: `columns` maps names to {agg:, expr:, filter:}", spec, "columns")
    aggs: dict[str, Any] = {}
    for col, x in given.items():
        if not isinstance(x, Mapping):
            raise invalid(f"summarize: column `{col}`: expected {{agg:, expr:, filter:}}", given, col)
        unknown = [k for k in x if k not in COLUMN_KEYS]
        if unknown:
            raise invalid(f"summarize: column `{col}`: unknown key `{unknown[0]}`{_known(unknown[0], COLUMN_KEYS)}",
                          x, unknown[0])
        if col in keys or col == "w" or not str(col).isidentifier():
            raise invalid(f"summarize: column `{col}`: a name of its own (not a key, not `w`)", given, col)
        for part in ("expr", "filter"):
            snippet = x.get(part)
            missing = sqlexpr.unknown(snippet, source_columns) if isinstance(snippet, str) else None
            if missing:
                raise invalid(f"summarize: column `{col}`: unknown column `{missing}` of the source"
                              f"{_close(missing, source_columns)}", x, part)
            if rows.how == "time" and isinstance(snippet, str) and set(sqlexpr.names(snippet)) & set(sqlexpr.WINDOW):
                raise invalid(f"summarize: column `{col}`: period_start/period_end need `in_window` (rows picked "
                              "by `time` are not joined to the windows)", x, part)
        aggs[str(col)] = column(x, x)

    def pick(t) -> list:
        return [_key(t, k, e) for k, e in keys.items()]

    def build(w, bucket):
        stmt, at, t = _select(rows, table, w, bucket, lambda t: [*pick(t), *(agg(t, w).label(c) for c, agg in aggs.items())])
        if not aggs:  # the distinct keys
            return stmt.distinct().subquery(name)
        plain = [t.c[e] if e in t.c else sqlexpr.build(e, t) for e in keys.values()]
        return stmt.group_by(at, *plain).subquery(name)

    return name, build, build(windows, _bucket_like(windows))


def _bucket_like(windows):
    """A stand-in for the engine's ``bucket`` at load time: the table with a ``_w`` column."""

    def bucket(t, column: str, dates: bool = False):
        return select(*t.c, windows.c.w.label("_w")).subquery(t.name)

    return bucket


def _null_like(column):
    """NULL of ``column``'s type where it has one (a mapped expression may not)."""
    return null() if isinstance(column.type, NullType) else cast(null(), column.type)


def pairs(spec: Any, default_name: str, rows: Rows, table: Callable[[str], Any], has: Callable[[str], bool],
          windows, invalid) -> tuple[str, Callable[..., Any], Any, tuple[str, ...]]:
    """``(name, build(w, bucket), check, sources read)``; see the module docstring."""
    name = _named(spec, "pairs", "the pairs'", "{name:, entity:, item:, flag:, population:}", PAIR_KEYS, default_name, invalid)
    names = {part: f"{name}_{part}" for part in PART_NAMES}
    given = spec.get("names") or {}
    if not isinstance(given, Mapping) or any(k not in PART_NAMES or not str(v).isidentifier() for k, v in given.items()):
        raise invalid(f"pairs: `names` gives the inner subqueries' names in the SQL ({', '.join(PART_NAMES)}: words)",
                      spec, "names")
    names.update({str(k): str(v) for k, v in given.items()})
    cols = list(table(rows.source).c.keys())
    entity, item, flag = spec.get("entity"), spec.get("item"), spec.get("flag", "held")
    for key, value in (("entity", entity), ("item", item)):
        if value not in cols:
            raise invalid(f"pairs: {key}: unknown column `{value}` of `{rows.source}`{_close(value, cols)}", spec, key)
    if not isinstance(flag, str) or not flag.isidentifier() or flag in (entity, item, "w"):
        raise invalid("pairs: `flag` names the 1/0 column (a word of its own)", spec, "flag")
    population = spec.get("population")
    reads: tuple[str, ...] = (rows.source,)
    if population is not None:
        if not isinstance(population, Mapping) or not has(str(population.get("source"))):
            raise invalid("pairs: population: {source:, in_window:, filter:} of a known source", spec, "population")
        bad = [k for k in population if k not in POPULATION_KEYS]
        if bad:
            raise invalid(f"pairs: population: unknown key `{bad[0]}`{_known(bad[0], POPULATION_KEYS)}", population,
                          bad[0])
        pop_cols = list(table(str(population["source"])).c.keys())
        if entity not in pop_cols:
            raise invalid(f"pairs: population: `{population['source']}` has no column `{entity}`", population, "source")
        for key in ("in_window", "filter"):
            snippet = population.get(key)
            if key == "in_window" and (not isinstance(snippet, str) or not set(sqlexpr.names(snippet)) & set(sqlexpr.WINDOW)):
                raise invalid("pairs: population: in_window, a condition naming period_start or period_end",
                              population, "in_window")
            if snippet is not None and (not isinstance(snippet, str) or sqlexpr.check(snippet, pop_cols)
                                        or sqlexpr.unknown(snippet, pop_cols)):
                raise invalid(f"pairs: population: {key}: unknown column `{sqlexpr.unknown(str(snippet), pop_cols)}`"
                              f" or not an expression", population, key)
        reads = (rows.source, str(population["source"]))
    keyed = population is not None and bool(getattr(table(str(population["source"])).c[entity], "primary_key", False))

    def build(w, bucket, counted: bool = False):
        """Every pair listed; with ``counted`` (:class:`metrics.spec.Counted`) one row per
        entity weighted by the items seen, beside the pairs held (weight 1)."""
        stmt, at, t = _select(rows, table, w, bucket, lambda t: [t.c[entity], t.c[item]])
        held = stmt.group_by(at, t.c[entity], t.c[item]).cte(names["held"])
        if population is None:
            pop = select(held.c.w, held.c[entity]).group_by(held.c.w, held.c[entity]).subquery(names["entities"])
        else:
            whole = Rows(str(population["source"]), "in_window", str(population["in_window"]),
                         filter=population.get("filter"))
            found, at, p = _select(whole, table, w, bucket, lambda p: [p.c[entity]])
            pop = (found if keyed else found.group_by(at, p.c[entity])).subquery(names["entities"])
        if counted:
            items = select(held.c.w, func.count(distinct(held.c[item])).label(WEIGHT)).group_by(held.c.w).subquery(
                names["items"])
            every = select(pop.c.w, pop.c[entity], _null_like(held.c[item]).label(item), literal(0, Integer).label(flag),
                           items.c[WEIGHT]).select_from(pop.join(items, items.c.w == pop.c.w))
        else:
            items = select(held.c.w, held.c[item]).group_by(held.c.w, held.c[item]).subquery(names["items"])
            every = select(pop.c.w, pop.c[entity], items.c[item], literal(0, Integer).label(flag)).select_from(
                pop.join(items, items.c.w == pop.c.w))
        kept = select(held.c.w, held.c[entity], held.c[item], literal(1, Integer).label(flag),
                      *([literal(1, Integer).label(WEIGHT)] if counted else []))
        if population is not None:  # pairs of entities outside the population are left out
            kept = kept.select_from(held.join(pop, and_(pop.c.w == held.c.w, pop.c[entity] == held.c[entity])))
        # held first: a database that types a union by its first part sees the item's type
        return (union_all(kept, every) if counted else union_all(every, kept)).subquery(name)

    return name, build, build(windows, _bucket_like(windows)), reads
