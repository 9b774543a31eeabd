"""Small synthetic ``training_set`` frames for the training-library tests."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

FEATURES = ["x_a", "x_b", "x_noise"]
"""Fraud happens when x_a and x_b share their sign and both are large (an interaction a linear
model cannot express); x_noise carries nothing."""

START = date(2018, 4, 1)


def synthetic_frame(
    n_days: int = 45, tx_per_day: int = 100, n_cards: int = 400, seed: int = 0
) -> pd.DataFrame:
    """Rows shaped like the ``training_set`` mart, with frauds reported 1..7 days later."""
    rng = np.random.default_rng(seed)
    n = n_days * tx_per_day
    day_index = np.repeat(np.arange(n_days), tx_per_day)
    x_a, x_b = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
    same_sign_and_large = (x_a * x_b > 0) & (np.abs(x_a) > 0.7) & (np.abs(x_b) > 0.7)
    is_fraud = (same_sign_and_large & (rng.uniform(size=n) < 0.9)).astype(np.int32)
    tx_date = pd.to_datetime(START) + pd.to_timedelta(day_index, unit="D")
    delay = pd.to_timedelta(rng.integers(1, 8, n), unit="D")
    report_date = (tx_date + delay).where(is_fraud == 1)
    return pd.DataFrame(
        {
            "transaction_id": [f"t{i:06d}" for i in range(n)],
            "tx_date": tx_date,
            "card_key": [f"card{c:04d}" for c in rng.integers(0, n_cards, n)],
            "x_a": x_a,
            "x_b": x_b,
            "x_noise": rng.normal(size=n),
            "is_fraud": is_fraud,
            "reported_at": report_date + pd.Timedelta(hours=12),
            "report_date": report_date,
        }
    )


def day(offset: int) -> date:
    """The day ``offset`` days after :data:`START`."""
    return START + timedelta(days=offset)
