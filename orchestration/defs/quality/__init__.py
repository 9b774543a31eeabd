"""Quality gates: a use case's Great Expectations suites and the personal-data scan."""

import dagster as dg

from orchestration.defs.quality.checks import quality_checks
from orchestration.defs.scope import Scope


def build_defs(scope: Scope) -> dg.Definitions:
    """The quality stage of one use case."""
    return dg.Definitions(asset_checks=quality_checks(scope))
