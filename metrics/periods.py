"""Calendar periods: what "last-quarter" or "2026-Q3" means on a given day.

A :class:`Period` is a half-open range of local calendar dates ``[start, end)``. Periods that
are still running ("this month", "mtd", "since 2026-01-01", and a named period that contains
today, like "2026" in December 2026) end at the last complete day, yesterday: today is empty
or partial, and counting it makes every to-date number look like a drop. Their comparison
period covers the same number of days one unit earlier, so that a month to date is compared
like for like, and both labels say which days they cover. "today" is the one exception: it
was asked for, so it is today so far. Weeks start on Monday; years and quarters follow the fiscal year
start month (``KPI_FISCAL_YEAR_START``, default 1 = January). Fiscal year N is named by the
calendar year in which it ends, as most companies do (FY2027 may start in July 2026).
"""

from __future__ import annotations

import calendar
import os
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from metrics.errors import BadPeriod, TooLarge

GRAINS = ("day", "week", "month", "quarter", "year")
MAX_POINTS = 400  # a trend longer than this is refused: ten years by day is not a chart


@dataclass(frozen=True)
class Settings:
    timezone: str = "UTC"
    fiscal_year_start: int = 1  # month 1-12
    week_start: int = 0  # Monday

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            timezone=os.environ.get("KPI_TIMEZONE", "UTC"),
            fiscal_year_start=int(os.environ.get("KPI_FISCAL_YEAR_START", "1")),
        )

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # exclusive
    label: str
    unit: str = "day"  # the calendar unit the period was named in, for stepping back
    to_date: bool = False  # still running: compared like for like

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def utc_bounds(self, settings: Settings) -> tuple[datetime, datetime]:
        """Local midnights at start and end, as naive UTC timestamps (how the data is stored)."""
        return to_utc(self.start, settings), to_utc(self.end, settings)

    def __str__(self) -> str:
        last = self.end - timedelta(days=1)
        if self.start == last:
            return f"{self.label} ({self.start.isoformat()})"
        return f"{self.label} ({self.start.isoformat()} to {last.isoformat()})"


def to_utc(d: date, settings: Settings) -> datetime:
    local = datetime.combine(d, time(0), tzinfo=settings.zone)
    return local.astimezone(UTC).replace(tzinfo=None)


def today_in(settings: Settings, now: datetime | None = None) -> date:
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(settings.zone).date()


# ---- calendar arithmetic -------------------------------------------------------------


def add_months(d: date, months: int) -> date:
    total = d.year * 12 + (d.month - 1) + months
    year, month = divmod(total, 12)
    day = min(d.day, calendar.monthrange(year, month + 1)[1])
    return date(year, month + 1, day)


def unit_start(d: date, unit: str, settings: Settings) -> date:
    if unit == "day":
        return d
    if unit == "week":
        return d - timedelta(days=(d.weekday() - settings.week_start) % 7)
    if unit == "month":
        return d.replace(day=1)
    fy = settings.fiscal_year_start
    months_into_year = (d.month - fy) % 12
    if unit == "quarter":
        return add_months(d.replace(day=1), -(months_into_year % 3))
    if unit == "year":
        return add_months(d.replace(day=1), -months_into_year)
    raise ValueError(unit)


def step(d: date, unit: str, n: int = 1) -> date:
    if unit == "day":
        return d + timedelta(days=n)
    if unit == "week":
        return d + timedelta(weeks=n)
    if unit == "month":
        return add_months(d, n)
    if unit == "quarter":
        return add_months(d, 3 * n)
    if unit == "year":
        return add_months(d, 12 * n)
    raise ValueError(unit)


def fiscal_year_of(d: date, settings: Settings) -> int:
    start = unit_start(d, "year", settings)
    return start.year + (1 if settings.fiscal_year_start > 1 else 0)


def fiscal_year_start(year: int, settings: Settings) -> date:
    fy = settings.fiscal_year_start
    return date(year - (1 if fy > 1 else 0), fy, 1)


def quarter_label(d: date, settings: Settings) -> str:
    ys = unit_start(d, "year", settings)
    q = ((d.year - ys.year) * 12 + d.month - ys.month) // 3 + 1
    return f"{fiscal_year_of(d, settings)}-Q{q}"


# ---- the comparison period -------------------------------------------------------------


def previous(period: Period) -> Period:
    """The period just before, of the same kind (like for like for to-date periods)."""
    if period.unit == "day" or period.unit.startswith("days"):
        days = period.days
        start = period.start - timedelta(days=days)
        return Period(start, period.start, f"previous {days} days" if days > 1 else "previous day", "day")
    n = int(period.unit.split(":")[1]) if ":" in period.unit else 1
    unit = period.unit.split(":")[0]
    start = step(period.start, unit, -n)
    if period.to_date:
        end = start + timedelta(days=period.days)
        end = min(end, period.start)
        return Period(start, end, f"same days of the previous {unit}, {span_label(start, end)}", period.unit, True)
    return Period(start, period.start, f"previous {unit}" if n == 1 else f"previous {n} {unit}s", period.unit)


def year_ago(period: Period) -> Period:
    start = add_months(period.start, -12)
    if period.to_date:
        end = start + timedelta(days=period.days)
        return Period(start, end, f"same days last year, {span_label(start, end)}", period.unit, True)
    return Period(start, add_months(period.end, -12), "same period last year", period.unit)


def span_label(start: date, end: date) -> str:
    """The days ``[start, end)`` in words: "1–22 Oct 2026", "1 Jan – 30 Nov 2025"."""
    last = end - timedelta(days=1)
    if start >= last:
        return f"{start:%-d %b %Y}"
    if (start.year, start.month) == (last.year, last.month):
        return f"{start.day}–{last:%-d %b %Y}"
    if start.year == last.year:
        return f"{start:%-d %b} – {last:%-d %b %Y}"
    return f"{start:%-d %b %Y} – {last:%-d %b %Y}"


def today_so_far(label: str, today: date) -> Period:
    """A running period that began today has no complete day: it is today so far, said so
    (the answer notes the day is not over and judges no change) rather than refused."""
    return Period(today, today + timedelta(days=1), f"{label} so far (today, {today:%a %-d %b})", "day", True)


def clip_running(period: Period, today: date) -> Period:
    """A named period that is still running ("2026" on 1 December, the current quarter or
    month) ends at the last complete day and is compared like for like ("2026 to 30 Nov vs
    1 Jan – 30 Nov 2025"): comparing eleven months with twelve reads as a change that is
    not there. "today" (asked for by name) and to-date words are left as they are."""
    if period.to_date or period.end <= today or period.start > today:
        return period
    if period.start == today:
        return today_so_far(period.label, today)
    last = today - timedelta(days=1)
    if period.unit in ("day", "days"):
        label = f"{period.start.isoformat()} to {last.isoformat()} (so far)"
    else:
        label = f"{period.label} to {last:%-d %b}"
    return Period(period.start, today, label, period.unit, True)


# ---- buckets for trends ----------------------------------------------------------------


def auto_grain(period: Period) -> str:
    """The grain a person expects: days over a month, weeks over a quarter, months beyond."""
    if period.days <= 45:
        return "day"
    if period.days <= 100:
        return "week"
    return "month"


def buckets(period: Period, grain: str, settings: Settings) -> list[tuple[date, date]]:
    """Consecutive [start, end) buckets of ``grain`` covering the period (clipped at its edges)."""
    out: list[tuple[date, date]] = []
    cursor = unit_start(period.start, grain, settings)
    estimated = period.days / {"day": 1, "week": 7, "month": 30, "quarter": 91, "year": 365}[grain]
    if estimated > MAX_POINTS:
        raise TooLarge(
            f"That trend would have about {int(estimated)} points; the most I draw is {MAX_POINTS}. "
            f"Try a coarser grain (weekly, monthly) or a shorter period."
        )
    while cursor < period.end:
        nxt = step(cursor, grain)
        out.append((max(cursor, period.start), min(nxt, period.end)))
        cursor = nxt
    return out


# ---- parsing period words --------------------------------------------------------------

MONTHS = {
    name: i
    for i in range(1, 13)
    for name in (calendar.month_name[i].lower(), calendar.month_abbr[i].lower())
}
MONTHS["sept"] = 9
UNITS = {
    "day": "day", "days": "day", "week": "week", "weeks": "week", "month": "month",
    "months": "month", "quarter": "quarter", "quarters": "quarter", "year": "year", "years": "year",
    "wk": "week", "wks": "week", "mo": "month", "mos": "month", "mth": "month", "mths": "month",
    "qtr": "quarter", "qtrs": "quarter", "yr": "year", "yrs": "year",
}
_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "eighteen": 18, "twenty": 20, "thirty": 30, "sixty": 60, "ninety": 90,
}

_ISO_DAY = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_ISO_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
_ISO_QUARTER = re.compile(r"^(\d{4})-?q([1-4])$")
_QUARTER = re.compile(r"^q([1-4])$")
_YEAR = re.compile(r"^(19|20)\d{2}$")
_FY_YEAR = re.compile(r"^fy(\d{2}|\d{4})$")
_HALF = re.compile(r"^h([12])$")
_WEEK_NO = re.compile(r"^(?:w|wk)?(\d{1,2})$")


def _check_year(year: int, tok: str) -> None:
    """Years as in ``_YEAR`` (19xx, 20xx): ``0000-01`` or ``9999-Q4`` would overflow the calendar."""
    if not 1900 <= year <= 2099:
        raise BadPeriod(f"`{tok}` is out of range: years from 1900 to 2099 only.")


def _iso_date(tok: str) -> date | None:
    m = _ISO_DAY.match(tok)
    if not m:
        return None
    _check_year(int(m[1]), tok)
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        raise BadPeriod(f"`{tok}` is not a real date.") from None


def _whole(unit: str, start: date, label: str, settings: Settings) -> Period:
    return Period(start, step(start, unit), label, unit)


@dataclass
class PeriodMatch:
    period: Period
    length: int  # tokens consumed
    grain_hint: str | None = field(default=None)


def match_period(tokens: list[str], i: int, today: date, settings: Settings) -> PeriodMatch | None:
    """Try to read a period starting at ``tokens[i]``; the longest form wins. A period still
    running ends at the last complete day (:func:`clip_running`)."""
    match = _match_words(tokens, i, today, settings)
    if match is not None:
        match.period = clip_running(match.period, today)
    return match


def _match_words(tokens: list[str], i: int, today: date, settings: Settings) -> PeriodMatch | None:
    """The period at ``tokens[i]``, before clipping. Besides the single forms below: ranges
    (``between A and B``, ``from A to B``, ``A to B`` where A and B are dates, months, quarters
    or halves), ``since <month>``, ``week 47``.
    """
    t = tokens[i]
    nxt = tokens[i + 1] if i + 1 < len(tokens) else None
    if t in ("between", "from") and nxt:
        first = _match_single(tokens, i + 1, today, settings)
        if first is not None:
            j = i + 1 + first.length
            sep = tokens[j] if j < len(tokens) else None
            if sep in (("and",) if t == "between" else ("to", "until", "till", "through", "thru", "-")):
                ranged = _range(first, tokens, j + 1, today, settings)
                if ranged is not None:
                    return PeriodMatch(ranged[0], ranged[1] - i)
            if t == "from":  # "from march": a single period
                return PeriodMatch(first.period, first.length + 1)
        return None
    if t == "since" and nxt and (nxt in MONTHS or _QUARTER.match(nxt) or _HALF.match(nxt)):
        first = _match_single(tokens, i + 1, today, settings)
        if first is not None:
            start = first.period.start
            if start > today:
                raise BadPeriod(f"{start.isoformat()} is in the future.")
            label = f"since {first.period.label}"
            return PeriodMatch(Period(start, today + timedelta(days=1), label, "days", True), 1 + first.length)
    if t == "week" and nxt and (m := _WEEK_NO.match(nxt)):
        return _week_number(int(m[1]), tokens, i + 2, today, 2)
    single = _match_single(tokens, i, today, settings)
    if single is None:
        return None
    j = i + single.length
    if j < len(tokens) and tokens[j] in ("to", "until", "till", "through", "thru") and single.length <= 2 \
            and not _ISO_DAY.match(t):
        try:
            ranged = _range(single, tokens, j + 1, today, settings)
        except BadPeriod:  # "this year to last year" is not a range
            ranged = None
        if ranged is not None:
            return PeriodMatch(ranged[0], ranged[1] - i)
    return single


def _range(first: PeriodMatch, tokens: list[str], j: int, today: date, settings: Settings):
    """``first`` to the period at ``tokens[j]``: (Period, index after it), or None."""
    if j >= len(tokens):
        return None
    second = _match_single(tokens, j, today, settings)
    if second is None:
        return None
    a, b = first.period, second.period
    if a.unit == "month" and b.unit == "month" and first.length == 1 and second.length == 2:
        a = _whole("month", date(b.start.year, a.start.month, 1), a.start.strftime("%B"), settings)
    if a.unit == "month" and b.unit == "month" and a.start > b.start and first.length == 1:
        a = _whole("month", add_months(a.start, -12), a.label, settings)
    if b.end <= a.start:
        raise BadPeriod(f"`{a.label} to {b.label}` ends before it starts.")
    last = b.end - timedelta(days=1)
    label = f"{a.start.isoformat()} to {last.isoformat()}"
    return Period(a.start, b.end, label, "days"), j + second.length


def _week_number(week: int, tokens: list[str], j: int, today: date, used: int) -> PeriodMatch:
    """ISO week ``week``: of the year after it, else the latest such week that has begun."""
    year, consumed = today.year, 0
    if j < len(tokens) and _YEAR.match(tokens[j]):
        year, consumed = int(tokens[j]), 1
    if not 1 <= week <= 53:
        raise BadPeriod(f"`week {week}` is not a week of the year (1 to 53).")
    try:
        start = date.fromisocalendar(year, week, 1)
        if not consumed and start > today:
            start = date.fromisocalendar(year - 1, week, 1)
    except ValueError:
        raise BadPeriod(f"{year} has no week {week}.") from None
    label = f"week {week} {start.isocalendar()[0]}"
    return PeriodMatch(Period(start, start + timedelta(days=7), label, "week"), used + consumed)


def _year_after(tokens: list[str], j: int, today: date) -> tuple[int | None, int]:
    """The year named at ``tokens[j]``: `2025`, `last year`, `this year`, `of the year` …"""
    k = j
    if k < len(tokens) and tokens[k] == "of":
        k += 1
    if k < len(tokens) and tokens[k] == "the":
        k += 1
    if k >= len(tokens):
        return None, 0
    t = tokens[k]
    nxt = tokens[k + 1] if k + 1 < len(tokens) else None
    if _YEAR.match(t):
        return int(t), k + 1 - j
    if t in ("last", "previous", "prior") and nxt == "year":
        return today.year - 1, k + 2 - j
    if t in ("this", "current") and nxt == "year":
        return today.year, k + 2 - j
    if t == "year" and k > j:  # "of the year"
        return today.year, k + 1 - j
    return None, 0


def _match_single(tokens: list[str], i: int, today: date, settings: Settings) -> PeriodMatch | None:
    t = tokens[i]
    nxt = tokens[i + 1] if i + 1 < len(tokens) else None
    nxt2 = tokens[i + 2] if i + 2 < len(tokens) else None
    tomorrow = today + timedelta(days=1)

    if t == "today":
        return PeriodMatch(Period(today, tomorrow, "today", "day", True), 1)
    if t == "yesterday":
        return PeriodMatch(Period(today - timedelta(days=1), today, "yesterday", "day"), 1)
    if t in ("mtd", "qtd", "ytd", "wtd"):
        unit = {"mtd": "month", "qtd": "quarter", "ytd": "year", "wtd": "week"}[t]
        return PeriodMatch(_to_date(unit, today, settings, t.upper()), 1)
    if t == "since" and nxt:
        d = _iso_date(nxt)
        if d is None:
            raise BadPeriod(f"`since` needs a date like 2026-01-01, not `{nxt}`.")
        if d > today:
            raise BadPeriod(f"{d.isoformat()} is in the future.")
        if d == today:
            return PeriodMatch(today_so_far(f"since {d.isoformat()}", today), 2)
        return PeriodMatch(Period(d, today, f"since {d.isoformat()}", "days", True), 2)
    d = _iso_date(t)
    if d is not None:
        if nxt in ("to", "until", "through", "-", "..") and nxt2:
            e = _iso_date(nxt2)
            if e is None:
                raise BadPeriod(f"`{t} to {nxt2}`: the end must be a date like 2026-03-31.")
            if e < d:
                raise BadPeriod(f"`{t} to {nxt2}` ends before it starts.")
            return PeriodMatch(Period(d, e + timedelta(days=1), f"{d.isoformat()} to {e.isoformat()}", "days"), 3)
        return PeriodMatch(Period(d, d + timedelta(days=1), d.isoformat(), "day"), 1)
    if m := _ISO_QUARTER.match(t):
        _check_year(int(m[1]), t)
        return PeriodMatch(_quarter(int(m[1]), int(m[2]), settings), 1)
    if m := _QUARTER.match(t):
        year, used = _year_after(tokens, i + 1, today)
        if year is not None:
            _check_year(year, t)
            return PeriodMatch(_quarter(year, int(m[1]), settings), 1 + used)
        # A bare quarter means its latest occurrence that has begun, like a bare month.
        fy = fiscal_year_of(today, settings)
        period = _quarter(fy, int(m[1]), settings)
        if period.start > today:
            period = _quarter(fy - 1, int(m[1]), settings)
        return PeriodMatch(period, 1)
    if m := _HALF.match(t):
        year, used = _year_after(tokens, i + 1, today)
        if year is not None:
            _check_year(year, t)
            return PeriodMatch(_half(year, int(m[1]), settings), 1 + used)
        fy = fiscal_year_of(today, settings)
        period = _half(fy, int(m[1]), settings)
        if period.start > today:
            period = _half(fy - 1, int(m[1]), settings)
        return PeriodMatch(period, 1)
    if m := _ISO_MONTH.match(t):
        year, month = int(m[1]), int(m[2])
        _check_year(year, t)
        if not 1 <= month <= 12:
            raise BadPeriod(f"`{t}` is not a month.")
        start = date(year, month, 1)
        return PeriodMatch(_whole("month", start, start.strftime("%B %Y"), settings), 1)
    if t in MONTHS:
        if nxt and _YEAR.match(nxt):
            start = date(int(nxt), MONTHS[t], 1)
            return PeriodMatch(_whole("month", start, start.strftime("%B %Y"), settings), 2)
        # A bare month name means its latest occurrence that has begun.
        year = today.year if MONTHS[t] <= today.month else today.year - 1
        start = date(year, MONTHS[t], 1)
        return PeriodMatch(_whole("month", start, start.strftime("%B %Y"), settings), 1)
    if _YEAR.match(t):
        return PeriodMatch(_year(int(t), settings), 1)
    if m := _FY_YEAR.match(t):
        year = int(m[1]) if len(m[1]) == 4 else 2000 + int(m[1])
        _check_year(year, t)
        return PeriodMatch(_year(year, settings), 1)
    if t in ("this", "current") and nxt in UNITS:
        unit = UNITS[nxt]
        return PeriodMatch(_to_date(unit, today, settings, f"this {unit}"), 2)
    if t in ("last", "previous", "past", "prior") and nxt:
        count = _count(nxt)
        if count is not None and nxt2 in UNITS:
            return PeriodMatch(_last_n(count, UNITS[nxt2], today, settings), 3)
        if nxt in UNITS:
            unit = UNITS[nxt]
            if nxt.endswith("s"):  # "last days" without a number
                return None
            start = step(unit_start(today, unit, settings), unit, -1)
            return PeriodMatch(_named(unit, start, f"last {unit}", settings), 2)
    return None


def _count(tok: str) -> int | None:
    if tok.isdigit():
        n = int(tok)
        if n < 1:
            raise BadPeriod("A period needs at least one day.")
        return n
    return _NUMBER_WORDS.get(tok)


def _named(unit: str, start: date, label: str, settings: Settings) -> Period:
    if unit == "quarter":
        label = f"{label}, {quarter_label(start, settings)}"
    elif unit == "month":
        label = f"{label}, {start.strftime('%B %Y')}"
    elif unit == "year" and settings.fiscal_year_start == 1:
        label = f"{label}, {start.year}"
    return Period(start, step(start, unit), label, unit)


def _to_date(unit: str, today: date, settings: Settings, label: str) -> Period:
    """From the unit's start to the last complete day (yesterday): today is empty or partial."""
    start = unit_start(today, unit, settings)
    if start == today:
        return today_so_far(label, today)
    return Period(start, today, label, unit, True)


def _last_n(n: int, unit: str, today: date, settings: Settings) -> Period:
    if unit == "day":
        if n > 3660:
            raise TooLarge("That period is longer than ten years.")
        return Period(today - timedelta(days=n), today, f"last {n} days", "day")
    if n > {"week": 520, "month": 120, "quarter": 40, "year": 10}[unit]:
        raise TooLarge("That period is longer than ten years.")
    end = unit_start(today, unit, settings)
    start = step(end, unit, -n)
    return Period(start, end, f"last {n} {unit}s", f"{unit}:{n}")


def _quarter(year: int, q: int, settings: Settings) -> Period:
    start = add_months(fiscal_year_start(year, settings), 3 * (q - 1))
    return Period(start, step(start, "quarter"), f"{year}-Q{q}", "quarter")


def _half(year: int, h: int, settings: Settings) -> Period:
    start = add_months(fiscal_year_start(year, settings), 6 * (h - 1))
    name = str(year) if settings.fiscal_year_start == 1 else f"FY{year}"
    return Period(start, add_months(start, 6), f"{name}-H{h}", "month:6")


def _year(year: int, settings: Settings) -> Period:
    start = fiscal_year_start(year, settings)
    label = str(year) if settings.fiscal_year_start == 1 else f"FY{year}"
    return Period(start, step(start, "year"), label, "year")


def default_period(today: date, settings: Settings) -> Period:
    """With no period named: the 30 complete days up to today."""
    return Period(today - timedelta(days=30), today, "last 30 days", "day")


def with_label(period: Period, label: str) -> Period:
    return replace(period, label=label)
