"""The query language, one parser for the CLI, Slack and schedules.

``<metric> [period] [by <dimension>] [vs <period> | yoy] [trend | daily | weekly | monthly]
[where <dimension>=<value>]`` in any order, tolerant of filler ("what was", "show me", "?")
and of ``-`` or space between words (``last-quarter`` = ``last quarter``).
"""

from __future__ import annotations

import re
from datetime import date

from metrics import catalogue
from metrics.errors import BadPeriod, QueryError, TooLarge
from metrics.periods import (
    Period,
    Settings,
    auto_grain,
    buckets,
    default_period,
    match_period,
    previous,
    step,
    unit_start,
    year_ago,
)
from metrics.query import Query

MAX_TEXT = 500
FILLER = {
    "what", "whats", "what's", "was", "is", "are", "were", "the", "our", "my", "show", "me", "give",
    "tell", "how", "did", "does", "do", "for", "of", "in", "during", "please", "kpi", "a", "an",
    "about", "get", "see", "value", "current", "currently", "now", "hey", "hi", "and", "with",
    "over", "at", "on", "to", "we", "us", "much", "many", "has", "have", "been", "doing", "look",
    "like", "can", "you", "i", "want", "know", "number", "chart", "graph", "plot",
}
GRAIN_WORDS = {
    "daily": "day", "weekly": "week", "monthly": "month", "quarterly": "quarter", "yearly": "year",
    "annually": "year",
}
TREND_WORDS = {"trend", "trends", "trending", "history", "series", "timeline"}
COMPARE_WORDS = {"vs", "versus", "compared", "against", "vs."}
YOY_WORDS = {"yoy", "y/y"}
_DATEISH = re.compile(r"^\d{4}-(\d{1,2}(-\d{1,2})?|q[1-4])$")
_FILTER = re.compile(r"^([a-z_][a-z0-9_ ]*?)\s*(=|==|:|is)\s*(.+)$")


def tokenize(text: str) -> tuple[list[str], list[str]]:
    """Lower-cased tokens for matching, and the original spelling (for filter values)."""
    raw = re.findall(r'"[^"]*"|\'[^\']*\'|[^\s,;?!]+', text)
    low: list[str] = []
    orig: list[str] = []
    for tok in raw:
        if tok[:1] in "\"'":
            low.append(tok[1:-1].lower())
            orig.append(tok[1:-1])
            continue
        tok = tok.strip(".:()[]")
        if not tok:
            continue
        parts = [tok] if _DATEISH.match(tok.lower()) or "=" in tok else [p for p in tok.split("-") if p]
        for p in parts:
            low.append(p.lower())
            orig.append(p)
    return low, orig


def parse(
    text: str,
    *,
    today: date,
    settings: Settings | None = None,
    default_metric: str | None = None,
) -> Query:
    settings = settings or Settings()
    if len(text) > MAX_TEXT:
        raise TooLarge(f"That question is {len(text)} characters long; please keep it under {MAX_TEXT}.")
    tokens, original = tokenize(text)
    used = [False] * len(tokens)
    period: Period | None = None
    compare: Period | None = None
    compare_yoy = False
    dimension_word: str | None = None
    grain: str | None = None
    trend = False
    filters: list[tuple[str, str]] = []

    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if used[i]:
            i += 1
            continue
        # where dimension=value (also "where industry = Retail", "industry=Retail")
        if tok == "where" or tok == "for" and i + 1 < len(tokens) and "=" in tokens[i + 1]:
            used[i] = True
            i += 1
            continue
        if "=" in tok:
            name, _, value = original[i].partition("=")
            value_consumed = 0
            if not value and i + 1 < len(tokens):
                value, value_consumed = original[i + 1], 1
            if not name and filters == [] and i > 0 and not used[i - 1]:
                name, used[i - 1] = original[i - 1], True
            if not name or not value:
                raise QueryError("A filter looks like `where industry=Retail`.")
            filters.append((name.strip().lower(), value.strip()))
            for k in range(i, i + 1 + value_consumed):
                used[k] = True
            i += 1 + value_consumed
            continue
        if tok in YOY_WORDS or (tok == "year" and _next(tokens, i, 1) == "over" and _next(tokens, i, 2) == "year"):
            compare_yoy = True
            span = 1 if tok in YOY_WORDS else 3
            _mark(used, i, span)
            i += span
            continue
        if tok in COMPARE_WORDS:
            j = i + 1
            if _next(tokens, i, 1) in ("to", "with"):
                j += 1
            if j < len(tokens) and tokens[j] in ("last", "previous", "prior") and _next(tokens, j, 1) == "year":
                compare_yoy = True  # "vs last year" means the same period a year ago
                _mark(used, i, j + 2 - i)
                i = j + 2
                continue
            match = match_period(tokens, j, today, settings) if j < len(tokens) else None
            if match is None:
                raise BadPeriod("After `vs` I need a period, e.g. `vs last-quarter` or `vs 2025-Q3`.")
            compare = match.period
            _mark(used, i, j + match.length - i)
            i = j + match.length
            continue
        if tok == "by" and i + 1 < len(tokens):
            nxt = tokens[i + 1]
            if nxt in ("day", "week", "month", "quarter", "year"):
                grain, trend = nxt, True
                _mark(used, i, 2)
                i += 2
                continue
            # longest dimension phrase: "size band", "acquisition channel"
            for span in (3, 2, 1):
                phrase = "_".join(tokens[i + 1 : i + 1 + span])
                if span == 1 or catalogue.is_dimension_word(phrase):
                    dimension_word = phrase
                    _mark(used, i, 1 + span)
                    i += 1 + span
                    break
            continue
        named = _kpi_phrase(tokens, i)
        if named:  # "monthly active users", "yearly churn": a KPI's name, not a grain
            i += named
            continue
        if tok in GRAIN_WORDS:
            grain, trend = GRAIN_WORDS[tok], True
            used[i] = True
            i += 1
            continue
        if tok in TREND_WORDS or tok == "over" and _next(tokens, i, 1) == "time":
            trend = True
            span = 2 if tok == "over" else 1
            _mark(used, i, span)
            i += span
            continue
        match = match_period(tokens, i, today, settings)
        if match is not None:
            if period is not None:
                raise BadPeriod("I found two periods in that question; use `vs` to compare them.")
            period = match.period
            _mark(used, i, match.length)
            i += match.length
            continue
        i += 1

    words = [t for t, u in zip(tokens, used, strict=True) if not u]
    metric = _find_metric(words, default_metric)
    leftovers = [w for w in words if w not in FILLER and w not in metric[1]]
    if leftovers:
        raise QueryError(
            f"I understood `{metric[0].id}` but not `{' '.join(leftovers)[:60]}`. "
            "Ask like `nps by industry last-quarter`, or try `help`."
        )
    m = metric[0]

    explicit = period is not None
    if period is None:
        if trend:
            end = unit_start(today, grain or "month", settings)
            period = Period(step(end, "month", -12), end, "last 12 months", "month:12")
        else:
            period = default_period(today, settings)
    if trend and grain is None:
        grain = auto_grain(period)
    if grain:
        buckets(period, grain, settings)  # refuses huge trends before any SQL runs
    if compare is None:
        compare = year_ago(period) if compare_yoy else previous(period)

    dimension = catalogue.resolve_dimension(m, dimension_word) if dimension_word else None
    resolved_filters = tuple((catalogue.resolve_dimension(m, name), value) for name, value in filters)
    return Query(
        metric=m.id,
        period=period,
        compare=compare,
        dimension=dimension,
        grain=grain,
        filters=resolved_filters,
        as_of=today,
        text=text,
        explicit_period=explicit,
    )


def _kpi_phrase(tokens: list[str], i: int) -> int:
    """Length of a multi-word KPI name starting at a grain or trend word, else 0."""
    if tokens[i] not in GRAIN_WORDS and tokens[i] not in TREND_WORDS:
        return 0
    for span in (4, 3, 2):
        if i + span <= len(tokens) and catalogue.lookup(" ".join(tokens[i : i + span])):
            return span
    return 0


def _next(tokens: list[str], i: int, k: int) -> str | None:
    return tokens[i + k] if i + k < len(tokens) else None


def _mark(used: list[bool], i: int, span: int) -> None:
    for k in range(i, min(i + span, len(used))):
        used[k] = True


def _find_metric(words: list[str], default_metric: str | None):
    """The longest run of words naming a KPI; the rest must be filler."""
    best = None
    for span in range(min(len(words), 5), 0, -1):
        for start in range(0, len(words) - span + 1):
            phrase = " ".join(words[start : start + span])
            metric = catalogue.lookup(phrase)
            if metric is not None:
                best = (metric, set(words[start : start + span]))
                break
        if best:
            break
    if best:
        return best
    if default_metric:
        return catalogue.CATALOGUE[default_metric], set()
    content = [w for w in words if w not in FILLER]
    if not content:
        raise QueryError("Which KPI? Try `nps last-quarter`, or `list` to see them all.")
    raise catalogue.UnknownMetric(" ".join(content), catalogue.suggest(" ".join(content)))
