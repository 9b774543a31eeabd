"""What the training assets and ``blueprint models reproduce`` share: the facts of the rows a
model saw, and retraining a registered version from its recorded lineage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd

from orchestration.lib.core.usecase import UseCase
from orchestration.lib.registry import registry
from orchestration.lib.registry.facts import DataWindow, ModelFacts, frame_fingerprint
from orchestration.lib.training.families import Candidate, FamilySpec
from orchestration.lib.training.metrics import Scorecard
from orchestration.lib.training.model_selection import fit_final
from orchestration.lib.training.validation import (
    LABEL,
    Windows,
    labelled_rows,
    train_test_frames,
)
from orchestration.settings import Settings, get_settings


def id_columns(usecase: UseCase) -> list[str]:
    """Columns that identify a training row (hashed with the features and the label): its id,
    its time, its day and its entities' keys."""
    data = usecase.data
    return list(dict.fromkeys(
        [data.row_id, data.event_time, data.partition_date, *data.entities.values()]
    ))

TRAINING_DATA_FILE = "training_data_file"
"""Key, in a model's params, of its exported training data (relative to BLUEPRINT_HOME)."""


def window_facts(
    rows: pd.DataFrame, ids: Sequence[str], features: Sequence[str], start: date, end: date
) -> DataWindow:
    """The facts of the rows of ``[start, end)``: days, count, content hash (ids, features,
    label)."""
    used = rows[[*ids, *features, LABEL]].reset_index(drop=True)
    return DataWindow(
        start=start, end=end - timedelta(days=1), rows=len(used),
        fingerprint=frame_fingerprint(used),
    )


def recorded_windows(facts: ModelFacts) -> Windows:
    data = facts.training_data
    return Windows(
        train_start=data.train.start,
        train_end=data.train.end + timedelta(days=1),
        test_start=data.test.start,
        test_end=data.test.end + timedelta(days=1),
    )


def reference_rows(
    facts: ModelFacts, settings: Settings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A version's training rows and test rows, its features only, from the training data it
    exported: what monitoring compares served traffic with. Only those columns are read (the
    file also holds ids, timestamps and every candidate feature)."""
    path = settings.home / facts.params[TRAINING_DATA_FILE]
    features = list(facts.features)
    day_column = settings.usecase.data.partition_date
    frame = pd.read_parquet(path, columns=[*dict.fromkeys([*features, day_column])])
    windows = recorded_windows(facts)
    day = pd.to_datetime(frame[day_column]).dt.date
    train = frame.loc[(day >= windows.train_start) & (day < windows.train_end)]
    test = frame.loc[(day >= windows.test_start) & (day < windows.test_end)]
    return train[features].reset_index(drop=True), test[features].reset_index(drop=True)


@dataclass(frozen=True)
class Reproduction:
    version: str
    recorded: dict[str, float]
    reproduced: dict[str, float]
    same_rows: bool
    """Whether the rows selected again hash exactly as the recorded training and test rows."""


def reproduce(version: str, settings: Settings | None = None) -> Reproduction:
    """Retrain ``version`` from its lineage: the same rows (checked by hash), the same model
    family, hyperparameters and seed; returns the test metrics recorded and obtained."""
    settings = settings or get_settings()
    facts = registry.model_facts(version, settings)
    params = facts.params
    path = settings.home / params[TRAINING_DATA_FILE]
    if not path.exists():
        raise FileNotFoundError(f"the training data of {version} is gone: {path}")
    frame = pd.read_parquet(path)
    windows = recorded_windows(facts)
    usecase = settings.usecase
    rows, ids = labelled_rows(usecase), id_columns(usecase)
    train, test = train_test_frames(frame, windows, rows)
    same_rows = (
        window_facts(train, ids, facts.features, windows.train_start, windows.train_end)
        == facts.training_data.train
        and window_facts(test, ids, facts.features, windows.test_start, windows.test_end)
        == facts.training_data.test
    )
    candidate = Candidate(
        params["family"], tuple(sorted(params["hyperparameters"].items())),
        FamilySpec.from_dict(params["family_spec"]),
    )
    final = fit_final(
        candidate, frame, windows, facts.features, rows, Scorecard.declared(usecase),
        random_state=params["random_state"],
    )
    return Reproduction(
        version=version, recorded=dict(facts.test_metrics), reproduced=final.metrics,
        same_rows=same_rows,
    )
