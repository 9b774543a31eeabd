"""What ``blueprint materialize`` runs: the Dagster runs that bring a selection up to date, from
the asset graph, the landing zone and what the instance has materialized."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from blueprint_cli.home import echo_err
from orchestration.settings import get_settings

if TYPE_CHECKING:
    import dagster as dg

Days = tuple[date, date]
Run = tuple[str, Days | None]
"""A run: its asset selection and its partition range (None: unpartitioned assets only)."""


@dataclass(frozen=True)
class _Selection:
    """The selected assets, by what brings them up to date."""

    graph: Any
    """Dagster's resolved asset graph (its type is not public)."""
    data: set[dg.AssetKey]
    """Daily assets upstream of no unpartitioned one (ingestion, dbt): built over new days."""
    unpartitioned: set[dg.AssetKey]
    """Training, the gate, the serving files: built when older than their upstream."""
    after_model: set[dg.AssetKey]
    """Daily assets downstream of an unpartitioned one (batch scoring, monitoring): built over
    every day they lack."""
    ancestors: Callable[[dg.AssetKey], frozenset[dg.AssetKey]]


def plan_runs(select: str | None) -> list[Run]:
    """The runs that bring the selection up to date: (selection, partition range or None).

    First the data and model assets (ingestion over the days with new data, dbt, training, the
    gate, the serving files; without new data only what is older than its upstream), then the
    daily assets downstream of an unpartitioned one (batch scoring, monitoring) over every day
    they lack, which after the first training is more than the days just ingested: one run per
    distinct set of days, upstream first. A daily asset that can only be built up to some day
    (``ready_until``: a performance report needs mature labels) is planned up to that day.
    """
    import dagster as dg

    from orchestration.definitions import definitions_for
    from orchestration.defs.ingestion.predictions import pending_input
    from orchestration.defs.monitoring.assets import ready_until
    from orchestration.defs.scope import Scope
    from orchestration.lib.ingestion.declared import contracts_of
    from orchestration.lib.ingestion.planning import plan_ingestion

    settings = get_settings()
    scope = Scope(settings.usecase)
    pending, limited = pending_input(scope), ready_until(scope)
    selection = _select(definitions_for(scope.name).resolve_asset_graph(), select)
    contracts = contracts_of(settings.usecase)
    plan = plan_ingestion(contracts.values(), settings.landing_dir, settings.raw_dir)
    _report_waiting(plan.waiting)
    instance = dg.DagsterInstance.get()
    loaded = {  # the days any source of the use case is loaded for
        date.fromisoformat(p)
        for source in contracts
        for p in instance.get_materialized_partitions(scope.key(f"raw_{source}"))
    }
    runs = _data_runs(instance, selection, plan.range, loaded)
    ingesting = bool(selection.data) and plan.range is not None
    outdated = _outdated(
        instance, selection, lambda key: key in pending and pending[key](settings)
    )
    if outdated and not ingesting:
        runs.append((_keys(outdated), None))
    if selection.after_model:
        by_days = _missing_days(
            instance, selection.after_model, _days_with_data(loaded, plan.range),
            {key: functools.partial(until, settings, instance, plan.stale)
             for key, until in limited.items()},
        )
        _add_daily_runs(runs, selection, by_days, plan.range if ingesting else None)
    return runs


def _select(graph: Any, select: str | None) -> _Selection:
    """Resolve ``select`` (everything when None) and sort the assets by kind."""
    import dagster as dg

    selected = dg.AssetSelection.from_string(select or "*").resolve(graph)
    unpartitioned = {k for k in selected if graph.get(k).partitions_def is None}
    everything_unpartitioned = {
        k for k in graph.get_all_asset_keys() if graph.get(k).partitions_def is None
    }

    @functools.cache
    def ancestors(key: dg.AssetKey) -> frozenset[dg.AssetKey]:
        return frozenset(dg.AssetSelection.assets(key).upstream().resolve(graph) - {key})

    after_model = {
        k for k in selected - unpartitioned if ancestors(k) & everything_unpartitioned
    }
    data = selected - unpartitioned - after_model
    return _Selection(graph, data, unpartitioned, after_model, ancestors)


def _report_waiting(waiting: dict[str, list[date]]) -> None:
    for source, days in waiting.items():
        if days:
            echo_err(
                f"Waiting for a readable re-delivery of {source} for "
                f"{', '.join(d.isoformat() for d in days)} (the delivered files cannot be read)"
            )


def _materialized_days(instance: dg.DagsterInstance, key: dg.AssetKey) -> set[date]:
    return {date.fromisoformat(p) for p in instance.get_materialized_partitions(key)}


def _data_runs(
    instance: dg.DagsterInstance, selection: _Selection, new_days: Days | None, loaded: set[date]
) -> list[Run]:
    """A run over the days loaded earlier that a data asset lacks, then one over the new days."""
    runs: list[Run] = []
    behind: dict[dg.AssetKey, set[date]] = {}  # days loaded earlier that a daily asset lacks
    for key in selection.data:
        lacking = loaded - _materialized_days(instance, key)
        if new_days is not None:
            lacking = {d for d in lacking if d < new_days[0]}
        if lacking:
            behind[key] = lacking
    if behind:
        days = set().union(*behind.values())
        runs.append((_keys(behind), (min(days), max(days))))
    if selection.data and new_days is not None:
        runs.append((_keys(selection.data | selection.unpartitioned), new_days))
    return runs


def _outdated(
    instance: dg.DagsterInstance,
    selection: _Selection,
    has_pending_input: Callable[[dg.AssetKey], bool],
) -> list[dg.AssetKey]:
    """The unpartitioned assets never built, older than a daily upstream, or with input
    pending."""
    graph = selection.graph
    materialized_at = {
        key: event.timestamp
        for key in graph.get_all_asset_keys()
        if (event := instance.get_latest_materialization_event(key)) is not None
    }

    def newest_daily_upstream(key: dg.AssetKey) -> float:
        daily = [a for a in selection.ancestors(key) if graph.get(a).partitions_def is not None]
        return max((materialized_at.get(a, 0.0) for a in daily), default=0.0)

    outdated = []
    for key in sorted(selection.unpartitioned):
        if key not in materialized_at or materialized_at[key] < newest_daily_upstream(key):
            outdated.append(key)
        elif has_pending_input(key):
            outdated.append(key)
    return outdated


def _days_with_data(loaded: set[date], new_days: Days | None) -> set[date]:
    have_data = set(loaded)
    if new_days is not None:
        first, last = new_days
        have_data |= {first + timedelta(days=i) for i in range((last - first).days + 1)}
    return have_data


def _missing_days(
    instance: dg.DagsterInstance,
    keys: Iterable[dg.AssetKey],
    have_data: set[date],
    ready_until: dict[dg.AssetKey, Callable[[], date | None]],
) -> dict[Days, set[dg.AssetKey]]:
    """The daily assets by the range of days they lack (up to the day each can be built for)."""
    by_days: dict[Days, set[dg.AssetKey]] = {}
    for key in keys:
        missing = have_data - _materialized_days(instance, key)
        if key in ready_until:
            until = ready_until[key]()
            missing = {d for d in missing if until is not None and d <= until}
        if missing:
            by_days.setdefault((min(missing), max(missing)), set()).add(key)
    return by_days


def _add_daily_runs(
    runs: list[Run],
    selection: _Selection,
    by_days: dict[Days, set[dg.AssetKey]],
    ingested: Days | None,
) -> None:
    """One run per range of days, upstream first; the assets lacking exactly the days being
    ingested join the ingestion's run (one run, one process)."""
    if ingested is not None and by_days.get(ingested):
        keys = selection.data | selection.unpartitioned | by_days.pop(ingested)
        runs[-1] = (_keys(keys), ingested)
    for days, keys in sorted(
        by_days.items(), key=lambda item: min(len(selection.ancestors(k)) for k in item[1])
    ):
        runs.append((_keys(keys), days))


def _keys(keys: Iterable[dg.AssetKey]) -> str:
    return " or ".join(f'key:"{k.to_user_string()}"' for k in sorted(keys))
