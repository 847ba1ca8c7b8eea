"""The demo company kept under another team's names (scripts/team_demo.py): through its model
file kpibot must give the same numbers as on its own tables (money in cents back to the cent),
understand questions as well (filter values read through the model), and change nothing."""

from __future__ import annotations

import importlib.util
import sys
from datetime import date
from pathlib import Path

import duckdb
import pytest

from metrics import model
from metrics.api import ask
from storage import database
from storage.demo import build_demo

ROOT = Path(__file__).resolve().parent.parent
TODAY = date(2026, 11, 23)
SCALE = 0.05


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """(kpibot's own demo database, the team's database, its model file): the same company."""
    folder = tmp_path_factory.mktemp("team")
    url, path = _script("team_demo").build(folder, scale=SCALE, today=TODAY)
    own = f"duckdb:///{folder / 'own.duckdb'}"
    build_demo(database.get_engine(own), scale=SCALE, today=TODAY)
    database.dispose_all()
    return own, url, path


@pytest.fixture
def team(both):
    own, url, path = both
    loaded = model.read(path)
    assert loaded.errors == []
    model.configure(loaded, url)
    yield own, url
    model.configure(None)
    database.dispose_all()


def _relations(url: str) -> list[tuple]:
    database.dispose_all()  # kpibot's engines let go of the file first
    with duckdb.connect(url.removeprefix("duckdb:///"), read_only=True) as con:
        return con.execute("SELECT schema_name, table_name, estimated_size FROM duckdb_tables() ORDER BY 1, 2").fetchall()


QUESTIONS = [
    "nps last quarter", "retail nps last quarter", "churn rate by plan last quarter", "revenue last month",
    "mrr by region last month", "csat for onboarding last quarter", "urgent tickets last month",
    "first response time by channel last month", "leads by source last quarter", "mau last month", "aov last quarter",
]


def test_the_same_answers_through_the_model_file_as_on_kpibots_own_tables(both, team):
    own, url = team
    before = _relations(url)
    mapped = {q: ask(q, as_of=TODAY, url=url) for q in QUESTIONS}
    model.configure(None)
    native = {q: ask(q, as_of=TODAY, url=own) for q in QUESTIONS}
    for q in QUESTIONS:
        a, b = mapped[q], native[q]
        assert a.value is not None, q
        assert a.value == pytest.approx(b.value, abs=0.005), q  # money: cents back to the cent
        assert {g.group: g.value for g in a.breakdown} == pytest.approx({g.group: g.value for g in b.breakdown}), q
    assert dict(mapped["retail nps last quarter"].query.filters) == {"industry": "Retail"}  # read through the model
    assert _relations(url) == before  # nothing created or changed in the team's database


def test_questions_are_understood_as_well_on_the_team_database(team):
    ev = _script("eval_questions")
    from metrics.values import build

    _own, url = team
    values = build(database.get_engine(url))
    dev, _ = ev.score("dev", values)
    baseline, _ = ev.score("dev", ev.demo_values())
    assert dev >= 0.98 and dev == baseline
