"""`kpibot check`: the model against the live database, and which KPIs it can answer.

Everything here reads (a few rows of each source, one small query per KPI over a one-day
window), in kpibot's read-only sessions; nothing is written. Each gap is named with the
closest names the database does have.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from rapidfuzz import fuzz, process
from sqlalchemy import Date, DateTime, Engine, Numeric, inspect, select, text, type_coerce
from sqlalchemy.types import Float, Integer, NullType

from metrics.model import relations
from metrics.model.load import Model
from storage import database
from storage.schema import SURVEY_SCALES, is_money


@dataclass
class SourceCheck:
    name: str
    where: str
    problems: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # the team relation's columns (for suggestions)
    rows: int = 0


@dataclass
class Report:
    errors: list[str]
    sources: list[SourceCheck]
    available: list[str]
    unavailable: list[tuple[str, str]]  # (KPI id, what it misses)

    def text(self) -> str:
        out: list[str] = []
        if self.errors:
            out.append(f"Model errors ({len(self.errors)}; those entries are left out):")
            out += [f"  {e}" for e in self.errors]
        out.append("Sources:")
        for s in self.sources:
            state = "ok" if not s.problems else "PROBLEM"
            out.append(f"  {s.name:<18} {s.where}: {state}" + (f" ({s.rows} sample rows)" if not s.problems else ""))
            out += [f"      {p}" for p in s.problems]
        out.append(f"KPIs available ({len(self.available)}):")
        out += textwrap.wrap(", ".join(self.available), 96, initial_indent="  ", subsequent_indent="  ")
        if self.unavailable:
            out.append(f"KPIs unavailable ({len(self.unavailable)}):")
            out += [f"  {kpi:<28} {why}" for kpi, why in self.unavailable]
        return "\n".join(out)

    @property
    def ok(self) -> bool:
        return not self.errors and all(not s.problems for s in self.sources)


def closest(word: str, names: Iterable[str], limit: int = 3) -> list[str]:
    found = process.extract(word.lower(), list(names), processor=str.lower, scorer=fuzz.ratio, limit=limit, score_cutoff=35)
    return [name for name, _score, _ in found]


def _suggest(word: str, names: Iterable[str]) -> str:
    near = closest(word, names)
    return f" (closest: {', '.join(near)})" if near else ""


_CATALOG_SCHEMAS = ("information_schema", "pg_catalog")


def _relations(engine: Engine) -> list[str]:
    """Every table and view kpibot may read, schema-qualified outside the default schema."""
    found: list[str] = []
    with database.query(engine) as conn:
        if engine.dialect.name != "sqlite":  # information_schema: PostgreSQL, DuckDB, warehouses
            default = conn.execute(text("SELECT current_schema()")).scalar()
            rows = conn.execute(text("SELECT table_schema, table_name FROM information_schema.tables")).all()
            return [name if schema == default else f"{schema}.{name}" for schema, name in rows
                    if schema not in _CATALOG_SCHEMAS and not str(schema).startswith("pg_")]
        insp = inspect(conn)
        default = insp.default_schema_name
        for schema in insp.get_schema_names():
            if schema in ("information_schema", "pg_catalog") or schema.startswith("pg_"):
                continue
            prefix = "" if schema == default else f"{schema}."
            for name in (*insp.get_table_names(schema=schema), *insp.get_view_names(schema=schema)):
                found.append(prefix + name)
    return found


def _columns(engine: Engine, relation: str) -> list[str] | None:
    schema, _, name = relation.rpartition(".")
    try:
        with database.query(engine) as conn:
            if engine.dialect.name != "sqlite":
                schema = schema or str(conn.execute(text("SELECT current_schema()")).scalar())
                rows = conn.execute(text(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = :t "
                    "AND table_schema = :s ORDER BY ordinal_position"), {"t": name, "s": schema}).scalars().all()
                return [str(r) for r in rows] or None
            return [c["name"] for c in inspect(conn).get_columns(name, schema=schema or None)]
    except Exception:  # noqa: BLE001 - no such relation (each driver says it its own way)
        return None


def _kind_problem(logical: str, kind, values: list) -> str | None:
    seen = [v for v in values if v is not None]
    if not seen:
        return None
    if isinstance(kind, (DateTime, Date)):
        bad = [v for v in seen if not isinstance(v, (date, datetime)) and not _iso(v)]
        return f"`{logical}` should be a date/time; sample values: {bad[:2]!r}" if bad else None
    if isinstance(kind, (Numeric, Float, Integer)) or is_money(kind):
        bad = [v for v in seen if isinstance(v, bool) or not isinstance(v, (int, float, Decimal))]
        return f"`{logical}` should be a number; sample values: {bad[:2]!r}" if bad else None
    return None


def _iso(value) -> bool:
    try:
        datetime.fromisoformat(str(value))
        return True
    except ValueError:
        return False


def _score_ranges(rows) -> list[str]:
    """Survey scores outside kpibot's scale for their survey (a CSAT on 1-10, not 1-5)."""
    out = []
    for survey, (low, high) in SURVEY_SCALES.items():
        scores = [r["score"] for r in rows if str(r["survey"]).lower() == survey and isinstance(r["score"], (int, float, Decimal))]
        if scores and (min(scores) < low or max(scores) > high):
            out.append(f"`score`: {survey} answers range {min(scores):g}-{max(scores):g} in the sample, kpibot reads "
                       f"{survey} on {low}-{high} (map it with a `scale` or an `expr`)")
    return out


def check_sources(model: Model, engine: Engine) -> list[SourceCheck]:
    rels = model.relations
    assert rels is not None
    everything: list[str] | None = None
    out = []
    for name, source in model.sources.items():
        where = source.relation or "(sql)"
        found = SourceCheck(name, f"{where}")
        out.append(found)
        if source.relation:
            cols = _columns(engine, source.relation)
            if cols is None:
                everything = _relations(engine) if everything is None else everything
                found.problems.append(f"relation `{source.relation}` not found{_suggest(source.relation, everything)}")
                continue
            found.columns = cols
            lower = {c.lower() for c in cols}
            for logical, m in source.columns.items():
                if m.column and m.column.lower() not in lower:
                    found.problems.append(f"`{logical}`: column `{m.column}` not in `{source.relation}`{_suggest(m.column, cols)}")
        physical = rels.physical(name)
        try:
            with database.query(engine) as conn:
                raw = [type_coerce(c, NullType()).label(c.name) for c in physical.c]  # values as the driver reads them
                rows = conn.execute(select(*raw).limit(200)).mappings().all()
        except database.DatabaseError as exc:
            if not found.problems:
                found.problems.append(f"cannot read it: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - an expression the database rejects
            if not found.problems:
                found.problems.append(f"the database rejects its columns or expressions ({exc.__class__.__name__})")
            continue
        found.rows = len(rows)
        if name == "survey_responses" and {"survey", "score"} <= set(source.columns):
            found.problems += _score_ranges(rows)
        logical_table = rels.table(name)
        for logical in source.columns:
            problem = _kind_problem(logical, logical_table.c[logical].type, [r[logical] for r in rows])
            if problem:
                found.problems.append(problem)
    return out


def check_metrics(model: Model, engine: Engine, sources: list[SourceCheck]) -> tuple[list[str], list[tuple[str, str]]]:
    from metrics import engine as kpi_engine
    from metrics.periods import Settings

    team_columns = {s.name: s.columns for s in sources}
    everything: list[str] | None = None
    day = date.today()
    windows = [(day - timedelta(days=1), day)]
    available, unavailable = [], []
    for mid, metric in model.metrics.items():
        try:
            kpi_engine.compute(metric, windows, Settings(), engine)
            available.append(mid)
        except relations.Unmapped as exc:
            table, _, column = exc.what.partition(".")
            source = model.sources.get(table)
            have = [c for c in team_columns.get(table, []) if source is None or c not in
                    {m.column for m in source.columns.values()}]
            unavailable.append((mid, f"needs `{exc.what}`: not mapped{_suggest(column, have)}"))
        except database.MissingTable as exc:
            everything = _relations(engine) if everything is None else everything
            unavailable.append((mid, f"needs table `{exc.table}`: not in the model, not in the database"
                                     f"{_suggest(exc.table, everything)}"))
        except database.DatabaseError as exc:
            unavailable.append((mid, str(exc).replace(f"Can't answer `{mid}`: ", "")))
    return available, unavailable


def run(model: Model, engine: Engine) -> Report:
    sources = check_sources(model, engine)
    available, unavailable = check_metrics(model, engine, sources)
    return Report([str(e) for e in model.errors], sources, available, unavailable)


def sql_of(metric_id: str, engine: Engine) -> list[str]:
    """The SQL a KPI runs on ``engine`` (this month), one statement per aggregate KPI it reads."""
    from metrics import engine as kpi_engine
    from metrics.catalogue import CATALOGUE
    from metrics.periods import Settings
    from metrics.spec import Derived, Measure

    metric = CATALOGUE[metric_id]
    if isinstance(metric.measure, Derived):
        return [s for i in metric.measure.inputs for s in sql_of(i, engine)]
    if not isinstance(metric.measure, Measure):
        return [f"-- {metric_id} is a model computed by a function (several statements)"]
    day = date.today().replace(day=1)
    stmt = kpi_engine.compile_measure(metric, metric.measure, [(day, day + timedelta(days=31))], Settings())
    stmt = relations.adapt_for(engine, stmt)
    compiled = stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
    return [f"-- {metric_id}\n{compiled}"]


__all__ = ["Report", "run", "sql_of"]
