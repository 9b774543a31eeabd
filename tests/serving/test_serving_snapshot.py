"""The serving snapshot: the recent staged history as Parquet, switched atomically."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from orchestration.lib.features.feature_definitions import (
    FeatureDefinitions,
    FeatureDefinitionsError,
)
from orchestration.lib.serving.online_features import OnlineFeatureStore
from orchestration.lib.serving.snapshot import (
    CURRENT_POINTER,
    KEEP_VERSIONS,
    SnapshotError,
    current_snapshot,
)
from tests.features.raw_world import DbtRun
from tests.serving.serving_world import publish


def test_serving_snapshot_holds_the_lookback_horizon_and_what_serving_needs(
    tiny_build: DbtRun, tiny_definitions: FeatureDefinitions, tiny_key_hex: str, tmp_path: Path
) -> None:
    snapshot = publish(tiny_build, tiny_definitions, tmp_path / "serving", tiny_key_hex)
    manifest = snapshot.manifest

    with duckdb.connect(str(tiny_build.warehouse), read_only=True) as conn:
        last_day = conn.sql("select max(tx_date) from stg_transactions").fetchall()[0][0]
        first_day = last_day - timedelta(days=37)
        expected_ids = {
            i
            for (i,) in conn.execute(
                "select transaction_id from stg_transactions where tx_date >= ?", [first_day]
            ).fetchall()
        }
        all_reports = conn.sql("select transaction_id from stg_fraud_reports").fetchall()
    assert manifest["lookback_days"] == 38
    assert manifest["last_day"] == last_day.isoformat()
    assert manifest["first_day"] == first_day.isoformat()
    assert manifest["feature_definitions_hash"] == tiny_definitions.hash
    assert manifest["feature_definitions"]["models"][-1]["name"] == "transaction_features"
    assert "created_at" in manifest

    transactions = pq.read_table(snapshot.table_path("stg_transactions"))
    reports = pq.read_table(snapshot.table_path("stg_fraud_reports"))
    assert set(transactions.column("transaction_id").to_pylist()) == expected_ids
    assert set(reports.column("transaction_id").to_pylist()) == {
        i for (i,) in all_reports if i in expected_ids
    }
    assert 0 < reports.num_rows < len(all_reports)  # reports of older payments are left out
    assert manifest["tables"]["stg_transactions"]["rows"] == transactions.num_rows
    assert manifest["tables"]["stg_fraud_reports"]["rows"] == reports.num_rows
    assert "card_number" not in transactions.schema.names + reports.schema.names

    with pytest.raises(ValueError, match="shorter than the feature windows"):
        publish(tiny_build, tiny_definitions, tmp_path / "other", tiny_key_hex, lookback_days=20)


def test_serving_snapshot_switches_versions_atomically(
    tiny_build: DbtRun, tiny_definitions: FeatureDefinitions, tiny_key_hex: str, tmp_path: Path
) -> None:
    out = tmp_path / "serving"
    first = publish(tiny_build, tiny_definitions, out, tiny_key_hex)
    assert (out / CURRENT_POINTER).read_text().strip() == first.version
    store = OnlineFeatureStore.from_snapshot(out, key=tiny_key_hex.encode())
    assert store.snapshot_version == first.version

    second = publish(tiny_build, tiny_definitions, out, tiny_key_hex)
    assert second.version != first.version
    assert current_snapshot(out).version == second.version
    assert current_snapshot(first.path).version == first.version  # still there for its readers

    # a publisher that dies half-way leaves a hidden folder; the next publish removes it
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    abandoned = out / f".{first.version}.{dead.stdout.strip()}.0badc0de.tmp"
    abandoned.mkdir()
    (abandoned / "stg_transactions.parquet").write_bytes(b"partial")

    versions = [publish(tiny_build, tiny_definitions, out, tiny_key_hex) for _ in range(3)]
    assert not abandoned.exists()
    kept = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert len(kept) == KEEP_VERSIONS
    assert kept[-1] == versions[-1].version == current_snapshot(out).version

    # a failing publish leaves the current snapshot as it was
    with pytest.raises(duckdb.Error):
        publish(
            DbtRun(tmp_path / "nowhere", 0, "", 0, tmp_path, tmp_path),
            tiny_definitions,
            out,
            tiny_key_hex,
        )
    assert current_snapshot(out).version == versions[-1].version
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]


def test_serving_snapshot_refuses_what_it_cannot_serve(
    tiny_build: DbtRun, tiny_definitions: FeatureDefinitions, tiny_key_hex: str, tmp_path: Path
) -> None:
    with pytest.raises(SnapshotError, match="no serving snapshot"):
        current_snapshot(tmp_path / "empty")

    out = tmp_path / "serving"
    snapshot = publish(tiny_build, tiny_definitions, out, tiny_key_hex)
    with pytest.raises(SnapshotError, match="another pseudonymization key"):
        OnlineFeatureStore.from_snapshot(out, key=b"not the key")

    manifest = json.loads((snapshot.path / "manifest.json").read_text())
    manifest["feature_definitions"]["models"][0]["compiled_sql"] += "\n-- edited by hand"
    (snapshot.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FeatureDefinitionsError, match="hash"):
        OnlineFeatureStore.from_snapshot(out, key=tiny_key_hex.encode())
