"""The real-time scoring service of an online use case: an event in, its score out, in
milliseconds.

One service code for every online use case (``BLUEPRINT_USECASE``; one Bento each): the bodies
come from the use case's declaration (:mod:`orchestration.lib.serving.schemas`). Each API hands
its request to :class:`~orchestration.lib.serving.requests.ScoringRequests` (features, score,
prediction log, then the answer). A follower thread loads a new champion or serving snapshot
without a restart (:mod:`orchestration.lib.serving.state`). ``GET /readyz`` answers JSON, 503
with a reason when not ready (:mod:`orchestration.lib.serving.middleware`); ``GET /livez`` and
the OpenAPI page at ``/`` are BentoML's.
"""

from __future__ import annotations

import bentoml
from starlette.responses import JSONResponse
from threadpoolctl import threadpool_limits

from orchestration.lib.serving.guard import Credentials
from orchestration.lib.serving.middleware import Readiness, service_middlewares
from orchestration.lib.serving.requests import ScoringRequests
from orchestration.lib.serving.schemas import LabelsAdded, ServiceSchemas
from orchestration.lib.serving.served import ServedColumns
from orchestration.lib.serving.state import Follower, ServingState
from orchestration.settings import get_settings, pseudonymization_key

SETTINGS = get_settings()
COLUMNS = ServedColumns.declared(SETTINGS.usecase)
TOP_REASONS = 3
"""Reason codes returned with each score."""
API_THREADS = 16
"""Requests handled at once. Those waiting for the feature store together are scored together;
they overlap while waiting for the prediction log's group commit."""

SCHEMAS = ServiceSchemas.declared(COLUMNS, SETTINGS.serving_max_batch, TOP_REASONS)
Event, EventBatch, Label, LabelBatch = SCHEMAS.event, SCHEMAS.events, SCHEMAS.label, SCHEMAS.labels
Score, Scores = SCHEMAS.score, SCHEMAS.scores
READINESS = Readiness()
CREDENTIALS = Credentials()

threadpool_limits(limits=1)  # one BLAS/OpenMP thread: a request is one small matrix


@bentoml.service(name=f"{COLUMNS.usecase}_scorer", workers=1, threads=API_THREADS,
                 traffic={"timeout": 30})
class Scorer:
    """Scores events with the registry's champion on features equal to the offline mart."""

    def __init__(self) -> None:
        CREDENTIALS.load(SETTINGS)  # no token, no service (unless BLUEPRINT_SERVING_AUTH=off)
        state = ServingState(SETTINGS, COLUMNS, pseudonymization_key(SETTINGS, create=False))
        self.requests = ScoringRequests.open(SETTINGS, state, SCHEMAS)
        READINESS.check = state.readiness
        self.follower = Follower(state, on_rotation=self.requests.rotate_logs).start()

    @bentoml.api(route="/score", output_spec=Score)
    def score(self, event: Event, /) -> Score | JSONResponse:  # type: ignore[valid-type]
        """Score one event: its score, alert, model version and reason codes."""
        return self.requests.score(event)

    @bentoml.api(route="/score_batch", output_spec=Scores)
    def score_batch(self, batch: EventBatch, /) -> Scores | JSONResponse:  # type: ignore[valid-type]
        """Score several events at once; the answers come in the order of the request."""
        return self.requests.score_batch(batch)

    @bentoml.api(route="/labels", output_spec=LabelsAdded)
    def labels(self, batch: LabelBatch, /) -> LabelsAdded | JSONResponse:  # type: ignore[valid-type]
        """Add labels known since the snapshot (the next snapshot brings them too): they count
        as offline (from the day after they are known). Logged (pseudonyms, never personal
        data) before they are applied, so a restart keeps them."""
        return self.requests.labels(batch)

    def __is_ready__(self) -> bool:
        return self.requests.state.readiness()[0]

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        """Stop following and close the log files (into ``closed/``)."""
        self.follower.stop()
        self.requests.close()


for middleware, options in service_middlewares(READINESS, CREDENTIALS):
    Scorer.add_asgi_middleware(middleware, **options)
