"""The floor of the serving benchmark: the scoring service's own class, called in-process.

No HTTP, no framework: a ``Scorer`` instance (the class ``bentoml serve`` runs, with its
prediction log and its model and snapshot following) scores the benchmark's payments one at a
time, each parsed from its JSON body into the service's request model and its answer dumped to
JSON, as a server would. Its three calls that do the work are timed through delegating wrappers:
the online features (``OnlineFeatureStore.staged_features``), the model
(``ScoringModel.score_and_explain``) and the prediction log (``PredictionLog.write``), each in
wall time and in the calling thread's CPU time (on a shared machine, the difference is time
spent waiting for the core, or, for the log, for its writer thread's fsync). Then
``/score_batch`` the same way. Run by :mod:`benchmarks.serving` in its own process
with ``BLUEPRINT_HOME`` pointing at a copy of the world's serving files (the service reads its
settings at import); writes its timings as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

WARMUP = 20
"""Requests scored before the timed ones."""
READY_TIMEOUT_S = 300.0
STAGES = ("validate", "features", "model", "log")


class Spent:
    """Wall and CPU seconds (the calling thread's) per stage of one call."""

    def __init__(self, stages: tuple[str, ...]) -> None:
        self.wall = dict.fromkeys(stages, 0.0)
        self.cpu = dict.fromkeys(stages, 0.0)

    def clear(self) -> None:
        for stage in self.wall:
            self.wall[stage] = self.cpu[stage] = 0.0

    def add(self, stage: str, since: tuple[float, float]) -> None:
        wall, cpu = _now()
        self.wall[stage] += wall - since[0]
        self.cpu[stage] += cpu - since[1]


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.thread_time()


class Timed:
    """Delegates every attribute to ``target``; calls of ``method`` count as ``stage``."""

    def __init__(self, target: Any, method: str, stage: str, spent: Spent) -> None:
        self._target, self._method, self._stage, self._spent = target, method, stage, spent

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name != self._method:
            return value

        def timed(*args: Any, **kwargs: Any) -> Any:
            since = _now()
            try:
                return value(*args, **kwargs)
            finally:
                self._spent.add(self._stage, since)

        return timed


def _wait_ready(service: Any) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not service.requests.state.readiness()[0]:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the service is not ready: {service.requests.state.readiness()[1]}"
            )
        time.sleep(0.1)


def measure(raw_dir: Path, requests: int, batches: int, capacity: int) -> dict[str, Any]:
    """Score ``requests`` payments one at a time (after :data:`WARMUP`), then ``batches``
    batches: per call, the wall and CPU seconds in all and per stage."""
    from benchmarks.serving import (
        BATCH_SIZE,
        PaymentStream,
        batch_request_bodies,
        request_bodies,
    )
    from bentos.scorer.service import SETTINGS, Event, EventBatch, Scorer
    from orchestration.lib.serving.guard import ensure_serving_token

    ensure_serving_token(SETTINGS)  # the service does not start without one
    service = Scorer()
    _wait_ready(service)
    spent = Spent(STAGES)
    scoring = service.requests
    state = scoring.state
    state.store = Timed(state.store, "staged_features", "features", spent)
    state.model = Timed(state.model, "score_and_explain", "model", spent)
    scoring.prediction_log = Timed(scoring.prediction_log, "write", "log", spent)
    stream = PaymentStream(raw_dir, SETTINGS.snapshot_dir, capacity)

    def timed_calls(
        kind: type, bodies: list[bytes], api: Callable[[Any], Any], skip: int = 0
    ) -> dict[str, Any]:
        """Each body parsed into the request model, scored, the answer dumped to JSON, as a
        server does; ``rest``: what no stage covers (response model, JSON, locks)."""
        timings: dict[str, Any] = {
            "wall": [], "cpu": [], "process_cpu": [], "stages": {}, "stages_cpu": {}
        }
        for name in (*STAGES, "rest"):
            timings["stages"][name], timings["stages_cpu"][name] = [], []
        for i, body in enumerate(bodies):
            spent.clear()
            process_started = time.process_time()
            started = _now()
            parsed = kind.model_validate_json(body)
            spent.add("validate", started)
            answer = api(parsed)
            if not hasattr(answer, "model_dump_json"):
                raise RuntimeError(f"the service refused a payment: {answer.body[:300]!r}")
            answer.model_dump_json()
            wall, cpu = (end - start for end, start in zip(_now(), started, strict=True))
            if i < skip:
                continue
            timings["wall"].append(wall)
            timings["cpu"].append(cpu)
            timings["process_cpu"].append(time.process_time() - process_started)
            for name in STAGES:
                timings["stages"][name].append(spent.wall[name])
                timings["stages_cpu"][name].append(spent.cpu[name])
            timings["stages"]["rest"].append(wall - sum(spent.wall.values()))
            timings["stages_cpu"]["rest"].append(cpu - sum(spent.cpu.values()))
        return timings

    single = timed_calls(
        Event, request_bodies(stream.take(WARMUP + requests)), service.score, skip=WARMUP
    )
    batch = timed_calls(
        EventBatch, batch_request_bodies(stream.take(batches * BATCH_SIZE)),
        service.score_batch,
    )
    service.shutdown()
    model = state.model
    return {
        "single": single,
        "batch": batch,
        "batch_per_s": [BATCH_SIZE / s for s in batch["wall"]],
        "model": f"{type(model.pipeline[-1]).__name__}, {len(model.features)} features "
        f"(version {model.version})",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-dir", type=Path, required=True, help="the world's raw zone")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--capacity", type=int, required=True, help="payments in the stream")
    args = parser.parse_args()
    result = measure(args.raw_dir, args.requests, args.batches, args.capacity)
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
