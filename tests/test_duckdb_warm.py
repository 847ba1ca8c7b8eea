"""A running bot keeps its DuckDB file open (no reopening per question), and still lets an
import in another process have it: the importer asks (``<file>.release``), the idle bot lets go."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

from metrics.api import ask
from storage import database
from tests import fixtures

AS_OF = date(2026, 11, 23)
REPO = Path(__file__).resolve().parent.parent

IMPORT = textwrap.dedent(
    """
    import sys
    from storage import database
    from storage.importer import import_file
    report = import_file(database.get_engine(sys.argv[1]), "tickets", sys.argv[2])
    print("imported", report.inserted, flush=True)
    """
)


def test_serve_keeps_duckdb_warm_unless_configured(monkeypatch):
    """``kpibot serve`` calls keep_warm(SERVE_LINGER): an idle file stays open 300 s, not 2 s,
    so a question after a pause does not reopen it; KPI_DUCKDB_LINGER still decides."""
    from bot.server import SERVE_LINGER

    monkeypatch.delenv("KPI_DUCKDB_LINGER", raising=False)
    # the process default (an in-process `serve` of another test may have warmed it); restored after
    monkeypatch.setattr(database, "_warm", 2.0)
    assert database.linger_seconds() == 2.0
    database.keep_warm(SERVE_LINGER)
    assert database.linger_seconds() == 300.0
    monkeypatch.setenv("KPI_DUCKDB_LINGER", "5")
    assert database.linger_seconds() == 5.0


def test_an_import_elsewhere_gets_the_file_from_a_warm_bot(tmp_path, monkeypatch):
    monkeypatch.setenv("KPI_DUCKDB_LINGER", "300")  # idle for 300 s before it would let go by itself
    url = f"duckdb:///{tmp_path}/held.duckdb"
    fixtures.load(url)
    database.dispose_all()
    before = ask("tickets 2026-Q3", as_of=AS_OF, url=url).value
    assert before is not None
    csv = tmp_path / "more.csv"
    csv.write_text("ticket_id,customer_id,opened_at,category,priority,channel\n"
                   "t-new,c1,2026-08-20T10:00,bug,normal,email\n")
    env = {"KPI_BUSY_WAIT": "60", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", IMPORT, url, str(csv)], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env=env)
    assert done.stdout.strip() == "imported 1", done.stderr[-2000:]
    assert not Path(f"{tmp_path}/held.duckdb.release").exists()  # the request is withdrawn
    assert ask("tickets 2026-Q3", as_of=AS_OF, url=url).value == before + 1  # and the new data is read
