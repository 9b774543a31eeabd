"""The serving benchmark's peer: a minimal hand-written FastAPI app doing the service's work.

What a user would write instead of the BentoML service, doing the same work per request: the
service's request and response models (imported, so validation and response fields are
identical), the same online features from the same serving snapshot, the champion's score and
reason codes (the service's `answers`), and the prediction log row made durable before the
answer. It lacks what is not per-request work: following the registry and the snapshots,
readiness checks, fraud reports.

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

from bentos.fraud_scorer.service import (
    IDENTITY_COLUMNS,
    Score,
    Scores,
    Transaction,
    TransactionBatch,
    answers,
)
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
    store = OnlineFeatureStore.from_snapshot(settings.snapshot_dir, pseudonymization_key(settings))
    assert store.snapshot_last_day is not None
    store.prepare_day(store.snapshot_last_day + timedelta(days=1))
    log = PredictionLog(
        settings.prediction_log_dir,
        settings.prediction_log_rotate_rows,
        settings.prediction_log_rotate_seconds,
    ).start()
    _loaded.update(store=store, model=load_champion(settings), log=log)
    yield
    log.close()


app = FastAPI(title="fraud scorer (FastAPI peer)", lifespan=lifespan)


@app.get("/livez")
def livez() -> dict[str, bool]:
    return {"live": True}


@app.post("/score")
async def score(request: Request) -> Score:
    body = await request.body()
    return (await run_in_threadpool(_score, Transaction, body))[0]


@app.post("/score_batch")
async def score_batch(request: Request) -> Scores:
    body = await request.body()
    return Scores(await run_in_threadpool(_score, TransactionBatch, body))


def _score(kind: type[Transaction | TransactionBatch], body: bytes) -> list[Score]:
    """Validate the body as the service does (strict, from JSON: FastAPI's own body parameters
    validate parsed Python objects, which the strict models refuse), then score it."""
    try:
        parsed = kind.model_validate_json(body)
    except ValidationError as invalid:
        errors = invalid.errors(include_input=False, include_context=False)
        raise HTTPException(400, errors) from invalid
    transactions = parsed.transactions if isinstance(parsed, TransactionBatch) else [parsed]
    store: OnlineFeatureStore = _loaded["store"]
    model: ScoringModel = _loaded["model"]
    try:
        rows = store.features_batch([t.model_dump() for t in transactions])
    except RowConflictError as conflict:
        raise HTTPException(409, str(conflict)) from conflict
    except ValueError as invalid:
        raise HTTPException(400, str(invalid)) from invalid
    scores = answers(model, rows)  # the service's answer-building, as a user would import it
    request_id, logged_at = new_request_id(), datetime.now(UTC)
    _loaded["log"].write(
        [
            {
                "request_id": request_id,
                "logged_at": logged_at,
                "transaction_id": row["transaction_id"],
                "tx_datetime": row["tx_datetime"],
                "card_key": row["card_key"],
                "terminal_id": row["terminal_id"],
                "amount": row["amount"],
                "model_version": s.model_version,
                "features": {k: v for k, v in row.items() if k not in IDENTITY_COLUMNS},
                "fraud_probability": s.fraud_probability,
                "alert": s.alert,
            }
            for row, s in zip(rows, scores, strict=True)
        ]
    )
    return scores
