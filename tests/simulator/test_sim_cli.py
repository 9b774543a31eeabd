"""`blueprint simulate`: holding the last days back, the report delay, and their validation."""

from __future__ import annotations

import dataclasses
import inspect
from datetime import date
from pathlib import Path

import pytest
from sim_files import truth, world_json
from typer.testing import CliRunner

from blueprint_cli.commands.world import simulate as simulate_command
from blueprint_cli.main import app
from simulator import WorldConfig, held_days

runner = CliRunner()
TINY = ["--set", "n_customers=200", "--set", "n_terminals=400", "--days", "10",
        "--no-progress"]
"""Big enough for a few frauds to be reported."""
OPTION_FIELDS = {"seed": "seed", "faults": "faults"}


def _simulate(*options: str):
    return runner.invoke(app, ["simulate", *TINY, *options])


def test_hold_last_holds_the_last_days_and_the_delay_reaches_the_world(blueprint_home: Path):
    result = _simulate("--hold-last", "3", "--set", "max_report_delay_days=2")
    assert result.exit_code == 0, result.output
    assert "outbox" in result.output
    world = world_json(blueprint_home)
    assert world["summary"]["held_from_date"] == "2018-04-08"
    assert world["config"]["max_report_delay_days"] == 2
    assert held_days(blueprint_home) == [date(2018, 4, d) for d in (8, 9, 10)]
    frauds = truth(blueprint_home).query("is_fraud")
    delays = (frauds["report_date"] - frauds["tx_datetime"].dt.date).map(lambda d: d.days)
    assert len(frauds) and delays.between(1, 2).all()


def test_hold_last_zero_holds_nothing(blueprint_home: Path):
    result = _simulate("--hold-last", "0")
    assert result.exit_code == 0, result.output
    assert world_json(blueprint_home)["summary"]["held_from_date"] is None
    assert not (blueprint_home / "simulator" / "outbox").exists()


@pytest.mark.parametrize(
    ("options", "hint"),
    [
        (["--hold-last", "10"], "--hold-last"),
        (["--hold-last", "-1"], "--hold-last"),
        (["--set", "max_report_delay_days=0"], "max_report_delay_days"),
        (["--set", "n_customer=5"], "not a field of WorldConfig"),
        (["--set", "n_customers=many"], "n_customers='many' cannot be read as int"),
        (["--set", "n_customers"], "is not FIELD=VALUE"),
    ],
)
def test_invalid_options_are_rejected_before_simulating(blueprint_home: Path, options, hint):
    result = _simulate(*options)
    assert result.exit_code == 2
    assert hint in result.output
    assert not (blueprint_home / "simulator" / "world.json").exists()


def test_option_defaults_are_the_world_config_defaults():
    options = inspect.signature(simulate_command).parameters
    defaults = {f.name: f.default for f in dataclasses.fields(WorldConfig)}
    for option, field in OPTION_FIELDS.items():
        assert options[option].default == defaults[field], option
    assert date.fromisoformat(options["start"].default) == defaults["start"]
    assert options["days"].default is None  # the world's own: 183 days for fraud
