"""Helpers of the scoring service tests: a small world built by the real pipeline code, models
trained on it and registered, and an HTTP client of a real ``bentoml serve``."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import duckdb
import httpx
import pandas as pd

from orchestration.lib.features.pseudonymize import key_fingerprint
from orchestration.lib.registry import registry
from orchestration.lib.registry.facts import (
    DataWindow,
    ModelFacts,
    TrainingData,
    estimator_params,
    frame_fingerprint,
)
from orchestration.lib.serving.guard import auth_headers
from orchestration.lib.training.lineage import id_columns
from orchestration.settings import Settings, get_settings
from tests.features.raw_world import luhn_complete
from tests.serving.serving_world import ServingWorld
from tests.training.families import LOGISTIC_REGRESSION, build_pipeline

LABEL = "is_fraud"
"""The ``training_set`` column the test models learn (their quality is not under test)."""


def training_rows(world: ServingWorld) -> pd.DataFrame:
    """``training_set`` of the build the snapshot comes from (days up to the cutoff)."""
    with duckdb.connect(str(world.as_of.warehouse), read_only=True) as conn:
        return conn.sql("select * from training_set").df()


def register_model(
    rows: pd.DataFrame,
    settings: Settings,
    definitions_hash: str,
    key_hex: str,
    c: float = 1.0,
) -> str:
    """Fit a small logistic regression on ``rows`` and save it with complete facts."""
    features = list(get_settings().usecase.features.baseline)
    pipeline = build_pipeline(LOGISTIC_REGRESSION, {"C": c}).fit(rows[features], rows[LABEL])
    days = pd.to_datetime(rows["tx_date"]).dt.date
    window = DataWindow(
        start=days.min(), end=days.max(), rows=len(rows),
        fingerprint=frame_fingerprint(rows[[*features, LABEL]]),
    )
    facts = ModelFacts(
        params=estimator_params(pipeline),
        training_data=TrainingData(train=window, test=window, table="training_set"),
        features=features,
        feature_definitions_hash=definitions_hash,
        pseudonymization_key_fingerprint=key_fingerprint(key_hex.encode()),
        fold_metrics=[],
        test_metrics={
            "average_precision": 0.5, "card_precision_top_k": 0.1
        },
        training_seconds=0.1,
        reference_means=rows[features].astype(float).mean().to_dict(),
    )
    return registry.save_model(pipeline, facts, settings=settings)


def new_pan(n: int) -> str:
    """A Luhn-valid card number no simulated customer has (the simulator's start with 4)."""
    return luhn_complete(f"9{n:014d}")


@dataclass
class Traffic:
    """What the tests sent and what the service acknowledged."""

    acknowledged: int = 0
    """Payments answered 200 by /score or /score_batch."""
    pans: set[str] = field(default_factory=set)


class ScoringClient:
    """POSTs JSON to the service, with the home's bearer token, and counts what it
    acknowledges."""

    def __init__(self, url: str, traffic: Traffic, settings: Settings) -> None:
        self.url = url
        self.traffic = traffic
        headers = {"Content-Type": "application/json", **auth_headers(settings)}
        self.http = httpx.Client(base_url=url, timeout=30, headers=headers)

    def post(self, path: str, body: Any) -> httpx.Response:
        for tx in _payments(path, body):
            if isinstance(tx, dict) and isinstance(tx.get("card_number"), str):
                self.traffic.pans.add(tx["card_number"])
        response = self.http.post(path, json=body)
        if response.status_code == 200 and path == "/score":
            self.traffic.acknowledged += 1
        elif response.status_code == 200 and path == "/score_batch":
            self.traffic.acknowledged += len(response.json())
        return response

    def score(self, tx: dict[str, Any]) -> httpx.Response:
        return self.post("/score", as_json(tx))

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)


def _payments(path: str, body: Any) -> Iterable[Any]:
    if path == "/score":
        return [body]
    if isinstance(body, dict) and isinstance(body.get("transactions"), list):
        return body["transactions"]
    if isinstance(body, dict) and isinstance(body.get("reports"), list):
        return body["reports"]
    return []


def as_json(tx: dict[str, Any]) -> dict[str, Any]:
    """A request (``serving_world.requests``) as the processor's JSON."""
    when = tx["timestamp"]
    return {**tx, "timestamp": when.isoformat() if isinstance(when, datetime) else when,
            "amount": float(tx["amount"])}


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def feature_mismatches(logged: pd.DataFrame, offline: pd.DataFrame, tolerance: float) -> list[str]:
    """(transaction, feature) pairs where the logged online value differs from the offline mart."""
    ids = id_columns(get_settings("fraud").usecase)
    features = [c for c in offline.columns if c not in ids]
    found = []
    for row in logged.to_dict("records"):
        expected = offline.loc[row["transaction_id"]]
        for feature in features:
            online, want = row[f"features.{feature}"], expected[feature]
            if _missing(online) and _missing(want):
                continue
            if _missing(online) or _missing(want) or abs(float(online) - float(want)) > tolerance:
                found.append(f"{row['transaction_id']}.{feature}: online {online}, offline {want}")
        if row["card_key"] != expected["card_key"] or row["terminal_id"] != expected["terminal_id"]:
            found.append(f"{row['transaction_id']}: another card or terminal")
    return found


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def day_start(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())
