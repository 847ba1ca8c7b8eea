"""Full garbage collections at quiet moments (metrics/pauses.py), checked in a process of its
own: installing changes the process's collector, which the test process must keep as it is."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import gc
    from metrics import pauses

    full = []
    gc.callbacks.append(lambda phase, info: full.append(info["generation"]) if phase == "stop" else None)

    class Node:
        pass

    def churn(until):
        # reference cycles, so that partial collections run and count towards a full one
        while gc.get_count()[2] < until:
            for _ in range(1000):
                node = Node()
                node.me = node

    before = gc.get_threshold()
    assert pauses.tidy() is False, "not installed: nothing to do"
    assert gc.get_threshold() == before
    pauses.install()
    due = before[2]
    assert gc.get_threshold() == (before[0], before[1], pauses.NEVER)
    assert gc.get_freeze_count() > 1000, "what was imported is frozen"

    with pauses.answering():
        full.clear()
        churn(due)  # due, but an answer is in flight
        assert 2 not in full, "no full collection during an answer"
        assert pauses.tidy() is False
    assert 2 not in full, "due, not overdue: the answer's end leaves it to a quiet moment"
    assert pauses.tidy() is True and 2 in full
    assert pauses.tidy() is False, "collected: not due again yet"

    full.clear()
    with pauses.answering():
        churn(due * pauses.FORCE_AFTER)  # a load that never goes quiet
        assert 2 not in full
    assert 2 in full, "ten times overdue: collected at the end of the answer"
    print("ok")
""")


def test_full_collections_wait_for_a_quiet_moment():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
