"""Reading digest and alert definitions from the words people type.

``weekly mon 09:00 nps csat`` and ``csat drops 5 points week-over-week by industry`` become
:class:`DigestSpec` and :class:`AlertSpec`. Anything that cannot be understood raises
:class:`CommandError`, whose text is shown to the person as is; nothing is stored before a
whole definition has parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from metrics.catalogue import lookup, resolve, resolve_dimension
from metrics.errors import QueryError
from metrics.render import format_value
from metrics.spec import Metric
from storage.schema import SURVEY_SCALES


class CommandError(Exception):
    """A definition kpibot cannot accept; ``str(err)`` is the message for the person."""


DIGEST_EXAMPLE = "`/kpi digest add weekly mon 09:00 nps csat churn_rate revenue`"
ALERT_EXAMPLES = (
    "`/kpi alert add nps below 30`, `/kpi alert add csat drops 5 points week-over-week`, "
    "`/kpi alert add first_response_time above 1h by priority`"
)

WEEKDAYS = {
    name: i
    for i, names in enumerate(
        [
            ("mon", "monday", "mondays"),
            ("tue", "tues", "tuesday", "tuesdays"),
            ("wed", "wednesday", "wednesdays"),
            ("thu", "thur", "thurs", "thursday", "thursdays"),
            ("fri", "friday", "fridays"),
            ("sat", "saturday", "saturdays"),
            ("sun", "sunday", "sundays"),
        ]
    )
    for name in names
}
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
FREQUENCIES = {"daily": "daily", "weekly": "weekly", "monthly": "monthly"}
MAX_DIGEST_KPIS = 12
_FILLER = {"at", "on", "and", "every", "the", "of", "for", "with", "is", "goes", "gets", "than", "to"}


def tokenize(words: list[str] | str) -> list[str]:
    """Split on spaces and commas; Slack may hand over "nps,csat" as one word."""
    if isinstance(words, str):
        words = [words]
    out: list[str] = []
    for word in words:
        out.extend(t for t in re.split(r"[\s,]+", word) if t)
    return out


# ---- times, zones, durations --------------------------------------------------------------

_HHMM = re.compile(r"^(\d{1,2}):(\d{1,2})$")
_AMPM = re.compile(r"^(\d{1,2})(?::(\d{2}))?(am|pm)$", re.I)


def parse_time(tok: str) -> str | None:
    """``"09:00"``, ``"9:30"``, ``"9am"``, ``"5:30pm"`` -> ``"HH:MM"``; None if not time-like."""
    if m := _HHMM.match(tok):
        hour, minute = int(m[1]), int(m[2])
        if len(m[2]) != 2 or hour > 23 or minute > 59:
            raise CommandError(
                f"`{tok}` is not a time of day. Use 24-hour HH:MM from 00:00 to 23:59, e.g. 09:00 or 17:30."
            )
        return f"{hour:02d}:{minute:02d}"
    if m := _AMPM.match(tok):
        hour, minute = int(m[1]), int(m[2] or 0)
        if not 1 <= hour <= 12 or minute > 59:
            raise CommandError(f"`{tok}` is not a time of day. Try 9am, 5:30pm or 24-hour 17:30.")
        hour = hour % 12 + (12 if m[3].lower() == "pm" else 0)
        return f"{hour:02d}:{minute:02d}"
    if ":" in tok and re.match(r"^\d", tok):
        raise CommandError(f"`{tok}` is not a time of day. Use 24-hour HH:MM, e.g. 09:00.")
    return None


@lru_cache(maxsize=1)
def _zones() -> dict[str, str]:
    return {name.lower(): name for name in available_timezones()}


def parse_zone(tok: str, *, explicit: bool = False) -> str | None:
    """An IANA zone name (any case), or None when ``tok`` does not look like one."""
    name = _zones().get(tok.lower())
    if name and ("/" in tok or tok.upper() in ("UTC", "GMT") or tok == name or explicit):
        return name
    if "/" in tok or explicit:
        raise CommandError(
            f"`{tok}` is not a time zone I know. Use an IANA name such as Europe/Berlin, "
            "America/New_York or UTC."
        )
    return None


def check_zone(name: str | None) -> str | None:
    if not name:
        return None
    try:
        ZoneInfo(name)
    except (KeyError, ValueError):
        return None
    return name


_DURATION_UNITS = {
    "s": 1 / 3600, "sec": 1 / 3600, "secs": 1 / 3600, "second": 1 / 3600, "seconds": 1 / 3600,
    "m": 1 / 60, "min": 1 / 60, "mins": 1 / 60, "minute": 1 / 60, "minutes": 1 / 60,
    "h": 1.0, "hr": 1.0, "hrs": 1.0, "hour": 1.0, "hours": 1.0,
    "d": 24.0, "day": 24.0, "days": 24.0,
    "w": 168.0, "wk": 168.0, "wks": 168.0, "week": 168.0, "weeks": 168.0,
}
_UNIT_HOURS = {"seconds": 1 / 3600, "minutes": 1 / 60, "hours": 1.0, "days": 24.0}


def parse_duration(words: list[str]) -> timedelta:
    """``["2d"]``, ``["3", "hours"]``, ``["1w"]``, ``["90m"]`` -> a timedelta."""
    text = "".join(words).lower()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([a-z]+)", text)
    if not m or m[2] not in _DURATION_UNITS or m[2] in ("s", "sec", "secs", "second", "seconds"):
        raise CommandError(f"`{' '.join(words)}` is not a duration. Try 30m, 3h, 2d or 1w.")
    hours = float(m[1]) * _DURATION_UNITS[m[2]]
    if hours <= 0:
        raise CommandError("A snooze must last some time, e.g. 2d.")
    return timedelta(hours=hours)


# ---- KPI words ------------------------------------------------------------------------------


def take_metric(tokens: list[str], start: int, stop: int | None = None) -> tuple[Metric, int]:
    """The KPI named by ``tokens[start:]`` (longest multi-word name first) and its length."""
    stop = len(tokens) if stop is None else stop
    for end in range(stop, start, -1):
        metric = lookup(" ".join(tokens[start:end]))
        if metric is not None:
            return metric, end - start
    try:
        return resolve(tokens[start]), 1
    except QueryError as exc:
        raise CommandError(str(exc)) from None


# ---- digests --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DigestSpec:
    frequency: str  # daily, weekly, monthly
    weekday: int | None
    day_of_month: str | None  # "1".."28" or "last"
    at_time: str  # "HH:MM"
    timezone: str
    metrics: tuple[str, ...]

    def schedule_text(self) -> str:
        if self.frequency == "daily":
            when = "every day"
        elif self.frequency == "weekly":
            when = f"every {WEEKDAY_NAMES[self.weekday or 0]}"
        else:
            dom = self.day_of_month or "1"
            when = "on the last day of every month" if dom == "last" else f"on day {dom} of every month"
        return f"{when} at {self.at_time} ({self.timezone})"

    def command_text(self) -> str:
        parts = [self.frequency]
        if self.frequency == "weekly":
            parts.append(WEEKDAY_NAMES[self.weekday or 0][:3].lower())
        if self.frequency == "monthly":
            parts.append(self.day_of_month or "1")
        parts += [self.at_time, self.timezone, *self.metrics]
        return " ".join(parts)


def parse_digest(words: list[str], *, default_tz: str) -> DigestSpec:
    tokens = tokenize(words)
    if not tokens:
        raise CommandError(f"Say how often and which KPIs, e.g. {DIGEST_EXAMPLE}.")
    frequency = FREQUENCIES.get(tokens[0].lower())
    if frequency is None:
        raise CommandError(
            f"A digest starts with daily, weekly or monthly, not `{tokens[0]}`. Example: {DIGEST_EXAMPLE}."
        )
    weekday: int | None = None
    day_of_month: str | None = None
    at_time: str | None = None
    zone: str | None = None
    kpis: list[str] = []
    i = 1
    while i < len(tokens):
        tok = tokens[i]
        low = tok.lower()
        if low in ("tz", "timezone", "in") and i + 1 < len(tokens):
            zone = parse_zone(tokens[i + 1], explicit=True)
            i += 2
            continue
        if low in _FILLER:
            i += 1
            continue
        if low in WEEKDAYS:
            if frequency != "weekly":
                raise CommandError(f"A {frequency} digest has no weekday; use `weekly {low[:3]} ...`.")
            if weekday is not None:
                raise CommandError("Give one weekday for a weekly digest.")
            weekday = WEEKDAYS[low]
            i += 1
            continue
        if frequency == "monthly" and (m := re.fullmatch(r"(\d{1,2})(st|nd|rd|th)?|last", low)):
            if day_of_month is not None:
                raise CommandError("Give one day of the month for a monthly digest.")
            if low == "last":
                day_of_month = "last"
            else:
                day = int(m[1])
                if not 1 <= day <= 28:
                    raise CommandError(
                        f"Day {day} is not in every month. Use a day from 1 to 28, or `last`."
                    )
                day_of_month = str(day)
            i += 1
            continue
        parsed_time = parse_time(tok)
        if parsed_time is not None:
            if at_time is not None:
                raise CommandError("Give one time of day for a digest.")
            at_time = parsed_time
            i += 1
            continue
        if (found := parse_zone(tok)) is not None:
            zone = found
            i += 1
            continue
        if re.fullmatch(r"\d+", tok):
            raise CommandError(f"`{tok}` is not a time of day. Use HH:MM, e.g. 09:00.")
        metric, used = take_metric(tokens, i)
        if metric.id not in kpis:
            kpis.append(metric.id)
        i += used
    if not kpis:
        raise CommandError(f"Name at least one KPI for the digest, e.g. {DIGEST_EXAMPLE}.")
    if len(kpis) > MAX_DIGEST_KPIS:
        raise CommandError(f"A digest can hold up to {MAX_DIGEST_KPIS} KPIs; split it in two.")
    if frequency == "weekly" and weekday is None:
        weekday = 0
    if frequency == "monthly" and day_of_month is None:
        day_of_month = "1"
    return DigestSpec(
        frequency=frequency,
        weekday=weekday,
        day_of_month=day_of_month,
        at_time=at_time or "09:00",
        timezone=zone or default_tz,
        metrics=tuple(kpis),
    )


# ---- alerts ---------------------------------------------------------------------------------

_CONDITIONS = {
    **dict.fromkeys(("below", "under", "<", "beneath", "less", "lower"), "below"),
    **dict.fromkeys(("above", "over", ">", "exceeds", "greater", "more", "higher"), "above"),
    **dict.fromkeys(("drops", "drop", "falls", "fall", "decreases", "decrease", "dips", "declines", "down"), "drops"),
    **dict.fromkeys(("rises", "rise", "increases", "increase", "jumps", "grows", "climbs", "up"), "rises"),
}
_WINDOWS = {
    **dict.fromkeys(("day-over-day", "dod", "d/d", "daily", "day"), 1),
    **dict.fromkeys(("week-over-week", "wow", "w/w", "weekly", "week"), 7),
    **dict.fromkeys(("month-over-month", "mom", "m/m", "monthly", "month"), 30),
}
_POINTS = {"points", "point", "pts", "pt", "pp"}
_PERCENT = {"%", "percent", "pct"}
_MULTIPLIERS = {"k": 1e3, "thousand": 1e3, "m": 1e6, "mn": 1e6, "million": 1e6, "bn": 1e9, "b": 1e9}
_NUMBER = re.compile(r"^([$€£]?)(-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?)([a-z%]*)$", re.I)
MAX_WINDOW_DAYS = 92
DURATION_UNITS = ("seconds", "minutes", "hours", "days")


@dataclass(frozen=True)
class AlertSpec:
    metric: str
    condition: str  # above, below, drops, rises
    threshold: float  # in the KPI's unit; a change size for drops/rises
    relative: bool = False  # drops/rises measured in percent of the previous value
    window_days: int = 7
    consecutive: int = 1
    min_sample: int | None = None
    dimension: str | None = None
    timezone: str = "UTC"

    def describe(self, metric: Metric) -> str:
        if self.condition in ("above", "below"):
            text = f"{metric.id} {self.condition} {threshold_text(metric, self.threshold)}"
        else:
            size = f"{self.threshold:g}%" if self.relative else change_text(metric, self.threshold)
            text = f"{metric.id} {self.condition} {size} {_window_name(self.window_days, compare=True)}"
        if self.condition in ("above", "below"):
            text += f" ({_window_name(self.window_days)})"
        if self.dimension:
            text += f" by {self.dimension}"
        if self.consecutive > 1:
            text += f", {self.consecutive} windows in a row"
        if self.min_sample:
            text += f", min {self.min_sample} responses"
        return text


def threshold_text(metric: Metric, value: float) -> str:
    """A threshold as people write it: 30, 80%, 1 h, 45 min, $10,000."""
    if metric.unit == "score":
        return f"{value:g}"
    if metric.unit == "percent":
        return f"{value:g}%"
    if metric.unit == "hours":
        return f"{value * 60:g} min" if value < 1 else f"{value:g} h"
    return format_value(metric, value)


def change_text(metric: Metric, size: float) -> str:
    if metric.unit == "percent":
        return f"{size:g} pp"
    if metric.unit == "score":
        return f"{size:g} points"
    return threshold_text(metric, size)


def _window_name(days: int, compare: bool = False) -> str:
    if compare:
        return {1: "day-over-day", 7: "week-over-week", 30: "month-over-month"}.get(
            days, f"over {days} days vs the {days} before"
        )
    return {1: "daily window", 7: "7-day window", 30: "30-day window"}.get(days, f"{days}-day window")


def bounds(metric: Metric) -> tuple[float | None, float | None]:
    """The range a KPI's value can take, for refusing impossible conditions."""
    if metric.survey == "nps":
        return -100.0, 100.0
    if metric.unit == "percent":
        if "growth" in metric.id or "change" in metric.id:
            return None, None
        return 0.0, 100.0
    if metric.survey in SURVEY_SCALES and metric.unit == "score":
        low, high = SURVEY_SCALES[metric.survey]
        return float(low), float(high)
    if metric.unit in ("count", "currency", "ratio", *DURATION_UNITS, "months"):
        return 0.0, None
    return None, None


def _amount(tokens: list[str], i: int, metric: Metric, condition: str) -> tuple[float, bool, int]:
    """The number after the condition, in the KPI's unit: (value, relative, tokens used)."""
    if i >= len(tokens):
        raise CommandError(f"Say how much, e.g. `{metric.id} {condition} 30`.")
    m = _NUMBER.match(tokens[i])
    if not m:
        raise CommandError(f"`{tokens[i]}` is not a number. Example: {ALERT_EXAMPLES}.")
    value = float(m[2].replace(",", ""))
    suffix = m[3].lower()
    used = 1
    if not suffix and i + 1 < len(tokens):
        nxt = tokens[i + 1].lower()
        if (
            nxt in _POINTS
            or nxt in _PERCENT
            or (nxt in _DURATION_UNITS and metric.unit in DURATION_UNITS)
            or (nxt in _MULTIPLIERS and metric.unit in ("currency", "count"))
        ):
            suffix, used = nxt, 2
        elif nxt in _DURATION_UNITS and nxt != "min":  # "min" also means a minimum sample
            raise CommandError(f"`{metric.id}` is a {metric.unit}, not a duration.")
    change = condition in ("drops", "rises")
    relative = False
    label = metric.id
    if suffix in _PERCENT:
        if metric.unit == "percent":
            pass  # percentage points of a percent KPI
        elif change and metric.unit != "score":
            relative = True
        else:
            raise CommandError(
                f"`{label}` is a {metric.unit}, not a percentage: give the value in its own unit"
                + (", e.g. `nps drops 10 points`." if metric.unit == "score" else ".")
            )
    elif suffix in _POINTS:
        if metric.unit not in ("percent", "score"):
            raise CommandError(f"`{label}` is measured in {metric.unit}, not points.")
    elif metric.unit in DURATION_UNITS and suffix in _DURATION_UNITS:
        value = value * _DURATION_UNITS[suffix] / _UNIT_HOURS[metric.unit]
    elif metric.unit in ("currency", "count") and suffix in _MULTIPLIERS:
        value *= _MULTIPLIERS[suffix]
    elif suffix in _DURATION_UNITS:
        raise CommandError(f"`{label}` is a {metric.unit}, not a duration.")
    elif suffix:
        raise CommandError(f"I don't understand the unit in `{tokens[i]}`.")
    if m[1] and metric.unit != "currency":
        raise CommandError(f"`{label}` is not an amount of money.")
    return value, relative, used


def _check_possible(metric: Metric, spec: AlertSpec) -> None:
    low, high = bounds(metric)
    fmt = threshold_text
    name = metric.id
    x = spec.threshold
    if spec.condition == "above":
        if high is not None and x >= high:
            raise CommandError(
                f"`{name}` can never be above {fmt(metric, x)}: it is at most {fmt(metric, high)}."
            )
        if low is not None and x < low:
            raise CommandError(
                f"`{name}` is never below {fmt(metric, low)}, so `above {fmt(metric, x)}` would always be true."
            )
    elif spec.condition == "below":
        if low is not None and x <= low:
            raise CommandError(
                f"`{name}` can never be below {fmt(metric, x)}: it is at least {fmt(metric, low)}."
            )
        if high is not None and x > high:
            raise CommandError(
                f"`{name}` is never above {fmt(metric, high)}, so `below {fmt(metric, x)}` would always be true."
            )
    else:
        if x <= 0:
            raise CommandError(f"A {spec.condition[:-1]} must be bigger than zero, e.g. `{name} {spec.condition} 5`.")
        if spec.relative:
            if spec.condition == "drops" and x > 100 and (low is not None and low >= 0):
                raise CommandError(f"`{name}` cannot drop by more than 100%.")
        elif low is not None and high is not None and x > high - low:
            span = high - low
            raise CommandError(
                f"`{name}` can only move within {fmt(metric, low)}–{fmt(metric, high)}, "
                f"so it can never {spec.condition[:-1]} by more than {span:g} points."
            )


def parse_alert(words: list[str], *, default_tz: str) -> AlertSpec:
    tokens = tokenize(words)
    if not tokens:
        raise CommandError(f"Say which KPI and when to alert, e.g. {ALERT_EXAMPLES}.")
    cond_at = next((i for i, t in enumerate(tokens) if i > 0 and t.lower() in _CONDITIONS), None)
    if cond_at is None:
        if lookup(" ".join(tokens)) is None:
            take_metric(tokens, 0)  # an unknown KPI is the clearer complaint
        raise CommandError(
            f"Say when to alert: below, above, drops or rises. Examples: {ALERT_EXAMPLES}."
        )
    stop = cond_at
    while stop > 1 and tokens[stop - 1].lower() in _FILLER:
        stop -= 1
    metric, used = take_metric(tokens, 0, stop)
    if used != stop:
        raise CommandError(f"I don't understand `{' '.join(tokens[used:stop])}` after `{metric.id}`.")
    condition = _CONDITIONS[tokens[cond_at].lower()]
    i = cond_at + 1
    # "falls below", "drops under", "goes above", "less than", "drops by"
    while i < len(tokens) and (tokens[i].lower() in _CONDITIONS or tokens[i].lower() in ("than", "by")):
        word = tokens[i].lower()
        if word in _CONDITIONS and _CONDITIONS[word] in ("above", "below"):
            condition = _CONDITIONS[word]
        elif word == "by" and condition in ("above", "below"):
            break
        i += 1
    threshold, relative, used = _amount(tokens, i, metric, condition)
    i += used

    window: int | None = None
    consecutive = 1
    min_sample: int | None = None
    dimension: str | None = None
    zone: str | None = None
    while i < len(tokens):
        tok = tokens[i]
        low = tok.lower()
        nxt = tokens[i + 1].lower() if i + 1 < len(tokens) else None
        nxt2 = tokens[i + 2].lower() if i + 2 < len(tokens) else None
        if low in _WINDOWS:
            window = _WINDOWS[low]
            i += 1
        elif nxt == "over" and nxt2 == low and low in ("day", "week", "month"):
            window = _WINDOWS[low]
            i += 3
        elif low in ("vs", "versus", "from", "compared") and nxt is not None:
            j = i + 1 + (nxt in ("to", "with"))
            j += j < len(tokens) and tokens[j].lower() in ("last", "previous", "the", "prior")
            if j >= len(tokens) or tokens[j].lower() not in _WINDOWS:
                raise CommandError("Compare with the previous day, week or month, e.g. `week-over-week`.")
            window = _WINDOWS[tokens[j].lower()]
            i = j + 1
        elif low in ("over", "per", "window") and nxt is not None:
            window, used = _window(tokens, i + 1)
            i += 1 + used
        elif low == "by" and nxt is not None:
            try:
                dimension = resolve_dimension(metric, tokens[i + 1])
            except QueryError as exc:
                raise CommandError(str(exc)) from None
            i += 2
        elif low == "for" and nxt is not None and re.fullmatch(r"\d+", nxt) and nxt2 and nxt2.rstrip("s") in (
            "window", "check", "time", "period", "day", "evaluation", "run",
        ):
            consecutive = int(nxt)
            i += 3
        elif re.fullmatch(r"\d+", low) and nxt in ("in", "times", "consecutive"):
            consecutive = int(low)
            j = i + 1
            while j < len(tokens) and tokens[j].lower() in ("in", "a", "row", "times", "consecutive", "windows", "checks"):
                j += 1
            i = j
        elif low in ("min", "min-sample", "minimum", "least") and nxt is not None:
            j = i + 1 + (nxt in ("sample", "of"))
            if j >= len(tokens) or not re.fullmatch(r"\d+", tokens[j]):
                raise CommandError("`min` takes a number of responses, e.g. `min 50`.")
            min_sample = int(tokens[j])
            i = j + 1
            while i < len(tokens) and tokens[i].lower() in ("responses", "answers", "response"):
                i += 1
        elif low in ("tz", "timezone", "in") and nxt is not None:
            zone = parse_zone(tokens[i + 1], explicit=True)
            i += 2
        elif low in _FILLER or low in ("at", "least", "a"):
            i += 1
        elif (found := parse_zone(tok)) is not None:
            zone = found
            i += 1
        else:
            raise CommandError(f"I don't understand `{tok}` in that alert. Examples: {ALERT_EXAMPLES}.")

    if not 1 <= consecutive <= 30:
        raise CommandError("Consecutive windows must be between 1 and 30.")
    if min_sample is not None and not 1 <= min_sample <= 1_000_000:
        raise CommandError("The minimum sample must be at least 1 response.")
    spec = AlertSpec(
        metric=metric.id,
        condition=condition,
        threshold=threshold,
        relative=relative,
        window_days=window or 7,
        consecutive=consecutive,
        min_sample=min_sample,
        dimension=dimension,
        timezone=zone or default_tz,
    )
    _check_possible(metric, spec)
    return spec


def _window(tokens: list[str], i: int) -> tuple[int, int]:
    """``7d``, ``14 days``, ``a week``, ``2 weeks``, ``month`` -> (days, tokens used)."""
    tok = tokens[i].lower()
    if tok in ("a", "one", "the", "last") and i + 1 < len(tokens):
        days, used = _window(tokens, i + 1)
        return days, used + 1
    if tok in _WINDOWS:
        return _WINDOWS[tok], 1
    m = re.fullmatch(r"(\d+)([a-z]*)", tok)
    if m:
        unit, used = m[2], 1
        if not unit and i + 1 < len(tokens):
            unit, used = tokens[i + 1].lower(), 2
        per = {"d": 1, "day": 1, "days": 1, "w": 7, "week": 7, "weeks": 7, "month": 30, "months": 30}.get(unit)
        if per:
            days = int(m[1]) * per
            if not 1 <= days <= MAX_WINDOW_DAYS:
                raise CommandError(f"An alert window is 1 to {MAX_WINDOW_DAYS} days.")
            return days, used
    raise CommandError(f"`{tokens[i]}` is not a window. Try `over 7d`, `over 14 days` or `over a month`.")


def parse_until(words: list[str], *, now: datetime, tz: str) -> datetime:
    """A snooze end: ``2d`` / ``3 hours`` from now, or ``until 2026-04-01`` (local midnight)."""
    if words and words[0].lower() == "until":
        words = words[1:]
        if len(words) == 1 and re.fullmatch(r"\d{4}-\d{2}-\d{2}", words[0]):
            try:
                day = date.fromisoformat(words[0])
            except ValueError:
                raise CommandError(f"`{words[0]}` is not a date.") from None
            end = datetime.combine(day, time(0), tzinfo=ZoneInfo(tz))
            if end <= now:
                raise CommandError(f"{day.isoformat()} has already begun.")
            return end
        raise CommandError("Say `until 2026-04-01`, or a duration like 2d.")
    if not words:
        raise CommandError("Say for how long, e.g. `2d`, `3h` or `1w`.")
    return now + parse_duration(words)
