"""The shapes a catalogue entry is written in.

Every KPI is computed over *windows*: a small derived table ``w`` with one row per period
asked about (``w``: index, ``ws``/``we``: UTC timestamps, ``ds``/``de``: local dates, ends
exclusive). A :class:`Measure` says which rows of a table belong to a window (``join``) and
which SQL aggregates to compute per window; ``finalize`` turns those few numbers into the
KPI's value in Python. The current period, the comparison period and every trend bucket are
windows of one query, so a whole answer is one or two round trips, all aggregated in the
database. This is the MetricFlow idea (simple, ratio, cumulative and derived metrics over
time grains and offset windows) reduced to one mechanism.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_

Aggs = Mapping[str, float | None]
# (table, windows) -> SQL expression
Expr = Callable[[Any, Any], ColumnElement]


@dataclass(frozen=True)
class Band:
    """A benchmark band quoted from the seed articles: values in [low, high) are ``label``."""

    label: str
    low: float | None = None
    high: float | None = None
    good: bool = True

    def contains(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value < self.high)


@dataclass(frozen=True)
class Reference:
    """A line that means something on the KPI's charts (100% net revenue retention: the
    customers of the period's start brought as much as before; an uptime objective)."""

    value: float
    label: str


@dataclass(frozen=True)
class Counted:
    """A ``pairs:`` source's pairs counted instead of listed: each entity of a window is one
    row standing for every item seen in it (``weight`` = their number, ``item`` NULL), beside
    the pairs held (weight 1). The metric's sums and counts are then weighted, which gives the
    same numbers from a row per entity instead of one per (entity, item). Not for a cut or a
    filter by the item itself, nor for an aggregate that does not add up (the engine then
    reads the listed pairs)."""

    table: Callable[[Any, Any], FromClause]
    item: str
    weight: str  # the weight column's name (metrics.model.summary.WEIGHT)


@dataclass(frozen=True)
class Measure:
    """Aggregates over the rows of ``table`` that ``join`` assigns to each window."""

    # a table name, or a callable building a FromClause: with no argument (e.g. a union of
    # two tables), or with one, the windows subquery ``w``, for sources aggregated per window
    # first (e.g. per customer and window); such a source carries a ``w`` column to join on.
    # A source taking two arguments also gets ``bucket(table, column, dates=False)``: that
    # table's rows inside the windows with ``_w``, the window each falls in (no range join).
    table: str | Callable[[], FromClause] | Callable[[Any], FromClause] | Callable[[Any, Any], FromClause]
    join: Expr
    aggregates: Mapping[str, Expr]
    finalize: Callable[[Aggs], dict[str, Any]]
    n: str | None = None  # which aggregate is the sample size shown to users
    where: Callable[[Any], ColumnElement] | None = None
    time_column: str | None = None  # prunes rows outside all windows before the join
    customer_key: str | None = "customer_id"  # joins customers for customer dimensions
    counted: Counted | None = None  # pairs: the same rows, counted (see Counted)


@dataclass(frozen=True)
class Derived:
    """A KPI computed from other KPIs of the same window (e.g. LTV:CAC)."""

    inputs: tuple[str, ...]
    combine: Callable[[Mapping[str, float | None]], float | None]


@dataclass(frozen=True)
class Custom:
    """A KPI that is a model, not an aggregate (predicted CLV): a function of the windows.

    ``compute(engine, windows, settings, dimension, filters)`` returns
    ``{(window index, segment or None): {"value": …, "n": …, extras…}}``. It must still do
    its heavy lifting in SQL and hold only per-customer summaries in Python.
    """

    compute: Callable[..., Mapping[tuple[int, str | None], Mapping[str, Any]]]


@dataclass(frozen=True)
class Metric:
    id: str
    label: str
    group: str  # satisfaction, customers, retention, financial, funnel, engagement, support, reliability, upsell
    unit: str  # score, percent, count, currency, hours, days, months, minutes, ratio, seconds
    formula: str
    direction: str  # higher, lower, neutral
    measure: Measure | Derived | Custom
    tables: tuple[str, ...]
    synonyms: tuple[str, ...] = ()
    bands: tuple[Band, ...] = ()
    reference: Reference | None = None  # drawn as a labelled line on the KPI's charts
    dimensions: tuple[str, ...] = ()  # the KPI's own columns it can be cut by
    customer_dimensions: bool = True
    survey: str | None = None  # nps, csat, ces, ppr: sample-size rules apply
    min_sample: int = 0
    snapshot: bool = False  # a level at the period's end (customers, MRR), not a flow
    # How a change splits over segments (metrics.explain): "sum" when the segments' values add
    # up to the total (counts, amounts), "mean" when the total is the n-weighted mean of the
    # segments' values (rates, scores, averages; needs Measure.n); None: not decomposable.
    split: str | None = None
    description: str = ""
    extras_doc: Mapping[str, str] = field(default_factory=dict)  # extra -> human label
    extras_units: Mapping[str, str] = field(default_factory=dict)  # extra -> unit (as ``unit``)

    def band_for(self, value: float | None) -> Band | None:
        if value is None:
            return None
        for band in self.bands:
            if band.contains(value):
                return band
        return None


# ---- small builders so catalogue entries read like their formulas -----------------------


def in_window(column: str) -> Expr:
    """Rows whose ``column`` falls inside the window."""

    def join(t, w):
        return and_(t.c[column] >= w.c.ws, t.c[column] < w.c.we)

    join.window_column = (column, False)  # type: ignore[attr-defined]  # a plain range: the engine may bucket rows instead
    return join


def date_in_window(column: str) -> Expr:
    def join(t, w):
        return and_(t.c[column] >= w.c.ds, t.c[column] < w.c.de)

    join.window_column = (column, True)  # type: ignore[attr-defined]  # read by the engine (see in_window)
    return join


def ratio(num: str, den: str, scale: float = 1.0) -> Callable[[Aggs], dict[str, Any]]:
    def fin(a: Aggs) -> dict[str, Any]:
        n, d = a.get(num), a.get(den)
        return {"value": None if not d or n is None else scale * n / d}

    return fin


def single(name: str, scale: float = 1.0) -> Callable[[Aggs], dict[str, Any]]:
    def fin(a: Aggs) -> dict[str, Any]:
        v = a.get(name)
        return {"value": None if v is None else scale * float(v)}

    return fin
