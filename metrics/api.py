"""The one query path every front end uses: text → Query → SQL in the database → Result."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from typing import TypeVar

from metrics import access, pauses, reports
from metrics import cache as _cache
from metrics import engine as _engine
from metrics import explain as _explain
from metrics import values as _values
from metrics.catalogue import CATALOGUE
from metrics.parser import parse
from metrics.periods import Settings, today_in
from metrics.query import Query
from metrics.reports import Report
from metrics.result import Result
from storage import database

T = TypeVar("T")


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
    query = _parse(text, as_of, url, settings)
    with _authorized(authorize, lambda: _needs(query)) as scope:
        return _cached(("ask",), query, url, settings, scope, lambda: run(query, url=url, settings=settings, cached=False))


def _parse(text: str, as_of: date | None, url: str | None, settings: Settings) -> Query:
    today = as_of or today_in(settings)
    index = _values.index_for(database.get_engine(url))  # filters in words: `retail nps`
    return parse(text, today=today, settings=settings, values=index)


def _needs(query: Query) -> access.Needs:
    return access.for_metric(query.metric, query.dimension, tuple(name for name, _ in query.filters))


@contextmanager
def _authorized(authorize: access.Authorize | None, needs) -> Iterator[frozenset[str] | None]:
    """Nothing without ``authorize``; else its verdict first, then a guard on every statement.
    Yields what the asker may see (None: unguarded), which the answer cache keys on."""
    if authorize is None:
        yield None
        return
    wanted = needs()
    authorize(wanted)
    with access.reading_only(wanted.sensitivities):
        yield frozenset(wanted.sensitivities)


def _cached(kind: tuple, query: Query, url: str | None, settings: Settings, scope: frozenset[str] | None,
            compute: Callable[[], T]) -> T:
    """``compute()``'s answer, or the one already computed for the same question over the
    same data for an asker who may see the same (:mod:`metrics.cache`). Called only after
    the access check passed."""
    answers = _cache.answers()
    if not answers.enabled:
        with _cache.computing():
            return compute()
    engine = database.get_engine(url)
    found = _version(engine, _engine.reads(CATALOGUE[query.metric], query.dimension, query.filters), settings)
    if found is None:
        with _cache.computing():
            return compute()
    version, ttl = found
    # the KPI_ settings a catalogue entry reads while its SQL is built (e.g. inactive days)
    key = (*kind, query, query.readings, repr(settings), _engine._env(), str(engine.url), scope, version)
    return _cache.keep_key(answers.through(key, compute, ttl), key)


def _version(engine, tables: tuple[str, ...], settings: Settings) -> tuple[tuple, float | None] | None:
    """The data version an answer over ``tables`` is cached under; None when it cannot be
    had (a table missing or refused in a database kpibot did not create): then the question
    runs uncached and says what is wrong exactly as it would without a cache. An outage is
    raised as it is (trying the question too would only wait for the server twice)."""
    present = tuple(t for t in (*tables, "customers") if t not in database.missing_tables(engine, (*tables, "customers")))
    try:
        with access.unguarded():  # the probe is bookkeeping: nothing of it reaches the asker
            return _cache.data_version(engine, present, settings)
    except database.Refused:  # the question itself will say which table, for which KPI
        return None


def answer(
    text: str,
    *,
    as_of: date | None = None,
    url: str | None = None,
    settings: Settings | None = None,
    explain: bool = True,
    authorize: access.Authorize | None = None,
    draw: bool = False,
) -> Result | Report:
    """What a person asked: a cross-silo report (``complaints last-month``) or a KPI answer,
    explained by the segment that moved it most when the change is real (not noise). With
    ``draw`` (a front end that shows the chart) the chart is drawn while the explanation's
    statements run, so ``charts.render_png`` then finds it drawn."""
    with pauses.answering():  # no full garbage collection at a quiet moment meanwhile
        settings = settings or Settings.from_env()
        today = as_of or today_in(settings)
        found = reports.find(text)
        if found:
            with _authorized(authorize, lambda: access.for_report(found[0])):
                return reports.run_report(text, today=today, url=url, settings=settings)
        query = _parse(text, today, url, settings)
        with _authorized(authorize, lambda: _needs(query)) as scope:
            return _cached(("answer", explain), query, url, settings, scope,
                           lambda: _explained(run(query, url=url, settings=settings, cached=False, every_cut=explain),
                                              url, settings, explain, draw))


def _explained(result: Result, url: str | None, settings: Settings, explain: bool, draw: bool = False) -> Result:
    """The answer with the segment that moved it, when the change is real (not noise). Runs
    inside the asker's guard (if any): what it may not read leaves the answer unexplained.
    With ``draw`` the chart is drawn meanwhile: the explanation waits on the database (which
    releases the GIL) and the chart on the CPU, so the person waits for the longer of the
    two, not their sum (the chart does not show the explanation)."""
    if explain and _explain.worth_explaining(result):
        drawing = None
        if draw:
            from metrics import charts  # matplotlib only for a front end that draws

            drawing = charts.draw_aside(result)
        try:
            result.explanation = _explain.explain(result, database.get_engine(url), settings)
        except (database.DatabaseError, access.AccessDenied):
            result.explanation = None  # the answer stands without its explanation
        finally:
            if drawing is not None:
                charts.keep_drawn(result, drawing)
    result.cuts = None  # read by the explanation only: not kept with the answer
    return result


def run(query: Query, *, url: str | None = None, settings: Settings | None = None, cached: bool = True,
        every_cut: bool = False) -> Result:
    """A parsed query's answer (digests build their queries themselves), from the cache when
    the same query over the same data was answered before. ``every_cut``: see
    :func:`metrics.engine.run` (for a caller that explains the answer)."""
    settings = settings or Settings.from_env()
    if cached:
        return _cached(("ask",), query, url, settings, None, lambda: run(query, url=url, settings=settings, cached=False))
    return _engine.run(query, engine=database.get_engine(url), settings=settings, every_cut=every_cut)


def cells(
    metric_id: str,
    windows: Sequence[tuple[date, date]],
    settings: Settings,
    *,
    url: str | None = None,
    dimension: str | None = None,
    filters: Sequence[tuple[str, str]] = (),
) -> dict[tuple[int, str | None], _engine.Cell]:
    """A KPI's cells per (window, segment), as alert checks read them: cached like answers."""
    engine = database.get_engine(url)
    metric = CATALOGUE[metric_id]

    def compute() -> dict[tuple[int, str | None], _engine.Cell]:
        return _engine.compute(metric, windows, settings, engine, dimension, filters)

    answers = _cache.answers()
    if not answers.enabled:
        return compute()
    found = _version(engine, _engine.reads(metric, dimension, filters), settings)
    if found is None:
        return compute()
    version, ttl = found
    key = ("cells", metric_id, tuple(windows), dimension, tuple(filters), repr(settings), _engine._env(),
           str(engine.url), version)
    return answers.through(key, compute, ttl)
