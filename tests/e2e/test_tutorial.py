"""docs/EXTENDING.md followed literally: a third use case (``loans``) added to a copy of the
project with new files only (and its entry in ``workspace.yaml``), then run by the copy's own
``blueprint materialize``: ingestion, dbt, the quality gates, training, the promotion gate,
batch scoring and monitoring. Marked ``tutorial`` (`make test-tutorial`, run by CI)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from tests.e2e import tutorial_copy as copy
from tests.e2e import tutorial_usecase as loans

pytestmark = pytest.mark.tutorial


@dataclass(frozen=True)
class Tutorial:
    project: Path
    """The copy of the project, with the use case added."""
    home: Path
    originals: dict[str, str]
    """Every tracked file of the project as copied: path -> SHA-256 of its content."""
    imported_from: list[str]
    materialized: subprocess.CompletedProcess


def _blueprint(tutorial: Tutorial, *args: str) -> subprocess.CompletedProcess:
    """The copy's `blueprint` command (its code, not this checkout's)."""
    return copy.blueprint(tutorial.project, copy.project_env(tutorial.project, tutorial.home),
                          *args)


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: pytest.TempPathFactory) -> Tutorial:
    root = tmp_path_factory.mktemp("tutorial")
    project, home = root / "project", root / "home"
    home.mkdir()
    originals = copy.copy_project(project)
    copy.add_use_case(project, loans.FILES, loans.SUITES, loans.WORKSPACE_ENTRY)
    loans.landing_files(home / "landing")
    env = copy.project_env(project, home)
    copy.dbt_parse(project, env)
    imported_from = copy.imported_from(project, env)
    materialized = copy.blueprint(project, env, "materialize", "--usecase", loans.NAME)
    return Tutorial(project, home, originals, imported_from, materialized)


def test_the_use_case_is_new_files_only(tutorial: Tutorial):
    edited = copy.changed_files(tutorial.project, tutorial.originals)
    assert [name for name in edited if name.startswith(copy.PIPELINE)] == [], "the pipeline changed"
    added = sorted(copy.files_in(tutorial.project) - set(tutorial.originals))
    print("added:", *added, sep="\n  ")
    assert added == sorted([*loans.FILES, *loans.SUITES])
    assert edited == ["workspace.yaml"]
    workspace = (tutorial.project / "workspace.yaml").read_text()
    assert workspace.endswith(loans.WORKSPACE_ENTRY)


def test_the_copys_code_is_what_runs(tutorial: Tutorial):
    project = tutorial.project.resolve()
    assert [Path(path).resolve().parent.parent for path in tutorial.imported_from] == [
        project, project]


def test_materialize_runs_every_stage(tutorial: Tutorial):
    output = tutorial.materialized.stdout
    assert "Materialized loans." in output, output + tutorial.materialized.stderr
    snapshots = sorted((tutorial.home / "raw" / loans.SOURCE).glob("date=*/data.parquet"))
    assert len(snapshots) == loans.DAYS
    raw = pd.read_parquet(snapshots[0])
    assert len(raw) == loans.ROWS_PER_DAY and "email" in raw.columns


def test_the_champion_records_the_declared_metrics(tutorial: Tutorial):
    listing = _blueprint(tutorial, "models", "list", "--usecase", loans.NAME).stdout
    header, _, row = listing.splitlines()[:3]
    assert "test average_precision" in header and "test auc_roc" in header
    assert row.split()[:2] == [loans.NAME, "*"]
    average_precision, auc_roc = (float(v) for v in row.split()[-2:])
    assert auc_roc > 0.7  # the label depends on amount_to_income: the model learned it
    assert average_precision > 0.05


def test_every_day_is_scored_in_batch(tutorial: Tutorial):
    days = sorted((tutorial.home / "scores" / loans.NAME).glob("application_date=*"))
    assert len(days) == loans.DAYS
    scores = pd.read_parquet(days[-1] / "scores.parquet")
    assert len(scores) == loans.ROWS_PER_DAY
    assert scores["default_probability"].between(0, 1).all()
    review = pd.read_parquet(days[-1] / "daily_list.parquet")
    assert len(review) == 20 and review["applicant_id"].is_unique


def test_its_assets_live_under_its_name(tutorial: Tutorial):
    instance = dg.DagsterInstance.from_config(str(tutorial.home / "dagster"))
    keys = instance.get_asset_keys()
    assert keys and all(key.path[0] == loans.NAME for key in keys)
    names = {key.path[-1] for key in keys}
    assert {f"raw_{loans.SOURCE}", "stg_loan_applications", "loan_features",
            "loan_training_set", "training_data", "model_candidate", "champion_model",
            "batch_scores"} <= names, names


def test_the_quality_gates_passed(tutorial: Tutorial):
    instance = dg.DagsterInstance.from_config(str(tutorial.home / "dagster"))
    checks = [
        dg.AssetCheckKey(dg.AssetKey([loans.NAME, "loan_features"]), "expectations_suite"),
        dg.AssetCheckKey(dg.AssetKey([loans.NAME, "loan_training_set"]), "expectations_suite"),
        dg.AssetCheckKey(dg.AssetKey([loans.NAME, "loan_training_set"]), "no_personal_data"),
    ]
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(checks)
    for key in checks:
        assert latest[key].evaluation is not None and latest[key].evaluation.passed, key
    reports = json.loads((tutorial.home / "reports" / loans.NAME / "index.json").read_text())
    assert "data_drift" in {entry["kind"] for entry in reports["reports"]}
