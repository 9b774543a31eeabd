"""Dagster runs started by the ``blueprint`` command, executed in the command's own process.

This is what ``dagster asset materialize -m orchestration.definitions -a <use case>`` and
``dagster job execute`` do (the same code pointer, the same ``execute_job`` on the persistent
instance, so the runs look the same in the Dagster UI and can be re-executed there), without
starting a Python process and loading the definitions again for every run: a start paid by
every run, and a replay step makes two or three runs (figures: docs/OPERATING_NOTES.md).
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Collection, Mapping
from datetime import date

import dagster as dg
from dagster._core.definitions.backfill_policy import BackfillPolicyType
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from orchestration.lib.core.processes import process_started, same_process
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


OWNER_PID_TAG, OWNER_STARTED_TAG, OWNER_HOST_TAG = (
    "blueprint/pid", "blueprint/pid_started", "blueprint/host"
)
"""The process that executes a run in the command's own process, recorded on the run: when it
is gone (killed) while its run is still in progress, nobody else will ever end that run."""

PARENT_RUN_TAG = "dagster/parent_run_id"

IN_PROGRESS = (
    dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING
)


def owner_tags() -> dict[str, str]:
    """The tags naming this process as the executor of a run."""
    return {OWNER_PID_TAG: str(os.getpid()), OWNER_STARTED_TAG: repr(process_started()),
            OWNER_HOST_TAG: socket.gethostname()}


def end_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed every in-progress run whose executing command died on this machine (killed
    with ``kill -9``, the machine's power cut) and free the pool slots it held; returns their
    ids. Without this a dead run holds its ``warehouse`` slot for good and every later run
    waits on it ("Step blocked by limit for pool"): Dagster frees slots only when a run ends,
    and nothing would end this one. Runs of a live process, of another machine or of the
    daemon's run launcher (which its run monitoring watches) are left alone."""
    ended = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=list(IN_PROGRESS))):
        run = record.dagster_run
        tags = run.tags
        if OWNER_PID_TAG not in tags or tags.get(OWNER_HOST_TAG) != socket.gethostname():
            continue
        if PARENT_RUN_TAG in tags:  # a re-execution (from the UI) inherits its parent's tags
            continue
        if same_process(int(tags[OWNER_PID_TAG]), float(tags[OWNER_STARTED_TAG])):
            continue
        instance.report_run_failed(
            run, message=f"the command executing this run (pid {tags[OWNER_PID_TAG]}) is gone:"
            " marked failed and its pool slots freed by the next blueprint command"
        )
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        ended.append(run.run_id)
    return ended


def _execute(job, instance: dg.DagsterInstance, **options) -> dg.ExecutionResult:
    """``dg.execute_job`` with this process recorded as the run's owner, after ending the runs
    whose owner died."""
    end_abandoned_runs(instance)
    tags = {**options.pop("tags", {}), **owner_tags()}
    return dg.execute_job(job, instance=instance, tags=tags, **options)


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
        result = _execute(subset, instance, tags=tags)
    else:
        result = _execute(reconstructable, instance, asset_selection=sorted(keys), tags=tags)
    return result.success


def execute_job(name: str, instance: dg.DagsterInstance, tags: Mapping[str, str] = {}) -> bool:  # noqa: B006
    """Run the job ``name`` with ``tags``; True when the run succeeded."""
    result = _execute(repository().get_reconstructable_job(name), instance, tags=dict(tags))
    return result.success
