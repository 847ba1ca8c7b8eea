"""A metric's rows as a union of sources (``rows: {name:, union: [...]}``): revenue and cost
to serve side by side, or one row per stage a lead reached, aggregated together.

Each part picks its source's rows (``filter``) and names the same columns in the same order:
a logical column of the source, ``0`` (money where another part's column is money, so sums
stay exact), a quoted text (``'mql'``), or an SQL expression over the source's columns. The
union is written as a hand-built entry would (``union_all(...).subquery(name)``), so a KPI
moved to data sends the same statement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Integer, String, literal, select, union_all

from metrics.kpis.common import money_zero
from metrics.model import sqlexpr
from storage.schema import MONEY

KEYS = ("source", "columns", "filter")


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
    unknown = [k for k in spec if k not in ("name", "union")]
    if unknown:
        raise invalid(f"rows: unknown key `{unknown[0]}` (name, union)", spec, unknown[0])
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
        keys = [str(k) for k in part["columns"]]
        if names is None:
            names = keys
        elif keys != names:
            raise invalid(f"union part `{source}`: columns must be {', '.join(names)}, in that order", part, "columns")
        for col, value in part["columns"].items():
            if isinstance(value, bool) or not (isinstance(value, (int, float, str))):
                raise invalid(f"union column `{col}`: a column, a number, 'text' or SQL", part["columns"], col)
            if isinstance(value, str) and _quoted(value) is None and sqlexpr.check(value, cols):
                raise invalid(f"union column `{col}`: {sqlexpr.check(value, cols)[0]}", part["columns"], col)
        if part.get("filter") is not None and (not isinstance(part["filter"], str) or sqlexpr.check(part["filter"], cols)):
            raise invalid("union part filter: " + (sqlexpr.check(str(part["filter"]), cols) or ["must be text"])[0],
                          part, "filter")
    assert names is not None
    money = {col for part in parts for col, v in part["columns"].items()
             if isinstance(v, str) and v in table(str(part["source"])).c
             and isinstance(table(str(part["source"])).c[v].type, type(MONEY))}

    def column(t, col: str, value: Any):
        if isinstance(value, (int, float)):
            zero = money_zero() if value == 0 and col in money else literal(value, Integer if isinstance(value, int) else None)
            return zero.label(col)
        text = _quoted(value)
        if text is not None:
            return literal(text, String).label(col)
        if value in t.c:
            return t.c[value] if value == col else t.c[value].label(col)
        return sqlexpr.build(value, t).label(col)

    def build():
        selects = []
        for part in parts:
            t = table(str(part["source"]))
            s = select(*(column(t, col, v) for col, v in part["columns"].items()))
            if part.get("filter"):
                s = s.where(sqlexpr.build(part["filter"], t))
            selects.append(s)
        return union_all(*selects).subquery(name)

    return name, build, tuple(dict.fromkeys(str(p["source"]) for p in parts))
