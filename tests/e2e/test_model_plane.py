"""Training, the registry, the promotion gate, batch scoring and `blueprint serve`, end to end."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from orchestration.lib.serving.process import free_port
from orchestration.settings import PROJECT_ROOT
from tests.e2e.e2e_world import (
    DAYS,
    SHORT_WINDOWS,
    START,
    copy_world,
    instance,
    read_parquet,
    warehouse,
)
from tests.support import run_blueprint

pytestmark = pytest.mark.slow


# --- the model plane ---------------------------------------------------------------------------


@pytest.fixture
def registry_of(monkeypatch: pytest.MonkeyPatch):
    """The registry module reading a given home."""
    from orchestration.lib.registry import registry

    def use(home: Path):
        monkeypatch.setenv("BLUEPRINT_HOME", str(home))
        return registry

    return use


def _materializations(home: Path, key: str) -> list:
    return [
        r.asset_materialization
        for r in instance(home).fetch_materializations(
            dg.AssetKey(["fraud", key]), limit=100
        ).records
    ]


def test_materialize_trains_registers_and_promotes_a_champion_with_its_lineage(
    world: Path, registry_of
):
    registry = registry_of(world)
    [version] = [v.version for v in registry.versions()]
    assert registry.champion_version() == version
    facts = registry.model_facts(version)

    published = json.loads((world / "serving" / "fraud" / "feature_definitions.json").read_text())
    from orchestration.lib.features.feature_definitions import FeatureDefinitions
    from orchestration.lib.features.pseudonymize import key_fingerprint

    assert facts.feature_definitions_hash == FeatureDefinitions.from_dict(published).hash
    key = (world / "secrets" / "pseudonymization.key").read_text().strip().encode()
    assert facts.pseudonymization_key_fingerprint == key_fingerprint(key)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True
    ).stdout.strip()
    assert facts.code.commit == head
    assert facts.library_versions["scikit-learn"]
    assert len(facts.fold_metrics) == int(SHORT_WINDOWS["BLUEPRINT_FRAUD_PROTOCOL_FOLDS"])
    assert set(facts.test_metrics) == {"auc_roc", "average_precision", "card_precision_top_k"}
    data = facts.training_data
    assert (data.train.end - data.train.start).days + 1 == 5
    assert (data.test.end - data.test.start).days + 1 == 5
    assert data.train.rows > 0 and data.test.rows > 0 and data.label_cutoff == data.test.start
    assert "from training_set" in data.query
    assert (world / facts.params["training_data_file"]).exists()
    assert facts.params["family"] in {"logistic_regression", "random_forest", "gradient_boosting"}

    [event] = [e for e in registry.history(version) if e.event == "promoted"]
    assert event.actor == "promotion_gate" and "first champion" in event.reason
    assert event.details["numbers"]["alert_threshold"] == registry.alert_threshold(version)

    [candidate] = _materializations(world, "model_candidate")
    meta = candidate.metadata
    assert meta["model_version"].value == version
    assert "data:image/png;base64," in meta["roc_pr_curves"].value
    assert "data:image/png;base64," in meta["feature_importances"].value
    [gate] = _materializations(world, "champion_model")
    assert gate.metadata["decision"].value == "promoted"
    assert gate.metadata["inputs_checked"].value is True
    assert f"| {version} | champion |" in gate.metadata["registry"].value


def test_a_version_is_reproduced_exactly_from_its_lineage(world: Path, registry_of):
    version = registry_of(world).champion_version()
    result = run_blueprint(world, "models", "reproduce", version)
    assert "reproduced exactly" in result.stdout
    assert "rows: identical" in result.stdout


def test_the_gate_refuses_a_weakened_challenger_and_records_why(
    world: Path, tmp_path: Path, registry_of, monkeypatch: pytest.MonkeyPatch
):
    home = copy_world(world, tmp_path)
    registry = registry_of(home)
    champion = registry.champion_version()
    # a model that sees only the hour and the weekday cannot find fraud
    monkeypatch.setenv("BLUEPRINT_FRAUD_FEATURES_TRAIN_ON", "tx_during_weekend,tx_during_night")
    run_blueprint(home, "train")

    assert registry.champion_version() == champion
    [weak] = [v.version for v in registry.versions() if v.version != champion]
    [rejected] = [e for e in registry.history(weak) if e.event == "rejected"]
    assert rejected.actor == "promotion_gate" and "average_precision gain" in rejected.reason
    numbers = rejected.details["numbers"]
    assert numbers["challenger_average_precision"] < numbers["champion_average_precision"]
    assert numbers["champion_version"] == champion
    gate = _materializations(home, "champion_model")[0]
    assert gate.metadata["decision"].value == "rejected"
    assert gate.metadata["candidate_version"].value == weak


def test_batch_scoring_scores_every_day_with_the_champion(world: Path, registry_of):
    from orchestration.lib.serving.scoring import load_champion

    registry_of(world)
    model = load_champion()
    scores = read_parquet(str(world / "scores" / "fraud" / "*" / "scores.parquet"))
    [(n_features,)] = warehouse(world, "select count(*) from transaction_features")
    assert len(scores) == n_features and scores["transaction_id"].is_unique
    assert set(scores["model_version"]) == {model.version}
    assert (scores["alert"] == (scores["fraud_probability"] >= model.alert_threshold)).all()

    day = START + timedelta(days=DAYS - 1)
    with duckdb.connect(str(world / "warehouse" / "fraud.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select * from transaction_features where tx_date = ? order by transaction_id", [day]
        ).df()
    expected = pd.Series(model.score(rows), index=rows["transaction_id"])
    got = scores.set_index("transaction_id").loc[rows["transaction_id"], "fraud_probability"]
    assert (got - expected).abs().max() <= 1e-12

    queue = pd.read_parquet(
        world / "scores" / "fraud" / f"tx_date={day}" / "daily_list.parquet"
    )
    assert 0 < len(queue) <= 100 and queue["card_key"].is_unique
    assert list(queue["rank"]) == list(range(1, len(queue) + 1))
    assert queue["fraud_probability"].is_monotonic_decreasing
    assert queue["reasons"].str.len().min() > 0


def test_blueprint_serve_prints_a_curl_example_that_works(world: Path, tmp_path: Path):
    home = copy_world(world, tmp_path)
    port = free_port()
    started = run_blueprint(home, "serve", "--port", str(port))
    try:
        curl = started.stdout.split("Try it:\n", 1)[1].strip()
        assert f"http://127.0.0.1:{port}/score" in curl
        answer = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60)
        scored = json.loads(answer.stdout)
        assert scored["transaction_id"] == "demo-1"
        assert 0.0 <= scored["fraud_probability"] <= 1.0
        assert scored["model_version"] == (
            run_blueprint(home, "models", "list").stdout.split("*", 1)[1].split()[0]
        )
        assert len(scored["reasons"]) == 3
    finally:
        stopped = run_blueprint(home, "stop")
    assert "Stopped the scoring service." in stopped.stdout
