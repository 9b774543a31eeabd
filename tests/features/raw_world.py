"""A tiny synthetic world written as a raw zone (docs/DATA_CONTRACTS.md), and dbt runs over it.

The world is small enough to recompute every feature by hand in pandas, but has what the
feature logic must get right: cards paying exactly 1 or 7 days (to the second) apart, frauds
reported with short and long delays, a transaction reported twice, reports filed on the very day
of later payments at the same terminal, and customers with personal data.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestration.lib.core.feature_declaration import ResolvedFeatures
from orchestration.lib.core.usecase import load_usecase
from orchestration.settings import (
    DBT_PROJECT_DIR,
    PROJECT_ROOT,
    PSEUDONYMIZATION_KEY_ENV,
    USECASES_DIR,
)

DBT_EXECUTABLE = PROJECT_ROOT / ".venv" / "bin" / "dbt"
SOURCES = ("transactions", "fraud_reports", "customers")
QUARANTINE_SCHEMA = pa.schema(
    [
        ("source_file", pa.string()),
        ("line_number", pa.int64()),
        ("reason", pa.string()),
        ("row_sha256", pa.string()),
        ("partition_date", pa.date32()),
        ("quarantined_at", pa.timestamp("us", tz="UTC")),
    ]
)
LINEAGE_SCHEMA = [
    ("_source_file", pa.string()),
    ("_source_sha256", pa.string()),
    ("_source_line", pa.int64()),
    ("_ingested_at", pa.timestamp("us", tz="UTC")),
]
RAW_SCHEMAS = {
    "transactions": pa.schema(
        [
            ("transaction_id", pa.string()),
            ("tx_datetime", pa.timestamp("us")),
            ("card_number", pa.string()),
            ("terminal_id", pa.string()),
            ("amount", pa.float64()),
            *LINEAGE_SCHEMA,
        ]
    ),
    "fraud_reports": pa.schema(
        [
            ("transaction_id", pa.string()),
            ("card_number", pa.string()),
            ("reported_at", pa.timestamp("us")),
            *LINEAGE_SCHEMA,
        ]
    ),
    "customers": pa.schema(
        [
            ("customer_id", pa.string()),
            ("name", pa.string()),
            ("email", pa.string()),
            ("phone", pa.string()),
            ("address", pa.string()),
            ("date_of_birth", pa.date32()),
            ("card_number", pa.string()),
            ("signup_date", pa.date32()),
            ("updated_at", pa.timestamp("us")),
            *LINEAGE_SCHEMA,
        ]
    ),
}
PARTITION_COLUMN = {"transactions": "tx_datetime", "fraud_reports": "reported_at"}


def luhn_complete(prefix15: str) -> str:
    """The 16-digit card number that extends ``prefix15`` with its Luhn check digit."""
    total = 0
    for i, ch in enumerate(reversed(prefix15)):
        d = int(ch)
        if i % 2 == 0:  # doubled: these are the odd positions counted from the check digit
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return prefix15 + str((10 - total % 10) % 10)


@dataclass
class World:
    """The source tables of a synthetic world, in contract types (without lineage columns)."""

    transactions: pd.DataFrame
    fraud_reports: pd.DataFrame
    customers: pd.DataFrame
    quarantine: dict[str, pd.DataFrame] = field(default_factory=dict)

    def copy(self) -> World:
        return World(
            self.transactions.copy(),
            self.fraud_reports.copy(),
            self.customers.copy(),
            {k: v.copy() for k, v in self.quarantine.items()},
        )


def make_world(seed: int = 7, days: int = 60, start: date = date(2024, 1, 1)) -> World:
    """A few cards and terminals over ``days`` days, a handful of frauds, a customer per card."""
    rng = np.random.default_rng(seed)
    n_cards, n_terminals = 6, 4
    pans = [luhn_complete(f"4{rng.integers(10**13, 10**14):014d}") for _ in range(n_cards)]
    t0 = datetime.combine(start, datetime.min.time())
    rows = []
    for pan in pans:
        seconds: set[int] = set()
        for day in range(days):
            for _ in range(rng.integers(0, 4)):
                seconds.add(day * 86400 + int(rng.integers(0, 86400)))
        # payments exactly one day and exactly seven days (to the second) after another one
        anchor = sorted(seconds)[len(seconds) // 3]
        seconds |= {anchor + 86400, anchor + 7 * 86400, anchor + 86399}
        seconds = {s for s in seconds if s < days * 86400}
        for s in sorted(seconds):
            rows.append(
                {
                    "tx_datetime": t0 + timedelta(seconds=s),
                    "card_number": pan,
                    "terminal_id": str(100 + int(rng.integers(0, n_terminals))),
                    "amount": round(float(rng.gamma(2.0, 30.0)), 2),
                }
            )
    tx = pd.DataFrame(rows).sort_values("tx_datetime", kind="stable").reset_index(drop=True)
    tx.insert(0, "transaction_id", [f"t-{i}" for i in range(len(tx))])

    fraud_idx = rng.choice(len(tx), size=max(len(tx) // 25, 8), replace=False)
    delays = rng.choice([0, 1, 3, 6, 7, 8, 10, 15, 25], size=len(fraud_idx))
    reports = tx.loc[fraud_idx, ["transaction_id", "card_number", "tx_datetime"]].copy()
    reports["reported_at"] = (
        reports["tx_datetime"]
        + pd.to_timedelta(delays, unit="D")
        + (pd.to_timedelta(rng.integers(60, 6 * 3600, size=len(reports)), unit="s"))
    )
    # one fraud disputed twice: the later report must not move its label
    twice = reports.iloc[[0]].copy()
    twice["reported_at"] = twice["reported_at"] + pd.Timedelta(days=4)
    reports = pd.concat([reports, twice]).drop(columns="tx_datetime").reset_index(drop=True)

    customers = []
    for snapshot in (start, start + timedelta(days=days // 2), start + timedelta(days=days - 1)):
        for i, pan in enumerate(pans):
            customers.append(
                {
                    "customer_id": f"c-{i}",
                    "name": f"Alexandrine Testperson{i}",
                    "email": f"alexandrine.testperson{i}@example.org",
                    "phone": f"+33 6 12 34 56 {i:02d}",
                    "address": f"{i + 1} rue des Fixtures, 75011 Paris",
                    "date_of_birth": date(1950 + 9 * i, 2 + i, 10 + i),
                    "card_number": pan,
                    "signup_date": start - timedelta(days=100 + i),
                    "updated_at": datetime.combine(snapshot, datetime.min.time())
                    + timedelta(hours=i),
                    "snapshot_date": snapshot,
                }
            )
    quarantine = {
        "transactions": pd.DataFrame(
            [
                {
                    "source_file": f"transactions_{start + timedelta(days=3)}__d1.csv.gz",
                    "line_number": 17,
                    "reason": "amount: not a number",
                    "row_sha256": hashlib.sha256(b"a bad row").hexdigest(),
                    "partition_date": start + timedelta(days=3),
                    "quarantined_at": pd.Timestamp(start, tz="UTC"),
                }
            ]
        )
    }
    return World(tx, reports, pd.DataFrame(customers), quarantine)


def _lineage(df: pd.DataFrame, source_file: str) -> pd.DataFrame:
    out = df.copy()
    out["_source_file"] = source_file
    out["_source_sha256"] = hashlib.sha256(source_file.encode()).hexdigest()
    out["_source_line"] = np.arange(2, len(out) + 2, dtype="int64")
    out["_ingested_at"] = pd.Timestamp("2024-06-01 00:00:00", tz="UTC")
    return out


def write_raw_zone(world: World, home: Path) -> None:
    """Write the world as raw-zone partitions and quarantine records under ``home``."""
    frames = {
        "transactions": world.transactions,
        "fraud_reports": world.fraud_reports,
        "customers": world.customers,
    }
    for source, frame in frames.items():
        if source == "customers":
            partition_dates = pd.to_datetime(frame["snapshot_date"]).dt.date
        else:
            partition_dates = frame[PARTITION_COLUMN[source]].dt.date
        records = world.quarantine.get(source, pd.DataFrame(columns=QUARANTINE_SCHEMA.names))
        record_dates = pd.to_datetime(records["partition_date"]).dt.date
        for day, part in frame.groupby(partition_dates, sort=True):
            part = _lineage(
                part.drop(columns=["snapshot_date"], errors="ignore"),
                f"{source}_{day}__d{day:%Y%m%d}T230000.csv",
            )
            folder = home / "raw" / source / f"date={day}"
            folder.mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_pandas(part, schema=RAW_SCHEMAS[source], preserve_index=False)
            pq.write_table(table, folder / "data.parquet")

            folder = home / "quarantine" / source / f"date={day}"
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(
                pa.Table.from_pandas(
                    records[record_dates == day], schema=QUARANTINE_SCHEMA, preserve_index=False
                ),
                folder / "records.parquet",
            )


def read_table(warehouse: Path, table: str) -> pd.DataFrame:
    """A warehouse table as a DataFrame (read-only connection, closed at once)."""
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return conn.sql(f"select * from {table}").df()


def warehouse_tables(warehouse: Path) -> list[str]:
    """Every table dbt built in the warehouse."""
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        rows = conn.sql(
            "select table_schema || '.' || table_name from information_schema.tables"
        ).fetchall()
    return sorted(name for (name,) in rows)


@dataclass
class DbtRun:
    """The outcome of one ``dbt build`` over a raw zone."""

    home: Path
    returncode: int
    output: str
    seconds: float
    target_path: Path
    log_path: Path
    usecase: str = "fraud"

    @property
    def warehouse(self) -> Path:
        """The use case's warehouse in ``home`` (profiles.yml)."""
        return self.home / "warehouse" / f"{self.usecase}.duckdb"

    def results(self) -> dict[str, str]:
        """Status of every node dbt ran (models, data tests, unit tests), by unique id."""
        run_results = json.loads((self.target_path / "run_results.json").read_text())
        return {r["unique_id"]: r["status"] for r in run_results["results"]}


USECASE = "fraud"
"""The use case whose dbt models these tests build."""


def declared_features(usecase: str = USECASE) -> ResolvedFeatures:
    """The use case's declared features, as its declaration holds them (no overrides)."""
    resolved = load_usecase(usecase, USECASES_DIR, environ={}).resolved_features()
    assert resolved is not None, f"{usecase} declares no features"
    return resolved


def dbt_build(
    home: Path, key: str, *args: str, reuse_target: Path | None = None, usecase: str = USECASE
) -> DbtRun:
    """Run ``dbt build`` of a use case's models (as that use case: its warehouse) against the
    raw zone under ``home``, with its own target and log paths.

    ``reuse_target``: start from another run's target folder (its manifest was parsed with a
    different BLUEPRINT_HOME), as Dagster does with the manifest prepared at setup.
    """
    dbt_dir = home.with_name(f"{home.name}_dbt")  # outside the home: its paths must not leak
    target_path, log_path = dbt_dir / "target", dbt_dir / "logs"
    if reuse_target is not None:
        shutil.copytree(reuse_target, target_path)
    (home / "warehouse").mkdir(parents=True, exist_ok=True)
    if not any(arg in ("--select", "-s") for arg in args):
        args = ("--select", f"path:models/{usecase}", *args)
    started = time.perf_counter()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BLUEPRINT_HOME", str(home))
        env.setenv("BLUEPRINT_USECASE", usecase)
        env.setenv(PSEUDONYMIZATION_KEY_ENV, key)
        env.setenv("DO_NOT_TRACK", "1")
        completed = subprocess.run(
            [
                str(DBT_EXECUTABLE),
                "build",
                "--project-dir",
                str(DBT_PROJECT_DIR),
                "--profiles-dir",
                str(DBT_PROJECT_DIR),
                "--target-path",
                str(target_path),
                "--log-path",
                str(log_path),
                *load_usecase(usecase, USECASES_DIR, environ={}).dbt_arguments(),
                *args,
            ],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
    return DbtRun(
        home=home,
        returncode=completed.returncode,
        output=completed.stdout + completed.stderr,
        seconds=time.perf_counter() - started,
        target_path=target_path,
        log_path=log_path,
        usecase=usecase,
    )
