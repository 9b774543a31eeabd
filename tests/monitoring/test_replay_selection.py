"""What a replay step materializes: everything but training, and the table the models learn
from only when a report reads it."""

from __future__ import annotations

import dagster as dg
import pytest

from blueprint_cli.replay import replay_selection, training_set_selection
from orchestration.definitions import definitions_for
from orchestration.settings import get_settings


def _selected(usecase: str, selection: str) -> set[str]:
    graph = definitions_for(usecase).resolve_asset_graph()
    return {k.to_user_string() for k in dg.AssetSelection.from_string(selection).resolve(graph)}


@pytest.mark.parametrize("usecase", ["fraud", "churn"])
def test_a_replay_step_trains_nothing_and_builds_every_report(usecase):
    settings = get_settings(usecase)
    selected = _selected(usecase, replay_selection(settings))
    assert not selected & {f"{usecase}/{a}" for a in ("training_data", "model_candidate",
                                                     "champion_model")}
    reports = {f"{usecase}/{kind}_report" for kind in ("data_drift", "prediction_drift",
                                                       "performance")}
    assert reports <= selected


def test_a_batch_use_cases_replay_builds_the_table_its_performance_reports_label_from():
    """Its performance reports read the labels from the table: left out, it kept the labels
    of the first materialization (later cancellations unseen, later days absent)."""
    settings = get_settings("churn")
    table = _selected("churn", training_set_selection(settings))
    assert table == {f"churn/{settings.usecase.data.table}"}
    assert table <= _selected("churn", replay_selection(settings))


def test_an_online_use_cases_replay_leaves_the_training_table_to_the_retraining():
    """Its performance reports label from the fraud reports' staging model."""
    settings = get_settings("fraud")
    table = _selected("fraud", training_set_selection(settings))
    assert not table & _selected("fraud", replay_selection(settings))
