"""The e2e world and its helpers: one small world with every source fault, simulated and
materialized once per test session through the real `blueprint` command (the first worker
builds it, the others wait for it and reuse it); tests that change things work on a copy."""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from filelock import FileLock

from tests.support import run_blueprint

DAYS = 40
START = date(2018, 4, 1)
NEXT_DAY = START + timedelta(days=DAYS)

SHORT_WINDOWS = {
    "BLUEPRINT_FRAUD_PROTOCOL_TRAIN": "5",
    "BLUEPRINT_FRAUD_PROTOCOL_DELAY": "3",
    "BLUEPRINT_FRAUD_PROTOCOL_TEST": "5",
    "BLUEPRINT_FRAUD_PROTOCOL_FOLDS": "2",
    "BLUEPRINT_FRAUD_PROTOCOL_FOLD_STEP": "5",
    "BLUEPRINT_FRAUD_GATE_PRIMARY_FLOOR": "0.05",
}
"""Training windows that fit the 40-day world (the defaults need about 60 days)."""


@contextmanager
def short_windows_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in SHORT_WINDOWS.items():
            patch.setenv(name, value)
        yield


def shared_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's world, built once for all workers."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # popen-gw<N>/ -> the run's folder, shared by its workers
    home = root / "e2e-world" / "home"
    done = root / "e2e-world" / "built"
    with FileLock(str(root / "e2e-world.lock")):
        if not done.exists():
            shutil.rmtree(home.parent, ignore_errors=True)
            home.mkdir(parents=True)
            with short_windows_env():
                run_blueprint(
                    home, "simulate", "--set", "n_customers=400", "--set", "n_terminals=800",
                    "--days", str(DAYS), "--faults", "--seed", "7", "--no-progress",
                )
                first = run_blueprint(home, "materialize")
            assert "Materialized fraud." in first.stdout, first.stdout + first.stderr
            done.touch()
    return home


def copy_world(world: Path, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(world, home, symlinks=True)
    return home


def instance(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(home / "dagster"))


def read_parquet(pattern: str) -> pd.DataFrame:
    with duckdb.connect() as con:
        return con.execute("select * from read_parquet(?, union_by_name=true)", [pattern]).df()


def warehouse(home: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(home / "warehouse" / "fraud.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def faults(home: Path) -> list[dict]:
    return json.loads((home / "simulator" / "faults.json").read_text())


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]
