"""The real-time fraud scoring service: a payment in, its fraud probability out, in milliseconds.

For each payment the service computes the ``transaction_features`` row with the online feature
store (dbt's compiled SQL over the recent history, the card number replaced by its ``card_key``
on entry), scores it with the registry's champion (:class:`ScoringModel`, the code batch scoring
uses), writes the prediction log row, and only then answers. Requests that arrive while others
are being scored wait together and are scored in one call (:class:`Coalescer`): the features'
and the model's fixed cost per call is then shared, so the cost per request falls as the load
rises (a request alone is scored at once, with no batching delay), and each request still gets
its own answer or its own error.

It follows the pipeline without restarting: a background thread polls the registry's champion
and the serving snapshot's ``CURRENT`` pointer every ``BLUEPRINT_SERVING_POLL_SECONDS``, loads
what changed next to what is serving, and swaps one reference. At start-up the online state is
the current snapshot plus the payments of the prediction log after the snapshot's last day.

Routes: ``POST /score``, ``POST /score_batch``, ``POST /reports`` (fraud reports filed since the
snapshot), ``GET /livez``, ``GET /readyz`` (JSON, 503 with a reason when not ready), and
BentoML's OpenAPI page at ``/`` (``/docs.json``).
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import bentoml
import pandas as pd
from pydantic import (
    BaseModel,
    Field,
    RootModel,
)
from starlette.responses import JSONResponse
from threadpoolctl import threadpool_limits

from orchestration.lib.features.pseudonymize import key_fingerprint
from orchestration.lib.registry import registry
from orchestration.lib.serving.coalesce import Coalescer
from orchestration.lib.serving.online_features import OnlineFeatureStore
from orchestration.lib.serving.prediction_log import (
    REPORT_COLUMNS,
    PredictionLog,
    PredictionLogError,
    iter_records,
    new_request_id,
    rotation_token,
)
from orchestration.lib.serving.schemas import batch_model, body_model
from orchestration.lib.serving.scoring import ScoringModel, load_scoring_model
from orchestration.lib.serving.snapshot import current_snapshot
from orchestration.lib.serving.staging import RowConflictError
from orchestration.settings import get_settings, pseudonymization_key

SETTINGS = get_settings()
TOP_REASONS = 3
"""Reason codes returned with each score."""
API_THREADS = 16
"""Requests handled at once. Those waiting for the feature store together are scored together
(`Coalescer`); they overlap while waiting for the prediction log's group commit."""
GROUP_MAX_PAYMENTS = 64
"""The most payments scored in one joint call of waiting requests (a larger batch runs alone):
past a few dozen, a joint call saves little per payment and makes its first request wait."""
IDENTITY_COLUMNS = ("transaction_id", "tx_datetime", "tx_date", "card_key", "terminal_id")
"""Columns of a ``transaction_features`` row that identify the payment; the others are features."""

logger = logging.getLogger("bentoml.fraud_scorer")
threadpool_limits(limits=1)  # one BLAS/OpenMP thread: a request is one small matrix


# -- request and response bodies (the requests' from the declaration's source contracts) ----


DECLARED = SETTINGS.usecase.resolved_features()
assert DECLARED is not None and DECLARED.staging, "an online use case declares its features"

Transaction = body_model(
    "Transaction", "A payment as the payment processor sends it.", DECLARED.staging["events"]
)
TransactionBatch = batch_model(
    "TransactionBatch",
    "Several payments scored in one request (payments at the same instant count for each "
    "other, as offline).",
    "transactions", Transaction, SETTINGS.serving_max_batch,
    f"1 to {SETTINGS.serving_max_batch} payments (BLUEPRINT_SERVING_MAX_BATCH).",
)


class Reason(BaseModel):
    """A feature that pushed the score up."""

    feature: str = Field(description="Column of transaction_features.")
    value: float | None = Field(description="Its value for this payment (null: no history).")
    contribution: float = Field(
        description="How much it pushed the score up, compared with the training mean "
        "(logistic regression: log-odds; other models: probability)."
    )


class Score(BaseModel):
    """The verdict on one payment."""

    transaction_id: str = Field(description="The payment's id, as sent.")
    fraud_probability: float = Field(description="Probability that the payment is fraud.")
    alert: bool = Field(
        description="Whether the probability reaches the champion's alert threshold."
    )
    model_version: str = Field(description="The registry version of the model that scored it.")
    reasons: list[Reason] = Field(description=f"The top {TOP_REASONS} reason codes.")


class Scores(RootModel[list[Score]]):
    """The verdicts of a batch, in the order of the request."""


FraudReport = body_model(
    "FraudReport", "A fraud report as the disputes system files it.", DECLARED.staging["labels"]
)
ReportBatch = batch_model(
    "ReportBatch", "Reports filed since the serving snapshot (it brings them too once published).",
    "reports", FraudReport, SETTINGS.serving_max_batch,
    f"1 to {SETTINGS.serving_max_batch} reports.",
)


class ReportsAdded(BaseModel):
    changed: int = Field(description="Reports that changed the online state (new or earlier).")


# -- readiness ---------------------------------------------------------------------------------


class _Readiness:
    """The running instance's readiness check, for the /readyz middleware."""

    check: Callable[[], tuple[bool, dict[str, Any]]] = staticmethod(
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


class NotReady(Exception):
    """No request can be scored now; the message says why."""


def _error(status: int, message: str, **details: Any) -> JSONResponse:
    return JSONResponse({"error": message, **details}, status_code=status)


# -- the service -------------------------------------------------------------------------------


@bentoml.service(
    name="fraud_scorer",
    workers=1,
    threads=API_THREADS,
    traffic={"timeout": 30},
)
class FraudScorer:
    """Scores payments with the registry's champion on features equal to the offline mart."""

    def __init__(self) -> None:
        self._key = pseudonymization_key(SETTINGS)
        self._key_fingerprint = key_fingerprint(self._key)
        self._model: ScoringModel | None = None
        self._store: OnlineFeatureStore | None = None
        self._problems: dict[str, str] = {}
        """What keeps the model or the store from (re)loading: shown by /readyz."""
        self._frozen_objects = 0
        """Objects `gc.freeze` set aside after the last load (see `_settle_heap`)."""
        self._features_lock = threading.Lock()
        """Held while a request adds payments to the store, and to swap the store."""
        self._scorer = Coalescer(self._score_payments, max_items=GROUP_MAX_PAYMENTS)
        """Scores the payments of the requests waiting together in one call (see `_score`)."""
        self._journal: list[dict[str, Any]] | None = None
        """While a new snapshot loads: the rows and reports added to the old store meanwhile."""
        self._log = PredictionLog(
            SETTINGS.prediction_log_dir,
            SETTINGS.prediction_log_rotate_rows,
            SETTINGS.prediction_log_rotate_seconds,
        ).start()
        self._report_log = PredictionLog(
            SETTINGS.fraud_report_log_dir,
            SETTINGS.prediction_log_rotate_rows,
            SETTINGS.prediction_log_rotate_seconds,
            columns=REPORT_COLUMNS,
        ).start()
        self._stop = threading.Event()
        self._rotation_seen = rotation_token(SETTINGS.serving_dir)
        READINESS.check = self.readiness
        self._follower = threading.Thread(target=self._follow, name="follower", daemon=True)
        self._follower.start()

    # -- APIs ----------------------------------------------------------------------------------

    @bentoml.api(route="/score", output_spec=Score)
    def score(self, transaction: Transaction, /) -> Score | JSONResponse:
        """Score one payment: fraud probability, alert, model version and reason codes."""
        scored = self._score([transaction])
        return scored if isinstance(scored, JSONResponse) else scored[0]

    @bentoml.api(route="/score_batch", output_spec=Scores)
    def score_batch(self, batch: TransactionBatch, /) -> Scores | JSONResponse:
        """Score several payments at once; the answers come in the order of the request."""
        scored = self._score(batch.transactions)
        return scored if isinstance(scored, JSONResponse) else Scores(scored)

    @bentoml.api(route="/reports", output_spec=ReportsAdded)
    def reports(self, batch: ReportBatch, /) -> ReportsAdded | JSONResponse:
        """Add fraud reports filed since the snapshot (the next snapshot brings them too):
        they count from the day after they were filed, as offline. Logged (card_key, never
        the card number) before they are applied, so a restart keeps them."""
        request_id, logged_at = new_request_id(), datetime.now(UTC)
        store = self._store
        if store is None:
            return _error(503, "not ready: the online state is not loaded yet")
        staged = [
            {"request_id": request_id, "logged_at": logged_at,
             **store.stage_label(report.model_dump())}
            for report in batch.reports
        ]
        try:
            self._report_log.write(staged)
        except PredictionLogError as failure:
            logger.error("fraud report log write failed: %s", failure)
            return _error(503, "the reports could not be logged; retry the request")
        with self._features_lock:
            assert self._store is not None
            changed = self._store.add_staged_labels(staged)
            if self._journal is not None:
                self._journal.append({"reports": staged})
        return ReportsAdded(changed=changed)

    def __is_ready__(self) -> bool:
        return self.readiness()[0]

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        """Stop following and close the prediction log file (into ``closed/``)."""
        self._stop.set()
        self._follower.join(timeout=10)
        self._log.close()
        self._report_log.close()

    # -- scoring -------------------------------------------------------------------------------

    def _score(self, transactions: Sequence[Transaction]) -> list[Score] | JSONResponse:
        request_id = new_request_id()
        try:
            scored = self._scorer([t.model_dump() for t in transactions])
        except NotReady as reason:
            return _error(503, f"not ready: {reason}")
        except RowConflictError as conflict:
            return _error(409, str(conflict))
        except ValueError as invalid:  # what the schema cannot see (never echoes the card)
            return _error(400, str(invalid))
        logged_at = datetime.now(UTC)
        try:
            self._log.write([_log_row(request_id, logged_at, row, score) for row, score in scored])
        except PredictionLogError as failure:
            logger.error("prediction log write failed: %s", failure)
            return _error(503, "the prediction could not be logged; retry the request")
        return [score for _, score in scored]

    def _score_payments(
        self, payments: list[dict[str, Any]]
    ) -> list[tuple[dict[str, Any], Score]]:
        """Features, score and reason codes of payments, of one or several requests at once
        (``self._scorer`` groups the requests that wait together): each payment's
        ``transaction_features`` row with its answer."""
        model = self._ready_model()
        with self._features_lock:
            store = self._store
            assert store is not None  # _ready_model checked it
            if store.definitions_hash != model.feature_definitions_hash:
                raise NotReady("the online state changed while the request waited")
            rows = store.features_batch(payments)
            if self._journal is not None:
                self._journal.append({"transactions": rows})
        return list(zip(rows, answers(model, rows), strict=True))

    def _ready_model(self) -> ScoringModel:
        ready, state = self.readiness()
        if not ready:
            raise NotReady(state["reason"])
        assert self._model is not None
        return self._model

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether payments can be scored, with what, and why not."""
        model, store = self._model, self._store
        state: dict[str, Any] = {
            "ready": False,
            "model_version": model.version if model else None,
            "snapshot_version": store.snapshot_version if store else None,
            "gc_frozen_objects": self._frozen_objects,
        }
        if self._problems:
            state["problems"] = dict(self._problems)
        if model is None:
            reason = self._problems.get("model", "no champion model loaded yet")
        elif store is None:
            reason = self._problems.get("snapshot", "the online state is not loaded yet")
        elif model.feature_definitions_hash != store.definitions_hash:
            reason = (
                f"champion {model.version} was trained on feature definitions "
                f"{model.feature_definitions_hash[:12]}, the online state computes "
                f"{store.definitions_hash[:12]}: publish a matching snapshot or roll back"
            )
        elif model.facts.pseudonymization_key_fingerprint != self._key_fingerprint:
            reason = (
                f"champion {model.version} saw card keys of another pseudonymization key"
            )
        else:
            state["ready"] = True
            return True, state
        state["reason"] = reason
        return False, state

    # -- following the registry and the snapshots ----------------------------------------------

    def _follow(self) -> None:
        while True:
            token = rotation_token(SETTINGS.serving_dir)
            if token != self._rotation_seen:  # `blueprint replay` wants the logs closed now
                self._rotation_seen = token
                self._log.rotate()
                self._report_log.rotate()
            loaded = (self._model, self._store)
            followers = (("model", self._follow_champion), ("snapshot", self._follow_snapshot))
            for name, follow in followers:
                try:
                    follow()
                    self._problems.pop(name, None)
                except Exception as problem:  # keep serving what is loaded; /readyz says why
                    if self._problems.get(name) != str(problem):
                        logger.warning("cannot follow the %s: %s", name, problem)
                    self._problems[name] = str(problem)
            if any(now is not before for now, before in zip(
                (self._model, self._store), loaded, strict=True
            )):
                self._frozen_objects = _settle_heap()
            if self._stop.wait(SETTINGS.serving_poll_seconds):
                return

    def _follow_champion(self) -> None:
        version = registry.champion_version(SETTINGS)
        if self._model is None or self._model.version != version:
            model = load_scoring_model(version, SETTINGS)
            previous, self._model = self._model, model
            logger.info(
                "serving model %s (was %s)", version, previous.version if previous else None
            )

    def _follow_snapshot(self) -> None:
        version = current_snapshot(SETTINGS.snapshot_dir).version
        store = self._store
        if store is None:
            self._store = self._start_store()
            logger.info("serving snapshot %s", self._store.snapshot_version)
        elif store.snapshot_version != version:
            with self._features_lock:
                self._journal = []
            try:
                new = OnlineFeatureStore.from_snapshot(SETTINGS.snapshot_dir, carry_over=store)
                assert new.snapshot_last_day is not None
                _prepare(new)
                with self._features_lock:
                    _replay_journal(new, self._journal)
                    self._store = new
            finally:
                with self._features_lock:
                    self._journal = None
            logger.info(
                "serving snapshot %s (was %s)", new.snapshot_version, store.snapshot_version
            )

    def _start_store(self) -> OnlineFeatureStore:
        """The current snapshot plus the payments and reports logged after its last day."""
        store = OnlineFeatureStore.from_snapshot(SETTINGS.snapshot_dir)
        assert store.snapshot_last_day is not None
        last_day = store.snapshot_last_day
        payments = store.add_staged_events(
            record
            for record in iter_records(SETTINGS.prediction_log_dir, include_open=True)
            if datetime.fromisoformat(record["tx_datetime"]).date() > last_day
        )
        reports = store.add_staged_labels(
            record
            for record in iter_records(SETTINGS.fraud_report_log_dir, include_open=True)
            if datetime.fromisoformat(record["reported_at"]).date() > last_day
        )
        logger.info(
            "restored %d payments and %d reports after %s from the logs", payments, reports,
            last_day,
        )
        _prepare(store)
        return store


def _settle_heap() -> int:
    """Keep what the service loaded out of the cyclic garbage collector's way.

    The imports, the model and the online store (about 290,000 objects on the default world)
    live for hours. Each full collection walks all of them and holds the GIL meanwhile: about
    170 ms in which no request moves, which at 50 requests a second is a p99 of 120 to 180 ms
    instead of 17. After each load (the start, a new champion, a new snapshot) the follower
    collects once and freezes what is left (`gc.freeze`), so later collections walk only what
    requests allocated since (over 2,000 requests in-process: the longest 27.6 ms, 180.7 ms
    without the freeze). What was frozen before is unfrozen first,
    so a replaced store's cycles are collected: one pause per load, not every few thousand
    requests. Refcounting frees frozen objects as usual.

    Returns how many objects were frozen: counted here, once, because `gc.get_freeze_count`
    walks the whole frozen list (21 ms for 291,000 objects in the service), far too slow for a
    request's readiness check.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def _prepare(store: OnlineFeatureStore) -> None:
    """Compute the terminal-day rows of the day after the snapshot now, not in a request."""
    assert store.snapshot_last_day is not None
    store.prepare_day(store.snapshot_last_day + timedelta(days=1))


def _replay_journal(store: OnlineFeatureStore, journal: list[dict[str, Any]] | None) -> None:
    """Add to ``store`` what requests added to the old store while it loaded."""
    assert store.snapshot_last_day is not None
    for entry in journal or []:
        if "transactions" in entry:
            store.add_staged_events(
                row for row in entry["transactions"] if row["tx_date"] > store.snapshot_last_day
            )
        else:
            store.add_staged_labels(entry["reports"])


def answers(model: ScoringModel, rows: list[dict[str, Any]]) -> list[Score]:
    """The answers to payments, from their ``transaction_features`` rows: the champion's
    probability, alert and reason codes, in one ``score_and_explain`` call."""
    probabilities, explanations = model.score_and_explain(pd.DataFrame(rows), TOP_REASONS)
    return [
        Score(
            transaction_id=row["transaction_id"],
            fraud_probability=float(probability),
            alert=bool(alert),
            model_version=model.version,
            reasons=[
                Reason(feature=r.feature, value=_finite(r.value), contribution=r.contribution)
                for r in reasons
            ],
        )
        for row, probability, alert, reasons in zip(
            rows, probabilities, model.alerts(probabilities), explanations, strict=True
        )
    ]


def _finite(value: float) -> float | None:
    return value if value == value else None  # NaN (a missing feature) is null in JSON


def _log_row(
    request_id: str, logged_at: datetime, row: Mapping[str, Any], score: Score
) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "logged_at": logged_at,
        "transaction_id": row["transaction_id"],
        "tx_datetime": row["tx_datetime"],
        "card_key": row["card_key"],
        "terminal_id": row["terminal_id"],
        "amount": row["amount"],
        "model_version": score.model_version,
        "features": {k: v for k, v in row.items() if k not in IDENTITY_COLUMNS},
        "fraud_probability": score.fraud_probability,
        "alert": score.alert,
    }


FraudScorer.add_asgi_middleware(ReadinessEndpoint)
