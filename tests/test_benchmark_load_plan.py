"""benchmarks/load.py's burst plan: issue 13's 200 questions from 50 users over 5 s."""

from __future__ import annotations

from collections import Counter

from benchmarks.load import plan

MIX = [f"q{i}" for i in range(10)]


def test_people_take_turns_at_an_even_pace():
    got = [(c.user, c.channel, c.text, c.at) for c in plan(MIX, 6, users=3, channels=2, spread=3.0, run_id="R")]
    assert got == [
        ("U0LOAD000", "CLR000", "q0", 0.0),
        ("U0LOAD001", "CLR001", "q1", 0.5),
        ("U0LOAD002", "CLR000", "q2", 1.0),
        ("U0LOAD000", "CLR000", "q3", 1.5),  # person 0's second turn: three questions further on
        ("U0LOAD001", "CLR001", "q4", 2.0),
        ("U0LOAD002", "CLR000", "q5", 2.5),
    ]


def test_the_issue_burst():
    commands = plan(MIX, 200, users=50, channels=10, spread=5.0, run_id="R")
    assert len({c.key for c in commands}) == 200  # each its own response_url (and trigger_id)
    assert Counter(c.user for c in commands) == {f"U0LOAD{u:03d}": 4 for u in range(50)}
    assert len({c.channel for c in commands}) == 10
    assert max(c.at for c in commands) < 5.0
    for user in {c.user for c in commands}:  # four different questions, 1.25 s apart
        mine = [c for c in commands if c.user == user]
        assert len({c.text for c in mine}) == 4
        assert [round(b.at - a.at, 6) for a, b in zip(mine, mine[1:], strict=False)] == [1.25, 1.25, 1.25]
