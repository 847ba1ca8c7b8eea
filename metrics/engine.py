"""Compiles a query into SQL over windows, runs it in the database, and builds the Result.

One statement answers the value, the comparison value and every trend point (they are all
windows); a breakdown adds one grouped statement. Only aggregates cross the wire: no raw
table is ever read into Python. User text reaches SQL only as bound parameters.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    Engine,
    Integer,
    Select,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.sql import ColumnElement, functions, operators, visitors

from metrics import freshness
from metrics.catalogue import CATALOGUE, base_table
from metrics.model import relations
from metrics.periods import Period, Settings, buckets, span_label, step, to_utc, unit_start
from metrics.query import Query
from metrics.result import Group, PeriodValue, Point, Result
from metrics.spec import Counted, Custom, Derived, Measure, Metric
from storage import database

MAX_SEGMENTS = 1000  # fetched at most; the largest segments by row count win
SHOWN_SEGMENTS = 25

Key = tuple[int, str | None]
Window = tuple[date, date]


@dataclass
class Cell:
    """One window (and segment): the finalized KPI value and what came with it."""

    value: float | None
    n: int | None = None
    moe: float | None = None
    extras: dict[str, Any] | None = None
    rows: int = 0


def _values(windows: Sequence[Window], settings: Settings) -> dict[str, Any]:
    """Every value a statement over ``windows`` binds, by parameter name: the statement's
    structure depends only on how many windows there are and how they overlap, so a cached
    statement is run again with new values (see :func:`compute`)."""
    out: dict[str, Any] = {}
    for i, (ds, de) in enumerate(windows):
        out[f"ws_{i}"], out[f"we_{i}"] = to_utc(ds, settings), to_utc(de, settings)
        out[f"ds_{i}"], out[f"de_{i}"] = ds, de
    lo, hi = min(ds for ds, _ in windows), max(de for _, de in windows)
    out.update(lo_ds=lo, hi_de=hi, lo_ws=to_utc(lo, settings), hi_we=to_utc(hi, settings))
    return out


def _param(values: dict[str, Any], name: str, kind) -> Any:
    return bindparam(name, values[name], type_=kind)


def _windows(windows: Sequence[Window], values: dict[str, Any]):
    parts = [
        select(
            literal(i, Integer).label("w"),
            _param(values, f"ws_{i}", DateTime).label("ws"),
            _param(values, f"we_{i}", DateTime).label("we"),
            _param(values, f"ds_{i}", Date).label("ds"),
            _param(values, f"de_{i}", Date).label("de"),
        )
        for i in range(len(windows))
    ]
    return (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("w")


def _layers(windows: Sequence[Window]) -> tuple[tuple[tuple[int, bool], ...], ...]:
    """The windows as layers of sorted, non-overlapping ones: (index, gap before it) each."""
    layers: list[list[tuple[int, bool]]] = []
    ends: list = []
    for ds, de, i in sorted((ds, de, i) for i, (ds, de) in enumerate(windows)):
        k = next((k for k, end in enumerate(ends) if end <= ds), None)
        if k is None:
            layers.append([(i, False)])
            ends.append(de)
        else:
            layers[k].append((i, ds > ends[k]))
            ends[k] = de
    return tuple(tuple(layer) for layer in layers)


def _column(metric: Metric, table, name: str):
    """A dimension column and whether it needs the customers join."""
    if name in table.c and (name in metric.dimensions or table.name == "customers"):
        return table.c[name], False
    if name in relations.customer_dimensions():
        return relations.table("customers").c[name], True
    return table.c[name], False


def compile_measure(
    metric: Metric,
    measure: Measure,
    windows: Sequence[Window],
    settings: Settings,
    dimension: str | None = None,
    filters: Sequence[tuple[str, str]] = (),
    dimensions: Sequence[str] = (),
) -> Select:
    """``dimensions``: cut by each of them in the one scan, ``GROUPING SETS`` (columns
    ``g_k``/``gg_k``, see :mod:`metrics.scan`), instead of by ``dimension``. Pairs are
    counted (:class:`~metrics.spec.Counted`) unless the item is cut or filtered, or an
    aggregate does not add up: at 10M events, add-on penetration's "what moved it" over a
    month 137-166 → 80-84 ms (its customers × 2 products), and feature adoption's pairs from
    the events are customers × every action seen."""
    counted = measure.counted
    if counted is not None and counted.item not in (dimension, *dimensions, *(name for name, _ in filters)):
        stmt = _compile(metric, measure, windows, settings, dimension, filters, dimensions, counted)
        if stmt is not None:
            return stmt
    stmt = _compile(metric, measure, windows, settings, dimension, filters, dimensions, None)
    assert stmt is not None  # only counted rows can be refused
    return stmt


def _compile(
    metric: Metric,
    measure: Measure,
    windows: Sequence[Window],
    settings: Settings,
    dimension: str | None,
    filters: Sequence[tuple[str, str]],
    dimensions: Sequence[str],
    counted: Counted | None,
) -> Select | None:
    """The statement over ``measure``'s rows, or over its counted pairs (None: its aggregates
    cannot be weighted)."""
    values = _values(windows, settings)
    w = _windows(windows, values)
    layers = _layers(windows)

    def bucket(source_table, column: str, dates: bool = False):
        return _bucketed(source_table, column, dates, layers, values, [])

    builder = measure.table if counted is None else counted.table
    table = relations.table(builder) if isinstance(builder, str) else _source(builder, w, bucket)
    prune = []  # conditions on the measure's own rows
    if measure.where is not None:
        prune.append(measure.where(table))
    if measure.time_column:
        col = table.c[measure.time_column]
        if isinstance(col.type, Date):
            prune += [col >= _param(values, "lo_ds", Date), col < _param(values, "hi_de", Date)]
        else:
            prune += [col >= _param(values, "lo_ws", DateTime), col < _param(values, "hi_we", DateTime)]
    on = None
    plain = getattr(measure.join, "window_column", None)  # set by in_window / date_in_window
    own_rows = isinstance(measure.table, str) or not inspect.signature(measure.table).parameters
    if plain and own_rows and plain[0] in table.c:
        plain_column, plain_dates = plain
        table = _bucketed(table, plain_column, plain_dates, layers, values, prune)
        on, prune = table.c._w == w.c.w, []
    needs_customers = False
    dim_col = None
    if dimension:
        dim_col, needs_customers = _column(metric, table, dimension)
    sets = []
    for name in dimensions:
        col, via_customers = _column(metric, table, name)
        needs_customers |= via_customers
        sets.append(col)
    conditions = []
    for name, value in filters:
        col, via_customers = _column(metric, table, name)
        needs_customers |= via_customers
        conditions.append(func.lower(col) == value.lower())
    aggregates = [agg(table, w).label(name) for name, agg in measure.aggregates.items()]
    rows: ColumnElement[Any] = func.count()
    if counted is not None:
        weight = table.c[counted.weight]
        weighted = _weighted(aggregates, table, weight, counted.item)
        if weighted is None:
            return None
        aggregates, rows = weighted, cast(func.sum(weight), BigInteger)
    # Rows already carry their window (``_w``, bucketed) and no aggregate reads its bounds:
    # group by ``_w`` itself. A join to the windows table only hid the rows' count from the
    # planner (DuckDB then built its hash table on the rows, not on the customers they join:
    # a year of CSAT cut by every dimension, 330 → 180 ms).
    direct = on is not None and not _reads(w, aggregates)
    window = table.c._w if direct else w.c.w
    source = table if direct else table.join(w, measure.join(table, w) if on is None else on)
    customers = relations.table("customers")
    conditions += prune
    if direct:
        conditions.append(window.is_not(None))  # a row in a gap between windows
    if needs_customers and table is not customers:
        # dimensions_for() offers customer attributes only to KPIs whose rows name a customer
        assert measure.customer_key is not None, f"{metric.id}: no customer key to join customers by"
        key = table.c[measure.customer_key]
        cuts = [c for c in (dim_col, *sets) if c is not None and c.table is not customers]
        # rows of the table itself, many to a customer: worth adding up per customer first
        # (see _per_customer), unless they are also cut by more than one column of their own
        # or fall in several windows each (a snapshot's) and are cut by one
        ahead = _per_customer(source, window, key, cuts, aggregates, conditions, (table, w, customers)) \
            if own_rows and (not cuts or (on is not None and len(cuts) == 1)) else None
        if ahead is None:
            source = source.outerjoin(customers, key == customers.c.customer_id)
        else:
            p, aggregates = ahead
            source = p.outerjoin(customers, p.c._ck == customers.c.customer_id)
            own = {id(c): p.c[f"_c{i}"] for i, c in enumerate(cuts)}
            dim_col = None if dim_col is None else own.get(id(dim_col), dim_col)
            sets = [own.get(id(c), c) for c in sets]
            conditions = [c for c in conditions if _reads(customers, [c])]
            window, rows = p.c.w, cast(func.sum(p.c._rows), BigInteger)
    columns = [window.label("w") if direct else window]
    group_by = [window]
    if dim_col is not None:
        columns.append(dim_col.label("grp"))
        group_by.append(dim_col)
    columns += aggregates
    columns.append(rows.label("_rows"))
    if sets:
        columns += [c.label(f"g_{k}") for k, c in enumerate(sets)]
        columns += [func.grouping(c).label(f"gg_{k}") for k, c in enumerate(sets)]
        group_by = [func.grouping_sets(*(tuple_(window, c) for c in sets))]
    stmt = select(*columns).select_from(source).where(*conditions).group_by(*group_by)
    if dim_col is not None:
        stmt = stmt.order_by(rows.desc()).limit(MAX_SEGMENTS * len(windows))
    return stmt


_SPLITS = {"count": lambda c: cast(func.sum(c), BigInteger), "sum": func.sum, "min": func.min, "max": func.max}


def _per_customer(source, window, key, cuts, aggregates, conditions, tables):
    """``(rows per customer, the aggregates over them)``: the rows added up per (window,
    customer, cut of their own) before they join the customers for a cut by the customers'
    attributes, then added up again per segment. The join and the grouping sets then read one
    row per customer and window, not every event or order: measured at 10M events (explained
    answers, p50 of 5), core actions year to date 544 → 370 ms, profit per customer by industry
    535 → 346 ms, repeat transactions year to date 680 → 255 ms, with "what moved it" cutting
    the rows' own columns in a statement of their own (metrics.scan): the ticket backlog year
    to date 430 → 248 ms, average customer value 435 → 174 ms. Rows also cut by their own
    columns are added up per (window, customer, column) only for one column, and only when
    each row falls in one window: else the groups are hardly fewer than the rows (tickets
    cut by three columns of their own: 1.6x slower; the backlog, whose tickets fall in
    several windows, cut by its three: 1.5x).

    Only for aggregates that add up again: count, sum, min, max, and a distinct count of the
    customer itself when nothing of the rows' own cuts them (a customer is then in one
    segment). None for any other (a median, a distinct count of users), which joins every
    row as before."""
    table, w, customers = tables
    parts: dict[int, tuple[str, str]] = {}  # id(aggregate call) -> (its column, how it adds up)
    found: dict[int, Any] = {}  # id(aggregate call) -> what stands for it per customer, if not itself
    for agg in aggregates:
        for node in visitors.iterate(agg):
            name = getattr(node, "name", None)
            if isinstance(node, functions.GenericFunction) and name in _SPLITS and id(node) not in parts:
                distinct = [x for x in visitors.iterate(node) if getattr(x, "operator", None) is operators.distinct_op]
                if distinct and (cuts or name != "count" or len(distinct) > 1 or not _same(distinct[0].element, key)):
                    return None  # one customer counts once in each of its groups: only when those are its segments
                parts[id(node)] = ("_rows" if str(node) == "count(*)" else f"_a{len(parts)}", name)
                if distinct:  # the customer's own group: 1 (a distinct count per group costs a hash table each)
                    found[id(node)] = case((key.is_(None), 0), else_=1)
    calls = {id(n): n for agg in aggregates for n in visitors.iterate(agg) if id(n) in parts}
    inner = [window.label("w"), key.label("_ck"), *(c.label(f"_c{i}") for i, c in enumerate(cuts))]
    inner += [found.get(i, calls[i]).label(column) for i, (column, _) in parts.items() if column != "_rows"]
    inner.append(func.count().label("_rows"))
    own = [c for c in conditions if not _reads(customers, [c])]
    theirs = [c for c in conditions if _reads(customers, [c]) and not _reads(table, [c])]
    if theirs:
        # a cut of the customers (the explanation's pair, `where region=EMEA`) keeps only their
        # rows before they are added up, not after: the statement then groups their rows alone
        own.append(key.in_(select(customers.c.customer_id).where(*theirs)))
    p = select(*inner).select_from(source).where(*own).group_by(window, key, *cuts).subquery("p")

    def added(node):
        found = parts.get(id(node))
        return None if found is None else _SPLITS[found[1]](p.c[found[0]])

    outer = [visitors.replacement_traverse(agg, {}, added) for agg in aggregates]
    if _reads(table, outer) or _reads(w, outer):  # an aggregate that does not add up
        return None
    return p, outer


def _weighted(aggregates, table, weight, item: str):
    """``aggregates`` over rows that each stand for ``weight`` rows (counted pairs): a sum of x
    becomes a sum of x × weight, a count a sum of the weights (of rows where x is not NULL);
    min and max stay. None when one reads the item (NULL on counted rows) or is anything
    else: a distinct count, an average, a median."""
    nodes = [node for agg in aggregates for node in visitors.iterate(agg)]
    if any(getattr(n, "operator", None) is operators.distinct_op for n in nodes) or any(
            getattr(n, "table", None) is table and getattr(n, "name", None) == item for n in nodes):
        return None

    def kind(node) -> str | None:
        name = getattr(node, "name", None)
        return name if isinstance(node, functions.GenericFunction) and name in _SPLITS else None

    def blank(element: Any, **_: Any) -> Any:
        return null() if kind(element) else None

    opts: dict[str, Any] = {}
    if _reads(table, [visitors.replacement_traverse(a, opts, blank) for a in aggregates]):
        return None  # an aggregate other than those that add up (_SPLITS) reads the rows

    def weigh(element: Any, **_: Any) -> Any:
        name = kind(element)
        if name in ("min", "max"):
            return element
        if name == "sum":
            return func.sum(list(element.clauses)[0] * weight)
        if name == "count":
            args = [] if str(element) == "count(*)" else list(element.clauses)
            counted = weight if not args else case((args[0].is_not(None), weight), else_=0)
            return cast(func.sum(counted), BigInteger)
        return None

    return [visitors.replacement_traverse(agg, opts, weigh) for agg in aggregates]


def _same(a, b) -> bool:
    """Whether two column expressions are one column (through the labels around it)."""
    a, b = getattr(a, "element", a), getattr(b, "element", b)
    return getattr(a, "table", None) is getattr(b, "table", None) and getattr(a, "name", None) == getattr(b, "name", None)


def _reads(table, expressions) -> bool:
    """Whether any of ``expressions`` reads a column of ``table``."""
    return any(getattr(node, "table", None) is table for e in expressions for node in visitors.iterate(e))


def _bucketed(table, column: str, dates: bool, layers, values: dict[str, Any], prune):
    """``table``'s rows with ``_w``, the window each falls in, for a plain range join
    (:func:`~metrics.spec.in_window`): no range join to the windows, which databases run as a
    sort or a nested loop over rows × windows (a 2-year monthly trend has 50 windows), but
    one CASE over sorted, non-overlapping windows per layer (the periods, the buckets), each
    layer one pruned scan. Named like the table, so the rest of the statement reads the same.
    Rows in a gap between windows get ``_w`` NULL.
    """
    col = table.c[column]
    kind = Date if dates else DateTime
    start, end = ("ds", "de") if dates else ("ws", "we")
    parts = []
    for layer in layers:
        cuts, labels = [], []  # type: ignore[var-annotated]  # (cut, label) SQL expressions; rows below cuts[k] (and not below cuts[k - 1]): labels[k]
        for i, gap in layer:
            if gap:
                cuts.append(_param(values, f"{start}_{i}", kind))
                labels.append(None)
            cuts.append(_param(values, f"{end}_{i}", kind))
            labels.append(i)
        first, last = _param(values, f"{start}_{layer[0][0]}", kind), cuts[-1]
        rows = select(*table.c, _search(col, cuts, labels, 0, len(cuts) - 1).label("_w"))
        parts.append(rows.where(col >= first, col < last, *prune))
    return (parts[0] if len(parts) == 1 else union_all(*parts)).subquery(table.name)


def _search(col, cuts: list, labels: list, first: int, last: int):
    """A binary search as nested CASEs: log2(windows) comparisons per row, not one per window."""
    if first == last:
        label = labels[first]
        return null() if label is None else literal_column(str(int(label)), Integer)
    mid = (first + last) // 2
    return case(
        (col < cuts[mid], _search(col, cuts, labels, first, mid)),
        else_=_search(col, cuts, labels, mid + 1, last),
    )


def _source(make, w, bucket):
    """A callable source; one that takes arguments is built per window and is given ``w``
    (and ``bucket``, see :class:`~metrics.spec.Measure`)."""
    params = len(inspect.signature(make).parameters)
    return make(w, bucket) if params >= 2 else make(w) if params else make()


def _finalize(metric: Metric, measure: Measure, row: dict[str, Any]) -> Cell:
    aggs = {name: _num(row[name]) for name in measure.aggregates}
    out = dict(measure.finalize(aggs))
    value = out.pop("value", None)
    moe = out.pop("moe", None)
    n = aggs.get(measure.n) if measure.n else None
    return Cell(
        value=None if value is None else float(value),
        n=None if n is None else int(n),
        moe=moe,
        extras=out or None,
        rows=int(row.get("_rows") or 0),
    )


def _num(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return int(v)
    return float(v) if not isinstance(v, int) else v


def compute(
    metric: Metric,
    windows: Sequence[Window],
    settings: Settings,
    engine: Engine,
    dimension: str | None = None,
    filters: Sequence[tuple[str, str]] = (),
) -> dict[Key, Cell]:
    """The KPI's cells per (window, segment). On a database kpibot did not create, a table the
    KPI reads that is not there, or a query the database refuses, is one line naming the KPI."""
    database.check_tables(engine, relations.unmapped_tables(reads(metric, dimension, filters)), metric.id)
    from metrics import rollups  # kpibot's own pre-aggregations, when fresh for these windows

    served = rollups.serve(metric, windows, settings, engine, dimension, filters)
    if served is not None:
        return served
    try:
        return _compute(metric, windows, settings, engine, dimension, filters)
    except database.Refused as exc:
        if exc.kpi:
            raise
        raise exc.for_kpi(metric.id) from exc


def reads(metric: Metric, dimension: str | None = None, filters: Sequence[tuple[str, str]] = ()) -> tuple[str, ...]:
    """The tables answering ``metric`` (cut by ``dimension``, filtered by ``filters``) reads."""
    names = [n for n in (dimension, *(name for name, _ in filters)) if n]
    via_customers = any(n in relations.customer_dimensions() and n not in metric.dimensions for n in names)
    return (*metric.tables, "customers") if via_customers and "customers" not in metric.tables else metric.tables


def _compute(
    metric: Metric,
    windows: Sequence[Window],
    settings: Settings,
    engine: Engine,
    dimension: str | None = None,
    filters: Sequence[tuple[str, str]] = (),
) -> dict[Key, Cell]:
    measure = metric.measure
    if isinstance(measure, Custom):
        custom: dict[Key, Cell] = {}
        for key, computed in measure.compute(engine, windows, settings, dimension, filters).items():
            fields = dict(computed)
            value, n, moe = fields.pop("value", None), fields.pop("n", None), fields.pop("moe", None)
            custom[key] = Cell(value=value, n=n, moe=moe, extras=fields or None, rows=int(n or 0))
        return custom
    if isinstance(measure, Derived):
        parts = {i: compute(CATALOGUE[i], windows, settings, engine, dimension, filters) for i in measure.inputs}
        keys = set().union(*(p.keys() for p in parts.values()))
        out: dict[Key, Cell] = {}
        for key in keys:
            cells = {i: parts[i].get(key) for i in measure.inputs}
            values = {i: c.value if c else None for i, c in cells.items()}
            value = measure.combine(values)
            most = max((c.rows for c in cells.values() if c), default=0)
            out[key] = Cell(value=value, extras={f"{i}": v for i, v in values.items()}, rows=most)
        return out
    shape = (metric.id, tuple(filters), dimension, _layers(windows), len(windows), repr(settings), _env(),
             relations.generation())
    stmt = _statements.get(shape)
    if stmt is None:
        stmt = compile_measure(metric, measure, windows, settings, dimension, filters)
        _statements.put(shape, stmt)
        found = execute(engine, stmt)
    else:
        found = execute(engine, stmt, _values(windows, settings))
    return {(r["w"], _group(r["grp"]) if dimension else None): _finalize(metric, measure, r) for r in found}


class _LRU:
    """Built statements by structure: building one costs 1-10 ms (a 2-year monthly trend has
    50 windows), and a statement object seen before also skips SQLAlchemy's cache-key walk."""

    def __init__(self, size: int = 512):
        self.size, self.lock = size, threading.Lock()
        self.items: OrderedDict[tuple, Select] = OrderedDict()

    def get(self, key):
        with self.lock:
            item = self.items.get(key)
            if item is not None:
                self.items.move_to_end(key)
            return item

    def put(self, key, item) -> None:
        with self.lock:
            self.items[key] = item
            while len(self.items) > self.size:
                self.items.popitem(last=False)


_statements = _LRU()


def _env() -> tuple:
    """The KPI_ settings a catalogue entry may read while its SQL is built (e.g. inactive days)."""
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("KPI_")))


def _group(value) -> str:
    return "(not set)" if value is None or value == "" else str(value)


def execute(engine: Engine, stmt, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Runs one aggregate statement under the query deadline (``database.query``)."""
    with database.query(engine) as conn:
        return [dict(r) for r in conn.execute(stmt, params).mappings().all()]  # one fetchall, not a fetch per row


# ---- building the answer ------------------------------------------------------------------


def run(query: Query, *, engine: Engine | None = None, settings: Settings | None = None,
        every_cut: bool = False) -> Result:
    """The answer to ``query``. ``every_cut`` (the caller explains a real change): a
    breakdown is cut from the explanation's one scan of every candidate dimension, which
    "what moved it" then reads instead of scanning again (:attr:`Result.cuts`). At 10M events
    that leaves out one statement of the 4-5 an explained breakdown sends: new MRR by
    industry 73 ms, the ticket backlog by industry 87 ms."""
    started = time.perf_counter()
    settings = settings or Settings.from_env()
    engine = engine or database.get_engine()
    metric = CATALOGUE[query.metric]
    windows: list[Window] = [(query.period.start, query.period.end), (query.compare.start, query.compare.end)]
    series_windows: list[Window] = []
    previous_windows: list[Window] = []
    if query.grain:
        series_windows = buckets(query.period, query.grain, settings)
        previous_windows = buckets(query.compare, query.grain, settings)
    cells = compute(metric, windows + series_windows + previous_windows, settings, engine, None, query.filters)
    through = freshness.data_through(metric.tables, engine, settings, query.as_of)
    current = _loaded(cells.get((0, None)), query.period.start, through)
    prior = _loaded(cells.get((1, None)), query.compare.start, through)
    result = Result(
        query=query,
        metric=metric,
        period=query.period,
        value=current.value,
        n=current.n,
        moe=current.moe,
        previous=PeriodValue(query.compare, prior.value, prior.n),
        extras=current.extras or {},
        data_through=through,
    )
    note = result.extras.pop("note", None)  # a model's own caveat (predicted CLV) is said in the answer
    if isinstance(note, str) and note:
        result.notes.append(note)
    offset = len(windows)
    grain = query.grain or "day"
    result.series = [_point(cells, offset + i, w, grain, settings, through) for i, w in enumerate(series_windows)]
    offset += len(series_windows)
    result.previous_series = [
        _point(cells, offset + i, w, grain, settings, through) for i, w in enumerate(previous_windows)
    ]
    comparable = _caveats(result, query, through)
    _judge(result, prior, comparable)
    if query.dimension and (through is None or query.period.start <= through):
        grouped = _every_cut(result, windows, settings, engine) if every_cut else None
        if grouped is None:
            grouped = compute(metric, windows, settings, engine, query.dimension, query.filters)
        _breakdown(result, grouped)
    result.notes[:0] = list(query.readings)  # how the question's words were read
    result.elapsed_ms = (time.perf_counter() - started) * 1000
    return result


def _every_cut(result: Result, windows: list[Window], settings: Settings, engine: Engine) -> dict[Key, Cell] | None:
    """The breakdown's cells from the one scan of every dimension the explanation will try
    (kept as ``result.cuts``); None when there will be no explanation or no such scan."""
    from metrics import access, explain  # explain reads this module's compute

    query = result.query
    if not explain.worth_explaining(result):
        return None
    dims = explain.candidates(result.metric, query.filters)
    if query.dimension not in dims:
        return None
    try:
        scans = explain.one_scan_of(result.metric, windows, settings, engine, dims, tuple(query.filters))
    except access.AccessDenied:  # a dimension the asker may not read: the breakdown alone, unexplained
        return None
    if scans is None:
        return None
    result.cuts = scans
    return scans[query.dimension]


def _loaded(cell: Cell | None, start: date, through: date | None) -> Cell:
    """A window that starts after the data ends has no data: never the 0 an empty window sums to."""
    if cell is None or (through is not None and start > through):
        return Cell(None)
    return cell


def _caveats(result: Result, query: Query, through: date | None) -> bool:
    """Notes on data that is not all there; False when the two periods are not like for like
    (then the change is shown but not judged good or bad)."""
    comparable = True
    period, compare = query.period, query.compare
    if through is not None and result.value is not None and not freshness.fully_loaded(through, period.end):
        missing = (period.end - through).days - 1
        result.notes.append(
            f"Data through {through:%-d %b %Y}: "
            + ("the last day of this period is" if missing == 1 else f"the last {missing} days of this period are")
            + " not loaded yet, so it is incomplete and not judged good or bad."
        )
        comparable = False
    if query.as_of is not None and period.end > query.as_of and period.start <= query.as_of:
        result.notes.append(f"Today ({query.as_of:%-d %b}) is not over: this is today so far.")
        comparable = False
    if period.to_date and compare.days != period.days and not result.metric.snapshot:
        result.notes.append(
            f"Not like for like: {span_label(period.start, period.end)} ({period.days} days) "
            f"vs {span_label(compare.start, compare.end)} ({compare.days} days)."
        )
        comparable = False
    return comparable


def _full_bucket(ws: date, we: date, grain: str, settings: Settings) -> bool:
    first = unit_start(ws, grain, settings)
    return ws == first and we == step(first, grain)


def _point(
    cells: dict[Key, Cell], index: int, window: Window, grain: str, settings: Settings, through: date | None
) -> Point:
    """One trend bucket; one cut short (by the period's edge, or by the end of the data) is
    marked partial: a 2-day "week" is not a full one and must not be read as a cliff."""
    ws, we = window
    cell = _loaded(cells.get((index, None)), ws, through)
    partial = not _full_bucket(ws, we, grain, settings) or (
        cell.value is not None and not freshness.fully_loaded(through, we) and through is not None
    )
    days = (we - ws).days if through is None or through >= we else max(0, (through - ws).days + 1)
    return Point(ws, cell.value, cell.n, partial, days)


def _breakdown(result: Result, grouped: dict[Key, Cell]) -> None:
    current = {g: c for (w, g), c in grouped.items() if w == 0}
    prior = {g: c for (w, g), c in grouped.items() if w == 1}
    groups = [
        Group(_group(g), c.value, c.n, prior[g].value if g in prior else None, c.extras or {})
        for g, c in current.items()
    ]
    if len(current) >= MAX_SEGMENTS:
        result.notes.append(f"More than {MAX_SEGMENTS} segments: only the largest are counted here.")
    sign = 1.0 if result.query.sort == "asc" else -1.0  # "lowest …", "bottom 3 …": lowest first
    groups.sort(key=lambda g: (g.value is None, sign * (g.value or 0.0)))
    limit = result.query.limit
    if limit is not None and len(groups) > limit:  # "top 3 plans": the 3 best-ranked segments
        result.breakdown_truncated = len(groups) - limit
        groups = groups[:limit]
    elif len(groups) > SHOWN_SEGMENTS:
        result.breakdown_truncated = len(groups) - SHOWN_SEGMENTS
        by_size = sorted(current.items(), key=lambda kv: -kv[1].rows)[:SHOWN_SEGMENTS]
        keep = {g for g, _ in by_size}
        groups = [g for g in groups if g.group in keep]
    result.breakdown = groups


def _judge(result: Result, prior: Cell, comparable: bool = True) -> None:
    metric = result.metric
    if result.value is not None and prior.value is not None:
        result.change = result.value - prior.value
        if prior.value and metric.unit not in ("percent", "score"):
            result.change_pct = 100.0 * result.change / abs(prior.value)
        scale = max(abs(prior.value), abs(result.value), 1e-9)
        if abs(result.change) <= 1e-9 * scale or metric.direction == "neutral":
            result.judgement = "flat" if abs(result.change) <= 1e-9 * scale else None
        else:
            up = result.change > 0
            result.judgement = "good" if up == (metric.direction == "higher") else "bad"
        if result.moe is not None and prior.moe is not None:
            combined = (result.moe**2 + prior.moe**2) ** 0.5
            if abs(result.change) <= combined and result.change != 0:
                # inside the noise: no verdict, only the note (never "good" beside "may be noise")
                result.within_noise = True
                result.judgement = None
                result.notes.append(
                    f"The change is within the margin of error (±{combined:.1f}); it may be noise, "
                    "so it is not called good or bad."
                )
        if not comparable and result.judgement in ("good", "bad"):
            result.judgement = None
    result.band = metric.band_for(result.value)
    if metric.survey and result.n is not None and result.n < metric.min_sample:
        result.notes.append(
            f"Only {result.n} responses: fewer than {metric.min_sample}, so treat this with caution."
        )
    if result.value is None:
        through = result.data_through
        if through is not None and result.period.start > through:
            result.notes.append(f"No data for this period ({freshness.through_text(through)}).")
        else:
            result.notes.append("No data for this period.")


def period_value(metric_id: str, period: Period, settings: Settings, engine: Engine) -> Cell:
    """One KPI over one period: for digests and alerts, which need no comparison. A period
    that starts after the KPI's data ends has no value."""
    metric = CATALOGUE[metric_id]
    cells = compute(metric, [(period.start, period.end)], settings, engine)
    return _loaded(cells.get((0, None)), period.start, freshness.data_through(metric.tables, engine, settings))


__all__ = ["run", "compute", "compile_measure", "period_value", "Cell", "base_table"]
