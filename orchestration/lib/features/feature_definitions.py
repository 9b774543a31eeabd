"""The feature definitions serving runs: dbt's compiled SQL, taken from a dbt manifest.

Online features must equal ``transaction_features`` exactly, so serving does not re-implement
them: it runs the very SQL dbt compiled, model by model, from the staged inputs
(``stg_transactions``, ``stg_fraud_reports``) up to ``transaction_features``. This module reads
that chain from a ``manifest.json`` written by ``dbt build`` or ``dbt compile`` (the manifest of
``dbt parse`` has no compiled SQL) and fingerprints it: ``FeatureDefinitions.hash`` changes
whenever a model's compiled SQL changes (a model, a macro or a dbt var), and is the same for
every ``BLUEPRINT_HOME``, since compiled SQL names relations (``"<use case>"."main"...``: the
database is named after the warehouse file), never paths.

The SQL is rendered from the use case's declared features (``feature_declaration``); the
resolved declaration travels with it and decides how much history serving keeps and hands the
SQL, never a feature value.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.lib.core.feature_declaration import ResolvedFeatures
from orchestration.lib.core.sql import quote_identifier

_ABSOLUTE_PATH_LITERAL = re.compile(r"'(?:/|[A-Za-z]:[\\/])[^']*'")
"""A string literal holding an absolute path: a compiled SQL with one depends on the machine."""


class FeatureDefinitionsError(Exception):
    """The manifest cannot give the feature definitions (no compiled SQL, missing models...)."""


@dataclass(frozen=True)
class Relation:
    """Where dbt materializes a model, as the compiled SQL names it."""

    database: str
    schema: str
    identifier: str

    @property
    def sql(self) -> str:
        return ".".join(
            quote_identifier(part) for part in (self.database, self.schema, self.identifier)
        )


@dataclass(frozen=True)
class ModelSql:
    """One dbt model: its relation, its compiled SQL and the models it reads."""

    name: str
    relation: Relation
    compiled_sql: str
    depends_on: tuple[str, ...]


@dataclass(frozen=True)
class FeatureDefinitions:
    """The compiled SQL chain from the staged inputs to ``transaction_features``."""

    inputs: tuple[ModelSql, ...]
    """``stg_transactions`` and ``stg_fraud_reports``: the state serving keeps (not run online)."""
    models: tuple[ModelSql, ...]
    """The models serving runs, in dependency order; the last is ``transaction_features``."""
    features: ResolvedFeatures
    """The use case's declared features the SQL was rendered from: they say how far back each
    key's history must reach (the SQL alone decides every value)."""

    @property
    def output(self) -> ModelSql:
        return self.models[-1]

    @property
    def compiled_sql(self) -> dict[str, str]:
        """Compiled SQL of every model of the chain, inputs first, in dependency order."""
        return {model.name: model.compiled_sql for model in (*self.inputs, *self.models)}

    @property
    def hash(self) -> str:
        """sha256 over the normalised compiled SQL of the chain: the feature definitions' id."""
        digest = hashlib.sha256()
        for name, sql in self.compiled_sql.items():
            digest.update(f"{name}\n{normalise_sql(sql)}\n\0".encode())
        return digest.hexdigest()

    def input(self, name: str) -> ModelSql:
        return next(model for model in self.inputs if model.name == name)

    def to_dict(self) -> dict[str, Any]:
        def model_dict(model: ModelSql) -> dict[str, Any]:
            return {
                "name": model.name,
                "relation": [
                    model.relation.database,
                    model.relation.schema,
                    model.relation.identifier,
                ],
                "depends_on": list(model.depends_on),
                "compiled_sql": model.compiled_sql,
            }

        return {
            "hash": self.hash,
            "inputs": [model_dict(m) for m in self.inputs],
            "models": [model_dict(m) for m in self.models],
            "features": self.features.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureDefinitions:
        """Rebuild from :meth:`to_dict`; fails if the SQL no longer matches the recorded hash."""

        def model(entry: Mapping[str, Any]) -> ModelSql:
            return ModelSql(
                name=entry["name"],
                relation=Relation(*entry["relation"]),
                compiled_sql=entry["compiled_sql"],
                depends_on=tuple(entry["depends_on"]),
            )

        definitions = cls(
            inputs=tuple(model(m) for m in data["inputs"]),
            models=tuple(model(m) for m in data["models"]),
            features=ResolvedFeatures.from_dict(data["features"]),
        )
        if "hash" in data and data["hash"] != definitions.hash:
            raise FeatureDefinitionsError("feature definitions do not match their recorded hash")
        return definitions


def normalise_sql(sql: str) -> str:
    """Compiled SQL without what does not change its meaning: line ends, trailing spaces."""
    lines = sql.replace("\r\n", "\n").replace("\r", "\n").strip().split("\n")
    return "\n".join(line.rstrip() for line in lines)


@dataclass(frozen=True)
class CompiledChain:
    """Any use case's feature mart and every model it is built from, as dbt compiled them: the
    feature definitions a batch-scored model records (an online use case publishes the richer
    :class:`FeatureDefinitions`, which serving runs)."""

    output: str
    compiled_sql: dict[str, str]
    """Model name -> compiled SQL, in dependency order; the last is ``output``."""

    @property
    def hash(self) -> str:
        """sha256 over the normalised compiled SQL of the chain (as :class:`FeatureDefinitions`)."""
        digest = hashlib.sha256()
        for name, sql in self.compiled_sql.items():
            digest.update(f"{name}\n{normalise_sql(sql)}\n\0".encode())
        return digest.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {"hash": self.hash, "output": self.output, "compiled_sql": self.compiled_sql}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompiledChain:
        chain = cls(output=data["output"], compiled_sql=dict(data["compiled_sql"]))
        if data.get("hash") != chain.hash:
            raise FeatureDefinitionsError("feature definitions do not match their recorded hash")
        return chain


def load_compiled_chain(manifest_path: Path, output: str) -> CompiledChain:
    """The compiled SQL of ``output`` and of every model upstream of it in a dbt manifest."""
    manifest = json.loads(Path(manifest_path).read_text())
    nodes = {
        node["unique_id"]: node
        for node in manifest.get("nodes", {}).values()
        if node.get("resource_type") == "model"
    }
    by_name = {node["name"]: uid for uid, node in nodes.items()}
    if output not in by_name:
        raise FeatureDefinitionsError(f"{manifest_path}: no model {output}")
    chain: dict[str, str] = {}

    def visit(uid: str) -> None:
        node = nodes[uid]
        if node["name"] in chain:
            return
        for parent in node["depends_on"]["nodes"]:
            if parent in nodes:
                visit(parent)
        chain[node["name"]] = _model_sql(manifest_path, node, []).compiled_sql

    visit(by_name[output])
    return CompiledChain(output=output, compiled_sql=chain)


def definitions_from_dict(data: Mapping[str, Any]) -> FeatureDefinitions | CompiledChain:
    """Published feature definitions, of either kind."""
    return FeatureDefinitions.from_dict(data) if "inputs" in data else CompiledChain.from_dict(data)


def load_feature_definitions(
    manifest_path: Path, features: ResolvedFeatures
) -> FeatureDefinitions:
    """The compiled SQL chain from ``stg_*`` to ``transaction_features`` in a dbt manifest.

    ``manifest_path``: a ``manifest.json`` written by ``dbt build`` or ``dbt compile`` (Dagster's
    dbt step writes one per run in its own target folder). ``features``: the declared features
    the manifest was compiled with (the ``--vars`` of its dbt call).
    """
    manifest = json.loads(Path(manifest_path).read_text())
    nodes = {
        node["name"]: node
        for node in manifest.get("nodes", {}).values()
        if node.get("resource_type") == "model"
    }
    inputs, output = features.staged_inputs, features.mart
    missing = [name for name in (*inputs, output) if name not in nodes]
    if missing:
        raise FeatureDefinitionsError(f"{manifest_path}: no model {', '.join(missing)}")
    by_unique_id = {node["unique_id"]: name for name, node in nodes.items()}

    def parents(name: str) -> list[str]:
        return [
            by_unique_id[uid] for uid in nodes[name]["depends_on"]["nodes"] if uid in by_unique_id
        ]

    # depth-first from the output back to the inputs: post-order is a dependency order
    chain: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in chain or name in inputs:
            return
        if name in path:
            raise FeatureDefinitionsError(f"dependency cycle through {name}")
        ancestors = parents(name)
        if not ancestors:
            raise FeatureDefinitionsError(
                f"{name} does not read {' or '.join(inputs)}: serving cannot compute it"
            )
        for parent in ancestors:
            visit(parent, (*path, name))
        chain.append(name)

    visit(output, ())
    return FeatureDefinitions(
        inputs=tuple(
            _model_sql(manifest_path, nodes[name], parents(name)) for name in inputs
        ),
        models=tuple(_model_sql(manifest_path, nodes[name], parents(name)) for name in chain),
        features=features,
    )


def _model_sql(manifest_path: Path, node: Mapping[str, Any], parents: list[str]) -> ModelSql:
    name = node["name"]
    sql = node.get("compiled_code")
    if not sql:
        raise FeatureDefinitionsError(
            f"{manifest_path}: model {name} has no compiled SQL; take the manifest of a "
            "`dbt build` or `dbt compile --select +<features table>`, not `dbt parse`"
        )
    absolute = _ABSOLUTE_PATH_LITERAL.search(sql)
    if absolute:
        raise FeatureDefinitionsError(
            f"compiled SQL of {name} holds an absolute path {absolute.group()}: "
            "it would differ from one BLUEPRINT_HOME to another"
        )
    relation = Relation(node["database"], node["schema"], node.get("alias") or name)
    return ModelSql(name=name, relation=relation, compiled_sql=sql, depends_on=tuple(parents))
