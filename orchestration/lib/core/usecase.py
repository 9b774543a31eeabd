"""A use case is a declaration: one YAML file per use case, validated on load.

The declaration names everything the pipeline must know about a problem (its table and keys,
its label and when it is known, its features, validation protocol, model families, metrics,
promotion gate, decision budget, serving mode and monitoring); the pipeline's code takes it as a
parameter and names none of it. A bad or missing field is a :class:`UseCaseError` naming the
file and the field.

The declaration holds the defaults. Any scalar field, or list of scalars, may be overridden from
the environment as ``BLUEPRINT_<USECASE>_<PATH>``: the field's path, its parts joined by ``_``
and upper-cased (``protocol.train`` of ``fraud`` is ``BLUEPRINT_FRAUD_PROTOCOL_TRAIN``). A value is
read as YAML (``0.01``, ``true``, ``[10, 20]``); a list also takes comma-separated items. An
override whose path is not a field is an error, so a typo never goes unnoticed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from orchestration.lib.core.cards import example_pan
from orchestration.lib.core.feature_declaration import DeclaredFeatures, ResolvedFeatures
from orchestration.lib.core.modeling import (
    Gate,
    GuardMetric,
    Metric,
    Models,
    PrimaryMetric,
    estimator_class,
)
from orchestration.lib.core.overrides import RETIRED_ENV, apply_overrides
from orchestration.lib.core.schema import (
    Identifier,
    Strict,
    UseCaseError,
    parse_duration,
    whole_days,
)
from orchestration.lib.core.sections import (
    Data,
    DecisionBudget,
    Features,
    Label,
    Monitoring,
    Protocol,
    Serving,
)
from orchestration.lib.core.sources import Source, SourceColumn, row_staging
from orchestration.lib.core.values import typed_value

__all__ = [
    "Gate", "GuardMetric", "Metric", "Models", "PrimaryMetric", "Source", "SourceColumn",
    "UseCase", "UseCaseError", "declared_pii_columns", "estimator_class", "load_usecase",
    "parse_duration", "usecase_names", "whole_days",
]

ENV_PREFIX = "BLUEPRINT_"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


class UseCase(Strict):
    """One use case, as declared; see ``orchestration/usecases/<name>.yaml``."""

    name: str = Field(pattern=NAME_PATTERN.pattern)
    task: Literal["binary_classification"]
    description: str
    sources: dict[Identifier, Source] = Field(min_length=1)
    """The source systems that deliver this use case's data, by name (the landing folder)."""
    data: Data
    label: Label
    features: Features
    protocol: Protocol
    models: Models
    metrics: dict[Identifier, Metric] = Field(min_length=1)
    selection_metric: Identifier
    gate: Gate
    decision_budget: DecisionBudget | None = None
    serving: Serving
    monitoring: Monitoring
    simulator: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*$")
    """The module whose ``WORLD`` simulates the use case's sources for ``blueprint simulate``
    (the outside world: only the command line imports it, never the pipeline)."""

    @model_validator(mode="after")
    def _references(self) -> UseCase:
        named = {"selection_metric": self.selection_metric,
                 "gate.primary.metric": self.gate.primary.metric,
                 "monitoring.decay.metric": self.monitoring.decay.metric,
                 **{f"gate.guards.{i}.metric": g.metric for i, g in enumerate(self.gate.guards)}}
        for field, metric in named.items():
            if metric not in self.metrics:
                raise ValueError(f"{field}: {metric!r} is not a declared metric "
                                 f"({sorted(self.metrics)})")
        if self.label.source not in self.sources:
            raise ValueError(f"label.source: {self.label.source!r} is not a declared source "
                             f"({sorted(self.sources)})")
        entities = {f"metrics.{name}.entity": metric.entity
                    for name, metric in self.metrics.items()}
        entities["protocol.exclude_known_positives"] = self.protocol.exclude_known_positives
        if self.decision_budget is not None:
            entities["decision_budget.entity"] = self.decision_budget.entity
        if self.serving.online and self.features.declared is None:
            raise ValueError(f"features.declared: serving.mode {self.serving.mode!r} scores "
                             "online, from features declared once: declare them")
        if self.serving.online and self.label.time is None:
            raise ValueError("label.time: serving.mode scores online, which stages labels as "
                             "they arrive: name the label source's timestamp column")
        label_columns = {c.name: c for c in self.sources[self.label.source].columns}
        if self.label.time is not None and getattr(
            label_columns.get(self.label.time), "type", None
        ) != "timestamp":
            raise ValueError(f"label.time: {self.label.time!r} is not a timestamp column of "
                             f"source {self.label.source!r}")
        if self.features.declared is not None:
            declared = self.features.declared
            if declared.events not in self.sources:
                raise ValueError(f"features.declared.events: {declared.events!r} is not a "
                                 f"declared source ({sorted(self.sources)})")
            self._check_declared_columns(declared)
            for name, group in declared.windowed.items():
                entities[f"features.declared.windowed.{name}.entity"] = group.entity
        for field, entity in entities.items():
            if entity is not None and entity not in self.data.entities:
                raise ValueError(f"{field}: {entity!r} is not an entity of data.entities "
                                 f"({sorted(self.data.entities)})")
        try:
            self.resolved_features()
        except ValueError as error:
            raise ValueError(f"features.declared: {error}") from None
        self._check_id_shapes()
        return self

    def _check_id_shapes(self) -> None:
        """The row id and every entity key a source delivers as a string declare their shape:
        an id of unbounded length or characters is a way to plant anything (a card number)."""
        ids = {self.data.row_id, *self.data.entities.values()}
        for name, source in self.sources.items():
            for column in source.columns:
                if column.name in ids and column.type == "string" and not column.has_shape:
                    raise ValueError(
                        f"sources.{name}.columns.{column.name}: an id (the row id or an entity "
                        "key) declares its shape: a pattern of its characters and length, or "
                        "the pan rule"
                    )

    def _check_declared_columns(self, declared: DeclaredFeatures) -> None:
        """What the declared features read must be what staging keeps of the events' source:
        its columns (personal data only by pseudonym), numbers where they are added up."""
        source = self.sources[declared.events]
        plain = {c.name: c for c in source.columns if not c.pii}
        staged = set(plain) | {c.pseudonym for c in source.columns if c.pseudonym}
        where = f"of source {declared.events!r} as staged"
        rename = self.serving.request.rename
        unknown = sorted(set(rename) - {c.name for c in source.columns})
        fields = [rename.get(c.name, c.name) for c in source.columns]
        if unknown or len(set(fields)) != len(fields):
            raise ValueError(f"serving.request.rename: {unknown or rename} must rename columns "
                             f"of source {declared.events!r} to names no other column has")
        if getattr(plain.get(self.data.event_time), "type", None) != "timestamp":
            raise ValueError(f"data.event_time: {self.data.event_time!r} is not a timestamp "
                             f"column {where}")
        personal = {rename.get(c.name, c.name) for c in source.columns if c.pii}
        given = set(fields) - personal - {rename.get(self.data.event_time, self.data.event_time)}
        example = self.serving.request.example
        if example and set(example) != given:
            raise ValueError(f"serving.request.example: must give a value to each field of a "
                             f"request but the event time and personal data ({sorted(personal)},"
                             f" which the command fills in): {sorted(given)}")
        for column in source.columns:  # an example the service would refuse is no example
            field = rename.get(column.name, column.name)
            if field in example:
                try:
                    typed_value(field, column.model_dump(), example[field])
                except ValueError as error:
                    raise ValueError(f"serving.request.example: {error}") from None
        ids = {self.data.row_id, self.data.event_time, self.data.partition_date,
               *self.data.entities.values()}
        for name, group in declared.windowed.items():
            field = f"features.declared.windowed.{name}"
            key = self.data.entities.get(group.entity)
            if key is not None and key not in staged:
                raise ValueError(f"{field}.entity: its key {key!r} is not a column {where}")
            for feature in [*group.aggregations, *group.earlier]:
                if feature.of is not None and getattr(plain.get(feature.of), "type", None) != (
                    "double"
                ):
                    raise ValueError(f"{field}: {feature.name!r} reads {feature.of!r}, not a "
                                     f"number column {where}")
        for feature in declared.row:
            wrong = feature.name in staged if feature.sql else feature.name not in plain
            if wrong or feature.name in ids:
                raise ValueError(f"features.declared.row: {feature.name!r} must name a column "
                                 f"{where} (no sql) or a new column (with sql), not an id")

    def resolved_features(self) -> ResolvedFeatures | None:
        """The declared features with their names and windows resolved (None: not declared)."""
        if self.features.declared is None:
            return None
        staging = None
        if self.serving.online and self.label.time is not None:
            staging = {
                "events": row_staging(
                    self.sources[self.features.declared.events],
                    {self.data.partition_date: self.data.event_time},
                    self.serving.request.rename,
                ),
                "labels": row_staging(
                    self.sources[self.label.source], {self.label.known_at: self.label.time}, {}
                ),
            }
        return self.features.declared.resolve(
            staging=staging,
            mart=self.data.features_table, row_id=self.data.row_id, event_time=self.data.event_time,
            partition_date=self.data.partition_date, entities=self.data.entities,
            label_source=self.label.source, label_known_at=self.label.known_at,
        )

    def example_request(self, event_time: str) -> dict[str, Any] | None:
        """The declared example request at ``event_time``, its fields in the events' contract
        order, personal data made up (a test card number for a PAN), so that the declaration
        holds none (None: no example declared)."""
        request = self.serving.request
        if not request.example or self.features.declared is None:
            return None
        example = {}
        for column in self.sources[self.features.declared.events].columns:
            field = request.rename.get(column.name, column.name)
            if column.name == self.data.event_time:
                example[field] = event_time
            elif column.pii:  # never declared: a made-up value of its kind
                example[field] = example_pan() if "pan" in column.rules else f"<{field}>"
            else:
                example[field] = request.example[field]
        return example

    def dbt_arguments(self) -> list[str]:
        """What every dbt call on this use case passes: its declared features, as ``--vars``."""
        resolved = self.resolved_features()
        return [] if resolved is None else ["--vars", resolved.dbt_vars(self.name)]

    @property
    def env_prefix(self) -> str:
        return f"{ENV_PREFIX}{self.name.upper()}_"


def usecase_names(directory: Path) -> list[str]:
    """The use cases declared in ``directory``, sorted."""
    return sorted(path.stem for path in directory.glob("*.yaml"))


def declared_pii_columns(
    directory: Path, environ: Mapping[str, str] | None = None
) -> dict[str, tuple[str, ...]]:
    """Source -> its personal-data columns, over every use case declared in ``directory`` (a
    source that several declare gets the columns any of them marks ``pii``)."""
    columns: dict[str, set[str]] = {}
    for name in usecase_names(directory):
        for source_name, source in load_usecase(name, directory, environ).sources.items():
            columns.setdefault(source_name, set()).update(source.pii_columns)
    return {source: tuple(sorted(names)) for source, names in sorted(columns.items())}


def load_usecase(
    name: str, directory: Path, environ: Mapping[str, str] | None = None
) -> UseCase:
    """The declaration ``directory/<name>.yaml`` with the environment's overrides applied."""
    environ = os.environ if environ is None else environ
    path = directory / f"{name}.yaml"
    if not NAME_PATTERN.match(name) or not path.is_file():
        known = ", ".join(usecase_names(directory)) or "none"
        raise UseCaseError(f"no use case {name!r}: {path} does not exist (declared: {known})")
    prefix = f"{ENV_PREFIX}{name.upper()}_"
    overrides = tuple(sorted((k, v) for k, v in environ.items() if k.startswith(prefix)))
    retired = sorted(k for k in RETIRED_ENV if k in environ)
    if retired:
        raise UseCaseError(
            "; ".join(f"{k} is no longer read: set {prefix}"
                      f"{RETIRED_ENV[k].upper().replace('.', '_')} instead" for k in retired)
            + " (docs/CONFIGURATION.md)"
        )
    return _load(path, path.stat().st_mtime_ns, overrides)


@cache
def _load(path: Path, mtime_ns: int, overrides: tuple[tuple[str, str], ...]) -> UseCase:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise UseCaseError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise UseCaseError(f"{path}: a declaration is a mapping of fields")
    if raw.get("name") != path.stem:
        raise UseCaseError(f"{path}: name: must be {path.stem!r}, the file's name")
    raw = apply_overrides(path, raw, dict(overrides), f"{ENV_PREFIX}{path.stem.upper()}_")
    try:
        return UseCase.model_validate(raw)
    except ValidationError as error:
        lines = [
            f"{path}: {'.'.join(str(part) for part in issue['loc']) or '(top level)'}: "
            f"{issue['msg']}"
            for issue in error.errors()
        ]
        raise UseCaseError("\n".join(lines)) from None
