"""A small churn world for the feature tests: simulated, ingested, and built by dbt.

The streaming service's simulator (``simulator/churn/``) delivers the five sources' landing
files and records the truth (who cancelled when); the generic ingestion turns the files into
raw snapshots under the contracts the churn declaration drafts; ``dbt build`` builds the churn
models into ``warehouse/churn.duckdb``. Ingesting only the days up to a cutoff gives the same
world as it was known on that night.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import yaml

from orchestration.lib.core.usecase import Source
from orchestration.lib.ingestion.contracts import SourceContract
from orchestration.lib.ingestion.declared import contract_of
from orchestration.lib.ingestion.ingest import IngestResult, ingest_partitions
from orchestration.settings import (
    USECASES_DIR,
)
from simulator.churn import ChurnConfig, simulate
from simulator.churn.run import TRUTH_FILE, record_dir
from tests.features import raw_world
from tests.features.raw_world import DbtRun

USECASE = "churn"
CONFIG = ChurnConfig(n_accounts=300, n_days=50, seed=1)
"""Small enough to recompute features in pandas, long enough for 30-day windows and labels."""
DECLARATIONS = (USECASES_DIR / f"{USECASE}.yaml", Path("/tmp/churn_usecase") / f"{USECASE}.yaml")
"""Where the churn declaration is: the use cases' folder once it is declared there, until then
the draft beside it (kept out of the pipeline until its models exist)."""


def declaration() -> Path:
    """The churn declaration's file (the test is skipped while there is none)."""
    found = next((path for path in DECLARATIONS if path.is_file()), None)
    if found is None:
        pytest.skip(f"no churn declaration in {', '.join(map(str, DECLARATIONS))}")
    return found


def declared_sources(path: Path) -> dict[str, Source]:
    """The sources a declaration declares (``sources:``), validated as the loader does."""
    spec = yaml.safe_load(path.read_text())
    return {name: Source.model_validate(source) for name, source in spec["sources"].items()}


def source_contracts(path: Path) -> dict[str, SourceContract]:
    """The declaration's sources as the contracts ingestion enforces (``contracts_of``)."""
    return {name: contract_of(name, source) for name, source in declared_sources(path).items()}


def simulate_world(home: Path, config: ChurnConfig = CONFIG) -> None:
    """The sources' landing files and the truth under ``home``."""
    simulate(home, config)


def ingest(
    contracts: dict[str, SourceContract], landing_home: Path, home: Path, through: date
) -> None:
    """Ingest every source's partitions from the world's first day through ``through``."""
    days = [CONFIG.day(i) for i in range((through - CONFIG.start).days + 1)]
    for contract in contracts.values():
        for day, result in ingest_partitions(
            contract, days, landing_home / "landing", home / "raw", home / "quarantine", workers=2
        ):
            assert isinstance(result, IngestResult), f"{contract.name} {day}: {result}"


def truth(home: Path) -> pd.DataFrame:
    """The simulator's record of the world: one row per account (signup, cancellation)."""
    return pd.read_parquet(record_dir(home) / TRUTH_FILE)


ChurnDbtRun = DbtRun
"""A ``dbt build`` of the churn models (its warehouse is the churn use case's)."""


def dbt_build(home: Path, key: str, *args: str) -> DbtRun:
    """``dbt build`` of the churn models over the raw zone under ``home``, as the churn use case,
    with its own target and log paths outside the home."""
    return raw_world.dbt_build(home, key, *args, usecase=USECASE)
