"""The promotion gate: only a better model reaches production.

Pure decision logic over named metrics, as a use case declares its gate: a primary metric the
challenger must improve by a margin (or, with no champion yet, bring past a floor), and guard
metrics it may not lose more than a tolerance on. A metric may be higher- or lower-is-better.
The Dagster asset scores both models on the same test window, calls :func:`decide` and records
the outcome in the registry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestration.lib.core.usecase import UseCase


@dataclass(frozen=True)
class GatePolicy:
    primary: str
    """The metric the challenger must improve."""
    margin: float
    """How much better on ``primary`` the challenger must be than the champion."""
    floor: float
    """What the first champion must reach on ``primary``."""
    guards: tuple[tuple[str, float], ...] = ()
    """``(metric, tolerance)``: how much worse on each the challenger may be."""
    lower_is_better: frozenset[str] = frozenset()
    """The metrics of the gate for which a lower value is better."""

    @classmethod
    def declared(cls, usecase: UseCase) -> GatePolicy:
        """The gate a use case declares (``gate``), with its metrics' directions."""
        gate = usecase.gate
        return cls(
            primary=gate.primary.metric,
            margin=gate.primary.margin,
            floor=gate.primary.floor,
            guards=tuple((guard.metric, guard.tolerance) for guard in gate.guards),
            lower_is_better=frozenset(
                name for name, metric in usecase.metrics.items() if not metric.higher_is_better
            ),
        )

    def gain(self, metric: str, new: float, old: float) -> float:
        """How much better ``new`` is than ``old`` on ``metric`` (negative: worse)."""
        return old - new if metric in self.lower_is_better else new - old


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    numbers: dict[str, float | bool | None]


def decide(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    policy: GatePolicy,
    inputs_checked: bool,
) -> Decision:
    """Promote iff the inputs passed their checks and the challenger beats the champion (both
    scored on the same test window) by ``margin`` on the primary metric without losing more
    than each guard's tolerance; with no champion, iff the primary metric clears ``floor``."""
    primary = policy.primary
    gated = [primary, *(metric for metric, _ in policy.guards)]
    numbers: dict[str, float | bool | None] = {
        **{f"challenger_{m}": challenger[m] for m in gated},
        **{f"champion_{m}": champion[m] if champion else None for m in gated},
        "inputs_checked": inputs_checked,
        "policy_primary_margin": policy.margin,
        "policy_primary_floor": policy.floor,
        **{f"policy_{metric}_tolerance": tolerance for metric, tolerance in policy.guards},
    }
    value = challenger[primary]
    if not inputs_checked:
        return Decision(False, "a quality check of the training inputs did not pass", numbers)
    if math.isnan(value):
        return Decision(False, f"{primary} is undefined on the test window (a single class?)",
                        numbers)
    if champion is None:
        if policy.gain(primary, value, policy.floor) >= 0:
            return Decision(True, f"first champion: {primary} {value:.4f} clears the floor "
                                  f"{policy.floor:.4f}", numbers)
        return Decision(False, f"{primary} {value:.4f} misses the floor "
                               f"{policy.floor:.4f}", numbers)
    gain = policy.gain(primary, value, champion[primary])
    numbers[f"{primary}_gain"] = gain
    losses = {m: -policy.gain(m, challenger[m], champion[m]) for m, _ in policy.guards}
    numbers.update({f"{metric}_loss": loss for metric, loss in losses.items()})
    if gain < policy.margin:
        return Decision(False, f"{primary} gain {gain:+.4f} is below the margin "
                               f"{policy.margin:.4f}", numbers)
    for metric, tolerance in policy.guards:
        if losses[metric] > tolerance:
            return Decision(False, f"{metric} loss {losses[metric]:.4f} exceeds the tolerance "
                                   f"{tolerance:.4f}", numbers)
    guards = "".join(f" and {m} loss {losses[m]:.4f} ≤ tolerance {t:.4f}"
                     for m, t in policy.guards)
    return Decision(True, f"{primary} gain {gain:+.4f} ≥ margin {policy.margin:.4f}{guards}",
                    numbers)
