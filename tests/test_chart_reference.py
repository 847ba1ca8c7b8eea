"""Reference lines on charts (issue 12): 100% net revenue retention and the uptime objective are
drawn, labelled, where the data comes near them; a team KPI declares its own in the model file."""

from __future__ import annotations

from matplotlib.figure import Figure

from metrics import charts
from metrics.catalogue import CATALOGUE
from metrics.model.document import parse
from metrics.model.load import load_model


def _lines(metric, lo: float, hi: float, horizontal: bool = True) -> list[tuple[float, str]]:
    ax = Figure().add_subplot()
    if horizontal:
        ax.set_ylim(lo, hi)
    else:
        ax.set_xlim(lo, hi)
    charts._bands(ax, metric, horizontal)
    out = []
    for line in ax.lines:
        data = line.get_ydata() if horizontal else line.get_xdata()
        out.append((float(data[0]), line.get_label()))
    assert (ax.get_ylim() if horizontal else ax.get_xlim()) == (lo, hi)  # the view is not widened for it
    return out


def test_nrr_and_uptime_charts_draw_their_reference_line_when_in_view():
    assert _lines(CATALOGUE["nrr"], 92, 108) == [(100.0, "100%: as much MRR as at the start")]
    assert _lines(CATALOGUE["nrr"], 92, 108, horizontal=False) == [(100.0, "100%: as much MRR as at the start")]
    assert _lines(CATALOGUE["uptime"], 99.0, 100.0) == [(99.9, "objective 99.9%")]
    assert _lines(CATALOGUE["nrr"], 20, 80) == []  # far below 100%: no line squashing the axis
    assert _lines(CATALOGUE["nps"], -100, 100) == []  # no reference declared


def test_a_team_kpi_declares_its_reference_in_the_model_file():
    doc, errors = parse(
        "version: 1\nmetrics:\n  refunds:\n    type: simple\n    source: orders\n    agg: sum\n"
        "    expr: amount\n    time: ordered_at\n    reference: {value: 500, label: budget}\n"
        "  broken:\n    type: simple\n    source: orders\n    agg: count\n    reference: lots\n",
        "team.yml",
    )
    assert not errors and doc is not None
    model = load_model([("team.yml", doc)])
    assert _lines(model.metrics["refunds"], 0, 1000) == [(500.0, "budget")]
    [error] = model.errors
    assert "broken" not in model.metrics and "reference needs a number" in str(error) and "team.yml:" in str(error)
