"""Digest slots (APScheduler's cron maths, in the digest's own time zone) and digest messages.

A slot is one due time of one digest, e.g. digest 3 at Mon 2026-03-30 09:00 Europe/Berlin
(07:00 UTC, summer time). The slots come from the same :class:`CronTrigger` that schedules
the digest in production, so tests exercise the real trigger maths, DST included.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from metrics import api, render
from metrics import freshness as fresh
from metrics.catalogue import CATALOGUE
from metrics.periods import Period, Settings, step, unit_start
from metrics.query import Query
from metrics.result import Result
from storage.database import DatabaseError

from .parse import WEEKDAY_NAMES, DigestSpec

DAY_ABBR = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MARKERS = {"good": "🟢", "bad": "🔴", "flat": "⚪"}
NEUTRAL_MARKER = "▫️"
MAX_SLOTS = 400  # never enumerate more slots than this in one look-back


def trigger_for(spec: DigestSpec) -> CronTrigger:
    """The digest's schedule as a CronTrigger with an explicit ZoneInfo."""
    hour, minute = (int(x) for x in spec.at_time.split(":"))
    zone = ZoneInfo(spec.timezone)
    if spec.frequency == "daily":
        return CronTrigger(hour=hour, minute=minute, second=0, timezone=zone)
    if spec.frequency == "weekly":
        return CronTrigger(day_of_week=DAY_ABBR[spec.weekday or 0], hour=hour, minute=minute, second=0, timezone=zone)
    if spec.frequency == "monthly":
        return CronTrigger(day=spec.day_of_month or "1", hour=hour, minute=minute, second=0, timezone=zone)
    raise ValueError(spec.frequency)


def slots_between(trigger: CronTrigger, start: datetime, end: datetime) -> list[datetime]:
    """Fire times ``start <= t <= end`` (aware), in order, from the trigger itself."""
    out: list[datetime] = []
    fire = trigger.get_next_fire_time(None, start)
    while fire is not None and fire <= end and len(out) < MAX_SLOTS:
        out.append(fire)
        fire = trigger.get_next_fire_time(fire, fire)
    return out


def next_slot(trigger: CronTrigger, after: datetime) -> datetime | None:
    return trigger.get_next_fire_time(None, after)


def slot_key(digest_id: int, slot: datetime, timezone: str) -> str:
    """A slot's identity: the local wall-clock time it is due at.

    Keyed locally, not in UTC, because when clocks go back an hour a 02:30 schedule fires
    at both 02:30s (APScheduler returns both); the second finds its key taken.
    """
    return f"digest:{digest_id}:{slot.astimezone(ZoneInfo(timezone)):%Y-%m-%dT%H:%M}"


# ---- the period a digest reports --------------------------------------------------------------

UNIT = {"daily": "day", "weekly": "week", "monthly": "month"}


def digest_period(spec: DigestSpec, slot: datetime, settings: Settings) -> Period:
    """The last complete day/week/month before the slot, in the digest's time zone."""
    today = slot.astimezone(ZoneInfo(spec.timezone)).date()
    unit = UNIT[spec.frequency]
    start = step(unit_start(today, unit, settings), unit, -1)
    end = step(start, unit)
    return Period(start, end, _period_label(unit, start, end), unit)


def _period_label(unit: str, start: date, end: date) -> str:
    last = end - timedelta(days=1)
    if unit == "day":
        return f"{start:%a %-d %b %Y}"
    if unit == "week":
        return f"week of {start:%-d %b %Y} (Mon {start:%-d %b} – Sun {last:%-d %b})"
    return f"{start:%B %Y}"


# ---- content -----------------------------------------------------------------------------------


@dataclass
class Line:
    metric_id: str
    result: Result | None
    error: str | None = None


@dataclass
class DigestContent:
    text: str
    chart: bytes | None
    period: Period
    lines: list[Line]
    blocks: list[dict] | None = None  # Block Kit; an image block with IMAGE_PLACEHOLDER for the chart


IMAGE_PLACEHOLDER = "$chart"  # the slack_file id, filled in once the chart is uploaded
SPARK_PERIODS = 10  # periods on each sparkline


def settings_for(timezone: str) -> Settings:
    return replace(Settings.from_env(), timezone=timezone)


def compute_lines(spec: DigestSpec, period: Period, settings: Settings, metrics_url: str | None) -> list[Line]:
    unit = period.unit
    compare = Period(step(period.start, unit, -1), period.start, f"previous {unit}", unit)
    lines: list[Line] = []
    failures: list[str] = []
    for metric_id in spec.metrics:
        query = Query(metric=metric_id, period=period, compare=compare, text=f"digest {metric_id}")
        try:
            lines.append(Line(metric_id, api.run(query, url=metrics_url, settings=settings)))
        except DatabaseError as exc:
            failures.append(str(exc))
            lines.append(Line(metric_id, None, str(exc)))
    if failures and len(failures) == len(lines):
        # Nothing could be computed: a failed delivery (retried), not a digest of errors.
        raise DatabaseError(failures[0])
    return lines


def _within_noise(result: Result) -> bool:
    return any("margin of error" in note for note in result.notes)


def line_text(line: Line) -> str:
    metric = CATALOGUE[line.metric_id]
    if line.result is None:
        return f"{NEUTRAL_MARKER} *{metric.label}*: could not be computed ({line.error})"
    r = line.result
    through = r.data_through
    if r.value is None:
        stale = f" ({fresh.through_text(through)})" if through is not None else ""
        return f"{NEUTRAL_MARKER} *{metric.label}*: no data for this period{stale}"
    marker = MARKERS.get(r.judgement or "", NEUTRAL_MARKER)
    noisy = _within_noise(r)
    if noisy:
        marker = MARKERS["flat"]
    text = f"{marker} *{metric.label}*: {render.format_value(metric, r.value)}"
    prev = r.previous
    if r.change is not None and prev is not None:
        arrow = render.ARROWS["up" if r.change > 0 else "down" if r.change < 0 else "flat"]
        text += (
            f"  {arrow} {render.format_change(metric, r.change, r.change_pct)} vs {prev.period.label} "
            f"({render.format_value(metric, prev.value)})"
        )
    elif prev is not None:
        text += f"  (no data for the {prev.period.label} to compare)"
    extras = []
    if metric.survey and r.n is not None:
        extras.append(f"n = {r.n:,}" + (f", ±{r.moe:.1f}" if r.moe is not None else ""))
        if r.n < metric.min_sample:
            extras.append(f"only {r.n} responses: read with caution")
    if noisy:
        extras.append("change within the margin of error")
    if through is not None and not fresh.fully_loaded(through, r.period.end):
        extras.append(f"incomplete: {fresh.through_text(through)}, not judged")
    if extras:
        text += f"  _({'; '.join(extras)})_"
    return text


def build(
    digest_id: int,
    spec: DigestSpec,
    slot: datetime,
    *,
    metrics_url: str | None,
    notice: str | None = None,
    preview: bool = False,
    with_chart: bool = True,
) -> DigestContent:
    settings = settings_for(spec.timezone)
    period = digest_period(spec, slot, settings)
    lines = compute_lines(spec, period, settings, metrics_url)
    last = period.end - timedelta(days=1)
    title = f"{spec.frequency.capitalize()} KPI digest"
    head = [
        f"{'👀 *PREVIEW* — ' if preview else ''}📊 *{title}* — {period.label}",
        f"Period: {period.start.isoformat()} to {last.isoformat()} ({spec.timezone}), "
        f"each KPI compared with the {UNIT[spec.frequency]} before.",
    ]
    if preview:
        head.append("_This is a preview, posted on request; the scheduled digest is unchanged._")
    throughs = [ln.result.data_through for ln in lines if ln.result is not None and ln.result.data_through]
    if throughs:
        head.append(f"Data through {min(throughs):%a %-d %b %Y}" + (
            "." if min(throughs) == max(throughs) else f" (some sources to {max(throughs):%a %-d %b %Y})."
        ))
    if notice:
        head.append(notice)
    body = [line_text(line) for line in lines]
    foot = (
        f"_Digest #{digest_id} · {spec.schedule_text()} · 🟢 good 🔴 bad ⚪ no real change · "
        f"`/kpi digest remove {digest_id}` to stop it_"
    )
    chart = None
    if with_chart:
        chart = sparklines(spec, period, settings, metrics_url, lines,
                           f"{title} — the last {SPARK_PERIODS} {UNIT[spec.frequency]}s")
    text = "\n".join([*head, "", *body, "", foot])
    return DigestContent(text, chart, period, lines, digest_blocks(head, body, foot, chart is not None, title))


def digest_blocks(head: list[str], body: list[str], foot: str, with_chart: bool, title: str) -> list[dict]:
    """Header, the period and "data through", one line per KPI (value, change, verdict), the
    small-multiples image, the footer. Texts are escaped here (Block Kit, not the outbox's text)."""
    from bot import mrkdwn

    def section(text: str) -> dict:
        return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn.escape(text)[:3000]}}

    blocks: list[dict] = [section(head[0])]
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": mrkdwn.escape(h)[:3000]}
                                                   for h in head[1:10]]})
    chunk: list[str] = []
    for line in body:  # lines grouped into sections of at most ~2900 characters
        if chunk and len("\n".join([*chunk, line])) > 2900:
            blocks.append(section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    if chunk:
        blocks.append(section("\n".join(chunk)))
    if with_chart:
        blocks.append({"type": "image", "slack_file": {"id": IMAGE_PLACEHOLDER}, "alt_text": _alt(body),
                       "title": {"type": "plain_text", "text": f"{title}: a sparkline per KPI"}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": mrkdwn.escape(foot)[:3000]}]})
    return blocks[:50]


def _alt(body: list[str]) -> str:
    """The chart's alt text: the KPI lines themselves, markup removed."""
    text = "; ".join(line.replace("*", "").replace("_", "") for line in body)
    return ("Sparklines of each KPI over its recent periods. " + text).replace("<", "‹").replace(">", "›")[:2000]


def sparklines(spec: DigestSpec, period: Period, settings: Settings, metrics_url: str | None,
               lines: list[Line], title: str) -> bytes | None:
    """The last SPARK_PERIODS periods of each KPI that could be computed (one trend query each)."""
    from metrics import charts

    unit = period.unit
    start = period.start
    for _ in range(SPARK_PERIODS - 1):
        start = step(start, unit, -1)
    span = Period(start, period.end, f"last {SPARK_PERIODS} {unit}s", unit)
    compare = Period(step(start, unit, -SPARK_PERIODS), start, "before", unit)
    panels = []
    for line in lines:
        if line.result is None:
            continue
        query = Query(metric=line.metric_id, period=span, compare=compare, grain=unit, text=f"digest {line.metric_id}")
        try:
            result = api.run(query, url=metrics_url, settings=settings)
        except Exception:  # noqa: BLE001 - a KPI without a trend is left out of the picture, not the digest
            continue
        panels.append((CATALOGUE[line.metric_id], result.series[-SPARK_PERIODS:]))
    try:
        return charts.sparklines_png(panels, title)
    except Exception:  # noqa: BLE001 - the lines still go out without the picture
        from bot.logging import event, get_logger

        event(get_logger("kpibot.schedules"), "digest_chart_failed", level=40, exc_info=True)
        return None


# ---- the combined chart ---------------------------------------------------------------------------

GOOD, BAD, NEUTRAL, PREVIOUS = "#2da44e", "#cf222e", "#1f6feb", "#8b949e"


def digest_chart(lines: list[Line], title: str) -> bytes | None:
    """One PNG: a small panel per KPI with the previous and the current period side by side."""
    shown = [ln for ln in lines if ln.result is not None and ln.result.value is not None]
    if not shown:
        return None
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig = Figure(figsize=(3.0 * cols, 2.6 * rows + 0.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=12, x=0.01, ha="left")
    for i, line in enumerate(shown):
        r = line.result
        assert r is not None
        metric = CATALOGUE[line.metric_id]
        ax = fig.add_subplot(rows, cols, i + 1)
        prev_value = r.previous.value if r.previous is not None else None
        colour = {"good": GOOD, "bad": BAD}.get(r.judgement or "", NEUTRAL)
        if _within_noise(r):
            colour = NEUTRAL
        values = [prev_value, r.value]
        ax.bar([0, 1], [v or 0.0 for v in values], color=[PREVIOUS, colour], width=0.6)
        for x, v in zip([0, 1], values, strict=True):
            if v is not None:
                ax.annotate(render.format_value(metric, v), (x, v), ha="center",
                            va="bottom" if v >= 0 else "top", fontsize=9,
                            xytext=(0, 2 if v >= 0 else -2), textcoords="offset points")
        ax.set_xticks([0, 1], ["before", "latest"])
        ax.set_title(metric.label, fontsize=10, loc="left")
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(axis="y", labelsize=8)
        ax.axhline(0, color="#d0d7de", linewidth=0.8)
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + (high - low) * 0.15)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def describe_schedule(spec: DigestSpec) -> str:
    return spec.schedule_text()


__all__ = [
    "trigger_for", "slots_between", "next_slot", "slot_key", "digest_period", "build",
    "digest_chart", "WEEKDAY_NAMES",
]
