"""The validation protocol of the Fraud Detection Handbook (Le Borgne et al., ch. 3 and 5).

A model is trained on ``train_days`` whole days of payments, then ``delay_days`` are skipped
(in production the frauds of the most recent days are not reported yet) and it is tested on
the next ``test_days``. Prequential validation repeats this on ``n_folds`` folds, each shifted
back ``fold_step_days`` from the previous one; fold 0 is the most recent.

Labels are used only once they are known. A fraud label is usable on day ``d`` iff its
``report_date`` is before ``d``:

- a training payment is a positive iff ``is_fraud = 1`` and ``report_date`` is before the first
  test day (with the default windows every training fraud is reported by then; the rule is
  applied anyway, so shorter gaps stay honest);
- a test payment is scored against its eventual label (``is_fraud``): test windows are chosen
  among mature days only (:func:`latest_test_start`);
- on each test day ``d`` the cards already known to be compromised are removed from the test
  set, as the handbook does: cards with a fraud made since the start of the training window and
  reported before ``d``. Investigators would already have blocked them, so detecting them again
  says nothing about the model. Frauds made before the training window are outside the
  protocol's view, as in the handbook.

All dates are whole days of ``tx_date``; windows are half-open ``[start, end)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from orchestration.lib.core.usecase import whole_days

if TYPE_CHECKING:
    from orchestration.lib.core.usecase import UseCase

LABEL = "label"
"""Column added by :func:`train_test_frames`: the label a model may learn from or is scored on."""


@dataclass(frozen=True)
class Protocol:
    """Window lengths of the handbook's protocol, in whole days."""

    train_days: int = 7
    delay_days: int = 7
    """Gap between the training and the test window: frauds of the gap are mostly unreported."""
    test_days: int = 7
    n_folds: int = 4
    fold_step_days: int = 7
    """How far each prequential fold is shifted back from the previous one."""
    max_report_delay_days: int = 7
    """A fraud is reported at most this many days after the payment: a day's labels are final
    (mature) once reports up to that many days later are loaded."""

    def __post_init__(self) -> None:
        lengths = {
            "train_days": self.train_days,
            "test_days": self.test_days,
            "n_folds": self.n_folds,
            "fold_step_days": self.fold_step_days,
        }
        if any(value < 1 for value in lengths.values()):
            raise ValueError(f"window lengths and fold counts must be at least 1: {lengths}")
        if self.delay_days < 0 or self.max_report_delay_days < 0:
            raise ValueError("delay_days and max_report_delay_days cannot be negative")


@dataclass(frozen=True)
class Windows:
    """One train/test split: ``[train_start, train_end)`` and ``[test_start, test_end)``."""

    train_start: date
    train_end: date
    """First day after the training window (the gap starts here)."""
    test_start: date
    test_end: date
    """First day after the test window."""

    @property
    def test_dates(self) -> list[date]:
        """Every day of the test window, in order."""
        n_days = (self.test_end - self.test_start).days
        return [self.test_start + timedelta(days=i) for i in range(n_days)]

    def as_metadata(self) -> dict[str, str]:
        """First and last day (inclusive) of each window, for run metadata."""
        last = timedelta(days=1)
        return {
            "train_first_day": self.train_start.isoformat(),
            "train_last_day": (self.train_end - last).isoformat(),
            "test_first_day": self.test_start.isoformat(),
            "test_last_day": (self.test_end - last).isoformat(),
        }

    def __str__(self) -> str:
        meta = self.as_metadata()
        return (
            f"train {meta['train_first_day']}..{meta['train_last_day']}, "
            f"test {meta['test_first_day']}..{meta['test_last_day']}"
        )


def split_windows(protocol: Protocol, test_start: date) -> Windows:
    """The split whose test window starts on ``test_start``."""
    train_end = test_start - timedelta(days=protocol.delay_days)
    return Windows(
        train_start=train_end - timedelta(days=protocol.train_days),
        train_end=train_end,
        test_start=test_start,
        test_end=test_start + timedelta(days=protocol.test_days),
    )


def prequential_folds(protocol: Protocol, last_test_start: date) -> list[Windows]:
    """``n_folds`` splits, fold 0 testing from ``last_test_start``, each next one shifted back."""
    return [
        split_windows(protocol, last_test_start - timedelta(days=fold * protocol.fold_step_days))
        for fold in range(protocol.n_folds)
    ]


def validation_test_start(protocol: Protocol, test_start: date) -> date:
    """Where the validation folds end for a model tested from ``test_start`` (handbook ch. 5.3).

    The handbook starts the validation folds' training ``delay_days + test_days`` before the
    final training window, so the most recent validation test window ends where the final
    training window ends: hyper-parameters are chosen without ever seeing the final test window.
    """
    return test_start - timedelta(days=protocol.delay_days + protocol.test_days)


def data_span(folds: Sequence[Windows]) -> tuple[date, date]:
    """The days ``[first, end)`` a set of splits reads: load only these from the warehouse."""
    return min(w.train_start for w in folds), max(w.test_end for w in folds)


def latest_test_start(frame: pd.DataFrame, protocol: Protocol, max_report_date: date) -> date:
    """First day of the newest test window whose days all have mature labels.

    A day ``d`` is mature when ``d + max_report_delay_days <= max_report_date``: every fraud of
    that day has been reported. ``max_report_date`` is the last day whose fraud reports are
    loaded (the newest ingested fraud-report partition, not the newest report: a quiet last day
    would otherwise make the labels look younger than they are).
    """
    last_mature = max_report_date - timedelta(days=protocol.max_report_delay_days)
    last_day = min(last_mature, _as_date(frame["tx_date"].max()))
    return last_day - timedelta(days=protocol.test_days - 1)


def train_test_frames(frame: pd.DataFrame, windows: Windows) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training and test rows of one split, each with a :data:`LABEL` column.

    ``frame`` needs ``tx_date``, ``card_key``, ``is_fraud`` and ``report_date`` (as in the
    ``training_set`` mart) and must cover ``[windows.train_start, windows.test_end)``.
    Training rows are labelled with what was known on the first test day; test rows with the
    eventual label, minus the payments of cards known to be compromised on their day.
    """
    tx_date = _as_datetime64(frame["tx_date"])
    report_date = _as_datetime64(frame["report_date"])
    is_fraud = frame["is_fraud"].to_numpy() == 1
    train_start, train_end, test_start, test_end = (
        np.datetime64(day, "D")
        for day in (windows.train_start, windows.train_end, windows.test_start, windows.test_end)
    )

    in_train = (tx_date >= train_start) & (tx_date < train_end)
    train = frame.loc[in_train].copy()
    # NaT compares False: a fraud never reported is not a known positive
    train[LABEL] = (is_fraud[in_train] & (report_date[in_train] < test_start)).astype(np.int8)

    cards = frame["card_key"].to_numpy()
    known_frauds = is_fraud & (tx_date >= train_start) & (report_date < test_end)
    in_test = (tx_date >= test_start) & (tx_date < test_end)
    for day in np.unique(tx_date[in_test]):
        compromised = np.unique(cards[known_frauds & (report_date < day)])
        on_day = np.flatnonzero(in_test & (tx_date == day))
        in_test[on_day[np.isin(cards[on_day], compromised)]] = False
    test = frame.loc[in_test].copy()
    test[LABEL] = is_fraud[in_test].astype(np.int8)
    return train, test


def _as_datetime64(column: pd.Series) -> np.ndarray:
    """A date column (datetime64 or ``datetime.date`` objects) as day-precision datetime64."""
    return pd.to_datetime(column).to_numpy().astype("datetime64[D]")


def _as_date(value: object) -> date:
    return pd.Timestamp(value).date()


def protocol_from(usecase: UseCase) -> Protocol:
    """The windows a use case trains with (its ``protocol`` and ``label.maturity``), in days."""
    declared = usecase.protocol
    return Protocol(
        train_days=whole_days(declared.train, "protocol.train"),
        delay_days=whole_days(declared.delay, "protocol.delay"),
        test_days=whole_days(declared.test, "protocol.test"),
        n_folds=declared.folds,
        fold_step_days=whole_days(declared.fold_step, "protocol.fold_step"),
        max_report_delay_days=whole_days(usecase.label.maturity, "label.maturity"),
    )
