"""Plain-text answers (Slack mrkdwn compatible), JSON, definitions and help.

The Slack front end builds Block Kit from the same pieces (``headline``, ``change_line`` …),
so a number reads the same in the terminal, in Slack and in a digest.
"""

from __future__ import annotations

import os
from typing import Any

from metrics.catalogue import CATALOGUE, GROUPS, dimensions_for, resolve
from metrics.query import Query
from metrics.result import Result
from metrics.spec import Metric

ARROWS = {"up": "▲", "down": "▼", "flat": "▶"}


def currency() -> str:
    return os.environ.get("KPI_CURRENCY", "$")


def format_value(metric: Metric, value: float | None) -> str:
    return format_unit(metric.unit, value)


def format_unit(unit: str, value: float | None) -> str:
    """A number in a unit (see :attr:`Metric.unit`) as people read it: $1,234, 2.2%, 3.5 h."""
    if value is None:
        return "no data"
    if unit == "percent":
        return f"{value:.1f}%"
    if unit == "score":
        return f"{value:.1f}"
    if unit == "count":
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
    if unit == "currency":
        sign = "-" if value < 0 else ""
        v = abs(value)
        return f"{sign}{currency()}{v:,.0f}" if v >= 100 else f"{sign}{currency()}{v:,.2f}"
    if unit == "hours":
        if abs(value) < 1:
            return f"{value * 60:.0f} min"
        return f"{value:.1f} h"
    if unit == "ratio":
        return f"{value:.2f}×"
    if unit in ("months", "days", "minutes", "seconds"):
        return f"{value:,.1f} {unit}"
    return f"{value:,.2f}"


def format_change(metric: Metric, change: float, change_pct: float | None = None) -> str:
    sign = "+" if change > 0 else "−" if change < 0 else "±"
    mag = abs(change)
    if metric.unit == "percent":
        text = f"{sign}{mag:.1f} pp"
    elif metric.unit == "score":
        text = f"{sign}{mag:.1f} points"
    else:
        text = sign + format_value(metric, mag)
    if change_pct is not None:
        text += f" ({'+' if change_pct >= 0 else '−'}{abs(change_pct):.1f}%)"
    return text


def scope(query: Query) -> str:
    """The cut and filters a question asked for, as words: " by plan · where region = EMEA"."""
    text = ""
    if query.dimension:
        rank = {"desc": "highest first", "asc": "lowest first"}.get(query.sort or "")
        top = f"top {query.limit} " if query.limit and query.sort == "desc" else f"bottom {query.limit} " if query.limit else ""
        text += f" by {query.dimension}" + (f" ({top}{rank})" if rank else "")
    if query.filters:
        text += " · where " + ", ".join(f"{d} = {v}" for d, v in query.filters)
    return text


def headline(result: Result) -> str:
    """KPI, cut, filters, period and comparison: what was understood, at a glance."""
    compare = result.previous.period.label if result.previous is not None else None
    return f"{result.metric.label}{scope(result.query)} — {result.period}" + (f" · vs {compare}" if compare else "")


def value_line(result: Result) -> str:
    text = format_value(result.metric, result.value)
    if result.extras.get("recurring") is not None and result.metric.id == "revenue":
        text += (
            f" (recurring {format_value(result.metric, result.extras['recurring'])},"
            f" one-off {format_value(result.metric, result.extras['one_off'])})"
        )
    return text


def change_line(result: Result) -> str | None:
    prev = result.previous
    if prev is None:
        return None
    label = prev.period.label
    if result.change is None:
        if prev.value is None:
            return f"No data for the {label} to compare with."
        return f"{label}: {format_value(result.metric, prev.value)}"
    arrow = ARROWS["up" if result.change > 0 else "down" if result.change < 0 else "flat"]
    verdict = {"good": " — good", "bad": " — bad", "flat": " — unchanged"}.get(result.judgement or "", "")
    return (
        f"{arrow} {format_change(result.metric, result.change, result.change_pct)} vs {label} "
        f"({format_value(result.metric, prev.value)}){verdict}"
    )


def extras_line(result: Result) -> str | None:
    """The figures a KPI documents beside its value (paying vs free, longest outage …)."""
    docs = result.metric.extras_doc
    parts = []
    for key, label in docs.items():
        value = result.extras.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and key not in ("recurring", "one_off"):
            unit = result.metric.extras_units.get(key)
            if unit:
                shown = format_unit(unit, value)
            else:
                shown = f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:,.2f}"
            parts.append(f"{label}: {shown}")
    return " · ".join(parts) if parts else None


def sample_line(result: Result) -> str | None:
    if result.n is None or not result.metric.survey:
        return None
    text = f"n = {result.n:,} responses"
    if result.moe is not None:
        unit = " pp" if result.metric.unit == "percent" else ""
        text += f", ±{result.moe:.1f}{unit} (95% margin of error)"
    return text


def bands_text(metric: Metric) -> str | None:
    if not metric.bands:
        return None
    return "; ".join(b.label for b in metric.bands)


def freshness_line(result: Result) -> str | None:
    """Where the data ends ("Data through 22 Nov 2026."), so a reader can tell a quiet period
    from one not loaded yet."""
    through = result.data_through
    return None if through is None else f"Data through {through:%-d %b %Y}."


def trend_summary(result: Result) -> str | None:
    """First → last complete bucket, and which buckets are partial (a 2-day "week" is not a
    cliff): "Trend by week: 20.0 (2026-07-06) → 35.0 (2026-09-21), 14 points; partial: …"."""
    shown = [p for p in result.series if p.value is not None]
    if not shown:
        return None
    whole = [p for p in shown if not p.partial] or shown
    first, last = whole[0], whole[-1]
    grain = result.query.grain
    text = (
        f"Trend by {grain}: {format_value(result.metric, first.value)} ({first.start.isoformat()}) → "
        f"{format_value(result.metric, last.value)} ({last.start.isoformat()}), {len(result.series)} points"
    )
    partial = [p for p in result.series if p.partial]
    if partial:
        parts = ", ".join(
            f"{p.start.isoformat()} ({p.days} day{'s' if p.days != 1 else ''})" if p.days is not None else p.start.isoformat()
            for p in partial
        )
        text += f"; partial {grain}s, not comparable with full ones: {parts}"
    return text


def context_line(result: Result) -> str:
    parts = [f"Formula: {result.metric.formula}."]
    if result.band is not None:
        parts.append(f"Benchmark: {result.band.label}.")
    elif result.metric.bands:
        parts.append(f"Benchmarks: {bands_text(result.metric)}.")
    return " ".join(parts)


def breakdown_table(result: Result) -> str | None:
    if not result.breakdown:
        return None
    metric = result.metric
    dim = result.query.dimension or "segment"
    show_n = any(g.n is not None for g in result.breakdown)
    rows = [[dim, metric.id, *(["n"] if show_n else []), "change"]]
    for g in result.breakdown:
        change = "" if g.value is None or g.previous is None else format_change(metric, g.value - g.previous)
        rows.append(
            [g.group[:28], format_value(metric, g.value), *([f"{g.n:,}" if g.n is not None else ""] if show_n else []), change]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)) for r in rows
    ]
    if result.breakdown_truncated:
        lines.append(f"… and {result.breakdown_truncated} smaller segments")
    return "\n".join(lines)


def text(result: Result) -> str:
    """The answer as the terminal shows it (and Slack, as mrkdwn)."""
    out = [f"*{headline(result)}*", f"*{value_line(result)}*"]
    for line in (change_line(result), result.explanation, sample_line(result), extras_line(result)):
        if line:
            out.append(line)
    table = breakdown_table(result)
    if table:
        out.append("```\n" + table + "\n```")
    trend = trend_summary(result)
    if trend:
        out.append(trend)
    out.extend(f"_{note}_" for note in result.notes)
    fresh = freshness_line(result)
    if fresh:
        out.append(fresh)
    out.append(context_line(result))
    return "\n".join(out)


def to_json(result: Result) -> dict[str, Any]:
    def period(p):
        return {"start": p.start.isoformat(), "end": p.end.isoformat(), "label": p.label}

    return {
        "metric": result.metric.id,
        "label": result.metric.label,
        "unit": result.metric.unit,
        "period": period(result.period),
        "value": result.value,
        "n": result.n,
        "moe": result.moe,
        "previous": None
        if result.previous is None
        else {**period(result.previous.period), "value": result.previous.value, "n": result.previous.n},
        "change": result.change,
        "change_pct": result.change_pct,
        "judgement": result.judgement,
        "within_noise": result.within_noise,
        "data_through": None if result.data_through is None else result.data_through.isoformat(),
        "band": result.band.label if result.band else None,
        "dimension": result.query.dimension,
        "breakdown": [
            {"group": g.group, "value": g.value, "n": g.n, "previous": g.previous} for g in result.breakdown
        ],
        "series": [
            {"start": p.start.isoformat(), "value": p.value, "n": p.n, "partial": p.partial, "days": p.days}
            for p in result.series
        ],
        "previous_series": [
            {"start": p.start.isoformat(), "value": p.value, "partial": p.partial, "days": p.days}
            for p in result.previous_series
        ],
        "extras": {k: v for k, v in result.extras.items() if isinstance(v, int | float | str | None)},
        "notes": result.notes,
        "formula": result.metric.formula,
        "query": query_json(result.query),
    }


def query_json(query: Query) -> dict[str, Any]:
    """What the question was understood as, for machines (``--json``)."""

    def period(p):
        return {"start": p.start.isoformat(), "end": p.end.isoformat(), "label": p.label}

    return {
        "metric": query.metric,
        "period": period(query.period),
        "compare": period(query.compare),
        "dimensions": [query.dimension] if query.dimension else [],
        "filters": dict(query.filters),
        "grain": query.grain,
        "sort": query.sort,
        "limit": query.limit,
        "readings": list(query.readings),
        "text": query.text,
    }


def define(word: str) -> str:
    metric = resolve(word)
    lines = [
        f"*{metric.label}* (`{metric.id}`)",
        metric.description or "",
        f"Formula: {metric.formula}",
        f"Unit: {metric.unit}; {_direction(metric)}",
        f"Reads: {', '.join(metric.tables)}",
    ]
    if metric.bands:
        lines.append(f"Benchmarks (from the seed articles): {bands_text(metric)}")
    dims = dimensions_for(metric)
    if dims:
        lines.append(f"Break down by: {', '.join(dims)}")
    if metric.synonyms:
        lines.append(f"Also called: {', '.join(metric.synonyms)}")
    if metric.survey:
        lines.append(f"Survey KPI: answers carry n and a 95% margin of error; under {metric.min_sample} responses is flagged.")
    return "\n".join(line for line in lines if line)


def _direction(metric: Metric) -> str:
    return {"higher": "higher is better", "lower": "lower is better"}.get(metric.direction, "neither up nor down is good in itself")


def catalogue_list() -> str:
    lines = []
    for group in GROUPS:
        metrics = [m for m in CATALOGUE.values() if m.group == group]
        if metrics:
            lines.append(f"*{group.capitalize()}*: " + ", ".join(f"`{m.id}`" for m in metrics))
    return "\n".join(lines)


def help_text(prefix: str = "/kpi") -> str:
    return "\n".join(
        [
            "*Ask for a KPI:* " + f"`{prefix} <kpi> [period] [by <dimension>] [vs <period> | yoy] [trend|weekly|monthly] [where <dimension>=<value>]`",
            f"Examples: `{prefix} nps by industry last-quarter`, `{prefix} churn_rate trend`, "
            f"`{prefix} revenue ytd yoy`, `{prefix} first_response_time weekly where plan=Enterprise`",
            "Periods: today, yesterday, this/last week|month|quarter|year, last-7-days, last-3-months, "
            "mtd, qtd, ytd, 2026-Q3, Oct 2026, 2026, 2026-01-01 to 2026-03-31, since 2026-01-01. "
            "No period: the last 30 days.",
            f"`{prefix} list` — every KPI · `{prefix} define <kpi>` — formula and benchmarks · "
            f"`{prefix} digest …` / `{prefix} alert …` — schedules (`{prefix} digest help`)",
        ]
    )


def catalogue_markdown() -> str:
    """The README's KPI reference, generated so that it cannot drift from the catalogue."""
    out = []
    for group in GROUPS:
        metrics = [m for m in CATALOGUE.values() if m.group == group]
        if not metrics:
            continue
        out += [f"#### {group.capitalize()}", "", "| KPI | Formula | Unit | Better | Benchmarks | Also answers to |", "|---|---|---|---|---|---|"]
        for m in metrics:
            bands = bands_text(m) or ""
            syn = ", ".join(m.synonyms)
            out.append(f"| `{m.id}` {m.label} | {m.formula} | {m.unit} | {m.direction} | {bands} | {syn} |")
        out.append("")
    return "\n".join(out)
