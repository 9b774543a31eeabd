"""Helpers of the serving tests: worlds built by the real pipeline code, publishing, replaying.

``build_serving_world`` simulates a world once and runs ingestion
(``orchestration.lib.ingestion.ingest.ingest_partition``) and ``dbt build`` in two homes: ``as_of``
holds only the partitions up to a cutoff day (what the pipeline had then: the state a serving
snapshot is published from), ``full`` holds every day (the offline truth the online features
must equal).
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from orchestration.lib.features.feature_definitions import FeatureDefinitions
from orchestration.lib.features.pseudonymize import key_fingerprint
from orchestration.lib.ingestion.declared import contracts_of
from orchestration.lib.ingestion.ingest import ingest_partition
from orchestration.lib.ingestion.landing import landing_files
from orchestration.lib.monitoring.traffic import SKEW_TOLERANCE
from orchestration.lib.serving.online_features import OnlineFeatureStore
from orchestration.lib.serving.snapshot import ServingSnapshot, publish_serving_snapshot
from orchestration.settings import (
    DBT_PROJECT_DIR,
    PROJECT_ROOT,
    PSEUDONYMIZATION_KEY_ENV,
    get_settings,
)
from simulator import simulate
from simulator.config import WorldConfig
from tests.features.raw_world import DBT_EXECUTABLE, DbtRun, dbt_build


@dataclass(frozen=True)
class ServingWorld:
    """The two builds of one simulated world and the key they were pseudonymized with."""

    config: WorldConfig
    cutoff: date
    key_hex: str
    as_of: DbtRun
    full: DbtRun

    @property
    def key(self) -> bytes:
        return self.key_hex.encode()  # as orchestration.settings.pseudonymization_key reads it

    @property
    def last_day(self) -> date:
        return self.config.start + timedelta(days=self.config.n_days - 1)

    @property
    def replay_days(self) -> list[date]:
        n = (self.last_day - self.cutoff).days
        return [self.cutoff + timedelta(days=i) for i in range(1, n + 1)]

    def raw(self, source: str, day: date) -> pd.DataFrame:
        """A raw-zone partition of the full home (what the source delivered that day)."""
        path = self.full.home / "raw" / source / f"date={day.isoformat()}" / "data.parquet"
        return pd.read_parquet(path) if path.exists() else pd.DataFrame()

    def offline_features(self) -> pd.DataFrame:
        """``transaction_features`` of the full build, by transaction id."""
        return offline_features(self.full)


def ingest(landing_home: Path, home: Path, through: date | None = None) -> None:
    """Ingest every landing partition of ``landing_home`` (up to ``through``) into ``home``."""
    for contract in contracts_of(get_settings().usecase).values():
        for day in sorted(landing_files(contract, landing_home / "landing")):
            if through is None or day <= through:
                ingest_partition(
                    contract, day, landing_home / "landing", home / "raw", home / "quarantine"
                )


def build_serving_world(
    root: Path, config: WorldConfig, replay_days: int, key_hex: str, *dbt_args: str
) -> ServingWorld:
    """Simulate ``config`` and build it twice: up to ``replay_days`` before its end, and in full.

    ``dbt_args`` go to both ``dbt build`` calls (e.g. ``--exclude test_type:unit`` where a test
    needs the tables, not dbt's unit tests, which tests/features runs)."""
    full_home, as_of_home = root / "full", root / "as_of"
    full_home.mkdir(parents=True)
    as_of_home.mkdir()
    simulate(config, full_home, progress=False)
    cutoff = config.start + timedelta(days=config.n_days - 1 - replay_days)
    ingest(full_home, as_of_home, through=cutoff)
    ingest(full_home, full_home)
    builds = {}
    for name, home in (("as_of", as_of_home), ("full", full_home)):
        run = dbt_build(home, key_hex, *dbt_args)
        assert run.returncode == 0, run.output[-5000:]
        builds[name] = run
    return ServingWorld(config, cutoff, key_hex, builds["as_of"], builds["full"])


def offline_features(run: DbtRun) -> pd.DataFrame:
    """``transaction_features`` of a dbt build, by transaction id."""
    with duckdb.connect(str(run.warehouse), read_only=True) as conn:
        frame = conn.sql("select * from transaction_features").df()
    return frame.set_index("transaction_id")


def publish(
    run: DbtRun,
    definitions: FeatureDefinitions,
    out_dir: Path,
    key_hex: str,
    lookback_days: int | None = None,
) -> ServingSnapshot:
    """Publish a serving snapshot of a dbt build's warehouse."""
    return publish_serving_snapshot(
        run.warehouse,
        definitions,
        out_dir,
        lookback_days,
        pseudonymization_key_fingerprint=key_fingerprint(key_hex.encode()),
    )


def requests(payments: pd.DataFrame) -> list[dict[str, Any]]:
    """Raw payments (contract columns) as scoring requests, in the order given."""
    return [
        {
            "transaction_id": row.transaction_id,
            "timestamp": row.tx_datetime.to_pydatetime(),
            "card_number": row.card_number,
            "terminal_id": row.terminal_id,
            "amount": row.amount,
        }
        for row in payments.itertuples()
    ]


def reports(raw_reports: pd.DataFrame) -> list[dict[str, Any]]:
    """Raw fraud reports as the disputes system delivers them."""
    if raw_reports.empty:
        return []
    columns = ["transaction_id", "card_number", "reported_at"]
    return raw_reports[columns].to_dict("records")


def replay_in_time_order(
    store: OnlineFeatureStore, payments: pd.DataFrame
) -> dict[str, dict[str, Any]]:
    """Score payments one by one in time order; payments at the very same instant together
    (as one batch: a card's same-instant payments count for each other, as offline)."""
    payments = payments.sort_values(["tx_datetime", "transaction_id"], kind="stable")
    scored: dict[str, dict[str, Any]] = {}
    for _, same_instant in payments.groupby("tx_datetime", sort=True):
        batch = requests(same_instant)
        rows = [store.features(batch[0])] if len(batch) == 1 else store.features_batch(batch)
        scored.update((row["transaction_id"], row) for row in rows)
    return scored


def mismatches(online: Iterable[dict[str, Any]], offline: pd.DataFrame) -> list[str]:
    """Every (transaction, column) where online and offline rows differ (numbers by more than
    SKEW_TOLERANCE); a transaction missing offline counts too."""
    found = []
    for row in online:
        transaction_id = row["transaction_id"]
        if transaction_id not in offline.index:
            found.append(f"{transaction_id}: not in transaction_features")
            continue
        expected = offline.loc[transaction_id]
        if set(row) - {"transaction_id"} != set(expected.index):
            found.append(f"{transaction_id}: columns {sorted(row)} != {sorted(expected.index)}")
            continue
        for column, value in row.items():
            want = expected[column] if column != "transaction_id" else transaction_id
            if not _same(value, want):
                found.append(f"{transaction_id}.{column}: online {value!r}, offline {want!r}")
    return found


def _same(online: Any, offline: Any) -> bool:
    if isinstance(online, int | float) and not isinstance(online, bool):
        return math.isclose(float(online), float(offline), rel_tol=0, abs_tol=SKEW_TOLERANCE)
    if isinstance(online, date):  # pandas reads DATE and TIMESTAMP as Timestamps
        return pd.Timestamp(online) == pd.Timestamp(offline)
    return online == offline


def dbt_compile(home: Path, key_hex: str, *args: str) -> Path:
    """``dbt compile`` of the feature chain against ``home``; the path of its manifest."""
    target_path = home.with_name(f"{home.name}_dbt") / "target"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BLUEPRINT_HOME", str(home))
        env.setenv(PSEUDONYMIZATION_KEY_ENV, key_hex)
        env.setenv("DO_NOT_TRACK", "1")
        completed = subprocess.run(
            [
                str(DBT_EXECUTABLE),
                "compile",
                "--select",
                "+transaction_features",
                "--project-dir",
                str(DBT_PROJECT_DIR),
                "--profiles-dir",
                str(DBT_PROJECT_DIR),
                "--target-path",
                str(target_path),
                "--log-path",
                str(target_path.parent / "logs"),
                *args,
            ],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-5000:]
    return target_path / "manifest.json"
