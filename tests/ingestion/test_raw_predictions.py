"""raw_predictions ingests each closed prediction log file once, never an open one."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd

from orchestration.defs.ingestion.predictions import raw_predictions_asset
from orchestration.lib.serving.prediction_log import PredictionLog
from orchestration.settings import get_settings
from tests.serving.test_service_prediction_log import COLUMNS, row
from tests.support import usecase_scope

raw_predictions = raw_predictions_asset(usecase_scope())


def _materialize() -> dg.MaterializeResult:
    result = dg.materialize([raw_predictions])
    assert result.success
    [event] = result.get_asset_materialization_events()
    return event.materialization.metadata


def _raw(home: Path) -> pd.DataFrame:
    files = sorted((home / "raw" / "predictions" / "fraud").glob("file=*/data.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def test_closed_files_are_ingested_once_and_open_ones_wait(blueprint_home: Path):
    settings = get_settings()
    log = PredictionLog(
        settings.prediction_log_dir, rotate_rows=3, rotate_seconds=3600, columns=COLUMNS
    ).start()
    for n in range(7):  # 3 + 3 rows closed, 1 row still open
        log.write([row(n)])

    first = _materialize()
    assert first["new_files"].value == 2 and first["new_rows"].value == 6
    raw = _raw(blueprint_home)
    assert sorted(raw["transaction_id"]) == [f"t{n}" for n in range(6)]
    assert raw.loc[raw["transaction_id"] == "t4", "features.card_nb_tx_1day"].item() == 4

    again = _materialize()
    assert again["new_files"].value == 0
    assert len(_raw(blueprint_home)) == 6  # nothing twice

    log.close()  # the open file is closed at shutdown: now it is ingested
    last = _materialize()
    assert last["new_files"].value == 1 and last["new_rows"].value == 1
    raw = _raw(blueprint_home)
    assert raw["transaction_id"].is_unique and len(raw) == 7
