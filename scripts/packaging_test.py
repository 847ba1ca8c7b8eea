"""The packaging test CI runs (`.ci/run`): kpibot as a user installs it, not as we develop it.

1. Copy the files a wheel is built from (pyproject.toml, README.md, bot/, metrics/,
   storage/) into a temporary folder and build the wheel there (`pip wheel --no-deps`), so
   the checkout is left untouched and nothing outside that list can sneak in.
2. Check the wheel holds every package of the source tree (``metrics.kpis``,
   ``bot.schedules``, ...) and no tests.
3. Install it into a fresh virtualenv in the temporary folder (pip's cache and configured
   index are used as usual, so it works offline once the cache is warm).
4. From another temporary folder, with ``KPI_DATABASE_URL``/``KPI_STATE_URL`` pointing into
   it: ``kpibot --help``, ``kpibot demo``, ``kpibot ask "nps last quarter"``. Any failure
   fails the script.

    python3 scripts/packaging_test.py [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "bot", "metrics", "storage")
PACKAGES = ("bot", "metrics", "storage")


def source_packages(root: Path = ROOT) -> set[str]:
    """Dotted names of every package (a folder with ``__init__.py``) under the top packages."""
    found = set()
    for top in PACKAGES:
        for init in (root / top).rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                found.add(".".join(init.parent.relative_to(root).parts))
    return found


def wheel_packages(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return {".".join(Path(name).parent.parts) for name in zf.namelist() if name.endswith("/__init__.py")}


def build_wheel(dest: Path, python: str = sys.executable) -> Path:
    """Build kpibot's wheel from a clean copy of its sources into ``dest``; return its path."""
    src = dest / "src"
    src.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    out = dest / "wheels"
    run([python, "-m", "pip", "wheel", "--no-deps", "-q", "--wheel-dir", str(out), str(src)], cwd=dest)
    [wheel] = out.glob("kpibot-*.whl")
    return wheel


def run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    shown = " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))
    print(f"  {shown}  ({time.monotonic() - started:.1f}s, exit {done.returncode})", flush=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-5000:])
        raise SystemExit(f"packaging test FAILED at: {shown}")
    return done.stdout


def clean_env(work: Path) -> dict[str, str]:
    """The caller's environment without kpibot's or Python's own settings, state in ``work``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KPI_", "SLACK_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(
        KPI_DATABASE_URL=f"duckdb:///{work / 'kpibot.duckdb'}",
        KPI_STATE_URL=f"sqlite:///{work / 'state.sqlite'}",
        MPLCONFIGDIR=str(work / "mpl"),
        HOME=str(work),  # kpibot reads and writes nothing in the user's home
    )
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="kpibot-packaging-"))
    try:
        print(f"packaging test in {tmp}", flush=True)
        wheel = build_wheel(tmp)
        missing = source_packages() - wheel_packages(wheel)
        extra = {p for p in wheel_packages(wheel) if p.split(".")[0] not in PACKAGES}
        if missing or extra:
            raise SystemExit(f"packaging test FAILED: the wheel lacks {sorted(missing)}, has extra {sorted(extra)}")
        print(f"  {wheel.name}: {len(wheel_packages(wheel))} packages, all of the source tree", flush=True)

        venv = tmp / "venv"
        run([sys.executable, "-m", "venv", str(venv)], cwd=tmp)
        py = venv / "bin" / "python"
        work = tmp / "elsewhere"
        work.mkdir()
        env = clean_env(work)
        # pip keeps the user's configuration and cache (index, find-links): offline once warm
        pip_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        run([str(py), "-m", "pip", "install", "-q", "--no-compile", str(wheel)], cwd=work, env=pip_env)
        kpibot = str(venv / "bin" / "kpibot")
        out = run([kpibot, "--help"], cwd=work, env=env)
        assert "ask" in out and "serve" in out, out
        where = run([str(py), "-c", "import bot, metrics.kpis, bot.schedules; print(bot.__file__)"], cwd=work, env=env)
        if not where.strip().startswith(str(venv)):
            raise SystemExit(f"packaging test FAILED: kpibot was imported from {where.strip()}, not the venv")
        run([kpibot, "demo", "--scale", "0.3"], cwd=work, env=env)
        out = run([kpibot, "ask", "nps last quarter"], cwd=work, env=env)
        if "NPS" not in out and "Net Promoter" not in out:
            raise SystemExit(f"packaging test FAILED: unexpected answer:\n{out}")
        if (work / "data").exists():
            raise SystemExit("packaging test FAILED: kpibot wrote ./data despite KPI_DATABASE_URL")
        print(f"packaging test passed in {time.monotonic() - started:.0f}s", flush=True)
        return 0
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
