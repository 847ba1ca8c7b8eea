"""dbt's semantic layer as a kpibot model document, so a team asks its dbt metrics in Slack.

``dbt parse`` writes ``target/semantic_manifest.json``: the project's semantic models
(a relation, its entities, dimensions and measures) and metrics (MetricFlow's simple, ratio,
derived, cumulative and conversion). :func:`manifest_to_document` turns it into the plain
dict of the model file (docs: MODEL_FORMAT.md, README "dbt metrics"), which the loader
merges with the YAML documents. Nothing dbt is imported: the JSON is the interface, and
kpibot runs no dbt.

Mapping: a semantic model → a ``source`` (``node_relation`` schema.alias; entities, time
dimensions and measures as its logical columns); categorical dimensions → ``dimensions``;
metrics → ``metrics`` of the same type. What kpibot cannot compute the way MetricFlow does
(percentiles, offsets, trailing windows, joins through entities in filters, …) becomes a
:class:`ModelError` naming the dbt object, and that object is left out: never a crash,
never a number computed differently from dbt's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metrics.catalogue import BUILT_IN
from metrics.model.document import ModelError
from storage.schema import TABLES

#: dbt measure aggregation → kpibot ``agg`` (sum_boolean is a sum of a 0/1 expression)
AGGS = {"sum": "sum", "count": "count", "count_distinct": "count_distinct", "average": "avg",
        "avg": "avg", "min": "min", "max": "max", "sum_boolean": "sum"}
#: days per dbt window granularity kpibot can express as ``window_days``
WINDOW_DAYS = {"day": 1, "week": 7}
#: time dimension granularities coarser than kpibot's days (a week's answer would be wrong)
COARSE_GRAINS = ("week", "month", "quarter", "year")
#: metric ``config.meta`` keys copied onto the kpibot metric
META_KEYS = ("unit", "direction", "synonyms", "bands", "scale", "group")
#: an entity named like this joins kpibot's customers (customer dimensions)
CUSTOMER_ENTITIES = ("customer", "account")

_JINJA = re.compile(r"\{\{\s*(\w+)\s*\(([^)]*)\)\s*(\.[^}]*)?\}\}")
_ARG = re.compile(r"""\s*(?:'([^']*)'|"([^"]*)"|(\w+)\s*=\s*(?:'[^']*'|"[^"]*"|\w+))\s*,?""")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_WORDS = re.compile(r"('(?:[^']|'')*')|([A-Za-z_][A-Za-z0-9_]*)")


class Unsupported(Exception):
    """A dbt construct kpibot does not compute (yet); the message says which."""


def read_dbt(path: str | Path) -> tuple[dict, list[ModelError]]:
    """The document of a dbt project folder (its ``target/semantic_manifest.json``) or of
    that JSON file itself; a missing or unreadable manifest is one error, not a traceback."""
    root = Path(path)
    file = root / "target" / "semantic_manifest.json" if root.is_dir() else root
    if not file.is_file():
        hint = " (run `dbt parse` in the project to write it)" if root.suffix != ".json" else ""
        return {}, [ModelError(str(file), None, f"no dbt semantic manifest here{hint}")]
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return {}, [ModelError(str(file), None, f"cannot read the dbt manifest ({exc.__class__.__name__})")]
    except json.JSONDecodeError as exc:
        return {}, [ModelError(str(file), exc.lineno, f"the dbt manifest is not valid JSON: {exc.msg}")]
    return manifest_to_document(manifest, str(file))


def dbt_documents(path: str | Path) -> tuple[list[tuple[str, dict]], list[ModelError]]:
    """:func:`read_dbt` in the loader's shape: ``[(origin, document)]`` (none when unreadable)."""
    root = Path(path)
    origin = str(root / "target" / "semantic_manifest.json" if root.is_dir() else root)
    doc, errors = read_dbt(root)
    return ([(origin, doc)] if doc else []), errors


def manifest_to_document(manifest: dict, origin: str) -> tuple[dict, list[ModelError]]:
    """``(document, errors)`` for a parsed semantic manifest; see the module docstring."""
    return _Converter(origin).convert(manifest)


class _SemanticModel:
    """One dbt semantic model and the kpibot source it became."""

    def __init__(self, raw: Mapping, path: str, source_id: str):
        self.raw = raw
        self.path = path
        self.name: str = raw["name"]
        self.source_id = source_id
        self.entities: dict[str, Mapping] = {e["name"]: e for e in raw.get("entities") or []}
        self.dimensions: dict[str, Mapping] = {d["name"]: d for d in raw.get("dimensions") or []}
        self.measures: dict[str, Mapping] = {m["name"]: m for m in raw.get("measures") or []}
        self.default_time: str | None = (raw.get("defaults") or {}).get("agg_time_dimension")
        self.dimension_ids: dict[str, str] = {}  # dbt dimension name -> kpibot dimension id
        primary = raw.get("primary_entity") or next(
            (e for e, v in self.entities.items() if v.get("type") == "primary"), None)
        self.primary: str = primary or self.name
        #: the entity prefixes a filter may qualify this model's dimensions with
        self.prefixes: set[str] = {*self.entities, *([primary] if primary else [])}


class _Converter:
    def __init__(self, origin: str):
        self.origin = origin
        self.errors: list[ModelError] = []
        self.models: dict[str, _SemanticModel] = {}
        self.measure_of: dict[str, _SemanticModel] = {}  # measure name -> its semantic model
        self.sources: dict[str, dict] = {}
        self.dimensions: dict[str, dict] = {}
        self.metrics: dict[str, dict] = {}
        self.raw_metrics: dict[str, tuple[str, Mapping]] = {}
        self.dropped: dict[str, str] = {}  # dbt metric -> why it was left out
        self.ids: dict[str, str] = {}  # dbt metric -> kpibot id

    def error(self, what: str, path: str, message: str) -> None:
        self.errors.append(ModelError(self.origin, None, f"{what} ({path}): {message}"))

    # -- the whole manifest ------------------------------------------------------------------

    def convert(self, manifest: Any) -> tuple[dict, list[ModelError]]:
        if not isinstance(manifest, Mapping) or not isinstance(manifest.get("semantic_models", []), list) \
                or not isinstance(manifest.get("metrics", []), list) \
                or not ("semantic_models" in manifest or "metrics" in manifest):
            self.errors.append(ModelError(self.origin, None, "not a dbt semantic manifest "
                                          "(expected `semantic_models` and `metrics` lists)"))
            return {"version": 1}, self.errors
        raw_models = manifest.get("semantic_models") or []
        self._index(raw_models)
        self._dimension_ids()
        for model in self.models.values():
            self._source(model)
        for i, raw in enumerate(manifest.get("metrics") or []):
            path = f"metrics[{i}]"
            name = raw.get("name") if isinstance(raw, Mapping) else None
            if not isinstance(name, str) or not name:
                self.error("a metric", path, "has no name")
                continue
            self.raw_metrics[name] = (path, raw)
        # a dbt metric named like a built-in KPI (revenue, nps …) is dbt_<name>: built-ins keep theirs
        self.ids = {name: f"dbt_{name}" if name in BUILT_IN else name for name in self.raw_metrics}
        for name in self.raw_metrics:
            self._metric(name, ())
        doc: dict[str, Any] = {"version": 1, "sources": self.sources}
        if self.dimensions:
            doc["dimensions"] = self.dimensions
        doc["metrics"] = {self.ids[k]: v for k, v in self.metrics.items() if v is not None}
        return doc, self.errors

    def _index(self, raw_models: list) -> None:
        used: set[str] = set()
        for i, raw in enumerate(raw_models):
            path = f"semantic_models[{i}]"
            name = raw.get("name") if isinstance(raw, Mapping) else None
            what = f"semantic model `{name}`" if name else "a semantic model"
            try:
                if not isinstance(name, str) or not _IDENT.match(name):
                    raise Unsupported("has no valid name")
                source_id = f"dbt_{name}" if name in TABLES else name  # kpibot's own tables keep theirs
                if source_id in used:
                    raise Unsupported(f"its name clashes with another semantic model (`{source_id}`)")
                model = _SemanticModel(raw, path, source_id)
            except Unsupported as exc:
                self.error(what, path, str(exc))
                continue
            except (KeyError, TypeError, AttributeError) as exc:
                self.error(what, path, f"is malformed ({_what_is_wrong(exc)})")
                continue
            used.add(source_id)
            self.models[name] = model
            for measure in model.measures:
                self.measure_of[measure] = model

    def _dimension_ids(self) -> None:
        """Categorical dimensions keep their dbt name, unless two semantic models have one of
        that name: then both are ``<primary entity>__<name>``, as dbt itself spells them."""
        seen: dict[str, int] = {}
        for model in self.models.values():
            for dim in model.dimensions.values():
                if dim.get("type") != "time":
                    seen[dim["name"]] = seen.get(dim["name"], 0) + 1
        for model in self.models.values():
            for name, dim in model.dimensions.items():
                if dim.get("type") != "time":
                    model.dimension_ids[name] = name if seen[name] == 1 else f"{model.primary}__{name}"

    # -- semantic models → sources -----------------------------------------------------------

    def _source(self, model: _SemanticModel) -> None:
        what = f"semantic model `{model.name}`"
        try:
            relation = _relation(model.raw.get("node_relation"))
            columns: dict[str, Any] = {}
            sensitivity: dict[str, Any] = {}
            for name, entity in model.entities.items():
                columns[name] = {**_as_expr(_column(entity.get("expr"), name)), "type": "text"}
            for name, dim in model.dimensions.items():
                if dim.get("type") == "time":
                    columns[name] = {**_as_expr(_column(dim.get("expr"), name)), "type": "timestamp"}
                else:
                    self.dimensions[model.dimension_ids[name]] = {
                        "source": model.source_id,
                        **_as_dimension(_column(dim.get("expr"), name)),
                        "label": dim.get("label") or name.replace("_", " ").capitalize(),
                    }
            for name, measure in model.measures.items():
                if name in columns or name in model.dimension_ids:
                    raise Unsupported(f"measure `{name}` has the name of one of its entities or dimensions")
                expr = measure.get("expr")
                expr = str(expr) if expr not in (None, "") else name
                if measure.get("agg") == "sum_boolean":
                    expr = f"case when ({expr}) then 1 else 0 end"
                # what a count counts may be text (an id); what the others aggregate is a number
                counted = measure.get("agg") in ("count", "count_distinct")
                columns[name] = {"expr": expr, "type": "text" if counted else "number"}
            for name, element in (*model.entities.items(), *model.measures.items()):
                kind = _meta(element).get("sensitivity")
                if kind is not None:
                    sensitivity[name] = kind
        except Unsupported as exc:
            self.error(what, model.path, str(exc))
            return
        except (KeyError, TypeError, AttributeError) as exc:
            self.error(what, model.path, f"is malformed ({_what_is_wrong(exc)})")
            return
        source: dict[str, Any] = {"relation": relation, "columns": columns}
        if model.raw.get("description"):
            source["description"] = model.raw["description"]
        if model.default_time and model.default_time in columns:
            source["time"] = model.default_time
        key = next((e for e in model.entities if e in CUSTOMER_ENTITIES), None)
        if key is not None:
            source["customer_key"] = key
        if sensitivity:
            source["sensitivity"] = sensitivity
        self.sources[model.source_id] = source

    # -- metrics -------------------------------------------------------------------------------

    def _metric(self, name: str, stack: tuple[str, ...]) -> dict | None:
        """The kpibot entry of dbt metric ``name`` (converted once; None when left out)."""
        if name in self.metrics:
            return self.metrics[name]
        if name in self.dropped:
            return None
        path, raw = self.raw_metrics[name]
        what = f"metric `{name}`"
        if name in stack:
            self.error(what, path, f"cycle among metrics: {' -> '.join((*stack, name))}")
            self.dropped[name] = "cycle"
            return None
        try:
            entry = self._convert_metric(name, raw, (*stack, name))
        except Unsupported as exc:
            self.error(what, path, str(exc))
            self.dropped[name] = str(exc)
            self.metrics.pop(name, None)
            return None
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            self.error(what, path, f"is malformed ({_what_is_wrong(exc)})")
            self.dropped[name] = "malformed"
            self.metrics.pop(name, None)
            return None
        self.metrics[name] = entry
        return entry

    def _convert_metric(self, name: str, raw: Mapping, stack: tuple[str, ...]) -> dict:
        kind = raw.get("type")
        params = raw.get("type_params") or {}
        if kind == "simple":
            entry = self._simple(params)
        elif kind == "ratio":
            entry = self._ratio(params, stack)
        elif kind == "derived":
            entry = self._derived(params, stack)
        elif kind == "cumulative":
            entry = self._cumulative(params)
        elif kind == "conversion":
            entry = self._conversion(params)
        else:
            raise Unsupported(f"type `{kind}` is not supported (simple, ratio, derived, cumulative, conversion)")
        if raw.get("time_granularity") not in (None, "day"):
            raise Unsupported(f"time_granularity `{raw['time_granularity']}` is not supported yet")
        where = raw.get("filter")
        if (where or {}).get("where_filters"):
            if kind not in ("simple", "cumulative"):
                raise Unsupported(f"a filter on a {kind} metric is not supported yet (filter its inputs)")
            self._add_filter(entry, where, self._model_of_source(entry["source"]))
        out: dict[str, Any] = {"type": kind}
        out["label"] = raw.get("label") or name.replace("_", " ").capitalize()
        if raw.get("description"):
            out["description"] = raw["description"]
        out.update(entry)
        meta = _meta(raw)
        for key in META_KEYS:
            if key in meta and (key != "scale" or kind == "ratio"):  # only a ratio is scaled
                out[key] = meta[key]
        if kind in ("simple", "cumulative") and "unit" not in out and out.get("agg") in ("count", "count_distinct"):
            out["unit"] = "count"
        if kind == "conversion" and "unit" not in out:
            out["unit"] = "percent"  # kpibot's conversions are percentages
        if out.get("unit") == "currency" and kind in ("simple", "cumulative"):
            # money is sensitive: kpibot's access policy restricts what reads it
            source = self.sources[out["source"]]
            source.setdefault("sensitivity", {})[out["expr"]] = "money"
        return out

    def _model_of_source(self, source_id: str) -> _SemanticModel:
        return next(m for m in self.models.values() if m.source_id == source_id)

    def _measure(self, ref: Any) -> tuple[_SemanticModel, Mapping, Mapping]:
        """(semantic model, measure, the metric's input) of a measure input (name or mapping)."""
        ref = {"name": ref} if isinstance(ref, str) else (ref or {})
        name = ref.get("name")
        model = self.measure_of.get(name)
        if model is None:
            raise Unsupported(f"unknown measure `{name}`")
        if model.source_id not in self.sources:
            raise Unsupported(f"its measure `{name}` is in semantic model `{model.name}`, which has errors")
        measure = model.measures[name]
        agg = measure.get("agg")
        if agg not in AGGS:
            raise Unsupported(f"measure `{name}` aggregates with `{agg}`, which kpibot does not support yet "
                              f"({', '.join(sorted(AGGS))})")
        if measure.get("non_additive_dimension"):
            raise Unsupported(f"measure `{name}` has a non_additive_dimension (semi-additive), not supported yet")
        # join_to_timespine / fill_nulls_with are not read: a period without rows is "no data"
        return model, measure, ref

    def _aggregation(self, ref: Any) -> dict:
        """source/agg/expr/time (and filter) of a measure input."""
        model, measure, inp = self._measure(ref)
        entry: dict[str, Any] = {"source": model.source_id, "agg": AGGS[measure["agg"]], "expr": measure["name"]}
        time = measure.get("agg_time_dimension") or model.default_time
        if time is None or time not in model.dimensions or model.dimensions[time].get("type") != "time":
            raise Unsupported(f"measure `{measure['name']}` has no time dimension to aggregate by")
        grain = (model.dimensions[time].get("type_params") or {}).get("time_granularity")
        if grain in COARSE_GRAINS:
            raise Unsupported(f"time dimension `{time}` has {grain} granularity; kpibot counts periods "
                              "down to days, so only day (or finer) time dimensions are supported yet")
        entry["time"] = time
        self._add_filter(entry, inp.get("filter"), model)
        return entry

    def _simple(self, params: Mapping) -> dict:
        measure = params.get("measure")
        if measure is None:  # dbt's newer metrics carry their aggregation inline: not read yet
            raise Unsupported("a simple metric without a measure is not supported yet")
        return self._aggregation(measure)

    def _input(self, ref: Any, role: str, stack: tuple[str, ...]) -> Mapping:
        ref = {"name": ref} if isinstance(ref, str) else (ref or {})
        name = ref.get("name")
        if name not in self.raw_metrics:
            raise Unsupported(f"its {role} `{name}` is not a metric of this project")
        for key in ("offset_window", "offset_to_grain"):
            if ref.get(key):
                raise Unsupported(f"{key} on {role} `{name}` is not supported yet")
        if self._metric(name, stack) is None:
            raise Unsupported(f"its {role} `{name}` could not be converted")
        return ref

    def _ratio(self, params: Mapping, stack: tuple[str, ...]) -> dict:
        refs = {role: self._input(params.get(role), role, stack) for role in ("numerator", "denominator")}
        parts = {}
        for role, ref in refs.items():
            part = self.metrics[ref["name"]]
            if part["type"] != "simple":
                raise Unsupported(f"its {role} `{ref['name']}` is a {part['type']} metric; "
                                  "kpibot's ratios are of simple metrics")
            parts[role] = part
        if not any((ref.get("filter") or {}).get("where_filters") for ref in refs.values()):
            return {role: self.ids[ref["name"]] for role, ref in refs.items()}
        # a filtered input: both parts inline, aggregated over the same rows
        out: dict[str, Any] = {}
        for role, ref in refs.items():
            part = parts[role]
            inline = {k: part[k] for k in ("source", "agg", "expr", "time", "filter") if k in part}
            self._add_filter(inline, ref.get("filter"), self._model_of_source(part["source"]))
            out[role] = inline
        if (out["numerator"]["source"], out["numerator"]["time"]) != (out["denominator"]["source"],
                                                                      out["denominator"]["time"]):
            raise Unsupported("a filtered input of a ratio over two semantic models (or time dimensions) "
                              "is not supported yet")
        return out

    def _derived(self, params: Mapping, stack: tuple[str, ...]) -> dict:
        expr = params.get("expr")
        if not isinstance(expr, str) or not expr.strip():
            raise Unsupported("a derived metric without an expr")
        names: dict[str, str] = {}
        for ref in params.get("metrics") or []:
            ref = self._input(ref, "input", stack)
            if (ref.get("filter") or {}).get("where_filters"):
                raise Unsupported(f"a filter on input `{ref['name']}` of a derived metric is not supported yet")
            names[ref.get("alias") or ref["name"]] = self.ids[ref["name"]]

        def rename(m: re.Match) -> str:
            word = m.group(2)
            return names.get(word, word) if word else m.group(0)

        return {"expr": _WORDS.sub(rename, expr)}

    def _cumulative(self, params: Mapping) -> dict:
        cumulative = params.get("cumulative_type_params") or {}
        for key in ("window", "grain_to_date"):
            value = cumulative.get(key) or params.get(key)
            if value:
                raise Unsupported(f"cumulative with a {key} ({_window_text(value)}) is not supported yet; "
                                  "only running totals (no window) are")
        part = self._aggregation(params.get("measure"))
        entry = {"source": part["source"], "agg": part["agg"], "expr": part["expr"], "start": part["time"]}
        if "filter" in part:
            entry["filter"] = part["filter"]
        return entry

    def _conversion(self, params: Mapping) -> dict:
        conv = params.get("conversion_type_params") or {}
        if conv.get("calculation", "conversion_rate") != "conversion_rate":
            raise Unsupported(f"calculation `{conv.get('calculation')}` is not supported yet (conversion_rate is)")
        if conv.get("constant_properties"):
            raise Unsupported("constant_properties are not supported yet")
        window = conv.get("window")
        if not window:
            raise Unsupported("a conversion without a window is not supported yet")
        if window.get("granularity") not in WINDOW_DAYS:
            raise Unsupported(f"a window of `{_window_text(window)}` is not supported yet (days or weeks)")
        entity = conv.get("entity")
        parts = {}
        for role, key in (("base", "base_measure"), ("conversion", "conversion_measure")):
            part = self._aggregation(conv.get(key))
            model = self._model_of_source(part["source"])
            if entity not in model.entities:
                raise Unsupported(f"entity `{entity}` is not an entity of semantic model `{model.name}`")
            if "filter" in part:
                raise Unsupported(f"a filter on the {role} measure of a conversion is not supported yet")
            parts[role] = {"source": part["source"], "time": part["time"]}
        return {**parts, "entity": entity, "window_days": int(window["count"]) * WINDOW_DAYS[window["granularity"]]}

    # -- filters -------------------------------------------------------------------------------

    def _add_filter(self, entry: dict, where: Any, model: _SemanticModel) -> None:
        """AND a dbt ``where_filters`` list, translated to SQL over ``model``'s logical columns
        (``metric_time`` is the entry's time column)."""
        templates = [w.get("where_sql_template") for w in (where or {}).get("where_filters") or []]
        time = entry.get("time") or entry.get("start")
        sql = [f"({self._filter_sql(t, model, time)})" for t in templates if t]
        if entry.get("filter"):
            sql.insert(0, f"({entry['filter']})")
        if sql:
            entry["filter"] = " and ".join(sql) if len(sql) > 1 else sql[0][1:-1]

    def _filter_sql(self, template: str, model: _SemanticModel, time: str | None) -> str:
        def replace(m: re.Match) -> str:
            func, args, chained = m.group(1), _args(m.group(2)), m.group(3)
            if chained:
                raise Unsupported(f"filter `{m.group(0)}`: `{chained}` is not supported yet")
            if func == "Entity" and args and args[0] in model.entities:
                return args[0]
            if func in ("Dimension", "TimeDimension") and args:
                if func == "TimeDimension" and len(args) > 1 and args[1] != "day":
                    raise Unsupported(f"filter `{m.group(0)}`: only day-grain time dimensions are supported")
                parts = args[0].split("__")
                if parts == ["metric_time"] and time:
                    return f"date_trunc('day', {time})"  # MetricFlow compares days
                if len(parts) == 2 and parts[0] in model.prefixes and parts[1] in model.dimensions:
                    dim = parts[1]
                    if model.dimensions[dim].get("type") == "time":
                        return f"date_trunc('day', {dim})"
                    return model.dimension_ids.get(dim, dim)
                raise Unsupported(f"filter `{m.group(0)}`: `{args[0]}` is not a dimension of semantic model "
                                  f"`{model.name}` (filters through joins are not supported yet)")
            raise Unsupported(f"filter `{m.group(0)}` is not supported yet")

        sql = _JINJA.sub(replace, template)
        if "{{" in sql or "{%" in sql:
            raise Unsupported(f"filter `{template}` is not supported yet")
        return sql


# -- small helpers -----------------------------------------------------------------------------


def _relation(node: Any) -> str:
    """``schema.alias``: the database part is left out, so the same project answers over
    whichever database kpibot is pointed at (a DuckDB file's name is its database)."""
    if not isinstance(node, Mapping) or not node.get("alias"):
        raise Unsupported("has no node_relation (is its `model:` a ref to a dbt model?)")
    alias, schema = str(node["alias"]), node.get("schema_name")
    if not _IDENT.match(alias) or (schema and not _IDENT.match(str(schema))):
        raise Unsupported(f"relation `{schema}.{alias}` is not a plain schema.table name")
    return f"{schema}.{alias}" if schema else alias


def _column(expr: Any, name: str) -> str | dict:
    """A team column name when ``expr`` is one (or absent: dbt then reads ``name``), else SQL."""
    if expr in (None, ""):
        return name
    expr = str(expr)
    return expr if _IDENT.match(expr) else {"expr": expr}


def _as_expr(column: str | dict) -> dict:
    return {"column": column} if isinstance(column, str) else dict(column)


def _as_dimension(column: str | dict) -> dict:
    return {"column": column} if isinstance(column, str) else {"expr": column["expr"]}


def _meta(element: Mapping) -> Mapping:
    """An element's ``config.meta`` (dbt ≥ 1.10), else its ``meta``."""
    return ((element.get("config") or {}).get("meta") or {}) or (element.get("meta") or {})


def _args(text: str) -> list[str]:
    return [m.group(1) if m.group(1) is not None else m.group(2) for m in _ARG.finditer(text)
            if m.group(1) is not None or m.group(2) is not None]


def _window_text(value: Any) -> str:
    if isinstance(value, Mapping):
        return f"{value.get('count')} {value.get('granularity')}"
    return str(value)


def _what_is_wrong(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing `{exc.args[0]}`"
    return f"unexpected shape: {exc}"
