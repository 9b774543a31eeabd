"""One Bento per online use case, from one service code (``bentos/scorer``).

The template ``bentos/scorer/bentofile.yaml`` is made a use case's by :func:`bentofile_for`: the
Bento is named ``<use case>_scorer``, runs with ``BLUEPRINT_USECASE`` set to it, and packs the
models given (the champion's tag).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from orchestration.settings import PROJECT_ROOT, USECASE_ENV

BENTOFILE = PROJECT_ROOT / "bentos" / "scorer" / "bentofile.yaml"
SERVICE = "bentos.scorer.service:Scorer"
"""The service's import path from the repository root (as in its bentofile)."""
BENTO_ASSET = "scorer_bento"
"""The name of the asset that builds a use case's Bento (its key: ``<use case>/scorer_bento``)."""


def bento_name(usecase: str) -> str:
    return f"{usecase}_scorer"


def bentofile_for(usecase: str, models: Sequence[str] = ()) -> dict[str, Any]:
    """The bentofile of ``usecase``'s Bento (``models``: model tags to pack)."""
    bentofile = yaml.safe_load(BENTOFILE.read_text())
    bentofile["name"] = bento_name(usecase)
    bentofile["description"] = f"{bentofile['description']} Use case: {usecase}."
    bentofile["labels"] = {**bentofile.get("labels", {}), "usecase": usecase}
    bentofile["envs"] = [{"name": USECASE_ENV, "value": usecase}]
    if models:
        bentofile["models"] = list(models)
    return bentofile
