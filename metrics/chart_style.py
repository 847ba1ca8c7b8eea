"""The house style every chart shares: how numbers read on axes and labels ($4.4M, 12.5k,
45%), human names for segments (``paid_search`` → "paid search"), and y-ranges that neither
hide a loss nor turn noise into drama."""

from __future__ import annotations

from matplotlib.ticker import FuncFormatter, MaxNLocator

from metrics.render import currency, format_unit
from metrics.spec import Metric

SMALL = "#afb8c1"  # a segment below the KPI's minimum sample: drawn faint


def compact(unit: str, value: float | None) -> str:
    """Short enough for an axis tick or a bar label: $4.4M, $300k, 12.5k, 45.2%."""
    if value is None:
        return "no data"
    v = abs(value)
    sign = "−" if value < 0 else ""
    if unit in ("currency", "count"):
        prefix = currency() if unit == "currency" else ""
        for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
            if v >= size * (10 if size == 1e3 and unit == "currency" else 1):
                shown = v / size
                return f"{sign}{prefix}{shown:.1f}{suffix}".replace(".0" + suffix, suffix)
        return sign + format_unit(unit, v) if unit == "currency" else f"{sign}{v:,.0f}" if v == int(v) else f"{sign}{v:,.1f}"
    return format_unit(unit, value)


def tick(unit: str, value: float) -> str:
    if unit in ("currency", "count"):
        return compact(unit, value) if value else ("0" if unit == "count" else f"{currency()}0")
    if unit == "percent":
        return f"{value:g}%"
    if unit == "hours":
        return f"{value:g} h"
    if unit == "ratio":
        return f"{value:g}×"
    return f"{value:g}"


def format_axis(axis, metric: Metric) -> None:
    """Ticks in the KPI's unit (never a 1e6 offset), at round numbers."""
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: tick(metric.unit, v)))
    axis.set_major_locator(MaxNLocator(nbins=6, integer=metric.unit == "count"))


def axis_label(metric: Metric) -> str:
    """What the value axis measures; units already on the ticks ($, %) are not repeated."""
    return {"currency": metric.label, "percent": f"{metric.label} (%)", "score": f"{metric.label} (score)",
            "count": metric.label}.get(metric.unit, f"{metric.label} ({metric.unit})")


def human(name: str | None) -> str:
    """``paid_search`` → "paid search", ``size_band`` → "size band"."""
    return (name or "").replace("_", " ").strip() or "(none)"


def value_range(metric: Metric, values: list[float], moe: float | None = None, *, bars: bool = False
                ) -> tuple[float, float]:
    """The value axis: bars start at zero (and show losses below it); a line's axis is at least
    as wide as the margin of error either side, or a tenth of the level, so ±0.1 on a 5-point
    score is not drawn as a cliff."""
    lo, hi = min(values), max(values)
    if metric.unit in ("count", "currency") and lo >= 0:  # amounts: from zero, the line included
        bars = True
    if bars:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        span = (hi - lo) or 1.0
        return lo - (0.12 * span if lo < 0 else 0.0), hi + 0.15 * span
    level = max(abs(lo), abs(hi))
    floor = max(2 * (moe or 0.0), 0.2 * level, 1e-9)
    if hi - lo < floor:
        mid = (hi + lo) / 2
        lo, hi = mid - floor / 2, mid + floor / 2
    pad = 0.1 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    if min(values) >= 0 and lo < 0:  # a KPI that cannot go negative keeps its axis at or above 0
        hi, lo = hi - lo, 0.0
    return lo, hi
