"""A declaration's fields overridden from the environment, as ``BLUEPRINT_<USECASE>_<PATH>``
(see ``orchestration.lib.core.usecase``), and the global settings that became fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from orchestration.lib.core.schema import UseCaseError

RETIRED_ENV = {
    "BLUEPRINT_TRAIN_DAYS": "protocol.train",
    "BLUEPRINT_DELAY_DAYS": "protocol.delay",
    "BLUEPRINT_TEST_DAYS": "protocol.test",
    "BLUEPRINT_N_FOLDS": "protocol.folds",
    "BLUEPRINT_FOLD_STEP_DAYS": "protocol.fold_step",
    "BLUEPRINT_SEED": "models.seed",
    "BLUEPRINT_TRAINING_FEATURES": "features.train_on",
    "BLUEPRINT_PROMOTION_AP_MARGIN": "gate.primary.margin",
    "BLUEPRINT_PROMOTION_AP_FLOOR": "gate.primary.floor",
    "BLUEPRINT_PROMOTION_CP_TOLERANCE": "gate.guards.0.tolerance",
    "BLUEPRINT_ALERTS_PER_DAY": "decision_budget.per_day",
    "BLUEPRINT_MAX_REPORT_DELAY_DAYS": "label.maturity",
    "BLUEPRINT_DRIFT_SHARE_THRESHOLD": "monitoring.drift_share_threshold",
    "BLUEPRINT_AP_DROP_THRESHOLD": "monitoring.decay.drop",
    "BLUEPRINT_RETRAIN_ON_PREDICTION_DRIFT": "monitoring.retrain_on_prediction_drift",
    "BLUEPRINT_RETRAIN_MIN_POST_DRIFT_DAYS": "monitoring.min_post_drift_days",
}
"""Global settings that were the first use case's and are now fields of every declaration."""


def _leaves(node: Any, path: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """Every overridable field: env suffix -> its path in the declaration."""
    found: dict[str, tuple[str, ...]] = {}
    if isinstance(node, dict):
        for key, value in node.items():
            found.update(_leaves(value, (*path, str(key))))
    elif isinstance(node, list) and any(isinstance(item, dict) for item in node):
        for index, item in enumerate(node):
            found.update(_leaves(item, (*path, str(index))))
    elif path:
        found["_".join(path).upper()] = path
    return found


def apply_overrides(
    path: Path, raw: dict[str, Any], overrides: dict[str, str], prefix: str
) -> dict[str, Any]:
    """``raw`` with each override (env name -> text) applied to its field; an override of no
    field is an error listing the overridable ones."""
    if not overrides:
        return raw
    leaves = _leaves(raw)
    result = yaml.safe_load(yaml.safe_dump(raw))  # a deep copy of plain data
    for env_name, text in overrides.items():
        field = leaves.get(env_name.removeprefix(prefix))
        if field is None:
            raise UseCaseError(f"{env_name}: {path} has no such field (overridable: "
                               f"{', '.join(prefix + k for k in sorted(leaves))})")
        parent = result
        for part in field[:-1]:
            parent = parent[int(part) if isinstance(parent, list) else part]
        key = int(field[-1]) if isinstance(parent, list) else field[-1]
        parent[key] = _parse_override(text, parent[key])
    return result


def _parse_override(text: str, current: Any) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    if isinstance(current, list) and not isinstance(value, list):
        return [yaml.safe_load(item.strip()) for item in text.split(",") if item.strip()]
    return value
