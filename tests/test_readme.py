"""The README stays true: its KPI reference is the catalogue's, and its commands exist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from metrics.catalogue import CATALOGUE

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_kpi_reference_is_generated_from_the_catalogue():
    done = subprocess.run([sys.executable, "scripts/readme_kpis.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_every_kpi_and_formula_is_documented():
    for metric in CATALOGUE.values():
        assert f"`{metric.id}`" in README
        assert metric.formula in README


def test_ci_runs_the_readme_test_command():
    assert "./scripts/test" in README
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text()
