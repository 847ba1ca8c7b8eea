"""A metric's rows as a union of sources (``rows: {name:, union: [...]}``): revenue and cost
to serve side by side, or one row per stage a lead reached, aggregated together.

Each part picks its source's rows (``filter``) and names the same columns in the same order:
a logical column of the source, ``0`` (money where another part's column is money, so sums
stay exact), a quoted text (``'mql'``), or an SQL expression over the source's columns. The
union is written as a hand-built entry would (``union_all(...).subquery(name)``), so a KPI
moved to data sends the same statement.

With ``per_window: true`` each part is first aggregated per window and by its plain columns
(marketing spend per window and channel beside new customers per window and channel): a
column may then also be ``{agg:, expr:}``, and each part names its own ``time`` column (a
date column is matched with the window's dates). A part may ``join`` another source by a
shared column (orders with their customers, for the channel that acquired them), and
``combine: <name>`` sums the parts' rows again per window and plain column (one row per
channel with both revenue and spend, so an aggregate can compare them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import (
    Date,
    DateTime,
    Integer,
    String,
    and_,
    column,
    func,
    literal,
    select,
    table,
    union_all,
)

from metrics.kpis.common import money_zero
from metrics.model import sqlexpr
from storage.schema import MONEY

KEYS = ("source", "columns", "filter", "time", "join")
AGGS: dict[str, Callable[..., Any]] = {"sum": func.sum, "count": func.count, "min": func.min, "max": func.max, "avg": func.avg}


def windows_like():
    """A stand-in for the engine's windows subquery, to check a per-window union at load time."""
    return table("w", column("w", Integer), column("ws", DateTime), column("we", DateTime),
                 column("ds", Date), column("de", Date))


def _quoted(value: Any) -> str | None:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == "'" and "'" not in value[1:-1]:
        return value[1:-1]
    return None


def union(spec: Any, table: Callable[[str], Any], has: Callable[[str], bool], invalid: Callable[..., Exception]):
    """``(name, build, sources)``: the union's name, a function building it (no argument, as
    the engine calls a source) and the sources it reads; ``invalid(message, node, key)``
    makes the load error naming the file and line."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("union"), list) or len(spec["union"]) < 2:
        raise invalid("rows: {name:, union: [{source:, columns:, filter:}, …]} (two parts or more)", spec, "union")
    unknown = [k for k in spec if k not in ("name", "union", "per_window", "combine")]
    if unknown:
        raise invalid(f"rows: unknown key `{unknown[0]}` (name, union, per_window, combine)", spec, unknown[0])
    combine = spec.get("combine")
    if combine is not None and (not isinstance(combine, str) or not combine.isidentifier() or not spec.get("per_window")):
        raise invalid("rows: `combine` names the parts' union (a word), in a per_window union", spec, "combine")
    per_window = spec.get("per_window", False)
    if not isinstance(per_window, bool):
        raise invalid("rows: per_window is true or false", spec, "per_window")
    name = spec.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise invalid("rows: `name` (the union's name in the SQL) must be a word", spec, "name")
    parts: list[Mapping] = spec["union"]
    names: list[str] | None = None
    for part in parts:
        if not isinstance(part, Mapping) or not isinstance(part.get("columns"), Mapping):
            raise invalid("each part of a union: {source:, columns: {name: column, 0, 'text' or SQL}, filter:}", spec, "union")
        bad = [k for k in part if k not in KEYS]
        if bad:
            raise invalid(f"union part: unknown key `{bad[0]}` ({', '.join(KEYS)})", part, bad[0])
        source = str(part.get("source"))
        if not has(source):
            raise invalid(f"union part: unknown source `{source}`", part, "source")
        cols = list(table(source).c.keys())
        joined = part.get("join")
        if joined is not None:
            if not isinstance(joined, Mapping) or not has(str(joined.get("source"))) or set(joined) != {"source", "using"} \
                    or joined["using"] not in cols or joined["using"] not in table(str(joined["source"])).c:
                raise invalid("union part join: {source:, using: a column both sources have}", part, "join")
            cols += [c for c in table(str(joined["source"])).c.keys() if c not in cols]
        keys = [str(k) for k in part["columns"]]
        if names is None:
            names = keys
        elif keys != names:
            raise invalid(f"union part `{source}`: columns must be {', '.join(names)}, in that order", part, "columns")
        if per_window and part.get("time") not in cols:
            raise invalid(f"union part `{source}`: per window, give its `time` column", part, "time")
        if not per_window and "time" in part:
            raise invalid("union part: `time` is for a per_window union (else the metric's `time`)", part, "time")
        for col, value in part["columns"].items():
            if per_window and isinstance(value, Mapping):
                if value.get("agg", "count") not in AGGS or (value.get("expr") is None) != (value.get("agg") == "count") \
                        or (value.get("expr") is not None and value["expr"] not in cols):
                    raise invalid(f"union column `{col}`: {{agg: {'|'.join(AGGS)}, expr: a column}} (count: no expr)",
                                  part["columns"], col)
                continue
            if isinstance(value, bool) or not (isinstance(value, (int, float, str))):
                raise invalid(f"union column `{col}`: a column, a number, 'text' or SQL", part["columns"], col)
            if isinstance(value, str) and _quoted(value) is None and sqlexpr.check(value, cols):
                raise invalid(f"union column `{col}`: {sqlexpr.check(value, cols)[0]}", part["columns"], col)
        if part.get("filter") is not None and (not isinstance(part["filter"], str) or sqlexpr.check(part["filter"], cols)):
            raise invalid("union part filter: " + (sqlexpr.check(str(part["filter"]), cols) or ["must be text"])[0],
                          part, "filter")
    assert names is not None
    def read(v: Any) -> Any:
        return v.get("expr") if isinstance(v, Mapping) else v

    def tables(part: Mapping) -> list:
        joined = part.get("join")
        return [table(str(part["source"]))] + ([table(str(joined["source"]))] if joined else [])

    def find(part: Mapping, name: Any) -> Any:
        """The column ``name`` of the part's source, else of the source it joins."""
        return next((t.c[name] for t in tables(part) if isinstance(name, str) and name in t.c), None)

    money = {col for part in parts for col, v in part["columns"].items()
             if find(part, read(v)) is not None and isinstance(find(part, read(v)).type, type(MONEY))}

    def column(part: Mapping, col: str, value: Any):
        t = table(str(part["source"]))
        if isinstance(value, Mapping):
            return (func.count() if value.get("agg", "count") == "count" else AGGS[value["agg"]](find(part, value["expr"]))).label(col)
        if isinstance(value, (int, float)):
            zero = money_zero() if value == 0 and col in money else literal(value, Integer if isinstance(value, int) else None)
            return zero.label(col)
        text = _quoted(value)
        if text is not None:
            return literal(text, String).label(col)
        found = find(part, value)
        if found is not None:
            return found if value == col else found.label(col)
        return sqlexpr.build(value, t).label(col)

    def plain(part: Mapping, value: Any) -> Any:
        if isinstance(value, str) and _quoted(value) is None:
            found = find(part, value)
            return found if found is not None else sqlexpr.build(value, table(str(part["source"])))
        return None

    def build_over(w):
        selects = []
        for part in parts:
            t = table(str(part["source"]))
            picked = [column(part, col, v) for col, v in part["columns"].items()]
            if w is None:
                s = select(*picked)
            else:
                at = t.c[part["time"]]
                dates = isinstance(at.type, Date)
                inside = and_(at >= (w.c.ds if dates else w.c.ws), at < (w.c.de if dates else w.c.we))
                keys = [e for e in (plain(part, v) for v in part["columns"].values()) if e is not None]
                joined = part.get("join")
                rows = t.join(table(str(joined["source"])), t.c[joined["using"]] == table(str(joined["source"])).c[joined["using"]]) \
                    if joined else t
                s = select(w.c.w, *picked).select_from(rows.join(w, inside)).group_by(w.c.w, *keys)
            if part.get("filter"):
                s = s.where(sqlexpr.build(part["filter"], t))
            selects.append(s)
        if combine is None:
            return union_all(*selects).subquery(name)
        both = union_all(*selects).subquery(combine)
        first = parts[0]
        keys = [both.c[c] for c, v in first["columns"].items() if plain(first, v) is not None]
        summed = [func.sum(both.c[c]).label(c) for c, v in first["columns"].items() if plain(first, v) is None]
        return select(both.c.w, *keys, *summed).group_by(both.c.w, *keys).subquery(name)

    def build():
        return build_over(None)

    def build_per_window(w):
        return build_over(w)

    read_from = [str(n) for p in parts for n in (p["source"], *([p["join"]["source"]] if p.get("join") else []))]
    return name, build_per_window if per_window else build, tuple(dict.fromkeys(read_from))
