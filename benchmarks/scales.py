"""The README's table across scales, from ``benchmarks/run.py --json`` outputs (one per scale).

    .venv/bin/python benchmarks/scales.py 1M=out-1m.json 3M=out-3m.json 10M=out-10m.json

Per case present in every file: the answer a person gets (explained, charted) cold p50/p95,
from the rollup where one serves it, cached p50, and the growth of the p50 from the first
scale to the last; then one line per scale for the run-wide figures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _cell(row: dict, key: str) -> str:
    p50, p95 = row.get(f"{key}_p50"), row.get(f"{key}_p95")
    return "–" if p50 is None else f"{p50:.0f} / {p95:.0f}"


def table(runs: list[tuple[str, dict]]) -> str:
    rows = [{(r["kpi"], r["case"]): r for r in run["rows"] if "error" not in r} for _, run in runs]
    cases = [c for c in rows[0] if all(c in r for r in rows[1:])]
    names = [name for name, _ in runs]
    head = ["case"] + [f"{n} answer" for n in names] + [f"{n} rollup" for n in names] + [f"{n} cached p50" for n in names]
    head += [f"growth {names[0]}→{names[-1]} (answer; rollup)"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case in cases:
        per = [r[case] for r in rows]
        growth = per[-1]["kpibot_p50"] / per[0]["kpibot_p50"] if per[0]["kpibot_p50"] else float("nan")
        text = f"{growth:.1f}x"
        if all("rollup_p50" in r for r in per):
            text += f"; {per[-1]['rollup_p50'] / per[0]['rollup_p50']:.1f}x"
        cells = ([f"`{case[0]}` {case[1]}"] + [_cell(r, "kpibot") for r in per] + [_cell(r, "rollup") for r in per]
                 + [f"{r['cached_p50']:.1f}" for r in per] + [text])
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append("| scale | cases over 250 ms p95 (cold; best of cold and rollup) | end to end cold p50 / p95 | "
               "end to end cached p50 / p95 | peak RSS | rollup build; incremental refresh | burst |")
    out.append("|---|---|---|---|---|---|---|")
    for name, run in runs:
        s = run["summary"]
        e2e = run.get("e2e") or {}
        cold, hot = e2e.get("cold"), e2e.get("cached")
        build = run.get("rollup_build") or {}
        load = run.get("load")
        burst = (f"{load['answered']}/{load['n']} answered in {load['all_answered_s']:.0f} s, ack p99 {load['ack_p99']:.0f} ms"
                 if load else "–")
        out.append(
            f"| {name} | {s.get('over_target', '–')} of {s.get('cases', '–')}; "
            f"{s.get('over_target_with_rollups', '–')} | "
            + (f"{cold['p50'] * 1000:.0f} / {cold['p95'] * 1000:.0f} ms" if cold else "–") + " | "
            + (f"{hot['p50'] * 1000:.0f} / {hot['p95'] * 1000:.0f} ms" if hot else "–") + " | "
            f"{run['peak_mb']:.0f} MB | "
            + (f"{build['build_s']:.0f} s; {build['incremental_s']:.1f} s" if build else "–") + f" | {burst} |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    runs = []
    for arg in argv:
        name, _, path = arg.partition("=")
        runs.append((name, json.loads(Path(path).read_text())))
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
