"""Feature definitions: dbt's compiled SQL of the chain, in order, fingerprinted."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from orchestration.lib.features.feature_definitions import (
    FeatureDefinitions,
    FeatureDefinitionsError,
    load_feature_definitions,
    normalise_sql,
)
from tests.features.raw_world import DbtRun, declared_features


def edited_manifest(run: DbtRun, tmp_path: Path, model: str, edit) -> Path:
    """A copy of the run's manifest with ``edit`` applied to one model's node."""
    manifest = json.loads((run.target_path / "manifest.json").read_text())
    edit(manifest["nodes"][f"model.blueprint.{model}"])
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    return path


def test_serving_definitions_are_the_compiled_chain_in_dependency_order(
    tiny_build: DbtRun, tiny_definitions: FeatureDefinitions
) -> None:
    assert [m.name for m in tiny_definitions.inputs] == ["stg_transactions", "stg_fraud_reports"]
    assert [m.name for m in tiny_definitions.models] == [
        "int_terminal_days_aggregated",
        "transaction_features",
    ]
    chain = (*tiny_definitions.inputs, *tiny_definitions.models)
    relations = {model.name: model.relation.sql for model in chain}
    assert relations["transaction_features"] == '"fraud"."main"."transaction_features"'
    for model in tiny_definitions.models:
        assert "{{" not in model.compiled_sql and "ref(" not in model.compiled_sql
        for parent in model.depends_on:  # the compiled SQL reads its parents by relation name
            assert relations[parent] in model.compiled_sql
    assert tiny_definitions.models[1].depends_on == (
        "stg_transactions",
        "int_terminal_days_aggregated",
    )
    for sql in tiny_definitions.compiled_sql.values():
        assert str(tiny_build.home) not in sql
        assert str(tiny_build.target_path.parent) not in sql


def test_serving_lookback_comes_from_the_declared_features() -> None:
    features = declared_features()
    starts = features.history_starts()
    noon = datetime(2024, 5, 10, 12, 30)
    assert sorted(starts) == ["card_key", "terminal_id"]
    assert starts["card_key"](noon) == noon - timedelta(days=30)  # the widest card window
    # days D-37 .. D-8 for the 30-day window 7 days back: from the start of D-37
    assert starts["terminal_id"](noon) == datetime(2024, 4, 3)
    assert features.lookback_days == 38


def test_serving_definitions_hash_follows_the_sql_and_nothing_else(
    tiny_build: DbtRun, tiny_definitions: FeatureDefinitions, tmp_path: Path
) -> None:
    def reformat(node: dict) -> None:
        node["compiled_code"] = node["compiled_code"].replace("\n", "   \r\n") + "\n\n"

    def change_window(node: dict) -> None:
        assert "range between" in node["compiled_code"]
        node["compiled_code"] = node["compiled_code"].replace("range between", "rows between", 1)

    same = load_feature_definitions(
        edited_manifest(tiny_build, tmp_path, "transaction_features", reformat),
        declared_features(),
    )
    assert same.hash == tiny_definitions.hash

    for model in ("transaction_features", "int_terminal_days_aggregated"):
        changed = load_feature_definitions(
            edited_manifest(tiny_build, tmp_path, model, change_window),
            declared_features(),
        )
        assert changed.hash != tiny_definitions.hash

    def change_staging(node: dict) -> None:
        assert "as double" in node["compiled_code"]
        node["compiled_code"] = node["compiled_code"].replace("as double", "as decimal(18, 2)")

    staged = load_feature_definitions(
        edited_manifest(tiny_build, tmp_path, "stg_transactions", change_staging),
        declared_features(),
    )
    assert staged.hash != tiny_definitions.hash
    assert normalise_sql("select 1  \r\nfrom t\n") == "select 1\nfrom t"


def test_serving_definitions_need_compiled_sql_without_paths(
    tiny_build: DbtRun, tmp_path: Path
) -> None:
    def parsed_only(node: dict) -> None:
        node.pop("compiled_code")

    with pytest.raises(FeatureDefinitionsError, match="dbt compile"):
        load_feature_definitions(
            edited_manifest(tiny_build, tmp_path, "int_terminal_days_aggregated", parsed_only),
            declared_features(),
        )

    def absolute_path(node: dict) -> None:
        node["compiled_code"] = node["compiled_code"].replace(
            "'raw/transactions/", f"'{tiny_build.home}/raw/transactions/"
        )

    with pytest.raises(FeatureDefinitionsError, match="absolute path"):
        load_feature_definitions(
            edited_manifest(tiny_build, tmp_path, "stg_transactions", absolute_path),
            declared_features(),
        )


def test_serving_definitions_round_trip_and_detect_tampering(
    tiny_definitions: FeatureDefinitions,
) -> None:
    data = json.loads(json.dumps(tiny_definitions.to_dict()))
    assert FeatureDefinitions.from_dict(data) == tiny_definitions

    data["models"][0]["compiled_sql"] += "\nwhere false"
    with pytest.raises(FeatureDefinitionsError, match="hash"):
        FeatureDefinitions.from_dict(data)
