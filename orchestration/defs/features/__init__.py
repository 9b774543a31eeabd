"""Features: a use case's dbt models, in two steps around the feature quality gate."""

import dagster as dg

from orchestration.defs.scope import Scope


def build_defs(scope: Scope) -> dg.Definitions:
    """The features stage of one use case."""
    from orchestration.defs.features.assets import dbt_steps  # needs dbt's manifest

    return dg.Definitions(assets=dbt_steps(scope))
