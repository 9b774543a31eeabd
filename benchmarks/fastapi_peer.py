"""The serving benchmark's peer: a minimal hand-written FastAPI app doing the service's work.

What a user would write instead of the BentoML service, doing the same work per request: the
service's request and response models (imported, so validation and response fields are
identical), the same online features from the same serving snapshot, the champion's score and
reason codes (the service's `answers`), and the prediction log row made durable before the
answer. It lacks what is not per-request work: following the registry and the snapshots,
readiness checks, labels.

    BLUEPRINT_HOME=... .venv/bin/python -m uvicorn benchmarks.fastapi_peer:app --port 3011
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from bentos.scorer.service import COLUMNS, SCHEMAS, Event, EventBatch, Score, Scores
from orchestration.lib.serving.guard import MAX_BODY_BYTES, BearerAuth, Credentials, JsonBodies
from orchestration.lib.serving.online_features import OnlineFeatureStore
from orchestration.lib.serving.prediction_log import PredictionLog, new_request_id
from orchestration.lib.serving.scoring import ScoringModel, load_champion
from orchestration.lib.serving.staging import RowConflictError
from orchestration.settings import get_settings, pseudonymization_key

_loaded: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """Load the snapshot, the champion and the prediction log before serving; close the log."""
    settings = get_settings()
    CREDENTIALS.load(settings)
    store = OnlineFeatureStore.from_snapshot(settings.snapshot_dir, pseudonymization_key(settings))
    assert store.snapshot_last_day is not None
    store.prepare_day(store.snapshot_last_day + timedelta(days=1))
    log = PredictionLog(
        settings.prediction_log_dir,
        settings.prediction_log_rotate_rows,
        settings.prediction_log_rotate_seconds,
        columns=COLUMNS.prediction_columns,
    ).start()
    _loaded.update(store=store, model=load_champion(settings), log=log)
    yield
    log.close()


CREDENTIALS = Credentials()
app = FastAPI(title=f"{COLUMNS.usecase} scorer (FastAPI peer)", lifespan=lifespan)
# the service's guard of writes, the same ASGI classes: the comparison stays fair
app.add_middleware(JsonBodies, max_bytes=MAX_BODY_BYTES)
app.add_middleware(BearerAuth, credentials=CREDENTIALS)


@app.get("/livez")
def livez() -> dict[str, bool]:
    return {"live": True}


@app.post("/score")
async def score(request: Request) -> Score:  # type: ignore[valid-type]
    body = await request.body()
    return (await run_in_threadpool(_score, Event, body))[0]


@app.post("/score_batch")
async def score_batch(request: Request) -> Scores:  # type: ignore[valid-type]
    body = await request.body()
    return Scores(await run_in_threadpool(_score, EventBatch, body))


def _score(kind: type, body: bytes) -> list[Any]:
    """Validate the body as the service does (strict, from JSON: FastAPI's own body parameters
    validate parsed Python objects, which the strict models refuse), then score it."""
    try:
        parsed = kind.model_validate_json(body)
    except ValidationError as invalid:
        errors = invalid.errors(include_input=False, include_context=False)
        raise HTTPException(400, errors) from invalid
    events = SCHEMAS.batch_events(parsed) if kind is EventBatch else [parsed]
    store: OnlineFeatureStore = _loaded["store"]
    model: ScoringModel = _loaded["model"]
    try:
        staged = store.staged_features([e.model_dump() for e in events])
    except RowConflictError as conflict:
        raise HTTPException(409, str(conflict)) from conflict
    except ValueError as invalid:
        raise HTTPException(400, str(invalid)) from invalid
    # the service's answer-building, as a user would import it
    answers = SCHEMAS.answers(model, [features for _, features in staged])
    request_id, logged_at = new_request_id(), datetime.now(UTC)
    _loaded["log"].write([
        COLUMNS.prediction_row(request_id, logged_at, event, features, a.model_version,
                               getattr(a, COLUMNS.score), a.alert)
        for (event, features), a in zip(staged, answers, strict=True)
    ])
    return answers
