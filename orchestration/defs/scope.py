"""How one use case's definitions share a Dagster instance with the others'.

Every use case is a code location of its own (``workspace.yaml``), and all of them record their
runs in one instance. So that nothing of one use case is mistaken for another's:

- every asset key is prefixed by the use case's name (``fraud/training_data``), so the
  instance's materializations, checks and partitions never mix (dbt models too: dbt names are
  project-wide, and each use case's models live in ``dbt_project/models/<use case>/``);
- each use case has its own warehouse file and its own concurrency pool ``warehouse_<use case>``
  (limit 1: DuckDB has one writer), so one use case's dbt build never waits for another's.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from orchestration.lib.core.usecase import UseCase
from orchestration.settings import Settings, get_settings, telemetry_off


@dataclass(frozen=True)
class Scope:
    """A use case's place in the shared instance: its asset keys, its pool, its settings."""

    usecase: UseCase

    @property
    def name(self) -> str:
        return self.usecase.name

    def key(self, asset: str) -> dg.AssetKey:
        """The key of the use case's asset ``asset`` (``<use case>/<asset>``)."""
        return dg.AssetKey([self.name, asset])

    def keys(self, *assets: str) -> list[dg.AssetKey]:
        return [self.key(asset) for asset in assets]

    @property
    def pool(self) -> str:
        """The concurrency pool of every step that opens the use case's warehouse."""
        return f"warehouse_{self.name}"

    def settings(self) -> Settings:
        """The environment now, for this use case (never the process's BLUEPRINT_USECASE).

        Every step starts here, so it also turns the libraries' telemetry off for the run's
        process (at run time: nothing changes the environment at import)."""
        telemetry_off()
        return get_settings(self.name)
