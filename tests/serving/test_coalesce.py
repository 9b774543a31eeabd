"""The coalescer the scoring service groups waiting requests with: one call for many, results
and errors each to their own caller."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from orchestration.lib.serving.coalesce import Coalescer

WAIT_S = 10.0


class Gate:
    """A ``run`` for the coalescer: records each call's items; the first call waits for
    ``release`` so that the callers behind it queue up; ``bad`` items fail their whole call."""

    def __init__(self, bad: frozenset[int] = frozenset()) -> None:
        self.calls: list[list[int]] = []
        self.entered = threading.Event()
        self.released = threading.Event()
        self.bad = bad

    def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(list(items))
        self.entered.set()
        assert self.released.wait(WAIT_S)
        if self.bad & set(items):
            raise ValueError(f"bad items {sorted(self.bad & set(items))}")
        return [item * 10 for item in items]


def queue_behind_first(
    coalescer: Coalescer[int, int], first: list[int], others: list[list[int]]
) -> list:
    """``first`` enters ``run`` and holds it; ``others`` queue behind it; then all finish. The
    futures of every caller, ``first``'s first."""
    gate = coalescer._run
    assert isinstance(gate, Gate)
    pool = ThreadPoolExecutor(len(others) + 1)
    futures = [pool.submit(coalescer, first)]
    assert gate.entered.wait(WAIT_S)
    futures += [pool.submit(coalescer, items) for items in others]
    while len(coalescer._queue) < len(others):  # every other caller is waiting
        threading.Event().wait(0.01)
    gate.released.set()
    pool.shutdown(wait=True)
    return futures


def test_callers_waiting_together_share_one_call_and_get_their_own_results() -> None:
    gate = Gate()
    coalescer = Coalescer(gate, max_items=64)
    futures = queue_behind_first(coalescer, [1], [[2, 3], [4], [5, 6, 7]])
    assert [f.result() for f in futures] == [[10], [20, 30], [40], [50, 60, 70]]
    # the first ran alone (nobody waited yet); the three behind it in one call, in order
    assert gate.calls == [[1], [2, 3, 4, 5, 6, 7]]
    assert coalescer.calls == 2 and list(coalescer.groups) == [1, 3]


def test_a_group_takes_at_most_max_items_and_a_larger_call_runs_alone() -> None:
    gate = Gate()
    coalescer = Coalescer(gate, max_items=4)
    futures = queue_behind_first(coalescer, [0], [[1, 2], [3, 4], [5, 6, 7, 8, 9], [10]])
    assert [f.result() for f in futures] == [
        [0], [10, 20], [30, 40], [50, 60, 70, 80, 90], [100]
    ]
    assert gate.calls == [[0], [1, 2, 3, 4], [5, 6, 7, 8, 9], [10]]


def test_a_failing_caller_gets_its_error_and_the_others_their_results() -> None:
    gate = Gate(bad=frozenset({4}))
    coalescer = Coalescer(gate, max_items=64)
    futures = queue_behind_first(coalescer, [1], [[2, 3], [4], [5]])
    assert futures[0].result() == [10]
    assert futures[1].result() == [20, 30]
    with pytest.raises(ValueError, match=r"bad items \[4\]"):
        futures[2].result()
    assert futures[3].result() == [50]
    # the joint call failed, so each call of its group ran again alone
    assert gate.calls == [[1], [2, 3, 4, 5], [2, 3], [4], [5]]


def test_a_caller_alone_runs_at_once_and_a_wrong_result_count_is_an_error() -> None:
    coalescer = Coalescer(lambda items: [item + 1 for item in items])
    assert coalescer([1, 2]) == [2, 3]
    assert list(coalescer.groups) == [1]
    short = Coalescer(lambda items: items[:-1])
    with pytest.raises(RuntimeError, match="returned 1 results for 2 items"):
        short([1, 2])
    with pytest.raises(ValueError, match="max_items"):
        Coalescer(lambda items: items, max_items=0)


def test_many_threads_each_get_exactly_their_own_results() -> None:
    coalescer = Coalescer(lambda items: [(item, item * item) for item in items], max_items=16)
    requests = [[i * 3, i * 3 + 1, i * 3 + 2][: 1 + i % 3] for i in range(400)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(coalescer, requests))
    assert answers == [[(item, item * item) for item in items] for items in requests]
    assert sum(coalescer.groups) == len(requests)


def test_a_caller_whose_call_is_done_returns_while_the_next_group_runs() -> None:
    held = {item: threading.Event() for item in (0, 1, 99)}
    running: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        running.append(items)
        for item in items:
            if item in held:
                assert held[item].wait(WAIT_S)
        return [item * 10 for item in items]

    coalescer = Coalescer(run)
    pool = ThreadPoolExecutor(4)
    first = pool.submit(coalescer, [0])  # holds the run: the next two queue behind it
    while not running:
        threading.Event().wait(0.01)
    together = [pool.submit(coalescer, [1]), pool.submit(coalescer, [2])]
    while len(coalescer._queue) < 2:
        threading.Event().wait(0.01)
    held[0].set()
    while len(running) < 2:  # [1, 2] runs, held by 1
        threading.Event().wait(0.01)
    later = pool.submit(coalescer, [99])
    while len(coalescer._queue) < 1:
        threading.Event().wait(0.01)
    held[1].set()  # [1, 2] is done; [99] runs next and is held
    assert [f.result(timeout=WAIT_S) for f in (first, *together)] == [[0], [10], [20]]
    while len(running) < 3:
        threading.Event().wait(0.01)
    assert not later.done() and running == [[0], [1, 2], [99]]
    held[99].set()
    assert later.result(timeout=WAIT_S) == [990]
    pool.shutdown()
