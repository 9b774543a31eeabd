"""The handbook's validation protocol: window arithmetic, label timing, compromised cards."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from orchestration.lib.training.validation import (
    LABEL,
    Protocol,
    Windows,
    data_span,
    latest_test_start,
    prequential_folds,
    split_windows,
    train_test_frames,
    validation_test_start,
)
from tests.training.families import ROWS


def test_default_windows_train_a_week_skip_a_week_test_a_week():
    windows = split_windows(Protocol(), date(2018, 9, 17))
    assert windows == Windows(
        train_start=date(2018, 9, 3),
        train_end=date(2018, 9, 10),
        test_start=date(2018, 9, 17),
        test_end=date(2018, 9, 24),
    )
    assert windows.test_dates == [date(2018, 9, d) for d in range(17, 24)]
    assert windows.as_metadata() == {
        "train_first_day": "2018-09-03",
        "train_last_day": "2018-09-09",
        "test_first_day": "2018-09-17",
        "test_last_day": "2018-09-23",
    }


def test_every_window_length_is_configurable():
    windows = split_windows(Protocol(train_days=14, delay_days=3, test_days=5), date(2018, 9, 17))
    assert (windows.train_start, windows.train_end) == (date(2018, 8, 31), date(2018, 9, 14))
    assert (windows.test_start, windows.test_end) == (date(2018, 9, 17), date(2018, 9, 22))


def test_prequential_folds_shift_back_one_step_each_most_recent_first():
    folds = prequential_folds(Protocol(), date(2018, 9, 17))
    assert [f.test_start for f in folds] == [
        date(2018, 9, 17),
        date(2018, 9, 10),
        date(2018, 9, 3),
        date(2018, 8, 27),
    ]
    assert [f.train_start for f in folds] == [
        date(2018, 9, 3),
        date(2018, 8, 27),
        date(2018, 8, 20),
        date(2018, 8, 13),
    ]
    assert data_span(folds) == (date(2018, 8, 13), date(2018, 9, 24))

    custom = prequential_folds(Protocol(n_folds=2, fold_step_days=3), date(2018, 9, 17))
    assert [f.test_start for f in custom] == [date(2018, 9, 17), date(2018, 9, 14)]


def test_validation_folds_end_where_the_final_training_window_ends():
    protocol = Protocol()
    final = split_windows(protocol, date(2018, 9, 17))
    newest_validation = prequential_folds(
        protocol, validation_test_start(protocol, final.test_start)
    )[0]
    assert newest_validation.test_end == final.train_end
    assert newest_validation.test_start == date(2018, 9, 3)


def _frame_of_days(first: date, last: date) -> pd.DataFrame:
    return pd.DataFrame({"tx_date": pd.date_range(first, last, freq="D")})


def test_latest_test_window_holds_only_days_whose_labels_are_mature():
    frame = _frame_of_days(date(2018, 4, 1), date(2018, 9, 30))
    # reports loaded up to 09-30 and a 7-day maximum delay: labels are final up to 09-23
    assert latest_test_start(frame, Protocol(), date(2018, 9, 30), ROWS) == date(2018, 9, 17)
    # reports lag the payments: the reports decide
    assert latest_test_start(frame, Protocol(), date(2018, 9, 20), ROWS) == date(2018, 9, 7)
    # reports run ahead of the payments: the payments decide
    short = _frame_of_days(date(2018, 4, 1), date(2018, 9, 10))
    assert latest_test_start(short, Protocol(), date(2018, 9, 30), ROWS) == date(2018, 9, 4)
    three_days = Protocol(test_days=3)
    assert latest_test_start(frame, three_days, date(2018, 9, 30), ROWS) == date(2018, 9, 21)


def _payment(card: str, day: date, fraud: bool = False, reported: date | None = None) -> dict:
    return {
        "transaction_id": f"{card}-{day}-{fraud}",
        "tx_date": pd.Timestamp(day),
        "card_key": card,
        "is_fraud": int(fraud),
        "report_date": pd.Timestamp(reported) if reported else pd.NaT,
    }


SHORT = Protocol(train_days=3, delay_days=1, test_days=3)
"""Train 06-01..06-03, gap 06-04, test 06-05..06-07 for a test start on 06-05."""


def _short_windows() -> Windows:
    return split_windows(SHORT, date(2018, 6, 5))


def test_a_fraud_reported_on_or_after_the_test_start_is_not_a_training_positive():
    frame = pd.DataFrame(
        [
            _payment("known", date(2018, 6, 3), fraud=True, reported=date(2018, 6, 4)),
            _payment("on_start", date(2018, 6, 3), fraud=True, reported=date(2018, 6, 5)),
            _payment("later", date(2018, 6, 2), fraud=True, reported=date(2018, 6, 9)),
            _payment("genuine", date(2018, 6, 1)),
            _payment("outside", date(2018, 5, 31), fraud=True, reported=date(2018, 6, 1)),
        ]
    )
    train, _ = train_test_frames(frame, _short_windows(), ROWS)
    labels = dict(zip(train["card_key"], train[LABEL], strict=True))
    assert labels == {"known": 1, "on_start": 0, "later": 0, "genuine": 0}
    assert train["is_fraud"].tolist() == [1, 1, 1, 0], "the eventual label is kept untouched"


def test_cards_known_compromised_on_a_test_day_are_removed_from_that_day_on():
    test_days = [date(2018, 6, 5), date(2018, 6, 6), date(2018, 6, 7)]
    rows = [
        # fraud in training, reported before the test: removed from every test day
        _payment("A", date(2018, 6, 2), fraud=True, reported=date(2018, 6, 3)),
        # fraud on the first test day reported on the second: known from the third day on
        _payment("B", date(2018, 6, 5), fraud=True, reported=date(2018, 6, 6)),
        # fraud in the gap reported on the last test day: never known during the test
        _payment("E", date(2018, 6, 4), fraud=True, reported=date(2018, 6, 7)),
        # fraud before the training window: outside the protocol's view, as in the handbook
        _payment("C", date(2018, 5, 20), fraud=True, reported=date(2018, 5, 22)),
        # fraud in the gap reported on the first test day: removed from the second day on
        _payment("F", date(2018, 6, 4), fraud=True, reported=date(2018, 6, 5)),
    ]
    for card in "ABCDEF":
        rows += [_payment(card, d) for d in test_days]
    frame = pd.DataFrame(rows)

    _, test = train_test_frames(frame, _short_windows(), ROWS)

    kept = test.groupby("card_key")["tx_date"].apply(lambda s: sorted(d.date() for d in s))
    assert "A" not in kept
    assert kept["B"] == [date(2018, 6, 5), date(2018, 6, 5), date(2018, 6, 6)]
    assert kept["C"] == test_days
    assert kept["D"] == test_days
    assert kept["E"] == test_days
    assert kept["F"] == [date(2018, 6, 5)]
    # test rows are scored against the eventual label, even one reported after the window
    fraud_b = test[(test["card_key"] == "B") & (test["is_fraud"] == 1)]
    assert fraud_b[LABEL].tolist() == [1]
    assert test[LABEL].sum() == 1


def test_date_objects_work_as_well_as_timestamps():
    frame = pd.DataFrame(
        [
            _payment("A", date(2018, 6, 2), fraud=True, reported=date(2018, 6, 3)),
            _payment("A", date(2018, 6, 5)),
            _payment("B", date(2018, 6, 5)),
        ]
    )
    frame["tx_date"] = frame["tx_date"].dt.date
    frame["report_date"] = [d.date() if pd.notna(d) else None for d in frame["report_date"]]
    train, test = train_test_frames(frame, _short_windows(), ROWS)
    assert train[LABEL].tolist() == [1]
    assert test["card_key"].tolist() == ["B"]


def test_protocol_rejects_empty_windows():
    with pytest.raises(ValueError):
        Protocol(train_days=0)
    with pytest.raises(ValueError):
        Protocol(delay_days=-1)
