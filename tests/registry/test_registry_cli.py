"""`blueprint models`: list, show, promote, rollback, and their error messages."""

from __future__ import annotations

import getpass

import pytest
from typer.testing import CliRunner

from blueprint_cli.main import app
from blueprint_cli.models import models_app
from orchestration.lib.registry import registry

runner = CliRunner()


def _models(*args: str):
    return runner.invoke(models_app, list(args))


@pytest.fixture
def two_models(fit, make_facts) -> tuple[str, str]:
    """Two saved versions: the first with test AP 0.6, the second with 0.7 and CP@100 0.3 (the
    fraud declaration's gate metrics: the columns `models list` shows)."""
    first_pipeline, second_pipeline = fit(c=1.0), fit(c=0.1)
    first = registry.save_model(first_pipeline, make_facts(first_pipeline))
    second = registry.save_model(second_pipeline, make_facts(
        second_pipeline,
        test_metrics={"average_precision": 0.7, "card_precision_top_k": 0.3},
    ))
    return first, second


def _row(output: str, version: str) -> str:
    [line] = [line for line in output.splitlines() if version in line]
    return line


def test_list_without_models_says_so():
    result = _models("list")
    assert result.exit_code == 0
    assert "No model is registered yet" in result.output


def test_list_shows_status_metrics_and_the_champion_marker(two_models):
    first, second = two_models
    registry.promote(first, reason="first champion", actor="test")
    registry.record_decision(second, False, "not better enough", {"gain": 0.001})

    result = _models("list")
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[0].split()
    assert header == ["use", "case", "version", "status", "created", "test", "average_precision",
                      "test", "card_precision_top_k"]
    assert _row(result.output, first).split()[:4] == ["fraud", "*", first, "champion"]
    assert _row(result.output, first).split()[-2:] == ["0.6000", "0.2000"]
    second_row = _row(result.output, second)
    assert second_row.split()[1] != "*"
    assert "candidate (rejected)" in second_row and second_row.split()[-2:] == ["0.7000", "0.3000"]
    assert result.output.index(second) < result.output.index(first)  # newest first


def test_show_prints_the_facts_and_the_history(two_models):
    first, _ = two_models
    registry.promote(first, reason="first champion", actor="test")

    result = _models("show", first)
    assert result.exit_code == 0, result.output
    assert f"version: {first}" in result.output
    assert "status:  champion since" in result.output
    for fact in ("training_data", "feature_definitions_hash", "pseudonymization_key_fingerprint",
                 "fold_metrics", "library_versions", '"logisticregression__C": 1.0'):
        assert fact in result.output
    history = result.output.split("history:")[1]
    assert "registered" in history and "first champion" in history


def test_show_of_an_unknown_version_is_a_clear_error(two_models):
    result = _models("show", "nope")
    assert result.exit_code == 1
    assert "error: unknown model version 'nope'" in result.output
    assert "blueprint models list" in result.output


def test_promote_records_the_person_and_the_reason(two_models):
    first, second = two_models
    registry.promote(first, reason="first champion", actor="promotion_gate")

    result = _models("promote", second, "--reason", "fraud team sign-off")
    assert result.exit_code == 0, result.output
    assert f"{second} is now the champion; {first} is archived." in result.output
    assert registry.champion_version() == second
    event = registry.history(second)[-1]
    assert (event.event, event.actor, event.reason) == (
        "promoted", f"cli:{getpass.getuser()}", "fraud team sign-off"
    )
    assert registry.status(first).status == "archived"


def test_promote_needs_a_reason_and_a_known_version(two_models):
    first, _ = two_models
    missing = _models("promote", first)
    assert missing.exit_code == 2
    assert "Missing option '--reason'" in missing.output

    blank = _models("promote", first, "--reason", " ")
    assert blank.exit_code == 1 and "a reason is required" in blank.output

    unknown = _models("promote", "nope", "--reason", "typo")
    assert unknown.exit_code == 1 and "unknown model version 'nope'" in unknown.output
    assert registry.champion() is None


def test_rollback_restores_the_previous_champion(two_models):
    first, second = two_models
    registry.promote(first, reason="first champion", actor="promotion_gate")
    registry.promote(second, reason="better AP", actor="promotion_gate")

    result = _models("rollback", "--reason", "alerts doubled overnight")
    assert result.exit_code == 0, result.output
    assert f"Rolled back {second}: {first} is the champion again." in result.output
    assert registry.champion_version() == first
    event = registry.history(second)[-1]
    assert (event.event, event.actor, event.reason) == (
        "rolled_back", f"cli:{getpass.getuser()}", "alerts doubled overnight"
    )


def test_rollback_errors_are_clear(two_models):
    first, _ = two_models
    assert "Missing option '--reason'" in _models("rollback").output

    no_champion = _models("rollback", "--reason", "panic")
    assert no_champion.exit_code == 1
    assert "error: there is no champion to roll back" in no_champion.output

    registry.promote(first, reason="first champion", actor="promotion_gate")
    first_only = _models("rollback", "--reason", "panic")
    assert first_only.exit_code == 1
    assert "no previous champion to restore" in first_only.output
    assert registry.champion_version() == first


def test_the_blueprint_command_offers_the_models_commands(two_models):
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    assert two_models[0] in result.output


def test_list_names_the_use_case_of_every_version(two_models):
    result = runner.invoke(app, ["models", "list", "--usecase", "fraud"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].split()[:2] == ["use", "case"]
    assert _row(result.output, two_models[0]).split()[0] == "fraud"


def test_an_unknown_use_case_is_refused_naming_the_declared_ones():
    result = runner.invoke(app, ["models", "list", "--usecase", "nope"])
    assert result.exit_code == 2
    assert "no use case 'nope'" in result.output and "declared: churn, fraud" in result.output
