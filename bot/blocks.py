"""Block Kit for an answer, built from the same pieces as the plain-text answer.

Layout of an answer::

    [header]   Net Promoter Score — 2026-Q3 (2026-07-01 to 2026-09-30)
    [section]  *20.0* score
               ▲ +20.0 points vs previous quarter (0.0) · 🟢 good for this KPI (higher is better)
               n = 10 responses, ±54.0 (95% margin of error)
    [section]  ```breakdown table```            (when asked "by …")
    [section]  Trend by week: … ▁▃▅█             (when asked for a trend)
    [context]  ⚠️ notes (small sample, change within the margin of error …)
    [context]  Formula: … Benchmark: good (above 0).
    [context]  chart note / asked by …

Slack's limits are respected: header ≤ 150 characters, section text ≤ 3000, ≤ 50 blocks,
≤ 10 elements per context block.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bot import mrkdwn
from metrics import render
from metrics.result import Result

HEADER_MAX = 150
SECTION_MAX = 3000
TEXT_MAX = 3900
ALT_MAX = 900
MAX_TABLE_ROWS = 25
SPARK = "▁▂▃▄▅▆▇█"
UNIT_WORDS = {"score": "score", "count": "", "ratio": "ratio"}
VERDICT = {
    "good": ":large_green_circle: good for this KPI",
    "bad": ":red_circle: bad for this KPI",
    "flat": ":white_circle: unchanged",
}

Block = dict[str, Any]


def _mrkdwn(text: str) -> dict[str, str]:
    """Every mrkdwn element of every block is escaped here (see :mod:`bot.mrkdwn`)."""
    return {"type": "mrkdwn", "text": mrkdwn.escape(text)}


def _plain_text(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": mrkdwn.plain(text), "emoji": True}


def fallback(text: str, limit: int = 3900) -> str:
    """A message's top-level ``text`` (notifications; Slack parses it as mrkdwn too), escaped."""
    return _clip(mrkdwn.escape(text), limit)


def section(text: str) -> Block:
    return {"type": "section", "text": _mrkdwn(_clip(text, SECTION_MAX))}


def context(*texts: str) -> Block:
    return {"type": "context", "elements": [_mrkdwn(_clip(t, SECTION_MAX)) for t in texts[:10] if t]}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- answers ------------------------------------------------------------------------------


def header_text(result: Result) -> str:
    return _clip(render.headline(result), HEADER_MAX)


def value_text(result: Result) -> str:
    unit = UNIT_WORDS.get(result.metric.unit, "")
    value = render.value_line(result)
    return f"*{value}*" + (f" {unit}" if unit and result.value is not None else "")


def change_text(result: Result) -> str | None:
    """Arrow, signed change, previous value, and whether that is good for this KPI."""
    prev = result.previous
    if prev is None:
        return None
    if result.change is None:
        return render.change_line(result)
    arrow = render.ARROWS["up" if result.change > 0 else "down" if result.change < 0 else "flat"]
    text = (
        f"{arrow} {render.format_change(result.metric, result.change, result.change_pct)} "
        f"vs {prev.period.label} ({render.format_value(result.metric, prev.value)})"
    )
    verdict = VERDICT.get(result.judgement or "")
    if verdict:
        direction = {"higher": "higher is better", "lower": "lower is better"}.get(result.metric.direction)
        text += f" · {verdict}" + (f" ({direction})" if direction and result.judgement != "flat" else "")
    return text


def sample_text(result: Result) -> str | None:
    line = render.sample_line(result)
    if line is None:
        return None
    small = result.metric.min_sample and result.n is not None and result.n < result.metric.min_sample
    if not small:
        return line
    explained = any("respons" in note for note in result.notes)
    return f":warning: {line}" + ("" if explained else f" — fewer than {result.metric.min_sample}, treat with caution")


def table_text(result: Result) -> str | None:
    """The breakdown as an aligned code block, trimmed to fit one section."""
    if not result.breakdown:
        return None
    shown = result.breakdown
    extra = 0
    if len(shown) > MAX_TABLE_ROWS:
        shown, extra = shown[:MAX_TABLE_ROWS], len(shown) - MAX_TABLE_ROWS
    trimmed = _with_breakdown(result, shown, result.breakdown_truncated + extra)
    table = render.breakdown_table(trimmed) or ""
    while len(table) + 8 > SECTION_MAX and len(shown) > 1:
        extra += 1
        shown = shown[:-1]
        table = render.breakdown_table(_with_breakdown(result, shown, result.breakdown_truncated + extra)) or ""
    return "```\n" + table + "\n```"


def _with_breakdown(result: Result, groups, truncated: int) -> Result:
    return replace(result, breakdown=list(groups), breakdown_truncated=truncated)


def sparkline(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return ""
    lo, hi = min(known), max(known)
    span = hi - lo
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        else:
            out.append(SPARK[0 if span == 0 else min(len(SPARK) - 1, int((v - lo) / span * len(SPARK)))])
    return "".join(out)


def trend_text(result: Result) -> str | None:
    shown = [p for p in result.series if p.value is not None]
    if not shown:
        return None
    spark = sparkline([p.value for p in result.series][-60:])
    return f"{render.trend_summary(result)}\n`{spark}`"


def answer_blocks(result: Result, *, chart_note: str | None = None, asked: str | None = None,
                  image: Block | None = None, actions: Block | None = None) -> list[Block]:
    """The whole answer. ``chart_note`` explains a missing chart; ``asked`` credits the asker;
    ``image`` shows the uploaded chart in the message; ``actions`` are its buttons."""
    blocks: list[Block] = [{"type": "header", "text": _plain_text(header_text(result))}]
    lines = [value_text(result)]
    for line in (change_text(result), result.explanation, sample_text(result), render.extras_line(result)):
        if line:
            lines.append(line)
    blocks.append(section("\n".join(lines)))
    table = table_text(result)
    if table:
        blocks.append(section(table))
    trend = trend_text(result)
    if trend:
        blocks.append(section(trend))
    if image:
        blocks.append(image)
    if result.notes:
        blocks.append(context(*(f":warning: {note}" for note in result.notes)))
    blocks.append(context(*(t for t in (render.freshness_line(result), render.context_line(result)) if t)))
    tail = [t for t in (chart_note and f":frame_with_picture: {chart_note}", asked) if t]
    if tail:
        blocks.append(context(*tail))
    if actions:
        blocks.append(actions)
    return blocks[:50]


def answer_text(result: Result, *, chart_note: str | None = None) -> str:
    """The notification / fallback text: the plain answer (plus the chart note)."""
    text = render.text(result)
    if chart_note:
        text += f"\n_{chart_note}_"
    return fallback(text, TEXT_MAX)


def chart_alt_text(result: Result) -> str:
    """What the chart shows, for screen readers: the numbers, not just a title."""
    metric = result.metric
    fv = render.format_value
    if result.series and any(p.value is not None for p in result.series):
        pts = [p for p in result.series if p.value is not None]
        body = (
            f"line chart of {metric.label} by {result.query.grain}, {result.period.label}: "
            f"from {fv(metric, pts[0].value)} on {pts[0].start.isoformat()} "
            f"to {fv(metric, pts[-1].value)} on {pts[-1].start.isoformat()}, "
            f"low {fv(metric, min(p.value for p in pts))}, high {fv(metric, max(p.value for p in pts))}."  # type: ignore[type-var]  # pts: values not None
        )
        partial = sum(1 for p in pts if p.partial)
        if partial:
            body += f" {partial} partial {result.query.grain}{'s' if partial > 1 else ''} drawn hollow."
    elif result.breakdown and any(g.value is not None for g in result.breakdown):
        parts = ", ".join(f"{g.group} {fv(metric, g.value)}" for g in result.breakdown if g.value is not None)
        body = f"bar chart of {metric.label} by {result.query.dimension}, {result.period.label}: {parts}."
    else:
        prev = result.previous
        before = f"{prev.period.label} {fv(metric, prev.value)} vs " if prev else ""
        body = f"bar chart of {metric.label}: {before}{result.period.label} {fv(metric, result.value)}."
    return _clip("Chart: " + body, ALT_MAX)


def chart_filename(result: Result) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in result.period.label.lower())
    return f"{result.metric.id}-{safe.strip('-')[:40] or 'period'}.png"


def chart_title(result: Result) -> str:
    suffix = f" by {result.query.dimension}" if result.breakdown else ""
    return _clip(f"{result.metric.label}{suffix} — {result.period.label}", 250)


# ---- plain replies ------------------------------------------------------------------------


def text_blocks(text: str) -> list[Block]:
    """Help, lists, definitions and errors: mrkdwn sections split on line boundaries."""
    chunks: list[str] = []
    current = ""
    for line in text.splitlines():
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > SECTION_MAX - 10 and current:
            chunks.append(current)
            current = line
        else:
            current = candidate
    if current or not chunks:
        chunks.append(current or " ")
    return [section(c) for c in chunks[:50]]


def asked_by(user_id: str, question: str) -> str:
    """The credit under a slash-command answer; the question is the user's text, escaped later."""
    return f"Asked by {mrkdwn.user(user_id)} · `/kpi {question.replace('`', ' ')}`"


def working_text() -> str:
    return ":hourglass_flowing_sand: Working on it…"
