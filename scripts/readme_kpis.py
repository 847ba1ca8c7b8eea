"""Rewrite the KPI reference in README.md from the catalogue (`--check` only compares)."""

from __future__ import annotations

import sys
from pathlib import Path

from metrics.render import catalogue_markdown

START, END = "<!-- kpis:start -->", "<!-- kpis:end -->"
README = Path(__file__).resolve().parent.parent / "README.md"


def generated(text: str) -> str:
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{catalogue_markdown()}\n{END}{tail}"


def main() -> int:
    text = README.read_text()
    new = generated(text)
    if "--check" in sys.argv:
        if new != text:
            print("README.md's KPI reference is out of date: run python scripts/readme_kpis.py")
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
