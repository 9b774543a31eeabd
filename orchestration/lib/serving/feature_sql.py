"""Running dbt's compiled feature SQL over the history a request needs: the chain's models,
checked, and the SQL stage that binds the request and its history as the tables the SQL reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import duckdb
import pyarrow as pa

from orchestration.lib.features.feature_definitions import (
    FeatureDefinitions,
    ModelSql,
    quote_identifier,
)
from orchestration.lib.serving.history import rows_table
from orchestration.lib.serving.snapshot import SnapshotError

REQUEST_TABLE_PREFIX = "request__"
"""Per-request Arrow tables are registered as ``request__<model>``."""


def feature_models(definitions: FeatureDefinitions) -> tuple[list[ModelSql], ModelSql]:
    """The models of the chain, checked to read what the stages hand them: one model per
    day-clock group of the declaration, reading only the staged events and labels (computed per
    day, ahead of requests), then the feature mart, reading the events and those models (per
    request)."""
    features = definitions.features
    events, labels = features.staged_inputs
    *day_models, output = definitions.models
    if output.name != features.mart or len(day_models) != len(features.day_groups):
        raise SnapshotError(
            f"the feature models are {[m.name for m in definitions.models]}: online features "
            f"run one model per day-clock group ({len(features.day_groups)}), then "
            f"{features.mart}"
        )
    for model in day_models:
        if not set(model.depends_on) <= {events, labels}:
            raise SnapshotError(f"{model.name} reads {model.depends_on}: a day-clock group's "
                                f"model reads only {events} and {labels}")
    if set(output.depends_on) != {events, *(m.name for m in day_models)}:
        raise SnapshotError(f"{output.name} reads {output.depends_on}: the feature mart reads "
                            f"{events} and the day-clock groups' models")
    return day_models, output


class SqlStage:
    """An in-memory DuckDB where compiled models run over per-request Arrow tables.

    ``tables``: the relations fed from Arrow, each with its columns and DuckDB types (the view
    over the Arrow table casts to them, so a model sees the types dbt's tables have);
    ``models``: the models run, as views of their compiled SQL, in dependency order.
    """

    def __init__(
        self,
        tables: Sequence[tuple[ModelSql, pa.Schema, Sequence[tuple[str, str]]]],
        models: Sequence[ModelSql],
    ) -> None:
        self._conn = duckdb.connect(config={"threads": 1})  # requests are tiny: threads only cost
        self._schemas = {model.name: schema for model, schema, _ in tables}
        relations = [model.relation for model, _, _ in tables] + [m.relation for m in models]
        attached = {row[0] for row in self._conn.sql("from duckdb_databases()").fetchall()}
        for database in sorted({r.database for r in relations} - attached):
            self._conn.execute(f"attach ':memory:' as {quote_identifier(database)}")
        for database, schema in sorted({(r.database, r.schema) for r in relations}):
            self._conn.execute(
                f"create schema if not exists {quote_identifier(database)}."
                f"{quote_identifier(schema)}"
            )
        for model, schema, columns in tables:
            request_table = REQUEST_TABLE_PREFIX + model.name
            self._conn.register(request_table, schema.empty_table())
            casts = ", ".join(
                f"cast({quote_identifier(c)} as {t}) as {quote_identifier(c)}" for c, t in columns
            )
            self._conn.execute(
                f"create view {model.relation.sql} as select {casts} from {request_table}"
            )
        for model in models:
            self._conn.execute(f"create view {model.relation.sql} as\n{model.compiled_sql}")

    def query(
        self, inputs: Mapping[str, list[tuple] | pa.Table], sql: str, params: Sequence[Any]
    ) -> tuple[list[str], list[tuple]]:
        """Run ``sql`` with each table's rows (an Arrow table, or tuples in schema order);
        columns and rows."""
        for name, rows in inputs.items():
            table = rows if isinstance(rows, pa.Table) else rows_table(rows, self._schemas[name])
            self._conn.register(REQUEST_TABLE_PREFIX + name, table)
        cursor = self._conn.execute(sql, params)
        return [d[0] for d in cursor.description], cursor.fetchall()

    def describe(self, relation: str) -> tuple[pa.Schema, list[tuple[str, str]]]:
        """Arrow schema and DuckDB column types of a relation."""
        schema = self._conn.sql(f"select * from {relation} limit 0").to_arrow_table().schema
        columns = self._conn.sql(f"describe {relation}").fetchall()
        return schema, [(row[0], row[1]) for row in columns]


def duckdb_columns(schema: pa.Schema) -> list[tuple[str, str]]:
    """DuckDB's types for an Arrow schema (what reading the Arrow table gives)."""
    with duckdb.connect() as conn:
        conn.register("empty", schema.empty_table())
        return [(row[0], row[1]) for row in conn.sql("describe empty").fetchall()]


class DayTable:
    """Stage 1 for one day-clock model: its SQL stage and its rows by entity and day."""

    def __init__(self, model: ModelSql, stage: SqlStage, key: str, partition_date: str) -> None:
        self.model = model
        self.stage = stage
        self.key = key
        self.rows: dict[str, dict[date, tuple]] = {}
        """Rows by entity and day: valid until a late label or event of the entity."""
        self.select = (
            f"select * from {model.relation.sql} where {quote_identifier(partition_date)} = ?"
        )

    def forget(self, entity: str, after: date) -> None:
        days = self.rows.get(entity)
        if days:
            for day in [d for d in days if d > after]:
                del days[day]


def build_stages(
    definitions: FeatureDefinitions, inputs: Mapping[str, pa.Schema], keys: Sequence[str]
) -> tuple[list[DayTable], SqlStage, str]:
    """The two SQL stages of the chain over staged inputs of these schemas (events first, then
    labels): a :class:`DayTable` per day-clock model (its entity: the one of ``keys`` among its
    columns), and the feature mart's stage with its select of the events asked for by id."""
    features = definitions.features
    day_models, output = feature_models(definitions)
    tables = [(definitions.input(name), schema, duckdb_columns(schema))
              for name, schema in inputs.items()]
    days: list[DayTable] = []
    feature_tables = [tables[0]]
    for model in day_models:
        stage = SqlStage(tables, [model])
        schema, columns = stage.describe(model.relation.sql)
        found = [k for k in keys if k in schema.names]
        if len(found) != 1:
            raise SnapshotError(f"{model.name} has columns {schema.names}: no one entity key")
        days.append(DayTable(model, stage, found[0], features.partition_date))
        feature_tables.append((model, schema, columns))
    select = (f"select * from {output.relation.sql} "
              f"where list_contains(?::varchar[], {quote_identifier(features.row_id)})")
    return days, SqlStage(feature_tables, [output]), select
