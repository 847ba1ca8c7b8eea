"""The KPI catalogue: look-up by id or synonym, suggestions, and which cuts each KPI allows."""

from __future__ import annotations

import re

from rapidfuzz import fuzz, process

from metrics.errors import UnknownDimension, UnknownMetric
from metrics.kpis import MODULES
from metrics.model import relations
from metrics.spec import Custom, Derived, Measure, Metric

GROUPS = (
    "satisfaction", "customers", "retention", "financial", "funnel",
    "engagement", "support", "reliability", "upsell", "custom",
)


def _build() -> dict[str, Metric]:
    out: dict[str, Metric] = {}
    for module in MODULES:
        for metric in module.METRICS:
            if metric.id in out:
                raise ValueError(f"KPI {metric.id} is defined twice")
            out[metric.id] = metric
    return out


CATALOGUE: dict[str, Metric] = _build()
BUILT_IN: dict[str, Metric] = dict(CATALOGUE)  # before a model file adds the team's KPIs


def normalise(word: str) -> str:
    return re.sub(r"[\s\-_]+", "_", word.strip().lower()).strip("_")


_NAMES: dict[str, str] = {}


def install(metrics: dict[str, Metric]) -> None:
    """Makes ``metrics`` the catalogue (a model file's: built-ins + the team's), in place, so
    every module holding ``CATALOGUE`` sees it; the name index follows."""
    CATALOGUE.clear()
    CATALOGUE.update(metrics)
    _NAMES.clear()
    for m in CATALOGUE.values():  # an id first: a team's KPI is found by its id even when it is
        _NAMES.setdefault(normalise(m.id), m.id)  # another KPI's synonym
    for m in CATALOGUE.values():
        for name in (*m.synonyms, m.label):
            _NAMES.setdefault(normalise(name), m.id)


install(CATALOGUE.copy())


def lookup(word: str) -> Metric | None:
    metric_id = _NAMES.get(normalise(word))
    return CATALOGUE[metric_id] if metric_id else None


def _closeness(a: str, b: str, **kwargs) -> float:
    """Edit distance first (typos), token-aware similarity a little behind (extra words)."""
    return max(fuzz.ratio(a, b), 0.9 * fuzz.WRatio(a, b))


def suggest(word: str, limit: int = 3) -> list[str]:
    key = normalise(word)
    if not key:
        return []
    matches = process.extract(key, list(_NAMES), scorer=_closeness, limit=limit * 4, score_cutoff=55)
    seen: list[str] = []
    for name, _score, _ in matches:
        metric_id = _NAMES[name]
        if metric_id not in seen:
            seen.append(metric_id)
    return seen[:limit]


def resolve(word: str) -> Metric:
    metric = lookup(word)
    if metric is None:
        raise UnknownMetric(word.strip()[:60], suggest(word))
    return metric


# ---- dimensions -------------------------------------------------------------------------

DIMENSION_ALIASES = {
    "size": "size_band",
    "company_size": "size_band",
    "segment": "size_band",
    "tier": "plan",
    "acquisition": "acquisition_channel",
    "marketing_channel": "acquisition_channel",
    "lead_source": "source",
    "country": "region",
    "geo": "region",
    "vertical": "industry",
    "sector": "industry",
    "type": "kind",
}


def base_table(metric: Metric) -> str | None:
    measure = metric.measure
    if isinstance(measure, Measure) and isinstance(measure.table, str):
        return measure.table
    return None


def dimensions_for(metric: Metric) -> list[str]:
    """Own columns first, then customer attributes when rows link to a customer."""
    if isinstance(metric.measure, Derived):
        sets = [set(dimensions_for(CATALOGUE[i])) for i in metric.measure.inputs]
        common = set.intersection(*sets) if sets else set()
        return [d for d in dimensions_for(CATALOGUE[metric.measure.inputs[0]]) if d in common]
    dims = list(metric.dimensions)
    customer_dims = relations.customer_dimensions()
    if isinstance(metric.measure, Custom):
        return dims + [d for d in customer_dims if d not in dims and metric.customer_dimensions]
    table = base_table(metric)
    if metric.customer_dimensions and isinstance(metric.measure, Measure):
        key = metric.measure.customer_key
        if table == "customers" or (key and (table is None or key in relations.table(table).c)):
            dims += [d for d in customer_dims if d not in dims]
    return dims


def resolve_dimension(metric: Metric, word: str) -> str:
    valid = dimensions_for(metric)
    key = normalise(word)
    if key in valid:
        return key
    alias = DIMENSION_ALIASES.get(key)
    if alias in valid:
        return alias
    if key == "channel" and "acquisition_channel" in valid:
        return "acquisition_channel"
    close = process.extractOne(key, valid, scorer=fuzz.WRatio, score_cutoff=70) if valid else None
    raise UnknownDimension(word.strip()[:40], metric.id, valid, [close[0]] if close else None)


def is_dimension_word(word: str) -> bool:
    key = normalise(word)
    if key in DIMENSION_ALIASES or key in relations.customer_dimensions() or key == "channel":
        return True
    return any(key in m.dimensions for m in CATALOGUE.values())
