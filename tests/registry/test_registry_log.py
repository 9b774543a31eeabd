"""The append-only registry: statuses, promotion, rollback, gate decisions, concurrency."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from orchestration.lib.registry import registry
from orchestration.settings import get_settings


def _register(*versions: str) -> None:
    for version in versions:
        registry.register(version)


def _statuses() -> dict[str, str]:
    return {entry.version: entry.status for entry in registry.versions()}


def _raw_db() -> sqlite3.Connection:
    return sqlite3.connect(get_settings().registry_path)


def test_the_registry_is_a_sqlite_file_of_its_own_under_blueprint_home(home: Path):
    _register("a")
    assert get_settings().registry_path == home / "registry" / "fraud.db"
    assert get_settings().registry_path.exists()
    assert not get_settings().warehouse_path.exists()


def test_updates_and_deletes_are_refused_by_the_database():
    _register("a")
    registry.promote("a", reason="first model", actor="test")
    db = _raw_db()
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("update events set reason = 'rewritten'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("update events set event = 'archived' where event = 'promoted'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("delete from events")
        db.rollback()
    finally:
        db.close()
    assert [(e.event, e.reason) for e in registry.history()] == [
        ("registered", "trained by the training pipeline"), ("promoted", "first model")
    ]
    assert registry.champion_version() == "a"


def test_the_database_refuses_events_of_unregistered_versions_and_a_second_champion():
    _register("a", "b")
    registry.promote("a", reason="first", actor="test")
    db = _raw_db()
    try:
        with pytest.raises(sqlite3.IntegrityError, match="never registered"):
            db.execute(
                "insert into events (version, event, actor, reason) "
                "values ('ghost', 'promoted', 'test', 'sneaky')"
            )
        with pytest.raises(sqlite3.IntegrityError, match="one champion"):
            db.execute(  # promoting without archiving the champion first
                "insert into events (version, event, actor, reason) "
                "values ('b', 'promoted', 'test', 'sneaky')"
            )
        with pytest.raises(sqlite3.IntegrityError, match="already registered"):
            db.execute(
                "insert into events (version, event, actor, reason) "
                "values ('a', 'registered', 'test', 'again')"
            )
        with pytest.raises(sqlite3.IntegrityError):
            db.execute(
                "insert into events (version, event, actor, reason) "
                "values ('a', 'deployed', 'test', 'not an event')"
            )
        db.rollback()
    finally:
        db.close()
    assert _statuses() == {"a": "champion", "b": "candidate"}


def test_status_is_derived_from_the_events():
    _register("a", "b", "c")
    assert _statuses() == {"a": "candidate", "b": "candidate", "c": "candidate"}
    assert registry.champion() is None

    registry.promote("a", reason="first", actor="test")
    registry.promote("b", reason="better", actor="test")
    registry.record_decision("c", False, "worse than the champion", {"ap": 0.1})

    assert _statuses() == {"a": "archived", "b": "champion", "c": "candidate"}
    assert [entry.version for entry in registry.versions()] == ["a", "b", "c"]
    c = registry.status("c")
    assert c.last_decision == "rejected"
    assert c.status_since == c.registered_at  # a rejection changes no status
    b = registry.status("b")
    assert b.last_decision == "promoted"
    assert b.status_since == registry.history("b")[-1].at  # the time of its promotion


def test_promotion_archives_the_previous_champion_in_the_same_step():
    _register("a", "b")
    assert registry.promote("a", reason="first", actor="test") is None
    assert registry.promote("b", reason="recall up", actor="cli:alice") == "a"

    last_two = registry.history()[-2:]
    assert [(e.version, e.event, e.actor, e.reason) for e in last_two] == [
        ("a", "archived", "cli:alice", "recall up"), ("b", "promoted", "cli:alice", "recall up")
    ]
    assert last_two[0].details == {"superseded_by": "b"}
    assert last_two[1].details == {"previous_champion": "a"}
    assert [e.version for e in registry.versions() if e.status == "champion"] == ["b"]


def test_a_failed_promotion_leaves_no_trace(monkeypatch: pytest.MonkeyPatch):
    _register("a", "b")
    registry.promote("a", reason="first", actor="test")
    before = registry.history()
    real_append = registry.append_event

    def append_then_fail(db, version, event, *args, **kwargs):
        real_append(db, version, event, *args, **kwargs)
        if event == "archived":
            raise RuntimeError("crash between archiving and promoting")

    monkeypatch.setattr(registry, "append_event", append_then_fail)
    with pytest.raises(RuntimeError):
        registry.promote("b", reason="better", actor="test")
    assert registry.history() == before  # the archive was rolled back with the transaction
    assert registry.champion_version() == "a"


def test_rollback_restores_the_previous_champion_and_is_recorded():
    _register("a", "b", "c")
    for version in ("a", "b", "c"):
        registry.promote(version, reason=f"promote {version}", actor="promotion_gate")

    assert registry.rollback("c flags every wedding", actor="cli:bob") == "b"
    assert _statuses() == {"a": "archived", "b": "champion", "c": "archived"}
    rolled_back, restored = registry.history()[-2:]
    assert (rolled_back.version, rolled_back.event, rolled_back.actor, rolled_back.reason) == (
        "c", "rolled_back", "cli:bob", "c flags every wedding"
    )
    assert rolled_back.details == {"restored": "b"}
    assert (restored.version, restored.event) == ("b", "promoted")
    assert restored.details["rollback_of"] == "c"

    # a second rollback goes further back in the promotion history, not back to c
    assert registry.rollback("b drifted too", actor="cli:bob") == "a"
    assert registry.champion_version() == "a"
    with pytest.raises(registry.RegistryError, match="no previous champion"):
        registry.rollback("nothing left", actor="cli:bob")
    assert registry.champion_version() == "a"


def test_rollback_after_a_new_promotion_returns_to_the_champion_it_replaced():
    _register("a", "b", "c")
    registry.promote("a", reason="first", actor="test")
    registry.promote("b", reason="second", actor="test")
    registry.rollback("b is bad", actor="test")
    registry.promote("c", reason="third", actor="test")
    assert registry.rollback("c is bad", actor="test") == "a"


def test_rollback_without_a_champion_is_a_clear_error():
    _register("a")
    with pytest.raises(registry.NoChampionError, match="no champion"):
        registry.rollback("nothing to roll back", actor="test")
    assert [e.event for e in registry.history()] == ["registered"]


def test_the_champion_is_the_registrys_choice_not_the_newest_version():
    _register("old", "newer", "newest")
    registry.promote("old", reason="the only one that passed the gate", actor="test")
    assert registry.champion_version() == "old"
    assert registry.champion().version == "old"


def test_without_a_champion_serving_gets_a_clear_error():
    _register("a")
    with pytest.raises(registry.NoChampionError, match="promote one"):
        registry.champion_version()


def test_gate_decisions_are_recorded_with_their_numbers():
    _register("a", "b")
    numbers = {"candidate_ap": 0.61, "champion_ap": None, "min_gain": 0.01}
    registry.record_decision("a", True, "no champion yet and above the floor", numbers)
    registry.record_decision("b", False, "AP below the champion's", {"candidate_ap": 0.5})

    promoted, rejected = registry.history("a")[-1], registry.history("b")[-1]
    assert (promoted.event, promoted.actor) == ("promoted", "promotion_gate")
    assert promoted.details == {"previous_champion": None, "numbers": numbers}
    assert (rejected.event, rejected.actor, rejected.reason) == (
        "rejected", "promotion_gate", "AP below the champion's"
    )
    assert rejected.details == {"numbers": {"candidate_ap": 0.5}}
    assert registry.champion_version() == "a"


def test_history_filters_by_version_in_order():
    _register("a", "b")
    registry.promote("a", reason="first", actor="test")
    registry.promote("b", reason="second", actor="test")
    assert [e.event for e in registry.history("a")] == ["registered", "promoted", "archived"]
    ids = [e.id for e in registry.history()]
    assert ids == sorted(ids) and len(ids) == 5


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_reason_is_required(reason: str):
    _register("a")
    with pytest.raises(registry.RegistryError, match="reason is required"):
        registry.promote("a", reason=reason, actor="test")
    with pytest.raises(registry.RegistryError, match="reason is required"):
        registry.record_decision("a", False, reason, {})
    assert [e.event for e in registry.history()] == ["registered"]


def test_unknown_and_duplicate_versions_are_clear_errors():
    _register("a")
    with pytest.raises(registry.UnknownVersionError, match="unknown model version 'nope'"):
        registry.promote("nope", reason="typo", actor="test")
    with pytest.raises(registry.UnknownVersionError):
        registry.history("nope")
    with pytest.raises(registry.UnknownVersionError):
        registry.record_decision("nope", False, "typo", {})
    with pytest.raises(registry.RegistryError, match="already registered"):
        registry.register("a")
    registry.promote("a", reason="first", actor="test")
    with pytest.raises(registry.RegistryError, match="already the champion"):
        registry.promote("a", reason="again", actor="test")


def _register_and_promote(prefix: str) -> None:
    for index in range(5):
        version = f"{prefix}{index}"
        registry.register(version)
        registry.promote(version, reason="race", actor=f"worker:{prefix}")


def test_concurrent_writers_keep_exactly_one_champion():
    workers = [f"w{n}-" for n in range(4)]
    context = multiprocessing.get_context("fork")
    with context.Pool(len(workers)) as pool:
        pool.map(_register_and_promote, workers)

    statuses = _statuses()
    assert len(statuses) == 20
    assert list(statuses.values()).count("champion") == 1
    events = registry.history()
    assert len(events) == 20 + 20 + 19  # registered, promoted, and an archive per later promotion
    # every promotion archived exactly the champion before it
    champion = None
    for event in events:
        if event.event == "archived":
            assert event.version == champion
        elif event.event == "promoted":
            assert event.details["previous_champion"] == champion
            champion = event.version
    assert registry.champion_version() == champion


def test_a_person_rolling_back_while_the_gate_decides_is_not_overridden():
    """Issue 16: a manual rollback during training was silently overridden by the gate, which
    promoted its candidate over the champion it had compared with, not the current one."""
    from orchestration.defs.training.gate import record_against_champion
    from orchestration.lib.training.promotion import Decision

    _register("a", "b", "candidate")
    registry.promote("a", reason="first", actor="promotion_gate")
    registry.promote("b", reason="second", actor="promotion_gate")
    compared_with = registry.champion()  # b: what the gate scored the candidate against
    registry.rollback("b is wrong", actor="cli:alice")  # meanwhile, a person restores a

    with pytest.raises(registry.ChampionChangedError, match="compared with b, the champion is "
                                                            "now a"):
        registry.promote("candidate", reason="better", actor="promotion_gate",
                         expected_champion="b")
    assert registry.champion_version() == "a"

    better = Decision(promote=True, reason="beats the champion", numbers={})
    decided = record_against_champion("candidate", better, {}, compared_with, get_settings())
    assert not decided.promote and "the champion changed" in decided.reason
    assert registry.champion_version() == "a"
    assert _statuses()["candidate"] == "candidate"
    assert registry.history("candidate")[-1].event == "rejected"
