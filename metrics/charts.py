"""PNG charts with matplotlib's object API on Agg: no pyplot global state, safe in threads."""

from __future__ import annotations

import io

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from metrics.render import format_value, scope
from metrics.result import Result
from metrics.spec import Metric

CURRENT = "#1f6feb"
PREVIOUS = "#8b949e"
GOOD = "#2da44e"
BAD = "#cf222e"


def _figure() -> tuple[Figure, Axes]:
    fig = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    return fig, ax


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _unit_label(metric: Metric) -> str:
    return {"percent": "%", "currency": "currency", "score": "score", "count": "count"}.get(metric.unit, metric.unit)


def _bands(ax, metric: Metric, horizontal: bool) -> None:
    """Shade the seed's benchmark bands behind the data (only the lines inside the view)."""
    lo, hi = ax.get_ylim() if horizontal else ax.get_xlim()
    for band in metric.bands:
        b_lo = lo if band.low is None else max(band.low, lo)
        b_hi = hi if band.high is None else min(band.high, hi)
        if b_lo >= b_hi:
            continue
        color = GOOD if band.good else BAD
        if horizontal:
            ax.axhspan(b_lo, b_hi, color=color, alpha=0.06, zorder=0)
        else:
            ax.axvspan(b_lo, b_hi, color=color, alpha=0.06, zorder=0)
    if horizontal:
        ax.set_ylim(lo, hi)
    else:
        ax.set_xlim(lo, hi)


def _legend(fig: Figure, ax) -> None:
    """Below the plot, where it never covers data."""
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=9, frameon=False)


def render_png(result: Result, *, threshold: float | None = None) -> bytes | None:
    """A chart that suits the answer: a trend line, segment bars, or this period vs the last.
    Drawn once per cached answer (:func:`metrics.cache.chart`): a repeated question's chart
    is a look-up too."""
    from metrics import cache

    return cache.chart(result, threshold, lambda: _render_png(result, threshold))


def _render_png(result: Result, threshold: float | None) -> bytes | None:
    metric = result.metric
    if result.series and any(p.value is not None for p in result.series):
        return _trend(result, threshold)
    if result.breakdown and any(g.value is not None for g in result.breakdown):
        return _bars(result, threshold)
    if result.value is None and (result.previous is None or result.previous.value is None):
        return None
    fig, ax = _figure()
    labels = [result.previous.period.label if result.previous else "previous", result.period.label]
    values = [result.previous.value if result.previous else None, result.value]
    xs = [0, 1]
    heights = [v or 0.0 for v in values]
    colors = [PREVIOUS, CURRENT]
    ax.bar(xs, heights, color=colors, width=0.55)
    for x, v in zip(xs, values, strict=True):
        ax.annotate(format_value(metric, v), (x, v or 0.0), ha="center", va="bottom", fontsize=12, xytext=(0, 3), textcoords="offset points")
    ax.set_xticks(xs, [label[:32] for label in labels])
    ax.set_ylabel(_unit_label(metric))
    _bands(ax, metric, True)
    if threshold is not None:
        ax.axhline(threshold, color=BAD, linestyle=":", linewidth=1.5, label="threshold")
    ax.set_title(title(result, "compare"), fontsize=13, loc="left")
    return _png(fig)


def _trend(result: Result, threshold: float | None) -> bytes:
    metric = result.metric
    fig, ax = _figure()
    xs = [p.start for p in result.series]
    # Full buckets as a solid line; a partial one (a 2-day "week" at the period's edge, or one
    # the data does not reach yet) as a hollow, lighter point joined by a dotted line, so a
    # short bucket is not read as a cliff.
    full = [None if p.partial else p.value for p in result.series]
    ax.plot(xs, full, marker="o", markersize=3.5, color=CURRENT, linewidth=2, label=result.period.label)
    partial = [(i, p) for i, p in enumerate(result.series) if p.partial and p.value is not None]
    if partial:
        for i, p in partial:
            near = [j for j in (i - 1, i + 1) if 0 <= j < len(xs) and full[j] is not None]
            for j in near:
                ax.plot([xs[j], p.start], [full[j], p.value], linestyle=":", color=CURRENT, alpha=0.5, linewidth=1.5)
        ax.plot(
            [p.start for _, p in partial], [p.value for _, p in partial], linestyle="none", marker="o",
            markersize=6, markerfacecolor="white", markeredgecolor=CURRENT, alpha=0.7,
            label=f"partial {result.query.grain} (not a full one)",
        )
    if result.previous_series:
        prev = result.previous_series[: len(xs)]
        ax.plot(
            xs[: len(prev)],
            [p.value for p in prev],
            linestyle="--",
            color=PREVIOUS,
            linewidth=1.5,
            label=f"{result.previous.period.label if result.previous else 'previous'} (aligned)",
        )
    locator = AutoDateLocator(maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_ylabel(_unit_label(metric))
    _bands(ax, metric, True)
    if threshold is not None:
        ax.axhline(threshold, color=BAD, linestyle=":", linewidth=1.5, label="threshold")
    _legend(fig, ax)
    ax.set_title(title(result, "trend"), fontsize=13, loc="left")
    return _png(fig)


def _bars(result: Result, threshold: float | None) -> bytes:
    metric = result.metric
    groups = [g for g in result.breakdown if g.value is not None][:25]
    groups.reverse()  # largest at the top
    fig, ax = _figure()
    fig.set_size_inches(8, max(3.0, 0.38 * len(groups) + 1.5))
    ys = list(range(len(groups)))
    ax.barh(ys, [g.value for g in groups], color=CURRENT, height=0.6, label=result.period.label)
    prev = [(y, g.previous) for y, g in zip(ys, groups, strict=True) if g.previous is not None]
    if prev:
        ax.scatter([p for _, p in prev], [y for y, _ in prev], marker="|", s=200, color=PREVIOUS, zorder=3, label="previous period")
    for y, g in zip(ys, groups, strict=True):
        ax.annotate(format_value(metric, g.value), (g.value, y), va="center", fontsize=9, xytext=(4, 0), textcoords="offset points")
    ax.set_yticks(ys, [g.group[:24] for g in groups])
    ax.grid(axis="x", alpha=0.3)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel(_unit_label(metric))
    _bands(ax, metric, False)
    if threshold is not None:
        ax.axvline(threshold, color=BAD, linestyle=":", linewidth=1.5, label="threshold")
    _legend(fig, ax)
    ax.set_title(title(result, "bars"), fontsize=13, loc="left")
    return _png(fig)


def title(result: Result, kind: str) -> str:
    """A chart's title names the KPI, the cut, the filters and the period (a filtered chart
    must not read like the unfiltered one)."""
    query = result.query
    filters = " · where " + ", ".join(f"{d} = {v}" for d, v in query.filters) if query.filters else ""
    if kind == "bars":
        return f"{result.metric.label}{scope(query)} — {result.period.label}"
    if kind == "trend":
        return f"{result.metric.label} by {query.grain}{filters} — {result.period.label}"
    return f"{result.metric.label}{filters} — {result.period.label}"
