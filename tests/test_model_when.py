"""A derived metric's ``when``: no value where the comparison does not hold (CAC payback while
the monthly margin is not positive), and a bad ``when`` is a load error with file and line."""

from __future__ import annotations

from metrics.model.document import parse
from metrics.model.load import load_model
from metrics.spec import Derived

MODEL = """
version: 1
metrics:
  payback:
    type: derived
    expr: cac / (arpa * gross_margin / 100)
    when: arpa * gross_margin / 100 > 0
    unit: months
  payback_cmp:
    type: derived
    expr: cac / arpa
    when: "arpa >= cac and arpa > 0"
  payback_ghost:
    type: derived
    expr: cac / arpa
    when: arpx > 0
  payback_text:
    type: derived
    expr: cac / arpa
    when: 3
"""


def test_when_leaves_no_value_where_the_condition_fails_and_bad_ones_name_their_line():
    doc, errors = parse(MODEL, "team.yml")
    assert errors == [] and doc is not None
    loaded = load_model([("team.yml", doc)])
    found = sorted(str(e) for e in loaded.errors)
    assert found[0].startswith("team.yml:12: metric `payback_cmp`: when: one comparison")
    assert found[1].startswith("team.yml:16: metric `payback_ghost`: unknown metric `arpx`")
    assert found[2].startswith("team.yml:20: metric `payback_text`: when: one comparison")
    assert len(found) == 3
    measure = loaded.metrics["payback"].measure
    assert isinstance(measure, Derived) and measure.inputs == ("cac", "arpa", "gross_margin")
    # CAC 600, ARPA 100 at 40% margin: 40 a month, so 600 / 40 = 15 months
    assert measure.combine({"cac": 600.0, "arpa": 100.0, "gross_margin": 40.0}) == 15.0
    # a negative or zero monthly margin never pays back: no value, not a negative number of months
    assert measure.combine({"cac": 600.0, "arpa": 100.0, "gross_margin": -40.0}) is None
    assert measure.combine({"cac": 600.0, "arpa": 100.0, "gross_margin": 0.0}) is None
    assert measure.combine({"cac": 600.0, "arpa": None, "gross_margin": 40.0}) is None
