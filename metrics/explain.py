"""Which segment moved a KPI most: "NPS fell 44 points; EMEA region, Enterprise size band explains 86% of the drop".

For a KPI whose segments add up (``Metric.split == "sum"``: counts, amounts) a segment's
contribution to the change is its own change, value_now(s) − value_prev(s). For a KPI that is
an n-weighted mean of its segments (``split == "mean"``: NPS, CSAT, churn rate …) it is the
mix-adjusted

    contribution(s) = share_now(s) · value_now(s) − share_prev(s) · value_prev(s)
                      − value_prev · (share_now(s) − share_prev(s)),

with share(s) = n(s) ÷ Σ n and value_prev the whole previous value. The last term adds up to
zero over the segments; it only stops a segment that grew (or shrank) while scoring at the
old average from "explaining" the change. Either way the contributions add up to the whole
change (value_now − value_prev). Every
customer dimension (and the KPI's own columns) is tried; the segment with the largest
contribution in the direction of the change wins. Then that segment is split by the runner-up
dimension: when one of the pieces (e.g. Enterprise within EMEA) carries most of the segment's
contribution, the sentence names the piece instead. That is one grouped query per dimension
plus one, over the two periods only, all aggregated in the database; where the database has
GROUPING SETS the per-dimension queries are one scan (:mod:`metrics.scan`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from metrics import scan
from metrics.catalogue import dimensions_for
from metrics.engine import Cell, compute
from metrics.periods import Settings
from metrics.render import format_change, format_value
from metrics.result import Result
from metrics.spec import Measure, Metric
from storage import database

NOT_SET = "(not set)"
#: A narrower segment (a pair) is named when it carries at least this share of its parent's contribution.
PAIR_KEEP = 0.75
#: Contributions must add up to the change within this tolerance, or the split is not trusted.
TOLERANCE = 0.02


@dataclass
class Contribution:
    dimension: str
    segment: str
    amount: float  # in the KPI's unit; the contributions of a dimension add up to the change
    now: float | None
    before: float | None
    rows: tuple[int, int] = (0, 0)  # rows behind the segment now and before
    parent: Contribution | None = None  # for a pair: the segment it is a piece of


def _cells(grouped: Mapping[tuple[int, str | None], Cell]) -> tuple[dict[str, Cell], dict[str, Cell]]:
    now = {g: c for (w, g), c in grouped.items() if w == 0 and g is not None}
    before = {g: c for (w, g), c in grouped.items() if w == 1 and g is not None}
    return now, before


def _totals(now: dict[str, Cell], before: dict[str, Cell]) -> tuple[float, float]:
    return (
        float(sum(c.n or 0 for c in now.values() if c.value is not None)),
        float(sum(c.n or 0 for c in before.values() if c.value is not None)),
    )


def contributions(
    metric: Metric,
    dimension: str,
    grouped: Mapping[tuple[int, str | None], Cell],
    totals: tuple[float, float] | None = None,
    baseline: float = 0.0,
) -> list[Contribution] | None:
    """Each segment's contribution to the change between window 1 (before) and window 0 (now).

    ``totals`` (Σ n now, Σ n before) default to this breakdown's own; a breakdown inside a
    segment passes the whole population's, so that its pieces' shares are shares of all.
    ``baseline`` is the whole previous value (mean KPIs only, see the module docstring)."""
    now, before = _cells(grouped)
    if metric.split == "mean":
        if any(c.n is None for c in (*now.values(), *before.values()) if c.value is not None):
            return None
        n_now, n_before = totals or _totals(now, before)
        if not n_now or not n_before:
            return None
    out = []
    for segment in sorted(set(now) | set(before)):
        a, b = now.get(segment), before.get(segment)
        v_now = a.value if a else None
        v_before = b.value if b else None
        if metric.split == "mean":
            share_now = (a.n or 0) / n_now if a and v_now is not None else 0.0
            share_before = (b.n or 0) / n_before if b and v_before is not None else 0.0
            amount = share_now * ((v_now or 0.0) - baseline) - share_before * ((v_before or 0.0) - baseline)
        else:
            amount = (v_now or 0.0) - (v_before or 0.0)
        rows = (a.rows if a else 0, b.rows if b else 0)
        out.append(Contribution(dimension, segment, amount, v_now, v_before, rows))
    return out


def _adds_up(parts: Sequence[Contribution], change: float) -> bool:
    return abs(sum(p.amount for p in parts) - change) <= TOLERANCE * abs(change) + 1e-9


def _best(parts: Sequence[Contribution], sign: float) -> Contribution | None:
    top = max(parts, key=lambda p: sign * p.amount, default=None)
    return top if top is not None and sign * top.amount > 0 else None


def worth_explaining(result: Result) -> bool:
    """Whether "what moved it" is looked for: a change judged good or bad (not inside the
    noise, not from too few answers) of a KPI whose segments add up or average out."""
    return (result.judgement in ("good", "bad") and result.metric.split in ("sum", "mean")
            and isinstance(result.metric.measure, Measure)
            and not any("margin of error" in note or "treat this with caution" in note for note in result.notes))


def candidates(metric: Metric, filters: Sequence[tuple[str, str]]) -> list[str]:
    """The dimensions a change is looked for in: the KPI's own and its customers', less those
    the question fixes."""
    fixed = {name for name, _ in filters}
    return [dim for dim in dimensions_for(metric) if dim not in fixed]


def find(result: Result, engine: Engine, settings: Settings, one_scan: bool = True) -> Contribution | None:
    """The segment (or pair of segments) that explains most of the change, if any. Every
    dimension is cut from one grouped scan (:mod:`metrics.scan`) where the database can;
    ``one_scan=False`` runs one query per dimension (what the scan must equal)."""
    metric = result.metric
    if metric.split not in ("sum", "mean") or not isinstance(metric.measure, Measure):
        return None
    prev = result.previous
    if result.value is None or prev is None or prev.value is None:
        return None
    change = result.value - prev.value
    scale = max(abs(result.value), abs(prev.value), 1e-9)
    if abs(change) <= 1e-9 * scale:
        return None
    sign = 1.0 if change > 0 else -1.0
    windows = [(result.period.start, result.period.end), (prev.period.start, prev.period.end)]
    filters = tuple(result.query.filters)
    best_per_dim: list[tuple[Contribution, tuple[float, float] | None]] = []
    dims = candidates(metric, filters)
    scans: dict[str, Any] | None
    if one_scan and result.cuts is not None and set(dims) <= set(result.cuts):
        scans = result.cuts  # the breakdown was cut from this scan already (engine.run)
    else:
        scans = one_scan_of(metric, windows, settings, engine, dims, filters) if one_scan else None
    for dim in dims:
        grouped = scans[dim] if scans is not None else compute(metric, windows, settings, engine, dim, filters)
        parts = contributions(metric, dim, grouped, baseline=prev.value)
        if not parts or len(parts) < 2 or not _adds_up(parts, change):
            continue  # one segment is everyone: it explains nothing
        top = _best(parts, sign)
        if top is not None:
            totals = _totals(*_cells(grouped)) if metric.split == "mean" else None
            best_per_dim.append((top, totals))
    if not best_per_dim:
        return None
    best_per_dim.sort(key=lambda bt: -sign * bt[0].amount)
    best, totals = best_per_dim[0]
    if best.segment == NOT_SET:
        return best
    for runner_up, _ in best_per_dim[1:]:
        inner = compute(metric, windows, settings, engine, runner_up.dimension, (*filters, (best.dimension, best.segment)))
        pieces = contributions(metric, runner_up.dimension, inner, totals, prev.value) or []
        piece = _best([p for p in pieces if p.segment != NOT_SET], sign)
        # narrower (piece.rows != best.rows), else the same customers, renamed
        if piece is not None and piece.rows != best.rows and sign * piece.amount >= PAIR_KEEP * sign * best.amount:
            piece.parent = best
            return piece
        break  # only the runner-up dimension is tried: one extra query
    return best


def one_scan_of(metric, windows, settings, engine, dims, filters):
    """Every dimension from one statement; None (a statement per dimension) where the database
    cannot, or refused it: grouping sets of exact medians need more memory than one set at a
    time, and DuckDB cannot spill those to disk."""
    try:
        return scan.by_each(metric, windows, settings, engine, dims, filters)
    except database.DatabaseError:
        left = database.remaining()
        if left is not None and left <= 0:
            raise
        return None


def segment_name(dimension: str, segment: str) -> str:
    """A segment as people say it: "Enterprise size band", "EMEA region", "no plan set"."""
    words = dimension.replace("_", " ")
    return f"no {words} set" if segment == NOT_SET else f"{segment} {words}"


def sentence(result: Result, found: Contribution) -> str:
    """"NPS fell 43.8 points vs previous quarter; EMEA region, Enterprise size band explains 86%
    of the drop (…)". A segment that moved more than the whole (the rest moved the other way)
    is said as two movements, never as "explains 616% of the rise"."""
    metric = result.metric
    assert result.value is not None and result.previous is not None and result.previous.value is not None, \
        "a sentence is only made for a change between two values"
    change = result.value - result.previous.value
    verb, noun = ("rose", "rise") if change > 0 else ("fell", "drop")
    where = segment_name(found.dimension, found.segment)
    if found.parent is not None:
        where = f"{segment_name(found.parent.dimension, found.parent.segment)}, {where}"
    share = 100.0 * found.amount / change
    if found.before is None:
        detail = f"new this period, {format_value(metric, found.now)}"
    elif found.now is None:
        detail = f"gone this period, was {format_value(metric, found.before)}"
    else:
        detail = f"{metric.label} there went from {format_value(metric, found.before)} to {format_value(metric, found.now)}"
    head = f"{metric.label} {verb} {_size(metric, change)} vs {result.previous.period.label}"
    if share <= 100.5:
        return f"{head}; {where} explains {share:.0f}% of the {noun} ({detail})."
    rest = change - found.amount
    if metric.split == "sum":
        moved = f"{where} {_verb(found.amount)} by {_size(metric, found.amount)} ({detail}) " \
                f"while the rest {_verb(rest)} by {_size(metric, rest)}"
    else:
        moved = f"{where} pulled it {_way(found.amount)} by {_size(metric, found.amount)} ({detail}) " \
                f"while the rest pulled it {_way(rest)} by {_size(metric, rest)}"
    return f"{head}: {moved}."


def _size(metric: Metric, amount: float) -> str:
    return format_change(metric, abs(amount)).lstrip("+")


def _verb(amount: float) -> str:
    return "rose" if amount > 0 else "fell"


def _way(amount: float) -> str:
    return "up" if amount > 0 else "down"


def explain(result: Result, engine: Engine, settings: Settings) -> str | None:
    """One sentence naming the segment that moved the KPI most, or None when there is no
    change, the KPI does not split over segments, or no segment moved with the change."""
    found = find(result, engine, settings)
    return None if found is None else sentence(result, found)


__all__ = ["candidates", "contributions", "Contribution", "explain", "find", "one_scan_of", "segment_name", "sentence",
           "worth_explaining"]
