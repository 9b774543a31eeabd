"""A tiny fitted pipeline and its complete facts, for tests that need a model in the store."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import date

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from orchestration.lib.features.pseudonymize import key_fingerprint
from orchestration.lib.registry import registry
from orchestration.lib.registry.facts import (
    DataWindow,
    ModelFacts,
    TrainingData,
    estimator_params,
    frame_fingerprint,
)

FEATURES = ["amount", "tx_during_night", "customer_nb_tx_1day"]


def tiny_frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    features = pd.DataFrame(rng.normal(size=(300, len(FEATURES))), columns=FEATURES)
    return features.assign(is_fraud=(features["amount"] + rng.normal(size=300) > 1).astype(int))


def tiny_pipeline(frame: pd.DataFrame, c: float = 1.0) -> Pipeline:
    """A small scaler + logistic regression; a different ``c`` gives other predictions."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=c)).fit(
        frame[FEATURES], frame["is_fraud"]
    )


def tiny_facts(pipeline: Pipeline, frame: pd.DataFrame, **overrides) -> ModelFacts:
    """Complete facts for a pipeline fitted on ``frame``; keyword arguments override fields."""
    train, test = frame.iloc[:200], frame.iloc[200:]
    facts = ModelFacts(
        params=estimator_params(pipeline),
        training_data=TrainingData(
            train=DataWindow(
                start=date(2018, 4, 1), end=date(2018, 5, 31), rows=len(train),
                fingerprint=frame_fingerprint(train),
            ),
            test=DataWindow(
                start=date(2018, 6, 8), end=date(2018, 6, 14), rows=len(test),
                fingerprint=frame_fingerprint(test),
            ),
            table="training_set",
            label_cutoff=date(2018, 6, 1),
            query="select * from training_set where tx_date between ? and ?",
        ),
        features=list(FEATURES),
        feature_definitions_hash=hashlib.sha256(b"select 1 as amount").hexdigest(),
        pseudonymization_key_fingerprint=key_fingerprint(b"test key"),
        fold_metrics=[
            {"fold": 0, "average_precision": 0.61, "card_precision_at_100": 0.21},
            {"fold": 1, "average_precision": 0.58, "card_precision_at_100": 0.19},
        ],
        test_metrics={"average_precision": 0.6, "card_precision_top_k": 0.2},
        training_seconds=1.25,
    )
    return replace(facts, **overrides)


def promote_tiny_champion(settings=None) -> str:
    """Save a tiny model and make it the champion; its version."""
    frame = tiny_frame()
    pipeline = tiny_pipeline(frame)
    version = registry.save_model(pipeline, tiny_facts(pipeline, frame), settings=settings)
    registry.record_decision(version, True, "first", {}, actor="test", settings=settings)
    return version
