"""A use case is a declaration: loaded, validated with errors that name the file and the field,
and overridden per field from the environment."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from orchestration.lib.core.cards import PAN_LENGTH, example_pan, luhn_valid
from orchestration.lib.core.usecase import (
    UseCaseError,
    load_usecase,
    parse_duration,
    usecase_names,
)
from orchestration.settings import USECASES_DIR

FRAUD = yaml.safe_load((USECASES_DIR / "fraud.yaml").read_text())


def declare(tmp_path: Path, name: str = "fraud", **changes) -> Path:
    """A copy of the fraud declaration under ``name`` with ``changes`` (dotted paths; None
    deletes the field)."""
    raw = yaml.safe_load(yaml.safe_dump(FRAUD))
    raw["name"] = name
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = raw
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is None:
            del node[last]
        else:
            node[last] = value
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(raw))
    return tmp_path


def assert_refused(tmp_path: Path, changes: dict, field: str, says: str) -> None:
    """The fraud declaration with ``changes`` fails to load with an error naming its file, the
    ``field`` and what is wrong (``says``)."""
    directory = declare(tmp_path, **changes)
    with pytest.raises(UseCaseError) as raised:
        load_usecase("fraud", directory, environ={})
    message = str(raised.value)
    assert str(directory / "fraud.yaml") in message
    assert field in message and says in message, message


def test_every_shipped_declaration_loads():
    names = usecase_names(USECASES_DIR)
    assert "fraud" in names
    for name in names:
        assert load_usecase(name, USECASES_DIR, environ={}).name == name


def test_the_fraud_declaration_holds_what_the_pipeline_used_to_hard_code():
    fraud = load_usecase("fraud", USECASES_DIR, environ={})
    assert fraud.data.table == "training_set"
    assert fraud.label.maturity == timedelta(days=7)
    assert len(fraud.features.train_on) == 23 and len(fraud.features.baseline) == 15
    assert fraud.features.train_on[:15] == fraud.features.baseline
    assert sorted(fraud.models.families) == [
        "gradient_boosting", "logistic_regression", "random_forest"
    ]
    assert fraud.metrics["card_precision_top_k"].entity == "card"
    assert fraud.decision_budget.per_day == 100


@pytest.mark.parametrize(
    ("text", "expected"),
    [("7d", timedelta(days=7)), ("12h", timedelta(hours=12)), ("30m", timedelta(minutes=30)),
     ("1d12h", timedelta(days=1, hours=12)), (3, timedelta(days=3))],
)
def test_durations_take_days_hours_and_minutes(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["7", "7 days", "d", "", "-1d", True])
def test_a_bad_duration_is_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"protocol__train": None}, "protocol.train", "Field required"),
        ({"protocol__train": "a week"}, "protocol.train", "not a duration"),
        ({"protocol__folds": 0}, "protocol.folds", "greater than or equal to 1"),
        ({"gate__primary__metric": "recall"}, "gate.primary.metric", "not a declared metric"),
        ({"metrics__card_precision_top_k__entity": "merchant"}, "metrics.card_precision_top_k",
         "not an entity"),
        ({"models__families__random_forest__estimator": "sklearn.ensemble.NoSuchForest"},
         "models.families.random_forest", "cannot import"),
        ({"models__families__random_forest__grid": {"max_depth": []}},
         "models.families.random_forest.grid", "no value to try"),
        ({"serving__mode": "sometimes"}, "serving.mode", "online"),
        ({"protocol__trian": "7d"}, "protocol.trian", "Extra inputs are not permitted"),
        ({"task": "ranking"}, "task", "binary_classification"),
    ],
)
def test_a_bad_field_is_an_error_naming_the_file_and_the_field(tmp_path, changes, field, says):
    assert_refused(tmp_path, changes, field, says)


def test_the_name_must_be_the_files(tmp_path):
    declare(tmp_path, name="churn")
    (tmp_path / "churn.yaml").rename(tmp_path / "other.yaml")
    with pytest.raises(UseCaseError, match="name: must be 'other'"):
        load_usecase("other", tmp_path, environ={})


def test_an_unknown_use_case_names_the_declared_ones():
    with pytest.raises(UseCaseError, match="no use case 'nope'.*declared: .*fraud"):
        load_usecase("nope", USECASES_DIR, environ={})


def test_the_environment_overrides_one_field_of_one_use_case():
    environ = {
        "BLUEPRINT_FRAUD_PROTOCOL_TRAIN": "36h",
        "BLUEPRINT_FRAUD_GATE_GUARDS_0_TOLERANCE": "0.5",
        "BLUEPRINT_FRAUD_FEATURES_TRAIN_ON": "amount, tx_during_night",
        "BLUEPRINT_FRAUD_MODELS_FAMILIES_RANDOM_FOREST_GRID_MAX_DEPTH": "[3, 4]",
        "BLUEPRINT_FRAUD_MONITORING_RETRAIN_ON_PREDICTION_DRIFT": "false",
        "BLUEPRINT_OTHER_PROTOCOL_TRAIN": "1d",  # another use case's: ignored here
    }
    fraud = load_usecase("fraud", USECASES_DIR, environ=environ)
    assert fraud.protocol.train == timedelta(hours=36)
    assert fraud.gate.guards[0].tolerance == 0.5
    assert fraud.features.train_on == ["amount", "tx_during_night"]
    assert fraud.models.families["random_forest"].grid["max_depth"] == [3, 4]
    assert fraud.monitoring.retrain_on_prediction_drift is False
    assert load_usecase("fraud", USECASES_DIR, environ={}).protocol.train == timedelta(days=7)


def test_an_override_is_validated_like_the_file():
    with pytest.raises(UseCaseError, match="protocol.folds"):
        load_usecase("fraud", USECASES_DIR, environ={"BLUEPRINT_FRAUD_PROTOCOL_FOLDS": "0"})


def test_an_override_of_no_field_is_an_error():
    with pytest.raises(UseCaseError, match="BLUEPRINT_FRAUD_PROTOCOL_TRIAN: .* no such field"):
        load_usecase("fraud", USECASES_DIR, environ={"BLUEPRINT_FRAUD_PROTOCOL_TRIAN": "3d"})


def test_a_retired_global_setting_names_its_replacement():
    with pytest.raises(UseCaseError, match="BLUEPRINT_TRAIN_DAYS is no longer read: set "
                                           "BLUEPRINT_FRAUD_PROTOCOL_TRAIN"):
        load_usecase("fraud", USECASES_DIR, environ={"BLUEPRINT_TRAIN_DAYS": "5"})


def test_the_declared_sources_are_the_contracts_ingestion_enforced():
    from orchestration.lib.ingestion.contracts import Column, Rule, SourceContract
    from orchestration.lib.ingestion.declared import contracts_of

    # the contracts ingestion enforced before the declaration held them, written out; since
    # version 2 every id declares its shape and the amount its range
    pan = Column("card_number", pii=True, rules=(Rule.PAN,))
    on_day = (Rule.ON_PARTITION_DATE,)
    an_id = "[A-Za-z0-9_-]{1,64}"
    enforced = [
        SourceContract("transactions", 2, "csv", True, (
            Column("transaction_id", pattern=an_id),
            Column("tx_datetime", "timestamp", rules=on_day), pan,
            Column("terminal_id", rules=(Rule.DIGITS,), pattern="[0-9]{1,12}"),
            Column("amount", "double", rules=(Rule.FINITE, Rule.NON_NEGATIVE), maximum=100000),
        ), key=("transaction_id",)),
        SourceContract("fraud_reports", 2, "csv", False, (
            Column("transaction_id", pattern=an_id), pan,
            Column("reported_at", "timestamp", rules=on_day),
        ), key=("transaction_id",)),
        SourceContract("customers", 2, "jsonl", True, (
            Column("customer_id", pattern=an_id),
            *(Column(n, pii=True) for n in ("name", "email", "phone", "address")),
            Column("date_of_birth", "date", pii=True), pan,
            Column("signup_date", "date", rules=(Rule.NOT_AFTER_PARTITION_DATE,)),
            Column("updated_at", "timestamp"),
        ), key=("customer_id",)),
    ]

    declared = contracts_of(load_usecase("fraud", USECASES_DIR, environ={}))
    assert declared == {contract.name: contract for contract in enforced}


def test_a_source_rule_must_fit_its_column_type(tmp_path):
    directory = declare(tmp_path, sources__transactions__columns__4__rules=["pan"])
    with pytest.raises(UseCaseError, match=r"sources\.transactions: .*rules \['pan'\] do not "
                                           "apply to double column 'amount'"):
        load_usecase("fraud", directory, environ={})


@pytest.mark.parametrize(("change", "message"), [
    ({"sources__fraud_reports__columns__0__pattern": None},  # a source's key
     r"sources\.fraud_reports: .*key \['transaction_id'\]: an id declares its shape"),
    ({"sources__transactions__columns__3__pattern": None},  # an entity key
     r"sources\.transactions\.columns\.terminal_id: an id .* declares its shape"),
    ({"sources__transactions__columns__4__min": 10, "sources__transactions__columns__4__max": 1},
     r"column 'amount': min 10.0 is above max 1.0"),
    ({"sources__transactions__columns__1__max": 1},
     r"column 'tx_datetime': min and max apply to a double column"),
    ({"sources__transactions__columns__0__pattern": "t-[0-9"},
     r"column 'transaction_id': pattern 't-\[0-9'"),
    ({"sources__transactions__columns__0__pattern": "(?=t)t-[0-9]+"},  # Python's, not RE2's
     r"column 'transaction_id': pattern '\(\?=t\)t-\[0-9\]\+'"),
])
def test_bounds_are_declared_where_they_apply(tmp_path, change, message):
    """Every id declares its shape, a range fits a number, a pattern compiles: else a clear
    error naming the file and the field."""
    directory = declare(tmp_path, **change)
    with pytest.raises(UseCaseError, match=message):
        load_usecase("fraud", directory, environ={})


def test_an_example_request_the_service_would_refuse_is_refused(tmp_path):
    """The example ``blueprint serve`` tells a user to try must pass the contract: an example
    whose id breaks its declared shape loaded, and the service then refused it."""
    example = dict(FRAUD["serving"]["request"]["example"])
    example["transaction_id"] = "demo 1"
    directory = declare(tmp_path, serving__request__example=example)
    with pytest.raises(UseCaseError, match=r"serving.request.example: transaction_id is not of "
                                           r"the shape"):
        load_usecase("fraud", directory, environ={})


def test_the_label_source_must_be_declared(tmp_path):
    directory = declare(tmp_path, label__source="disputes")
    with pytest.raises(UseCaseError, match="label.source: 'disputes' is not a declared source"):
        load_usecase("fraud", directory, environ={})


def test_the_example_request_is_the_declared_one_at_the_given_time():
    fraud = load_usecase("fraud", USECASES_DIR, environ={})
    request = fraud.example_request("2018-10-01T13:45:10")
    events = fraud.sources[fraud.features.declared.events]
    rename = fraud.serving.request.rename
    assert list(request) == [rename.get(c.name, c.name) for c in events.columns]
    assert request[rename[fraud.data.event_time]] == "2018-10-01T13:45:10"
    assert {k: v for k, v in request.items() if k in fraud.serving.request.example} == (
        fraud.serving.request.example
    )
    assert luhn_valid(request["card_number"]) and len(request["card_number"]) == PAN_LENGTH
    assert declared_without_example(fraud).example_request("2018-10-01T13:45:10") is None


def declared_without_example(usecase):
    request = usecase.serving.request.model_copy(update={"example": {}})
    serving = usecase.serving.model_copy(update={"request": request})
    return usecase.model_copy(update={"serving": serving})


def test_an_example_request_must_give_every_field_but_the_event_time(tmp_path):
    example = dict(FRAUD["serving"]["request"]["example"])
    example.pop(next(iter(example)))
    assert_refused(tmp_path, {"serving__request__example": example}, "serving.request.example",
                   "each field of a request but the event time and personal data")


def test_an_example_request_holds_no_personal_data(tmp_path):
    """The declaration is copied into every Bento under BLUEPRINT_HOME, where the personal-data
    scan would find a card number in it (it did: the default world's gate then failed)."""
    example = {**FRAUD["serving"]["request"]["example"], "card_number": example_pan()}
    assert_refused(tmp_path, {"serving__request__example": example}, "serving.request.example",
                   "personal data")
