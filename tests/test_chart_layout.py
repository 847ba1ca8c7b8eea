"""Charts are laid out without matplotlib's constrained layout (it laid every text out twice
and was most of a chart's time): these tests draw each kind of chart with its longest texts
and check that nothing leaves the figure and that the legend and tick labels never sit on
the plot."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from metrics import charts
from metrics.api import ask
from metrics.result import Group
from tests import fixtures
from tests.conftest import module_duckdb

AS_OF = date(2026, 11, 23)
LONG = "Financial Services & Insurance, EMEA"  # cut to 28 characters on the axis


@pytest.fixture(scope="module")
def company(tmp_path_factory):
    return module_duckdb(tmp_path_factory, "layout", fixtures.load)


def _boxes(fig):
    """Every visible text's and legend's box in pixels, after a real draw, and the axes' box."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    [ax] = fig.axes
    ticks = [label for axis in (ax.xaxis, ax.yaxis)
             for loc, label in zip(axis.get_majorticklocs(), axis.get_majorticklabels(), strict=True)
             if min(axis.get_view_interval()) <= loc <= max(axis.get_view_interval())]  # the drawn ones
    texts = [t for t in (*ticks, ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts)
             if t.get_visible() and t.get_text()]
    legends = [lg.get_window_extent(renderer) for lg in fig.legends]
    return [t.get_window_extent(renderer) for t in texts], legends, ax.get_window_extent(renderer), fig.bbox


def _inside(box, outer) -> bool:
    return box.x0 >= outer.x0 - 0.5 and box.y0 >= outer.y0 - 0.5 and box.x1 <= outer.x1 + 0.5 and box.y1 <= outer.y1 + 0.5


def _check(fig) -> None:
    texts, legends, axes, figure = _boxes(fig)
    assert texts
    for box in texts + legends:
        assert _inside(box, figure), (box, figure)
    for box in legends:  # below the plot, never on it
        assert box.y1 <= axes.y0, (box, axes)


def test_bars_with_the_longest_segment_names_and_a_legend_fit(company):
    r = ask("nps by industry last-quarter", as_of=AS_OF, url=company)
    assert r.breakdown
    long = [dataclasses.replace(g, group=f"{LONG} {i}") for i, g in enumerate(r.breakdown)]
    fig = charts.draw(dataclasses.replace(r, breakdown=long + [Group("x", 5.0, n=2, previous=9.0)]), threshold=12.0)
    assert fig is not None
    _check(fig)
    [ax] = fig.axes
    assert max(len(t.get_text()) for t in ax.get_yticklabels()) == 28
    assert len(fig.legends[0].get_texts()) >= 3  # this period, the previous one, the threshold


def test_a_trend_with_dates_legend_and_threshold_fits(company):
    r = ask("nps monthly last-12-months", as_of=AS_OF, url=company)
    assert r.series
    fig = charts.draw(r, threshold=10.0)
    assert fig is not None
    _check(fig)
    [ax] = fig.axes
    figure = fig.bbox
    offset = ax.xaxis.get_offset_text()  # the year under the dates
    assert offset.get_text() == "2026"
    assert _inside(offset.get_window_extent(fig.canvas.get_renderer()), figure)


def test_two_periods_side_by_side_fit_with_money_ticks(company):
    r = ask("mrr last-quarter", as_of=AS_OF, url=company)
    assert r.value is not None
    fig = charts.draw(dataclasses.replace(r, value=1_234_567.89), threshold=1_000_000.0)
    assert fig is not None
    _check(fig)


def test_losses_are_labelled_left_of_their_bars_without_leaving_the_figure(company):
    r = ask("mrr by industry last-quarter", as_of=AS_OF, url=company)
    assert r.breakdown
    signs = [-1 if i % 2 else 1 for i in range(len(r.breakdown))]
    groups = [dataclasses.replace(g, group=f"{LONG} {i}", value=s * 987_654.32, previous=None)
              for i, (g, s) in enumerate(zip(r.breakdown, signs, strict=True))]
    fig = charts.draw(dataclasses.replace(r, breakdown=groups))
    assert fig is not None
    _check(fig)
    [ax] = fig.axes
    renderer = fig.canvas.get_renderer()
    plot = ax.get_window_extent(renderer)
    for label in ax.texts:  # a loss's label stays inside the plot, right of the segment names
        if label.get_text().startswith("−"):
            assert label.get_window_extent(renderer).x0 >= plot.x0 - 0.5
