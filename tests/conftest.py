"""Shared fixtures: one fresh metrics database per test, on DuckDB, SQLite and PostgreSQL.

PostgreSQL is the server at ``KPI_TEST_POSTGRES`` (default 127.0.0.1:5432, user postgres,
database test). Each test process (each xdist worker) creates its own database there and
drops it at the end; where no server answers, the PostgreSQL cases are skipped with the
reason printed.

Hermetic by construction (see :func:`pytest_configure`): every ``KPI_*``/``SLACK_*`` setting
of the caller's shell is removed, the defaults point into a temporary directory of this test
process, and the tests run with that directory as the working directory, so nothing can
reach ``./data`` or a real workspace. Two guards keep it so: a test that leaves
``os.environ`` (or the working directory) changed fails in its teardown, and a run that
creates or modifies a file in the repository fails at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from storage import database

REPO = Path(__file__).resolve().parent.parent
# settings of the test suite itself, kept from the caller's environment
TEST_SETTINGS = ("KPI_TEST_POSTGRES", "KPI_UPDATE_SNAPSHOTS")
PG_ADMIN_URL = os.environ.get(
    "KPI_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
_pg_reason: str | None = None
_pg_db: str | None = None
_home: dict[str, str] = {}  # this process's temporary directory and the directory it was started in


# ---- a hermetic process ---------------------------------------------------------------------


def hermetic_env(root: Path) -> dict[str, str]:
    """The settings every test starts from: each path kpibot reads or writes is under ``root``."""
    return {
        "KPI_DATABASE_URL": f"duckdb:///{root / 'data' / 'kpibot.duckdb'}",
        "KPI_STATE_URL": f"sqlite:///{root / 'data' / 'state.sqlite'}",
        "MPLCONFIGDIR": str(root / "matplotlib"),  # matplotlib's font cache, not the user's
    }


def pytest_configure(config):
    root = Path(tempfile.mkdtemp(prefix="kpibot-tests-"))
    _home.update(root=str(root), cwd=os.getcwd())
    for name in list(os.environ):
        if name.startswith(("KPI_", "SLACK_")) and name not in TEST_SETTINGS:
            del os.environ[name]
    os.environ.update(hermetic_env(root))
    if not _xdist_controller(config):  # (the controller runs no test; its workers start where it is)
        os.chdir(root)  # relative defaults (./data/...) land here, never in the checkout
    from hypothesis import settings

    settings.register_profile("kpibot", database=None)  # no .hypothesis/ folder in the checkout
    settings.load_profile("kpibot")
    if not hasattr(config, "workerinput"):  # the controlling process watches the checkout
        config.stash[_REPO_KEY] = _snapshot(REPO)


def _xdist_controller(config) -> bool:
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", None))


def pytest_unconfigure(config):
    if _home:
        os.chdir(_home["cwd"])
        shutil.rmtree(_home["root"], ignore_errors=True)


# ---- guards ---------------------------------------------------------------------------------

_ENV_KEY = pytest.StashKey[tuple[dict[str, str], str]]()
_REPO_KEY = pytest.StashKey[dict[str, tuple[int, int]]]()
# written by Python and pytest themselves, or by the virtualenv: not by the tests
_UNWATCHED = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"}


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    out: dict[str, tuple[int, int]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _UNWATCHED and not d.endswith(".egg-info")]
        for name in files:
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            out[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns)
    return out


def repo_changes(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    return sorted(
        [f"new: {p}" for p in after.keys() - before.keys()]
        + [f"modified: {p}" for p in after.keys() & before.keys() if after[p] != before[p]]
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    # before any fixture of this test, including module-scoped ones it is the first to use
    item.stash[_ENV_KEY] = (dict(os.environ), os.getcwd())
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield
    before, cwd = item.stash.get(_ENV_KEY, (None, None))
    if before is None:
        return result
    after = dict(os.environ)
    changed = sorted(k for k in before.keys() | after.keys()
                     if before.get(k) != after.get(k) and k != "PYTEST_CURRENT_TEST")  # pytest's own
    if changed:
        for name in changed:
            if name in before:
                os.environ[name] = before[name]
            else:
                del os.environ[name]  # one leak fails one test, not every test after it
        raise AssertionError(
            f"the test left os.environ changed: {changed} (use the function-scoped monkeypatch; "
            "a module-scoped fixture must not hold environment changes between tests)"
        )
    if os.getcwd() != cwd:
        os.chdir(cwd)
        raise AssertionError(f"the test left the working directory changed: {os.getcwd()}")
    return result


def pytest_sessionfinish(session, exitstatus):
    _drop_postgres()
    before = session.config.stash.get(_REPO_KEY, None)
    if before is None:
        return
    changes = repo_changes(before, _snapshot(REPO))
    if changes:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "the tests wrote into the repository (tests must use temporary directories):\n  " + "\n  ".join(
            changes[:50])
        if reporter is not None:
            reporter.write_line(message, red=True, bold=True)
        else:
            print(message)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ---- databases ------------------------------------------------------------------------------


def _create_postgres(prefix: str) -> str:
    """A new database on the local server; skips the test where no server answers."""
    global _pg_reason
    if _pg_reason:
        pytest.skip(_pg_reason)
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means "no server here"
        _pg_reason = f"PostgreSQL not available at {PG_ADMIN_URL}: {str(exc).splitlines()[0]}"
        print(_pg_reason)
        pytest.skip(_pg_reason)
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def _drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _postgres_database() -> str:
    """A database of this process's own on the local server, created once, shared by its tests
    (each :func:`fresh_url` empties it)."""
    global _pg_db
    if not _pg_db:
        _pg_db = _create_postgres("kpibot_test")
    return _pg_db


@contextmanager
def postgres_database(prefix: str = "kpibot_own") -> Iterator[str]:
    """A database for one module-scoped fixture alone (the shared one is emptied by other tests)."""
    url = _create_postgres(prefix)
    try:
        yield url
    finally:
        engine = database._engines.pop((url, True), None)  # noqa: SLF001 - this URL is never used again
        if engine is not None:
            engine.dispose()
        database._created.discard(url)  # noqa: SLF001
        _drop_database(url)


def _drop_postgres() -> None:
    if not _pg_db:
        return
    database.dispose_all()
    _drop_database(_pg_db)


BACKENDS = ["duckdb", "sqlite", "postgresql"]


def fresh_url(backend: str, tmp_path, *, postgres: str | None = None) -> str:
    """An empty metrics database on ``backend``: files under ``tmp_path``; for PostgreSQL the
    database ``postgres`` (default: this process's shared one), emptied."""
    if backend == "duckdb":
        return f"duckdb:///{tmp_path}/metrics.duckdb"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/metrics.sqlite"
    url = postgres or _postgres_database()
    engine = database.get_engine(url)
    from storage.schema import metadata

    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    database.data_changed(engine)  # caches of the data (the parser's value index) start over
    return url


def module_duckdb(tmp_path_factory, name: str, load: Callable[[str], None]) -> str:
    """A DuckDB metrics file of one test module's own, filled by ``load(url)`` once."""
    url = fresh_url("duckdb", tmp_path_factory.mktemp(name))
    load(url)
    return url


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> str:
    """A URL to an empty metrics database with the tables created, on each backend."""
    url = fresh_url(request.param, tmp_path)
    database.get_engine(url)
    return url


@pytest.fixture
def duck_url(tmp_path) -> str:
    """DuckDB only, for tests where the backend does not matter."""
    return fresh_url("duckdb", tmp_path)


@pytest.fixture
def company(db_url):
    """The hand-computed company of tests/kpi_fixtures.py, on each backend (modules may override)."""
    from tests import kpi_fixtures

    kpi_fixtures.load(db_url)
    return db_url
