"""The service's request bodies come from the declaration: each contract column a field, its type
and rules the field's checks, its description the OpenAPI page's; any other source gets its own."""

from __future__ import annotations

from datetime import datetime

import pytest
from pydantic import ValidationError

from orchestration.lib.serving.schemas import batch_model, body_model
from tests.features.raw_world import declared_features

PAYMENT = {"transaction_id": "t-1", "timestamp": "2024-03-02T10:00:00",
           "card_number": "4539578763621486", "terminal_id": "0042", "amount": 12.5}


def payment_model():
    return body_model("Transaction", "A payment.", declared_features().staging["events"])


def test_fraud_payments_have_the_contracts_fields_under_their_request_names():
    model = payment_model()
    assert list(model.model_fields) == ["transaction_id", "timestamp", "card_number",
                                        "terminal_id", "amount"]
    assert all(field.description for field in model.model_fields.values())
    parsed = model.model_validate_json(
        '{"transaction_id": "t-1", "timestamp": "2024-03-02T10:00:00", '
        '"card_number": "4539578763621486", "terminal_id": "0042", "amount": 12.5}'
    )
    assert parsed.timestamp == datetime(2024, 3, 2, 10)


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [({"card_number": "4539578763621487"}, "card_number", "Luhn"),
     ({"card_number": "45395787636214"}, "card_number", "at least 16"),
     ({"timestamp": "2024-03-02T10:00:00+01:00"}, "timestamp", "without a time zone"),
     ({"amount": -1}, "amount", "greater than or equal to 0"),
     ({"terminal_id": "T-1"}, "terminal_id", "pattern"),
     ({"merchant": "x"}, "merchant", "Extra inputs")],
)
def test_a_body_the_contract_refuses_names_the_field_and_never_echoes_the_input(
    change, field, says
):
    import json

    with pytest.raises(ValidationError) as raised:
        payment_model().model_validate_json(json.dumps({**PAYMENT, **change}))
    message = str(raised.value)
    assert field in message and says in message, message
    assert PAYMENT["card_number"] not in message


def test_any_source_gets_a_body_of_its_own_columns():
    staging = {"columns": [
        {"name": "trip_id", "type": "string", "rules": [], "pii": False, "pseudonym": None,
         "field": "trip_id", "description": None},
        {"name": "started_at", "type": "timestamp", "rules": [], "pii": False,
         "pseudonym": None, "field": "started", "description": "When the trip started."},
        {"name": "distance_km", "type": "double", "rules": ["finite"], "pii": False,
         "pseudonym": None, "field": "distance_km", "description": None},
    ], "dates": {}}
    trip = body_model("Trip", "A trip.", staging)
    batch = batch_model("Trips", "Trips.", "trips", trip, 3, "1 to 3 trips.")
    parsed = batch.model_validate_json(
        '{"trips": [{"trip_id": "a", "started": "2024-03-02T10:00:00", "distance_km": -2.5}]}'
    )
    nullable = body_model("Tip", "A tip.", {"columns": [
        {"name": "tip", "type": "double", "rules": [], "pii": False, "pseudonym": None,
         "field": "tip", "nullable": True, "description": None}], "dates": {}})
    assert nullable.model_validate_json("{}").tip is None
    assert parsed.trips[0].distance_km == -2.5  # negative allowed: the rule is finite only
    with pytest.raises(ValidationError, match="trips"):
        batch.model_validate_json('{"trips": []}')
