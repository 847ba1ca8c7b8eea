"""PNG charts with matplotlib's object API on Agg: no pyplot global state, safe in threads."""

from __future__ import annotations

import io
import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties

from metrics import chart_style as style
from metrics.render import scope
from metrics.result import Result
from metrics.spec import Metric

CURRENT = "#1f6feb"
PREVIOUS = "#8b949e"
GOOD = "#2da44e"
BAD = "#cf222e"


def _figure() -> tuple[Figure, Axes]:
    fig = Figure(figsize=(8, 4.5), dpi=100)  # no layout engine: :func:`_place` sets the margins
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    return fig, ax


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # zlib level 1: a fifth of the encoding time of the default 6, for a file ~20% larger
    fig.savefig(buf, format="png", pil_kwargs={"compress_level": 1})
    return buf.getvalue()


def _width(fig: Figure, texts: list[str], size: float = 10.0) -> float:
    """The widest of ``texts`` in inches, measured by the figure's renderer: only the three
    longest strings are laid out, which is a few glyph runs, not a layout pass."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # Agg's: the one the draw reuses
    prop = FontProperties(size=size)
    longest = sorted(texts, key=len, reverse=True)[:3]
    return max((renderer.get_text_width_height_descent(t, prop, ismath=False)[0] for t in longest),
               default=0.0) / fig.dpi


def _tick_labels(axis) -> list[str]:
    """What the axis will print at its ticks, from its locator and formatter (no draw)."""
    lo, hi = sorted(axis.get_view_interval())
    locs = [v for v in axis.get_majorticklocs() if lo <= v <= hi]
    return [str(t) for t in axis.get_major_formatter().format_ticks(locs)]


def _place(fig: Figure, ax: Axes, *, left: list[str], ylabel: bool, xlabel: bool = False,
           date_offset: bool = False, right: float = 0.3) -> None:
    """Margins in inches from what sits around the plot: the title above; the value or
    segment labels on the left; tick labels, an axis label and the legend (two columns,
    see :func:`_legend`) below. Matplotlib's constrained layout finds the same by laying
    out every text twice and cost 60-100 ms of a 150 ms chart; these texts are known, so
    they are measured once."""
    width, height = fig.get_size_inches()
    handles = len(ax.get_legend_handles_labels()[0])
    left_in = 0.15 + (0.3 if ylabel else 0.0) + _width(fig, left) + 0.1
    bottom_in = (0.12 + 0.25 + (0.2 if date_offset else 0.0) + (0.25 if xlabel else 0.0)
                 + (0.08 + 0.2 * math.ceil(handles / 2) if handles else 0.0))
    top_in, right_in = 0.45, max(right, 0.3)
    fig.subplots_adjust(left=min(left_in / width, 0.6), right=1 - min(right_in / width, 0.3),
                        bottom=min(bottom_in / height, 0.6), top=1 - top_in / height)


def _unit_label(metric: Metric) -> str:
    return style.axis_label(metric)


def _bands(ax, metric: Metric, horizontal: bool) -> None:
    """Shade the seed's benchmark bands behind the data and draw the KPI's reference line
    (only what falls inside the view)."""
    lo, hi = ax.get_ylim() if horizontal else ax.get_xlim()
    for band in metric.bands:
        b_lo = lo if band.low is None else max(band.low, lo)
        b_hi = hi if band.high is None else min(band.high, hi)
        if b_lo >= b_hi:
            continue
        color = GOOD if band.good else BAD
        label = f"benchmark: {band.label}"  # shading is explained in the legend
        if horizontal:
            ax.axhspan(b_lo, b_hi, color=color, alpha=0.06, zorder=0, label=label)
        else:
            ax.axvspan(b_lo, b_hi, color=color, alpha=0.06, zorder=0, label=label)
    ref = metric.reference
    if ref is not None and lo <= ref.value <= hi:  # only when the data comes near it: no squashed axis
        line = ax.axhline if horizontal else ax.axvline
        line(ref.value, color="#57606a", linestyle="--", linewidth=1.0, zorder=1, label=ref.label)
    if horizontal:
        ax.set_ylim(lo, hi)
    else:
        ax.set_xlim(lo, hi)


def _legend(fig: Figure, ax) -> None:
    """Below the plot, where it never covers data (:func:`_place` keeps the room)."""
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", bbox_to_anchor=(0.5, 0.01), ncols=2,
               fontsize=9, frameon=False)


def render_png(result: Result, *, threshold: float | None = None) -> bytes | None:
    """A chart that suits the answer: a trend line, segment bars, or this period vs the last.
    Drawn once per cached answer (:func:`metrics.cache.chart`): a repeated question's chart
    is a look-up too; one drawn while the answer was explained (:func:`draw_aside`) is used."""
    from metrics import cache

    drawn = getattr(result, "_drawn", None) if threshold is None else None
    return cache.chart(result, threshold, lambda: drawn if drawn is not None else _render_png(result, threshold))


_aside: ThreadPoolExecutor | None = None
_aside_lock = threading.Lock()


def draw_aside(result: Result) -> Future:
    """Start drawing ``result``'s chart in a thread of its own (see ``metrics.api.answer``)."""
    global _aside
    with _aside_lock:
        if _aside is None:
            _aside = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kpibot-chart")
    return _aside.submit(_render_png, result, None)


def keep_drawn(result: Result, drawing: Future) -> None:
    """Wait for the chart :func:`draw_aside` started and keep it with the answer; a chart
    that failed is left to :func:`render_png`, which draws it again and reports the error."""
    try:
        png = drawing.result()
    except Exception:  # noqa: BLE001 - drawn again, and reported, by render_png
        return
    if png is not None:
        result._drawn = png  # type: ignore[attr-defined]  # not a field: the picture, not the answer


def _render_png(result: Result, threshold: float | None) -> bytes | None:
    fig = draw(result, threshold)
    return None if fig is None else _png(fig)


def draw(result: Result, threshold: float | None = None) -> Figure | None:
    """The chart's figure, laid out and not yet rendered (None: nothing to draw)."""
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
    ns = [result.previous.n if result.previous else None, result.n]
    small = [bool(metric.min_sample and n is not None and n < metric.min_sample) for n in ns]
    bars = ax.bar(xs, heights, color=colors, width=0.55)
    for bar, faint in zip(bars, small, strict=True):
        if faint:  # too few answers to trust: drawn hatched, said in the label
            bar.set_hatch("//")
            bar.set_alpha(0.6)
    if metric.survey and result.moe is not None and result.value is not None:
        ax.errorbar([1], [result.value], yerr=[result.moe], color="#24292f", capsize=6, linewidth=1.2,
                    label=f"±{result.moe:.1f} (95% margin of error)")
    lo, hi = style.value_range(metric, [h for h in heights] + [
        (result.value or 0.0) + (result.moe or 0.0), (result.value or 0.0) - (result.moe or 0.0)], bars=True)
    ax.set_ylim(lo - (0.1 * (hi - lo) if lo < 0 else 0.0), hi + 0.12 * (hi - lo))  # room for two-line labels
    for x, v, n, faint in zip(xs, values, ns, small, strict=True):
        text = style.compact(metric.unit, v) + (f"\nn = {n:,}" if metric.survey and n is not None else "")
        text += "\nsmall sample" if faint else ""
        moe = result.moe or 0.0 if x == 1 and metric.survey else 0.0
        at = (v or 0.0) + moe if (v or 0.0) >= 0 else (v or 0.0) - moe  # beyond the bar and its error bar
        ax.annotate(text, (x, at), ha="center", va="bottom" if (v or 0.0) >= 0 else "top", fontsize=11,
                    xytext=(0, 4 if (v or 0.0) >= 0 else -4), textcoords="offset points")
    ax.set_xticks(xs, [label[:32] for label in labels])
    ax.set_ylabel(_unit_label(metric))
    style.format_axis(ax.yaxis, metric)
    ax.axhline(0, color="#d0d7de", linewidth=0.8)
    _bands(ax, metric, True)
    if threshold is not None:
        ax.axhline(threshold, color=BAD, linestyle=":", linewidth=1.5, label="threshold")
    _place(fig, ax, left=_tick_labels(ax.yaxis), ylabel=True)
    if ax.get_legend_handles_labels()[0]:
        _legend(fig, ax)
    ax.set_title(title(result, "compare"), fontsize=13, loc="left")
    return fig


def _trend(result: Result, threshold: float | None) -> Figure:
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
    shown = [p.value for p in [*result.series, *result.previous_series] if p.value is not None]
    if shown:
        ax.set_ylim(*style.value_range(metric, shown, result.moe if metric.survey else None))
    style.format_axis(ax.yaxis, metric)
    ax.set_ylabel(_unit_label(metric))
    _bands(ax, metric, True)
    if threshold is not None:
        ax.axhline(threshold, color=BAD, linestyle=":", linewidth=1.5, label="threshold")
    _place(fig, ax, left=_tick_labels(ax.yaxis), ylabel=True, date_offset=True)
    _legend(fig, ax)
    ax.set_title(title(result, "trend"), fontsize=13, loc="left")
    return fig


def _bars(result: Result, threshold: float | None) -> Figure:
    metric = result.metric
    groups = [g for g in result.breakdown if g.value is not None][:25]
    groups.reverse()  # largest at the top
    fig, ax = _figure()
    fig.set_size_inches(8, max(3.0, 0.38 * len(groups) + 1.5))
    ys = list(range(len(groups)))
    values = [float(g.value) for g in groups]  # type: ignore[arg-type]  # filtered: not None
    small = [bool(metric.min_sample and g.n is not None and g.n < metric.min_sample) for g in groups]
    # diverging: a loss is red and drawn left of zero, so it shows next to a large gain
    colors = [style.SMALL if faint else (BAD if v < 0 and metric.unit == "currency" else CURRENT)
              for v, faint in zip(values, small, strict=True)]
    ax.barh(ys, values, color=colors, height=0.6, label=result.period.label)
    prev = [(y, g.previous) for y, g in zip(ys, groups, strict=True) if g.previous is not None]
    if prev:
        ax.scatter([p for _, p in prev], [y for y, _ in prev], marker="|", s=200, color=PREVIOUS, zorder=3, label="previous period")
    lo, hi = style.value_range(metric, values + [p for _, p in prev], bars=True)
    span = hi - lo
    ax.set_xlim(lo, hi)
    texts = [style.compact(metric.unit, v) + (f" (n = {g.n:,}{', small' if faint else ''})"
                                              if metric.survey and g.n is not None else "")
             for g, v, faint in zip(groups, values, small, strict=True)]
    for y, g, v, text in zip(ys, groups, values, texts, strict=True):
        # the label goes beyond both the bar and the previous-period tick, never through them
        edge = max(v, g.previous if g.previous is not None else v) if v >= 0 else min(
            v, g.previous if g.previous is not None else v)
        ax.annotate(text, (edge, y), va="center", ha="left" if v >= 0 else "right", fontsize=9,
                    xytext=(6 if v >= 0 else -6, 0), textcoords="offset points")
    if any(small):
        ax.barh([], [], color=style.SMALL, label=f"fewer than {metric.min_sample} answers")
    ax.axvline(0, color="#57606a", linewidth=0.8)
    ax.set_yticks(ys, [style.human(g.group)[:28] for g in groups])
    ax.grid(axis="x", alpha=0.3)
    ax.grid(axis="y", visible=False)
    style.format_axis(ax.xaxis, metric)
    ax.set_xlabel(_unit_label(metric))
    _bands(ax, metric, False)
    if threshold is not None:
        ax.axvline(threshold, color=BAD, linestyle=":", linewidth=1.5, label="threshold")
    # labels of gains overhang the plot into a right margin as wide as the widest; labels of
    # losses sit in room left of the plot's lowest value, as wide as the widest of them
    gains = [t for t, v in zip(texts, values, strict=True) if v >= 0]
    losses = [t for t, v in zip(texts, values, strict=True) if v < 0]
    _place(fig, ax, left=[t.get_text() for t in ax.get_yticklabels()], ylabel=False, xlabel=True,
           right=_width(fig, gains, 9) + 0.15)
    plot_in = fig.get_size_inches()[0] * (fig.subplotpars.right - fig.subplotpars.left)
    need = min(_width(fig, losses, 9) + 0.15, plot_in / 2) if losses else 0.0
    pad = need * span / (plot_in - need)
    ax.set_xlim(lo - pad, hi)
    _legend(fig, ax)
    ax.set_title(title(result, "bars"), fontsize=13, loc="left")
    return fig


def title(result: Result, kind: str) -> str:
    """A chart's title names the KPI, the cut, the filters and the period (a filtered chart
    must not read like the unfiltered one)."""
    query = result.query
    filters = " · where " + ", ".join(f"{d} = {v}" for d, v in query.filters) if query.filters else ""
    if kind == "bars":
        return f"{result.metric.label}{scope(query).replace('_', ' ')} — {result.period.label}"
    if kind == "trend":
        return f"{result.metric.label} by {query.grain}{filters} — {result.period.label}"
    return f"{result.metric.label}{filters} — {result.period.label}"


def sparklines_png(panels: list[tuple[Metric, list]], title: str) -> bytes | None:
    """Small multiples for a digest: one sparkline per KPI over its last periods (``Point``
    lists), the latest value labelled, partial periods hollow, each panel on its own scale
    with its range printed, so no KPI's wiggle is read against another's."""
    shown = [(m, pts) for m, pts in panels if any(p.value is not None for p in pts)]
    if not shown:
        return None
    cols = min(3, len(shown))
    rows = -(-len(shown) // cols)
    fig = Figure(figsize=(3.2 * cols, 1.55 * rows + 0.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=11, x=0.01, ha="left")
    for i, (metric, points) in enumerate(shown):
        ax = fig.add_subplot(rows, cols, i + 1)
        xs = list(range(len(points)))
        full = [None if p.partial else p.value for p in points]
        ax.plot(xs, full, color=CURRENT, linewidth=1.8)
        for x, p in zip(xs, points, strict=True):
            if p.partial and p.value is not None:
                ax.plot([x], [p.value], marker="o", markersize=4, markerfacecolor="white",
                        markeredgecolor=CURRENT, linestyle="none")
        known = [(x, p) for x, p in zip(xs, points, strict=True) if p.value is not None]
        x_last, last = known[-1]
        ax.plot([x_last], [last.value], marker="o", markersize=4.5, color=CURRENT)
        values = [p.value for _, p in known]
        lo, hi = min(values), max(values)  # type: ignore[type-var]  # known: values not None
        pad = (hi - lo) * 0.25 or abs(hi) * 0.05 or 1.0
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlim(-0.5, len(points) - 0.5)
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ("top", "right", "left", "bottom"):
            ax.spines[side].set_visible(False)
        ax.set_title(f"{metric.label[:34]}  {style.compact(metric.unit, last.value)}", fontsize=9, loc="left")
        ax.text(0.0, -0.02, f"{style.compact(metric.unit, lo)} – {style.compact(metric.unit, hi)}", transform=ax.transAxes,
                fontsize=7, color=PREVIOUS, va="top")
    return _png(fig)
