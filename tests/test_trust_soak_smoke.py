"""The trust soak (``benchmarks/soak.py --trust``) end to end, for a few seconds at a tiny scale.

What is asserted is what the soak counts and must always hold: no money where the policy does
not allow it, every restricted answer audited before it was posted, the flood refused. The
wait figures depend on the machine, so they are read from the report, never asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_trust_soak_counts_no_leak_and_no_unaudited_answer(tmp_path):
    out = tmp_path / "trust.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KPI_", "SLACK_"))}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--trust", "--seconds", "4", "--scale", "0.05",
         "--flood-rate", "4", "--rate", "1", "--attack-rate", "4", "--finance-rate", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env={**env, "TMPDIR": str(tmp_path)},
    )
    assert done.returncode in (0, 1), done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["leaks"] == 0, report["leak_examples"]
    assert report["unaudited_restricted_answers"] == 0, report["unaudited_examples"]
    assert all(report["restricted_answers_posted"].values()), report  # money was answered where allowed
    assert report["ordinary_answered"] == report["sent"]["ordinary"]
    assert report["outcomes"].get("flood: refused (policy)", 0) >= 1
    assert not any(k.endswith("lost") for k in report["outcomes"]), report["outcomes"]
    assert "kpibot trust soak" in done.stdout
