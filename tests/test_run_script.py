"""scripts/run installs only when pyproject.toml changed, and says what it is doing first.

It runs in a temporary copy with stand-ins for .venv/bin/python and .venv/bin/kpibot that
record how they were called (pip's install creates the kpibot stand-in, as a real install
would), so nothing is installed and the real .venv is never touched.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PYTHON_STUB = """#!/bin/sh
echo "python $*" >> "$(dirname "$0")/../../calls.log"
if [ "$1 $2 $3" = "-m pip install" ]; then
  cat > "$(dirname "$0")/kpibot" <<'STUB'
#!/bin/sh
echo "kpibot $*" >> "$(dirname "$0")/../../calls.log"
STUB
  chmod +x "$(dirname "$0")/kpibot"
fi
"""


def _checkout(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "run", repo / "scripts" / "run")
    shutil.copy2(ROOT / "pyproject.toml", repo / "pyproject.toml")
    bin_dir = repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(PYTHON_STUB)
    (bin_dir / "python").chmod(0o755 | stat.S_IXUSR)
    return repo


def _run(repo: Path, **extra: str) -> tuple[str, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "KPI_", "PYTHON"))}
    env.update(extra)
    done = subprocess.run([str(repo / "scripts" / "run")], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return done.stderr, (repo / "calls.log").read_text().splitlines()


def _installs(calls: list[str]) -> int:
    return sum(1 for c in calls if c.startswith("python -m pip install"))


def test_first_run_installs_and_says_so_then_never_again_until_pyproject_changes(tmp_path):
    repo = _checkout(tmp_path)

    err, calls = _run(repo)
    assert "installing dependencies… (first run, a few minutes)" in err
    assert "building the demo company…" in err
    assert _installs(calls) == 1
    assert calls[-2:] == ["kpibot demo --if-empty", "kpibot chat"]

    err, calls = _run(repo)
    assert "installing" not in err and "updating" not in err
    assert _installs(calls) == 1  # the second start installs nothing
    assert calls[-1] == "kpibot chat"

    with (repo / "pyproject.toml").open("a") as f:
        f.write("\n# a new dependency would go here\n")
    err, calls = _run(repo)
    assert "pyproject.toml changed" in err
    assert _installs(calls) == 2


def test_a_database_of_your_own_never_gets_the_demo(tmp_path):
    repo = _checkout(tmp_path)
    err, calls = _run(repo, KPI_DATABASE_URL="postgresql+psycopg://someone@db.example/warehouse")
    assert not [c for c in calls if c.startswith("kpibot demo")]
    assert "building the demo company" not in err
    assert calls[-1] == "kpibot chat"
