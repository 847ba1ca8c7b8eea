"""The wheel holds every package of the source tree (a listed-by-hand `packages = [...]`
left out metrics.kpis and bot.schedules, so an installed kpibot could not start).

The full check (install into a clean virtualenv, run `kpibot --help`, `demo`, `ask` from
another folder) is scripts/packaging_test.py, which CI runs from .ci/run.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("packaging_test", ROOT / "scripts" / "packaging_test.py")
assert spec is not None and spec.loader is not None
packaging_test = importlib.util.module_from_spec(spec)
spec.loader.exec_module(packaging_test)


def test_the_wheel_has_every_sub_package_and_no_tests(tmp_path):
    wheel = packaging_test.build_wheel(tmp_path, python=sys.executable)
    in_wheel = packaging_test.wheel_packages(wheel)
    # the sub-packages the issue found missing, named by hand, and whatever else the tree has
    assert {"bot", "bot.schedules", "metrics", "metrics.kpis", "storage"} <= in_wheel
    assert packaging_test.source_packages() <= in_wheel
    assert not {p for p in in_wheel if p.split(".")[0] in ("tests", "benchmarks", "scripts")}


def test_the_packaging_script_leaves_the_checkout_alone(tmp_path):
    before = {p.name for p in ROOT.iterdir()}
    packaging_test.build_wheel(tmp_path, python=sys.executable)
    new = {p.name for p in ROOT.iterdir()} - before
    assert not {n for n in new if n in ("build", "dist") or n.endswith(".egg-info")}, new
