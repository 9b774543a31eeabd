"""The promotion gate: only a better model reaches production.

Pure decision logic; the Dagster asset scores both models on the same test window, calls
:func:`decide` and records the outcome in the registry.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from orchestration.lib.training.metrics import Performance


@dataclass(frozen=True)
class GatePolicy:
    ap_margin: float
    """Average Precision the challenger must gain over the champion."""
    cp_tolerance: float
    """Card Precision@k the challenger may lose."""
    ap_floor: float
    """Average Precision the first champion must reach."""


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    numbers: dict[str, float | bool | None]


def decide(
    challenger: Performance,
    champion: Performance | None,
    policy: GatePolicy,
    inputs_checked: bool,
) -> Decision:
    """Promote iff the inputs passed their checks and the challenger beats the champion (both
    scored on the same test window) by ``ap_margin`` in AP without losing more than
    ``cp_tolerance`` in CP@k; with no champion, iff the challenger's AP clears ``ap_floor``."""
    numbers: dict[str, float | bool | None] = {
        "challenger_average_precision": challenger.average_precision,
        "challenger_card_precision": challenger.card_precision_top_k,
        "champion_average_precision": champion.average_precision if champion else None,
        "champion_card_precision": champion.card_precision_top_k if champion else None,
        "inputs_checked": inputs_checked,
        **{f"policy_{k}": v for k, v in asdict(policy).items()},
    }
    ap = challenger.average_precision
    if not inputs_checked:
        return Decision(False, "a quality check of the training inputs did not pass", numbers)
    if math.isnan(ap):
        return Decision(False, "the test window holds a single class: AP is undefined", numbers)
    if champion is None:
        if ap >= policy.ap_floor:
            return Decision(True, f"first champion: AP {ap:.4f} clears the floor "
                                  f"{policy.ap_floor:.4f}", numbers)
        return Decision(False, f"AP {ap:.4f} is below the floor {policy.ap_floor:.4f}", numbers)
    ap_gain = ap - champion.average_precision
    cp_loss = champion.card_precision_top_k - challenger.card_precision_top_k
    numbers["ap_gain"] = ap_gain
    numbers["cp_loss"] = cp_loss
    if ap_gain < policy.ap_margin:
        return Decision(False, f"AP gain {ap_gain:+.4f} is below the margin "
                               f"{policy.ap_margin:.4f}", numbers)
    if cp_loss > policy.cp_tolerance:
        return Decision(False, f"CP@{challenger.top_k} loss {cp_loss:.4f} exceeds the tolerance "
                               f"{policy.cp_tolerance:.4f}", numbers)
    return Decision(True, f"AP gain {ap_gain:+.4f} ≥ margin {policy.ap_margin:.4f} and CP "
                          f"loss {cp_loss:.4f} ≤ tolerance {policy.cp_tolerance:.4f}", numbers)
