"""Online staging from the declaration: a request's row staged as the dbt staging model stages a
delivered one (typed, checked, personal data replaced by its pseudonym), and refused when the
staged table and the contract disagree."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from orchestration.lib.features.pseudonymize import pseudonymize
from orchestration.lib.serving.staging import RowStaging, StagingError
from tests.features.raw_world import declared_features

KEY = b"k" * 32
EVENT_COLUMNS = ["transaction_id", "tx_datetime", "tx_date", "card_key", "terminal_id", "amount",
                 "_source_file"]
"""stg_transactions' columns, in its order."""
LABEL_COLUMNS = ["transaction_id", "card_key", "reported_at", "report_date"]


def events() -> RowStaging:
    return RowStaging(declared_features().staging["events"], EVENT_COLUMNS)


REQUEST = {"transaction_id": "t-1", "timestamp": "2024-03-02T23:59:59.500000",
           "card_number": "4000000000000002", "terminal_id": "0042", "amount": "12.5"}


def test_a_request_is_staged_as_the_staging_model_stages_a_delivered_row():
    staged = dict(zip(EVENT_COLUMNS, events().stage(REQUEST, KEY), strict=True))
    assert staged == {
        "transaction_id": "t-1",
        "tx_datetime": datetime(2024, 3, 2, 23, 59, 59, 500000),
        "tx_date": date(2024, 3, 2),  # the partition date: the event time's day
        "card_key": pseudonymize("4000000000000002", KEY),
        "terminal_id": "0042",
        "amount": 12.5,
        "_source_file": None,  # lineage of the raw zone: an online row has none
    }
    assert "4000000000000002" not in repr(staged)
    assert events().fields == ["transaction_id", "timestamp", "card_number", "terminal_id",
                               "amount"]


def test_a_row_staged_before_is_staged_again_the_same():
    staging = events()
    staged = staging.stage(REQUEST, KEY)
    logged = {c: (v.isoformat() if isinstance(v, datetime | date) else v)
              for c, v in zip(EVENT_COLUMNS, staged, strict=True)}
    assert staging.restage(logged) == staged


def test_a_label_is_staged_with_the_day_it_became_known():
    labels = RowStaging(declared_features().staging["labels"], LABEL_COLUMNS)
    staged = labels.stage({"transaction_id": "t-1", "card_number": "4000000000000002",
                           "reported_at": datetime(2024, 3, 5, 8)}, KEY)
    assert staged == ("t-1", pseudonymize("4000000000000002", KEY), datetime(2024, 3, 5, 8),
                      date(2024, 3, 5))


@pytest.mark.parametrize(
    ("change", "says"),
    [({"amount": "nan"}, "amount 'nan' is not finite"),
     ({"amount": -1}, "amount -1 is negative"),
     ({"terminal_id": "T1"}, "terminal_id 'T1' is not digits"),
     ({"amount": 1.7e308}, "amount 1.7e[+]308 is above 100000"),
     ({"terminal_id": "4000000000000002"}, r"terminal_id is not of the shape \[0-9\]\{1,12\}"),
     ({"transaction_id": "t 1"}, "transaction_id is not of the shape"),
     ({"transaction_id": "t" * 300}, "transaction_id is longer than 256 characters"),
     ({"transaction_id": "4111111111111111"},
      r"transaction_id looks like personal data \(card number \(PAN\)\)"),
     ({"timestamp": "2024-03-02T10:00:00+01:00"}, "has a time zone"),
     ({"timestamp": "0001-01-01T00:00:00"}, "outside the years 1900-2199"),
     ({"card_number": None}, "card_number is missing"),
     ({"transaction_id": None}, "transaction_id is missing")],
)
def test_a_row_the_contract_refuses_is_a_value_error_naming_the_field(change, says):
    with pytest.raises(ValueError, match=says):
        events().stage({**REQUEST, **change}, KEY)


def test_a_staged_table_the_contract_does_not_make_is_refused():
    with pytest.raises(StagingError, match=r"missing \['merchant'\]"):
        RowStaging(declared_features().staging["events"], [*EVENT_COLUMNS, "merchant"])
    with pytest.raises(StagingError, match=r"not staged \['amount'\]"):
        RowStaging(declared_features().staging["events"],
                   [c for c in EVENT_COLUMNS if c != "amount"])


def test_a_nullable_contract_column_may_be_missing_online_as_offline():
    spec = {"columns": [
        {"name": "id", "type": "string", "rules": [], "pii": False, "pseudonym": None,
         "field": "id", "nullable": False},
        {"name": "tip", "type": "double", "rules": ["finite"], "pii": False, "pseudonym": None,
         "field": "tip", "nullable": True},
    ], "dates": {}}
    staging = RowStaging(spec, ["id", "tip"])
    assert staging.stage({"id": "a"}, KEY) == ("a", None)
    assert staging.restage({"id": "a", "tip": None}) == ("a", None)
    with pytest.raises(ValueError, match="id is missing"):
        staging.stage({"tip": 1.0}, KEY)
