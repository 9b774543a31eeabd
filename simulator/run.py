"""Simulate a whole world: generate it, deliver the three sources' files, record the truth."""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from simulator import faults, sources
from simulator.config import WorldConfig
from simulator.crm import Crm
from simulator.world import (
    SCENARIO_AMOUNT,
    SCENARIO_CARD_TESTING,
    Transactions,
    generate_world,
    random_streams,
)

LANDING_DIR = "landing"
SIMULATOR_DIR = "simulator"
OUTBOX_DIR = "outbox"
"""Inside SIMULATOR_DIR: the files held back from landing, by source."""
WORLD_FILE = "world.json"
TRUTH_FILE = "transactions_truth.parquet"
FAULTS_FILE = "faults.json"
RECORD_FILES = (WORLD_FILE, TRUTH_FILE, FAULTS_FILE)
WRITERS = min(4, os.cpu_count() or 1)
"""Threads compressing and writing files (zlib releases the GIL)."""


def world_folders(home: Path) -> list[Path]:
    """The folders a simulated world owns under ``home`` (besides its files in SIMULATOR_DIR).

    Not SIMULATOR_DIR as a whole: the churn world keeps its record in a folder inside it.
    """
    return [home / LANDING_DIR / source for source in sources.SOURCES] + [outbox_dir(home)]


def record_files(home: Path) -> list[Path]:
    """The files a simulated world owns directly in SIMULATOR_DIR."""
    return [home / SIMULATOR_DIR / name for name in RECORD_FILES]


def outbox_dir(home: Path) -> Path:
    """Where a world simulated with ``hold_from`` keeps the files not delivered yet."""
    return home / SIMULATOR_DIR / OUTBOX_DIR


def _prepare_folders(home: Path, overwrite: bool, destinations: sources.Destinations) -> None:
    folders, records = world_folders(home), record_files(home)
    existing = [f for f in folders if f.exists() and any(f.iterdir())]
    existing += [r for r in records if r.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"a simulated world already exists in {existing[0]}; pass overwrite=True to replace it"
        )
    for folder in folders:
        if folder.exists():
            shutil.rmtree(folder)
    for record in records:
        record.unlink(missing_ok=True)
    for folder in [home / SIMULATOR_DIR, *destinations.folders()]:
        folder.mkdir(parents=True, exist_ok=True)


def _truth_table(
    config: WorldConfig, tx: Transactions, valid: np.ndarray, ids: list[str]
) -> pa.Table:
    fraud = tx.is_fraud[valid]
    report_dates = np.datetime64(config.start, "D") + tx.report_day[valid].astype("timedelta64[D]")
    return pa.table(
        {
            "transaction_id": sources.transaction_ids(valid),
            "tx_datetime": sources.datetimes(config.start, tx.day[valid], tx.second[valid]),
            "customer_id": pa.array(ids).take(pa.array(tx.customer[valid])),
            "terminal_id": pc.cast(pa.array(tx.terminal[valid]), pa.string()),
            "amount": pa.array(tx.cents[valid] / 100),
            "is_fraud": pa.array(fraud),
            "fraud_scenario": pa.array(tx.scenario[valid]),
            "report_date": pa.array(report_dates, type=pa.date32(), mask=~fraud),
            "reported_at": sources.datetimes(
                config.start, tx.report_day[valid], tx.report_second[valid], mask=~fraud
            ),
        }
    )


def _write_json(path: Path, value: Any) -> None:
    sources.write_atomic(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def _deliver(
    config: WorldConfig,
    destinations: sources.Destinations,
    tx: Transactions,
    crm: Crm,
    plan: faults.FaultPlan,
    bar: tqdm,
) -> tuple[list[dict[str, Any]], int]:
    """Write every day's files; return the fault manifest and the number of delivered reports."""
    cards = pa.array(crm.card_numbers)
    transactions = sources.TransactionFiles(config, tx, cards, plan, destinations)
    reports = sources.FraudReportFiles(config, tx, cards, destinations)
    manifest: list[dict[str, Any]] = []
    pending: deque[Future] = deque()

    def settle(limit: int) -> None:
        while len(pending) > limit:
            manifest.extend(pending.popleft().result() or [])

    bar.set_postfix_str("delivering files")
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        for day in range(config.n_days):
            content, malformed = transactions.content(day)
            manifest.extend(malformed)
            pending.append(pool.submit(transactions.write, day, content))
            snapshot = crm.end_of_day(day)
            pending.append(
                pool.submit(sources.write_customers, config, day, snapshot, destinations)
            )
            pending.append(pool.submit(reports.write, day))
            settle(4 * WRITERS)
            bar.update()
        settle(0)
    return faults.sort_manifest(manifest), reports.n_delivered


def simulate(
    config: WorldConfig,
    home: Path,
    progress: bool = True,
    overwrite: bool = False,
    hold_from: int | None = None,
) -> dict[str, Any]:
    """Writes <home>/landing/... and <home>/simulator/...; returns the world.json content.

    ``hold_from`` (a day index in [1, n_days)) holds back every file delivered at or after the
    midnight that ends day ``hold_from`` (``config.at(hold_from + 1, 0)``): landing gets exactly
    what the sources had delivered by the morning of day ``hold_from``, the rest waits in
    <home>/simulator/outbox/<source>/ for :func:`simulator.deliver`. Holding decides only where
    files go, never what they hold, so it is a parameter of the run, not of the world's config.

    Raises FileExistsError naming the folder if a world is already there and overwrite is False,
    ValueError if ``hold_from`` is outside the world.
    """
    started = time.perf_counter()
    home = Path(home)
    if hold_from is not None and not 1 <= hold_from < config.n_days:
        raise ValueError(f"hold_from must be a day index in [1, {config.n_days}), got {hold_from}")
    held_from_date = None if hold_from is None else config.day(hold_from)
    destinations = sources.Destinations(home / LANDING_DIR, outbox_dir(home), held_from_date)
    _prepare_folders(home, overwrite, destinations)
    rngs = random_streams(config.seed)
    with tqdm(total=config.n_days, desc="simulating", unit="day", disable=not progress) as bar:
        bar.set_postfix_str("generating transactions")
        world = generate_world(config, rngs)
        customers, tx = world.customers, world.transactions
        plan = faults.plan_faults(config, tx.day, tx.is_fraud, rngs["faults"])
        bar.set_postfix_str("creating customers")
        crm = Crm(config, customers.signup_day, rngs["crm"])
        manifest, n_reports_delivered = _deliver(config, destinations, tx, crm, plan, bar)
        bar.set_postfix_str("writing the truth")
        is_valid = np.ones(tx.n, dtype=bool)
        is_valid[list(plan.malformed_rows)] = False
        valid = np.flatnonzero(is_valid)
        record = home / SIMULATOR_DIR
        buffer = io.BytesIO()
        pq.write_table(_truth_table(config, tx, valid, crm.ids), buffer)
        sources.write_atomic(record / TRUTH_FILE, buffer.getvalue())
        _write_json(record / FAULTS_FILE, manifest)

    n_transactions = len(valid)
    by_scenario = np.bincount(tx.scenario[valid], minlength=SCENARIO_CARD_TESTING + 1)
    n_frauds = int(by_scenario[SCENARIO_AMOUNT:].sum())
    fraud = tx.is_fraud & is_valid
    summary = {
        "n_days": config.n_days,
        "n_customers": config.n_customers,
        "n_terminals": config.n_terminals,
        "n_customers_without_terminals": int((customers.n_usable_terminals == 0).sum()),
        "n_customers_signed_up_in_period": int((customers.signup_day >= 0).sum()),
        "n_address_changes": crm.n_address_changes,
        "n_transactions": n_transactions,
        "n_malformed_rows": len(plan.malformed_rows),
        "n_frauds": n_frauds,
        "fraud_rate": round(n_frauds / max(n_transactions, 1), 6),
        "n_frauds_by_scenario": {
            str(s): int(by_scenario[s]) for s in range(SCENARIO_AMOUNT, SCENARIO_CARD_TESTING + 1)
        },
        "transactions_per_day": round(n_transactions / config.n_days, 2),
        "frauds_per_day": round(n_frauds / config.n_days, 2),
        "n_reports_delivered": n_reports_delivered,
        "n_reports_after_end": int((fraud & (tx.report_day >= config.n_days)).sum()),
        "n_faults_by_kind": {k: sum(e["kind"] == k for e in manifest) for k in faults.KINDS},
        "drift_from_date": (
            None if config.drift_from is None else config.day(config.drift_from).isoformat()
        ),
        "held_from_date": None if held_from_date is None else held_from_date.isoformat(),
        "elapsed_seconds": round(time.perf_counter() - started, 2),
    }
    world = {"config": config.to_json(), "summary": summary}
    _write_json(record / WORLD_FILE, world)
    return world
