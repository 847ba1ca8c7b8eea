"""What `kpibot` loads at start: `--help` no heavy library at all, a text answer no pandas,
SciPy or matplotlib (they cost seconds of CPU on a busy machine; see benchmarks/startup.py
for the timings). The import set is checked, not the time, so a loaded machine cannot fail it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.slack_helpers import EXPECTED_NPS, QUESTION, load_fixture

ROOT = Path(__file__).resolve().parent.parent
HEAVY = {"pandas", "numpy", "scipy", "matplotlib", "pyarrow", "sqlalchemy", "duckdb", "slack_sdk", "slack_bolt"}

# Runs `kpibot ARGS…` in this interpreter, then prints the top-level packages it loaded.
PROBE = """
import json, sys
from bot.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
sys.stdout.flush()
print("\\nMODULES " + json.dumps(sorted({m.split('.')[0] for m in sys.modules})))
sys.exit(code or 0)
"""


def loaded(tmp_path: Path, *args: str, url: str | None = None) -> tuple[set[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KPI_", "SLACK_", "PYTHON"))}
    env.update(PYTHONPATH=str(ROOT), MPLCONFIGDIR=str(tmp_path / "mpl"),
               KPI_STATE_URL=f"sqlite:///{tmp_path / 'state.sqlite'}")
    if url:
        from storage import database

        database.dispose_all()  # this process lets go of the DuckDB file it loaded
        env.update(KPI_DATABASE_URL=url, KPI_BUSY_WAIT="60")  # and the child waits as long as a loaded machine needs
    done = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out, _, modules = done.stdout.rpartition("\nMODULES ")
    return set(json.loads(modules)), out


@pytest.fixture(scope="module")
def nps_url(tmp_path_factory) -> str:
    url = f"duckdb:///{tmp_path_factory.mktemp('startup') / 'metrics.duckdb'}"
    load_fixture(url)
    return url


def test_help_loads_no_heavy_library(tmp_path):
    modules, out = loaded(tmp_path, "--help")
    assert "ask" in out
    assert not modules & HEAVY, sorted(modules & HEAVY)


def test_a_text_answer_loads_neither_pandas_nor_scipy_nor_matplotlib(tmp_path, nps_url):
    modules, out = loaded(tmp_path, "ask", QUESTION, url=nps_url)
    assert EXPECTED_NPS in out  # it did answer, through the database
    assert "sqlalchemy" in modules and "duckdb" in modules
    assert not modules & {"pandas", "scipy", "matplotlib"}, sorted(modules & HEAVY)


def test_a_chart_does_load_matplotlib(tmp_path, nps_url):
    """The check above can see matplotlib: asking for a chart loads it."""
    modules, out = loaded(tmp_path, "ask", QUESTION, "--chart", str(tmp_path / "nps.png"), url=nps_url)
    assert "matplotlib" in modules and (tmp_path / "nps.png").stat().st_size > 0


def test_a_predicted_clv_loads_scipy_but_not_pandas(tmp_path, nps_url):
    """The fits work on NumPy columns: pandas, and the pyarrow it loads, stay out of the
    server (~60-110 MB measured at 100k customers). SciPy loading shows the fit path ran."""
    modules, out = loaded(tmp_path, "ask", "predicted clv last quarter", url=nps_url)
    assert "Predicted" in out or "CLV" in out, out[-500:]
    assert "scipy" in modules
    assert not modules & {"pandas", "pyarrow"}, sorted(modules & HEAVY)
