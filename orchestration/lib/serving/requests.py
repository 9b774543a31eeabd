"""What the scoring service does for each request, without BentoML.

For each event it computes the feature mart row with the online feature store (personal data
replaced by its pseudonym on entry), scores it with the registry's champion (the code batch
scoring uses), writes the prediction log row, and only then answers. Requests that arrive while
others are being scored wait together and are scored in one call (:class:`Coalescer`): the
fixed cost per call is shared, so the cost per request falls as the load rises (a request alone
is scored at once), and each request still gets its own answer or its own error.

A request that cannot be answered is refused (:class:`Refused`) with an HTTP status and the JSON
body ``{"error": ...}``: 400 for what the schema cannot see, 409 for a retry that conflicts
with what the service already holds, 422 for a time too far from the service's clock
(:mod:`orchestration.lib.serving.clock`), 503 when the service is not ready or cannot log
(retry).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from pydantic import BaseModel
from starlette.responses import JSONResponse

from orchestration.lib.serving.clock import OutOfClockError
from orchestration.lib.serving.coalesce import Coalescer
from orchestration.lib.serving.prediction_log import (
    PredictionLog,
    PredictionLogError,
    new_request_id,
)
from orchestration.lib.serving.schemas import LabelsAdded, ServiceSchemas
from orchestration.lib.serving.staging import RowConflictError
from orchestration.lib.serving.state import NotReady, ServingState
from orchestration.settings import Settings

GROUP_MAX_EVENTS = 64
"""The most events scored in one joint call of waiting requests (a larger batch runs alone):
past a few dozen, a joint call saves little per event and makes its first request wait."""

logger = logging.getLogger("bentoml.scorer")

P = ParamSpec("P")
R = TypeVar("R")
Scored = list[tuple[dict[str, Any], dict[str, Any], BaseModel]]
"""Each event as staged, its feature mart row and its answer."""


class Refused(Exception):
    """A request answered with an error: its HTTP status and a message without personal data."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.message}, status_code=self.status)


@contextlib.contextmanager
def refusing() -> Iterator[None]:
    """What the work raises, as the refusal a client gets: a time too far from the clock 422,
    not ready 503, a conflicting retry 409, anything else the schema cannot see 400 (the
    messages never echo personal data)."""
    try:
        yield
    except OutOfClockError as out:
        raise Refused(422, str(out)) from out
    except NotReady as reason:
        raise Refused(503, f"not ready: {reason}") from reason
    except RowConflictError as conflict:
        raise Refused(409, str(conflict)) from conflict
    except ValueError as invalid:
        raise Refused(400, str(invalid)) from invalid


def answers_refusals(handle: Callable[P, R]) -> Callable[P, R | JSONResponse]:
    """``handle``'s answer, or its `Refused` as the JSON error response."""

    @functools.wraps(handle)
    def answered(*args: P.args, **kwargs: P.kwargs) -> R | JSONResponse:
        try:
            return handle(*args, **kwargs)
        except Refused as refused:
            return refused.response()

    return answered


class ScoringRequests:
    """Scores events and adds labels for an online service, each logged before it is answered.

    The methods named after a route take its request body and return its answer or its error
    response; `score_events` and `add_labels` do the work and raise `Refused`.
    """

    def __init__(
        self,
        state: ServingState,
        schemas: ServiceSchemas,
        prediction_log: PredictionLog,
        label_log: PredictionLog,
    ) -> None:
        self.state = state
        self.schemas = schemas
        self.columns = schemas.columns
        self.prediction_log = prediction_log
        self.label_log = label_log
        self.scorer = Coalescer(self._score_group, max_items=GROUP_MAX_EVENTS)
        """Scores the events of the requests waiting together in one call."""

    @classmethod
    def open(
        cls, settings: Settings, state: ServingState, schemas: ServiceSchemas
    ) -> ScoringRequests:
        """With the prediction and label logs of ``settings`` started (`close` closes them)."""
        rotation = (settings.prediction_log_rotate_rows, settings.prediction_log_rotate_seconds)
        columns = schemas.columns
        prediction_log = PredictionLog(
            settings.prediction_log_dir, *rotation, columns=columns.prediction_columns
        ).start()
        label_log = PredictionLog(
            settings.label_log_dir, *rotation, columns=columns.label_columns
        ).start()
        return cls(state, schemas, prediction_log, label_log)

    # -- the routes ------------------------------------------------------------------------------

    @answers_refusals
    def score(self, event: BaseModel) -> BaseModel:
        """``POST /score``: one event's answer."""
        return self.score_events([event])[0]

    @answers_refusals
    def score_batch(self, batch: BaseModel) -> BaseModel:
        """``POST /score_batch``: the answers to a batch's events, in the order of the request."""
        return self.schemas.scores(self.score_events(self.schemas.batch_events(batch)))

    @answers_refusals
    def labels(self, batch: BaseModel) -> LabelsAdded:
        """``POST /labels``: how many of a batch's labels changed the online state."""
        return LabelsAdded(changed=self.add_labels(self.schemas.batch_labels(batch)))

    # -- the work --------------------------------------------------------------------------------

    def score_events(self, events: Sequence[BaseModel]) -> list[BaseModel]:
        """The answers to ``events``, once their prediction log rows are on disk."""
        request_id = new_request_id()
        dumped = [event.model_dump() for event in events]
        times = [event[self.columns.time_field] for event in dumped]
        with refusing(), self.state.in_flight():
            self._check_clock(dumped, times)
            scored = self.scorer(dumped)
            self._log_predictions(request_id, scored)
        self.state.clock.observe(max(times))
        return [answer for _, _, answer in scored]

    def add_labels(self, labels: Sequence[BaseModel]) -> int:
        """Add labels known since the snapshot; returns how many changed the online state.

        They are logged (pseudonyms, never personal data) before they are applied, so a restart
        keeps them; they count as offline (from the day after they are known).
        """
        with refusing(), self.state.in_flight():
            return self._add_labels(labels)

    def _add_labels(self, labels: Sequence[BaseModel]) -> int:
        request_id, logged_at = new_request_id(), datetime.now(UTC)
        store = self.state.store
        if store is None:
            raise Refused(503, "not ready: the online state is not loaded yet")
        dumped = [label.model_dump() for label in labels]
        for label in dumped:
            self.state.clock.check_label(self.columns.label_time_field,
                                         label[self.columns.label_time_field])
        staged = [
            {"request_id": request_id, "logged_at": logged_at, **store.stage_label(label)}
            for label in dumped
        ]
        try:
            self.label_log.write(staged)
        except PredictionLogError as failure:
            logger.error("label log write failed: %s", failure)
            raise Refused(503, "the labels could not be logged; retry the request") from failure
        state = self.state
        with state.features_lock:
            assert state.store is not None
            changed = state.store.add_staged_labels(staged)
            if state.journal is not None:
                state.journal.append({"labels": staged})
        return changed

    def rotate_logs(self) -> None:
        """Close the open log files into ``closed/`` now (`blueprint replay` asks for it)."""
        self.prediction_log.rotate()
        self.label_log.rotate()

    def close(self) -> None:
        """Close the log files (into ``closed/``)."""
        self.prediction_log.close()
        self.label_log.close()

    def _check_clock(self, events: list[dict[str, Any]], times: list[Any]) -> None:
        """New events far from the service's clock are refused (`OutOfClockError`); a retry
        of one it holds is answered as before, however late (the store says if it conflicts)."""
        store = self.state.store
        for event, when in zip(events, times, strict=True):
            try:
                self.state.clock.check_event(self.columns.time_field, when)
            except OutOfClockError:
                if store is None or not store.knows(str(event[self.columns.row_field])):
                    raise

    def _log_predictions(self, request_id: str, scored: Scored) -> None:
        logged_at = datetime.now(UTC)
        columns = self.columns
        try:
            self.prediction_log.write([
                columns.prediction_row(
                    request_id, logged_at, event, features, answer.model_version,
                    getattr(answer, columns.score), answer.alert,
                )
                for event, features, answer in scored
            ])
        except PredictionLogError as failure:
            logger.error("prediction log write failed: %s", failure)
            self.state.diverged("a prediction could not be logged")
            raise Refused(
                503, "the prediction could not be logged; retry the request"
            ) from failure

    def _score_group(self, events: list[dict[str, Any]]) -> Scored:
        """Features, score and reason codes of events, of one or several requests at once
        (``self.scorer`` groups the requests that wait together)."""
        state = self.state
        model = state.ready_model()
        with state.features_lock:
            store = state.store
            assert store is not None  # ready_model checked it
            if store.definitions_hash != model.feature_definitions_hash:
                raise NotReady("the online state changed while the request waited")
            staged = store.staged_features(events)
            if state.journal is not None:
                state.journal.append({"events": [event for event, _ in staged]})
        try:
            answers = self.schemas.answers(model, [features for _, features in staged])
        except Exception as failure:  # the events joined the store: it must not keep them
            logger.exception("scoring failed after the events joined the online state")
            state.diverged(f"scoring failed ({type(failure).__name__})")
            raise NotReady("scoring failed; retry the request") from failure
        return [(event, features, answer)
                for (event, features), answer in zip(staged, answers, strict=True)]
