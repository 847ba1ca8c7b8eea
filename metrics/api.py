"""The one query path every front end uses: text → Query → SQL in the database → Result."""

from __future__ import annotations

from datetime import date

from metrics import engine as _engine
from metrics import explain as _explain
from metrics import reports
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
) -> Result:
    """Answer a question. Raises QueryError (bad question) or DatabaseError (database trouble)."""
    settings = settings or Settings.from_env()
    today = as_of or today_in(settings)
    query = parse(text, today=today, settings=settings)
    return run(query, url=url, settings=settings)


def answer(
    text: str,
    *,
    as_of: date | None = None,
    url: str | None = None,
    settings: Settings | None = None,
    explain: bool = True,
) -> Result | Report:
    """What a person asked: a cross-silo report (``complaints last-month``) or a KPI answer,
    explained by the segment that moved it most when the change is real (not noise)."""
    settings = settings or Settings.from_env()
    today = as_of or today_in(settings)
    if reports.find(text):
        return reports.run_report(text, today=today, url=url, settings=settings)
    result = ask(text, as_of=today, url=url, settings=settings)
    if explain and result.judgement in ("good", "bad") and not _noise(result):
        try:
            result.explanation = _explain.explain(result, database.get_engine(url), settings)
        except database.DatabaseError:
            result.explanation = None  # the answer stands without its explanation
    return result


def _noise(result: Result) -> bool:
    return any("margin of error" in note or "treat this with caution" in note for note in result.notes)


def run(query: Query, *, url: str | None = None, settings: Settings | None = None) -> Result:
    return _engine.run(query, engine=database.get_engine(url), settings=settings)
