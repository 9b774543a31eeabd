"""Dagster runs started by the ``blueprint`` command, executed in the command's own process.

This is what ``dagster asset materialize -m orchestration.definitions -a <use case>`` and
``dagster job execute`` do (the same code pointer, the same ``execute_job`` on the persistent
instance, so the runs look the same in the Dagster UI and can be re-executed there), without
starting a Python process and loading the definitions again for every run: a start paid by
every run, and a replay step makes two or three runs (figures: docs/OPERATING_NOTES.md).
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from datetime import date

import dagster as dg
from dagster._core.definitions.backfill_policy import BackfillPolicyType
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from orchestration.settings import PROJECT_ROOT, get_settings

DEFINITIONS_MODULE = "orchestration.definitions"
"""Where ``workspace.yaml`` and ``dagster ... -m orchestration.definitions -a <use case>`` find
the code: the attribute is the use case's name."""


def repository() -> ReconstructableRepository:
    """The command's use case's code location as the Dagster CLI points at it (module,
    attribute, working folder)."""
    return _repository(get_settings().usecase_name)


@functools.cache
def _repository(usecase: str) -> ReconstructableRepository:
    return ReconstructableRepository.for_module(
        DEFINITIONS_MODULE, usecase, working_directory=str(PROJECT_ROOT)
    )


def materialize_assets(
    selection: str,
    partition_range: tuple[date, date] | None,
    instance: dg.DagsterInstance,
    skip_checks: Collection[str] = (),
) -> bool:
    """Materialize the assets ``selection`` names, over ``partition_range`` (first, last day) in
    one run when given, with their checks but those named in ``skip_checks``; True when the run
    succeeded."""
    repo = repository().get_definition()
    chosen = dg.AssetSelection.from_string(selection)
    keys = chosen.resolve(repo.asset_graph)
    job = repo.get_implicit_job_def_for_assets(keys)
    if job is None:
        raise ValueError(f"{selection!r} mixes assets of different partitions: one run cannot")
    tags: dict[str, str] = {}
    if partition_range is not None:
        # as the CLI: a range is one run only for assets that can take a range in one run
        multi_run = sorted(
            key.to_user_string() for key in keys
            if (policy := job.asset_layer.get(key).backfill_policy) is None
            or policy.policy_type != BackfillPolicyType.SINGLE_RUN
        )
        if multi_run:
            raise ValueError(
                f"{', '.join(multi_run)} cannot take a partition range in one run: give them "
                "BackfillPolicy.single_run()"
            )
        first, last = partition_range
        tags = {
            ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
            ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
        }
    reconstructable = repository().get_reconstructable_job(job.name)
    checks = chosen.resolve_checks(repo.asset_graph)
    if any(check.name in skip_checks for check in checks):
        subset = reconstructable.get_subset(
            asset_selection=set(keys),
            asset_check_selection={c for c in checks if c.name not in skip_checks},
        )
        result = dg.execute_job(subset, instance=instance, tags=tags)
    else:
        result = dg.execute_job(
            reconstructable, instance=instance, asset_selection=sorted(keys), tags=tags
        )
    return result.success


def execute_job(name: str, instance: dg.DagsterInstance, tags: Mapping[str, str] = {}) -> bool:  # noqa: B006
    """Run the job ``name`` with ``tags``; True when the run succeeded."""
    result = dg.execute_job(
        repository().get_reconstructable_job(name), instance=instance, tags=dict(tags)
    )
    return result.success
