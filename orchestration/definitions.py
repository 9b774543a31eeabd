"""The one place that assembles Blueprint's Definitions and applies global policy.

Every declared use case is a code location of its own: ``workspace.yaml`` points at this module
with the use case's name as the attribute (``orchestration.definitions:fraud``), and each
stage folder returns its part of that use case's Definitions (``build_defs``), merged here once
with the global policy. Nothing here reads or changes the process's environment at import.
"""

from __future__ import annotations

import functools

import dagster as dg

from orchestration.defs import features, ingestion, monitoring, quality, serving, training
from orchestration.defs.resources import resources_for_env
from orchestration.defs.scope import Scope
from orchestration.lib.core.usecase import load_usecase, usecase_names
from orchestration.settings import USECASES_DIR

STAGES = (ingestion, features, quality, training, serving, monitoring)


@functools.cache
def definitions_for(name: str) -> dg.Definitions:
    """The Definitions of the use case ``name``: its stages, merged, with the global policy."""
    scope = Scope(load_usecase(name, USECASES_DIR))
    return dg.Definitions.merge(
        *(stage.build_defs(scope) for stage in STAGES),
        dg.Definitions(
            resources=resources_for_env(name),
            # Steps share one DuckDB file and a 2-core machine: run them in one process, in
            # order.
            executor=dg.in_process_executor,
        ),
    )


def __getattr__(name: str) -> dg.Definitions:
    """``orchestration.definitions.<use case>``: what a code location loads."""
    if name in usecase_names(USECASES_DIR):
        return definitions_for(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
