"""Holding the last days of a world back in the outbox, and delivering them day by day."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sim_files import faults_json, landing_files, read_reports, world_json

from simulator import WorldConfig, deliver, held_days, simulate

RECORD_FILES = ("transactions_truth.parquet", "faults.json")


def _files(root: Path) -> dict[str, bytes]:
    """``<source>/<file name>`` -> bytes, for every file in ``root``'s source folders."""
    return {f"{p.parent.name}/{p.name}": p.read_bytes() for p in root.glob("*/*") if p.is_file()}


def _landing(home: Path) -> dict[str, bytes]:
    return _files(home / "landing")


def _outbox(home: Path) -> dict[str, bytes]:
    return _files(home / "simulator" / "outbox")


def _delivered_at(relative_name: str) -> datetime:
    return datetime.strptime(relative_name.split("__d")[1].split(".")[0], "%Y%m%dT%H%M%S")


def _business_date(relative_name: str) -> date:
    return date.fromisoformat(relative_name.split("/")[1].split("__")[0][-10:])


def _held(tmp_path: Path, config: WorldConfig, hold_from: int) -> Path:
    home = tmp_path / f"held_from_{hold_from}"
    simulate(config, home, progress=False, hold_from=hold_from)
    return home


def _fault_day(config: WorldConfig, home: Path, kind: str) -> int:
    [entry] = [e for e in faults_json(home) if e["kind"] == kind]
    return (date.fromisoformat(entry["date"]) - config.start).days


@pytest.fixture(params=["clean", "faulty"])
def world(request: pytest.FixtureRequest) -> tuple[WorldConfig, Path]:
    """A world delivered in full, and its config."""
    name = request.param
    return request.getfixturevalue(f"{name}_config"), request.getfixturevalue(f"{name}_world")


@pytest.mark.parametrize("hold_from", [1, 59])
def test_holding_changes_no_byte(tmp_path, world, hold_from):
    config, full = world
    home = _held(tmp_path, config, hold_from)
    landing, outbox = _landing(home), _outbox(home)
    assert landing and outbox
    assert not set(landing) & set(outbox)
    assert landing | outbox == _landing(full)
    for name in RECORD_FILES:
        assert (home / "simulator" / name).read_bytes() == (full / "simulator" / name).read_bytes()
    held, unheld = world_json(home), world_json(full)
    assert held["summary"].pop("held_from_date") == config.day(hold_from).isoformat()
    assert unheld["summary"].pop("held_from_date") is None
    del held["summary"]["elapsed_seconds"], unheld["summary"]["elapsed_seconds"]
    assert held == unheld


def test_landing_holds_what_the_sources_delivered_by_the_morning_of_the_first_held_day(
    tmp_path, faulty_config, faulty_world
):
    full = _landing(faulty_world)
    late = _fault_day(faulty_config, faulty_world, "late_delivery")
    truncated = _fault_day(faulty_config, faulty_world, "truncated_gzip")
    duplicated = _fault_day(faulty_config, faulty_world, "duplicate_delivery")
    for hold_from in sorted({late + 1, truncated + 1, duplicated, duplicated + 1}):
        home = _held(tmp_path, faulty_config, hold_from)
        landing = _landing(home)
        cut = faulty_config.at(hold_from + 1, 0)
        assert landing == {name: data for name, data in full.items() if _delivered_at(name) < cut}
        assert landing | _outbox(home) == full
        assert all(_business_date(name) < faulty_config.day(hold_from) for name in landing)
        for source in ("customers", "fraud_reports"):
            landed_days = {_business_date(name) for name in landing if name.startswith(source)}
            assert landed_days == {faulty_config.day(d) for d in range(hold_from)}
        assert held_days(home)[0] == faulty_config.day(hold_from)

    def transactions_of(day: int) -> list[str]:
        business_date = faulty_config.day(day)
        return sorted(
            n for n in full if n.startswith("transactions/") and _business_date(n) == business_date
        )

    # a late file waits in the outbox although its business date lies before the hold
    [late_file] = transactions_of(late)
    assert late_file in _outbox(tmp_path / f"held_from_{late + 1}")
    # a truncated file has landed; its intact redelivery waits and comes with the next day
    home = tmp_path / f"held_from_{truncated + 1}"
    broken, intact = transactions_of(truncated)
    assert broken in _landing(home) and intact in _outbox(home)
    assert intact.split("/")[1] in [p.name for p in deliver(home, faulty_config.day(truncated + 1))]


def test_deliver_replays_the_deliveries_day_by_day(tmp_path, faulty_config, faulty_world):
    """Held from day 1, the faulty world's duplicate, late and truncated files all replay."""
    full = _landing(faulty_world)
    home = _held(tmp_path, faulty_config, 1)
    days = [faulty_config.day(d) for d in range(1, faulty_config.n_days)]
    assert held_days(home) == days
    for day in days:
        landed = deliver(home, day)
        names = [f"{p.parent.name}/{p.name}" for p in landed]
        expected = [n for n in full if (_delivered_at(n) - timedelta(days=1)).date() == day]
        assert names == sorted(expected, key=lambda n: (_delivered_at(n), n))
        assert all(p.read_bytes() == full[n] for p, n in zip(landed, names, strict=True))
        assert all(p.parent.parent == home / "landing" for p in landed)
        [report_file] = [p for p in landed if p.parent.name == "fraud_reports"]
        assert _business_date(f"fraud_reports/{report_file.name}") == day
        reported = read_reports(report_file)["reported_at"]
        assert (reported.str[:10] == day.isoformat()).all()
        assert held_days(home) == [d for d in days if d > day]
        assert deliver(home, day) == []
    assert _outbox(home) == {}
    assert _landing(home) == full
    landing_files(home, "transactions")  # every name still follows the contract


def test_deliver_catches_up_in_delivery_order(tmp_path, clean_config, clean_world):
    home = _held(tmp_path, clean_config, 40)
    assert deliver(home, clean_config.day(39)) == []
    landed = deliver(home, clean_config.day(clean_config.n_days - 1))
    moments = [_delivered_at(p.name) for p in landed]
    assert moments == sorted(moments) and len(landed) == 3 * (clean_config.n_days - 40)
    assert held_days(home) == []
    assert deliver(home, clean_config.day(clean_config.n_days - 1)) == []
    assert _landing(home) == _landing(clean_world)


def test_delivering_needs_a_world_that_holds_days_back(tmp_path, clean_world):
    for call in (lambda home: deliver(home, date(2018, 5, 1)), held_days):
        with pytest.raises(FileNotFoundError, match="no simulated world"):
            call(tmp_path)
        with pytest.raises(FileNotFoundError, match="without holding"):
            call(clean_world)


@pytest.mark.parametrize("hold_from", [-1, 0, 60])
def test_a_hold_outside_the_world_is_rejected_before_writing(tmp_path, clean_config, hold_from):
    with pytest.raises(ValueError, match="hold_from"):
        simulate(clean_config, tmp_path, progress=False, hold_from=hold_from)
    assert list(tmp_path.iterdir()) == []


def test_simulating_again_without_a_hold_empties_the_outbox(tmp_path, clean_config):
    home = _held(tmp_path, clean_config, 50)
    simulate(clean_config, home, progress=False, overwrite=True)
    assert not (home / "simulator" / "outbox").exists()
    assert world_json(home)["summary"]["held_from_date"] is None
