"""Suites load completely and fail on a bad value."""

import json

import numpy as np
import pandas as pd
import pytest

from orchestration.lib.core.usecase import load_usecase
from orchestration.lib.quality.expectations import (
    SuiteError,
    contract_bound_disagreements,
    read_suite,
    validate_frame,
)
from orchestration.settings import EXPECTATIONS_DIR, USECASES_DIR


def feature_frame(n: int = 50) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "transaction_id": [f"t-{i}" for i in range(n)],
            "tx_datetime": pd.date_range("2018-04-01", periods=n, freq="h"),
            "card_key": ["ab" * 32] * n,
            "terminal_id": ["7"] * n,
            "amount": rng.uniform(1, 200, n),
            "tx_during_weekend": rng.integers(0, 2, n),
            "tx_during_night": rng.integers(0, 2, n),
        }
    )
    frame["tx_date"] = frame["tx_datetime"].dt.date
    for w in (1, 7, 30):
        frame[f"card_nb_tx_{w}day"] = rng.integers(1, 9, n)
        frame[f"card_avg_amount_{w}day"] = rng.uniform(1, 200, n)
        frame[f"terminal_nb_tx_{w}day"] = rng.integers(0, 90, n)
        frame[f"terminal_risk_{w}day"] = rng.uniform(0, 0.1, n)
        frame[f"terminal_recent_nb_fraud_{w}day"] = rng.integers(0, 3, n)
        frame[f"terminal_recent_risk_{w}day"] = rng.uniform(0, 0.1, n)
    frame["card_amount_ratio_30day"] = rng.uniform(0.5, 1.5, n)
    frame["card_seconds_since_last_tx"] = rng.uniform(0, 30 * 86400, n)
    return frame


@pytest.mark.parametrize("path", sorted(EXPECTATIONS_DIR.glob("*/*.json")),
                         ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_suite_loads_in_full(path):
    spec = read_suite(path)
    assert len(spec["expectations"]) >= 10


def test_good_features_pass_and_a_bad_value_fails():
    suite = EXPECTATIONS_DIR / "fraud" / "transaction_features.json"
    frame = feature_frame()
    assert validate_frame(frame, suite).success

    frame.loc[3, "terminal_risk_7day"] = 1.5
    result = validate_frame(frame, suite)
    assert not result.success
    assert [(f["column"], f["unexpected_count"]) for f in result.failures] == [
        ("terminal_risk_7day", 1)
    ]


def test_the_production_features_are_checked_too():
    suite = EXPECTATIONS_DIR / "fraud" / "transaction_features.json"
    frame = feature_frame()
    frame.loc[5, "card_seconds_since_last_tx"] = -1.0  # a payment before the previous one
    frame.loc[6, "terminal_recent_risk_1day"] = None
    result = validate_frame(frame, suite)
    assert sorted((f["column"], f["unexpected_count"]) for f in result.failures) == [
        ("card_seconds_since_last_tx", 1), ("terminal_recent_risk_1day", 1)
    ]


def test_unknown_expectation_is_an_error_not_a_silent_drop(tmp_path):
    path = tmp_path / "suite.json"
    path.write_text(
        json.dumps(
            {
                "name": "s",
                "expectations": [
                    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},
                    {"type": "expect_column_to_be_lovely", "kwargs": {"column": "a"}},
                ],
            }
        )
    )
    with pytest.raises(SuiteError, match="suite.json"):
        validate_frame(pd.DataFrame({"a": [1]}), path)


@pytest.mark.parametrize("usecase", ["fraud", "churn"])
def test_every_suites_bounds_are_its_source_contracts(usecase):
    """Bounds are declared once, in the contracts: a suite that checks a delivered number's
    range checks the contract's numbers (fraud's amount: 0 to 100,000)."""
    sources = load_usecase(usecase, USECASES_DIR, environ={}).sources
    suites = sorted((EXPECTATIONS_DIR / usecase).glob("*.json"))
    assert suites
    for path in suites:
        assert contract_bound_disagreements(read_suite(path), sources) == [], path


def test_a_suite_that_retypes_a_contracts_bound_otherwise_is_refused():
    sources = load_usecase("fraud", USECASES_DIR, environ={}).sources
    spec = read_suite(EXPECTATIONS_DIR / "fraud" / "transaction_features.json")
    for expectation in spec["expectations"]:
        if expectation["kwargs"].get("column") == "amount" and "max_value" in expectation["kwargs"]:
            expectation["kwargs"]["max_value"] = 50000
    assert contract_bound_disagreements(spec, sources) == [
        "amount: the suite checks [0, 50000], the contract declares [0.0, 100000.0]"
    ]
