"""``champion_model``: the promotion gate. It scores the candidate and the current champion on
the same latest test window and promotes the candidate only if its inputs passed their checks
and it is better."""

import dagster as dg
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
from orchestration.lib.serving.scoring import load_scoring_model
from orchestration.lib.training.metrics import (
    Scorecard,
    alert_threshold_for_budget,
)
from orchestration.lib.training.promotion import GatePolicy, decide
from orchestration.lib.training.validation import (
    LABEL,
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
        protocol = protocol_from(settings.usecase)
        windows = split_windows(protocol, training_data.test_start)
        _, test = train_test_frames(training_data.frame(), windows, labelled_rows(scope.usecase))

        usecase = settings.usecase
        challenger = load_scoring_model(model_candidate, settings)
        challenger_scores = challenger.score(test)
        challenger_metrics = _evaluate(test, challenger_scores, usecase)
        current = registry.champion(settings)
        champion_metrics = None
        if current is not None:
            champion = load_scoring_model(current.version, settings)
            champion_metrics = _evaluate(test, champion.score(test), usecase)
        inputs_ok, check_states = _inputs_checked(context.instance, scope)
        decision = decide(
            challenger_metrics, champion_metrics, GatePolicy.declared(usecase), inputs_ok
        )
        budget = usecase.decision_budget.per_day if usecase.decision_budget else None
        threshold = None if budget is None else alert_threshold_for_budget(
            {day: group for day, group in pd.Series(challenger_scores).groupby(
                test[usecase.data.partition_date].to_numpy())},
            budget,
        )
        numbers = {
            **decision.numbers,
            registry.ALERT_THRESHOLD: threshold,
            "decisions_per_day": budget,
            "test_window": str(windows),
            "champion_version": current.version if current else None,
            "checks": check_states,
        }
        registry.record_decision(model_candidate, decision.promote, decision.reason, numbers,
                                 settings=settings)
        serving = model_candidate if decision.promote else (current.version if current else None)
        context.log.info(
            f"gate: {'promoted' if decision.promote else 'rejected'} {model_candidate}: "
            f"{decision.reason}"
        )
        return dg.MaterializeResult(
            metadata={
                "decision": "promoted" if decision.promote else "rejected",
                "reason": decision.reason,
                "candidate_version": model_candidate,
                "champion_version": serving or "none",
                "previous_champion": current.version if current else "none",
                **{f"candidate_{name}": value for name, value in challenger_metrics.items()},
                **{f"champion_{name}": value for name, value in (champion_metrics or {}).items()},
                **({"alert_threshold": threshold} if threshold is not None else {}),
                "inputs_checked": inputs_ok,
                "registry": dg.MetadataValue.md(_registry_markdown(settings)),
                "gate_numbers": dg.MetadataValue.json(
                    {k: v for k, v in numbers.items() if v is not None}
                ),
            }
        )

    return champion_model


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
