"""An answer that shows its chart (Slack, ``kpibot ask --chart``) has it drawn while the
explanation's statements run (``metrics.api.answer(draw=True)``): the chart kept with the
answer must be the very picture ``charts.render_png`` draws for it, and only an explained
answer draws aside (the others draw when asked, as before).

tests/kpi_fixtures_explain.py (load_judged): NPS fell from 50 (Q2) to 6.25 (Q3), a real drop, explained by
EMEA; Q3 against Q3 of the year before is no change to explain."""

from __future__ import annotations

from datetime import date

import pytest

from metrics import cache as answer_cache
from metrics import charts
from metrics.api import answer
from tests import kpi_fixtures_explain
from tests.conftest import module_duckdb

AS_OF = date(2026, 11, 23)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def dip(tmp_path_factory):
    return module_duckdb(tmp_path_factory, "aside", kpi_fixtures_explain.load_judged)


def test_an_explained_answer_keeps_the_chart_drawn_meanwhile(dip):
    with answer_cache.bypassed():
        drawn = answer("nps last-quarter", as_of=AS_OF, url=dip, draw=True)
        plain = answer("nps last-quarter", as_of=AS_OF, url=dip)
    assert drawn.explanation is not None and "EMEA" in str(drawn.explanation)
    kept = getattr(drawn, "_drawn", None)
    assert kept is not None and kept.startswith(PNG)
    assert getattr(plain, "_drawn", None) is None  # not asked to draw: nothing drawn
    assert charts.render_png(drawn) == kept == charts.render_png(plain)  # the same picture
    assert charts.render_png(drawn, threshold=40.0) != kept  # another chart is drawn for itself


def test_an_answer_without_an_explanation_draws_when_asked(dip):
    with answer_cache.bypassed():
        unexplained = answer("nps last-quarter", as_of=AS_OF, url=dip, draw=True, explain=False)
    assert unexplained.explanation is None
    assert getattr(unexplained, "_drawn", None) is None
    png = charts.render_png(unexplained)
    assert png is not None and png.startswith(PNG)
