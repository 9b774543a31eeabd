"""The service is generic over the declaration: a use case other than fraud (``rides``: a ride
scored when it is booked, its complaints as labels, other names everywhere) gets its own request
bodies, answers and log columns from its declaration alone, with no code of its own.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestration.lib.core.usecase import load_usecase
from orchestration.lib.serving.schemas import ServiceSchemas
from orchestration.lib.serving.served import ServedColumns
from orchestration.settings import USECASES_DIR

RIDES = """\
name: rides
task: binary_classification
description: Score every ride when it is booked; complaints are its labels.
sources:
  bookings:
    version: 1
    format: csv
    key: [booking_id]
    columns:
      - {name: booking_id, pattern: "b-[0-9]{1,9}", description: The booking's id.}
      - {name: booked_at, type: timestamp, rules: [on_partition_date]}
      - {name: rider_phone, pii: true, pseudonym: rider_key, description: The rider's phone.}
      - {name: driver_id, rules: [digits], pattern: "[0-9]{1,9}"}
      - {name: fare, type: double, rules: [finite, non_negative]}
  complaints:
    version: 1
    format: csv
    key: [booking_id]
    columns:
      - {name: booking_id, pattern: "b-[0-9]{1,9}"}
      - {name: rider_phone, pii: true, pseudonym: rider_key}
      - {name: filed_at, type: timestamp, rules: [on_partition_date]}
data:
  table: ride_training_set
  features_table: ride_features
  row_id: booking_id
  event_time: booked_at
  partition_date: booking_date
  entities: {rider: rider_key, driver: driver_id}
label:
  column: complained
  known_at: complaint_date
  source: complaints
  maturity: 2d
  time: filed_at
features:
  declared:
    events: bookings
    row:
      - {name: fare}
    windowed:
      rider:
        entity: rider
        clock: event
        windows: [1h, 1d]
        aggregations:
          - {name: "rider_rides_{window}", op: count}
      driver:
        entity: driver
        clock: day
        windows: [7d]
        aggregations:
          - {name: "driver_complaint_rate_{window}", op: label_rate}
  train_on: [fare, rider_rides_1hour, rider_rides_1day, driver_complaint_rate_7day]
protocol: {train: 5d, delay: 2d, test: 3d, folds: 2, fold_step: 3d}
models:
  name: ride_complaint_predictor
  seed: 0
  families:
    logistic_regression:
      estimator: sklearn.linear_model.LogisticRegression
      grid: {C: [1.0]}
metrics:
  average_precision: {kind: average_precision}
selection_metric: average_precision
gate:
  primary: {metric: average_precision, margin: 0.005, floor: 0.05}
  required_checks: []
serving:
  mode: online
  score: complaint_probability
  request:
    rename: {booked_at: at}
monitoring:
  traffic: prediction_log
  drift_share_threshold: 0.5
  decay: {metric: average_precision, drop: 0.1}
  min_post_drift_days: 3
"""


@pytest.fixture(scope="module")
def rides(tmp_path_factory: pytest.TempPathFactory) -> ServedColumns:
    folder: Path = tmp_path_factory.mktemp("usecases")
    (folder / "rides.yaml").write_text(RIDES)
    return ServedColumns.declared(load_usecase("rides", folder, environ={}))


def test_another_use_case_names_its_own_columns_everywhere(rides: ServedColumns) -> None:
    assert (rides.events_source, rides.label_source) == ("bookings", "complaints")
    assert (rides.row_id, rides.row_field, rides.event_time) == ("booking_id", "booking_id",
                                                                 "booked_at")
    assert rides.events == ("booking_id", "booked_at", "rider_key", "driver_id", "fare")
    assert rides.prediction_columns == (
        "request_id", "logged_at", "booking_id", "booked_at", "rider_key", "driver_id", "fare",
        "model_version", "features", "complaint_probability", "alert",
    )
    assert rides.label_columns == ("request_id", "logged_at", "booking_id", "rider_key",
                                   "filed_at")
    assert rides.features == ("fare", "rider_rides_1hour", "rider_rides_1day",
                              "driver_complaint_rate_7day")
    assert (rides.label_time, rides.label_known_at) == ("filed_at", "complaint_date")


def test_another_use_case_gets_its_own_bodies_and_answers(rides: ServedColumns) -> None:
    schemas = ServiceSchemas.declared(rides, max_batch=3, top_reasons=2)
    booking = {"booking_id": "b-1", "at": "2024-03-02T10:00:00", "rider_phone": "+44 20 7946 0958",
               "driver_id": "77", "fare": 18.5}
    assert list(schemas.event.model_fields) == list(booking)
    parsed = schemas.event.model_validate_json(json.dumps(booking))
    batch = schemas.events.model_validate_json(json.dumps({"bookings": [booking, booking]}))
    assert len(schemas.batch_events(batch)) == 2 and schemas.batch_events(batch)[0] == parsed
    with pytest.raises(ValidationError, match="bookings"):
        schemas.events.model_validate_json(json.dumps({"bookings": [booking] * 4}))
    with pytest.raises(ValidationError, match="Extra inputs") as refused:
        schemas.event.model_validate_json(json.dumps({**booking, "timestamp": "x"}))
    assert booking["rider_phone"] not in str(refused.value)  # never echoes personal data
    labels = schemas.labels.model_validate_json(json.dumps({"complaints": [
        {"booking_id": "b-1", "rider_phone": "+44 20 7946 0958", "filed_at": "2024-03-03T09:00:00"}
    ]}))
    assert schemas.batch_labels(labels)[0].booking_id == "b-1"
    assert set(schemas.score.model_fields) == {"booking_id", "complaint_probability", "alert",
                                               "model_version", "reasons"}


def test_a_prediction_row_keeps_the_staged_event_and_the_declared_features_only(
    rides: ServedColumns,
) -> None:
    event = {"booking_id": "b-1", "booked_at": datetime(2024, 3, 2, 10), "rider_key": "k" * 64,
             "driver_id": "77", "fare": 18.5, "booking_date": None, "_source_file": None}
    features = {"booking_id": "b-1", "booking_date": None, "fare": 18.5,
                "rider_rides_1hour": 1, "rider_rides_1day": 3, "driver_complaint_rate_7day": 0.0}
    row = rides.prediction_row("r", datetime(2024, 3, 2, 10, tzinfo=UTC), event, features, "v1",
                               0.2, False)
    assert tuple(row) == rides.prediction_columns
    assert row["features"] == {k: features[k] for k in rides.features}
    assert row["complaint_probability"] == 0.2 and row["rider_key"] == "k" * 64


def test_a_snapshot_staging_requests_otherwise_is_told_apart(rides: ServedColumns) -> None:
    fraud = ServedColumns.declared(load_usecase("fraud", USECASES_DIR, environ={}))
    assert rides.same_requests(rides.staging)
    assert not rides.same_requests(fraud.staging)
    described = json.loads(json.dumps(rides.staging))
    described["events"]["columns"][0]["description"] = "edited"  # a description changes nothing
    assert rides.same_requests(described)
    renamed = json.loads(json.dumps(rides.staging))
    renamed["events"]["columns"][1]["field"] = "booked_at"
    assert not rides.same_requests(renamed)


def test_a_batch_use_case_has_no_served_columns() -> None:
    with pytest.raises(ValueError, match="not served online"):
        ServedColumns.declared(load_usecase("churn", USECASES_DIR, environ={}))
