"""Simulate a churn world: live it, deliver the five sources' files, record the truth."""

from __future__ import annotations

import io
import json
import shutil
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from simulator import faults, sources
from simulator.churn import files
from simulator.churn.accounts import AccountSystem, account_ids
from simulator.churn.config import DEVICES, PLANS, ChurnConfig
from simulator.churn.world import (
    CATEGORIES,
    DRIVERS,
    EVENT_TYPES,
    NEVER,
    Accounts,
    Behaviour,
    Prices,
    Sessions,
    generate_accounts,
    generate_sessions,
    random_streams,
    simulate_behaviour,
)
from simulator.outbox import delivery_days, files_in
from simulator.run import LANDING_DIR, SIMULATOR_DIR, WRITERS

CHURN_DIR = "churn"
"""Inside SIMULATOR_DIR: the churn world's record, beside the fraud world's files."""
OUTBOX_DIR = "outbox"
WORLD_FILE = "world.json"
TRUTH_FILE = "truth.parquet"
FAULTS_FILE = "faults.json"
LABEL_DAYS = 30
"""The churn rate in the summary: share of the accounts active at the end of a day that cancel
in the next LABEL_DAYS days, averaged over the days whose window lies inside the world."""


def record_dir(home: Path) -> Path:
    """Where the churn world keeps its record (world.json, truth.parquet, faults.json)."""
    return Path(home) / SIMULATOR_DIR / CHURN_DIR


def outbox_dir(home: Path) -> Path:
    """Where a churn world simulated with ``hold_from`` keeps the files not delivered yet."""
    return record_dir(home) / OUTBOX_DIR


def world_folders(home: Path) -> list[Path]:
    """The folders a churn world owns under ``home``: nothing else is ever removed."""
    return [home / LANDING_DIR / source for source in files.SOURCES] + [record_dir(home)]


def _prepare_folders(home: Path, overwrite: bool, destinations: sources.Destinations) -> None:
    folders = world_folders(home)
    existing = [f for f in folders if f.exists() and any(f.iterdir())]
    if existing and not overwrite:
        raise FileExistsError(
            f"a churn world already exists in {existing[0]}; pass overwrite=True to replace it"
        )
    for folder in folders:
        if folder.exists():
            shutil.rmtree(folder)
    for folder in [*folders, *destinations.folders()]:
        folder.mkdir(parents=True, exist_ok=True)


def _write_json(path: Path, value: Any) -> None:
    sources.write_atomic(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def _dates(config: ChurnConfig, day: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    days = np.datetime64(config.start, "D") + day.astype("timedelta64[D]")
    return pa.array(days, type=pa.date32(), mask=missing)


def truth_table(config: ChurnConfig, accounts: Accounts, behaviour: Behaviour) -> pa.Table:
    """One row per account: who it is underneath, and when and why it cancelled."""
    stayed = behaviour.cancel_day >= config.n_days
    cancel_day = np.where(stayed, 0, behaviour.cancel_day)
    faded = behaviour.faded_from != NEVER
    return pa.table(
        {
            "account_id": account_ids(np.arange(accounts.n)),
            "signup_date": _dates(config, accounts.signup_day),
            "plan_at_signup": pa.array(PLANS).take(pa.array(accounts.plan)),
            "main_device": pa.array(DEVICES).take(pa.array(accounts.main_device)),
            "sessions_per_day": pa.array(accounts.sessions_per_day),
            "price_sensitivity": pa.array(accounts.price_sensitivity),
            "payment_failure_prob": pa.array(accounts.failure_prob),
            "churn_date": _dates(config, cancel_day, stayed),
            "cancelled_at": sources.datetimes(
                config.start, cancel_day, behaviour.cancel_second, mask=stayed
            ),
            "churn_driver": pa.array(
                [None if s else DRIVERS[d] for s, d in zip(stayed, behaviour.driver, strict=True)],
                pa.string(),
            ),
            "disengaged_from": _dates(
                config, np.where(faded, behaviour.faded_from, 0), ~faded | stayed
            ),
        }
    )


def churn_rate(config: ChurnConfig, accounts: Accounts, behaviour: Behaviour) -> float | None:
    """The mean LABEL_DAYS-day churn rate of the active accounts (None: the world is too short)."""
    days = np.arange(config.n_days - LABEL_DAYS)
    if not len(days):
        return None
    signed_up = accounts.signup_day[None, :] <= days[:, None]
    cancel = behaviour.cancel_day[None, :]
    active = signed_up & (cancel > days[:, None])
    leaving = active & (cancel <= days[:, None] + LABEL_DAYS)
    return round(float(np.mean(leaving.sum(axis=1) / np.maximum(active.sum(axis=1), 1))), 6)


def _deliver(
    config: ChurnConfig,
    destinations: sources.Destinations,
    accounts: Accounts,
    behaviour: Behaviour,
    sessions: Sessions,
    plan: faults.FaultPlan,
    rng: np.random.Generator,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Write every day's files; return the fault manifest and the rows of each source."""
    signup_cents = Prices(config).of(accounts.plan, accounts.signup_day)
    system = AccountSystem(config, accounts, signup_cents, behaviour.changes, rng)
    usage = files.UsageFiles(config, sessions, plan, destinations)
    daily = [
        files.billing_files(config, behaviour, destinations),
        files.ticket_files(config, behaviour, destinations),
        files.cancellation_files(config, behaviour, destinations),
    ]
    manifest: list[dict[str, Any]] = []
    pending: deque[Future] = deque()
    snapshot = b""

    def settle(limit: int) -> None:
        while len(pending) > limit:
            manifest.extend(pending.popleft().result() or [])

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        for day in range(config.n_days):
            content, malformed = usage.content(day)
            manifest.extend(malformed)
            pending.append(pool.submit(usage.write_content, day, content))
            snapshot = system.end_of_day(day)
            pending.append(pool.submit(files.write_accounts, config, day, snapshot, destinations))
            pending.extend(pool.submit(source.write, day) for source in daily)
            settle(4 * WRITERS)
        settle(0)
    rows = {files.ACCOUNTS: snapshot.count(b"\n"), files.USAGE: usage.n_rows}
    rows |= {source: writer.n_rows for source, writer in zip(files.SOURCES[2:], daily, strict=True)}
    return faults.sort_manifest(manifest), rows


def _counts(names: tuple[str, ...], codes: np.ndarray) -> dict[str, int]:
    return dict(zip(names, np.bincount(codes, minlength=len(names)).tolist(), strict=True))


def _held_from_index(config: ChurnConfig, hold_from: date | None) -> int | None:
    if hold_from is None:
        return None
    index = (hold_from - config.start).days
    if not 1 <= index < config.n_days:
        raise ValueError(
            f"hold_from must be a date from {config.day(1)} to {config.day(config.n_days - 1)}, "
            f"got {hold_from}"
        )
    return index


def simulate(
    home: Path, config: ChurnConfig, overwrite: bool = False, hold_from: date | None = None
) -> dict[str, Any]:
    """Write ``<home>/landing/<source>/`` and ``<home>/simulator/churn/``; return the summary.

    ``hold_from`` (a date after the first day, inside the world) holds back every file delivered
    at or after the midnight that ends that day, in ``<home>/simulator/churn/outbox/<source>/``,
    for :func:`simulator.churn.deliver`. Only where files go changes, never what they hold.

    Raises FileExistsError if a churn world is already there and ``overwrite`` is False, and
    ValueError if ``hold_from`` is outside the world. Nothing of the fraud world is touched.
    """
    started = time.perf_counter()
    home = Path(home)
    _held_from_index(config, hold_from)
    destinations = sources.Destinations(
        home / LANDING_DIR, outbox_dir(home), hold_from, files.EXTENSIONS
    )
    _prepare_folders(home, overwrite, destinations)
    rngs = random_streams(config.seed)
    accounts = generate_accounts(config, rngs["accounts"])
    behaviour = simulate_behaviour(config, accounts, rngs["behaviour"])
    sessions = generate_sessions(config, accounts, behaviour, rngs)
    plan = faults.plan_faults(
        config, sessions.day, np.zeros(sessions.n, dtype=bool), rngs["faults"]
    )
    manifest, rows = _deliver(
        config, destinations, accounts, behaviour, sessions, plan, rngs["pii"]
    )
    record = record_dir(home)
    buffer = io.BytesIO()
    pq.write_table(truth_table(config, accounts, behaviour), buffer)
    sources.write_atomic(record / TRUTH_FILE, buffer.getvalue())
    if config.faults:
        _write_json(record / FAULTS_FILE, manifest)

    cancelled = behaviour.cancel_day < config.n_days
    increase = config.price_increase_day
    held = delivery_days(files_in(outbox_dir(home), files.EXTENSIONS)) if hold_from else []
    summary = {
        "n_days": config.n_days,
        "n_accounts": config.n_accounts,
        "n_accounts_at_start": int((accounts.signup_day < 0).sum()),
        "n_signups_in_period": int((accounts.signup_day >= 0).sum()),
        "rows": rows,
        "n_malformed_rows": len(plan.malformed_rows),
        "n_billing_events_by_type": _counts(EVENT_TYPES, behaviour.billing["type"]),
        "n_tickets_by_category": _counts(CATEGORIES, behaviour.tickets["category"]),
        "n_cancellations_by_driver": _counts(DRIVERS, behaviour.driver[cancelled]),
        "churn_rate_30d": churn_rate(config, accounts, behaviour),
        "n_faults_by_kind": {k: sum(e["kind"] == k for e in manifest) for k in faults.KINDS},
        "drift_from_date": (
            None if config.drift_from is None else config.day(config.drift_from).isoformat()
        ),
        "price_increase_date": (
            config.day(increase).isoformat()
            if increase is not None and increase < config.n_days
            else None
        ),
        "held_from_date": None if hold_from is None else hold_from.isoformat(),
        "held_days": [d.isoformat() for d in held],
        "elapsed_seconds": round(time.perf_counter() - started, 2),
    }
    _write_json(record / WORLD_FILE, {"config": config.to_json(), "summary": summary})
    return summary
