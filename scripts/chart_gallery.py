"""Render every kind of chart kpibot draws, on the demo company, into a folder (default
docs/charts/) with an index, so a reviewer can look at them; prints render times.

    .venv/bin/python scripts/chart_gallery.py [--out docs/charts] [--scale 0.3]

Deterministic: the demo company with seed 7 "as of" 2026-11-15 in a temporary DuckDB file.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

TODAY = date(2026, 11, 15)
QUESTIONS = [  # (file name, question, what it shows)
    ("compare-survey", "nps last-quarter", "this period vs the last, survey KPI: n, ±margin of error"),
    ("compare-small-sample", "nps for enterprise last-month", "a small sample: hatched, said in the label"),
    ("compare-currency", "revenue last-quarter", "money on the axis as $4.4M, not 1e6"),
    ("trend-partial", "signups this-quarter weekly", "a trend whose last week is partial: drawn hollow"),
    ("trend-score", "ces last-6-months monthly", "a score trend on an axis as wide as its noise"),
    ("bars-segments", "nps by acquisition_channel last-quarter", "segments with human names, n per bar"),
    ("bars-diverging", "profit by industry last-quarter", "profit and loss: losses left of zero, in red"),
    ("bars-previous", "churn_rate by plan last-quarter", "current bars with the previous period's tick"),
]
REPORTS = [
    ("report-before-churn", "before churn last-quarter", "a cross-silo report: one panel per unit"),
    ("report-profitability", "profitability last-quarter", "profit per customer: losses left of zero"),
    ("report-complaints", "complaints last-quarter", "tickets and their NPS effect, diverging"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/charts")
    parser.add_argument("--scale", type=float, default=0.3)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from bot.schedules import digests
    from bot.schedules.parse import parse_digest
    from metrics import api, charts, reports
    from metrics.result import Result
    from storage import database
    from storage.demo import build_demo

    with tempfile.TemporaryDirectory() as tmp:
        url = f"duckdb:///{tmp}/demo.duckdb"
        build_demo(database.get_engine(url), seed=7, scale=args.scale, today=TODAY)
        index = ["# Chart gallery", "", "Every chart kind kpibot draws, on the demo company (seed 7, as of "
                 f"{TODAY.isoformat()}), made by `scripts/chart_gallery.py`.", ""]
        timings: list[float] = []
        for name, question, what in QUESTIONS + REPORTS:
            try:
                answer = api.answer(question, as_of=TODAY, url=url)
            except Exception as exc:  # noqa: BLE001 - a gallery shows what it can
                print(f"{name}: {question!r} not answered: {exc}")
                continue
            started = time.perf_counter()
            png = charts.render_png(answer) if isinstance(answer, Result) else reports.render_png(answer)
            timings.append(time.perf_counter() - started)
            print(f"{name}: {timings[-1] * 1000:.0f} ms")
            if png is None:
                print(f"{name}: no chart")
                continue
            (out / f"{name}.png").write_bytes(png)
            index += [f"## {name}: `{question}`", "", what + ".", "", f"![{question}]({name}.png)", ""]
        spec = parse_digest("weekly mon 09:00 UTC nps csat revenue churn_rate signups first_response_time".split(),
                            default_tz="UTC")
        started = time.perf_counter()
        content = digests.build(1, spec, datetime(2026, 11, 16, 9, tzinfo=UTC), metrics_url=url)
        if content.chart:
            (out / "digest-sparklines.png").write_bytes(content.chart)
            index += ["## digest-sparklines: a weekly digest", "",
                      "A sparkline per KPI over its last 10 weeks (queries and drawing: "
                      f"{(time.perf_counter() - started) * 1000:.0f} ms).", "",
                      "![digest sparklines](digest-sparklines.png)", ""]
        timings.sort()
        if timings:
            p95 = timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))]
            line = f"Rendering (drawing only): max {timings[-1] * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms over {len(timings)} charts."
            print(line)
            index += [line, ""]
        (out / "README.md").write_text("\n".join(index))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
