"""Models in BentoML's store under BLUEPRINT_HOME, with their immutable facts as metadata."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import bentoml
import numpy as np
import pandas as pd
import pytest

from orchestration.lib.registry import registry
from orchestration.lib.registry.facts import (
    CodeVersion,
    code_version,
    frame_fingerprint,
)
from orchestration.settings import PROJECT_ROOT, get_settings

REQUIRED_FACTS = {
    "facts_schema", "params", "training_data", "features", "feature_definitions_hash",
    "pseudonymization_key_fingerprint", "fold_metrics", "test_metrics", "training_seconds",
    "trained_at", "code", "library_versions", "reference_means",
}


def test_a_model_round_trips_through_the_store_by_version(frame, fit, make_facts, home: Path):
    pipeline = fit()
    facts = make_facts(pipeline)
    version = registry.save_model(pipeline, facts)

    assert (home / "bentoml" / "models" / "fraud_detector" / version / "model.yaml").exists()
    loaded, loaded_facts = registry.load_model(version)
    features = frame[list(facts.features)]
    np.testing.assert_array_equal(loaded.predict_proba(features), pipeline.predict_proba(features))
    assert loaded_facts == facts
    assert registry.load_model(f"fraud_detector:{version}")[1] == facts
    assert registry.model_facts(version) == facts


def test_the_metadata_holds_every_fact_as_json(fit, make_facts):
    pipeline = fit()
    facts = make_facts(pipeline)
    version = registry.save_model(pipeline, facts)

    metadata = bentoml.models.get(
        f"fraud_detector:{version}", _model_store=registry.model_store()
    ).info.metadata
    assert set(metadata) == REQUIRED_FACTS
    json.dumps(metadata, allow_nan=False)
    params = json.loads(metadata["params"])
    assert params["logisticregression__C"] == 1.0
    assert params["logisticregression__class_weight"] is None  # None survives: it is a choice
    data = metadata["training_data"]
    assert data["train"] == {
        "start": "2018-04-01", "end": "2018-05-31", "rows": 200,
        "fingerprint": facts.training_data.train.fingerprint,
    }
    assert data["test"]["rows"] == 100 and data["label_cutoff"] == "2018-06-01"
    assert data["partitions"][0] == "2018-04-01" and data["partitions"][-1] == "2018-06-14"
    assert len(data["partitions"]) == 61 + 7
    assert metadata["features"] == facts.features
    assert len(metadata["feature_definitions_hash"]) == 64
    assert metadata["pseudonymization_key_fingerprint"] == facts.pseudonymization_key_fingerprint
    assert [fold["fold"] for fold in metadata["fold_metrics"]] == [0, 1]
    assert metadata["test_metrics"]["average_precision"] == 0.6
    assert metadata["code"]["commit"] == facts.code.commit
    assert {"python", "scikit-learn", "bentoml", "pandas", "dbt-core"} <= set(
        metadata["library_versions"]
    )
    assert metadata["library_versions"]["bentoml"] == bentoml.__version__


def test_non_finite_metrics_are_stored_as_absent(fit, make_facts):
    pipeline = fit()
    facts = make_facts(pipeline, test_metrics={"average_precision": float("nan"), "auc": 0.9})
    version = registry.save_model(pipeline, facts)
    assert registry.model_facts(version).test_metrics == {"auc": 0.9}


def test_saving_registers_a_candidate(fit, make_facts):
    pipeline = fit()
    version = registry.save_model(pipeline, make_facts(pipeline), reason="nightly retrain")
    [entry] = registry.versions()
    assert (entry.version, entry.status) == (version, "candidate")
    [event] = registry.history(version)
    assert (event.event, event.actor, event.reason) == ("registered", "training", "nightly retrain")
    assert event.details == {"tag": f"fraud_detector:{version}"}


def test_serving_loads_the_champion_not_the_latest_model(frame, fit, make_facts):
    champion_pipeline, newer_pipeline = fit(c=1.0), fit(c=0.001)
    champion = registry.save_model(champion_pipeline, make_facts(champion_pipeline))
    newer = registry.save_model(newer_pipeline, make_facts(newer_pipeline))
    registry.promote(champion, reason="passed the gate", actor="promotion_gate")

    latest = bentoml.models.get("fraud_detector:latest", _model_store=registry.model_store())
    assert latest.tag.version == newer  # BentoML's idea of "latest" ...
    assert registry.champion_version() == champion  # ... is not what serving uses

    served, _ = registry.load_model(registry.champion_version())
    features = frame[registry.model_facts(champion).features]
    np.testing.assert_array_equal(
        served.predict_proba(features), champion_pipeline.predict_proba(features)
    )
    assert not np.array_equal(
        served.predict_proba(features), newer_pipeline.predict_proba(features)
    )


def test_loading_needs_an_exact_known_version(fit, make_facts):
    pipeline = fit()
    version = registry.save_model(pipeline, make_facts(pipeline))
    with pytest.raises(registry.RegistryError, match="never 'latest'"):
        registry.load_model("latest")
    with pytest.raises(registry.UnknownVersionError, match="not in the model store"):
        registry.load_model("doesnotexist")
    with pytest.raises(registry.UnknownVersionError, match="not in the model store"):
        registry.load_model(version[:4])  # BentoML would answer a prefix; the registry does not
    with pytest.raises(registry.UnknownVersionError, match="not a version of fraud_detector"):
        registry.load_model(f"other_model:{version}")


def test_facts_must_name_the_features_the_pipeline_was_fitted_on(fit, make_facts):
    pipeline = fit()
    with pytest.raises(ValueError, match="differ from the columns"):
        registry.save_model(pipeline, make_facts(pipeline, features=["amount"]))
    assert registry.versions() == []


SAVE_AND_LOAD = """
from datetime import date
import numpy as np
from sklearn.dummy import DummyClassifier
from orchestration.lib.registry import registry
from orchestration.lib.registry.facts import DataWindow, ModelFacts, TrainingData, estimator_params
model = DummyClassifier(strategy="prior").fit(np.zeros((4, 1)), [0, 1, 0, 0])
window = DataWindow(date(2018, 4, 1), date(2018, 4, 2), 4, "f" * 64)
facts = ModelFacts(
    params=estimator_params(model),
    training_data=TrainingData(train=window, test=window, table="training_set"),
    features=["x"], feature_definitions_hash="h" * 64, pseudonymization_key_fingerprint="k",
    fold_metrics=[], test_metrics={"average_precision": 0.2}, training_seconds=0.1,
)
version = registry.save_model(model, facts)
assert registry.load_model(version)[1] == facts
print(version)
"""


@pytest.mark.parametrize("bentoml_home", [None, "elsewhere"])
def test_the_store_lives_under_blueprint_home_never_in_the_user_home(
    tmp_path: Path, home: Path, bentoml_home: str | None
):
    """A fresh process, as the pipeline or the CLI would start, with BENTOML_HOME unset or stale."""
    user_home = tmp_path / "user"
    user_home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "BENTOML_HOME"}
    env |= {"HOME": str(user_home), "BLUEPRINT_HOME": str(home)}
    if bentoml_home:
        env["BENTOML_HOME"] = str(tmp_path / bentoml_home)
    completed = subprocess.run(
        [sys.executable, "-c", SAVE_AND_LOAD], cwd=PROJECT_ROOT, env=env,
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    version = completed.stdout.split()[-1]

    assert (home / "bentoml" / "models" / "fraud_detector" / version).is_dir()
    assert not (user_home / "bentoml").exists()
    assert not (tmp_path / "elsewhere").exists()


# --- lineage helpers ------------------------------------------------------------------------


def test_frame_fingerprint_follows_its_documented_serialization():
    frame = pd.DataFrame({"b": [2, 1], "a": ["x\ty", None]})
    expected = hashlib.sha256(b"a\tb\n\\N\t1\nx\\ty\t2\n").hexdigest()
    assert frame_fingerprint(frame) == expected

    typed = pd.DataFrame({
        "t": [pd.Timestamp("2018-04-01 10:00:00")], "f": [0.1], "ok": [True],
        "d": [date(2018, 4, 1)],
    })
    expected = hashlib.sha256(
        b"d\tf\tok\tt\n2018-04-01\t0.1\ttrue\t2018-04-01 10:00:00.000000000\n"
    ).hexdigest()
    assert frame_fingerprint(typed) == expected


def test_frame_fingerprint_ignores_order_index_and_widths_but_not_content(frame):
    reference = frame_fingerprint(frame)
    shuffled = frame.sample(frac=1, random_state=3)[list(reversed(frame.columns))]
    assert frame_fingerprint(shuffled) == reference
    assert frame_fingerprint(frame.reset_index(drop=True).set_axis(
        range(1000, 1000 + len(frame)))) == reference
    assert frame_fingerprint(frame.astype({"is_fraud": "int32"})) == reference
    assert frame_fingerprint(frame.astype({"is_fraud": "float64"})) == reference

    changed = frame.copy()
    changed.loc[changed.index[5], "amount"] += 1e-9
    assert frame_fingerprint(changed) != reference
    assert frame_fingerprint(frame.iloc[1:]) != reference
    assert frame_fingerprint(pd.concat([frame, frame.iloc[:1]])) != reference
    assert frame_fingerprint(frame.rename(columns={"amount": "amt"})) != reference


def test_frame_fingerprint_cannot_be_fooled_by_separators_or_null_lookalikes():
    def fingerprint(**columns):
        return frame_fingerprint(pd.DataFrame(columns))

    assert fingerprint(a=["x\t"], b=["y"]) != fingerprint(a=["x"], b=["\ty"])
    assert fingerprint(a=["x\ny"]) != fingerprint(a=["x", "y"])
    assert fingerprint(a=[None]) != fingerprint(a=["\\N"])
    assert fingerprint(a=[np.nan, 1.0]) == fingerprint(a=[None, 1])
    assert fingerprint(a=[2**53]) != fingerprint(a=[2**53 + 1])  # integers stay exact


def test_code_version_is_the_commit_or_unknown(tmp_path: Path):
    inside = code_version(PROJECT_ROOT)
    if (PROJECT_ROOT / ".git").exists():
        assert len(inside.commit) == 40 and isinstance(inside.dirty, bool)
    outside = code_version(tmp_path)
    assert outside == CodeVersion(commit="unknown", dirty=None)


def test_settings_name_the_store_and_registry_under_blueprint_home(home: Path):
    settings = get_settings()
    assert settings.model_store_dir == home / "bentoml" / "models"
    assert settings.registry_path == home / "registry" / "fraud.db"
