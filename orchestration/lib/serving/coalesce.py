"""Run the work of callers who wait at the same time as one call: the scoring service's requests.

Scoring a payment online has a fixed cost per call (planning the feature SQL, one
``predict_proba``) much larger than its cost per payment: on the default world each of eight
payments scored in one call costs a fraction of one payment scored alone (figures:
docs/OPERATING_NOTES.md). Under load, requests queue behind one another anyway; a
:class:`Coalescer` lets the first of them in line run the whole queue at once (flat combining,
as group commit does for the prediction log), so the cost per request falls as the load rises,
while a request alone runs at once, with no batching delay.

A group's failure is never another caller's: when the joint call raises, each call of the group
is run again alone, so each caller gets its own result or its own error, as if it had come alone.
The function must therefore be safe to run again on items a failed joint call saw (the online
feature store's ``features_batch`` adds nothing when it refuses a batch, and a payment it knows
again gets the same row).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Call(Generic[T, R]):
    __slots__ = ("items", "results", "error", "done")

    def __init__(self, items: Sequence[T]) -> None:
        self.items = items
        self.results: list[R] | None = None
        self.error: BaseException | None = None
        self.done = False


class Coalescer(Generic[T, R]):
    """``coalescer(items)`` returns ``run(items)``, but callers waiting together share one call.

    ``run`` maps a list of items to a list of results of the same length, in order, and each
    item's result must not depend on the items beside it. ``max_items``: the most items one
    joint call takes (a call with more runs alone); calls join in the order they arrived.
    Thread-safe; ``run`` never runs twice at once, and never holds the lock callers queue on.
    """

    def __init__(self, run: Callable[[list[T]], list[R]], max_items: int = 64) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        self._run = run
        self._max_items = max_items
        self._changed = threading.Condition()
        """Guards the queue and ``_running``; notified when a group is done."""
        self._queue: list[_Call[T, R]] = []
        self._running = False
        """Whether a caller is running a group now."""
        self.calls = 0
        """Calls of ``run`` so far (joint and alone), for metrics and tests."""
        self.groups: deque[int] = deque(maxlen=1000)
        """Requests per group, the most recent last (the last 1,000)."""

    def __call__(self, items: Sequence[T]) -> list[R]:
        call: _Call[T, R] = _Call(items)
        with self._changed:
            self._queue.append(call)
        while True:
            with self._changed:
                # a caller whose call is done returns as soon as it is woken, never behind
                # the next group
                while self._running and not call.done:
                    self._changed.wait()
                if call.done:
                    break
                self._running = True
                group = self._take_group()
            try:
                self._run_group(group)
            finally:
                with self._changed:
                    self._running = False
                    self._changed.notify_all()
        if call.error is not None:
            raise call.error
        assert call.results is not None
        return call.results

    def _take_group(self) -> list[_Call[T, R]]:
        """The queue's first calls, up to ``max_items`` items (at least one call); the caller
        holds ``_changed``."""
        size, end = 0, 0
        for call in self._queue:
            if end and size + len(call.items) > self._max_items:
                break
            size += len(call.items)
            end += 1
        group, self._queue = self._queue[:end], self._queue[end:]
        self.groups.append(len(group))
        return group

    def _run_group(self, group: list[_Call[T, R]]) -> None:
        try:
            self._run_calls(group)
        finally:  # interrupted (KeyboardInterrupt...): nobody may wait for a leader gone
            for call in group:
                if not call.done:
                    call.error = RuntimeError("the call running this group was interrupted")
                    call.done = True

    def _run_calls(self, group: list[_Call[T, R]]) -> None:
        if len(group) > 1:
            items = [item for call in group for item in call.items]
            try:
                results = self._call(items)
            except Exception:  # someone's item failed: each call again alone, below
                pass
            else:
                start = 0
                for call in group:
                    call.results = results[start : start + len(call.items)]
                    start += len(call.items)
                    call.done = True
                return
        for call in group:
            try:
                call.results = self._call(list(call.items))
            except Exception as error:
                call.error = error
            call.done = True

    def _call(self, items: list[T]) -> list[R]:
        self.calls += 1
        results = self._run(items)
        if len(results) != len(items):
            raise RuntimeError(f"run returned {len(results)} results for {len(items)} items")
        return results
