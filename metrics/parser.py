"""The query language, one parser for the CLI, Slack and schedules.

``<metric> [period] [by <dimension>] [vs <period> | yoy] [trend | daily | weekly | monthly]
[where <dimension>=<value>]`` in any order, and the same said the way people type it: filler
("what was", "give me … please"), filters in words read from the data's own values
(``retail nps``, ``churn for SMB in EMEA``; see :mod:`metrics.values`), comparisons in words
(``vs the month before``, ``mom``, ``compared to the same quarter last year``), sorted
breakdowns (``top 3 plans by mrr``, ``which industry has the highest nps``), intent words
(``how many customers did we lose``) and misspellings (``chrun`` is read as churn, and the
answer says so). Everything it read is in the :class:`~metrics.query.Query`; what it guessed
is in ``Query.readings``. Deterministic and local: rapidfuzz for typos, no model, no network.

The passes, in order: correct misspelt words; periods, comparisons, explicit filters, ``by``
cuts, grains and sort words; value + dimension pairs (``the starter plan``); the KPI (longest
name among the remaining words, filler skipped); values of the KPI's dimensions; a bare
dimension word as the breakdown. Whatever is left must be filler, or the question is refused
with what was understood and the closest question that would be.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache

from rapidfuzz import fuzz, process

from metrics import catalogue
from metrics.errors import BadPeriod, QueryError, TooLarge, UnknownMetric
from metrics.periods import (
    MONTHS,
    UNITS,
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
from metrics.spec import Metric
from metrics.values import ValueIndex, key

MAX_TEXT = 500
FILLER = {
    "what", "whats", "what's", "was", "is", "are", "were", "the", "our", "my", "show", "me", "give",
    "tell", "how", "did", "does", "do", "for", "of", "in", "during", "please", "kpi", "a", "an",
    "about", "get", "see", "value", "current", "currently", "now", "hey", "hi", "and", "with",
    "over", "at", "on", "to", "we", "us", "much", "many", "has", "have", "been", "doing", "look",
    "like", "can", "you", "i", "want", "know", "number", "chart", "graph", "plot",
    # question forms and politeness
    "it", "its", "it's", "take", "takes", "taking", "long", "which", "who", "where", "when", "why",
    "could", "would", "should", "will", "kindly", "thanks", "thank", "pls", "plz", "just", "let",
    "lets", "let's", "i'd", "id", "we're", "pull", "fetch", "check", "report", "there",
    "here", "be", "being", "by", "per", "from", "via", "through", "across", "among", "between",
    "so", "far", "right", "end", "as", "all", "total", "overall", "average", "avg", "mean", "this",
    "that", "these", "those", "kpibot", "bot", "up", "out", "than", "they", "them", "their", "any",
    "some", "today's", "got", "gotten", "into", "stand", "standing", "looking", "stats", "numbers",
    "metric", "metrics", "ever", "had", "one", "came", "come", "coming", "received", "receive",
    "saw", "make", "made", "bring", "brought", "happened", "ratio", "rn", "fast", "quick", "quickly",
    "slow", "often",
}
#: Nouns that name what a KPI counts, dropped once the KPI is known ("urgent tickets" for FRT).
ENTITY_NOUNS = {
    "customers", "customer", "accounts", "account", "companies", "company", "clients", "client",
    "users", "user", "tickets", "ticket", "logos", "logo", "businesses", "business", "people",
    "leads", "lead", "deals", "deal", "folks", "ones", "segment", "segments", "responses", "surveys",
}
GRAIN_WORDS = {
    "daily": "day", "weekly": "week", "monthly": "month", "quarterly": "quarter", "yearly": "year",
    "annually": "year",
}
TREND_WORDS = {"trend", "trends", "trending", "trended", "history", "series", "timeline", "evolution"}
COMPARE_WORDS = {"vs", "versus", "compared", "compare", "comparing", "against", "vs.", "than", "relative"}
YOY_WORDS = {"yoy", "y/y"}
UNIT_COMPARE = {"mom": "month", "m/m": "month", "qoq": "quarter", "q/q": "quarter", "wow": "week", "w/w": "week"}
SORT_DESC = {"highest", "top", "most", "biggest", "largest", "longest", "slowest", "max", "maximum", "greatest"}
SORT_ASC = {"lowest", "bottom", "least", "smallest", "shortest", "fastest", "min", "minimum", "fewest"}
SORT_GOOD = {"best", "better"}
SORT_BAD = {"worst", "worse"}
SORT_WORDS = SORT_DESC | SORT_ASC | SORT_GOOD | SORT_BAD
#: Multi-word forms rewritten to one word before parsing.
PHRASES = {
    ("month", "over", "month"): "mom", ("month", "on", "month"): "mom",
    ("quarter", "over", "quarter"): "qoq", ("quarter", "on", "quarter"): "qoq",
    ("week", "over", "week"): "wow", ("week", "on", "week"): "wow",
    ("year", "over", "year"): "yoy", ("year", "on", "year"): "yoy",
    ("year", "to", "date"): "ytd", ("month", "to", "date"): "mtd", ("quarter", "to", "date"): "qtd",
    ("week", "to", "date"): "wtd",
    ("first", "half"): "h1", ("second", "half"): "h2", ("1st", "half"): "h1", ("2nd", "half"): "h2",
}
#: Intent words: which KPI a question means when it names none ("how long to resolve tickets").
#: Checked in order; every word of a rule must be present (any one of each set).
LOSE = {"lose", "lost", "losing", "loses", "loss", "losses", "churned"}
INTENTS: tuple[tuple[tuple[frozenset[str], ...], str], ...] = (
    ((frozenset(LOSE), frozenset({"mrr", "revenue", "money", "dollars", "arr"})), "churned_mrr"),
    ((frozenset(LOSE), frozenset({"customers", "customer", "accounts", "logos", "clients"})), "churned_customers"),
    ((frozenset({"growing", "grow", "grew"}), frozenset({"mrr", "revenue"})), "net_new_mrr"),
)
FALLBACK_INTENTS: tuple[tuple[tuple[frozenset[str], ...], str], ...] = (
    ((frozenset({"resolve", "resolved", "resolving", "solve", "close", "closing"}),), "resolution_time"),
    ((frozenset({"respond", "responding", "reply", "replying", "answer"}),), "first_response_time"),
    ((frozenset({"happy", "satisfied", "unhappy", "satisfaction"}),), "csat"),
    ((frozenset({"acquire", "acquiring"}), frozenset({"spend", "spent", "cost", "costs", "pay"})), "cac"),
    ((frozenset({"acquired", "signed", "joined", "gained", "won", "added"}), frozenset({"customers", "customer", "accounts"})), "new_customers"),
    ((frozenset({"stay", "remain"}), frozenset({"customers", "customer", "accounts"})), "tenure"),
    ((frozenset(LOSE),), "churned_customers"),
)
#: A word after (or before) a value that says which dimension it belongs to.
DIMENSION_CUES = {
    "plan": ("plan",), "plans": ("plan",), "tier": ("plan",), "tiers": ("plan",),
    "size": ("size_band",), "band": ("size_band",), "segment": ("size_band",),
    "region": ("region",), "geo": ("region",), "country": ("region",),
    "industry": ("industry",), "vertical": ("industry",), "sector": ("industry",),
    "touchpoint": ("touchpoint",), "priority": ("priority",), "category": ("category",),
    "channel": ("channel", "acquisition_channel", "source"), "source": ("source", "acquisition_channel"),
}
_PLURALS = {
    "industries": "industry", "categories": "category", "priorities": "priority", "countries": "country",
    "severities": "severity",
}
_DATEISH = re.compile(r"^\d{4}-(\d{1,2}(-\d{1,2})?|q[1-4])$")
_TOKEN = re.compile(
    r"""[^\s,;?!="']+\s*=\s*"[^"]*"|[^\s,;?!="']+\s*=\s*'[^']*'|"[^"]*"|'[^']*'|[^\s,;?!]+"""
)
_WORD = re.compile(r"^[a-z]+$")


def tokenize(text: str) -> tuple[list[str], list[str]]:
    """Lower-cased tokens for matching, and the original spelling (for filter values)."""
    raw = _TOKEN.findall(text)
    low: list[str] = []
    orig: list[str] = []
    for tok in raw:
        if tok[:1] in "\"'" and len(tok) > 1 and tok[-1] == tok[0]:
            inner = tok[1:-1].strip()
            if inner:
                low.append(inner.lower())
                orig.append(inner)
            continue
        if "=" in tok and tok[-1:] in "\"'":  # industry="Financial Services"
            name, _, value = tok.partition("=")
            tok = f"{name.strip()}={value.strip()[1:-1]}"
        tok = tok.strip(".:()[]\"'")
        if not tok:
            continue
        parts = [tok] if _DATEISH.match(tok.lower()) or "=" in tok else [p for p in tok.split("-") if p]
        for p in parts:
            low.append(p.lower())
            orig.append(p)
    return low, orig


@dataclass
class _State:
    tokens: list[str]
    original: list[str]
    today: date
    settings: Settings
    values: ValueIndex
    used: list[bool] = field(default_factory=list)
    readings: list[str] = field(default_factory=list)
    period: Period | None = None
    period_words: str = ""
    compare: Period | str | None = None  # a Period, "previous", "yoy"
    unit_compare: str | None = None  # mom/qoq/wow: the unit of the default period
    dimension_words: list[str] = field(default_factory=list)
    grain: str | None = None
    trend: bool = False
    filters: list[tuple[str, str, bool]] = field(default_factory=list)  # (dimension word, value, explicit)
    sort: str | None = None  # desc, asc, good, bad
    limit: int | None = None
    near_values: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.used = [False] * len(self.tokens)

    def mark(self, i: int, span: int) -> None:
        for k in range(i, min(i + span, len(self.used))):
            self.used[k] = True

    def nxt(self, i: int, k: int = 1) -> str | None:
        return self.tokens[i + k] if i + k < len(self.tokens) else None


def parse(
    text: str,
    *,
    today: date,
    settings: Settings | None = None,
    default_metric: str | None = None,
    values: ValueIndex | None = None,
) -> Query:
    settings = settings or Settings()
    if len(text) > MAX_TEXT:
        raise TooLarge(f"That question is {len(text)} characters long; please keep it under {MAX_TEXT}.")
    values = values or ValueIndex()
    tokens, original = tokenize(text)
    readings: list[str] = []
    tokens, original = _correct(tokens, original, values, readings)
    tokens, original = _rewrite(tokens, original)
    s = _State(tokens, original, today, settings, values, readings=readings)
    _scan(s)
    _value_pairs(s)
    metric = _find_metric(s, default_metric)
    _free_values(s, metric)
    _bare_dimensions(s, metric)
    _leftovers(s, metric)
    return _build(s, metric, text)


# ---- pass 0: misspellings and multi-word forms ------------------------------------------------


def catalogue_changed() -> None:
    """A model file changed the catalogue: the words and KPI names known are read again."""
    _vocabulary.cache_clear()
    _names.cache_clear()


@lru_cache(maxsize=1)
def _vocabulary() -> frozenset[str]:
    """Every word the parser knows: KPI names, dimensions, periods, grains, sort and filler."""
    words: set[str] = set(FILLER) | ENTITY_NOUNS | set(GRAIN_WORDS) | TREND_WORDS | COMPARE_WORDS
    words |= SORT_DESC | SORT_ASC | SORT_GOOD | SORT_BAD | set(UNIT_COMPARE) | set(MONTHS) | set(UNITS)
    words |= {"last", "this", "previous", "prior", "past", "since", "until", "today", "yesterday",
              "same", "before", "ago", "week", "where", "top", "trend", "mtd", "qtd", "ytd", "wtd", "date",
              "half", "first", "second", "between", "from", "earlier"}
    words |= set(DIMENSION_CUES) | set(_PLURALS) | set(catalogue.DIMENSION_ALIASES)
    for rule, _ in INTENTS + FALLBACK_INTENTS:
        for group in rule:
            words |= group
    for m in catalogue.CATALOGUE.values():
        for name in (m.id, m.label, *m.synonyms, *m.dimensions):
            words |= set(re.findall(r"[a-z]+", name.lower()))
    for d in {*catalogue.relations.customer_dimensions(), *(d for m in catalogue.CATALOGUE.values() for d in m.dimensions)}:
        words |= set(d.split("_"))
        words.add(d + "s")
    from metrics.periods import _NUMBER_WORDS

    words |= set(_NUMBER_WORDS)
    return frozenset(w for w in words if len(w) > 1)


def _correct(tokens: list[str], original: list[str], values: ValueIndex, readings: list[str]):
    """Unknown words with one clear close match are read as it (and said so); a near-miss of
    a data value is left for "did you mean"; several equally close matches are asked about."""
    vocab = _vocabulary()
    value_words = {w for k in values.keys() for w in k.split()}
    out_t, out_o = list(tokens), list(original)
    choices = sorted(vocab | value_words)
    for i, tok in enumerate(tokens):
        if len(tok) < 3 or not _WORD.match(tok) or tok in vocab or tok in value_words:
            continue
        if tok.endswith("s") and (tok[:-1] in vocab or tok[:-1] in value_words):
            continue
        cutoff = 85 if len(tok) <= 3 else 75 if len(tok) == 4 else 80
        found = process.extract(tok, choices, scorer=fuzz.ratio, limit=3, score_cutoff=cutoff)
        if not found:
            continue
        best, score, _ = found[0]
        ties = [w for w, sc, _ in found if sc == score]
        if len(ties) > 1 and sum(w[0] == tok[0] for w in ties) == 1:  # typos rarely hit the first letter
            best = next(w for w in ties if w[0] == tok[0])
            ties = [best]
        if best in value_words and best not in vocab:
            continue  # a value: answered with "did you mean" if it is left over
        if len(ties) > 1:
            options = " or ".join(f"`{w}`" for w in sorted(ties))
            raise QueryError(f"I don't know the word `{original[i][:30]}`. Did you mean {options}?")
        out_t[i] = out_o[i] = best
        readings.append(f"Read `{original[i][:30]}` as `{best}`.")
    return out_t, out_o


def _rewrite(tokens: list[str], original: list[str]):
    out_t: list[str] = []
    out_o: list[str] = []
    i = 0
    while i < len(tokens):
        for phrase, word in PHRASES.items():
            if tuple(tokens[i : i + len(phrase)]) == phrase:
                out_t.append(word)
                out_o.append(word)
                i += len(phrase)
                break
        else:
            out_t.append(tokens[i])
            out_o.append(original[i])
            i += 1
    return out_t, out_o


# ---- pass 1: periods, comparisons, explicit filters, cuts, grains, sort words --------------------


def _scan(s: _State) -> None:
    tokens = s.tokens
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if s.used[i]:
            i += 1
            continue
        if tok == "where" or tok == "for" and "=" in (s.nxt(i) or ""):
            s.used[i] = True
            i += 1
            continue
        if "=" in tok:
            i = _explicit_filter(s, i)
            continue
        if tok in YOY_WORDS:
            s.compare = "yoy"
            s.used[i] = True
            i += 1
            continue
        if tok in UNIT_COMPARE:
            s.compare, s.unit_compare = "previous", UNIT_COMPARE[tok]
            s.used[i] = True
            i += 1
            continue
        if tok in COMPARE_WORDS:
            i = _comparison(s, i)
            continue
        if tok in ("by", "per", "and", "across") and s.nxt(i):
            span = _dimension_at(s, i + 1)
            if span and (tok != "and" or s.dimension_words):
                s.dimension_words.append("_".join(tokens[i + 1 : i + 1 + span]))
                s.mark(i, 1 + span)
                i += 1 + span
                continue
            nxt = s.nxt(i)
            if tok in ("by", "per") and nxt in ("day", "week", "month", "quarter", "year") and not _kpi_through(s, i):
                s.grain, s.trend = nxt, True
                s.mark(i, 2)
                i += 2
                continue
            if tok == "by" and nxt and _unknown_cut(s, i + 1):  # "nps by colour": say which cuts exist
                s.dimension_words.append(nxt)
                s.mark(i, 2)
                i += 2
                continue
        named = _kpi_phrase(tokens, i)
        if named:  # "monthly active users", "bottom line": a KPI's name, not a grain or a sort
            i += named
            continue
        if tok in SORT_DESC | SORT_ASC | SORT_GOOD | SORT_BAD:
            s.sort = "desc" if tok in SORT_DESC else "asc" if tok in SORT_ASC else "good" if tok in SORT_GOOD else "bad"
            s.used[i] = True
            after = s.nxt(i)
            if tok in ("top", "bottom") and after:
                n = _count(after)
                if n is not None:
                    s.limit = n
                    s.used[i + 1] = True
                    i += 1
            i += 1
            continue
        if tok in GRAIN_WORDS:
            s.grain, s.trend = GRAIN_WORDS[tok], True
            s.used[i] = True
            i += 1
            continue
        if tok in TREND_WORDS or tok == "over" and s.nxt(i) == "time":
            s.trend = True
            span = 2 if tok == "over" else 1
            s.mark(i, span)
            i += span
            continue
        match = match_period(tokens, i, s.today, s.settings)
        if match is not None:
            if s.period is not None:
                raise BadPeriod("I found two periods in that question; use `vs` to compare them.")
            s.period = match.period
            s.period_words = " ".join(s.original[i : i + match.length])
            s.mark(i, match.length)
            i += match.length
            continue
        i += 1


def _count(tok: str) -> int | None:
    from metrics.periods import _NUMBER_WORDS

    if tok.isdigit() and 0 < int(tok) <= 100:
        return int(tok)
    return _NUMBER_WORDS.get(tok)


def _explicit_filter(s: _State, i: int) -> int:
    """``industry=Retail``, ``industry = Financial Services``, ``plan="Enterprise"``."""
    tokens = s.tokens
    name, _, value = s.original[i].partition("=")
    consumed = 0
    if not value and i + 1 < len(tokens):
        # the longest run of following words that is a known value of that dimension
        consumed = 1
        for span in (4, 3, 2):
            phrase = " ".join(s.original[i + 1 : i + 1 + span])
            if i + span < len(tokens) and s.values.find(phrase):
                consumed = span
                break
        value = " ".join(s.original[i + 1 : i + 1 + consumed])
    if not name and i > 0 and not s.used[i - 1]:
        name, s.used[i - 1] = s.original[i - 1], True
    if not name.strip() or not value.strip():
        raise QueryError("A filter looks like `where industry=Retail`.")
    s.filters.append((name.strip().lower(), value.strip(), True))
    s.mark(i, 1 + consumed)
    return i + 1 + consumed


def _comparison(s: _State, i: int) -> int:
    """What follows `vs` / `compared to` / `than`: a period, or the one before, or a year ago."""
    tokens = s.tokens
    j = i + 1
    while j < len(tokens) and tokens[j] in ("to", "with", "the", "a", "an", "that", "of"):
        j += 1
    t, n1, n2 = (tokens[j] if j < len(tokens) else None), s.nxt(j), s.nxt(j, 2)
    span = 0
    if t == "same":  # same quarter last year, same period a year ago, same time last year
        k = j + 1
        while k < len(tokens) and (tokens[k] in UNITS or tokens[k] in ("period", "time", "days", "one")):
            k += 1
        if k + 1 < len(tokens) and tokens[k] in ("last", "previous", "prior") and tokens[k + 1] == "year":
            s.compare, span = "yoy", k + 2 - i
        elif k + 1 < len(tokens) and tokens[k] in ("a", "one") and tokens[k + 1] == "year":
            s.compare, span = "yoy", k + 3 - i if s.nxt(k, 2) in ("ago", "earlier", "before") else k + 2 - i
        elif k < len(tokens) and tokens[k] in ("ago", "before", "earlier"):
            s.compare, span = "previous", k + 1 - i
    elif t in ("last", "previous", "prior") and n1 == "year" and n2 not in UNITS:
        s.compare, span = "yoy", j + 2 - i
    elif t in ("year", "years") and n1 in ("ago", "earlier", "before"):
        s.compare, span = "yoy", j + 2 - i
    elif t in ("previous", "prior", "preceding") and (n1 in UNITS or n1 in ("period", "one")):
        s.compare, span = "previous", j + 2 - i
    elif t in ("previous", "prior", "preceding", "before", "earlier"):
        s.compare, span = "previous", j + 1 - i
    elif (t in UNITS or t == "period") and n1 in ("before", "earlier", "prior"):
        s.compare, span = "previous", j + 2 - i
    if span:
        s.mark(i, span)
        return i + span
    match = match_period(tokens, j, s.today, s.settings) if j < len(tokens) else None
    if match is None:
        if tokens[i] in ("compare", "comparing", "relative", "than"):
            s.used[i] = True  # "how does churn compare": the comparison is the default one
            return i + 1
        raise BadPeriod("After `vs` I need a period, e.g. `vs last-quarter`, `vs 2025-Q3` or `vs the month before`.")
    s.compare = match.period
    s.mark(i, j + match.length - i)
    return j + match.length


def _singular(word: str) -> str:
    if word in _PLURALS:
        return _PLURALS[word]
    return word[:-1] if word.endswith("s") and not word.endswith("ss") and len(word) > 3 else word


def _is_dimension(words: list[str]) -> bool:
    if not words:
        return False
    phrase = "_".join([*words[:-1], _singular(words[-1])])
    return catalogue.is_dimension_word(phrase)


def _dimension_at(s: _State, i: int) -> int:
    """How many tokens from ``i`` name a dimension ("size band", "industries"), else 0."""
    for span in (3, 2, 1):
        if i + span <= len(s.tokens) and not any(s.used[i : i + span]) and _is_dimension(s.tokens[i : i + span]):
            return span
    return 0


def _unknown_cut(s: _State, i: int) -> bool:
    """A word after `by` that is neither a KPI, a value, a period nor filler: a cut we lack."""
    t = s.tokens[i]
    if s.used[i] or t in FILLER or t in ENTITY_NOUNS or s.values.find(t):
        return False
    if any(catalogue.lookup(" ".join(s.tokens[i : i + k])) for k in (1, 2, 3)) or t in _names():
        return False
    return match_period(s.tokens, i, s.today, s.settings) is None and t not in _vocabulary()


def _kpi_through(s: _State, i: int) -> bool:
    """Is ``per <unit>`` at ``i`` the end of a KPI's name ("core actions per week")?"""
    for back in (1, 2, 3):
        if i - back >= 0 and catalogue.lookup(" ".join(s.tokens[i - back : i + 2])):
            return True
    return False


def _kpi_phrase(tokens: list[str], i: int) -> int:
    """Length of a multi-word KPI name starting at a grain or trend word, else 0."""
    if tokens[i] not in GRAIN_WORDS and tokens[i] not in TREND_WORDS and tokens[i] not in SORT_WORDS:
        return 0
    for span in (4, 3, 2):
        if i + span <= len(tokens) and catalogue.lookup(" ".join(tokens[i : i + span])):
            return span
    return 0


# ---- pass 2: a value with the word for its dimension ("the starter plan", "SMB segment") ---------


def _value_at(s: _State, i: int) -> tuple[int, list[tuple[str, str]]]:
    """The longest run of unused tokens from ``i`` naming a value: (span, [(dimension, value)])."""
    for span in (4, 3, 2, 1):
        if i + span > len(s.tokens) or any(s.used[i : i + span]):
            continue
        phrase = " ".join(s.tokens[i : i + span])
        if span == 1 and phrase in FILLER:
            continue
        found = s.values.find(phrase)
        if not found and span == 1 and phrase.endswith("s"):
            found = s.values.find(phrase[:-1])
        if found:
            return span, found
    return 0, []


def _value_pairs(s: _State) -> None:
    i = 0
    while i < len(s.tokens):
        span, found = _value_at(s, i)
        if not span:
            i += 1
            continue
        j = i + span
        cue_span, dims = 0, tuple[str, ...]()
        if s.tokens[j : j + 2] == ["size", "band"] and not any(s.used[j : j + 2]):
            cue_span, dims = 2, ("size_band",)
        elif j < len(s.tokens) and not s.used[j] and s.tokens[j] in DIMENSION_CUES:
            cue_span, dims = 1, DIMENSION_CUES[s.tokens[j]]
        match = next(((d, v) for dim in dims for d, v in found if d == dim), None)
        if match:
            s.filters.append((match[0], match[1], False))
            s.mark(i, span + cue_span)
            i += span + cue_span
        else:
            i += 1


# ---- pass 3: the KPI ------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _names() -> dict[str, str]:
    """KPI names with filler words removed ("time to close" → "time close"), to metric id."""
    out: dict[str, str] = {}
    # ids first, as in the catalogue's index: a KPI's id is never another KPI's synonym
    names = [(m, m.id) for m in catalogue.CATALOGUE.values()]
    names += [(m, name) for m in catalogue.CATALOGUE.values() for name in (m.label, *m.synonyms)]
    for m, name in names:
        full = [w for w in re.split(r"[\s_\-()]+", name.lower()) if w]
        words = [w for w in full if w not in FILLER]
        if len(words) == 1 < len(full) and catalogue.lookup(words[0]) is not m:
            continue  # "up time" is not "time"
        if words:
            out.setdefault(" ".join(words), m.id)
    return out


def _find_metric(s: _State, default_metric: str | None) -> Metric:
    """The longest run of content words naming a KPI, or an intent word; else refuse."""
    content = [(i, t) for i, t in enumerate(s.tokens) if not s.used[i] and t not in FILLER]
    words = {t for _, t in content}
    for rule, intent in INTENTS:
        if all(words & group for group in rule):
            for i, t in content:
                if any(t in group for group in rule):
                    s.used[i] = True
            _drop_words(s, {"churn", "to"})
            return catalogue.CATALOGUE[intent]
    names = _names()
    found: list[tuple[int, str]] | None = None
    found_id = None
    for span in range(min(len(content), 5), 0, -1):
        runs = [content[k : k + span] for k in range(0, len(content) - span + 1)]
        runs.sort(key=lambda run: all(t in ENTITY_NOUNS for _, t in run))  # "frt" before "tickets"
        for run in runs:
            phrase = " ".join(t for _, t in run)
            metric_id = names.get(phrase)
            if metric_id is None:
                metric = catalogue.lookup(phrase)
                metric_id = metric.id if metric else None
            if metric_id is not None:
                found, found_id = run, metric_id
                break
        if found:
            break
    exact = _exact_name(s)
    if exact is not None and (found is None or (_weight(exact[0]), len(exact[0])) > (_weight(found), len(found))):
        found, found_id = exact
    if found is None or all(t in ENTITY_NOUNS for _, t in found):
        for rule, metric_id in FALLBACK_INTENTS:
            if all(words & group for group in rule):
                for i, t in content:
                    if any(t in group for group in rule):
                        s.used[i] = True
                return catalogue.CATALOGUE[metric_id]
    if found is not None and found_id is not None:
        for i, _ in found:
            s.used[i] = True
        return catalogue.CATALOGUE[found_id]
    if default_metric:
        return catalogue.CATALOGUE[default_metric]
    rest = [t for _, t in content if t not in ENTITY_NOUNS]
    if not rest:
        _which()
    phrase = " ".join(rest)
    suggestions = catalogue.suggest(phrase)
    err = UnknownMetric(phrase[:60], suggestions)
    if suggestions:
        example = " ".join(w for w in (suggestions[0], s.period_words) if w)
        err.args = (f"{err} Closest question I understand: `{example}`.",)
    raise err


def _weight(run: list[tuple[int, str]]) -> int:
    return sum(t not in FILLER for _, t in run)


def _exact_name(s: _State) -> tuple[list[tuple[int, str]], str] | None:
    """The longest run of unused words, filler included, that is a KPI's full name
    ("average order value": `value` is filler elsewhere)."""
    free = [(i, t) for i, t in enumerate(s.tokens) if not s.used[i]]
    for span in range(min(len(free), 5), 1, -1):
        for k in range(0, len(free) - span + 1):
            run = free[k : k + span]
            if run[-1][0] - run[0][0] != span - 1:
                continue  # not consecutive in the question
            metric = catalogue.lookup(" ".join(t for _, t in run))
            if metric is not None:
                return run, metric.id
    return None


def _which():
    raise QueryError("Which KPI? Try `nps last-quarter`, `churn for SMB in EMEA`, or `list` to see them all.")


def _drop_words(s: _State, words: set[str]) -> None:
    for i, t in enumerate(s.tokens):
        if not s.used[i] and t in words:
            s.used[i] = True


# ---- pass 4: values of the KPI's dimensions, in words -------------------------------------------


def _free_values(s: _State, metric: Metric) -> None:
    valid = catalogue.dimensions_for(metric)
    i = 0
    while i < len(s.tokens):
        span, found = _value_at(s, i)
        if not span:
            i += 1
            continue
        options = [(d, v) for d, v in found if d in valid]
        if not options:
            i += 1
            continue
        options.sort(key=lambda dv: valid.index(dv[0]))
        dim, value = options[0]
        others = [d for d, _ in options[1:] if d != dim]
        if others:
            s.readings.append(
                f"`{value}` is a {_dim_name(dim)} and a {', a '.join(_dim_name(d) for d in others)}: "
                f"I used {_dim_name(dim)} (ask `{others[0]}={value}` for the other)."
            )
        s.filters.append((dim, value, False))
        s.mark(i, span)
        i += span


def _dim_name(dim: str) -> str:
    return dim.replace("_", " ")


# ---- pass 5: a dimension named without `by` ("which industry has the highest nps") --------------


def _bare_dimensions(s: _State, metric: Metric) -> None:
    valid = catalogue.dimensions_for(metric)
    i = 0
    while i < len(s.tokens):
        span = _dimension_at(s, i)
        if not span:
            i += 1
            continue
        words = s.tokens[i : i + span]
        phrase = "_".join([*words[:-1], _singular(words[-1])])
        try:
            dim = catalogue.resolve_dimension(metric, phrase)
        except QueryError:
            dim = None
        if dim is not None and dim in valid and all(dim != d for d, _, _ in s.filters):
            s.dimension_words.append(phrase)
            s.mark(i, span)
        i += span


# ---- what is left -------------------------------------------------------------------------------


def _leftovers(s: _State, metric: Metric) -> None:
    left = [
        (i, t)
        for i, t in enumerate(s.tokens)
        if not s.used[i] and t not in FILLER and t not in ENTITY_NOUNS and catalogue.lookup(t) is not metric
    ]
    if not left:
        return
    words = [s.original[i] for i, _ in left]
    hint = ""
    keys = s.values.keys()
    if keys:
        close = process.extractOne(key(" ".join(words)), keys, scorer=fuzz.ratio, score_cutoff=75)
        if close:
            dims = s.values.find(close[0])
            valid = catalogue.dimensions_for(metric)
            dims = [dv for dv in dims if dv[0] in valid] or dims
            hint = f" Did you mean {dims[0][1]!r} ({_dim_name(dims[0][0])}), as in `{metric.id} where {dims[0][0]}={dims[0][1]}`?"
    understood = _summary(s, metric)
    raise QueryError(
        f"I understood `{understood}` but not `{' '.join(words)[:60]}`.{hint} "
        "Ask like `nps by industry last-quarter`, or try `help`."
    )


def _summary(s: _State, metric: Metric) -> str:
    parts = [metric.id]
    if s.period_words:
        parts.append(s.period_words)
    parts += [f"by {d}" for d in s.dimension_words[:1]]
    parts += [f"where {d}={v}" for d, v, _ in s.filters]
    return " ".join(parts)


# ---- the query ----------------------------------------------------------------------------------


def _build(s: _State, m: Metric, text: str) -> Query:
    settings, today = s.settings, s.today
    dims: list[str] = []
    for word in s.dimension_words:
        dim = catalogue.resolve_dimension(m, word)
        if dim not in dims:
            dims.append(dim)
    if len(dims) > 1:
        raise QueryError(
            f"I can break an answer down by one thing at a time, and you asked by {' and by '.join(dims)}. "
            f"Try `{m.id} by {dims[0]}`, or one of them as a filter: `{m.id} by {dims[0]} where {dims[1]}=<value>`."
        )
    filters = _resolve_filters(s, m)
    period = s.period
    explicit = period is not None
    if period is None and s.unit_compare:  # "mrr mom": the last whole month against the one before
        last = match_period(["last", s.unit_compare], 0, today, settings)
        period = last.period if last else None
    if period is None:
        if s.trend:
            end = unit_start(today, s.grain or "month", settings)
            period = Period(step(end, "month", -12), end, "last 12 months", "month:12")
        else:
            period = default_period(today, settings)
    grain = s.grain
    if s.trend and grain is None:
        grain = auto_grain(period)
    if grain:
        buckets(period, grain, settings)  # refuses huge trends before any SQL runs
    if isinstance(s.compare, Period):
        compare = s.compare
    elif s.compare == "yoy":
        compare = year_ago(period)
    else:  # none named, "previous", "mom"
        compare = previous(period)
    sort = s.sort
    if sort in ("good", "bad"):
        up = (sort == "good") == (m.direction != "lower")
        sort = "desc" if up else "asc"
    limit = s.limit
    if not dims:
        sort, limit = None, None  # "highest nps" with nothing to rank: the plain answer
    return Query(
        metric=m.id,
        period=period,
        compare=compare,
        dimension=dims[0] if dims else None,
        grain=grain,
        filters=filters,
        as_of=today,
        text=text,
        explicit_period=explicit,
        sort=sort,
        limit=limit,
        readings=tuple(s.readings),
    )


def _resolve_filters(s: _State, m: Metric) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    for word, value, explicit in s.filters:
        dim = catalogue.resolve_dimension(m, word)
        if explicit:
            known = s.values.knows(dim, value)
            if known is False:
                options = list(s.values.of(dim))
                close = process.extract(key(value), {v: key(v) for v in options}, scorer=fuzz.ratio, limit=2, score_cutoff=70)
                if close:  # a near miss: ask rather than answer "no data"
                    names = " or ".join(f"`{dim}={c[2]}`" for c in close)
                    raise QueryError(f"No {_dim_name(dim)} is called `{value[:40]}` in the data. Did you mean {names}?")
                shown = ", ".join(options[:8]) + (" …" if len(options) > 8 else "")
                s.readings.append(f"No {_dim_name(dim)} is called `{value[:40]}` in the data (it has {shown}).")
            value = s.values.canonical(dim, value) or value
        if dim in out and key(out[dim]) != key(value):
            raise QueryError(
                f"One value per dimension for now: you asked for {_dim_name(dim)} `{out[dim]}` and `{value}`. "
                f"Try `{m.id} by {dim}` to see them side by side."
            )
        out[dim] = value
    return tuple(out.items())
