"""The README's own examples work as written for a first user (default policy)."""

from __future__ import annotations

import re
from pathlib import Path

from bot.policy import DEFAULT, Place
from metrics.access import for_metric
from metrics.catalogue import resolve

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_the_digest_example_is_allowed_by_the_default_policy():
    line = next(ln for ln in README.splitlines() if ln.startswith("/kpi digest add "))
    words = line.split("#")[0].split()[3:]  # after "/kpi digest add"
    kpis = [w for w in words if not re.fullmatch(r"daily|weekly|monthly|mon|tue|wed|thu|fri|sat|sun|\d\d:\d\d", w)]
    assert kpis, line
    for word in kpis:
        metric = resolve(word)  # raises on an unknown KPI
        assert DEFAULT.allows(for_metric(metric.id), Place("C0GENERAL")), word
