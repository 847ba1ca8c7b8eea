"""While another process writes the DuckDB file, questions get a clear line, then answers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import date

import pytest

from metrics.api import ask
from storage import database
from tests import fixtures

HOLDER = textwrap.dedent(
    """
    import sys, duckdb
    con = duckdb.connect(sys.argv[1])          # takes the file's write lock, like an import
    print("locked", flush=True)
    sys.stdin.readline()                       # hold it until the test says so
    con.close()
    print("released", flush=True)
    """
)


def test_question_during_import_gets_busy_message_then_answers(tmp_path, monkeypatch):
    monkeypatch.setenv("KPI_BUSY_WAIT", "0.5")
    url = f"duckdb:///{tmp_path}/m.duckdb"
    fixtures.load(url)
    database.dispose_all()  # release our own hold on the file
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, f"{tmp_path}/m.duckdb"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(database.DataBusy, match="data is being refreshed"):
            ask("nps 2026-Q3", as_of=date(2026, 11, 23), url=url)
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
    finally:
        holder.wait(timeout=10)
    assert ask("nps 2026-Q3", as_of=date(2026, 11, 23), url=url).value == pytest.approx(20.0)


def test_idle_bot_releases_the_file_for_an_import(tmp_path, monkeypatch):
    monkeypatch.setenv("KPI_DUCKDB_LINGER", "0.2")
    url = f"duckdb:///{tmp_path}/m2.duckdb"
    fixtures.load(url)
    assert ask("nps 2026-Q3", as_of=date(2026, 11, 23), url=url).value == pytest.approx(20.0)
    # another process can open the file for writing once the bot has been idle for the linger time
    # (polled until a deadline that only bounds a failure)
    script = ("import sys, duckdb, time\ndeadline = time.monotonic() + 60\nwhile time.monotonic() < deadline:\n"
              "    try:\n        duckdb.connect(sys.argv[1]).close(); print('ok'); break\n"
              "    except Exception:\n        time.sleep(0.05)\n")
    done = subprocess.run([sys.executable, "-c", script, f"{tmp_path}/m2.duckdb"], capture_output=True, text=True, timeout=90)
    assert done.stdout.strip() == "ok"
