"""``champion_model``: the promotion gate. It scores the candidate and the current champion on
the same latest test window and promotes the candidate only if its inputs passed their checks
and it is better."""

import dataclasses
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from orchestration.defs.partitions import single_run
from orchestration.defs.scope import Scope
from orchestration.defs.training.training_data import (
    TRAINING_GROUP,
    TrainingDataRef,
)
from orchestration.lib.core.markdown import markdown_table
from orchestration.lib.core.usecase import UseCase
from orchestration.lib.registry import registry
from orchestration.lib.registry.facts import ChampionChangedError
from orchestration.lib.registry.log import VersionStatus
from orchestration.lib.serving.scoring import load_scoring_model
from orchestration.lib.training.metrics import (
    Scorecard,
    alert_threshold_for_budget,
)
from orchestration.lib.training.promotion import Decision, GatePolicy, decide
from orchestration.lib.training.validation import (
    LABEL,
    Windows,
    labelled_rows,
    protocol_from,
    split_windows,
    train_test_frames,
)
from orchestration.settings import Settings


def _inputs_checked(
    instance: dg.DagsterInstance, scope: Scope
) -> tuple[bool, dict[str, str]]:
    """Whether the latest evaluation of every check the gate requires passed."""
    required = [pair.split(":") for pair in scope.usecase.gate.required_checks]
    keys = [dg.AssetCheckKey(scope.key(asset), name) for asset, name in required]
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    states: dict[str, str] = {}
    for key in keys:
        record = latest.get(key)
        evaluation = record.evaluation if record is not None else None
        if evaluation is None:
            states[key.to_user_string()] = "never evaluated"
        else:
            states[key.to_user_string()] = "passed" if evaluation.passed else "failed"
    return all(state == "passed" for state in states.values()), states


def champion_model_asset(scope: Scope) -> dg.AssetsDefinition:
    """The use case's promotion gate."""

    @dg.asset(
        key=scope.key("champion_model"),
        ins={
            "model_candidate": dg.AssetIn(scope.key("model_candidate")),
            "training_data": dg.AssetIn(scope.key("training_data")),
        },
        group_name=TRAINING_GROUP,
        backfill_policy=single_run,
        description=(
            "The promotion gate: the candidate becomes champion only if its inputs passed their "
            "checks and it beats the champion on the same latest test window (the use case's "
            "primary metric by its margin, no guard metric worse than its tolerance); its "
            "decision threshold meets the daily decision budget on that window."
        ),
    )
    def champion_model(
        context: dg.AssetExecutionContext, model_candidate: str, training_data: TrainingDataRef
    ) -> dg.MaterializeResult:
        settings = scope.settings()
        usecase = settings.usecase
        windows, test = _latest_test_window(scope, settings, training_data)
        challenger_scores = load_scoring_model(model_candidate, settings).score(test)
        challenger_metrics = _evaluate(test, challenger_scores, usecase)
        current = registry.champion(settings)
        champion_metrics = _champion_metrics(current, test, settings)
        inputs_ok, check_states = _inputs_checked(context.instance, scope)
        decision = decide(
            challenger_metrics, champion_metrics, GatePolicy.declared(usecase), inputs_ok
        )
        budget = usecase.decision_budget.per_day if usecase.decision_budget else None
        numbers = {
            **decision.numbers,
            registry.ALERT_THRESHOLD: _alert_threshold(challenger_scores, test, usecase, budget),
            "decisions_per_day": budget,
            "test_window": str(windows),
            "champion_version": current.version if current else None,
            "checks": check_states,
        }
        decision = record_against_champion(model_candidate, decision, numbers, current, settings)
        if not decision.promote:
            current = registry.champion(settings)  # a person's choice made meanwhile
        context.log.info(
            f"gate: {'promoted' if decision.promote else 'rejected'} {model_candidate}: "
            f"{decision.reason}"
        )
        return dg.MaterializeResult(
            metadata=_gate_metadata(
                model_candidate, current, decision, challenger_metrics, champion_metrics,
                numbers, inputs_ok, settings,
            )
        )

    return champion_model


def record_against_champion(
    candidate: str, decision: Decision, numbers: dict[str, Any], current: Any,
    settings: Settings,
) -> Decision:
    """Record the decision against the champion it was made with: if a person rolled back or
    promoted meanwhile, the candidate is not promoted over their choice (it is rejected,
    saying why; the next training decides again)."""
    expected = current.version if current else None
    try:
        registry.record_decision(candidate, decision.promote, decision.reason, numbers,
                                 expected_champion=expected, settings=settings)
        return decision
    except ChampionChangedError as changed:
        rejected = dataclasses.replace(decision, promote=False, reason=f"not promoted: {changed}")
        registry.record_decision(candidate, False, rejected.reason, numbers, settings=settings)
        return rejected


def _latest_test_window(
    scope: Scope, settings: Settings, training_data: TrainingDataRef
) -> tuple[Windows, pd.DataFrame]:
    """The latest test window and its labelled rows: where both models are scored."""
    protocol = protocol_from(settings.usecase)
    windows = split_windows(protocol, training_data.test_start)
    _, test = train_test_frames(training_data.frame(), windows, labelled_rows(scope.usecase))
    return windows, test


def _champion_metrics(
    current: VersionStatus | None, test: pd.DataFrame, settings: Settings
) -> dict[str, float] | None:
    """The current champion's metrics on the test rows; ``None`` before the first promotion."""
    if current is None:
        return None
    champion = load_scoring_model(current.version, settings)
    return _evaluate(test, champion.score(test), settings.usecase)


def _alert_threshold(
    scores: np.ndarray, test: pd.DataFrame, usecase: UseCase, budget: float | None
) -> float | None:
    """The score above which the test window's days meet the daily decision budget; ``None``
    without a budget."""
    if budget is None:
        return None
    return alert_threshold_for_budget(
        {day: group for day, group in pd.Series(scores).groupby(
            test[usecase.data.partition_date].to_numpy())},
        budget,
    )


def _gate_metadata(
    candidate: str, current: VersionStatus | None, decision: Decision,
    challenger_metrics: dict[str, float], champion_metrics: dict[str, float] | None,
    numbers: dict, inputs_ok: bool, settings: Settings,
) -> dict:
    """What the Dagster UI shows of a decision: the verdict, both models' metrics, the registry."""
    serving = candidate if decision.promote else (current.version if current else None)
    threshold = numbers[registry.ALERT_THRESHOLD]
    return {
        "decision": "promoted" if decision.promote else "rejected",
        "reason": decision.reason,
        "candidate_version": candidate,
        "champion_version": serving or "none",
        "previous_champion": current.version if current else "none",
        **{f"candidate_{name}": value for name, value in challenger_metrics.items()},
        **{f"champion_{name}": value for name, value in (champion_metrics or {}).items()},
        **({"alert_threshold": threshold} if threshold is not None else {}),
        "inputs_checked": inputs_ok,
        "registry": dg.MetadataValue.md(_registry_markdown(settings)),
        "gate_numbers": dg.MetadataValue.json({k: v for k, v in numbers.items() if v is not None}),
    }


def _evaluate(test: pd.DataFrame, scores, usecase: UseCase) -> dict[str, float]:
    return Scorecard.declared(usecase)(test, scores, LABEL)


def _registry_markdown(settings: Settings) -> str:
    """The registry as it stands after the decision: every version, its status and why."""
    rows = []
    for entry in reversed(registry.versions(settings)):
        last = registry.history(entry.version, settings)[-1]
        rows.append([entry.version, entry.status, f"{last.at:%Y-%m-%d %H:%M}", last.actor,
                     last.reason])
    return markdown_table(["version", "status", "since", "by", "why"], rows)
