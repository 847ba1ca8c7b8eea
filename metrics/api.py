"""The one query path every front end uses: text → Query → SQL in the database → Result."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import date

from metrics import access, reports
from metrics import engine as _engine
from metrics import explain as _explain
from metrics import values as _values
from metrics.parser import parse
from metrics.periods import Settings, today_in
from metrics.query import Query
from metrics.reports import Report
from metrics.result import Result
from storage import database


def ask(
    text: str,
    *,
    as_of: date | None = None,
    url: str | None = None,
    settings: Settings | None = None,
    authorize: access.Authorize | None = None,
) -> Result:
    """Answer a question. Raises QueryError (bad question) or DatabaseError (database trouble);
    ``authorize`` is shown what the question reads before any work and may refuse it
    (:class:`metrics.access.AccessDenied`); the run is then held to what it allowed."""
    settings = settings or Settings.from_env()
    today = as_of or today_in(settings)
    index = _values.index_for(database.get_engine(url))  # filters in words: `retail nps`
    query = parse(text, today=today, settings=settings, values=index)
    with _authorized(authorize, lambda: access.for_metric(query.metric, query.dimension,
                                                          tuple(name for name, _ in query.filters))):
        return run(query, url=url, settings=settings)


def _authorized(authorize: access.Authorize | None, needs):
    """Nothing without ``authorize``; else its verdict first, then a guard on every statement."""
    if authorize is None:
        return nullcontext()
    wanted = needs()
    authorize(wanted)
    return access.reading_only(wanted.sensitivities)


def answer(
    text: str,
    *,
    as_of: date | None = None,
    url: str | None = None,
    settings: Settings | None = None,
    explain: bool = True,
    authorize: access.Authorize | None = None,
) -> Result | Report:
    """What a person asked: a cross-silo report (``complaints last-month``) or a KPI answer,
    explained by the segment that moved it most when the change is real (not noise)."""
    settings = settings or Settings.from_env()
    today = as_of or today_in(settings)
    found = reports.find(text)
    if found:
        with _authorized(authorize, lambda: access.for_report(found[0])):
            return reports.run_report(text, today=today, url=url, settings=settings)
    result = ask(text, as_of=today, url=url, settings=settings, authorize=authorize)
    if explain and result.judgement in ("good", "bad") and not _noise(result):
        needs = access.for_metric(result.metric.id, result.query.dimension,
                                  tuple(name for name, _ in result.query.filters))
        try:
            with access.reading_only(needs.sensitivities) if authorize else nullcontext():
                result.explanation = _explain.explain(result, database.get_engine(url), settings)
        except (database.DatabaseError, access.AccessDenied):
            result.explanation = None  # the answer stands without its explanation
    return result


def _noise(result: Result) -> bool:
    return any("margin of error" in note or "treat this with caution" in note for note in result.notes)


def run(query: Query, *, url: str | None = None, settings: Settings | None = None) -> Result:
    return _engine.run(query, engine=database.get_engine(url), settings=settings)
