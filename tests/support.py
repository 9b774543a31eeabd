"""Helpers shared by tests (importable as ``tests.support``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from orchestration.settings import PROJECT_ROOT

BIN = Path(sys.executable).parent


def run_blueprint(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real `blueprint` command against ``home``."""
    env = {**os.environ, "BLUEPRINT_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    completed = subprocess.run(
        [str(BIN / "blueprint"), *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if check and completed.returncode != 0:
        raise AssertionError(
            f"blueprint {' '.join(args)} exited {completed.returncode}\n"
            f"--- stdout\n{completed.stdout[-5000:]}\n--- stderr\n{completed.stderr[-10000:]}"
        )
    return completed


def usecase_scope(name: str = "fraud"):
    """The Dagster scope of a declared use case (its prefixed asset keys, its pool)."""
    from orchestration.defs.scope import Scope
    from orchestration.lib.core.usecase import load_usecase
    from orchestration.settings import USECASES_DIR

    return Scope(load_usecase(name, USECASES_DIR))


def declared_contracts(name: str = "fraud"):
    """The source contracts a declared use case declares, by source name: what ingestion
    enforces for it."""
    from orchestration.lib.core.usecase import load_usecase
    from orchestration.lib.ingestion.declared import contracts_of
    from orchestration.settings import USECASES_DIR

    return contracts_of(load_usecase(name, USECASES_DIR, environ={}))


def usecase_definition(name: str, kind: str, definition: str):
    """One sensor, schedule or job of a use case's Definitions, by kind and name."""
    from orchestration.definitions import definitions_for

    defs = definitions_for(name)
    found = {
        "sensor": lambda: defs.resolve_sensor_def(definition),
        "schedule": lambda: defs.resolve_schedule_def(definition),
        "job": lambda: defs.resolve_job_def(definition),
    }
    return found[kind]()


def mark_loaded(instance, scope, source: str, day) -> None:
    """``source`` loaded for ``day`` as ingestion leaves it: a raw snapshot (empty here) and the
    raw asset's partition materialized (a materialized day without a snapshot had no delivery:
    not loaded)."""
    import dagster as dg
    import pyarrow as pa
    import pyarrow.parquet as pq

    from orchestration.lib.ingestion.declared import contracts_of
    from orchestration.lib.ingestion.landing import raw_snapshot_path

    path = raw_snapshot_path(contracts_of(scope.usecase)[source], scope.settings().raw_dir, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"_empty": pa.array([], pa.string())}), path)
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=scope.key(f"raw_{source}"), partition=day.isoformat())
    )
