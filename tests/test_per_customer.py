"""Rows added up per customer before they join the customers (metrics.engine._per_customer)
give the very cells the rows joined one by one give.

On the hand-computed company (tests/kpi_fixtures.py), every catalogue KPI is cut by every
customer attribute it offers, alone and inside its largest segment of a column of its own,
both ways: with the step, and with it switched off (the path the hand-computed KPI tests
checked before the step existed).
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import event

from metrics import engine as _engine
from metrics.catalogue import CATALOGUE, dimensions_for
from metrics.engine import compute
from metrics.model import relations
from metrics.periods import Settings
from metrics.spec import Measure
from storage import database

Q3, Q2 = (date(2026, 7, 1), date(2026, 10, 1)), (date(2026, 4, 1), date(2026, 7, 1))
KPIS = sorted(k for k, m in CATALOGUE.items() if isinstance(m.measure, Measure) and m.measure.customer_key)


def _cells(metric, engine, dim, filters):
    return {k: (c.value, c.n, c.rows, c.extras) for k, c in compute(metric, [Q3, Q2], Settings(), engine, dim, filters).items()}


def test_per_customer_first_gives_the_same_cells(company, monkeypatch):
    engine = database.get_engine(company)
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda conn, cursor, statement, *a: sent.append(statement))
    cases = []
    for kpi in KPIS:
        metric = CATALOGUE[kpi]
        offered = dimensions_for(metric)
        own = [d for d in offered if d in metric.dimensions]
        inside: list[tuple[tuple[str, str], ...]] = [()]
        if own:
            largest = max(((g, c.rows) for (w, g), c in compute(metric, [Q3, Q2], Settings(), engine, own[0]).items()
                           if w == 0 and g != "(not set)"), key=lambda gr: gr[1], default=None)
            if largest is not None:
                inside.append(((own[0], largest[0]),))
        cases += [(metric, dim, filters) for dim in offered if dim in relations.customer_dimensions()
                  and dim not in metric.dimensions for filters in inside]
    assert len(cases) > 40
    monkeypatch.setattr(_engine, "_statements", _engine._LRU())
    sent.clear()
    stepped = [_cells(metric, engine, dim, filters) for metric, dim, filters in cases]
    assert sum(" _ck" in s for s in sent) >= 20  # the step is taken (not every KPI qualifies)
    monkeypatch.setattr(_engine, "_statements", _engine._LRU())
    monkeypatch.setattr(_engine, "_per_customer", lambda *a: None)
    for (metric, dim, filters), got in zip(cases, stepped, strict=True):
        want = _cells(metric, engine, dim, filters)
        assert set(got) == set(want), (metric.id, dim, filters)
        for key, (value, n, rows, extras) in want.items():
            g = got[key]
            assert g[0] == pytest.approx(value, rel=1e-9, abs=1e-9) if value is not None else g[0] is None, (metric.id, dim, filters, key)
            assert (g[1], g[2]) == (n, rows), (metric.id, dim, filters, key)
            assert (g[3] or {}).keys() == (extras or {}).keys()
            for name, v in (extras or {}).items():
                assert (g[3][name] == pytest.approx(v, rel=1e-9, abs=1e-9)) if isinstance(v, float) else g[3][name] == v, \
                    (metric.id, dim, filters, key, name)
