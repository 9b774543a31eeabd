"""Features declared once: the part of a use case's declaration that says how its serving
features are computed, read by dbt (which renders it into the feature mart's SQL) and by the
online path (which keeps the history the declaration reaches back to).

A declaration's ``features`` may hold, beside the lists a model trains on:

- ``events``: the source whose staged rows are the events scored (``stg_<events>``);
- ``row``: row-level features, a column of the event (``{name: amount}``) or an SQL expression
  over its columns (``{name: at_night, sql: "case when hour(t) <= 6 then 1 else 0 end"}``);
- ``windowed``: groups of windowed aggregations over an entity key (Chronon's GroupBy), each
  on one of two clocks:

  - ``event``: windows ``(t - w, t]`` ending at the event itself (the entity's other events at
    the same instant count too), in days, hours or minutes; operations ``count``, ``sum``,
    ``mean``; and ``earlier`` features over the entity's events before the event's instant
    within the widest window: ``ratio_to_mean`` (the value against their mean, ``otherwise``
    when there is none) and ``seconds_since_last`` (the widest window when there is none);
  - ``day``: windows of whole days before the event's day, skipping ``delay`` days first (days
    ``D - delay - w .. D - delay - 1``), what was known at the start of day ``D``: ``count``,
    ``label_count`` (events whose label, a row of the label's source, became known before
    ``D``) and ``label_rate`` (their share of the count, 0 when there was no event).

  A name may hold ``{window}`` (``1day``, ``12hour``, ``30minute``) and, for ``earlier``
  features, ``{horizon}`` (the widest window).

:meth:`DeclaredFeatures.resolve` turns the declaration into :class:`ResolvedFeatures`: every
name expanded and every duration a number, the form dbt's macros
(``dbt_project/macros/declared_features.sql``) and the online path read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Literal

from pydantic import Field, model_validator

from orchestration.lib.core.schema import IDENTIFIER, Duration, Identifier, Strict

DBT_VAR = "declared_features"
"""The dbt var that carries a use case's resolved features to its models' macros."""

_MICROSECOND = timedelta(microseconds=1)


def window_suffix(window: timedelta) -> str:
    """How a window reads in a feature's name: ``1day``, ``12hour``, ``30minute``."""
    seconds = int(window.total_seconds())
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % length == 0:
            return f"{seconds // length}{unit}"
    raise ValueError(f"window {window} is not a whole number of minutes")


class RowFeature(Strict):
    """A feature of the event's own row."""

    name: Identifier
    sql: str | None = None
    """An SQL expression over the staged event's columns (default: the column ``name``)."""


class Aggregation(Strict):
    """One aggregation, computed over each of its group's windows."""

    name: str = Field(min_length=1)
    """The feature's name; ``{window}`` is replaced by the window (``card_nb_tx_{window}``)."""
    op: Literal["count", "sum", "mean", "label_count", "label_rate"]
    of: Identifier | None = None
    """The event's column summed or averaged (``sum``, ``mean``)."""
    delay: Duration = timedelta(0)
    """Days skipped before the event's day (``day`` clock only)."""


class EarlierFeature(Strict):
    """A feature over the entity's events before the event's instant, within the widest window."""

    name: str = Field(min_length=1)
    op: Literal["ratio_to_mean", "seconds_since_last"]
    of: Identifier | None = None
    otherwise: float | None = Field(default=None, allow_inf_nan=False)
    """``ratio_to_mean``'s value when there is nothing to compare with."""


class WindowedGroup(Strict):
    """Aggregations of the events of one entity over a set of windows (a GroupBy)."""

    entity: Identifier
    """An entity of ``data.entities``: its key column partitions the events."""
    clock: Literal["event", "day"]
    windows: list[Duration] = Field(min_length=1)
    aggregations: list[Aggregation] = Field(min_length=1)
    earlier: list[EarlierFeature] = []

    @model_validator(mode="after")
    def _consistent(self) -> WindowedGroup:
        if len(set(self.windows)) != len(self.windows):
            raise ValueError(f"windows listed twice: {[window_suffix(w) for w in self.windows]}")
        for window in self.windows:
            if window <= timedelta(0):
                raise ValueError(f"a window must be positive, not {window}")
            if self.clock == "day" and window % timedelta(days=1):
                raise ValueError(f"window {window}: a day clock's windows are whole days")
            window_suffix(window)
        for aggregation in self.aggregations:
            where = f"aggregation {aggregation.name!r}"
            if aggregation.op in ("sum", "mean") and aggregation.of is None:
                raise ValueError(f"{where}: {aggregation.op} needs `of`, the column it reads")
            if self.clock == "event" and aggregation.op.startswith("label_"):
                raise ValueError(f"{where}: {aggregation.op} is counted on a day clock only "
                                 "(a label counts when known before the event's day)")
            if self.clock == "day" and aggregation.op in ("sum", "mean"):
                raise ValueError(f"{where}: a day clock counts events and labels only")
            if self.clock == "event" and aggregation.delay:
                raise ValueError(f"{where}: delay is for a day clock's windows only")
            if aggregation.delay % timedelta(days=1) or aggregation.delay < timedelta(0):
                raise ValueError(f"{where}: delay must be whole days >= 0")
            if len(self.windows) > 1 and "{window}" not in aggregation.name:
                raise ValueError(f"{where}: the name needs {{window}}: one feature per window")
        if self.earlier and self.clock != "event":
            raise ValueError("earlier features are over an event clock's windows only")
        for feature in self.earlier:
            if feature.op == "ratio_to_mean" and (feature.of is None or feature.otherwise is None):
                raise ValueError(f"earlier feature {feature.name!r}: ratio_to_mean needs `of` "
                                 "and `otherwise`")
        return self


class DeclaredFeatures(Strict):
    """What serving computes for an event, declared once."""

    events: Identifier
    """The source whose rows are the events scored; its staged model is ``stg_<events>``."""
    row: list[RowFeature] = []
    windowed: dict[Identifier, WindowedGroup] = {}

    def resolve(
        self, *, mart: str, row_id: str, event_time: str, partition_date: str,
        entities: Mapping[str, str], label_source: str, label_known_at: str,
        staging: Mapping[str, Any] | None = None,
    ) -> ResolvedFeatures:
        """Every name expanded and every duration a number (fails on a name given twice)."""
        event_groups, day_groups = [], []
        for name, group in self.windowed.items():
            key = entities[group.entity]
            widest = max(group.windows)
            windows = [{"suffix": window_suffix(w), "microseconds": _us(w), "days": w.days}
                       for w in sorted(group.windows)]
            features = [
                {"name": a.name.replace("{window}", w["suffix"]), "op": a.op, "of": a.of,
                 "window": w, "delay_days": a.delay.days}
                for w in windows for a in group.aggregations
            ]
            entry = {"name": name, "entity": group.entity, "key": key, "windows": windows,
                     "features": features}
            if group.clock == "event":
                entry["horizon_microseconds"] = _us(widest)
                entry["earlier"] = [
                    {"name": f.name.replace("{horizon}", window_suffix(widest)), "op": f.op,
                     "of": f.of, "otherwise": f.otherwise} for f in group.earlier
                ]
                event_groups.append(entry)
            else:
                spans = sorted({(f["delay_days"], f["window"]["days"]) for f in features})
                entry["spans"] = [{"delay_days": d, "days": w} for d, w in spans]
                entry["horizon_days"] = max(d + w for d, w in spans)
                day_groups.append(entry)
        resolved = ResolvedFeatures(
            mart=mart, events=self.events, label_source=label_source, row_id=row_id,
            event_time=event_time, partition_date=partition_date, label_known_at=label_known_at,
            row=tuple((f.name, f.sql or f.name) for f in self.row),
            event_groups=tuple(event_groups), day_groups=tuple(day_groups),
            staging=dict(staging or {}),
        )
        names = resolved.names
        repeated = sorted({n for n in names if names.count(n) > 1})
        bad = sorted(n for n in names if not IDENTIFIER.match(n))
        if repeated or bad:
            raise ValueError(f"feature names given twice {repeated} or not identifiers {bad}")
        return resolved


def _us(duration: timedelta) -> int:
    return duration // _MICROSECOND


@dataclass(frozen=True)
class ResolvedFeatures:
    """A use case's declared features with every name and number resolved: what dbt's macros
    render and what the online path reads."""

    mart: str
    """The feature mart the SQL renders: one row per event with its features."""
    events: str
    label_source: str
    row_id: str
    event_time: str
    partition_date: str
    label_known_at: str
    row: tuple[tuple[str, str], ...]
    """(name, SQL expression) of each row-level feature."""
    event_groups: tuple[dict[str, Any], ...]
    day_groups: tuple[dict[str, Any], ...]
    staging: dict[str, Any] = field(default_factory=dict)
    """How online staging stages a request's event and a label (``events``, ``labels``): the
    source contracts' columns, their pseudonyms and derived dates (empty: not served online)."""

    @property
    def staged_inputs(self) -> tuple[str, str]:
        """The staged models the features are computed from: the events and the labels."""
        return f"stg_{self.events}", f"stg_{self.label_source}"

    @property
    def names(self) -> list[str]:
        """Every declared feature, in the order the feature mart has them."""
        return [
            *(name for name, _ in self.row),
            *(f["name"] for g in self.event_groups for f in (*g["features"], *g["earlier"])),
            *(f["name"] for g in self.day_groups for f in g["features"]),
        ]

    def history_starts(self) -> dict[str, Callable[[datetime], datetime]]:
        """Each key column the features are partitioned by, with the earliest time of an event of
        the same key that can count for an event at ``t``: ``t`` minus the widest window on an
        event clock, the start of ``t``'s day minus the farthest day reached on a day clock.

        Later events never count, except those at ``t`` itself (same-instant events of an
        entity count for each other), so an event's history is ``[start(t), t]`` for each key.
        """
        event_reach: dict[str, timedelta] = {}
        for group in self.event_groups:
            span = timedelta(microseconds=group["horizon_microseconds"])
            event_reach[group["key"]] = max(span, event_reach.get(group["key"], span))
        day_reach: dict[str, timedelta] = {}
        for group in self.day_groups:
            span = timedelta(days=group["horizon_days"])
            day_reach[group["key"]] = max(span, day_reach.get(group["key"], span))

        def start(key: str) -> Callable[[datetime], datetime]:
            event, day = event_reach.get(key), day_reach.get(key)
            if day is None:
                return lambda t: t - event
            if event is None:
                return lambda t: datetime.combine(t.date(), time.min) - day
            return lambda t: min(t - event, datetime.combine(t.date(), time.min) - day)

        return {key: start(key) for key in event_reach.keys() | day_reach.keys()}

    @property
    def lookback_days(self) -> int:
        """Days of history before a day that the features of that day's events can read, plus
        one day of margin: what a serving snapshot keeps."""
        reaches = [-(-g["horizon_microseconds"] // _us(timedelta(days=1)))
                   for g in self.event_groups]
        reaches += [g["horizon_days"] for g in self.day_groups]
        return max(reaches, default=0) + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "mart": self.mart, "events": self.events, "label_source": self.label_source,
            "row_id": self.row_id, "event_time": self.event_time,
            "partition_date": self.partition_date, "label_known_at": self.label_known_at,
            "row": [{"name": name, "sql": sql} for name, sql in self.row],
            "event_groups": list(self.event_groups), "day_groups": list(self.day_groups),
            "staging": self.staging,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResolvedFeatures:
        return cls(
            mart=data["mart"], events=data["events"], label_source=data["label_source"],
            row_id=data["row_id"], event_time=data["event_time"],
            partition_date=data["partition_date"], label_known_at=data["label_known_at"],
            row=tuple((f["name"], f["sql"]) for f in data["row"]),
            event_groups=tuple(data["event_groups"]), day_groups=tuple(data["day_groups"]),
            staging=dict(data.get("staging") or {}),
        )

    def dbt_vars(self, usecase: str) -> str:
        """The ``--vars`` argument that hands these features to the use case's dbt models
        (deterministic: the same features give the same text, so dbt's parse state is reused;
        without the online staging, which no model reads: editing a contract's description
        re-parses nothing)."""
        rendered = {k: v for k, v in self.to_dict().items() if k != "staging"}  # not dbt's
        return json.dumps({DBT_VAR: {usecase: rendered}}, sort_keys=True, separators=(",", ":"))
