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
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from orchestration.lib.core.feature_declaration import DeclaredFeatures, ResolvedFeatures
from orchestration.lib.core.modeling import (
    Gate,
    GuardMetric,
    Metric,
    Models,
    PrimaryMetric,
    estimator_class,
)
from orchestration.lib.core.schema import (
    Duration,
    Identifier,
    Strict,
    UseCaseError,
    parse_duration,
    whole_days,
)
from orchestration.lib.core.sources import Source, SourceColumn, row_staging

__all__ = [
    "Gate", "GuardMetric", "Metric", "Models", "PrimaryMetric", "Source", "SourceColumn",
    "UseCase", "UseCaseError", "declared_pii_columns", "estimator_class", "load_usecase",
    "parse_duration", "usecase_names", "whole_days",
]

ENV_PREFIX = "BLUEPRINT_"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")

RETIRED_ENV = {
    "BLUEPRINT_TRAIN_DAYS": "protocol.train",
    "BLUEPRINT_DELAY_DAYS": "protocol.delay",
    "BLUEPRINT_TEST_DAYS": "protocol.test",
    "BLUEPRINT_N_FOLDS": "protocol.folds",
    "BLUEPRINT_FOLD_STEP_DAYS": "protocol.fold_step",
    "BLUEPRINT_SEED": "models.seed",
    "BLUEPRINT_TRAINING_FEATURES": "features.train_on",
    "BLUEPRINT_PROMOTION_AP_MARGIN": "gate.primary.margin",
    "BLUEPRINT_PROMOTION_AP_FLOOR": "gate.primary.floor",
    "BLUEPRINT_PROMOTION_CP_TOLERANCE": "gate.guards.0.tolerance",
    "BLUEPRINT_ALERTS_PER_DAY": "decision_budget.per_day",
    "BLUEPRINT_MAX_REPORT_DELAY_DAYS": "label.maturity",
    "BLUEPRINT_DRIFT_SHARE_THRESHOLD": "monitoring.drift_share_threshold",
    "BLUEPRINT_AP_DROP_THRESHOLD": "monitoring.decay.drop",
    "BLUEPRINT_RETRAIN_ON_PREDICTION_DRIFT": "monitoring.retrain_on_prediction_drift",
    "BLUEPRINT_RETRAIN_MIN_POST_DRIFT_DAYS": "monitoring.min_post_drift_days",
}
"""Global settings that were the first use case's and are now fields of every declaration."""


class Data(Strict):
    """Where a model's rows come from and what identifies them."""

    table: Identifier
    """The mart a model learns from and is tested on: one row per decision, with its label."""
    features_table: Identifier
    """The mart of every decision's features, without the label: what batch scoring scores and
    what monitoring compares the served features with."""
    row_id: Identifier
    event_time: Identifier
    """When the event happened: rows are ordered by it."""
    partition_date: Identifier
    """The event's day: the daily partition and the unit of the validation windows."""
    entities: dict[Identifier, Identifier] = Field(min_length=1)
    """Entity name -> its key column in ``table`` (metrics and budgets name the entity)."""


class Label(Strict):
    column: Identifier
    known_at: Identifier
    """The date the label became known: a label is usable on day d iff it is before d."""
    source: Identifier
    """The source whose newest ingested partition says how far the labels are known."""
    maturity: Duration
    """How long after its event a label can still arrive: a day's labels are final after it."""
    time: Identifier | None = None
    """The label source's timestamp column whose day is ``known_at`` (online staging derives
    ``known_at`` from it; required for online serving)."""


def _flatten(value: Any) -> Any:
    if isinstance(value, list):
        return [item for part in value for item in (part if isinstance(part, list) else [part])]
    return value


FeatureList = Annotated[list[Identifier], BeforeValidator(_flatten)]


class Features(Strict):
    declared: DeclaredFeatures | None = None
    """The features serving computes, declared once: dbt renders them into the feature mart and
    the online path reads the same declaration (``feature_declaration``)."""
    train_on: FeatureList = Field(min_length=1)
    """The columns of ``data.table`` the production model trains on (a list may include
    another by its YAML anchor)."""
    baseline: FeatureList = []
    """A reference feature set (benchmarks compare the production set with it)."""

    @field_validator("train_on")
    @classmethod
    def _distinct(cls, names: list[str]) -> list[str]:
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"features listed twice: {repeated}")
        return names


class Protocol(Strict):
    """Prequential validation: train, skip ``delay``, test; ``folds`` times, ``fold_step`` apart."""

    train: Duration
    delay: Duration
    test: Duration
    folds: int = Field(ge=1)
    fold_step: Duration
    exclude_known_positives: Identifier | None = None
    """An entity (of ``data.entities``) whose rows leave a test day once one of its rows is a
    known positive before that day (the handbook drops the payments of cards already known
    compromised: investigators would have blocked them); None keeps every test row."""

    @model_validator(mode="after")
    def _positive(self) -> Protocol:
        for name in ("train", "test", "fold_step"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be longer than zero")
        if self.delay < timedelta(0):
            raise ValueError("delay cannot be negative")
        return self


class DecisionBudget(Strict):
    per_day: float = Field(ge=0)
    """Positive decisions (alerts, retention calls) a day; the threshold is chosen for it."""
    entity: Identifier | None = None
    """The entity (of ``data.entities``) a day's list ranks, each by its riskiest row (the
    investigation queue of cards, the retention list of accounts); None ranks rows."""


class Request(Strict):
    """What a scoring request carries: the columns of the events' source contract, some under
    another name."""

    rename: dict[Identifier, Identifier] = {}
    """Contract column -> the request's field for it."""
    example: dict[Identifier, str | int | float] = {}
    """A request to try, as ``blueprint serve`` shows it: a value for each field but the event
    time, which the command fills in (none declared: no example)."""


class Serving(Strict):
    mode: Literal["online", "batch", "both"]
    score: Identifier = "score"
    """The name of the score in answers, batch scores and monitoring (``fraud_probability``)."""
    request: Request = Request()

    @property
    def online(self) -> bool:
        return self.mode in ("online", "both")


class Decay(Strict):
    metric: Identifier
    drop: float = Field(ge=0)
    """How far a day's realized metric may fall below the champion's test value."""


class Monitoring(Strict):
    traffic: Literal["prediction_log", "batch_scores"]
    """What monitoring reads: the service's prediction log or the batch scores."""
    drift_share_threshold: float = Field(gt=0, le=1)
    decay: Decay
    retrain_on_prediction_drift: bool = True
    min_post_drift_days: int = Field(ge=0)


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
        return self

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
        untimed = set(fields) - {rename.get(self.data.event_time, self.data.event_time)}
        example = self.serving.request.example
        if example and set(example) != untimed:
            raise ValueError(f"serving.request.example: must give a value to each field of a "
                             f"request but the event time: {sorted(untimed)}")
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
        order (None: no example declared)."""
        request = self.serving.request
        if not request.example or self.features.declared is None:
            return None
        fields = {c.name: request.rename.get(c.name, c.name)
                  for c in self.sources[self.features.declared.events].columns}
        return {field: event_time if column == self.data.event_time else request.example[field]
                for column, field in fields.items()}

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
    raw = _apply_overrides(path, raw, dict(overrides), f"{ENV_PREFIX}{path.stem.upper()}_")
    try:
        return UseCase.model_validate(raw)
    except ValidationError as error:
        lines = [
            f"{path}: {'.'.join(str(part) for part in issue['loc']) or '(top level)'}: "
            f"{issue['msg']}"
            for issue in error.errors()
        ]
        raise UseCaseError("\n".join(lines)) from None


def _leaves(node: Any, path: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """Every overridable field: env suffix -> its path in the declaration."""
    found: dict[str, tuple[str, ...]] = {}
    if isinstance(node, dict):
        for key, value in node.items():
            found.update(_leaves(value, (*path, str(key))))
    elif isinstance(node, list) and any(isinstance(item, dict) for item in node):
        for index, item in enumerate(node):
            found.update(_leaves(item, (*path, str(index))))
    elif path:
        found["_".join(path).upper()] = path
    return found


def _apply_overrides(
    path: Path, raw: dict[str, Any], overrides: dict[str, str], prefix: str
) -> dict[str, Any]:
    if not overrides:
        return raw
    leaves = _leaves(raw)
    result = yaml.safe_load(yaml.safe_dump(raw))  # a deep copy of plain data
    for env_name, text in overrides.items():
        field = leaves.get(env_name.removeprefix(prefix))
        if field is None:
            raise UseCaseError(f"{env_name}: {path} has no such field (overridable: "
                               f"{', '.join(prefix + k for k in sorted(leaves))})")
        parent = result
        for part in field[:-1]:
            parent = parent[int(part) if isinstance(parent, list) else part]
        key = int(field[-1]) if isinstance(parent, list) else field[-1]
        parent[key] = _parse_override(text, parent[key])
    return result


def _parse_override(text: str, current: Any) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    if isinstance(current, list) and not isinstance(value, list):
        return [yaml.safe_load(item.strip()) for item in text.split(",") if item.strip()]
    return value
