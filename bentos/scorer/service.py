"""The real-time scoring service of an online use case: an event in, its score out, in
milliseconds.

One service code for every online use case (``BLUEPRINT_USECASE``; one Bento each): the
request and answer bodies come from the use case's declaration
(:class:`~orchestration.lib.serving.schemas.ServiceSchemas`). For each event the service
computes its feature mart row with the online feature store (personal data replaced by its
pseudonym on entry), scores it with the registry's champion (the code batch scoring uses),
writes the prediction log row, and only then answers. Requests that arrive while others are
being scored wait together and are scored in one call (:class:`Coalescer`): the fixed cost per
call is shared, so the cost per request falls as the load rises (a request alone is scored at
once), and each request still gets its own answer or its own error.

It follows the pipeline without restarting (:class:`~orchestration.lib.serving.state.ServingState`):
a background thread loads a new champion or serving snapshot next to what is serving and swaps
one reference.

Routes: ``POST /score``, ``POST /score_batch``, ``POST /labels`` (labels known since the
snapshot), ``GET /livez``, ``GET /readyz`` (JSON, 503 with a reason when not ready), and
BentoML's OpenAPI page at ``/`` (``/docs.json``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import bentoml
from pydantic import BaseModel
from starlette.responses import JSONResponse
from threadpoolctl import threadpool_limits

from orchestration.lib.serving.coalesce import Coalescer
from orchestration.lib.serving.prediction_log import (
    PredictionLog,
    PredictionLogError,
    new_request_id,
)
from orchestration.lib.serving.schemas import LabelsAdded, ServiceSchemas
from orchestration.lib.serving.served import ServedColumns
from orchestration.lib.serving.staging import RowConflictError
from orchestration.lib.serving.state import NotReady, ServingState
from orchestration.settings import get_settings, pseudonymization_key

SETTINGS = get_settings()
COLUMNS = ServedColumns.declared(SETTINGS.usecase)
TOP_REASONS = 3
"""Reason codes returned with each score."""
API_THREADS = 16
"""Requests handled at once. Those waiting for the feature store together are scored together
(`Coalescer`); they overlap while waiting for the prediction log's group commit."""
GROUP_MAX_EVENTS = 64
"""The most events scored in one joint call of waiting requests (a larger batch runs alone):
past a few dozen, a joint call saves little per event and makes its first request wait."""

SCHEMAS = ServiceSchemas.declared(COLUMNS, SETTINGS.serving_max_batch, TOP_REASONS)
Event, EventBatch, Label, LabelBatch = SCHEMAS.event, SCHEMAS.events, SCHEMAS.label, SCHEMAS.labels
Score, Scores = SCHEMAS.score, SCHEMAS.scores

logger = logging.getLogger("bentoml.scorer")
threadpool_limits(limits=1)  # one BLAS/OpenMP thread: a request is one small matrix


class _Readiness:
    """The running instance's readiness check, for the /readyz middleware."""

    check: Any = staticmethod(
        lambda: (False, {"ready": False, "reason": "the service is starting"})
    )


READINESS = _Readiness()


class ReadinessEndpoint:
    """Answers ``GET /readyz`` with a JSON body saying why (BentoML's own says only 503)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/readyz":
            ready, body = READINESS.check()
            await JSONResponse(body, status_code=200 if ready else 503)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@bentoml.service(
    name=f"{COLUMNS.usecase}_scorer",
    workers=1,
    threads=API_THREADS,
    traffic={"timeout": 30},
)
class Scorer:
    """Scores events with the registry's champion on features equal to the offline mart."""

    def __init__(self) -> None:
        self._state = ServingState(SETTINGS, COLUMNS, pseudonymization_key(SETTINGS))
        self._scorer = Coalescer(self._score_events, max_items=GROUP_MAX_EVENTS)
        """Scores the events of the requests waiting together in one call (see `_score`)."""
        rotation = (SETTINGS.prediction_log_rotate_rows, SETTINGS.prediction_log_rotate_seconds)
        self._log = PredictionLog(
            SETTINGS.prediction_log_dir, *rotation, columns=COLUMNS.prediction_columns
        ).start()
        self._label_log = PredictionLog(
            SETTINGS.label_log_dir, *rotation, columns=COLUMNS.label_columns
        ).start()
        self._stop = threading.Event()
        READINESS.check = self._state.readiness
        self._follower = threading.Thread(
            target=self._state.follow, args=(self._stop, self._rotate_logs), name="follower",
            daemon=True,
        )
        self._follower.start()

    @bentoml.api(route="/score", output_spec=Score)
    def score(self, event: Event, /) -> Score | JSONResponse:  # type: ignore[valid-type]
        """Score one event: its score, alert, model version and reason codes."""
        scored = self._score([event])
        return scored if isinstance(scored, JSONResponse) else scored[0]

    @bentoml.api(route="/score_batch", output_spec=Scores)
    def score_batch(self, batch: EventBatch, /) -> Scores | JSONResponse:  # type: ignore[valid-type]
        """Score several events at once; the answers come in the order of the request."""
        scored = self._score(SCHEMAS.batch_events(batch))
        return scored if isinstance(scored, JSONResponse) else Scores(scored)

    @bentoml.api(route="/labels", output_spec=LabelsAdded)
    def labels(self, batch: LabelBatch, /) -> LabelsAdded | JSONResponse:  # type: ignore[valid-type]
        """Add labels known since the snapshot (the next snapshot brings them too): they count
        as offline (from the day after they are known). Logged (pseudonyms, never personal
        data) before they are applied, so a restart keeps them."""
        request_id, logged_at = new_request_id(), datetime.now(UTC)
        store = self._state.store
        if store is None:
            return _error(503, "not ready: the online state is not loaded yet")
        try:
            staged = [
                {"request_id": request_id, "logged_at": logged_at,
                 **store.stage_label(label.model_dump())}
                for label in SCHEMAS.batch_labels(batch)
            ]
        except ValueError as invalid:  # what the schema cannot see (never echoes personal data)
            return _error(400, str(invalid))
        try:
            self._label_log.write(staged)
        except PredictionLogError as failure:
            logger.error("label log write failed: %s", failure)
            return _error(503, "the labels could not be logged; retry the request")
        with self._state.features_lock:
            assert self._state.store is not None
            changed = self._state.store.add_staged_labels(staged)
            if self._state.journal is not None:
                self._state.journal.append({"labels": staged})
        return LabelsAdded(changed=changed)

    def __is_ready__(self) -> bool:
        return self._state.readiness()[0]

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        """Stop following and close the log files (into ``closed/``)."""
        self._stop.set()
        self._follower.join(timeout=10)
        self._log.close()
        self._label_log.close()

    def _rotate_logs(self) -> None:
        """`blueprint replay` wants the logs closed now."""
        self._log.rotate()
        self._label_log.rotate()

    def _score(self, events: Sequence[BaseModel]) -> list[BaseModel] | JSONResponse:
        request_id = new_request_id()
        try:
            scored = self._scorer([event.model_dump() for event in events])
        except NotReady as reason:
            return _error(503, f"not ready: {reason}")
        except RowConflictError as conflict:
            return _error(409, str(conflict))
        except ValueError as invalid:  # what the schema cannot see (never echoes personal data)
            return _error(400, str(invalid))
        logged_at = datetime.now(UTC)
        try:
            self._log.write([
                COLUMNS.prediction_row(
                    request_id, logged_at, event, features, answer.model_version,
                    getattr(answer, COLUMNS.score), answer.alert,
                )
                for event, features, answer in scored
            ])
        except PredictionLogError as failure:
            logger.error("prediction log write failed: %s", failure)
            return _error(503, "the prediction could not be logged; retry the request")
        return [answer for _, _, answer in scored]

    def _score_events(
        self, events: list[dict[str, Any]]
    ) -> list[tuple[dict[str, Any], dict[str, Any], BaseModel]]:
        """Features, score and reason codes of events, of one or several requests at once
        (``self._scorer`` groups the requests that wait together): each event as staged, its
        feature mart row and its answer."""
        state = self._state
        model = state.ready_model()
        with state.features_lock:
            store = state.store
            assert store is not None  # ready_model checked it
            if store.definitions_hash != model.feature_definitions_hash:
                raise NotReady("the online state changed while the request waited")
            staged = store.staged_features(events)
            if state.journal is not None:
                state.journal.append({"events": [event for event, _ in staged]})
        answers = SCHEMAS.answers(model, [features for _, features in staged])
        return [(event, features, answer)
                for (event, features), answer in zip(staged, answers, strict=True)]


Scorer.add_asgi_middleware(ReadinessEndpoint)
