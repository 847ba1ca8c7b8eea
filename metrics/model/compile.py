"""The team's metric entries as catalogue Metric objects (Measure / Derived), MetricFlow's five
kinds: simple, ratio, derived, cumulative (a level at the period's end) and conversion.

Compiled into the same shapes as the built-in KPIs, a team KPI gets what they get: periods,
comparisons, breakdowns, filters, trends, charts, explanations, digests, alerts and the access
policy (from the columns it reads).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Date, Float, and_, case, distinct, exists, func, or_, select

from metrics.kpis.common import window_seconds
from metrics.model import sqlexpr, summary, union
from metrics.model.relations import Relations, Source
from metrics.spec import (
    Aggs,
    Band,
    Counted,
    Custom,
    Derived,
    Measure,
    Metric,
    Reference,
    date_in_window,
    in_window,
    ratio,
    single,
)
from storage.schema import TABLES
from storage.sqlfuncs import add_days, median


class Invalid(ValueError):
    """A metric entry that cannot be compiled; ``node``/``key`` locate it in the file."""

    def __init__(self, message: str, node: Any = None, key: str | None = None):
        super().__init__(message)
        self.node, self.key = node, key


@dataclass
class Context:
    relations: Relations
    sources: Mapping[str, Source]
    dimensions: Mapping[str, Any]
    metrics: dict[str, Metric]  # built-ins and the team metrics compiled so far
    unions: dict[str, Any] = field(default_factory=dict)  # a metric's `rows: {union:}`, by name

    def table(self, name: Any):
        return self.unions[name] if name in self.unions else self.relations.table(name)

    def has(self, name: Any) -> bool:
        return name in self.sources or name in TABLES or name in self.unions

    def columns(self, name: Any) -> list[str]:
        return list(self.table(name).c.keys())


def base_source(metric: Metric) -> str | None:
    from metrics.catalogue import (
        base_table,  # the catalogue loads its packaged entries through here
    )

    return base_table(metric)


# ---- expressions over metrics (derived) -----------------------------------------------------


def expression_names(expr: str) -> list[str]:
    """The names in ``expr``, in the order they are written."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        return []
    names = [n for n in ast.walk(tree) if isinstance(n, ast.Name)]
    return [n.id for n in sorted(names, key=lambda n: (n.lineno, n.col_offset))]


def _arithmetic(expr: str) -> Callable[[Mapping[str, float | None]], float | None]:
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise Invalid(f"`{expr}` is not an arithmetic expression of metric ids", key="expr") from exc
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Name, ast.Constant, ast.Load,
               ast.Add, ast.Sub, ast.Mult, ast.Div, ast.USub, ast.UAdd)
    for node in ast.walk(tree):
        if not isinstance(node, allowed) or (isinstance(node, ast.Constant) and not isinstance(node.value, (int, float))):
            raise Invalid(f"`{expr}`: only + - * / ( ), numbers and metric ids are allowed", key="expr")

    def ev(node) -> float | None:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return float(node.value)  # type: ignore[arg-type]  # numbers only (checked above)
        if isinstance(node, ast.Name):
            return values.get(node.id)
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            return None if v is None else (-v if isinstance(node.op, ast.USub) else v)
        a, b = ev(node.left), ev(node.right)
        if a is None or b is None:
            return None
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            return a * b
        return None if b == 0 else a / b

    values: Mapping[str, float | None] = {}

    def combine(v: Mapping[str, float | None]) -> float | None:
        nonlocal values
        values = v
        return ev(tree)

    return combine


# ---- one aggregation over a source (simple metrics, ratio parts, cumulative) -------------------


@dataclass(frozen=True)
class Part:
    source: Any
    agg: str
    expr: Any
    filter: Any
    time: Any


AGG: dict[str, Callable] = {
    "sum": func.sum, "avg": func.avg, "min": func.min, "max": func.max,
    "count": func.count, "count_distinct": lambda e: func.count(distinct(e)),
}
_NON_NUMERIC = ("DATETIME", "TIMESTAMP", "DATE", "BOOLEAN", "VARCHAR", "STRING", "TEXT")


def _part(spec: Any, ctx: Context, node: Any, needs_time: bool = True) -> Part:
    if not isinstance(spec, Mapping):
        raise Invalid("expected a mapping with source, agg and expr", node)
    source: str = str(spec.get("source"))
    if not ctx.has(source):
        raise Invalid(f"unknown source `{source}`{_close(source, [*ctx.sources, *TABLES])}", spec, "source")
    agg = spec.get("agg", "count")
    if agg not in AGG:
        raise Invalid(f"bad agg `{agg}` (one of {', '.join(AGG)})", spec, "agg")
    expr = spec.get("expr")
    cols = ctx.columns(source)
    if expr is None and agg not in ("count",):
        raise Invalid(f"`{agg}` needs an `expr` (a column of `{source}`)", spec, "agg")
    if expr is not None:
        if not isinstance(expr, str) or sqlexpr.check(expr, cols):
            raise Invalid(f"expr: {(sqlexpr.check(str(expr), cols) or ['must be text'])[0]}", spec, "expr")
        bare = expr.strip()
        if bare.isidentifier() and bare not in cols:
            raise Invalid(f"unknown column `{bare}` of `{source}`{_close(bare, cols)}", spec, "expr")
        if bare.isidentifier() and agg in ("sum", "avg"):
            kind = ctx.table(source).c[bare].type
            shown = str(kind.__class__.__name__).upper()
            if any(k in shown for k in _NON_NUMERIC) or (isinstance(kind, Date)):
                raise Invalid(f"cannot {agg} `{bare}`: it is not numeric ({shown.lower()})", spec, "expr")
    filt = spec.get("filter")
    if filt is not None and (not isinstance(filt, str) or sqlexpr.check(filt, cols)):
        raise Invalid("filter: " + (sqlexpr.check(str(filt), cols) or ["must be text"])[0], spec, "filter")
    time = spec.get("time") or (ctx.sources[source].time if source in ctx.sources else _default_time(source))
    if needs_time:
        if time is None:
            raise Invalid(f"no time column: give `time:` here or on source `{source}`", spec, None)
        if time not in cols:
            raise Invalid(f"unknown time column `{time}` of `{source}`{_close(time, cols)}", spec, "time")
    return Part(source, agg, expr, filt, time)


def _default_time(source: Any) -> str | None:
    from metrics.freshness import TIME_COLUMNS

    cols = TIME_COLUMNS.get(source)
    return cols[0] if cols else None


def _close(word, names) -> str:
    from metrics.model.load import close

    return close(word, names)


def _value(part: Part, conditional: bool) -> Callable:
    """The part's aggregate over a table ``t``; with ``conditional`` its filter goes inside
    (two parts of one ratio share rows but not filters). A filtered sum is 0, not NULL, when
    there are rows but none match: "no recurring orders" is $0 of recurring revenue."""

    def agg(t, w):
        e = None if part.expr in (None, "*") else sqlexpr.build(part.expr, t, numeric=part.agg not in ("count", "count_distinct"))
        if conditional and part.filter:
            cond = sqlexpr.build(part.filter, t)
            e = case((cond, 1 if e is None else e), else_=0) if part.agg == "sum" else case((cond, 1 if e is None else e))
        if e is None:
            return func.count()
        return AGG[part.agg](e)

    return agg


def _join(part: Part, ctx: Context):
    col = ctx.table(part.source).c[part.time]
    return date_in_window(part.time) if isinstance(col.type, Date) else in_window(part.time)


def _customer_key(source: str, ctx: Context) -> str | None:
    if source in ctx.sources:
        return ctx.sources[source].customer_key
    return "customer_id" if "customer_id" in TABLES[source].c else None


def _own_dimensions(sources: tuple[str, ...], ctx: Context) -> tuple[str, ...]:
    return tuple(d.name for d in ctx.dimensions.values() if d.source in sources and d.source != "customers")


def _agg_name(part: Part) -> str:
    """The aggregate's column name in the SQL: ``n`` for a row count, as the Python entries
    name theirs (so a KPI moved to a data file sends the same statement), else ``v``."""
    return "n" if part.agg == "count" and part.expr in (None, "*") else "v"


def _split(agg: str) -> str | None:
    return "sum" if agg in ("sum", "count") else None


def _aggregate(spec: Part, empty_null: bool = False, empty_zero: bool = False) -> Callable:
    """One of a function-finalized entry's named aggregates, written as a hand-built entry
    would: a filtered count is a sum of 1/0, a filtered sum adds 0 elsewhere (NULL with
    ``empty_null``: no matching row is no data), any other filtered aggregate reads NULL. An
    unfiltered sum with ``empty_zero`` reads 0 where every value is NULL (outages: none)."""
    if spec.agg == "window_seconds":
        return window_seconds

    def agg(t, w):
        e = None if spec.expr in (None, "*") else sqlexpr.build(spec.expr, t, window=w)
        cond = sqlexpr.build(spec.filter, t, window=w) if spec.filter else None
        if cond is not None:
            if e is None and spec.agg == "count":
                return func.sum(case((cond, 1), else_=0))
            e = case((cond, 1 if e is None else e), else_=0) if spec.agg == "sum" and not empty_null else case((cond, e))
        if e is None:
            return func.count()
        if empty_zero and cond is None and spec.agg == "sum":
            return func.coalesce(func.sum(e), 0.0 if isinstance(e.type, Float) else 0)  # money stays exact
        return median(e) if spec.agg == "median" else AGG[spec.agg](e)

    return agg


def _finalized(entry: Mapping, part: Part, ctx: Context) -> tuple[dict[str, Callable], Callable, dict]:
    """``aggregates:`` (name -> {agg, expr, filter}) and ``finalize:`` (a function of
    metrics.kpis.functions, by name or {function:, options}) of a simple metric."""
    from metrics.kpis.functions import FINALIZERS, referenced  # the catalogue loads through here

    specs = entry.get("aggregates")
    if not isinstance(specs, Mapping) or not specs:
        raise Invalid("`aggregates` maps names to {agg:, expr:, filter:}", entry, "aggregates")
    aggregates: dict[str, Callable] = {}
    for name, x in specs.items():
        if not isinstance(x, Mapping):
            raise Invalid(f"aggregate `{name}`: expected {{agg:, expr:, filter:}}", specs, name)
        unknown = [k for k in x if k not in ("agg", "expr", "filter", "empty")]
        if unknown:
            raise Invalid(f"aggregate `{name}`: unknown key `{unknown[0]}`"
                          f"{_close(unknown[0], ('agg', 'expr', 'filter', 'empty'))}", x, unknown[0])
        if x.get("agg") == "window_seconds":
            aggregates[str(name)] = _aggregate(Part(part.source, "window_seconds", None, None, None))
            continue
        agg = x.get("agg", "count")
        if x.get("empty") not in (None, 0, "null"):  # what a filtered sum reads when no row matches
            raise Invalid(f"aggregate `{name}`: empty: 0 or null", x, "empty")
        empty_null = "empty" in x and x["empty"] in (None, "null")
        given = {k: v for k, v in x.items() if k != "empty"}
        sub = _part({**given, "source": part.source, "agg": "sum" if agg == "median" else agg}, ctx, x, needs_time=False)
        aggregates[str(name)] = _aggregate(Part(sub.source, str(agg), sub.expr, sub.filter, None), empty_null,
                                           "empty" in x and x["empty"] == 0)
    spec = entry.get("finalize")
    name, args = (spec, {}) if isinstance(spec, str) else (
        (spec.get("function"), {k: v for k, v in spec.items() if k != "function"}) if isinstance(spec, Mapping) else (None, {}))
    if name not in FINALIZERS:
        raise Invalid(f"unknown finalize function `{name}`{_close(name, FINALIZERS)} (one of {', '.join(FINALIZERS)})",
                      entry, "finalize")
    fin = FINALIZERS[name]
    for key in args:
        if key not in fin.args:
            raise Invalid(f"finalize `{name}`: unknown option `{key}`" + (f" (one of {', '.join(fin.args)})" if fin.args else " (it takes none)"),
                          spec, key)
    missing = [key for key in fin.required if key not in args]
    problem = f"give `{missing[0]}`" if missing else (fin.check(args) if fin.check else None)
    if problem:
        raise Invalid(f"finalize `{name}`: {problem}", entry, "finalize")
    for ref in referenced(args, fin):
        if ref not in aggregates:
            raise Invalid(f"finalize `{name}` reads aggregate `{ref}`, which `aggregates` does not declare"
                          f"{_close(ref, aggregates)}", entry, "aggregates")
    n = entry.get("n")
    if n is not None and n not in aggregates:
        raise Invalid(f"n: unknown aggregate `{n}`{_close(n, aggregates)}", entry, "n")
    fn = fin.fn

    def finalize(a: Aggs) -> dict[str, Any]:
        return fn(a, **args)

    return aggregates, finalize, {"split": None}


def _row_function(spec: Mapping) -> tuple[str, Callable, tuple[str, ...]]:
    """``rows: {function: outages}``: a named, tested row source of metrics/kpis/rows.py, for
    the few shapes no entry states (overlapping intervals merged per window)."""
    from metrics.kpis.rows import ROW_SOURCES  # the catalogue loads through here

    name = spec.get("function")
    if name not in ROW_SOURCES or set(spec) != {"function"}:
        raise Invalid(f"rows: unknown function `{name}`{_close(name, ROW_SOURCES)} (one of {', '.join(ROW_SOURCES)}; "
                      "it takes no options)", spec, "function")
    found = ROW_SOURCES[name]
    return found.name, found.build, found.reads


def _window_rows(entry: Mapping, part: Part, ctx: Context) -> summary.Rows:
    """Which of the source's rows belong to a window, for a summary: by ``time`` (a plain
    range), ``in_window`` or, cumulative, ``start``."""

    def dated(col: str) -> bool:
        return isinstance(ctx.table(part.source).c[col].type, Date)

    if entry["type"] == "cumulative":
        start = entry.get("start")
        if start not in ctx.columns(part.source):
            raise Invalid(f"start: unknown column `{start}` of `{part.source}`", entry, "start")
        if entry.get("end") is not None:
            raise Invalid("with `summarize`, say in the columns' filters which rows count (period_start, period_end)",
                          entry, "end")
        return summary.Rows(part.source, "start", start, dated(start), part.filter)
    cond = entry.get("in_window")
    if cond is not None:
        if "time" in entry:
            raise Invalid("give `time` or `in_window`, not both", entry, "in_window")
        if not isinstance(cond, str) or sqlexpr.check(cond, ()) or not set(sqlexpr.names(cond)) & set(sqlexpr.WINDOW) \
                or sqlexpr.unknown(cond, ctx.columns(part.source)):
            bad = sqlexpr.unknown(str(cond), ctx.columns(part.source))
            raise Invalid("in_window: a condition naming period_start or period_end" +
                          (f" (unknown column `{bad}`{_close(bad, ctx.columns(part.source))})" if bad else ""),
                          entry, "in_window")
        return summary.Rows(part.source, "in_window", cond, False, part.filter)
    return summary.Rows(part.source, "time", str(part.time), dated(part.time), part.filter)


def _summarized(mid: str, entry: Mapping, ctx: Context) -> tuple[Measure, tuple[str, ...], dict]:
    """``summarize:`` or ``pairs:`` (metrics/model/summary.py): the source's rows per window
    grouped by entity first; the entry's ``aggregates`` run over those rows."""
    if "summarize" in entry and "pairs" in entry or "rows" in entry:
        raise Invalid("give one of `summarize`, `pairs` or `rows`", entry, "pairs" if "pairs" in entry else "rows")
    if "aggregates" not in entry:
        raise Invalid("a summary is read by `aggregates` (and `finalize`)", entry, "aggregates")
    given = {k: v for k, v in entry.items() if k in ("source", "time", "filter")}
    needs_time = entry["type"] == "simple" and "in_window" not in entry
    part = _part(given, ctx, entry, needs_time=needs_time)
    rows = _window_rows(entry, part, ctx)
    cols = ctx.columns(part.source)
    if part.filter is not None and sqlexpr.unknown(part.filter, cols):
        bad = sqlexpr.unknown(part.filter, cols)
        raise Invalid(f"filter: unknown column `{bad}` of `{part.source}`{_close(bad, cols)}", entry, "filter")

    def column(spec: Mapping, node: Any) -> Callable:
        agg = spec.get("agg", "count")
        if agg not in AGG:
            raise Invalid(f"bad agg `{agg}` (one of {', '.join(AGG)})", node, "agg")
        sub = _part({**spec, "source": part.source, "agg": agg}, ctx, node, needs_time=False)
        return _aggregate(Part(sub.source, str(agg), sub.expr, sub.filter, None))

    windows = union.windows_like()
    if "summarize" in entry:
        name, build, check = summary.summarize(entry["summarize"], mid, rows, ctx.table, column, windows, Invalid)
        sources: tuple[str, ...] = (part.source,)
        counted: Counted | None = None
    else:
        name, listed, check, sources = summary.pairs(entry["pairs"], mid, rows, ctx.table, ctx.has, windows, Invalid)
        build = listed
        # the same pairs, counted: a row per entity, not per (entity, item)
        counted = Counted(table=functools.partial(listed, counted=True), item=str(entry["pairs"]["item"]),
                          weight=summary.WEIGHT)
    if name in ctx.sources or name in TABLES:  # it would hide that source from the metrics after this one
        key = "summarize" if "summarize" in entry else "pairs"
        raise Invalid(f"{key}: `{name}` is a source's name; name the rows otherwise (`name:`)", entry[key], "name")
    ctx.unions[name] = check
    inner = check.c.keys()
    for agg_name, x in (entry.get("aggregates") or {}).items():
        for key in ("expr", "filter"):
            bad = sqlexpr.unknown(x[key], inner) if isinstance(x, Mapping) and isinstance(x.get(key), str) else None
            if bad:
                raise Invalid(f"aggregate `{agg_name}`: unknown column `{bad}` of the summary `{name}` "
                              f"({', '.join(c for c in inner if c != 'w')}){_close(bad, inner)}", x, key)
    aggregates, finalize, info = _finalized(entry, Part(name, "count", None, None, None), ctx)
    customer = _customer_key(part.source, ctx)
    measure = Measure(table=build, join=lambda t, w: t.c.w == w.c.w, aggregates=aggregates, finalize=finalize,
                      n=entry.get("n"), customer_key=customer if customer in inner else None, counted=counted)
    return measure, sources, {**info, "_own": name, **({"snapshot": True} if entry["type"] == "cumulative" else {})}


def _simple(mid: str, entry: Mapping, ctx: Context) -> tuple[Measure | Derived, tuple[str, ...], dict]:
    kind = entry["type"]
    if "summarize" in entry or "pairs" in entry:
        return _summarized(mid, entry, ctx)
    if kind == "simple" and ("aggregates" in entry or "finalize" in entry):
        rows = entry.get("in_window")
        if rows is not None and (not isinstance(rows, str) or sqlexpr.check(rows, ())
                                 or not set(sqlexpr.names(rows)) & set(sqlexpr.WINDOW)):
            raise Invalid("in_window: a condition naming period_start or period_end (which rows belong to a "
                          "period, instead of `time`)", entry, "in_window")
        if rows is not None and "time" in entry:
            raise Invalid("give `time` or `in_window`, not both", entry, "in_window")
        keys = ("source", "filter") if rows is not None else ("source", "time", "filter")
        table: Any = None
        sources: tuple[str, ...] = ()
        if "rows" in entry:  # a union of sources, or a named row function, under its own name
            if "source" in entry:
                raise Invalid("give `source` or `rows`, not both", entry, "rows")
            if isinstance(entry["rows"], Mapping) and "function" in entry["rows"]:
                name, table, sources = _row_function(entry["rows"])
                per_window = True
            else:
                name, table, sources = union.union(entry["rows"], ctx.table, ctx.has, Invalid)
                per_window = bool(entry["rows"].get("per_window"))
            if per_window and (rows is not None or "time" in entry):
                raise Invalid("rows per window (a per_window union, a function) name their own `time`", entry, "time")
            ctx.unions[name] = table(union.windows_like()) if per_window else table()
        given = {k: v for k, v in entry.items() if k in keys}
        windowed = table is not None and per_window
        part = _part({**given, "source": name} if table is not None else given, ctx, entry,
                     needs_time=rows is None and not windowed)
        aggregates, finalize, info = _finalized(entry, part, ctx)
        where = (lambda t: sqlexpr.build(part.filter, t)) if part.filter else None
        join = (lambda t, w: sqlexpr.build(rows, t, window=w)) if rows is not None else (
            (lambda t, w: t.c.w == w.c.w) if windowed else _join(part, ctx))
        key = _customer_key(part.source, ctx) if table is None else (
            "customer_id" if "customer_id" in ctx.columns(part.source) else None)
        measure = Measure(table=table or part.source, join=join, aggregates=aggregates, finalize=finalize,
                          n=entry.get("n"), where=where, time_column=None if rows is not None or windowed else part.time,
                          customer_key=key)
        return measure, sources or (part.source,), {**info, "_own": name if table is not None else part.source}
    if kind == "simple":
        part = _part(entry, ctx, entry)
        name = _agg_name(part)
        aggregates = {name: _value(part, False)}
        n = None
        if part.agg == "avg":
            aggregates["n"] = _value(Part(part.source, "count", part.expr, None, part.time), False)
            n = "n"
        finalize, info = _extras(entry, part, ctx, aggregates, name)
        where = (lambda t: sqlexpr.build(part.filter, t)) if part.filter else None
        measure = Measure(table=part.source, join=_join(part, ctx), aggregates=aggregates, finalize=finalize,
                          n=n, where=where, time_column=part.time, customer_key=_customer_key(part.source, ctx))
        return measure, (part.source,), {"split": "mean" if part.agg == "avg" else _split(part.agg), **info}
    if kind == "cumulative":
        part = _part(entry, ctx, entry, needs_time=False)
        start, end = entry.get("start"), entry.get("end")
        if "aggregates" in entry or "finalize" in entry:  # the rows that exist by the end, own aggregates
            if start not in ctx.columns(part.source):
                raise Invalid(f"start: unknown column `{start}` of `{part.source}`", entry, "start")
            if end is not None:
                raise Invalid("with `aggregates`, say in their filters which rows count (period_start, period_end)",
                              entry, "end")
            aggregates, finalize, info = _finalized(entry, part, ctx)
            dated = isinstance(ctx.table(part.source).c[start].type, Date)
            measure = Measure(table=part.source, join=lambda t, w: t.c[start] < (w.c.de if dated else w.c.we),
                              aggregates=aggregates, finalize=finalize, n=entry.get("n"),
                              where=(lambda t: sqlexpr.build(part.filter, t)) if part.filter else None,
                              customer_key=_customer_key(part.source, ctx))
            return measure, (part.source,), {"snapshot": True, **info}
        cols = ctx.columns(part.source)
        for key, col in (("start", start), ("end", end)):
            if (key == "start" or col is not None) and col not in cols:
                raise Invalid(f"{key}: unknown column `{col}` of `{part.source}`{_close(col, cols)}", entry, key)
        dates = isinstance(ctx.table(part.source).c[start].type, Date)

        def join(t, w):  # every row that exists by the end: a level of 0 is a value, not "no data"
            return t.c[start] < (w.c.de if dates else w.c.we)

        def level(t, w):
            at = w.c.de if dates else w.c.we
            alive = or_(t.c[end].is_(None), t.c[end] >= at) if end else None
            if part.expr in (None, "*"):
                return func.count() if alive is None else func.count(case((alive, 1)))
            e = sqlexpr.build(part.expr, t, numeric=part.agg not in ("count", "count_distinct"))
            value = AGG[part.agg](e if alive is None else case((alive, e)))
            return func.coalesce(value, 0) if part.agg in ("sum", "count", "count_distinct") else value

        where = (lambda t: sqlexpr.build(part.filter, t)) if part.filter else None
        name = _agg_name(part)
        measure = Measure(table=part.source, join=join, aggregates={name: level}, finalize=single(name),
                          where=where, customer_key=_customer_key(part.source, ctx))
        return measure, (part.source,), {"snapshot": True, "split": _split(part.agg)}
    raise AssertionError(kind)


def _extras(entry: Mapping, part: Part, ctx: Context, aggregates: dict, name: str) -> tuple[Callable, dict]:
    """A simple metric's extra figures, shown beside its value (``recurring`` revenue): each
    an aggregate over the metric's rows with its own filter, or arithmetic over ``value`` and
    the extras before it (see :func:`_value` for a filtered sum)."""
    spec = entry.get("extras") or {}
    if not isinstance(spec, Mapping):
        raise Invalid("`extras` maps names to {agg:, expr:, filter:} or {expr: arithmetic}", entry, "extras")
    steps: list[tuple[str, Any]] = []
    docs, units = {}, {}
    for extra, x in spec.items():
        if not isinstance(x, Mapping) or extra in ("value", name) or extra in aggregates:
            raise Invalid(f"extra `{extra}`: expected a mapping, under a name of its own", spec, extra)
        if "agg" in x:
            sub = _part({**x, "source": part.source}, ctx, x, needs_time=False)
            aggregates[extra] = _value(sub, True)
            steps.append((extra, sub.agg))
        else:
            refs = expression_names(str(x.get("expr")))
            known = {"value", *(n for n, _ in steps)}
            if not refs or any(r not in known for r in refs):
                raise Invalid(f"extra `{extra}`: arithmetic over value and the extras before it", spec, extra)
            steps.append((extra, _arithmetic(str(x["expr"]))))
        docs[extra] = str(x.get("label") or extra.replace("_", " "))
        if x.get("unit"):
            units[extra] = str(x["unit"])
    plain = single(name)
    if not steps:
        return plain, {}

    def finalize(a: Aggs) -> dict[str, Any]:
        out = dict(plain(a))
        if out.get("value") is None:
            return out
        values: dict[str, float | None] = {"value": out["value"]}
        for extra, how in steps:
            if callable(how):
                values[extra] = how(values)
                continue
            v = a.get(extra)
            values[extra] = None if v is None else (int(v) if how in ("count", "count_distinct") else float(v))
        return {**out, **{k: v for k, v in values.items() if k != "value"}}

    return finalize, {"extras_doc": docs, "extras_units": units}


def _ratio(mid: str, entry: Mapping, ctx: Context) -> tuple[Measure | Derived, tuple[str, ...], dict]:
    scale = entry.get("scale", 1)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise Invalid("scale must be a number", entry, "scale")
    num, den = entry.get("numerator"), entry.get("denominator")
    if num is None or den is None:
        raise Invalid("a ratio needs `numerator` and `denominator`", entry)
    if isinstance(num, str) and isinstance(den, str):
        for key, ref in (("numerator", num), ("denominator", den)):
            if ref not in ctx.metrics:
                raise Invalid(f"unknown metric `{ref}`{_close(ref, ctx.metrics)}", entry, key)

        def combine(v: Mapping[str, float | None]) -> float | None:
            a, b = v.get(num), v.get(den)
            return None if a is None or not b else float(scale) * a / b

        tables = tuple(dict.fromkeys((*ctx.metrics[num].tables, *ctx.metrics[den].tables)))
        return Derived((num, den), combine), tables, {}
    if isinstance(num, Mapping) and isinstance(den, Mapping):
        a, b = _part(num, ctx, entry.get("numerator")), _part(den, ctx, entry.get("denominator"))
        if (a.source, a.time) != (b.source, b.time):
            raise Invalid("inline numerator and denominator must share a source and time column "
                          "(else define them as simple metrics and name their ids)", entry, "denominator")
        measure = Measure(table=a.source, join=_join(a, ctx), aggregates={"num": _value(a, True), "den": _value(b, True)},
                          finalize=ratio("num", "den", float(scale)), n="den", time_column=a.time,
                          customer_key=_customer_key(a.source, ctx))
        return measure, (a.source,), {"split": "mean"}
    raise Invalid("numerator and denominator: both metric ids, or both inline {source:, agg:, expr:}", entry)


def _conversion(mid: str, entry: Mapping, ctx: Context) -> tuple[Measure, tuple[str, ...], dict]:
    base, conv = entry.get("base"), entry.get("conversion")
    for key, spec in (("base", base), ("conversion", conv)):
        if not isinstance(spec, Mapping) or not ctx.has(spec.get("source")) or not spec.get("time"):
            src = spec.get("source") if isinstance(spec, Mapping) else None
            raise Invalid(f"{key}: give {{source:, time:}} of a known source"
                          + (f"; unknown source `{src}`{_close(src, [*ctx.sources, *TABLES])}" if src else ""), entry, key)
        if spec["time"] not in ctx.columns(spec["source"]):
            raise Invalid(f"{key}: unknown time column `{spec['time']}` of `{spec['source']}`", spec, "time")
    entity = entry.get("entity", "customer_id")
    assert isinstance(base, Mapping) and isinstance(conv, Mapping)
    for spec in (base, conv):
        if entity not in ctx.columns(spec["source"]):
            raise Invalid(f"entity `{entity}` is not a column of `{spec['source']}`", entry, "entity")
    days = entry.get("window_days")
    if isinstance(days, bool) or not isinstance(days, int) or days <= 0:
        raise Invalid("window_days must be a whole number of days above 0", entry, "window_days")
    bsrc, btime, csrc, ctime = base["source"], base["time"], conv["source"], conv["time"]

    def rows(w):
        b, c = ctx.table(bsrc), ctx.table(csrc)
        first = (
            select(w.c.w, b.c[entity].label("entity"), func.min(b.c[btime]).label("t0"))
            .select_from(b.join(w, and_(b.c[btime] >= w.c.ws, b.c[btime] < w.c.we)))
            .where(b.c[entity].is_not(None))
            .group_by(w.c.w, b.c[entity])
            .subquery("first_" + bsrc)
        )
        hit = exists().where(c.c[entity] == first.c.entity, c.c[ctime] >= first.c.t0, c.c[ctime] < add_days(first.c.t0, days))
        return select(first.c.w, first.c.entity.label(entity), case((hit, 1), else_=0).label("converted")).subquery(mid)

    measure = Measure(
        table=rows, join=lambda t, w: t.c.w == w.c.w,
        aggregates={"n": lambda t, w: func.count(), "hits": lambda t, w: func.sum(t.c.converted)},
        finalize=ratio("hits", "n", 100.0), n="n",
        customer_key=entity if entity == "customer_id" or entity == _customer_key(bsrc, ctx) else None,
    )
    return measure, (bsrc, csrc), {"split": "mean"}


def _derived(mid: str, entry: Mapping, ctx: Context) -> tuple[Derived, tuple[str, ...], dict]:
    expr = entry.get("expr")
    if not isinstance(expr, str):
        raise Invalid("a derived metric needs `expr` (arithmetic over metric ids)", entry)
    combine = _arithmetic(expr)
    inputs = tuple(dict.fromkeys(expression_names(expr)))
    if not inputs:
        raise Invalid("`expr` names no metric", entry, "expr")
    for ref in inputs:
        if ref not in ctx.metrics:
            raise Invalid(f"unknown metric `{ref}`{_close(ref, ctx.metrics)}", entry, "expr")
    tables = tuple(dict.fromkeys(t for i in inputs for t in ctx.metrics[i].tables))
    if "when" in entry:
        holds = _condition(entry["when"], ctx)
        inputs = tuple(dict.fromkeys((*inputs, *expression_names(str(entry["when"])))))
        value = combine

        def combine(v: Mapping[str, float | None]) -> float | None:
            return value(v) if holds(v) else None

    return Derived(inputs, combine), tables, {}


_COMPARE: dict[type, Callable[[float, float], bool]] = {
    ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b, ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b, ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b,
}


def _condition(when: Any, ctx: Context) -> Callable[[Mapping[str, float | None]], bool]:
    """A derived metric's ``when``: one comparison of two arithmetic expressions over metric
    ids (``arpa * gross_margin / 100 > 0``); where it does not hold, or an input is missing,
    there is no value (CAC payback has none while the monthly margin is not positive)."""
    problem = Invalid("when: one comparison (> >= < <= == !=) of arithmetic over metric ids", key="when")
    try:
        tree = ast.parse(str(when), mode="eval").body
    except SyntaxError as exc:
        raise problem from exc
    if not isinstance(when, str) or not isinstance(tree, ast.Compare) or len(tree.ops) != 1 \
            or type(tree.ops[0]) not in _COMPARE:
        raise problem
    try:
        left, right = _arithmetic(ast.unparse(tree.left)), _arithmetic(ast.unparse(tree.comparators[0]))
    except Invalid as exc:
        raise problem from exc
    for ref in expression_names(when):
        if ref not in ctx.metrics:
            raise Invalid(f"when: unknown metric `{ref}`{_close(ref, ctx.metrics)}", key="when")
    compare = _COMPARE[type(tree.ops[0])]

    def holds(v: Mapping[str, float | None]) -> bool:
        a, b = left(v), right(v)
        return a is not None and b is not None and compare(a, b)

    return holds


def _reference(entry: Mapping) -> Reference | None:
    ref = entry.get("reference")
    if ref is None:
        return None
    if not isinstance(ref, Mapping) or not isinstance(ref.get("value"), int | float) or isinstance(ref.get("value"), bool):
        raise Invalid("reference needs a number `value` (and a `label`)", entry, "reference")
    return Reference(float(ref["value"]), str(ref.get("label") or ref["value"]))


def _bands(entry: Mapping) -> tuple[Band, ...]:
    out = []
    for b in entry.get("bands") or []:
        if not isinstance(b, Mapping) or "label" not in b:
            raise Invalid("each band needs a label (and low/high)", entry, "bands")
        out.append(Band(str(b["label"]), b.get("low"), b.get("high"), bool(b.get("good", True))))
    return tuple(out)


def _part_words(spec: Mapping) -> str:
    agg = {"sum": "sum", "count": "count", "count_distinct": "distinct count", "avg": "mean",
           "min": "minimum", "max": "maximum"}.get(str(spec.get("agg", "count")), "count")
    what = f"{agg} of {spec.get('source')}" + (f".{spec['expr']}" if spec.get("expr") not in (None, "*") else " rows")
    return what + (f" where {spec['filter']}" if spec.get("filter") else "")


def _shaped_words(entry: Mapping) -> str | None:
    """A summarized, paired or function-read entry in words (its aggregates and how they end)."""
    spec = entry.get("finalize")
    how = spec if isinstance(spec, str) else spec.get("function") if isinstance(spec, Mapping) else None
    then = f"{', '.join(map(str, entry.get('aggregates') or {}))}, finalized by {how}"
    source = entry.get("source")
    if isinstance(entry.get("summarize"), Mapping):
        by = entry["summarize"].get("by")
        keys = ", ".join(map(str, by)) if isinstance(by, list | Mapping) else "?"
        rows = "that exist by the period's end" if entry.get("type") == "cumulative" else "in the period"
        return f"{source} rows {rows} summarized per {keys}; then {then}"
    if isinstance(entry.get("pairs"), Mapping):
        pairs = entry["pairs"]
        return f"every ({pairs.get('entity')}, {pairs.get('item')}) pair of {source} in the period; then {then}"
    if isinstance(entry.get("rows"), Mapping) and "function" in entry["rows"]:
        return f"the {entry['rows']['function']} rows of the period; then {then}"
    return None


def _formula(entry: Mapping) -> str:
    """The entry in words, as the built-in KPIs' formulas read."""
    kind = entry["type"]
    shaped = _shaped_words(entry)
    if shaped:
        return shaped
    if kind == "simple":
        return _part_words(entry) + " in the period"
    if kind == "cumulative":
        end = f", {entry['end']} not by then" if entry.get("end") else ""
        return f"{_part_words(entry)} at the period's end ({entry.get('start')} before it{end})"
    if kind == "ratio":
        num, den = (v if isinstance(v, str) else _part_words(v) for v in (entry["numerator"], entry["denominator"]))
        scale = entry.get("scale", 1)
        return f"{num} ÷ {den}" + (f" × {scale:g}" if scale != 1 else "")
    if kind == "derived":
        return str(entry["expr"])
    if kind == "model":
        return f"the {entry.get('function')} model"
    base, conv = entry["base"], entry["conversion"]
    return (f"share of {base['source']} ({entry.get('entity', 'customer_id')}) in the period with a "
            f"{conv['source']} row within {entry['window_days']} days of their first {base['source']} row × 100")


def _model(mid: str, entry: Mapping, ctx: Context) -> tuple[Custom, tuple[str, ...], dict]:
    """``type: model, function: predicted_clv``: a named, tested model of metrics/kpis/rows.py
    (fitted over per-customer histories, not an aggregate); it declares the tables it reads."""
    from metrics.kpis.rows import MODELS  # the catalogue loads through here

    name = entry.get("function")
    if name not in MODELS:
        raise Invalid(f"unknown model function `{name}`{_close(name, MODELS)} (one of {', '.join(MODELS)})",
                      entry, "function")
    return Custom(compute=MODELS[name].compute), MODELS[name].reads, {}


_BUILD = {"simple": _simple, "cumulative": _simple, "ratio": _ratio, "derived": _derived, "conversion": _conversion,
          "model": _model}


def compile_metric(mid: str, entry: Mapping, ctx: Context) -> Metric:
    measure, tables, extra = _BUILD[entry["type"]](mid, entry, ctx)
    own_table = extra.pop("_own", measure.table if isinstance(measure, Measure) and isinstance(measure.table, str) else None)
    default_unit = {"conversion": "percent", "ratio": "ratio"}.get(entry["type"], "count")
    own = _own_dimensions(tables, ctx) if isinstance(measure, Measure) else ()
    listed = entry.get("dimensions") or []
    if isinstance(measure, Derived) and isinstance(listed, list):
        for dim in listed:  # a derivation is cut by what all its inputs are cut by
            if not all(dim in ctx.metrics[i].dimensions for i in measure.inputs):
                raise Invalid(f"dimension `{dim}`: not every input of this metric has it", entry, "dimensions")
    elif not isinstance(listed, list) or not isinstance(measure, Measure) or own_table is None:
        if listed:
            raise Invalid("`dimensions` lists a simple or cumulative metric's own columns", entry, "dimensions")
        listed = []
    for dim in listed if isinstance(measure, Measure) else ():
        if dim not in ctx.columns(own_table):
            raise Invalid(f"dimension `{dim}` is not a column of `{own_table}`", entry, "dimensions")
    own = tuple(dict.fromkeys((*listed, *own)))
    if "split" in entry:
        if entry["split"] not in ("sum", "mean", None):
            raise Invalid("split: sum, mean or null", entry, "split")
        extra["split"] = entry["split"]
    formula = str(entry.get("formula") or _formula(entry))
    for key, kinds in (("extra_labels", str), ("extra_units", str)):
        value = entry.get(key) or {}
        if not isinstance(value, Mapping) or not all(isinstance(v, kinds) for v in value.values()):
            raise Invalid(f"`{key}` maps extras to words", entry, key)
    if entry.get("extra_labels"):
        extra["extras_doc"] = {**extra.get("extras_doc", {}), **entry["extra_labels"]}
    if entry.get("extra_units"):
        extra["extras_units"] = {**extra.get("extras_units", {}), **entry["extra_units"]}
    if "survey" in entry:
        extra["survey"] = str(entry["survey"])
    if "min_sample" in entry:
        if isinstance(entry["min_sample"], bool) or not isinstance(entry["min_sample"], int) or entry["min_sample"] < 0:
            raise Invalid("min_sample: a whole number of answers, 0 or more", entry, "min_sample")
        extra["min_sample"] = entry["min_sample"]
    if "snapshot" in entry:
        extra["snapshot"] = bool(entry["snapshot"])
    if "customer_dimensions" in entry:
        extra["customer_dimensions"] = bool(entry["customer_dimensions"])
    return Metric(
        id=mid,
        label=str(entry.get("label") or mid.replace("_", " ").capitalize()),
        group=str(entry.get("group", "custom")),
        unit=str(entry.get("unit", default_unit)),
        formula=formula,
        direction=str(entry.get("direction", "neutral")),
        measure=measure,
        tables=tables,
        synonyms=tuple(entry.get("synonyms") or ()),
        bands=_bands(entry),
        reference=_reference(entry),
        dimensions=own,
        description=str(entry.get("description", "")),
        **extra,
    )
