"""Determinism of the files and drift as the simulator's record shows it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pandas as pd
from sim_files import DRIFT_FROM, truth, world_json

from simulator import WorldConfig, simulate


def _hashes(home: Path) -> dict[str, str]:
    return {
        str(path.relative_to(home)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(home.rglob("*"))
        if path.is_file() and path.name != "world.json"
    }


def _world_without_timing(home: Path) -> dict:
    world = json.loads((home / "simulator" / "world.json").read_text())
    del world["summary"]["elapsed_seconds"]
    return world


def test_same_seed_gives_byte_identical_files(tmp_path, faulty_world, faulty_config):
    simulate(faulty_config, tmp_path, progress=False)
    assert _hashes(tmp_path) == _hashes(faulty_world)
    # world.json also records the run time: everything else in it is identical
    assert _world_without_timing(tmp_path) == _world_without_timing(faulty_world)


def test_another_seed_gives_another_world(tmp_path, faulty_world, faulty_config):
    simulate(
        dataclasses.replace(faulty_config, seed=faulty_config.seed + 1), tmp_path, progress=False
    )
    ours, theirs = _hashes(tmp_path), _hashes(faulty_world)
    # only header-only report files (days without reports) may coincide
    same = [name for name in set(ours) & set(theirs) if ours[name] == theirs[name]]
    assert all(name.startswith("landing/fraud_reports/") for name in same)
    assert len(same) < 5


def test_world_json_records_config_and_drift(faulty_world, faulty_config):
    world = world_json(faulty_world)
    assert world["config"]["drift_from"] == DRIFT_FROM
    assert world["config"]["start"] == faulty_config.start.isoformat()
    assert world["summary"]["drift_from_date"] == "2018-05-01"
    assert world["summary"]["elapsed_seconds"] > 0


def test_card_testing_frauds_start_on_the_drift_day(faulty_world):
    record = truth(faulty_world)
    testing = record[record["fraud_scenario"] == 4]
    assert len(testing) > 0
    assert testing["tx_datetime"].min() >= pd.Timestamp("2018-05-01")
    assert testing["is_fraud"].all()
    assert testing["amount"].between(0.5, 5).all()
    summary = world_json(faulty_world)["summary"]
    assert summary["n_frauds_by_scenario"]["4"] == len(testing)


def test_no_drift_means_no_card_testing(clean_world):
    assert (truth(clean_world)["fraud_scenario"] != 4).all()


def test_config_rejects_a_drift_day_outside_the_world():
    for bad in (-1, 60):
        try:
            WorldConfig(n_days=60, drift_from=bad)
        except ValueError:
            continue
        raise AssertionError(f"drift_from={bad} accepted")
