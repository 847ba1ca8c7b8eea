"""metrics.cache's compute slot: only work the answer cache cannot answer takes it.

A bot's burst of repeated questions must not queue behind one slow computation: a hit (or a
wait for another thread's run of the same answer) holds no slot, a miss holds one, and work
nested in work does not take a second (which, with one slot, would never be granted).
"""

from __future__ import annotations

import threading

from metrics import cache


class Slot:
    """A one-slot semaphore that says when someone asked for it."""

    def __init__(self) -> None:
        self.sem = threading.BoundedSemaphore(1)
        self.asked = threading.Event()
        self.taken = 0

    def __enter__(self) -> Slot:
        self.asked.set()
        self.sem.acquire()
        self.taken += 1
        return self

    def __exit__(self, *exc) -> None:
        self.sem.release()


def test_a_hit_needs_no_slot_and_a_miss_waits_for_one():
    answers = cache.AnswerCache(entries=8)
    slot = Slot()
    with cache.computing_in(slot):
        assert answers.through(("k",), lambda: 42) == 42  # a miss: computed in the slot
    assert slot.taken == 1
    slot.asked.clear()
    slot.sem.acquire()  # another question computes now: the only slot is taken
    try:
        with cache.computing_in(slot):
            assert answers.through(("k",), lambda: 0) == 42  # a hit: answered at once, no slot asked
        assert not slot.asked.is_set()
        ran = threading.Event()
        got: list[int] = []

        def miss() -> None:
            with cache.computing_in(slot):
                got.append(answers.through(("other",), lambda: (ran.set(), 7)[1]))

        worker = threading.Thread(target=miss)
        worker.start()
        assert slot.asked.wait(10)  # the miss asks for the slot …
        assert not ran.is_set()  # … and cannot compute without it
    finally:
        slot.sem.release()
    worker.join(10)
    assert got == [7] and ran.is_set() and slot.taken == 2


def test_nested_work_takes_one_slot():
    answers = cache.AnswerCache(entries=8)
    slot = Slot()

    def outer() -> int:  # an answer whose computation asks another cached question
        return answers.through(("inner",), lambda: 1) + 1

    with cache.computing_in(slot):
        assert answers.through(("outer",), outer) == 2  # with one slot, a second would never come
    assert slot.taken == 1
    assert slot.sem.acquire(blocking=False)  # released again
    slot.sem.release()


def test_without_a_gate_nothing_is_held():
    with cache.computing():
        pass
    answers = cache.AnswerCache(entries=0, max_bytes=0)  # off: computed every time
    assert answers.through(("k",), lambda: 3) == 3
