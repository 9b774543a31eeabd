"""The production model's features beyond the handbook's, on a world small enough to compute
every expected value by hand: the amount against the card's usual amount, the time since the
card's previous payment (both bounded to the card's 30-day horizon) and the terminal's frauds
known without the one-week delay (reports usable only from the day after they are filed)."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pytest

from tests.features.raw_world import (
    DbtRun,
    World,
    dbt_build,
    luhn_complete,
    read_table,
    write_raw_zone,
)

HORIZON_SECONDS = 30 * 86400
CARD_A, CARD_B = luhn_complete("411111111111111"), luhn_complete("422222222222222")


def hand_world() -> World:
    """Card A pays at terminal A (card features); card B at terminal T (terminal features)."""
    payments = [
        # card A: two payments at the same instant, one exactly 30 days after the first
        # payment, one after 44 idle days
        ("a-1", "2024-01-01 10:00:00", CARD_A, "A", 10.0),
        ("a-2", "2024-01-01 11:00:00", CARD_A, "A", 30.0),
        ("a-3", "2024-01-01 11:00:00", CARD_A, "A", 50.0),
        ("a-4", "2024-01-31 10:00:00", CARD_A, "A", 80.0),
        ("a-5", "2024-03-15 12:00:00", CARD_A, "A", 99.0),
        # terminal T: frauds x-1 and x-2, reported the day after each
        ("x-1", "2024-01-01 09:00:00", CARD_B, "T", 20.0),
        ("x-2", "2024-01-02 09:00:00", CARD_B, "T", 20.0),
        ("x-3", "2024-01-02 10:00:00", CARD_B, "T", 20.0),
        ("y-1", "2024-01-03 12:00:00", CARD_B, "T", 20.0),
        ("y-2", "2024-01-04 12:00:00", CARD_B, "T", 20.0),
        ("z-1", "2024-02-01 12:00:00", CARD_B, "T", 20.0),
    ]
    transactions = pd.DataFrame(
        payments, columns=["transaction_id", "tx_datetime", "card_number", "terminal_id", "amount"]
    ).astype({"tx_datetime": "datetime64[us]"})
    reports = pd.DataFrame(
        [
            ("x-1", CARD_B, "2024-01-02 08:00:00"),
            ("x-2", CARD_B, "2024-01-03 07:00:00"),  # filed on y-1's day: not usable for it
            ("y-1", CARD_B, "2024-01-20 09:00:00"),  # filed long after y-2 and z-1's windows
        ],
        columns=["transaction_id", "card_number", "reported_at"],
    ).astype({"reported_at": "datetime64[us]"})
    customers = pd.DataFrame(
        [
            {
                "customer_id": f"c-{i}",
                "name": f"Hand Testperson{i}",
                "email": f"hand.testperson{i}@example.org",
                "phone": f"+33 6 98 76 54 {i:02d}",
                "address": f"{i + 1} rue des Exemples, 75011 Paris",
                "date_of_birth": date(1970 + i, 3, 4),
                "card_number": pan,
                "signup_date": date(2023, 6, 1),
                "updated_at": datetime(2024, 1, 1, 1),
                "snapshot_date": date(2024, 1, 1),
            }
            for i, pan in enumerate((CARD_A, CARD_B))
        ]
    )
    return World(transactions, reports, customers)


# every value worked out by hand from hand_world(), with the reason
EXPECTED = {
    # nothing earlier: ratio 1 (as usual), time since last = the 30-day horizon
    "a-1": {"card_amount_ratio_30day": 1.0, "card_seconds_since_last_tx": HORIZON_SECONDS},
    # earlier: a-1 only (a-3 is at the same instant, not earlier): 30 / 10, one hour
    "a-2": {"card_amount_ratio_30day": 3.0, "card_seconds_since_last_tx": 3600},
    "a-3": {"card_amount_ratio_30day": 5.0, "card_seconds_since_last_tx": 3600},
    # a-1 is exactly 30 days before: out; a-2 and a-3 in: 80 / 40, 30 days - 1 hour
    "a-4": {"card_amount_ratio_30day": 2.0, "card_seconds_since_last_tx": HORIZON_SECONDS - 3600},
    # a-4 is 44 days before, beyond the horizon: as if the card had never paid
    "a-5": {"card_amount_ratio_30day": 1.0, "card_seconds_since_last_tx": HORIZON_SECONDS},
    # day 01-03: D-1 holds x-2 (reported on D: not usable) and x-3; D-7 .. D-1 also x-1
    # (reported 01-02: usable). The handbook's delayed window (12-20 .. 12-26) is empty.
    "y-1": {
        "terminal_recent_nb_fraud_1day": 0,
        "terminal_recent_risk_1day": 0.0,
        "terminal_recent_nb_fraud_7day": 1,
        "terminal_recent_risk_7day": 1 / 3,
        "terminal_recent_nb_fraud_30day": 1,
        "terminal_recent_risk_30day": 1 / 3,
        "terminal_risk_7day": 0.0,
    },
    # day 01-04: D-1 holds y-1, reported only on 01-20; x-1 and x-2 known among 4 payments
    "y-2": {
        "terminal_recent_nb_fraud_1day": 0,
        "terminal_recent_risk_1day": 0.0,
        "terminal_recent_nb_fraud_7day": 2,
        "terminal_recent_risk_7day": 0.5,
        "terminal_recent_nb_fraud_30day": 2,
        "terminal_recent_risk_30day": 0.5,
    },
    # day 02-01: the 30 days 01-02 .. 01-31 hold x-2 (fraud), x-3, y-1 (fraud, reported
    # 01-20), y-2; x-1 (01-01, D-31) is out. The last 7 days are empty.
    "z-1": {
        "terminal_recent_nb_fraud_1day": 0,
        "terminal_recent_nb_fraud_7day": 0,
        "terminal_recent_risk_7day": 0.0,
        "terminal_recent_nb_fraud_30day": 2,
        "terminal_recent_risk_30day": 0.5,
    },
}


@pytest.fixture(scope="module")
def hand_features(
    pseudonymization_key_hex: str, tmp_path_factory: pytest.TempPathFactory
) -> pd.DataFrame:
    home = tmp_path_factory.mktemp("hand_world")
    write_raw_zone(hand_world(), home)
    run: DbtRun = dbt_build(home, pseudonymization_key_hex)
    assert run.returncode == 0, run.output[-5000:]
    return read_table(run.warehouse, "transaction_features").set_index("transaction_id")


@pytest.mark.parametrize(
    ("transaction_id", "column", "expected"),
    [(tx, column, value) for tx, values in EXPECTED.items() for column, value in values.items()],
)
def test_production_feature_has_the_hand_computed_value(
    hand_features: pd.DataFrame, transaction_id: str, column: str, expected: float
) -> None:
    assert hand_features.loc[transaction_id, column] == pytest.approx(expected, abs=1e-12)
