"""What the scoring service does for a request, without BentoML: the answer once its log row is
on disk, and each refusal as the JSON error with its status (fakes stand in for the model and
the online store; the prediction and label logs are real)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.responses import JSONResponse

from orchestration.lib.serving.clock import ServiceClock
from orchestration.lib.serving.prediction_log import PredictionLog, PredictionLogError, iter_records
from orchestration.lib.serving.requests import Refused, ScoringRequests
from orchestration.lib.serving.schemas import LabelsAdded, ServiceSchemas
from orchestration.lib.serving.served import ServedColumns
from orchestration.lib.serving.staging import RowConflictError
from orchestration.lib.serving.state import NotReady
from orchestration.lib.training.model_selection import ReasonCode
from orchestration.settings import get_settings

COLUMNS = ServedColumns.declared(get_settings("fraud").usecase)
SCHEMAS = ServiceSchemas.declared(COLUMNS, max_batch=10, top_reasons=1)
PAYMENT = {"transaction_id": "t-1", "timestamp": "2024-03-02T10:00:00",
           "card_number": "4539578763621486", "terminal_id": "0042", "amount": 12.5}
REPORT = {"transaction_id": "t-1", "card_number": "4539578763621486",
          "reported_at": "2024-03-03T09:00:00"}


def body(model: type, value: Any) -> Any:
    """A request body as the server parses it (from JSON: the models are strict)."""
    return model.model_validate_json(json.dumps(value))


def event(**overrides: Any) -> Any:
    return body(SCHEMAS.event, {**PAYMENT, **overrides})


def labels() -> Any:
    return body(SCHEMAS.labels, {COLUMNS.label_source: [REPORT]})


class FakeModel:
    version = "v7"
    feature_definitions_hash = "h"

    def score_and_explain(self, rows: Any, top_n: int) -> tuple[np.ndarray, list]:
        scores = np.full(len(rows), 0.9)
        return scores, [[ReasonCode("amount", 12.5, 10.0, 0.3)] for _ in range(len(rows))]

    def alerts(self, scores: np.ndarray) -> np.ndarray:
        return scores >= 0.5


class FakeStore:
    """Stages an event as its request fields and gives it constant features."""

    definitions_hash = "h"

    def __init__(self) -> None:
        self.refuse: Exception | None = None
        self.labels: list[dict[str, Any]] = []
        self.known: set[str] = set()

    def staged_features(self, events: list[dict[str, Any]]) -> list[tuple[dict, dict]]:
        if self.refuse is not None:
            raise self.refuse
        staged = [{column: str(event.get(column, "x")) for column in COLUMNS.events}
                  for event in events]
        return [(row, {COLUMNS.row_id: event[COLUMNS.row_field],
                       **dict.fromkeys(COLUMNS.features, 1.0)})
                for row, event in zip(staged, events, strict=True)]

    def knows(self, row_id: str) -> bool:
        return row_id in self.known

    def stage_label(self, label: dict[str, Any]) -> dict[str, Any]:
        if self.refuse is not None:
            raise self.refuse
        return {column: str(label.get(column, "x")) for column in COLUMNS.labels}

    def add_staged_labels(self, rows: list[dict[str, Any]]) -> int:
        self.labels.extend(rows)
        return len(rows)


class FakeState:
    def __init__(self) -> None:
        self.model = FakeModel()
        self.store: FakeStore | None = FakeStore()
        self.not_ready: str | None = None
        self.features_lock = threading.Lock()
        self.journal: list[dict[str, Any]] | None = None
        self.divergences: list[str] = []
        self.clock = ServiceClock("events", timedelta(days=1), timedelta(days=1))

    def diverged(self, why: str) -> None:
        self.divergences.append(why)

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[None]:
        yield

    def ready_model(self) -> FakeModel:
        if self.not_ready is not None:
            raise NotReady(self.not_ready)
        return self.model


class BrokenLog:
    def write(self, rows: list) -> None:
        raise PredictionLogError("disk full")


@pytest.fixture
def state() -> FakeState:
    return FakeState()


@pytest.fixture
def requests(state: FakeState, tmp_path: Path) -> Iterator[ScoringRequests]:
    logs = [PredictionLog(tmp_path / name, 1000, 3600, columns=columns).start()
            for name, columns in (("predictions", COLUMNS.prediction_columns),
                                  ("labels", COLUMNS.label_columns))]
    yield ScoringRequests(state, SCHEMAS, *logs)  # type: ignore[arg-type]
    for log in logs:  # the tests may replace a log by a broken one
        log.close()


def error(response: Any) -> tuple[int, dict[str, Any]]:
    return response.status_code, json.loads(response.body)


def test_a_scored_event_is_answered_once_its_log_row_is_on_disk(
    requests: ScoringRequests, tmp_path: Path
) -> None:
    answer = requests.score(event())
    assert isinstance(answer, SCHEMAS.score)
    assert answer.model_version == "v7" and answer.alert
    assert getattr(answer, COLUMNS.score) == pytest.approx(0.9)
    logged = list(iter_records(tmp_path / "predictions", include_open=True))
    assert [row[COLUMNS.row_id] for row in logged] == ["t-1"]
    assert logged[0]["model_version"] == "v7"


def test_a_batch_is_answered_in_the_order_of_the_request(requests: ScoringRequests) -> None:
    events = [{**PAYMENT, "transaction_id": f"t-{n}"} for n in (3, 1, 2)]
    batch = body(SCHEMAS.events, {COLUMNS.events_source: events})
    answers = requests.score_batch(batch)
    assert isinstance(answers, SCHEMAS.scores)
    assert [getattr(a, COLUMNS.row_field) for a in answers.root] == ["t-3", "t-1", "t-2"]


@pytest.mark.parametrize(
    ("problem", "status", "says"),
    [(RowConflictError("t-1 was scored with other fields"), 409, "other fields"),
     (ValueError("the terminal is unknown"), 400, "terminal is unknown")],
)
def test_what_the_store_refuses_is_a_json_error_with_its_status(
    requests: ScoringRequests, state: FakeState, problem: Exception, status: int, says: str
) -> None:
    assert state.store is not None
    state.store.refuse = problem
    code, body = error(requests.score(event()))
    assert code == status and says in body["error"]


def test_not_ready_and_an_unwritable_log_are_503s(
    requests: ScoringRequests, state: FakeState
) -> None:
    state.not_ready = "no champion model loaded yet"
    assert error(requests.score(event())) == (
        503, {"error": "not ready: no champion model loaded yet"}
    )
    state.not_ready = None
    requests.prediction_log = BrokenLog()  # type: ignore[assignment]
    assert error(requests.score(event())) == (
        503, {"error": "the prediction could not be logged; retry the request"}
    )
    # the event joined the online state but no log: the state must be rebuilt (issue 16)
    assert state.divergences == ["a prediction could not be logged"]


def test_a_model_failure_after_the_events_joined_the_state_is_a_503_and_a_rebuild(
    requests: ScoringRequests, state: FakeState
) -> None:
    """Issue 16: a request failing after its payment joined the online state left an unlogged
    payment that changed other payments' features, and vanished on restart."""
    def broken(rows: Any, top_n: int) -> Any:
        raise RuntimeError("the model cannot score")

    state.model.score_and_explain = broken  # type: ignore[method-assign]
    assert error(requests.score(event())) == (
        503, {"error": "not ready: scoring failed; retry the request"}
    )
    assert state.divergences == ["scoring failed (RuntimeError)"]


def test_labels_are_logged_then_applied_and_journaled_while_a_snapshot_loads(
    requests: ScoringRequests, state: FakeState, tmp_path: Path
) -> None:
    state.journal = []
    batch = labels()
    assert requests.labels(batch) == LabelsAdded(changed=1)
    assert state.store is not None and len(state.store.labels) == 1
    assert state.journal == [{"labels": state.store.labels}]
    assert len(list(iter_records(tmp_path / "labels", include_open=True))) == 1


def test_labels_are_refused_before_the_state_loads_or_when_unstageable(
    requests: ScoringRequests, state: FakeState
) -> None:
    batch = labels()
    store, state.store = state.store, None
    assert error(requests.labels(batch)) == (
        503, {"error": "not ready: the online state is not loaded yet"}
    )
    assert store is not None
    state.store, store.refuse = store, ValueError("unknown event")
    assert error(requests.labels(batch)) == (400, {"error": "unknown event"})
    store.refuse = None
    requests.label_log = BrokenLog()  # type: ignore[assignment]
    assert error(requests.labels(batch)) == (
        503, {"error": "the labels could not be logged; retry the request"}
    )
    assert store.labels == []


def test_a_refusal_is_the_error_body_with_its_status() -> None:
    assert error(Refused(409, "conflict").response()) == (409, {"error": "conflict"})


def test_times_far_from_the_services_clock_are_refused_422(
    requests: ScoringRequests, state: FakeState
) -> None:
    """Issue 16: a payment dated 9999 moved the online state's day and stopped its pruning; one
    dated ahead with the id the processor would use next conflicted with every later snapshot.
    A label known after now proved nothing either."""
    state.clock.observe(datetime(2024, 3, 2, 9, 0))
    assert not isinstance(requests.score(event(timestamp="2024-03-03T08:59:00")), JSONResponse)
    for when, says in (("9999-01-01T00:00:00", "after the service's clock"),
                       ("2024-03-05T00:00:00", "after the service's clock"),
                       ("2024-03-01T08:00:00", "before the service's clock")):
        code, answer = error(requests.score(event(transaction_id="t-far", timestamp=when)))
        assert code == 422 and answer["error"].startswith("timestamp: ")
        assert says in answer["error"]
    state.store.known.add("t-old")  # a retry of an event the store holds: answered, however late
    assert not isinstance(requests.score(event(transaction_id="t-old",
                                               timestamp="2024-02-01T00:00:00")), JSONResponse)
    late_report = body(SCHEMAS.labels, {COLUMNS.label_source: [
        {**REPORT, "reported_at": "2024-03-09T00:00:00"}]})
    code, refused = error(requests.labels(late_report))
    assert code == 422 and refused["error"].startswith("reported_at: after the service's clock")
    assert state.store.labels == []
