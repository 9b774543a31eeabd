"""The validation protocol of the Fraud Detection Handbook (Le Borgne et al., ch. 3 and 5),
for any use case's rows (:class:`LabelledRows` names their columns).

A model is trained on ``train_days`` whole days of rows, then ``delay_days`` are skipped (in
production the labels of the most recent days are not known yet) and it is tested on the next
``test_days``. Prequential validation repeats this on ``n_folds`` folds, each shifted back
``fold_step_days`` from the previous one; fold 0 is the most recent.

Labels are used only once they are known. A label is usable on day ``d`` iff the day it became
known is before ``d``:

- a training row is a positive iff its label is 1 and it was known before the first test day
  (the rule is applied whatever the gap, so shorter gaps stay honest);
- a test row is scored against its eventual label: test windows are chosen among mature days
  only (:func:`latest_test_start`);
- optionally, on each test day ``d`` the rows of entities already known positive are removed,
  as the handbook does for cards already known compromised (a fraud made since the start of
  the training window and reported before ``d``): investigators would already have blocked
  them, so detecting them again says nothing about the model.

All dates are whole days of the rows' day column; windows are half-open ``[start, end)``.
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
class LabelledRows:
    """Which columns of a use case's table place its rows in time and carry their label."""

    day: str
    """The row's day (its partition date): the unit of every window."""
    label: str
    """The eventual label, 1 or 0."""
    known_at: str
    """The day the label became known (null: a positive never reported is not known)."""
    exclude_known_positives_of: str | None = None
    """An entity key column: a test day leaves out the rows of entities with a positive row
    since the training window started that was known before that day. None keeps every row."""


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


def latest_test_start(
    frame: pd.DataFrame, protocol: Protocol, max_report_date: date, rows: LabelledRows
) -> date:
    """First day of the newest test window whose days all have mature labels.

    A day ``d`` is mature when ``d + max_report_delay_days <= max_report_date``: every fraud of
    that day has been reported. ``max_report_date`` is the last day whose fraud reports are
    loaded (the newest ingested fraud-report partition, not the newest report: a quiet last day
    would otherwise make the labels look younger than they are).
    """
    return mature_test_start(protocol, _as_date(frame[rows.day].max()), max_report_date)


def mature_test_start(protocol: Protocol, last_day: date, max_report_date: date) -> date:
    """:func:`latest_test_start` of rows whose newest day is ``last_day``."""
    last_mature = max_report_date - timedelta(days=protocol.max_report_delay_days)
    return min(last_mature, last_day) - timedelta(days=protocol.test_days - 1)


def training_span(protocol: Protocol, test_start: date) -> tuple[date, date]:
    """The days ``[first, end)`` training reads for a model tested from ``test_start``: its
    training and test windows and the validation folds before them."""
    final = split_windows(protocol, test_start)
    folds = prequential_folds(protocol, validation_test_start(protocol, test_start))
    return data_span([final, *folds])


def days_needed(protocol: Protocol) -> int:
    """How many days of data a first training needs: the windows, the folds and the labels'
    maturity after the test window."""
    first, end = training_span(protocol, date(2000, 1, 1))
    return (end - first).days + protocol.max_report_delay_days


def train_test_frames(
    frame: pd.DataFrame, windows: Windows, rows: LabelledRows
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training and test rows of one split, each with a :data:`LABEL` column.

    ``frame`` needs the columns ``rows`` names and must cover
    ``[windows.train_start, windows.test_end)``. Training rows are labelled with what was known
    on the first test day; test rows with the eventual label, minus (when ``rows`` says so) the
    rows of entities already known positive on their day.
    """
    day = _as_datetime64(frame[rows.day])
    known_at = _as_datetime64(frame[rows.known_at])
    positive = frame[rows.label].to_numpy() == 1
    train_start, train_end, test_start, test_end = (
        np.datetime64(bound, "D")
        for bound in (windows.train_start, windows.train_end, windows.test_start, windows.test_end)
    )

    in_train = (day >= train_start) & (day < train_end)
    train = frame.loc[in_train].copy()
    # NaT compares False: a positive never reported is not a known positive
    train[LABEL] = (positive[in_train] & (known_at[in_train] < test_start)).astype(np.int8)

    in_test = (day >= test_start) & (day < test_end)
    if rows.exclude_known_positives_of is not None:
        entities = frame[rows.exclude_known_positives_of].to_numpy()
        known_positives = positive & (day >= train_start) & (known_at < test_end)
        for test_day in np.unique(day[in_test]):
            known = np.unique(entities[known_positives & (known_at < test_day)])
            on_day = np.flatnonzero(in_test & (day == test_day))
            in_test[on_day[np.isin(entities[on_day], known)]] = False
    test = frame.loc[in_test].copy()
    test[LABEL] = positive[in_test].astype(np.int8)
    return train, test


def _as_datetime64(column: pd.Series) -> np.ndarray:
    """A date column (datetime64 or ``datetime.date`` objects) as day-precision datetime64."""
    return pd.to_datetime(column).to_numpy().astype("datetime64[D]")


def _as_date(value: object) -> date:
    return pd.Timestamp(value).date()


def labelled_rows(usecase: UseCase) -> LabelledRows:
    """The columns of a use case's table that place its rows in time and label them."""
    entity = usecase.protocol.exclude_known_positives
    return LabelledRows(
        day=usecase.data.partition_date,
        label=usecase.label.column,
        known_at=usecase.label.known_at,
        exclude_known_positives_of=None if entity is None else usecase.data.entities[entity],
    )


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
