"""The suite's own guards (tests/conftest.py), run on a small suite of probes in a subprocess.

The probes sit in a throw-away checkout with a copy of the conftest: the caller's shell has
kpibot settings that must not reach a test, one probe leaks an environment variable, one
module-scoped fixture holds one between tests, and one writes into the checkout's ./data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).resolve().parent / "conftest.py"

PROBES = '''
import os
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parent.parent


def test_settings_of_the_shell_are_gone_and_defaults_are_temporary():
    from storage import database, state

    assert "SLACK_BOT_TOKEN" not in os.environ and "KPI_POLICY" not in os.environ
    assert os.environ["KPI_TEST_POSTGRES"] == "postgresql+psycopg://nobody@127.0.0.1:9/none"  # the suite's own
    here = os.getcwd()
    assert not here.startswith(str(CHECKOUT)) and "kpibot-tests-" in here
    for url in (database.database_url(), state.state_url()):
        assert here in url and "real" not in url, url


def test_hypothesis_keeps_no_example_database():
    from hypothesis import settings

    assert settings.default.database is None


def test_leaks_an_environment_variable():
    os.environ["KPI_LEAKED"] = "1"


def test_monkeypatch_is_the_way(monkeypatch):
    monkeypatch.setenv("KPI_TIMEZONE", "Europe/Lisbon")
    monkeypatch.chdir(CHECKOUT)


@pytest.fixture(scope="module")
def held():
    mp = pytest.MonkeyPatch()
    mp.setenv("KPI_USER_BURST", "1000")
    yield
    mp.undo()


def test_module_fixture_holding_the_environment(held):
    pass


def test_changes_directory():
    os.chdir(CHECKOUT)


def test_writes_into_the_checkout():
    (CHECKOUT / "data").mkdir()
    (CHECKOUT / "data" / "state.sqlite").write_bytes(b"")
'''


def test_the_guards_catch_leaks_and_writes_into_the_checkout(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "tests").mkdir(parents=True)
    shutil.copy(CONFTEST, checkout / "tests" / "conftest.py")
    (checkout / "tests" / "__init__.py").write_text("")
    (checkout / "tests" / "test_probes.py").write_text(PROBES)
    shell = {**os.environ, "KPI_DATABASE_URL": "duckdb:///data/real.duckdb", "KPI_STATE_URL": "sqlite:///real.sqlite",
             "KPI_POLICY": "/etc/real-policy.toml", "SLACK_BOT_TOKEN": "xoxb-real",
             "KPI_TEST_POSTGRES": "postgresql+psycopg://nobody@127.0.0.1:9/none"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider", "-q", "-rA", "tests"],
        cwd=checkout, env=shell, capture_output=True, text=True, timeout=300,
    )
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    errors = {line.split("::")[1].split()[0] for line in out.splitlines() if line.startswith("ERROR ")}
    assert "7 passed, 3 errors" in out and "FAILED" not in out, out  # errors: in the guarded teardowns
    assert errors == {"test_leaks_an_environment_variable", "test_module_fixture_holding_the_environment",
                      "test_changes_directory"}, out
    assert "the test left os.environ changed: ['KPI_LEAKED']" in out
    assert "the test left os.environ changed: ['KPI_USER_BURST']" in out
    assert "the test left the working directory changed" in out
    assert "the tests wrote into the repository" in out and "new: data/state.sqlite" in out
    assert not (checkout / "real.sqlite").exists() and not (checkout / "data" / "real.duckdb").exists()
