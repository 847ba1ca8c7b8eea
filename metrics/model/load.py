"""Loading the model: validate each entry, drop the bad ones, compile the rest.

``load_model(docs)`` takes parsed documents (YAML files read by :mod:`.document`, or a dbt
manifest converted to the same shape) and returns a :class:`Model`: the team's sources as
:class:`~.relations.Source`, their extra dimensions, and every KPI (built-ins + the team's)
as catalogue :class:`~metrics.spec.Metric` objects. Each problem is a
:class:`~.document.ModelError` naming the origin and line; a bad entry is left out and
the rest loads.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import process

from metrics.catalogue import BUILT_IN, GROUPS
from metrics.model import compile as compiler
from metrics.model import sqlexpr
from metrics.model.document import ModelError, line_of
from metrics.model.relations import KINDS, ColumnMap, Relations, Source, qualified
from metrics.spec import Metric
from storage.schema import TABLES
from storage.sensitivity import REACH

UNITS = ("score", "percent", "count", "currency", "hours", "days", "months", "minutes", "ratio", "seconds")
DIRECTIONS = ("higher", "lower", "neutral")
AGGS = ("sum", "count", "count_distinct", "avg", "min", "max")
TYPES = ("simple", "ratio", "derived", "cumulative", "conversion", "model")
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
COMMON_KEYS = ("type", "label", "synonyms", "unit", "direction", "bands", "reference", "description", "group", "formula",
               "dimensions", "split", "format", "survey", "min_sample", "customer_dimensions", "extra_labels",
               "extra_units", "snapshot")
KEYS: dict[str, tuple[str, ...]] = {
    "simple": ("source", "agg", "expr", "filter", "time", "extras", "aggregates", "finalize", "n", "in_window", "rows",
               "summarize", "pairs"),
    "ratio": ("numerator", "denominator", "scale"),
    "derived": ("expr", "when"),
    "cumulative": ("source", "agg", "expr", "filter", "start", "end", "aggregates", "finalize", "n", "summarize"),
    "conversion": ("base", "conversion", "entity", "window_days"),
    "model": ("function",),
}


@dataclass(frozen=True)
class Dimension:
    name: str
    source: str
    label: str
    origin: str = ""
    line: int | None = None


@dataclass
class Model:
    metrics: dict[str, Metric]
    sources: dict[str, Source] = field(default_factory=dict)
    dimensions: dict[str, Dimension] = field(default_factory=dict)
    errors: list[ModelError] = field(default_factory=list)
    team: tuple[str, ...] = ()  # the team's KPI ids, in file order
    definitions: dict[str, dict] = field(default_factory=dict)  # team KPI id -> its entry
    relations: Relations | None = None


def close(word: Any, names) -> str:
    """`` (did you mean `x`?)`` for the closest of ``names``, else empty."""
    found = process.extractOne(str(word), list(names), score_cutoff=60) if names else None
    return f" (did you mean `{found[0]}`?)" if found else ""


class _Errors:
    def __init__(self) -> None:
        self.items: list[ModelError] = []

    def add(self, origin: str, node: Any, key: str | None, message: str) -> None:
        self.items.append(ModelError(origin, line_of(node, key), message))


def _merge(docs, errors: _Errors) -> dict[str, dict[str, tuple[str, Any, Any]]]:
    """section -> id -> (origin, parent mapping, entry); a duplicate id names both origins."""
    out: dict[str, dict[str, tuple[str, Any, Any]]] = {"sources": {}, "dimensions": {}, "metrics": {}}
    for origin, doc in docs:
        if not isinstance(doc, Mapping):
            errors.add(origin, None, None, "a model document must be a mapping")
            continue
        version = doc.get("version", 1)
        if version != 1:
            errors.add(origin, doc, "version", f"version {version!r} is not supported (this kpibot reads version 1)")
            continue
        for key in doc:
            if key not in ("version", *out):
                errors.add(origin, doc, key, f"unknown section `{key}`{close(key, out)}")
        for section, found in out.items():
            entries = doc.get(section) or {}
            if not isinstance(entries, Mapping):
                errors.add(origin, doc, section, f"`{section}` must be a mapping of names to entries")
                continue
            for name, entry in entries.items():
                if name in found:
                    errors.add(origin, entries, name, f"{section[:-1]} `{name}` is also defined in {found[name][0]}")
                    continue
                found[name] = (origin, entries, entry)
    return out


def _column_map(logical: str, spec: Any) -> tuple[ColumnMap | None, str | None]:
    if isinstance(spec, str) and spec.strip():
        if not re.fullmatch(r"[A-Za-z_][\w$]*", spec):
            return None, f"column `{logical}`: `{spec}` is not a column name (use {{expr: ...}} for SQL)"
        return ColumnMap(logical, column=spec), None
    if isinstance(spec, Mapping):
        unknown = [k for k in spec if k not in ("column", "expr", "scale", "type")]
        if unknown:
            return None, f"column `{logical}`: unknown key `{unknown[0]}` (column, expr, scale, type)"
        if ("column" in spec) == ("expr" in spec):
            return None, f"column `{logical}`: give exactly one of `column` or `expr`"
        scale = spec.get("scale")
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale == 0):
            return None, f"column `{logical}`: scale must be a non-zero number"
        kind = spec.get("type")
        if kind is not None and kind not in KINDS:
            return None, f"column `{logical}`: bad type `{kind}` (one of {', '.join(KINDS)})"
        if "expr" in spec:
            problems = sqlexpr.check(spec["expr"], ())
            if problems:
                return None, f"column `{logical}`: {problems[0]}"
        elif not isinstance(spec["column"], str) or not re.fullmatch(r"[A-Za-z_][\w$]*", spec["column"]):
            return None, f"column `{logical}`: `column` must be a column name"
        return ColumnMap(logical, column=spec.get("column"), expr=spec.get("expr"), scale=scale, kind=kind), None
    return None, f"column `{logical}`: give a column name, {{column:, scale:}} or {{expr:}}"


def _source(name: str, origin: str, parent: Any, entry: Any, errors: _Errors) -> Source | None:
    if not _NAME.match(str(name)):
        errors.add(origin, parent, name, f"source `{name}`: names are lower-case words with underscores")
        return None
    if not isinstance(entry, Mapping):
        errors.add(origin, parent, name, f"source `{name}`: expected a mapping with relation/sql and columns")
        return None
    for key in entry:
        if key not in ("relation", "sql", "columns", "time", "customer_key", "sensitivity", "description"):
            errors.add(origin, entry, key, f"source `{name}`: unknown key `{key}`")
    relation, sql = entry.get("relation"), entry.get("sql")
    if (relation is None) == (sql is None):
        errors.add(origin, parent, name, f"source `{name}`: give exactly one of `relation` or `sql`")
        return None
    if relation is not None and not (isinstance(relation, str) and qualified(relation)):
        errors.add(origin, entry, "relation", f"source `{name}`: `{relation}` is not a table or view name")
        return None
    if sql is not None and not (isinstance(sql, str) and re.match(r"\s*(select|with)\b", sql, re.I) and ";" not in sql):
        errors.add(origin, entry, "sql", f"source `{name}`: `sql` must be one SELECT statement")
        return None
    columns = entry.get("columns") or {}
    if not isinstance(columns, Mapping) or not columns:
        errors.add(origin, entry, "columns", f"source `{name}`: `columns` must map logical columns to the team's")
        return None
    mapped: dict[str, ColumnMap] = {}
    canonical = TABLES.get(name)
    for logical, spec in columns.items():
        if canonical is not None and logical not in canonical.c:
            errors.add(origin, columns, logical,
                       f"source `{name}`: kpibot's `{name}` has no column `{logical}`{close(logical, canonical.c.keys())}"
                       " (declare extra columns under `dimensions`)")
            continue
        if not _NAME.match(str(logical)):
            errors.add(origin, columns, logical, f"source `{name}`: `{logical}` is not a valid column name")
            continue
        cmap, problem = _column_map(logical, spec)
        if problem:
            errors.add(origin, columns, logical, f"source `{name}`: {problem}")
            continue
        assert cmap is not None
        mapped[logical] = cmap
    sensitivity = entry.get("sensitivity") or {}
    sens: dict[str, str] = {}
    if isinstance(sensitivity, Mapping):
        for col, kind in sensitivity.items():
            if kind not in REACH:
                errors.add(origin, sensitivity, col, f"source `{name}`: sensitivity `{kind}` unknown (one of {', '.join(REACH)})")
            elif col not in mapped:
                errors.add(origin, sensitivity, col, f"source `{name}`: sensitivity for unknown column `{col}`")
            else:
                sens[col] = kind
    time, key = entry.get("time"), entry.get("customer_key")
    for what, value in (("time", time), ("customer_key", key)):
        if value is not None and value not in mapped:
            errors.add(origin, entry, what, f"source `{name}`: {what} `{value}` is not one of its columns{close(value, mapped)}")
            return None
    if canonical is not None:
        key = key or ("customer_id" if "customer_id" in mapped else None)
    return Source(name, mapped, relation=relation, sql=sql, time=time, customer_key=key,
                  sensitivity=sens, origin=origin, line=line_of(parent, name))


def load_model(docs: list[tuple[str, dict]], *, base: Mapping[str, Metric] | None = None) -> Model:
    """The model of ``docs`` over the built-in catalogue ``base``; see the module docstring."""
    base = dict(BUILT_IN if base is None else base)  # the built-ins, even while a model is configured
    errors = _Errors()
    merged = _merge(docs, errors)
    sources: dict[str, Source] = {}
    for name, (origin, parent, entry) in merged["sources"].items():
        source = _source(name, origin, parent, entry, errors)
        if source is not None:
            sources[name] = source
    dimensions: dict[str, Dimension] = {}
    dim_columns: dict[str, tuple[str, str]] = {}
    for name, (origin, parent, entry) in merged["dimensions"].items():
        if not isinstance(entry, Mapping) or not _NAME.match(str(name)):
            errors.add(origin, parent, name, f"dimension `{name}`: expected a mapping with source and column or expr")
            continue
        src = entry.get("source")
        if src not in sources:
            errors.add(origin, entry, "source", f"dimension `{name}`: unknown source `{src}`{close(src, sources)}")
            continue
        spec = {k: entry[k] for k in ("column", "expr") if k in entry}
        cmap, problem = _column_map(name, spec)
        if problem:
            errors.add(origin, parent, name, f"dimension `{name}`: {problem.split(': ', 1)[-1]}")
            continue
        assert cmap is not None
        canonical = TABLES.get(src)
        if canonical is not None and name in canonical.c:
            errors.add(origin, parent, name, f"dimension `{name}`: `{src}` already has it (map it under sources)")
            continue
        source = sources[src]
        sources[src] = dataclasses.replace(source, columns={**source.columns, name: cmap})
        dimensions[name] = Dimension(name, src, str(entry.get("label") or name.replace("_", " ").title()),
                                     origin, line_of(parent, name))
        dim_columns[name] = (src, name)
    relations = Relations(sources, dim_columns)
    metrics = dict(base)
    # built-in KPIs over a source with extra (non-customer) dimensions can be cut by them too
    for dim in dimensions.values():
        if dim.source == "customers":
            continue
        for mid, metric in metrics.items():
            if compiler.base_source(metric) == dim.source and dim.name not in metric.dimensions:
                metrics[mid] = dataclasses.replace(metric, dimensions=(*metric.dimensions, dim.name))
    ctx = compiler.Context(relations, sources, dimensions, metrics)
    team: list[str] = []
    definitions: dict[str, dict] = {}
    entries = merged["metrics"]
    for mid in _order(entries, metrics, errors):
        origin, parent, entry = entries[mid]
        compiled, failed = _metric(mid, origin, entry, ctx)
        if failed is not None:
            errors.items.append(ModelError(origin, failed[0] or line_of(parent, mid), f"metric `{mid}`: {failed[1]}"))
            continue
        assert compiled is not None
        metrics[mid] = compiled
        team.append(mid)
        definitions[mid] = dict(entry)
    return Model(metrics, sources, dimensions, errors.items, tuple(team), definitions, relations)


def _refs(entry: Any) -> list[str]:
    """The metric ids an entry depends on (ratio parts by id, derived expression names)."""
    if not isinstance(entry, Mapping):
        return []
    kind = entry.get("type")
    if kind == "ratio":
        return [entry[k] for k in ("numerator", "denominator") if isinstance(entry.get(k), str)]
    if kind == "derived" and isinstance(entry.get("expr"), str):
        when = entry.get("when")
        names = compiler.expression_names(entry["expr"]) + (compiler.expression_names(when) if isinstance(when, str) else [])
        return list(dict.fromkeys(names))
    return []


def _order(entries: Mapping[str, tuple[str, Any, Any]], known: Mapping[str, Metric], errors: _Errors) -> list[str]:
    """Team metrics with their dependencies first; those in a cycle, or depending on an
    unknown or dropped metric, are reported and left out."""
    done: list[str] = []
    state: dict[str, str] = {}
    in_cycle: set[str] = set()

    def visit(mid: str, path: list[str]) -> bool:
        if state.get(mid) == "ok":
            return True
        if state.get(mid) == "bad":
            return False
        if state.get(mid) == "visiting":
            cycle = path[path.index(mid):] + [mid]
            in_cycle.update(cycle)
            origin, parent, _ = entries[mid]
            errors.add(origin, parent, mid, f"metric `{mid}`: cycle among derived metrics: {' -> '.join(cycle)}")
            return False
        state[mid] = "visiting"
        origin, parent, entry = entries[mid]
        ok = True
        for ref in _refs(entry):
            if ref in entries:
                if not visit(ref, [*path, mid]):
                    if ok and state.get(mid) != "bad" and not {ref, mid} <= in_cycle:
                        errors.add(origin, entry, None, f"metric `{mid}`: depends on `{ref}`, which has errors")
                    ok = False
            elif ref not in known:
                in_expr = ref in compiler.expression_names(str(entry.get("expr")))
                errors.add(origin, entry, ("expr" if in_expr else "when") if entry.get("type") == "derived" else None,
                           f"metric `{mid}`: unknown metric `{ref}`{close(ref, [*known, *entries])}")
                ok = False
        if state.get(mid) == "bad":
            return False
        state[mid] = "ok" if ok else "bad"
        if ok:
            done.append(mid)
        return ok

    for mid in entries:
        visit(mid, [])
    return done


def _metric(mid: str, origin: str, entry: Any, ctx: compiler.Context) -> tuple[Metric | None, tuple[int | None, str] | None]:
    if not _NAME.match(str(mid)):
        return None, (None, "ids are lower-case words with underscores")
    if not isinstance(entry, Mapping):
        return None, (None, "expected a mapping with a type")
    if mid in ctx.metrics:
        return None, (None, "is already a built-in KPI; choose another id")
    kind = entry.get("type")
    if kind not in TYPES:
        return None, (line_of(entry, "type"), f"bad type `{kind}` (one of {', '.join(TYPES)})")
    keys = KEYS[kind] + COMMON_KEYS
    for key in entry:
        if key not in keys:
            return None, (line_of(entry, key), f"unknown key `{key}` for a {kind} metric{close(key, keys)}")
    for key, allowed in (("unit", UNITS), ("direction", DIRECTIONS), ("group", (*GROUPS, "custom"))):
        if key in entry and entry[key] not in allowed:
            return None, (line_of(entry, key), f"bad {key} `{entry[key]}` (one of {', '.join(allowed)})")
    for key in ("synonyms",):
        value = entry.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return None, (line_of(entry, key), f"`{key}` must be a list of words")
    try:
        return compiler.compile_metric(mid, entry, ctx), None
    except compiler.Invalid as exc:
        return None, (line_of(exc.node if exc.node is not None else entry, exc.key), str(exc))
